"""The daemon's shared state: store access from trio, peers, metrics, change signal."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

import structlog
import trio

from daemon.config import Config
from daemon.metrics.counters import Metrics
from daemon.ratelimit import RateLimiter
from daemon.store.database import ApplyResult, Store, StoreError
from daemon.store.signing import Signer, signature_problem
from protocol.changeset import Changeset, Decoded, TableChanges
from protocol.messages import MAX_PUSHED_BLOCKS, MAX_PUSHED_BYTES

if TYPE_CHECKING:
    from daemon.net.adapter import NetworkAdapter

log = structlog.get_logger("node")
T = TypeVar("T")


@dataclass
class PeerState:
    """What we know of a member: its last announced (or predicted) state, and when we
    last had evidence that it is alive (an announce, a sync, an open connection)."""

    peer_id: str
    db_cid: str = ""
    vector: dict[str, int] = field(default_factory=dict)
    addrs: tuple[str, ...] = ()
    load: float = 0.0
    last_seen: float = 0.0  # wall clock (for people and reports)
    last_dial: float = float("-inf")  # when we last dialed it on hearing its announce
    seen_at: float = float("-inf")  # trio clock of the same moment (for timeouts)
    period: float = 0.0  # its announced heartbeat period in seconds (0: not announced)
    suspect: str = ""  # why we think it may be gone (it then times out sooner)
    left: str = ""  # why it left (in Node.departed only)


# Converting a large result to Python objects (and encoding it) holds the GIL; query
# workers take this lock around each slice of such work, so the event loop competes
# with one of them at a time for the GIL rather than with all of them.
PYTHON_WORK = threading.Lock()


class QueryBusy(StoreError):
    """Every query worker is busy and the queue is full."""


class QueryPool:
    """Worker threads for queries, apart from the store reads of control methods,
    replication and gossip, with a bounded queue: a caller beyond it is refused at once
    (``QueryBusy``) rather than left waiting."""

    def __init__(self, workers: int, queue: int) -> None:
        self.workers, self.queue = workers, queue
        self._limiter = trio.CapacityLimiter(workers)
        self._inside = 0  # running + waiting

    @property
    def running(self) -> int:
        """Queries running now."""
        return int(self._limiter.borrowed_tokens)

    @property
    def waiting(self) -> int:
        """Queries queued for a worker."""
        return self._inside - self.running

    async def run(self, fn: Callable[[Store], T], store: Store) -> T:
        """Run ``fn(store)`` in a query worker; not abandoned on cancel."""
        if self._inside >= self.workers + self.queue:
            raise QueryBusy(
                f"{self.running} queries running and {self.waiting} waiting "
                f"(query_workers {self.workers}, query_queue {self.queue}); try again"
            )
        self._inside += 1
        try:
            return await trio.to_thread.run_sync(fn, store, limiter=self._limiter)
        finally:
            self._inside -= 1


class Node:
    """Owns the store and serializes writes to it; everything else reads from here."""

    def __init__(
        self, config: Config, store: Store, peer_id: str, sign: Signer | None = None
    ) -> None:
        self.config = config
        self.sign = sign
        self.store = store
        self.peer_id = peer_id
        self.metrics = Metrics()
        self.peers: dict[str, PeerState] = {}  # live members (daemon/net/membership.py)
        self.departed: dict[str, PeerState] = {}  # members that left, kept for a while
        self.network: NetworkAdapter | None = None
        self.monitor: Any = None  # daemon.monitor.service.Monitor, set by its service
        self.watches: Any = None  # daemon.watch.service.Watches, set by its service
        self.started_at = time.time()
        self._write_limiter = trio.CapacityLimiter(1)
        self._read_limiter = trio.CapacityLimiter(4)
        self.queries = QueryPool(config.query_workers, config.query_queue)
        self._changed = trio.Event()
        self.sync_limiter = RateLimiter(config.sync_requests_per_second, 20)
        self.gossip_limiter = RateLimiter(config.gossip_per_peer_per_second, 100)
        self._pushable: list[bytes] = []
        self._push_overflow = False
        self.push_base = ""  # our database CID before the first of the pushable blocks
        self.sync_wanted: set[str] = set()
        self.dialing: set[str] = set()
        self.announce_wanted = False  # membership news to announce now (see announce_soon)
        self.gone: set[str] = set()  # peers we lost, for our next announce
        self.banned: dict[str, float] = {}  # peer -> trio time its gossip ban ends
        self.parting: set[str] = set()  # peers that said they are closing our connection
        self.announce_period = config.announce_interval  # our heartbeat period now
        self.connections: Any = None  # daemon.net.connmgr.ConnectionManager, set on first use
        self.announcer: Any = None  # daemon.net.gossip.Announcer, set by its service
        self._sync_wakeup = trio.Event()
        # An empty store told to bootstrap from a snapshot takes no delta until it has
        # (daemon/snapshot/service.py releases it); a snapshot loads only into an empty store.
        self.sync_held = config.bootstrap_snapshot and not store.heads
        # Feature services handle gossip message types other than Announce here:
        # ``handler(sender, message)``, called from the listener, must not block.
        self.gossip_handlers: dict[type, Callable[[str, Any], None]] = {}

    # -- store access -------------------------------------------------------------------

    async def write(self, fn: Callable[[Store], T]) -> T:
        """Run ``fn(store)`` in the single writer thread; not abandoned on cancel."""
        result = await trio.to_thread.run_sync(fn, self.store, limiter=self._write_limiter)
        self.notify_changed()
        return result

    async def write_derived(self, fn: Callable[[Store], T]) -> T:
        """Run ``fn(store)`` in the writer thread without signalling a change: for local
        derived state (the knowledge graph) that is not part of the replicated database."""
        return await trio.to_thread.run_sync(fn, self.store, limiter=self._write_limiter)

    async def read(self, fn: Callable[[Store], T]) -> T:
        """Run a read-only ``fn(store)`` in a reader thread (control methods,
        replication: short reads that must not wait behind queries)."""
        return await trio.to_thread.run_sync(fn, self.store, limiter=self._read_limiter)

    async def query(self, fn: Callable[[Store], T]) -> T:
        """Run a query ``fn(store)`` in the query pool (QueryBusy when it is full)."""
        return await self.queries.run(fn, self.store)

    async def commit_local(self, build: Callable[[Store], Sequence[TableChanges]]) -> Decoded:
        """Build row changes and commit them as our next changeset, atomically."""

        def run(store: Store) -> tuple[str, Decoded]:
            before = store.db_cid()
            return before, store.commit_local(self.peer_id, build(store), self.sign)

        before, item = await self.write(run)
        self._remember_for_push(item.block, before)
        self.metrics.inc("changesets_committed")
        self.metrics.inc("rows_written", item.changeset.row_count())
        log.debug("committed", seq=item.changeset.seq, cid=item.cid)
        return item

    async def apply_blocks(self, blocks: list[bytes], peer: str) -> ApplyResult:
        """Apply changesets received from ``peer``."""
        config, me = self.config, self.peer_id

        def admit(cs: Changeset, block: bytes) -> str | None:
            if cs.origin != me and not config.trusts(cs.origin):
                return f"origin {cs.origin} is not a trusted peer"
            return signature_problem(cs, block)

        result = await self.write(lambda store: store.apply_blocks(blocks, admit))
        self.metrics.inc("changesets_applied", result.applied)
        self.metrics.inc("changesets_duplicate", result.duplicates)
        self.metrics.inc("conflicts_found", result.conflicts)
        for cid, reason in result.rejected:
            self.metrics.inc("changesets_rejected")
            log.warning("changeset rejected", peer=peer, cid=cid, reason=reason)
        return result

    def _remember_for_push(self, block: bytes, before: str = "") -> None:
        if not self._pushable and not self._push_overflow:
            self.push_base = before  # the CID the pushed blocks start from
        total = sum(map(len, self._pushable)) + len(block)
        too_many = len(self._pushable) >= MAX_PUSHED_BLOCKS  # receivers refuse more
        if self._push_overflow or total > MAX_PUSHED_BYTES or too_many:
            self._push_overflow, self._pushable = True, []
        else:
            self._pushable.append(block)

    def take_pushable(self) -> tuple[bytes, ...]:
        """Our small changesets committed since the last announce (all or nothing)."""
        blocks, overflow = tuple(self._pushable), self._push_overflow
        self._pushable, self._push_overflow = [], False
        return () if overflow else blocks

    # -- change notification ----------------------------------------------------------------

    def notify_changed(self) -> None:
        """Wake everyone waiting for the database to change."""
        self._changed.set()
        self._changed = trio.Event()

    def announce_soon(self) -> None:
        """Ask the announcer for an announce now, database change or not."""
        self.announce_wanted = True
        self.notify_changed()

    async def wait_changed(self) -> None:
        """Sleep until the next local or remote commit."""
        await self._changed.wait()

    # -- sync scheduling -----------------------------------------------------------------------

    def request_sync(self, peer_id: str) -> None:
        """Ask the sync service to pull from ``peer_id`` soon (deduplicated)."""
        self.sync_wanted.add(peer_id)
        self._sync_wakeup.set()

    async def next_sync_batch(self) -> set[str]:
        """Wait for sync requests and take them all."""
        await self._sync_wakeup.wait()
        self._sync_wakeup = trio.Event()
        wanted, self.sync_wanted = self.sync_wanted, set()
        return wanted

    # -- state summaries ---------------------------------------------------------------------

    def load(self) -> float:
        """A rough load figure gossiped to peers (busy reader/writer slots)."""
        busy = self._read_limiter.borrowed_tokens + self._write_limiter.borrowed_tokens
        return float(busy + self.queries.running)

    def connected_peers(self) -> list[str]:
        """Peer ids we hold a connection to."""
        return self.network.connected_peers() if self.network else []
