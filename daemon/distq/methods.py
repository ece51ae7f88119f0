"""Control methods of distributed queries: ``query_distributed``, ``mapreduce``,
``cluster_status``."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

import duckdb
import trio

from daemon.distq.coordinator import DistQueryError, coordinator, elapsed_ms, reducer
from daemon.distq.plan import (
    PARTIALS,
    STRATEGIES,
    NotSplittable,
    Partitioning,
    Plan,
    partition_sql,
    plan_query,
)
from daemon.node import Node
from daemon.query.methods import query, to_wire
from daemon.query.sandbox import QueryRejected, check_query, check_reduce_query
from daemon.store.database import StoreError
from protocol import vv
from protocol.control import ControlError, param

MAPREDUCE_TABLE = "partials"


def _options(node: Node, params: dict[str, Any]) -> tuple[str, int | None, str | None, int]:
    strategy = param(params, "strategy", str, required=False) or "hash"
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
    """Run a SELECT as map fragments over the cluster plus a local reduce."""
    sql = param(params, "sql", str)
    strategy, nodes, column, max_rows = _options(node, params)
    started = time.perf_counter()
    try:
        plan = await _plan(sql)
    except QueryRejected as exc:
        node.metrics.inc("queries_rejected")
        raise ControlError("bad_request", str(exc)) from exc
    if not plan.distributed:
        node.metrics.inc("distq_single_node")
        local = await query(node, {"sql": sql, "max_rows": max_rows})
        timing = {"peer_id": node.peer_id, "partitions": [0], "rows": len(local["rows"]),
                  "ms": local["elapsed_ms"], "failed": []}  # fmt: skip
        return {**local, **_meta(node, False, plan.reason, strategy, 1, [timing], 0, started)}
    reduce = reducer(plan.reduce_sql, PARTIALS, max_rows, node.config.query_timeout)
    columns, rows, job = await _map_reduce(node, plan.map_sql, reduce, strategy, nodes, column)
    names = await _column_names(node, sql)
    meta = _meta(node, True, "", strategy, job.part.count,
                 [t.to_dict() for t in job.timings.values()], job.failovers, started)  # fmt: skip
    return {
        "columns": names if len(names) == len(columns) else columns,
        "rows": rows,
        **meta,
        "map_sql": plan.map_sql,
        "reduce_sql": plan.reduce_sql,
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
    columns, rows, job = await _map_reduce(node, map_sql, reduce, strategy, nodes, column)
    meta = _meta(node, True, "", strategy, job.part.count,
                 [t.to_dict() for t in job.timings.values()], job.failovers, started)  # fmt: skip
    return {"columns": columns, "rows": rows, **meta}


async def _map_reduce(
    node: Node,
    map_sql: str,
    reduce: Callable[..., Any],
    strategy: str,
    nodes: int | None,
    column: str | None,
) -> tuple[list[str], list[list[Any]], Any]:
    try:
        tables, job = await coordinator(node).run_map(map_sql, strategy, nodes, column)
        columns, rows = await trio.to_thread.run_sync(reduce, tables)
    except DistQueryError as exc:
        raise ControlError("bad_request", str(exc)) from exc
    except duckdb.InterruptException as exc:
        raise ControlError("timeout", f"query exceeded {node.config.query_timeout} s") from exc
    except (duckdb.Error, StoreError, NotSplittable) as exc:
        raise ControlError("bad_request", str(exc).splitlines()[0]) from exc
    return columns, [[to_wire(v) for v in row] for row in rows], job


def _meta(
    node: Node,
    distributed: bool,
    reason: str,
    strategy: str,
    partitions: int,
    timings: list[dict[str, Any]],
    failovers: int,
    started: float,
) -> dict[str, Any]:
    ms = elapsed_ms(started)
    return {
        "distributed": distributed,
        "reason": reason,
        "strategy": strategy,
        "partitions": partitions,
        "node_count": len([t for t in timings if t["partitions"]]),
        "node_timings": timings,
        "failovers": failovers,
        "execution_ms": ms,
        "elapsed_ms": ms,
        "db_cid": node.store.db_cid(),
    }


async def cluster_status(node: Node, params: dict[str, Any]) -> dict[str, Any]:
    """Nodes of the cluster: availability, load, CID and replication lag."""
    mine, my_cid = node.store.vector(), node.store.db_cid()
    connected = set(node.connected_peers())
    fresh = time.time() - 3 * node.config.announce_interval - 1
    nodes = [
        {"peer_id": node.peer_id, "self": True, "connected": True, "available": True,
         "load": node.load(), "db_cid": my_cid, "same_cid": True, "behind": 0, "ahead": 0,
         "last_seen_s": 0.0}
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
            }
        )
    return {
        "db_cid": my_cid,
        "total_nodes": len(nodes),
        "available_nodes": sum(1 for n in nodes if n["available"]),
        "query_nodes": sum(1 for n in nodes if n["available"] and n["same_cid"]),
        "nodes": nodes,
    }


METHODS: dict[str, Callable[[Node, dict[str, Any]], Awaitable[Any]]] = {
    "query_distributed": query_distributed,
    "mapreduce": mapreduce,
    "cluster_status": cluster_status,
}
