"""What the daemon needs from a peer network, as an interface.

Two implementations: :class:`daemon.net.network.Network` over py-libp2p (the daemon)
and :class:`daemon.net.memnet.MemNetwork` in memory (the simulator and unit tests).
Gossip, sync, membership and the connection manager are written against this
interface only, so the simulator runs exactly their code.

Peer ids and multiaddrs are strings, gossip payloads bytes, streams
:class:`PeerStream`. A gossip *validator* sees every message before it is delivered
or relayed: returning False drops it there (it is neither handed to
:meth:`NetworkAdapter.messages` nor forwarded to other peers).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

import trio


class NetworkError(Exception):
    """Dialing or opening a stream failed."""


@dataclass
class GossipMessage:
    """One message from the topic, with the peer that signed it."""

    sender: str
    data: bytes


class PeerStream(Protocol):
    """A stream to one peer (see :class:`daemon.net.framed.ByteStream`)."""

    peer_id: str

    async def read(self, max_bytes: int) -> bytes:
        """Up to ``max_bytes``; b"" at end of stream."""
        ...

    async def write(self, data: bytes) -> None:
        """Send all of ``data``."""
        ...

    async def close(self) -> None:
        """Close our side."""
        ...

    async def reset(self) -> None:
        """Abort the stream (the peer sees an error, not a clean end)."""
        ...


StreamHandler = Callable[[PeerStream], Awaitable[None]]
Validator = Callable[[str, str, bytes], bool]
"""``validator(sender, forwarder, data)``: True to deliver and relay the message."""


class NetworkAdapter(Protocol):
    """A running peer network subscribed to one gossip topic."""

    peer_id: str
    topic: str
    discovered: trio.MemoryReceiveChannel[list[str]]

    def listen_addrs(self) -> list[str]:
        """Our dialable addresses, each ending in /p2p/<peer id>."""
        ...

    def connected_peers(self) -> list[str]:
        """Peer ids with an open connection."""
        ...

    async def connect(self, maddr: str) -> str:
        """Dial a multiaddr that ends in /p2p/<peer id>; return the peer id."""
        ...

    async def disconnect(self, peer_id: str) -> None:
        """Close every connection to ``peer_id`` (no error if there is none)."""
        ...

    async def open_stream(self, peer_id: str, protocol: str) -> PeerStream:
        """Open a stream to a connected peer. Raises NetworkError."""
        ...

    def set_stream_handler(self, protocol: str, handler: StreamHandler) -> None:
        """Serve incoming streams of ``protocol`` with ``handler``."""
        ...

    def stream_idle(self, peer_id: str) -> float:
        """Seconds since a stream to or from ``peer_id`` was last opened (inf: never)."""
        ...

    async def publish(self, data: bytes) -> None:
        """Publish on our topic (never blocks; delivery is best effort)."""
        ...

    def messages(self) -> AsyncIterator[GossipMessage]:
        """Accepted messages from other peers on our topic, forever."""
        ...

    def set_validator(self, validator: Validator) -> None:
        """Check every gossip message before it is delivered or relayed."""
        ...

    def ban(self, peer_id: str) -> None:
        """Drop ``peer_id``'s gossip from now on and close its connections."""
        ...

    def unban(self, peer_id: str) -> None:
        """Accept ``peer_id``'s gossip again."""
        ...
