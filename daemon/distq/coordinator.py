"""The coordinator of a distributed query: plan, partition, fan out, fail over, reduce.

The coordinator picks peers connected to it whose gossiped database CID equals its
own (least loaded first), gives each one partition and keeps the rest, gossips one
``QueryFragment`` naming who runs what, runs its own partitions meanwhile, and
collects the peers' partials from ``/duckpeer/query/1`` streams. A peer that fails,
disconnects or misses the deadline has its partition reassigned to an idle peer, or
run locally. The database CID is checked before and after every partition, so all
partitions see the same snapshot and the result equals the single-node result.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import structlog
import trio

from daemon.distq.plan import (
    DEFAULT_RANGE_COLUMN,
    FACT_TABLE,
    RANGE_COLUMNS,
    STRATEGIES,
    Partitioning,
    partition_sql,
)
from daemon.distq.reduce import PartialError, from_ipc, reduce_partials
from daemon.node import Node
from daemon.store.database import Store, StoreError
from protocol import messages
from protocol.messages import PartialFailed, PartialResult, QueryFragment

log = structlog.get_logger("distq")

LOCAL = "local"
INLINE_DECODE_BYTES = 64 << 10  # smaller partials are decoded on the event loop
POLL = 0.05  # how often a waiting coordinator checks that the peer is still connected


class DistQueryError(Exception):
    """The distributed query cannot run (bad strategy, database changed, ...)."""


class PartitionFailed(Exception):
    """One attempt at one partition failed; the partition is reassigned."""


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

    def to_dict(self) -> dict[str, Any]:
        """JSON/msgpack form."""
        return {
            "peer_id": self.peer_id,
            "partitions": sorted(self.partitions),
            "rows": self.rows,
            "ms": round(self.ms, 3),
            "failed": self.failed,
        }


@dataclass
class _Job:
    query_id: str
    map_sql: str
    part: Partitioning
    db_cid: str
    deadline: float
    me: str
    remotes: list[str]
    tables: dict[int, pa.Table] = field(default_factory=dict)
    timings: dict[str, NodeTiming] = field(default_factory=dict)
    busy: dict[str, int] = field(default_factory=dict)
    bad: set[str] = field(default_factory=set)
    failovers: int = 0

    def timing(self, peer: str) -> NodeTiming:
        return self.timings.setdefault(peer, NodeTiming(peer))


class Coordinator:
    """Runs distributed queries from this node; owns the slots partials arrive in."""

    def __init__(self, node: Node) -> None:
        self.node = node
        self.slots: dict[tuple[str, int, str], _Slot] = {}

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

    # -- running --------------------------------------------------------------------------

    async def run_map(
        self, map_sql: str, strategy: str, nodes: int | None, column: str | None
    ) -> tuple[list[pa.Table], _Job]:
        """Run ``map_sql`` over every partition of the fact table; the partials, in order."""
        node = self.node
        db_cid = node.store.db_cid()
        remotes = self.qualifying_peers(db_cid)
        if nodes is not None:
            if nodes < 1:
                raise DistQueryError("--nodes must be at least 1")
            remotes = remotes[: nodes - 1]
        count = nodes if nodes is not None else len(remotes) + 1
        part = await self._partitioning(strategy, count, column)
        job = _Job(
            query_id=uuid.uuid4().hex[:16],
            map_sql=map_sql,
            part=part,
            db_cid=db_cid,
            deadline=node.config.distq_deadline,
            me=node.peer_id,
            remotes=remotes,
        )
        plan = {i: (remotes[i - 1] if 1 <= i <= len(remotes) else LOCAL) for i in range(count)}
        await self._publish(job, {p: [i for i, q in plan.items() if q == p] for p in remotes})
        try:
            async with trio.open_nursery() as nursery:
                for i, peer in plan.items():
                    nursery.start_soon(self._partition, job, i, peer)
        except BaseExceptionGroup as group:
            if group.split(trio.Cancelled)[0] is not None:
                raise
            raise _first_error(group) from group  # e.g. the local partition's timeout
        finally:
            for key in [k for k in self.slots if k[0] == job.query_id]:
                del self.slots[key]
        if node.store.db_cid() != db_cid:
            raise DistQueryError("the database changed during the query; run it again")
        node.metrics.inc("distq_queries")
        return [job.tables[i] for i in range(count)], job

    async def _partitioning(self, strategy: str, count: int, column: str | None) -> Partitioning:
        if strategy not in STRATEGIES:
            raise DistQueryError(f"unknown partition strategy {strategy!r}; use {STRATEGIES}")
        if strategy != "range":
            return Partitioning(strategy, count)
        col = column or DEFAULT_RANGE_COLUMN
        if col not in RANGE_COLUMNS:
            raise DistQueryError(f"range column must be one of {sorted(RANGE_COLUMNS)}")
        bounds = await self.node.read(lambda s: _quantiles(s, col, count))
        return Partitioning(strategy, count, col, bounds)

    async def _publish(self, job: _Job, assignments: dict[str, list[int]]) -> None:
        assignments = {p: parts for p, parts in assignments.items() if parts}
        if not assignments:
            return
        for peer, parts in assignments.items():
            for i in parts:
                self.slots[(job.query_id, i, peer)] = _Slot()
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
        )
        assert self.node.network is not None
        await self.node.network.publish(messages.encode(fragment))
        self.node.metrics.inc("fragments_sent", len(assignments))

    async def _partition(self, job: _Job, i: int, peer: str) -> None:
        while peer != LOCAL:
            started = time.perf_counter()
            try:
                table = await self._remote(job, i, peer)
            except PartitionFailed as exc:
                job.busy[peer] -= 1
                job.bad.add(peer)
                job.failovers += 1
                self.node.metrics.inc("distq_failovers")
                job.timing(peer).failed.append(f"partition {i}: {exc}")
                log.warning("partition reassigned", query=job.query_id, peer=peer, error=str(exc))
                peer = await self._reassign(job, i)
                continue
            job.busy[peer] -= 1
            job.tables[i] = table
            self._record(job, peer, i, started)
            return
        started = time.perf_counter()
        job.tables[i] = await self._local(job, i)
        self._record(job, job.me, i, started)

    def _record(self, job: _Job, peer: str, i: int, started: float) -> None:
        timing = job.timing(peer)
        timing.partitions.append(i)
        timing.rows += job.tables[i].num_rows
        timing.ms += (time.perf_counter() - started) * 1000

    async def _reassign(self, job: _Job, i: int) -> str:
        """An idle healthy peer for partition ``i`` (gossiping it a fragment), or LOCAL."""
        idle = [p for p in job.remotes if p not in job.bad and job.busy.get(p, 0) == 0]
        connected = set(self.node.connected_peers())
        idle = [p for p in idle if p in connected]
        if not idle:
            return LOCAL
        await self._publish(job, {idle[0]: [i]})
        return idle[0]

    async def _remote(self, job: _Job, i: int, peer: str) -> pa.Table:
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
                return from_ipc(outcome.data, max_rows)
            return await trio.to_thread.run_sync(from_ipc, outcome.data, max_rows)
        except PartialError as exc:
            self.node.metrics.inc("distq_bad_partials")
            raise PartitionFailed(str(exc)) from exc

    async def _local(self, job: _Job, i: int) -> pa.Table:
        config = self.node.config

        def run(store: Store) -> pa.Table:
            sql = partition_sql(job.map_sql, job.part, i)
            if store.db_cid() != job.db_cid:
                raise DistQueryError("the database changed during the query; run it again")
            return store.query_arrow(sql, config.query_max_rows, config.query_timeout)

        return await self.node.query(run)


def _first_error(group: BaseExceptionGroup) -> BaseException:
    first = group.exceptions[0]
    return _first_error(first) if isinstance(first, BaseExceptionGroup) else first


def _quantiles(store: Store, column: str, count: int) -> tuple[int | float | str, ...]:
    """Range bounds: the 1/n .. (n-1)/n quantiles of ``column`` (any bounds are correct;
    quantiles make the slices even)."""
    if count == 1:
        return ()
    qs = [round((i + 1) / count, 9) for i in range(count - 1)]
    _, rows = store.query(f"SELECT quantile_disc({column}, {qs}) FROM {FACT_TABLE}", 1, 30.0)
    values = rows[0][0] if rows and rows[0][0] is not None else None
    if values is None:
        return tuple(0 for _ in qs)
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
    return round((time.perf_counter() - started) * 1000, 3)


Reducer = Callable[[list[pa.Table]], tuple[list[str], list[tuple[Any, ...]]]]


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
