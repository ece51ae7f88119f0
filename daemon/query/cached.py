"""The local query path's cache: look up before running, remember after running.

``methods.query`` calls :func:`lookup` first (local entry at the current CID, then a
peer at the same CID), runs the query with :func:`execute` on a miss (rewritten,
inside one DuckDB transaction that also reads the chain heads, so the result is tied
to the exact CID it was computed at) and hands the outcome to :func:`remember`.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import trio

from daemon.node import Node
from daemon.query import share
from daemon.query.cachestate import CachedResult, CacheState, cache_state, encoded_size
from daemon.query.fingerprint import Fingerprint, fingerprint, known_fingerprint
from daemon.query.limits import QueryLimits, fetch_rows, query_cursor
from daemon.query.resultcache import CacheKey
from daemon.query.rewrite import Rewritten, rewrite_sql
from daemon.query.sandbox import QueryRejected, check_query
from daemon.query.strategy import NONE, strategy
from daemon.store.database import Store
from daemon.store.running import RUNNING


@dataclass
class Executed:
    """A query run by :func:`execute`."""

    columns: list[str]
    rows: list[list[Any]]
    rewrites: tuple[str, ...] = ()
    db_cid: str = ""  # the CID of the snapshot the query read; "" if unknown
    size: int = 0  # encoded bytes of columns + rows


# -- execution (reader thread) -------------------------------------------------------------


def execute(store: Store, sql: str, limits: QueryLimits, convert: Callable[[Any], Any]) -> Executed:
    """Run a checked query (rewritten) in one transaction with the chain heads.

    Runs in a query worker. Raises duckdb errors, StoreError on a limit.
    """
    plan = plan_query(sql)
    if plan.sql != sql:
        check_query(plan.sql)  # what runs is what was checked
    with RUNNING.guard(query_cursor(store, limits), limits.timeout) as cur:
        try:
            cur.execute("BEGIN TRANSACTION READ ONLY")
            seen = dict(cur.execute("SELECT origin, seq FROM store.heads").fetchall())
            cur.execute(plan.sql)
            columns = [d[0] for d in cur.description or []]
            rows = fetch_rows(cur, limits, convert)
            if plan.rewrites:
                columns = output_columns(cur, sql)
            cur.execute("COMMIT")
        finally:
            cur.close()
    heads, cid = store.state()
    snapshot_cid = cid if {o: s for o, (s, _) in heads.items()} == seen else ""
    return Executed(columns, rows, plan.rewrites, snapshot_cid, encoded_size(columns, rows))


_plans: OrderedDict[str, Rewritten] = OrderedDict()
_plans_lock = threading.Lock()
MAX_PLANS = 1024


def plan_query(sql: str) -> Rewritten:
    """What to run for ``sql``: the rewrites of ``daemon.query.rewrite``, computed once per
    fingerprint (every spelling shares them). A query without subqueries, CTEs or set
    operations has nothing to push down: only its folded constants can change, and the
    fingerprint's canonical text already has them folded, so no optimizer pass runs."""
    fp = fingerprint(sql)
    folding: tuple[str, ...] = ("constant_folding",) if fp.folded else ()
    if not fp.nested:
        return Rewritten(fp.normalized, folding) if fp.folded else Rewritten(sql, ())
    with _plans_lock:
        found = _plans.get(fp.digest)
    if found is None:
        found = rewrite_sql(fp.normalized)
        with _plans_lock:
            _plans[fp.digest] = found
            while len(_plans) > MAX_PLANS:
                _plans.popitem(last=False)
    if found.rewrites:
        return Rewritten(found.sql, folding + found.rewrites)
    return Rewritten(fp.normalized, folding) if fp.folded else Rewritten(sql, ())


def output_columns(cur: Any, sql: str) -> list[str]:
    """Output column names of ``sql`` as DuckDB names them (bound, not run)."""
    return [row[0] for row in cur.execute(f"DESCRIBE {sql}").fetchall()]


# -- lookup (event loop) --------------------------------------------------------------------


async def lookup(
    node: Node, sql: str, max_rows: int, use_cache: bool = True
) -> dict[str, Any] | None:
    """The cached result of ``sql`` at the current CID (ours or a peer's), or None."""
    if not (use_cache and node.config.cache_enabled):
        return None
    started = time.perf_counter()
    fp = known_fingerprint(sql)
    if fp is None:  # parsing is CPU work: off the event loop unless this text was seen before
        try:
            fp = await trio.to_thread.run_sync(fingerprint, sql)
        except QueryRejected:
            return None  # the normal path reports it
    state = cache_state(node)
    stats = state.stats.asked(fp.digest, sql, max_rows)
    key = CacheKey(fp.digest, node.store.db_cid(), max_rows)
    value = state.cache.get(key)
    source = "hit"
    if value is None:
        node.metrics.inc("cache_misses")
        if strategy(stats, state.thresholds) == NONE or not _worth_asking(node, stats.cost_ms):
            return None
        value = await share.fetch(node, key)
        if value is None:
            return None
        source = "peer"
    else:
        node.metrics.inc("cache_hits")
    node.metrics.inc("queries")
    stats.hits += 1
    columns = await _columns_for(node, state, sql, value)
    return _result(value, columns, fp, key, source, started)


def _worth_asking(node: Node, cost_ms: float | None) -> bool:
    """Ask peers when the query is unmeasured or costs more than a round trip."""
    return cost_ms is None or cost_ms >= node.config.cache_share_min_ms


async def _columns_for(node: Node, state: CacheState, sql: str, value: CachedResult) -> list[str]:
    if sql == value.sql:
        return value.columns
    known = state.columns.get(sql)
    if known is None:

        def describe(store: Store) -> list[str]:
            check_query(sql)  # DESCRIBE binds it: the same checks as running it
            cur = store.cursor()
            try:
                return output_columns(cur, sql)
            finally:
                cur.close()

        known = await trio.to_thread.run_sync(describe, node.store)
        state.remember_columns(sql, known)
    return known


def _result(
    value: CachedResult, columns: list[str], fp: Fingerprint, key: CacheKey, source: str,
    started: float,
) -> dict[str, Any]:  # fmt: skip
    return {
        "columns": columns,
        "rows": value.rows,
        "elapsed_ms": round((time.perf_counter() - started) * 1000, 3),
        "cache": source,
        "rewrites": list(value.rewrites),
        "fingerprint": fp.digest,
        "db_cid": key.db_cid,
    }


# -- remember (event loop) ----------------------------------------------------------------


def remember(
    node: Node, sql: str, max_rows: int, result: dict[str, Any], done: Executed
) -> dict[str, Any]:
    """Record the cost of a run, cache its result if worth it; returns ``result`` with
    the cache metadata added."""
    result["rewrites"] = list(done.rewrites)
    result["db_cid"] = done.db_cid
    if not node.config.cache_enabled:
        result["cache"] = "off"
        return result
    try:
        fp = fingerprint(sql)  # memoized by lookup
    except QueryRejected:
        return result
    state = cache_state(node)
    stats = state.stats.get(fp.digest) or state.stats.asked(fp.digest, sql, max_rows)
    stats.observe_run(result["elapsed_ms"])
    stats.last_cid = done.db_cid
    result["fingerprint"] = fp.digest
    result["cache"] = "miss"
    if done.db_cid and strategy(stats, state.thresholds) != NONE:
        value = CachedResult(done.columns, done.rows, sql, done.rewrites)
        key = CacheKey(fp.digest, done.db_cid, max_rows)
        state.cache.put(key, value, done.size, stats.cost_ms or 0.0)
        state.remember_columns(sql, done.columns)
    return result
