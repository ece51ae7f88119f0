"""Control methods of distributed queries: ``query_distributed``, ``mapreduce``,
``cluster_status``."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

import duckdb
import trio

from daemon.distq.capacity import local_capacity
from daemon.distq.coordinator import DistQueryError, Job, coordinator, elapsed_ms, reducer
from daemon.distq.keyspace import DEFAULT_STRATEGY, STRATEGIES
from daemon.distq.plan import PARTIALS, NotSplittable, Plan, plan_query
from daemon.distq.slices import Partitioning, fragment_sql, partition_sql
from daemon.node import Node
from daemon.query.methods import query, to_wire
from daemon.query.sandbox import QueryRejected, check_query, check_reduce_query
from daemon.store.database import StoreError
from protocol import vv
from protocol.control import ControlError, param

MAPREDUCE_TABLE = "partials"


def _equal(params: dict[str, Any]) -> bool:
    return bool(param(params, "equal_shares", bool, required=False))


def _options(node: Node, params: dict[str, Any]) -> tuple[str, int | None, str | None, int]:
    strategy = param(params, "strategy", str, required=False) or DEFAULT_STRATEGY
    if strategy not in STRATEGIES:
        raise ControlError("bad_request", f"partition strategy must be one of {list(STRATEGIES)}")
    nodes = param(params, "nodes", int, required=False)
    if nodes is not None and not 1 <= nodes <= 256:
        raise ControlError("bad_request", "nodes must be between 1 and 256")
    column = param(params, "column", str, required=False)
    limit = node.config.query_max_rows
    max_rows = min(int(param(params, "max_rows", int, required=False) or limit), limit)
    return strategy, nodes, column, max_rows


def _checked_plan(sql: str) -> Plan:
    check_query(sql)
    return plan_query(sql)


_plans: dict[str, Plan] = {}
_names: dict[str, list[str]] = {}
CACHE_SIZE = 512


async def _plan(sql: str) -> Plan:
    """The plan of a validated query; repeated queries skip the thread hop entirely."""
    plan = _plans.get(sql)
    if plan is None:
        plan = await trio.to_thread.run_sync(_checked_plan, sql)
        if len(_plans) >= CACHE_SIZE:
            _plans.clear()
        _plans[sql] = plan
    return plan


async def _column_names(node: Node, sql: str) -> list[str]:
    names = _names.get(sql)
    if names is None:
        names = await node.read(lambda s: s.column_names(sql))
        if len(_names) >= CACHE_SIZE:
            _names.clear()
        _names[sql] = names
    return names


async def query_distributed(node: Node, params: dict[str, Any]) -> dict[str, Any]:
    """Run a SELECT as map fragments over the cluster plus a local reduce (``explain``:
    say how it would be split, with each partition's SQL, without running it)."""
    sql = param(params, "sql", str)
    strategy, nodes, column, max_rows = _options(node, params)
    started = time.perf_counter()
    try:
        plan = await _plan(sql)
    except QueryRejected as exc:
        node.metrics.inc("queries_rejected")
        raise ControlError("bad_request", str(exc)) from exc
    if plan.distributed and param(params, "explain", bool, required=False):
        return await _explain(node, plan, strategy, nodes, column, _equal(params))
    if not plan.distributed:
        node.metrics.inc("distq_single_node")
        local = await query(node, {"sql": sql, "max_rows": max_rows})
        timing = {"peer_id": node.peer_id, "partitions": [0], "rows": len(local["rows"]),
                  "ms": local["elapsed_ms"], "failed": []}  # fmt: skip
        meta = _meta(node, strategy, None, [timing], started)
        return {**local, **meta, "distributed": False, "reason": plan.reason}
    reduce = reducer(plan.reduce_sql, PARTIALS, max_rows, node.config.query_timeout)
    columns, rows, job = await _map_reduce(
        node, plan.map_sql, reduce, strategy, nodes, column, _equal(params)
    )
    names = await _column_names(node, sql)
    return {
        "columns": names if len(names) == len(columns) else columns,
        "rows": rows,
        **_meta(node, strategy, job, [t.to_dict() for t in job.timings.values()], started),
        "map_sql": plan.map_sql,
        "reduce_sql": plan.reduce_sql,
    }


async def _explain(
    node: Node, plan: Plan, strategy: str, nodes: int | None, column: str | None, equal: bool
) -> dict[str, Any]:
    try:
        job = await coordinator(node).plan(plan.map_sql, strategy, nodes, column, equal=equal)
        sqls = await trio.to_thread.run_sync(
            lambda: [fragment_sql(plan.map_sql, job.part, i) for i in range(job.part.count)]
        )
    except (DistQueryError, NotSplittable) as exc:
        raise ControlError("bad_request", str(exc)) from exc
    fragments = [
        {"partition": i, "peer_id": job.peer_of(i), "share": round(job.share.get(i, 0.0), 4),
         "sql": sqls[i]}
        for i in range(job.part.count)
    ]  # fmt: skip
    return {
        "distributed": True,
        "explain": True,
        "strategy": strategy,
        "partitioning": _partitioning(job),
        "weights": {p: round(w, 3) for p, w in job.weights.items()},
        "fragments": fragments,
        "map_sql": plan.map_sql,
        "reduce_sql": plan.reduce_sql,
        "db_cid": job.db_cid,
    }


async def mapreduce(node: Node, params: dict[str, Any]) -> dict[str, Any]:
    """A custom job: ``map`` SQL on every partition, ``reduce`` SQL over ``partials``."""
    map_sql, reduce_sql = param(params, "map", str), param(params, "reduce", str)
    strategy, nodes, column, max_rows = _options(node, params)
    started = time.perf_counter()

    def check() -> None:
        check_query(map_sql)
        partition_sql(map_sql, Partitioning("hash", 1), 0)
        check_reduce_query(reduce_sql, frozenset({MAPREDUCE_TABLE}))

    try:
        await trio.to_thread.run_sync(check)
    except (QueryRejected, NotSplittable) as exc:
        node.metrics.inc("queries_rejected")
        raise ControlError("bad_request", str(exc)) from exc
    reduce = reducer(reduce_sql, MAPREDUCE_TABLE, max_rows, node.config.query_timeout)
    columns, rows, job = await _map_reduce(
        node, map_sql, reduce, strategy, nodes, column, _equal(params)
    )
    meta = _meta(node, strategy, job, [t.to_dict() for t in job.timings.values()], started)
    return {"columns": columns, "rows": rows, **meta}


INLINE_REDUCE_BYTES = 64 << 10  # partials this small are reduced without a thread hop


async def _map_reduce(
    node: Node,
    map_sql: str,
    reduce: Callable[..., Any],
    strategy: str,
    nodes: int | None,
    column: str | None,
    equal: bool,
) -> tuple[list[str], list[list[Any]], Job]:
    try:
        tables, job = await coordinator(node).run_map(map_sql, strategy, nodes, column, equal)
        reduced = time.perf_counter()
        if sum(t.nbytes for t in tables) <= INLINE_REDUCE_BYTES:
            columns, rows = reduce(tables)
        else:
            columns, rows = await trio.to_thread.run_sync(reduce, tables)
        job.phases["reduce_ms"] = elapsed_ms(reduced)
    except DistQueryError as exc:
        raise ControlError("bad_request", str(exc)) from exc
    except duckdb.InterruptException as exc:
        raise ControlError("timeout", f"query exceeded {node.config.query_timeout} s") from exc
    except (duckdb.Error, StoreError, NotSplittable) as exc:
        raise ControlError("bad_request", str(exc).splitlines()[0]) from exc
    return columns, [[to_wire(v) for v in row] for row in rows], job


def _partitioning(job: Job) -> dict[str, Any]:
    part = job.part
    return {"wire_strategy": part.strategy, "column": part.column, "partitions": part.count,
            "chunks": len(part.owners) or part.count}  # fmt: skip


def _meta(
    node: Node, strategy: str, job: Job | None, timings: list[dict[str, Any]], started: float
) -> dict[str, Any]:
    ms = elapsed_ms(started)
    meta = {
        "distributed": True,
        "reason": "",
        "strategy": strategy,
        "partitions": job.part.count if job else 1,
        "node_count": len([t for t in timings if t["partitions"]]),
        "node_timings": timings,
        "failovers": job.failovers if job else 0,
        "execution_ms": ms,
        "elapsed_ms": ms,
        "db_cid": node.store.db_cid(),
    }
    if job is not None:
        phases = {k: round(v, 3) for k, v in job.phases.items()}
        meta |= {"attempts": job.attempts, "phases_ms": phases, "partitioning": _partitioning(job)}
    return meta


async def cluster_status(node: Node, params: dict[str, Any]) -> dict[str, Any]:
    """Nodes of the cluster: availability, load, CID and replication lag."""
    mine, my_cid = node.store.vector(), node.store.db_cid()
    connected = set(node.connected_peers())
    capacity = coordinator(node).capacity
    capacity.told(node.peer_id, local_capacity(node.load()))
    fresh = time.time() - 3 * node.config.announce_interval - 1
    nodes = [
        {"peer_id": node.peer_id, "self": True, "connected": True, "available": True,
         "load": node.load(), "db_cid": my_cid, "same_cid": True, "behind": 0, "ahead": 0,
         "last_seen_s": 0.0, "capacity": capacity.describe(node.peer_id)}
    ]  # fmt: skip
    for peer_id in sorted(connected | set(node.peers)):
        state = node.peers.get(peer_id)
        theirs = state.vector if state else {}
        seen = state.last_seen if state else 0.0
        nodes.append(
            {
                "peer_id": peer_id,
                "self": False,
                "connected": peer_id in connected,
                "available": peer_id in connected and seen >= fresh,
                "load": state.load if state else None,
                "db_cid": state.db_cid if state else None,
                "same_cid": bool(state and state.db_cid == my_cid),
                "behind": vv.missing_count(theirs, mine) if state else None,
                "ahead": vv.missing_count(mine, theirs) if state else None,
                "last_seen_s": round(time.time() - seen, 3) if state else None,
                "capacity": capacity.describe(peer_id),
            }
        )
    return {
        "db_cid": my_cid,
        "total_nodes": len(nodes),
        "available_nodes": sum(1 for n in nodes if n["available"]),
        "query_nodes": sum(1 for n in nodes if n["available"] and n["same_cid"]),
        "nodes": nodes,
        "clustering": coordinator(node).clustering,
    }


METHODS: dict[str, Callable[[Node, dict[str, Any]], Awaitable[Any]]] = {
    "query_distributed": query_distributed,
    "mapreduce": mapreduce,
    "cluster_status": cluster_status,
}
