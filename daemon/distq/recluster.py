"""Background re-clustering of ``performance_results`` by key (daemon/store/cluster.py).

Replicated inserts land in arrival order. That is key order as long as writers' clocks
agree and peers stay online; a writer hours behind, a peer catching up after a day, or
imported legacy keys widen the row groups and every slice of a distributed query then
reads them. Once writes pause for ``recluster_idle`` seconds the service measures the
layout (zone maps only); if some key range reads at least twice the row groups a
sorted table would need, it starts a pass: piece by piece in key order (about 500k rows
each, one transaction in the writer thread, so a write waits at most one piece), the
rows of each disordered range are rewritten in key order; at the end a CHECKPOINT
drops the emptied row groups. Rows, versions and the database CID do not change.
"""

from __future__ import annotations

from functools import partial

import duckdb
import structlog
import trio

from daemon.distq.coordinator import coordinator
from daemon.node import Node
from daemon.store.cluster import (
    ROW_GROUP_ROWS,
    Clustering,
    Slice,
    measure,
    move_sorted,
    next_piece,
    row_groups,
)
from daemon.store.database import Store

log = structlog.get_logger("distq")

PIECE_ROWS = 4 * ROW_GROUP_ROWS
MIN_ROWS = 4 * ROW_GROUP_ROWS  # smaller tables are a few row groups: nothing to gain


def layout(store: Store, piece_rows: int = PIECE_ROWS) -> Clustering:
    """The fact table's clustering now (a reader-thread call)."""
    cur = store.cursor()
    try:
        return measure(row_groups(cur), piece_rows)
    finally:
        cur.close()


def needs_pass(report: Clustering, min_rows: int = MIN_ROWS) -> bool:
    """Whether a pass would help: a big enough table with a disordered key range."""
    return report.rows >= min_rows and any(s.disordered for s in report.slices)


def recluster_pass(store: Store, piece_rows: int = PIECE_ROWS) -> tuple[int, Clustering]:
    """A whole pass at once (tests, benchmarks): rows moved, clustering after."""
    moved, after = 0, 0
    while (piece := next_piece(layout(store, piece_rows), after)) is not None:
        moved += _move(store, piece.lo, piece.hi)
        after = piece.hi
    checkpoint(store)
    return moved, layout(store, piece_rows)


def _next(store: Store, after: int) -> Slice | None:
    return next_piece(layout(store), after)


def _move(store: Store, lo: int, hi: int) -> int:
    cur = store.cursor()
    try:
        return move_sorted(cur, lo, hi)
    finally:
        cur.close()


def checkpoint(store: Store) -> bool:
    """Write the moved rows out and drop emptied row groups; False if DuckDB declines."""
    cur = store.cursor()
    try:
        cur.execute("CHECKPOINT").fetchall()
        return True
    except duckdb.Error as exc:
        log.info("checkpoint after re-cluster deferred", error=str(exc).splitlines()[0])
        return False
    finally:
        cur.close()


async def serve_recluster(
    node: Node, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
) -> None:
    """Measure after writes settle; run a pass when the layout needs one."""
    task_status.started()
    idle = node.config.recluster_idle
    while True:
        await _quiet(node, idle)
        report = await node.read(layout)
        coordinator(node).clustering = report.to_dict()
        if needs_pass(report):
            await _pass(node, report, idle)
        await node.wait_changed()


async def _pass(node: Node, before: Clustering, idle: float) -> None:
    moved, after_key = 0, 0
    while True:
        await _quiet(node, idle)
        piece = await node.read(partial(_next, after=after_key))
        if piece is None:
            break
        moved += await node.write_derived(partial(_move, lo=piece.lo, hi=piece.hi))
        after_key = piece.hi
    await node.write_derived(checkpoint)
    after = await node.read(layout)
    coordinator(node).clustering = after.to_dict()
    node.metrics.inc("recluster_passes")
    node.metrics.inc("recluster_rows", moved)
    log.info("re-clustered", rows_moved=moved, before=before.to_dict(), after=after.to_dict())


async def _quiet(node: Node, idle: float) -> None:
    """Return once no write has committed for ``idle`` seconds."""
    while True:
        with trio.move_on_after(idle) as scope:
            await node.wait_changed()
        if scope.cancelled_caught:
            return
