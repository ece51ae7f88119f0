"""Narrow adapter over py-libp2p: one host, one gossipsub topic, framed streams.

The rest of the daemon sees peer ids and multiaddrs as strings, gossip as bytes and
streams as :class:`ByteStream` (the interface is :class:`daemon.net.adapter.NetworkAdapter`);
py-libp2p's types and quirks stay in this module (StreamEOF instead of b"", spam
protection on by default, heartbeat of 120 s, own messages echoed to our subscription,
an auto-connector that dials every known peer until it holds 50 connections).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import TypeVar

import multiaddr
import structlog
import trio
from google.protobuf.message import DecodeError
from libp2p import new_host
from libp2p.crypto.keys import KeyPair
from libp2p.crypto.x25519 import create_new_key_pair as create_x25519
from libp2p.custom_types import TProtocol
from libp2p.discovery.events.peerDiscovery import peerDiscovery
from libp2p.io.exceptions import IOException
from libp2p.network.config import ConnectionConfig, RetryConfig
from libp2p.network.stream.exceptions import StreamEOF
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import PeerInfo, info_from_p2p_addr
from libp2p.pubsub.gossipsub import PROTOCOL_ID, PROTOCOL_ID_V11, GossipSub
from libp2p.pubsub.pubsub import Pubsub
from libp2p.security.noise.transport import PROTOCOL_ID as NOISE_ID
from libp2p.security.noise.transport import Transport as NoiseTransport
from libp2p.stream_muxer.yamux.yamux import PROTOCOL_ID as YAMUX_ID
from libp2p.stream_muxer.yamux.yamux import Yamux
from libp2p.tools.anyio_service import background_trio_service

from daemon.logs import adopt_libp2p_logger, count_subscription_drops
from daemon.net.adapter import GossipMessage, NetworkError, StreamHandler, Validator
from daemon.net.framed import StreamClosedError
from daemon.net.p2ptuning import no_auto_connect, remember_verified_records, tune_yamux
from daemon.ratelimit import RateLimiter

log = structlog.get_logger("network")

__all__ = ["GossipMessage", "Libp2pByteStream", "Network", "NetworkError", "open_network"]

CONNECT_TIMEOUT = 10.0
ADDRS_CACHE_S = 30.0  # host.get_addrs() builds multiaddrs anew on every call


class Libp2pByteStream:
    """A libp2p stream behind the :class:`ByteStream` interface."""

    def __init__(self, stream: object, peer_id: str) -> None:
        self._stream = stream
        self.peer_id = peer_id

    async def read(self, max_bytes: int) -> bytes:
        try:
            return await self._stream.read(max_bytes)  # type: ignore[attr-defined,no-any-return]
        except StreamEOF:
            return b""
        except IOException as exc:
            raise StreamClosedError(f"{type(exc).__name__}: {exc}") from exc

    async def write(self, data: bytes) -> None:
        try:
            await self._stream.write(data)  # type: ignore[attr-defined]
        except IOException as exc:
            raise StreamClosedError(f"{type(exc).__name__}: {exc}") from exc

    async def close(self) -> None:
        try:
            await self._stream.close()  # type: ignore[attr-defined]
        except IOException:
            pass

    async def reset(self) -> None:
        """Abort the stream (peer sees an error, not a clean end)."""
        try:
            await self._stream.reset()  # type: ignore[attr-defined]
        except IOException:
            pass


class GuardedPubsub(Pubsub):
    """py-libp2p's Pubsub, except that a pubsub RPC that does not parse resets that
    peer's stream instead of escaping into the connection task (which took the whole
    host down: seen with a peer flooding the topic)."""

    async def continuously_read_stream(self, stream: object) -> None:  # type: ignore[override]
        try:
            await super().continuously_read_stream(stream)  # type: ignore[arg-type]
        except DecodeError as exc:
            peer = str(stream.muxed_conn.peer_id)  # type: ignore[attr-defined]
            log.warning("malformed pubsub RPC, stream reset", peer=peer, error=str(exc))
            try:
                await stream.reset()  # type: ignore[attr-defined]
            except IOException:
                pass
        except RuntimeError as exc:
            # A message arriving while the host shuts down: pubsub's task nursery is
            # already closed and py-libp2p raises this into the connection task.
            if "closed to new arrivals" not in str(exc):
                raise
            log.debug("pubsub message after shutdown began, dropped")


class ConnectionRateGate:
    """py-libp2p's connection gate, plus a per-IP budget of inbound connections.

    It runs before the Noise handshake, which is what a connection costs: a peer
    that floods connection attempts is refused at the socket, counted, and costs
    the others nothing."""

    def __init__(self, inner: object, limiter: RateLimiter, on_refused: Callable[[], None]):
        self._inner = inner
        self._limiter = limiter
        self._on_refused = on_refused

    async def is_allowed(self, remote_addr: multiaddr.Multiaddr) -> bool:
        ip = _ip_of(remote_addr)
        if ip is not None and not self._limiter.allow(ip):
            self._on_refused()
            log.warning("inbound connection over the per-address rate refused", addr=ip)
            return False
        return await self._inner.is_allowed(remote_addr)  # type: ignore[attr-defined,no-any-return]

    def __getattr__(self, name: str) -> object:
        return getattr(self._inner, name)


def _ip_of(addr: multiaddr.Multiaddr) -> str | None:
    for proto in ("ip4", "ip6"):
        try:
            return str(addr.value_for_protocol(proto))
        except Exception:  # multiaddr raises several types for "no such component"
            continue
    return None


class Network:
    """A running libp2p host subscribed to one topic."""

    def __init__(self, host: object, pubsub: Pubsub, topic: str, subscription: object) -> None:
        self._host = host
        self._pubsub = pubsub
        self.topic = topic
        self._subscription = subscription
        self.peer_id = str(host.get_id())  # type: ignore[attr-defined]
        self._discovered_send, self.discovered = trio.open_memory_channel[list[str]](64)
        self._addrs: tuple[float, list[str]] = (float("-inf"), [])
        self._last_stream: dict[str, float] = {}
        self.banned: set[str] = set()

    def _on_discovered(self, token: trio.lowlevel.TrioToken, info: object) -> None:
        """mDNS callback, called from zeroconf's thread: hand the addresses to trio."""
        peer = str(info.peer_id)  # type: ignore[attr-defined]
        addrs = [f"{a}/p2p/{peer}" for a in info.addrs]  # type: ignore[attr-defined]
        if peer != self.peer_id:
            try:
                token.run_sync_soon(self._discovered_send.send_nowait, addrs)
            except (trio.RunFinishedError, trio.WouldBlock):
                pass  # shutting down, or a burst of discoveries: the next one comes again

    def listen_addrs(self) -> list[str]:
        """Our dialable addresses, each ending in /p2p/<peer id>."""
        at, addrs = self._addrs
        now = trio.current_time()
        if now - at > ADDRS_CACHE_S or not addrs:
            addrs = [str(a) for a in self._host.get_addrs()]  # type: ignore[attr-defined]
            self._addrs = (now, addrs)
        return list(addrs)

    def connected_peers(self) -> list[str]:
        """Peer ids with an open connection."""
        return [str(p) for p in self._host.get_connected_peers()]  # type: ignore[attr-defined]

    async def connect(self, maddr: str) -> str:
        """Dial a multiaddr that ends in /p2p/<peer id>; return the peer id."""
        try:
            info = info_from_p2p_addr(multiaddr.Multiaddr(maddr))
        except (ValueError, TypeError, KeyError) as exc:
            raise NetworkError(f"bad multiaddr {maddr!r}: {exc}") from exc
        if str(info.peer_id) == self.peer_id:
            return self.peer_id
        if str(info.peer_id) not in self.connected_peers():
            self._dial_only(info)
        try:
            with trio.fail_after(CONNECT_TIMEOUT):
                await self._host.connect(info)  # type: ignore[attr-defined]
        except trio.TooSlowError as exc:
            raise NetworkError(f"dial {maddr} timed out") from exc
        except Exception as exc:  # py-libp2p raises many unrelated types on dial failure
            raise NetworkError(f"dial {maddr} failed: {type(exc).__name__}: {exc}") from exc
        return str(info.peer_id)

    def _dial_only(self, info: object) -> None:
        """Make the next dial of this peer use exactly ``info``'s addresses.

        py-libp2p dials only the first stored TCP address of a peer and then refuses
        it for a while (negative cache): a peer that restarted on a new port could not
        be reached at its new address while the old one was remembered.
        """
        peer = info.peer_id  # type: ignore[attr-defined]
        self._host.get_peerstore().clear_addrs(peer)  # type: ignore[attr-defined]
        self._host.get_network().unblock_peer(peer)  # type: ignore[attr-defined]

    async def disconnect(self, peer_id: str) -> None:
        """Close every connection to ``peer_id``."""
        try:
            await self._host.disconnect(ID.from_base58(peer_id))  # type: ignore[attr-defined]
        except Exception as exc:  # py-libp2p raises assorted types closing a dying link
            log.debug("disconnect failed", peer=peer_id, error=f"{type(exc).__name__}: {exc}")

    def stream_idle(self, peer_id: str) -> float:
        """Seconds since a stream to or from ``peer_id`` was last opened."""
        return trio.current_time() - self._last_stream.get(peer_id, float("-inf"))

    def _used(self, peer_id: str) -> None:
        self._last_stream[peer_id] = trio.current_time()
        if len(self._last_stream) > 4096:  # forget the oldest half
            keep = sorted(self._last_stream.items(), key=lambda kv: kv[1])[2048:]
            self._last_stream = dict(keep)

    async def open_stream(self, peer_id: str, protocol: str) -> Libp2pByteStream:
        """Open a stream to a connected (or dialable) peer."""
        self._used(peer_id)
        try:
            with trio.fail_after(CONNECT_TIMEOUT):
                raw = await self._host.new_stream(ID.from_base58(peer_id), [TProtocol(protocol)])  # type: ignore[attr-defined]
        except trio.TooSlowError as exc:
            raise NetworkError(f"stream to {peer_id} timed out") from exc
        except Exception as exc:
            raise NetworkError(f"stream to {peer_id} failed: {type(exc).__name__}: {exc}") from exc
        return Libp2pByteStream(raw, peer_id)

    def set_stream_handler(self, protocol: str, handler: StreamHandler) -> None:
        """Serve incoming streams of ``protocol`` with ``handler``."""

        async def adapter(raw: object) -> None:
            peer = str(raw.muxed_conn.peer_id)  # type: ignore[attr-defined]
            self._used(peer)
            await handler(Libp2pByteStream(raw, peer))

        self._host.set_stream_handler(TProtocol(protocol), adapter)  # type: ignore[attr-defined]

    async def publish(self, data: bytes) -> None:
        """Publish on our topic (never blocks; py-libp2p drops when queues are full)."""
        await self._pubsub.publish(self.topic, data)

    def set_validator(self, validator: Validator) -> None:
        """Run ``validator`` on every message before pubsub delivers or relays it."""

        def check(forwarder: ID, msg: object) -> bool:
            try:
                sender = str(ID(msg.from_id))  # type: ignore[attr-defined]
            except (ValueError, TypeError):
                return False
            return validator(sender, str(forwarder), bytes(msg.data))  # type: ignore[attr-defined]

        self._pubsub.set_topic_validator(self.topic, check, False)

    def ban(self, peer_id: str) -> None:
        """Drop the peer's gossip (as sender or relay); a connection it opens again is
        closed as soon as it is up (see :class:`BannedPeerCloser`)."""
        self.banned.add(peer_id)
        try:
            self._pubsub.add_to_blacklist(ID.from_base58(peer_id))
        except ValueError:
            pass

    def unban(self, peer_id: str) -> None:
        """Accept the peer's gossip again."""
        self.banned.discard(peer_id)
        try:
            self._pubsub.remove_from_blacklist(ID.from_base58(peer_id))
        except ValueError:
            pass

    async def messages(self) -> AsyncIterator[GossipMessage]:
        """Messages from other peers on our topic, forever."""
        while True:
            msg = await self._subscription.get()  # type: ignore[attr-defined]
            try:
                sender = str(ID(msg.from_id))
            except (ValueError, TypeError):
                sender = "?"
            if sender != self.peer_id:
                yield GossipMessage(sender, bytes(msg.data))


ADDRS_TTL_S = 5.0
T = TypeVar("T")


class BannedPeerCloser:
    """A swarm notifee that closes a banned peer's new connection once it is up.

    The connection gate only sees addresses, so a banned peer could relink at once
    and hold the link until the connection manager's next tick (up to seconds)."""

    def __init__(self, network: Network) -> None:
        self._network = network

    async def connected(self, _swarm: object, conn: object) -> None:
        peer = str(conn.muxed_conn.peer_id)  # type: ignore[attr-defined]
        if peer in self._network.banned:
            log.info("connection from a banned peer closed", peer=peer)
            await conn.close()  # type: ignore[attr-defined]

    async def opened_stream(self, _swarm: object, _stream: object) -> None:
        return None

    async def closed_stream(self, _swarm: object, _stream: object) -> None:
        return None

    async def disconnected(self, _swarm: object, _conn: object) -> None:
        return None

    async def listen(self, _swarm: object, _addr: object) -> None:
        return None

    async def listen_close(self, _swarm: object, _addr: object) -> None:
        return None


def _replay_discovered(host: object, handler: Callable[[object], None]) -> None:
    """Hand ``handler`` the peers mDNS found while the host started, before the handler
    was registered (py-libp2p's auto-connector used to dial those from the peerstore;
    it is off, see :func:`no_auto_connect`)."""
    listener = getattr(getattr(host, "mDNS", None), "listener", None)
    found = getattr(listener, "discovered_services", {})
    for peer_id, _ in list(found.values()):
        addrs = host.get_peerstore().addrs(peer_id)  # type: ignore[attr-defined]
        if addrs:
            handler(PeerInfo(peer_id, addrs))


def _remembered(fn: Callable[[], list[T]], ttl: float) -> Callable[[], list[T]]:
    """``fn`` called at most every ``ttl`` seconds (a copy of its list each time).
    py-libp2p rebuilds the host's addresses (multiaddr parsing) for every pubsub RPC it
    sends, to see whether its signed peer record is still current (3 % of the CPU a
    received write cost a daemon, by py-spy)."""
    last: list[tuple[float, list[T]]] = []

    def call() -> list[T]:
        now = time.monotonic()
        if not last or now - last[0][0] > ttl:
            last[:] = [(now, fn())]
        return list(last[0][1])

    return call


def mesh_bounds(degree: int) -> dict[str, int]:
    """Gossipsub's mesh degree D and the bounds it is kept within.

    Every message reaches a peer once from each of its mesh peers, so the mesh's size,
    not the connection count, sets what an idle heartbeat costs: with D_hi = 12 and
    8-12 links an idle announce arrived about 12 times at N = 20."""
    return {
        "degree": degree,
        "degree_low": max(1, 2 * degree // 3),
        "degree_high": max(degree + 1, 3 * degree // 2),
    }


@asynccontextmanager
async def open_network(
    key_pair: KeyPair,
    listen: Sequence[str],
    topic: str,
    *,
    mdns: bool = False,
    psk: str | None = None,
    max_gossip_per_second: float = 200.0,
    heartbeat: float = 1.0,
    degree: int = 4,
    on_drop: Callable[[], None] = lambda: None,
    max_connections: int = 64,
    connections_per_ip_per_second: float = 0.0,
    on_refused: Callable[[], None] = lambda: None,
) -> AsyncIterator[Network]:
    """Start a host listening on ``listen`` and subscribed to ``topic``.

    ``on_drop()`` is called for each message py-libp2p drops because our subscription's
    buffer is full (the listener must keep reading). ``max_connections`` is a hard cap
    (our connection manager keeps far fewer); py-libp2p's own auto-connector, which
    dials every peer it has an address of, is switched off (:func:`no_auto_connect`).
    Inbound connections beyond ``connections_per_ip_per_second`` (bursts of 4 s worth;
    0 = unlimited) from one address are refused before the handshake, and
    ``on_refused()`` is called."""
    tune_yamux()
    remember_verified_records()
    noise = NoiseTransport(key_pair, noise_privkey=create_x25519().private_key)
    connections = ConnectionConfig(
        max_connections=max_connections,
        min_connections=0,
        low_watermark=0,
        high_watermark=max_connections,
    )
    host = new_host(
        key_pair=key_pair,
        sec_opt={NOISE_ID: noise},
        muxer_opt={YAMUX_ID: Yamux},
        enable_mDNS=mdns,
        psk=psk,
        connection_config=connections,
    )
    host.get_addrs = _remembered(host.get_addrs, ADDRS_TTL_S)  # type: ignore[method-assign]
    swarm = host.get_network()
    no_auto_connect(swarm)
    swarm.retry_config = RetryConfig(max_retries=0)  # type: ignore[attr-defined]  # we back off
    if connections_per_ip_per_second > 0:
        limiter = RateLimiter(connections_per_ip_per_second, 4 * connections_per_ip_per_second)
        swarm.connection_gate = ConnectionRateGate(  # type: ignore[attr-defined]
            swarm.connection_gate,
            limiter,
            on_refused,  # type: ignore[attr-defined]
        )
    gossip = GossipSub(
        protocols=[PROTOCOL_ID_V11, PROTOCOL_ID],
        **mesh_bounds(degree),
        heartbeat_interval=heartbeat,
        spam_protection_enabled=True,
        max_messages_per_topic_per_second=max_gossip_per_second,
    )
    pubsub = GuardedPubsub(host, gossip)
    try:
        addrs = [multiaddr.Multiaddr(a) for a in listen]
    except (ValueError, TypeError) as exc:
        raise NetworkError(f"bad listen address: {exc}") from exc
    async with host.run(addrs):
        async with background_trio_service(pubsub), background_trio_service(gossip):
            await pubsub.wait_until_ready()
            subscription = await pubsub.subscribe(topic)
            network = Network(host, pubsub, topic, subscription)
            swarm.register_notifee(BannedPeerCloser(network))  # type: ignore[attr-defined]
            token = trio.lowlevel.current_trio_token()

            def handler(info: object) -> None:
                network._on_discovered(token, info)

            if mdns:
                peerDiscovery.register_peer_discovered_handler(handler)  # type: ignore[arg-type]
                _replay_discovered(host, handler)
            adopt_libp2p_logger()  # in case py-libp2p was first imported after our set-up
            stop_counting = count_subscription_drops(on_drop)
            try:
                yield network
            finally:
                stop_counting()
                peerDiscovery.unregister_peer_discovered_handler(handler)  # type: ignore[arg-type]
