"""The coordinator of a distributed query: plan, slice, fan out, fail over, reduce.

The coordinator picks peers connected to it whose gossiped database CID equals its
own, weighs them by capacity (daemon/distq/capacity.py), cuts ``result_id`` into key
ranges sized by those weights (daemon/distq/keyspace.py), sends one ``QueryFragment``
naming who runs what down each named peer's query link and on gossip, runs its own
partitions meanwhile, and collects the peers' partials from the links. A peer that
fails, disconnects or misses the deadline has its partition reassigned to an idle
peer, or run locally. Every partition reads the database at the query's CID
(daemon/distq/atcid.py), so the result equals the single-node result; a write that
lands meanwhile makes the coordinator plan again at the new CID, up to
``distq_retries`` times.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import structlog
import trio

from daemon.distq.atcid import CidChanged, query_at
from daemon.distq.capacity import MIN_OBSERVED_ROWS, CapacityModel, local_capacity
from daemon.distq.keymap import KeyMaps
from daemon.distq.keyspace import STRATEGIES, expected_rows, key_partitioning, shares
from daemon.distq.plan import FACT_KEY, FACT_TABLE
from daemon.distq.reduce import PartialError, from_ipc, reduce_partials
from daemon.distq.slices import KEYS, RANGE_COLUMNS, Partitioning, fragment_sql
from daemon.distq.worker import scan_of
from daemon.node import Node
from daemon.store.database import Store, StoreError
from daemon.store.lazy import lazy_module
from protocol import messages
from protocol.messages import PartialFailed, PartialResult, QueryFragment

if TYPE_CHECKING:
    import pyarrow as pa
else:
    pa = lazy_module("pyarrow")


log = structlog.get_logger("distq")

LOCAL = "local"
INLINE_DECODE_BYTES = 64 << 10  # smaller partials are decoded on the event loop
POLL = 0.05  # how often a waiting coordinator checks that the peer is still connected


class DistQueryError(Exception):
    """The distributed query cannot run (bad strategy, database changed, ...)."""


class PartitionFailed(Exception):
    """One attempt at one partition failed; the partition is reassigned."""


class CidMoved(Exception):
    """The coordinator's database changed during an attempt: plan again."""


@dataclass
class _Slot:
    event: trio.Event = field(default_factory=trio.Event)
    outcome: PartialResult | PartialFailed | None = None


@dataclass
class NodeTiming:
    """What one node did for a query."""

    peer_id: str
    partitions: list[int] = field(default_factory=list)
    rows: int = 0
    ms: float = 0.0
    failed: list[str] = field(default_factory=list)
    share: float = 0.0  # planned fraction of the table's rows
    weight: float = 0.0  # capacity weight it was planned with
    worker_ms: float = 0.0  # time the node itself reported
    scanned_rows: int = 0
    row_groups: int = 0
    row_groups_total: int = 0

    def to_dict(self) -> dict[str, Any]:
        """JSON/msgpack form."""
        return {
            "peer_id": self.peer_id,
            "partitions": sorted(self.partitions),
            "rows": self.rows,
            "ms": round(self.ms, 3),
            "failed": self.failed,
            "share": round(self.share, 4),
            "weight": round(self.weight, 3),
            "worker_ms": round(self.worker_ms, 3),
            "scanned_rows": self.scanned_rows,
            "row_groups_scanned": self.row_groups,
            "row_groups_total": self.row_groups_total,
        }


@dataclass
class Job:
    """One attempt at a distributed query."""

    query_id: str
    map_sql: str
    part: Partitioning
    db_cid: str
    deadline: float
    me: str
    remotes: list[str]
    runner: dict[int, str]  # planned runner of each partition (LOCAL = us)
    weights: dict[str, float]  # capacity weight of each participant
    share: dict[int, float]  # expected fraction of rows of each partition
    rows: float  # rows of the fact table, as estimated when planned
    tables: dict[int, pa.Table] = field(default_factory=dict)
    timings: dict[str, NodeTiming] = field(default_factory=dict)
    busy: dict[str, int] = field(default_factory=dict)
    bad: set[str] = field(default_factory=set)
    sent_at: dict[tuple[int, str], float] = field(default_factory=dict)
    failovers: int = 0
    attempts: int = 1
    started: float = field(default_factory=time.perf_counter)
    phases: dict[str, float] = field(default_factory=dict)

    def timing(self, peer: str) -> NodeTiming:
        return self.timings.setdefault(peer, NodeTiming(peer))

    def peer_of(self, i: int) -> str:
        runner = self.runner[i]
        return self.me if runner == LOCAL else runner


class Coordinator:
    """Runs distributed queries from this node; owns the slots partials arrive in."""

    def __init__(self, node: Node) -> None:
        self.node = node
        self.slots: dict[tuple[str, int, str], _Slot] = {}
        self.keymaps = KeyMaps()
        self.capacity = CapacityModel(time.monotonic)
        self.send_down: Callable[[str, bytes], Any] | None = None  # set by the service
        self.clustering: dict[str, Any] | None = None  # our layout, set by the re-cluster
        self._quantiles: dict[tuple[str, str, tuple[float, ...]], tuple[Any, ...]] = {}

    def deliver(self, peer: str, msg: PartialResult | PartialFailed) -> bool:
        """Hand a partial from ``peer`` to the query waiting for it; False if unexpected."""
        slot = self.slots.get((msg.query_id, msg.partition, peer))
        if slot is None or slot.event.is_set():
            return False
        slot.outcome = msg
        slot.event.set()
        return True

    # -- peers ------------------------------------------------------------------------

    def qualifying_peers(self, db_cid: str) -> list[str]:
        """Connected peers at ``db_cid`` heard from recently, least loaded first."""
        node = self.node
        connected = set(node.connected_peers())
        fresh = time.time() - 3 * node.config.announce_interval - 1
        peers = [
            p
            for p in node.peers.values()
            if p.peer_id in connected and p.db_cid == db_cid and p.last_seen >= fresh
        ]
        return [p.peer_id for p in sorted(peers, key=lambda p: (p.load, p.peer_id))]

    # -- planning ---------------------------------------------------------------------------

    async def plan(
        self,
        map_sql: str,
        strategy: str,
        nodes: int | None,
        column: str | None,
        also: list[str] | None = None,
        equal: bool = False,
    ) -> Job:
        """Who runs which slice of ``map_sql`` at our current CID (nothing sent yet).
        ``also``: peers of a previous attempt, asked again though their announce may
        not show the new CID yet (they wait a moment for it). ``equal``: every node
        the same weight, whatever its capacity."""
        if strategy not in STRATEGIES:
            raise DistQueryError(f"unknown partition strategy {strategy!r}; use {STRATEGIES}")
        if nodes is not None and nodes < 1:
            raise DistQueryError("--nodes must be at least 1")
        node = self.node
        db_cid = node.store.db_cid()
        connected = set(node.connected_peers())
        remotes = self.qualifying_peers(db_cid)
        remotes += [p for p in also or () if p in connected and p not in remotes]
        if nodes is not None:
            remotes = remotes[: nodes - 1]
        count = nodes if nodes is not None else len(remotes) + 1
        runner = {i: (remotes[i - 1] if 1 <= i <= len(remotes) else LOCAL) for i in range(count)}
        self.capacity.told(node.peer_id, local_capacity(node.load()))
        weights = self.capacity.weights([node.peer_id, *remotes])
        if equal:
            weights = dict.fromkeys(weights, 1.0)
        mine = sum(1 for r in runner.values() if r == LOCAL)
        per_partition = [
            weights[node.peer_id] / mine if runner[i] == LOCAL else weights[runner[i]]
            for i in range(count)
        ]
        part, share, rows = await self._partitioning(strategy, per_partition, column, db_cid)
        return Job(
            query_id=uuid.uuid4().hex[:16],
            map_sql=map_sql,
            part=part,
            db_cid=db_cid,
            deadline=node.config.distq_deadline,
            me=node.peer_id,
            remotes=remotes,
            runner=runner,
            weights=weights,
            share=share,
            rows=rows,
        )

    async def _partitioning(
        self, strategy: str, weights: list[float], column: str | None, db_cid: str
    ) -> tuple[Partitioning, dict[int, float], float]:
        col = column or FACT_KEY
        if strategy != "range" or col == FACT_KEY:
            keymap = self.keymaps.fresh(db_cid)
            if keymap is None:
                keymap = await self.node.read(lambda s: self.keymaps.at(s, db_cid))
            part = key_partitioning(keymap.dist, strategy, weights)
            total = max(keymap.dist.total, 1)
            share = {i: expected_rows(keymap.dist, part, i) / total for i in range(part.count)}
            return part, share, keymap.dist.total
        if col not in RANGE_COLUMNS:
            raise DistQueryError(f"range column must be one of {sorted(RANGE_COLUMNS)}")
        fractions = shares(weights)
        cuts = tuple(round(sum(fractions[: i + 1]), 9) for i in range(len(fractions) - 1))
        key = (db_cid, col, cuts)
        if key not in self._quantiles:
            if len(self._quantiles) > 64:
                self._quantiles.clear()
            self._quantiles[key] = await self.node.read(lambda s: _quantiles(s, col, cuts))
        bounds = self._quantiles[key]
        part = Partitioning(KEYS, len(weights), col, bounds, tuple(range(len(weights))))
        keymap = self.keymaps.fresh(db_cid)
        rows = keymap.dist.total if keymap is not None else float(MIN_OBSERVED_ROWS)
        return part, dict(enumerate(fractions)), rows

    # -- running --------------------------------------------------------------------------

    async def run_map(
        self, map_sql: str, strategy: str, nodes: int | None, column: str | None,
        equal: bool = False,
    ) -> tuple[list[pa.Table], Job]:  # fmt: skip
        """Run ``map_sql`` over every partition of the fact table; the partials, in order.
        Plans again at the new CID when a write lands meanwhile (``distq_retries``)."""
        node = self.node
        retries = node.config.distq_retries
        previous: list[str] = []
        for attempt in range(retries + 1):
            job = await self.plan(map_sql, strategy, nodes, column, previous, equal)
            job.attempts = attempt + 1
            try:
                await self.execute(job)
            except CidMoved:
                node.metrics.inc("distq_replans")
                log.info("database changed during a query; planning again", query=job.query_id,
                         attempt=attempt + 1)  # fmt: skip
                previous = job.remotes
                continue
            node.metrics.inc("distq_queries")
            self._learn(job)
            return [job.tables[i] for i in range(job.part.count)], job
        raise DistQueryError(
            f"the database changed during each of {retries + 1} attempts; run it again"
        )

    async def execute(self, job: Job) -> None:
        """Send the fragments of ``job`` and collect every partition (CidMoved if our
        database changes meanwhile)."""
        node = self.node
        moved = False
        remote_parts: dict[str, list[int]] = {}
        for i, runner in job.runner.items():
            if runner != LOCAL:
                remote_parts.setdefault(runner, []).append(i)
        try:
            async with trio.open_nursery() as outer:

                async def watch() -> None:
                    nonlocal moved
                    while node.store.db_cid() == job.db_cid:
                        await node.wait_changed()
                    moved = True
                    outer.cancel_scope.cancel()

                outer.start_soon(watch)
                await self._publish(job, remote_parts)
                job.phases["plan_ms"] = _ms_since(job.started)
                async with trio.open_nursery() as nursery:
                    for i, peer in job.runner.items():
                        nursery.start_soon(self._partition, job, i, peer)
                outer.cancel_scope.cancel()
        except BaseExceptionGroup as group:
            if group.split(trio.Cancelled)[0] is not None:
                raise
            if group.split(CidChanged)[0] is not None:
                moved = True
            else:
                raise _first_error(group) from group  # e.g. the local partition's timeout
        finally:
            for key in [k for k in self.slots if k[0] == job.query_id]:
                del self.slots[key]
        if moved or node.store.db_cid() != job.db_cid:
            raise CidMoved()
        job.phases["map_ms"] = _ms_since(job.started) - job.phases.get("plan_ms", 0.0)

    async def _publish(self, job: Job, assignments: dict[str, list[int]]) -> None:
        assignments = {p: parts for p, parts in assignments.items() if parts}
        if not assignments:
            return
        now = time.perf_counter()
        for peer, parts in assignments.items():
            for i in parts:
                self.slots[(job.query_id, i, peer)] = _Slot()
                job.sent_at[(i, peer)] = now
            job.busy[peer] = job.busy.get(peer, 0) + len(parts)
        fragment = QueryFragment(
            query_id=job.query_id,
            coordinator=job.me,
            db_cid=job.db_cid,
            sql=job.map_sql,
            strategy=job.part.strategy,
            partitions=job.part.count,
            assignments={p: tuple(parts) for p, parts in assignments.items()},
            column=job.part.column,
            bounds=job.part.bounds,
            deadline_ms=max(1, int(job.deadline * 1000)),
            owners=job.part.owners,
        )
        payload = messages.encode(fragment)
        if self.send_down is not None:
            for peer in assignments:
                if await self.send_down(peer, payload):
                    self.node.metrics.inc("fragments_streamed")
        assert self.node.network is not None
        await self.node.network.publish(payload)
        self.node.metrics.inc("fragments_sent", len(assignments))

    async def _partition(self, job: Job, i: int, peer: str) -> None:
        while peer != LOCAL:
            try:
                outcome, table = await self._remote(job, i, peer)
            except PartitionFailed as exc:
                job.busy[peer] -= 1
                job.bad.add(peer)
                job.failovers += 1
                self.capacity.penalize(peer)
                self.node.metrics.inc("distq_failovers")
                job.timing(peer).failed.append(f"partition {i}: {exc}")
                log.warning("partition reassigned", query=job.query_id, peer=peer, error=str(exc))
                peer = await self._reassign(job, i)
                continue
            job.busy[peer] -= 1
            job.tables[i] = table
            scan = (outcome.scanned_rows, outcome.row_groups, outcome.row_groups_total)
            self._record(job, peer, i, job.sent_at[(i, peer)], outcome.elapsed_ms, scan)
            return
        started = time.perf_counter()
        job.tables[i], scan, worker_ms = await self._local(job, i)
        self._record(job, job.me, i, started, worker_ms, scan)

    def _record(
        self, job: Job, peer: str, i: int, started: float, worker_ms: float,
        scan: tuple[int, int, int],
    ) -> None:  # fmt: skip
        timing = job.timing(peer)
        timing.partitions.append(i)
        timing.rows += job.tables[i].num_rows
        timing.ms = max(timing.ms, _ms_since(started))  # partitions of a node run in parallel
        timing.worker_ms = max(timing.worker_ms, worker_ms)
        timing.share += job.share.get(i, 0.0)
        timing.weight = job.weights.get(peer, timing.weight)
        timing.scanned_rows += scan[0]
        timing.row_groups += scan[1]
        timing.row_groups_total = max(timing.row_groups_total, scan[2])

    async def _reassign(self, job: Job, i: int) -> str:
        """An idle healthy peer for partition ``i`` (sending it a fragment), or LOCAL."""
        idle = [p for p in job.remotes if p not in job.bad and job.busy.get(p, 0) == 0]
        connected = set(self.node.connected_peers())
        idle = [p for p in idle if p in connected]
        if not idle:
            return LOCAL
        await self._publish(job, {idle[0]: [i]})
        return idle[0]

    async def _remote(self, job: Job, i: int, peer: str) -> tuple[PartialResult, pa.Table]:
        slot = self.slots[(job.query_id, i, peer)]
        with trio.move_on_after(job.deadline) as scope:
            while not slot.event.is_set():
                with trio.move_on_after(POLL):
                    await slot.event.wait()
                if not slot.event.is_set() and peer not in self.node.connected_peers():
                    raise PartitionFailed("peer disconnected")
        if scope.cancelled_caught:
            raise PartitionFailed(f"missed the {job.deadline} s deadline")
        outcome = slot.outcome
        if isinstance(outcome, PartialFailed):
            raise PartitionFailed(outcome.reason)
        assert outcome is not None
        max_rows = self.node.config.query_max_rows
        try:
            if len(outcome.data) <= INLINE_DECODE_BYTES:  # cheaper than a thread hop
                return outcome, from_ipc(outcome.data, max_rows)
            return outcome, await trio.to_thread.run_sync(from_ipc, outcome.data, max_rows)
        except PartialError as exc:
            self.node.metrics.inc("distq_bad_partials")
            raise PartitionFailed(str(exc)) from exc

    async def _local(self, job: Job, i: int) -> tuple[pa.Table, tuple[int, int, int], float]:
        config = self.node.config
        keymaps = self.keymaps

        def run(store: Store) -> tuple[pa.Table, tuple[int, int, int], float]:
            started = time.perf_counter()
            sql = fragment_sql(job.map_sql, job.part, i)
            table = query_at(store, job.db_cid, sql, config.query_max_rows, config.query_timeout)
            ms = _ms_since(started)
            return table, scan_of(store, keymaps, job.db_cid, job.part, i), ms

        return await self.node.query(run)

    def _learn(self, job: Job) -> None:
        """Teach the capacity model how fast each participant was (clean runs only)."""
        if job.failovers:
            return
        share: dict[str, float] = {}
        for i in range(job.part.count):
            peer = job.peer_of(i)
            share[peer] = share.get(peer, 0.0) + job.share.get(i, 0.0)
        elapsed = {peer: t.ms for peer, t in job.timings.items()}
        self.capacity.observe(job.weights, share, elapsed, job.rows)


def _ms_since(started: float) -> float:
    return (time.perf_counter() - started) * 1000


def _first_error(group: BaseExceptionGroup) -> BaseException:
    first = group.exceptions[0]
    return _first_error(first) if isinstance(first, BaseExceptionGroup) else first


def _quantiles(store: Store, column: str, cuts: tuple[float, ...]) -> tuple[Any, ...]:
    """Range bounds on a column other than the key: its quantiles at ``cuts`` (any
    bounds are correct; quantiles balance the slices)."""
    if not cuts:
        return ()
    _, rows = store.query(f"SELECT quantile_disc({column}, {list(cuts)}) FROM {FACT_TABLE}",
                          1, 30.0)  # fmt: skip
    values = rows[0][0] if rows and rows[0][0] is not None else None
    if values is None:
        return tuple(0 for _ in cuts)
    return tuple(v if isinstance(v, int | float | str) else str(v) for v in values)


_COORDINATORS: dict[int, Coordinator] = {}


def coordinator(node: Node) -> Coordinator:
    """The node's coordinator (one per node, created on first use)."""
    found = _COORDINATORS.get(id(node))
    if found is None or found.node is not node:
        found = _COORDINATORS[id(node)] = Coordinator(node)
    return found


def elapsed_ms(started: float) -> float:
    """Milliseconds since ``started`` (a perf_counter value)."""
    return round(_ms_since(started), 3)


Reducer = Callable[["list[pa.Table]"], tuple[list[str], list[tuple[Any, ...]]]]


def reducer(sql: str, table_name: str, max_rows: int, timeout: float) -> Reducer:
    """A reduce step as a function of the partials (run it in a thread)."""

    def run(tables: list[pa.Table]) -> tuple[list[str], list[tuple[Any, ...]]]:
        try:
            return reduce_partials(
                sql, tables, table_name=table_name, max_rows=max_rows, timeout=timeout
            )
        except PartialError as exc:
            raise StoreError(str(exc)) from exc

    return run
