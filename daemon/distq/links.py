"""Query links: the ``/duckpeer/query/1`` streams between peers, kept open.

Every peer opens one stream to each peer it hears announce (at most one per peer)
and keeps it: as a fragment *worker*, it sends partial results and its ``Capacity``
up that stream; the peer at the other end, as *coordinator*, sends ``QueryFragment``s
down it. A fragment also goes out on gossip (that is the protocol); the stream copy
usually arrives first, and the worker runs whichever copy comes first (deduplicated by
query id). Fragments from a stream pass the same checks as gossiped ones.

A link that breaks is dropped and opened again on the next round (a failed open waits
``REOPEN`` seconds). Every read has a deadline: a worker hears its coordinator only
when it queries, so an idle link is closed after ``IDLE`` seconds and reopened; the
worker's ``Capacity`` (sent when it changes the worker's weight by more than 25 %, at
most every ``CAPACITY_MIN_GAP`` seconds, and at least every ``CAPACITY_KEEPALIVE``
seconds) keeps the coordinator's side of it alive. The weight follows the host's load
average, which moves all the time on a shared host: with a 10 % threshold and no gap,
an idle daemon of 20 on two cores sent a report down its 8-12 links every few seconds,
and every peer paid for reading them.
"""

from __future__ import annotations

from collections.abc import Callable

import structlog
import trio

from daemon.distq.capacity import worth_reporting
from daemon.net.framed import FramedStream, StreamClosedError
from daemon.net.network import Libp2pByteStream, NetworkError
from daemon.node import Node
from protocol import messages
from protocol.errors import ProtocolError, RemoteProtocolError
from protocol.messages import Capacity, PartialFailed, PartialResult, QueryFragment

log = structlog.get_logger("distq")

PROTOCOL = "/duckpeer/query/1"
FRAME_OVERHEAD = 4096
IDLE = 600.0  # a read waits this long for the next frame
ROUND = 1.0  # how often links are checked and opened while some are missing
QUIET_ROUND = 4.0  # ... and while every link is up (an idle daemon wakes less)
REOPEN = 5.0  # a peer whose link failed to open is tried again after this
CAPACITY_EVERY = 2.0  # seconds between looks at our capacity; a report goes out when ...
CAPACITY_CHANGE = 0.25  # ... it moved a slice weight by more than this (the capacity
# model's own noise band) and CAPACITY_MIN_GAP passed since the last report, or ...
CAPACITY_MIN_GAP = 10.0
CAPACITY_KEEPALIVE = 20.0  # ... this long passed (coordinators forget reports after 60 s)
SEND_TIMEOUT = 2.0  # a fragment stuck on a link is left to its gossip copy

OnFragment = Callable[[str, QueryFragment], None]
OnPartial = Callable[[str, PartialResult | PartialFailed], bool]
OnCapacity = Callable[[str, Capacity], None]
CapacityNow = Callable[[], Capacity]


class Links:
    """Both ends of this node's query links."""

    def __init__(self, node: Node, capacity_now: CapacityNow) -> None:
        self.node = node
        self.capacity_now = capacity_now
        self.up: dict[str, FramedStream] = {}  # opened by us: we are the worker
        self.down: dict[str, FramedStream] = {}  # opened by the peer: we coordinate
        self._locks: dict[tuple[str, str], trio.Lock] = {}
        self._failed_at: dict[str, float] = {}
        self._opening: set[str] = set()
        self.on_fragment: OnFragment = lambda peer, fragment: None
        self.on_partial: OnPartial = lambda peer, msg: False
        self.on_capacity: OnCapacity = lambda peer, capacity: None

    @property
    def max_frame(self) -> int:
        return self.node.config.distq_max_partial_bytes + FRAME_OVERHEAD

    def _lock(self, side: str, peer: str) -> trio.Lock:
        return self._locks.setdefault((side, peer), trio.Lock())

    # -- worker side -------------------------------------------------------------------

    async def serve(self, nursery: trio.Nursery) -> None:
        """Open links to the peers we hear from, and report our capacity on them."""
        looked = reported_at = float("-inf")
        reported: Capacity | None = None
        while True:
            wanted = self._wanted()
            for peer in wanted:
                self._opening.add(peer)
                nursery.start_soon(self._open, peer, nursery)
            now = trio.current_time()
            if now - looked >= CAPACITY_EVERY:
                looked, capacity = now, self.capacity_now()
                since = now - reported_at
                if since >= CAPACITY_KEEPALIVE or (
                    since >= CAPACITY_MIN_GAP
                    and worth_reporting(capacity, reported, CAPACITY_CHANGE)
                ):
                    reported, reported_at = capacity, now
                    payload = messages.encode(capacity)
                    for peer in list(self.up):
                        nursery.start_soon(self._send_up_quietly, peer, payload)
            await trio.sleep(ROUND if wanted or self._opening else QUIET_ROUND)

    def _wanted(self) -> list[str]:
        node, now = self.node, trio.current_time()
        connected = set(node.connected_peers())
        return [
            p
            for p in node.peers
            if p in connected
            and p not in self.up
            and p not in self._opening
            and node.config.trusts(p)
            and now - self._failed_at.get(p, float("-inf")) >= REOPEN
        ]

    async def _open(self, peer: str, nursery: trio.Nursery) -> None:
        try:
            await self._ensure_up(peer, nursery)
        except (NetworkError, StreamClosedError) as exc:
            self._failed_at[peer] = trio.current_time()
            log.debug("query link not opened", peer=peer, error=str(exc))
        finally:
            self._opening.discard(peer)

    async def _ensure_up(self, peer: str, nursery: trio.Nursery | None) -> FramedStream:
        async with self._lock("up", peer):
            framed = self.up.get(peer)
            if framed is not None:
                return framed
            assert self.node.network is not None
            stream = await self.node.network.open_stream(peer, PROTOCOL)
            framed = FramedStream(stream, self.max_frame, IDLE)
            await framed.send(messages.encode(self.capacity_now()))
            self.up[peer] = framed
        if nursery is not None:
            nursery.start_soon(self._read_down, peer, framed)
        return framed

    async def send_up(self, peer: str, payload: bytes, nursery: trio.Nursery) -> None:
        """Send a partial to coordinator ``peer``, opening the link (once) if needed."""
        for attempt in range(2):
            framed = await self._ensure_up(peer, nursery)
            try:
                async with self._lock("up", peer):
                    await framed.send(payload)
                return
            except StreamClosedError:
                await self._drop_up(peer, framed)
                if attempt:
                    raise

    async def _send_up_quietly(self, peer: str, payload: bytes) -> None:
        framed = self.up.get(peer)
        if framed is None:
            return
        try:
            async with self._lock("up", peer):
                with trio.fail_after(SEND_TIMEOUT):
                    await framed.send(payload)
        except (StreamClosedError, trio.TooSlowError):
            await self._drop_up(peer, framed)

    async def _read_down(self, peer: str, framed: FramedStream) -> None:
        """Fragments our coordinator ``peer`` sends down the link we opened."""
        try:
            while (frame := await framed.receive()) is not None:
                msg = messages.decode(frame, self.max_frame)
                if not isinstance(msg, QueryFragment):
                    raise RemoteProtocolError(f"unexpected {type(msg).__name__} from a coordinator")
                self.on_fragment(peer, msg)
        except (ProtocolError, StreamClosedError, trio.TooSlowError) as exc:
            if not isinstance(exc, trio.TooSlowError):
                self._failed_at[peer] = trio.current_time()  # e.g. a peer of an older version
                self.node.metrics.inc("distq_stream_errors")
                log.warning("query link failed", peer=peer, error=f"{type(exc).__name__}: {exc}")
        finally:
            await self._drop_up(peer, framed)

    async def _drop_up(self, peer: str, framed: FramedStream) -> None:
        if self.up.get(peer) is framed:
            del self.up[peer]
        await framed.aclose()

    # -- coordinator side ----------------------------------------------------------------

    async def handle(self, stream: Libp2pByteStream) -> None:
        """A peer's link to us: its partials and capacity up, our fragments down."""
        peer = stream.peer_id
        if not self.node.config.trusts(peer):
            self.node.metrics.inc("distq_untrusted")
            await stream.reset()
            return
        framed = FramedStream(stream, self.max_frame, IDLE)
        self.down[peer] = framed
        try:
            while (frame := await framed.receive()) is not None:
                self._received(peer, messages.decode(frame, self.max_frame))
        except (ProtocolError, StreamClosedError, trio.TooSlowError) as exc:
            self.node.metrics.inc("distq_stream_errors")
            log.warning("result stream failed", peer=peer, error=f"{type(exc).__name__}: {exc}")
            await stream.reset()
        finally:
            if self.down.get(peer) is framed:
                del self.down[peer]
            await framed.aclose()

    def _received(self, peer: str, msg: messages.Message) -> None:
        if isinstance(msg, Capacity):
            self.on_capacity(peer, msg)
        elif isinstance(msg, PartialResult | PartialFailed):
            if not self.on_partial(peer, msg):
                self.node.metrics.inc("distq_unexpected_partials")
        else:
            raise RemoteProtocolError(f"unexpected {type(msg).__name__} on a result stream")

    async def send_down(self, peer: str, payload: bytes) -> bool:
        """Send a fragment down ``peer``'s link to us; False if there is none or it broke
        (the gossip copy still goes)."""
        framed = self.down.get(peer)
        if framed is None:
            return False
        try:
            async with self._lock("down", peer):
                with trio.fail_after(SEND_TIMEOUT):
                    await framed.send(payload)
            return True
        except (StreamClosedError, trio.TooSlowError):
            if self.down.get(peer) is framed:
                del self.down[peer]
            await framed.aclose()
            return False
