"""An in-memory peer network: the :class:`~daemon.net.adapter.NetworkAdapter` interface
over a simulated fabric, in trio time (virtual under ``trio.testing.MockClock``).

What it models, and what it does not:

- **Links**: every pair of peers has a fixed one-way latency (drawn once, uniformly
  in ``latency``); data on one connection arrives in order. Gossip deliveries are
  lost with probability ``loss`` per link (py-libp2p's queues drop too); stream data
  is reliable, as TCP is. There is no bandwidth limit and no CPU cost: Python work
  takes no virtual time.
- **Connections**: dialing costs two round trips (TCP and the Noise handshake) and
  succeeds only if someone listens at the address, with the expected peer id, in the
  same partition group, below ``max_connections``. Opening a stream costs one round
  trip (multistream-select); a stream to a protocol the peer does not serve fails.
  A partition or a peer going offline breaks its connections and resets their
  streams at once.
- **Pubsub**: a message is flooded over *all* of a peer's connections (floodsub),
  deduplicated by message id, and passes the validator before it is delivered or
  relayed, as in py-libp2p. py-libp2p's gossipsub instead forwards to a mesh of 2 to 6
  of the connections (``gossip_degree`` 4) and gossips message ids (IHAVE) to a few
  others; with our bounded connections (8 to 12) the simulator therefore counts more
  duplicate deliveries than a real cluster would. Each message is counted with
  :data:`PUBSUB_OVERHEAD` bytes of envelope (sender, sequence number, topic,
  signature, key). The subscription buffer holds :data:`SUBSCRIPTION_BUFFER`
  messages and drops the rest, as py-libp2p's does.
"""

from __future__ import annotations

import dataclasses
import hashlib
import heapq
import itertools
import math
import random
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import trio

from daemon.net.adapter import GossipMessage, NetworkError, StreamHandler, Validator
from daemon.net.framed import StreamClosedError

PUBSUB_OVERHEAD = 140
SUBSCRIPTION_BUFFER = 32
SEEN_TTL_S = 120.0
TICK_S = 0.001  # delivery times are rounded up to this grid (fewer scheduler wake-ups)


@dataclass
class Traffic:
    """What one peer sent and received."""

    gossip_in: int = 0
    gossip_in_bytes: int = 0
    gossip_out: int = 0
    gossip_out_bytes: int = 0
    duplicates: int = 0
    stream_in_bytes: int = 0
    stream_out_bytes: int = 0
    streams_opened: int = 0
    dials: int = 0

    def add(self, other: Traffic) -> None:
        """Accumulate ``other`` into this one."""
        for name in self.__dataclass_fields__:
            setattr(self, name, getattr(self, name) + getattr(other, name))


class MemFabric:
    """The simulated world all :class:`MemNetwork` peers live in."""

    def __init__(
        self,
        *,
        latency: tuple[float, float] = (0.001, 0.010),
        loss: float = 0.0,
        seed: int = 0,
        max_connections: int = 64,
    ) -> None:
        self.latency_range = latency
        self.loss = loss
        self.seed = seed
        self.random = random.Random(seed)
        self.max_connections = max_connections
        self.listening: dict[str, MemNetwork] = {}  # address (no /p2p part) -> network
        self.online: dict[str, MemNetwork] = {}  # peer id -> network
        self.group: dict[str, int] = {}  # partition group per peer id (default 0)
        self.traffic: dict[str, Traffic] = {}
        self.serving = False
        self._heap: list[tuple[float, int, MemNetwork, Callable[[], None]]] = []
        self._order = itertools.count()
        self._wake = trio.Event()
        # Observers for measurements: (peer, message id) on publish, and (peer, message
        # id, hops) on the first delivery of a message to a peer.
        self.on_publish: Callable[[str, tuple[str, int]], None] | None = None
        self.on_first_delivery: Callable[[str, tuple[str, int], int], None] | None = None

    def latency(self, a: str, b: str) -> float:
        """One-way latency between two peers (the same both ways, fixed)."""
        key = "|".join(sorted((a, b))) + f"|{self.seed}"
        unit = int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "big")
        lo, hi = self.latency_range
        return lo + (hi - lo) * unit / float(1 << 64)

    def reachable(self, a: str, b: str) -> bool:
        """Both online and on the same side of any partition."""
        return (
            a in self.online and b in self.online and self.group.get(a, 0) == self.group.get(b, 0)
        )

    def stats(self, peer_id: str) -> Traffic:
        """The traffic counters of a peer (kept across its restarts)."""
        return self.traffic.setdefault(peer_id, Traffic())

    def partition(self, groups: Iterable[Iterable[str]]) -> None:
        """Split the peers into groups that cannot reach each other (others: group 0)."""
        self.group = {peer: i + 1 for i, members in enumerate(groups) for peer in members}
        for net in list(self.online.values()):
            for peer in list(net.connections):
                if not self.reachable(net.peer_id, peer):
                    net.drop_connection(peer)

    def heal(self) -> None:
        """Remove every partition."""
        self.group = {}

    # -- delivery ------------------------------------------------------------------------

    def schedule(self, at: float, target: MemNetwork, deliver: Callable[[], None]) -> None:
        """Run ``deliver`` at ``at`` if ``target`` is still online then (rounded up to
        the :data:`TICK_S` grid: one wake-up delivers everything due in a tick)."""
        at = math.ceil(at / TICK_S) * TICK_S
        earliest = not self._heap or at < self._heap[0][0]
        heapq.heappush(self._heap, (at, next(self._order), target, deliver))
        if earliest:
            self._wake.set()

    async def serve(self) -> None:
        """Deliver scheduled data and messages, in time order, forever (one task for the
        whole fabric: far fewer scheduler wake-ups than a task per peer)."""
        self.serving = True
        try:
            while True:
                now = trio.current_time()
                while self._heap and self._heap[0][0] <= now:
                    _, _, target, deliver = heapq.heappop(self._heap)
                    if self.online.get(target.peer_id) is target:
                        deliver()
                        target.delivered += 1
                        if target.delivered > 4096:
                            target.delivered = 0
                            target.forget_seen()
                self._wake = trio.Event()
                if self._heap:
                    with trio.move_on_at(self._heap[0][0]):
                        await self._wake.wait()
                else:
                    await self._wake.wait()
        finally:
            self.serving = False


@dataclass
class _Pipe:
    """One direction of a stream."""

    buffer: bytearray = field(default_factory=bytearray)
    eof: bool = False
    broken: bool = False
    event: trio.Event = field(default_factory=trio.Event)

    def wake(self) -> None:
        self.event.set()
        self.event = trio.Event()


class MemStream:
    """One end of an in-memory stream (the :class:`~daemon.net.adapter.PeerStream`
    interface)."""

    def __init__(self, net: MemNetwork, peer_id: str, incoming: _Pipe, outgoing: _Pipe) -> None:
        self.peer_id = peer_id
        self._net = net
        self._in = incoming
        self._out = outgoing
        self._closed = False

    async def read(self, max_bytes: int) -> bytes:
        while not self._in.buffer and not self._in.eof and not self._in.broken:
            await self._in.event.wait()
        if self._in.broken:
            raise StreamClosedError("stream reset")
        data = bytes(self._in.buffer[:max_bytes])
        del self._in.buffer[:max_bytes]
        return data

    async def write(self, data: bytes) -> None:
        if self._out.broken or self._closed:
            raise StreamClosedError("stream reset or closed")
        await trio.lowlevel.checkpoint()
        self._net.stats.stream_out_bytes += len(data)
        self._net.send_later(self.peer_id, lambda: self._arrive(bytes(data)))

    def _arrive(self, data: bytes) -> None:
        if not self._out.broken:
            self._out.buffer += data
            self._out.wake()
            remote = self._net.fabric.online.get(self.peer_id)
            if remote is not None:
                remote.stats.stream_in_bytes += len(data)

    async def close(self) -> None:
        await trio.lowlevel.checkpoint()
        if not self._closed:
            self._closed = True  # the reader sees the end after the data in flight
            self._net.send_later(self.peer_id, self._end)

    def _end(self) -> None:
        self._out.eof = True
        self._out.wake()

    async def reset(self) -> None:
        await trio.lowlevel.checkpoint()
        self.break_now()

    def break_now(self) -> None:
        """Abort both directions at once."""
        for pipe in (self._in, self._out):
            pipe.broken = True
            pipe.wake()


@dataclass
class _Connection:
    streams: list[MemStream] = field(default_factory=list)


@dataclass(frozen=True)
class _Envelope:
    msg_id: tuple[str, int]
    sender: str
    data: bytes
    hops: int = 1


class MemNetwork:
    """One peer's view of the fabric (see the module docstring)."""

    def __init__(self, fabric: MemFabric, peer_id: str, addr: str, topic: str = "/sim") -> None:
        self.fabric = fabric
        self.peer_id = peer_id
        self.addr = addr
        self.topic = topic
        self.connections: dict[str, _Connection] = {}
        self.handlers: dict[str, StreamHandler] = {}
        self.validator: Validator | None = None
        self.banned: set[str] = set()
        self.on_drop: Callable[[], None] = lambda: None
        self.stats = fabric.stats(peer_id)
        self._seen: dict[tuple[str, int], float] = {}
        self._seqno = itertools.count(1)
        self._sub_send, self._sub_recv = trio.open_memory_channel[GossipMessage](
            SUBSCRIPTION_BUFFER
        )
        self._discovered_send, self.discovered = trio.open_memory_channel[list[str]](1)
        self.delivered = 0  # since the seen-message table was last pruned
        self._last_stream: dict[str, float] = {}
        self._nursery: trio.Nursery | None = None

    # -- being online -----------------------------------------------------------------

    @asynccontextmanager
    async def running(self) -> AsyncIterator[MemNetwork]:
        """Be online (listening at ``addr``) for the duration of the block."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            self.fabric.online[self.peer_id] = self
            self.fabric.listening[self.addr] = self
            if not self.fabric.serving:
                raise RuntimeError("the fabric delivers nothing: start MemFabric.serve first")
            try:
                yield self
            finally:
                self._go_offline()
                nursery.cancel_scope.cancel()

    def _go_offline(self) -> None:
        if self.fabric.online.get(self.peer_id) is self:
            del self.fabric.online[self.peer_id]
        if self.fabric.listening.get(self.addr) is self:
            del self.fabric.listening[self.addr]
        for peer in list(self.connections):
            self.drop_connection(peer)

    def send_later(self, peer: str, deliver: Callable[[], None]) -> None:
        """Run ``deliver`` at ``peer`` after the link's latency (if it is still there)."""
        remote = self.fabric.online.get(peer)
        if remote is not None:
            at = trio.current_time() + self.fabric.latency(self.peer_id, peer)
            self.fabric.schedule(at, remote, deliver)

    def forget_seen(self) -> None:
        """Drop message ids older than :data:`SEEN_TTL_S`."""
        cutoff = trio.current_time() - SEEN_TTL_S
        self._seen = {k: t for k, t in self._seen.items() if t >= cutoff}

    # -- connections --------------------------------------------------------------------

    def listen_addrs(self) -> list[str]:
        return [f"{self.addr}/p2p/{self.peer_id}"]

    def connected_peers(self) -> list[str]:
        return list(self.connections)

    async def connect(self, maddr: str) -> str:
        base, _, peer = maddr.rpartition("/p2p/")
        if not base or not peer:
            raise NetworkError(f"bad multiaddr {maddr!r}")
        if peer == self.peer_id:
            return peer
        if peer in self.connections:
            return peer
        self.stats.dials += 1
        target = self.fabric.listening.get(base)
        rtt = 2 * self.fabric.latency(self.peer_id, peer)
        await trio.sleep(2 * rtt)
        target = self.fabric.listening.get(base)
        if target is None or target.peer_id != peer:
            raise NetworkError(f"dial {maddr} failed: nobody with that id listens there")
        if not self.fabric.reachable(self.peer_id, peer) or self.peer_id not in self.fabric.online:
            raise NetworkError(f"dial {maddr} timed out")
        if peer in self.connections:
            return peer
        if self.peer_id in target.banned:  # it closes the link right after the handshake
            raise NetworkError(f"dial {maddr} refused: the peer has banned us")
        if len(target.connections) >= self.fabric.max_connections:
            raise NetworkError(f"dial {maddr} refused: the peer is at its connection limit")
        link = _Connection()
        self.connections[peer] = link
        target.connections[self.peer_id] = link
        return peer

    async def disconnect(self, peer_id: str) -> None:
        await trio.lowlevel.checkpoint()
        self.drop_connection(peer_id)

    def drop_connection(self, peer_id: str) -> None:
        """Close the connection to ``peer_id`` on both sides; reset its streams."""
        link = self.connections.pop(peer_id, None)
        if link is None:
            return
        remote = self.fabric.online.get(peer_id)
        if remote is not None and remote.connections.get(self.peer_id) is link:
            del remote.connections[self.peer_id]
        for stream in link.streams:
            stream.break_now()

    # -- streams --------------------------------------------------------------------------

    def set_stream_handler(self, protocol: str, handler: StreamHandler) -> None:
        self.handlers[protocol] = handler

    def stream_idle(self, peer_id: str) -> float:
        return trio.current_time() - self._last_stream.get(peer_id, float("-inf"))

    async def open_stream(self, peer_id: str, protocol: str) -> MemStream:
        if peer_id not in self.connections:
            raise NetworkError(f"stream to {peer_id} failed: not connected")
        await trio.sleep(2 * self.fabric.latency(self.peer_id, peer_id))
        link = self.connections.get(peer_id)
        remote = self.fabric.online.get(peer_id)
        if link is None or remote is None or remote._nursery is None:
            raise NetworkError(f"stream to {peer_id} failed: connection lost")
        handler = remote.handlers.get(protocol)
        if handler is None:
            raise NetworkError(f"stream to {peer_id} failed: protocol {protocol} not supported")
        there, back = _Pipe(), _Pipe()
        mine = MemStream(self, peer_id, incoming=back, outgoing=there)
        theirs = MemStream(remote, self.peer_id, incoming=there, outgoing=back)
        live = [s for s in link.streams if not s._in.broken][-64:]  # bound the bookkeeping
        link.streams[:] = [*live, mine, theirs]
        now = trio.current_time()
        self._last_stream[peer_id] = remote._last_stream[self.peer_id] = now
        self.stats.streams_opened += 1
        remote._nursery.start_soon(handler, theirs)
        return mine

    # -- gossip -----------------------------------------------------------------------------

    def set_validator(self, validator: Validator) -> None:
        self.validator = validator

    def ban(self, peer_id: str) -> None:
        self.banned.add(peer_id)
        self.drop_connection(peer_id)

    def unban(self, peer_id: str) -> None:
        self.banned.discard(peer_id)

    async def publish(self, data: bytes) -> None:
        await trio.lowlevel.checkpoint()
        envelope = _Envelope((self.peer_id, next(self._seqno)), self.peer_id, bytes(data))
        self._seen[envelope.msg_id] = trio.current_time()
        if self.fabric.on_publish is not None:
            self.fabric.on_publish(self.peer_id, envelope.msg_id)
        self._forward(envelope, exclude=())

    async def messages(self) -> AsyncIterator[GossipMessage]:
        async for msg in self._sub_recv:
            yield msg

    def _forward(self, envelope: _Envelope, exclude: Iterable[str]) -> None:
        size = len(envelope.data) + PUBSUB_OVERHEAD
        skip = set(exclude)
        for peer in self.connections:
            if peer in skip:
                continue
            self.stats.gossip_out += 1
            self.stats.gossip_out_bytes += size
            if self.fabric.loss and self.fabric.random.random() < self.fabric.loss:
                continue
            remote = self.fabric.online.get(peer)
            if remote is not None:
                self.send_later(peer, _gossip_delivery(remote, self.peer_id, envelope))

    def _receive(self, forwarder: str, envelope: _Envelope) -> None:
        self.stats.gossip_in += 1
        self.stats.gossip_in_bytes += len(envelope.data) + PUBSUB_OVERHEAD
        if forwarder not in self.connections:
            return  # the link broke while the message was in flight
        if forwarder in self.banned or envelope.sender in self.banned:
            return
        if envelope.msg_id in self._seen:
            self.stats.duplicates += 1
            return
        self._seen[envelope.msg_id] = trio.current_time()
        if envelope.sender == self.peer_id:
            return
        if self.fabric.on_first_delivery is not None:
            self.fabric.on_first_delivery(self.peer_id, envelope.msg_id, envelope.hops)
        if self.validator is not None and not self.validator(
            envelope.sender, forwarder, envelope.data
        ):
            return
        try:
            self._sub_send.send_nowait(GossipMessage(envelope.sender, envelope.data))
        except trio.WouldBlock:
            self.on_drop()
        relayed = dataclasses.replace(envelope, hops=envelope.hops + 1)
        self._forward(relayed, exclude=(forwarder, envelope.sender))


def _gossip_delivery(net: MemNetwork, forwarder: str, envelope: _Envelope) -> Callable[[], None]:
    return lambda: net._receive(forwarder, envelope)
