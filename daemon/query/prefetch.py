"""Prefetch: when the database CID changes, re-run the hot, costly queries.

Queries whose strategy is ``aggressive`` (see ``daemon.query.strategy``) are re-run in the
background right after the CID changes, at most ``cache_prefetch_max`` per new CID, one
at a time (so prefetching holds at most one query worker), after a short pause
that lets a burst of writes settle. A prefetch whose CID changed under it is not
cached (``execute`` ties each result to the snapshot it read).
"""

from __future__ import annotations

import time

import structlog
import trio

from daemon.node import Node
from daemon.query.cached import Executed, execute, remember
from daemon.query.cachestate import cache_state
from daemon.query.limits import QUERY_ERRORS, QueryLimits
from daemon.query.methods import to_wire
from daemon.query.resultcache import CacheKey
from daemon.query.sandbox import check_query
from daemon.store.database import Store

log = structlog.get_logger("prefetch")

SETTLE_SECONDS = 0.2  # writes often come in bursts: wait for the CID to settle


async def serve(
    node: Node, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
) -> None:
    """Prefetch hot queries on every new CID, forever."""
    task_status.started()
    last = node.store.db_cid()
    while True:
        cid = node.store.db_cid()
        if cid == last:
            await node.wait_changed()
            await trio.sleep(SETTLE_SECONDS)
            continue
        last = cid
        if node.config.cache_enabled and node.config.cache_prefetch_max > 0:
            await prefetch_once(node, cid)


async def prefetch_once(node: Node, cid: str) -> int:
    """Run the hot queries missing at ``cid``; returns how many were cached."""
    state = cache_state(node)
    done = 0
    for stats in state.stats.hottest(state.thresholds, node.config.cache_prefetch_max):
        if node.store.db_cid() != cid:
            break  # moved on: the next round prefetches for the newer CID
        if CacheKey(stats.fingerprint, cid, stats.max_rows) in state.cache:
            continue
        if await _run(node, stats.sql, stats.max_rows):
            done += 1
    state.prefetched += done
    node.metrics.inc("cache_prefetched", done)
    return done


async def _run(node: Node, sql: str, max_rows: int) -> bool:
    started = time.perf_counter()
    limits = QueryLimits.of(node.config, max_rows)

    def run(store: Store) -> Executed:
        check_query(sql)
        return execute(store, sql, limits, to_wire)

    try:
        out = await node.query(run)
    except QUERY_ERRORS as exc:
        log.info("prefetch failed", error=str(exc).splitlines()[0] if str(exc) else repr(exc))
        return False
    elapsed = round((time.perf_counter() - started) * 1000, 3)
    result = remember(node, sql, max_rows, {"columns": out.columns, "rows": out.rows,
                                            "elapsed_ms": elapsed}, out)  # fmt: skip
    return bool(out.db_cid) and result.get("cache") == "miss"
