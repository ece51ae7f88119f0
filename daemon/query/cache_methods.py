"""Control methods of the result cache and query analysis.

``cache_stats``, ``cache_clear`` (a write method: it needs write access to the control
socket), ``query_explain_cache`` (how a query would be cached) and ``query_analyze``
(DuckDB's profile with suggestions).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import trio

from daemon.node import Node
from daemon.query import analyze, share
from daemon.query.cached import plan_query
from daemon.query.cachestate import cache_state
from daemon.query.fingerprint import fingerprint
from daemon.query.limits import QUERY_ERRORS, QueryLimits, control_error
from daemon.query.methods import max_rows_param
from daemon.query.resultcache import CacheKey
from daemon.query.sandbox import QueryRejected, check_query
from daemon.query.strategy import strategy
from protocol.control import ControlError, param


async def cache_stats(node: Node, params: dict[str, Any]) -> dict[str, Any]:
    """Hits, misses, hit rate, bytes, entries (and peer / prefetch counters)."""
    state = cache_state(node)
    cache, counters = state.cache, state.cache.counters
    cid = node.store.db_cid()
    asked = counters.hits + counters.misses
    return {
        "enabled": node.config.cache_enabled,
        "hits": counters.hits,
        "misses": counters.misses,
        "hit_rate": round(counters.hits / asked, 4) if asked else 0.0,
        "bytes": cache.bytes,
        "max_bytes": cache.max_bytes,
        "entries": len(cache),
        "entries_current_cid": sum(1 for e in cache.entries() if e.key.db_cid == cid),
        "inserts": counters.inserts,
        "evictions": counters.evictions,
        "too_large": counters.rejected_too_large,
        "peer_hits": state.peer_hits,
        "peer_misses": state.peer_misses,
        "served_to_peers": state.served,
        "prefetched": state.prefetched,
        "fingerprints": len(state.stats),
        "db_cid": cid,
    }


async def cache_clear(node: Node, params: dict[str, Any]) -> dict[str, Any]:
    """Drop every cached result (query statistics too, unless ``keep_stats``)."""
    state = cache_state(node)
    removed = state.cache.clear()
    if not params.get("keep_stats"):
        state.stats.clear()
    state.columns.clear()
    node.metrics.inc("cache_clears")
    return {"removed": removed}


async def query_explain_cache(node: Node, params: dict[str, Any]) -> dict[str, Any]:
    """How ``sql`` is cached: fingerprint, normalized SQL, strategy, hits, cost, rewrites."""
    sql = param(params, "sql", str)
    max_rows = QueryLimits.of(node.config, max_rows_param(params)).max_rows
    try:
        await trio.to_thread.run_sync(check_query, sql)
        fp = await trio.to_thread.run_sync(fingerprint, sql)
        plan = await trio.to_thread.run_sync(plan_query, sql)
    except QueryRejected as exc:
        node.metrics.inc("queries_rejected")
        raise ControlError("bad_request", str(exc)) from exc
    state = cache_state(node)
    stats = state.stats.get(fp.digest)
    cid = node.store.db_cid()
    entry = state.cache.peek(CacheKey(fp.digest, cid, max_rows))
    return {
        "fingerprint": fp.digest,
        "normalized_sql": fp.normalized,
        "strategy": strategy(stats, state.thresholds),
        "requests": stats.requests if stats else 0,
        "hits": stats.hits if stats else 0,
        "runs": stats.runs if stats else 0,
        "cost_ms": round(stats.cost_ms, 3) if stats and stats.cost_ms is not None else None,
        "cached_at_current_cid": entry is not None,
        "entry_bytes": entry.size if entry else None,
        "cached_cids": sum(1 for e in state.cache.entries() if e.key.fingerprint == fp.digest),
        "db_cid": cid,
        "rewrites": list(plan.rewrites),
        "rewritten_sql": plan.sql if plan.rewrites else None,
        "peers_at_same_cid": len(share.same_cid_peers(node, cid)),
        "thresholds": vars(state.thresholds),
    }


async def query_analyze(node: Node, params: dict[str, Any]) -> dict[str, Any]:
    """Run ``sql`` under DuckDB's profiler: operators with time and rows, suggestions."""
    sql = param(params, "sql", str)
    limits = QueryLimits.of(node.config)
    try:
        return await node.query(lambda s: analyze.analyze(s, sql, limits))
    except QUERY_ERRORS as exc:
        node.metrics.inc("queries_rejected" if isinstance(exc, QueryRejected) else "queries_failed")
        raise control_error(exc, limits) from exc


METHODS: dict[str, Callable[[Node, dict[str, Any]], Awaitable[Any]]] = {
    "cache_stats": cache_stats,
    "cache_clear": cache_clear,
    "query_explain_cache": query_explain_cache,
    "query_analyze": query_analyze,
}
