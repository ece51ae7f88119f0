"""The knowledge-graph service and its control methods (``peerctl kg ...``).

``serve`` opens the graph (rebuilding it when it is missing, outdated or behind),
hooks it to the store's commits, and folds committed changes into it once writes
pause (at most every ``FOLD_EVERY`` seconds), in the writer thread. Every kg query
first folds anything still pending, so a query sees every write committed before it.
"""

from __future__ import annotations

import time
import weakref
from collections.abc import Callable
from typing import Any, TypeVar

import duckdb
import structlog
import trio

from daemon.kg.graph import REBUILD_MIN_KEYS, KnowledgeGraph
from daemon.kg.patterns import compatibility_map, detect_patterns
from daemon.node import Node
from daemon.query.methods import to_wire
from daemon.store.database import Store
from protocol.control import ControlError, param

log = structlog.get_logger("kg")
T = TypeVar("T")
_GRAPHS: weakref.WeakKeyDictionary[Node, KnowledgeGraph] = weakref.WeakKeyDictionary()
MAX_TOP_K = 10_000
MAX_LIMIT = 10_000
# The service folds changes in once writes pause this long (or after MAX_DELAY of
# continuous writes), so an ingest's chunks cost one graph update and do not compete
# with the ingest for the writer thread. Queries never wait for it: they fold first.
QUIET = 0.3
MAX_DELAY = 30.0
# ... and at most every FOLD_EVERY seconds: a fold is a DuckDB transaction of ~15 ms
# however few results it adds, and a replicated write reaches every peer, so writes a
# second or two apart cost one fold between them, not one each.
FOLD_EVERY = 5.0
QUIET_BULK = 2.0  # the pause a pending rebuild (a bulk load) waits for; it has no MAX_DELAY


async def serve(
    node: Node, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
) -> None:
    """Keep the knowledge graph of ``node`` current until cancelled.

    Reports started at once: building a graph for a big database that has none (or an
    outdated one) can take a while, and must not hold up the control socket or
    systemd's READY=1; kg methods answer 'unavailable' until it is built.
    """
    graph = KnowledgeGraph(node.store)
    node.store.on_commit.append(graph.on_commit)
    task_status.started()
    try:
        try:
            rebuilt = await node.write_derived(lambda _s: graph.open())
        except duckdb.Error as exc:  # the daemon serves on; kg methods say 'unavailable'
            node.metrics.inc("kg_errors")
            log.error("knowledge graph could not be built", error=str(exc))
            await trio.sleep_forever()
        if rebuilt is not None:
            node.metrics.inc("kg_rebuilds")
        _GRAPHS[node] = graph
        folded = float("-inf")
        while True:
            await node.wait_changed()
            await trio.sleep_until(folded + FOLD_EVERY)
            bulk = graph.pending_rows() >= REBUILD_MIN_KEYS
            # a bulk load waits for a real pause: its fold is a rebuild, seconds of the
            # writer thread that would stall the next chunk (queries fold first anyway)
            paused = await _quiet(node, QUIET_BULK if bulk else QUIET, None if bulk else MAX_DELAY)
            if graph.has_pending() and (paused or graph.pending_rows() < REBUILD_MIN_KEYS):
                await flush(node, graph)
                folded = trio.current_time()
    finally:
        node.store.on_commit.remove(graph.on_commit)
        _GRAPHS.pop(node, None)


async def _quiet(node: Node, quiet: float, max_delay: float | None) -> bool:
    """Wait until no change arrived for ``quiet`` seconds (True) or ``max_delay`` passed."""
    with trio.move_on_after(max_delay if max_delay is not None else float("inf")):
        while True:
            with trio.move_on_after(quiet) as pause:
                await node.wait_changed()
            if pause.cancelled_caught:
                return True
    return False


async def flush(node: Node, graph: KnowledgeGraph) -> None:
    """Fold pending changes into the graph; on a DuckDB error rebuild it instead."""
    try:
        done = await node.write_derived(lambda _s: graph.flush())
    except duckdb.Error as exc:
        node.metrics.inc("kg_errors")
        log.error("knowledge graph update failed; rebuilding", error=str(exc))
        try:
            await node.write_derived(lambda _s: graph.populate())
        except duckdb.Error as again:  # stays behind; rebuilt at the next start
            log.error("knowledge graph rebuild failed", error=str(again))
            return
        node.metrics.inc("kg_rebuilds")
        return
    if done:
        node.metrics.inc("kg_updates")
        node.metrics.inc("kg_rows_updated", done["rows"])


def is_ready(node: Node) -> bool:
    """True once the graph of ``node`` is built and answering."""
    return node in _GRAPHS


def graph_of(node: Node) -> KnowledgeGraph:
    """The running graph of ``node``, or an 'unavailable' control error."""
    graph = _GRAPHS.get(node)
    if graph is None:
        raise ControlError("unavailable", "the knowledge graph is not built yet (or not running)")
    return graph


async def _current(node: Node) -> KnowledgeGraph:
    graph = graph_of(node)
    if graph.has_pending():
        await flush(node, graph)
    return graph


async def _read(node: Node, fn: Callable[[duckdb.DuckDBPyConnection], T]) -> T:
    def run(store: Store) -> T:
        cur = store.cursor()
        try:
            return fn(cur)
        finally:
            cur.close()

    try:
        return await node.read(run)
    except duckdb.Error as exc:
        node.metrics.inc("kg_errors")
        raise ControlError("error", f"knowledge graph query failed: {exc}") from exc


def _number(params: dict[str, Any], name: str, default: float, lo: float, hi: float) -> float:
    value = params.get(name)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float) or not lo <= value <= hi:
        raise ControlError("bad_request", f"parameter {name!r} must be a number in [{lo}, {hi}]")
    return value


async def kg_similar(node: Node, params: dict[str, Any]) -> dict[str, Any]:
    """Configurations (or models) most similar to a node, by cosine similarity."""
    target = param(params, "node", str)
    top_k = int(_number(params, "top_k", 10, 1, MAX_TOP_K))
    if params.get("top_k") is not None and not isinstance(params["top_k"], int):
        raise ControlError("bad_request", "parameter 'top_k' must be an integer")
    min_sim = float(_number(params, "min_similarity", -1.0, -1.0, 1.0))
    graph = await _current(node)
    started = time.perf_counter()
    try:
        resolved, kind, matches = await _read(
            node, lambda cur: graph.index.similar(cur, target, top_k, min_sim)
        )
    except KeyError as exc:
        raise ControlError(
            "not_found", f"no configuration or model {target!r} in the graph"
        ) from exc
    node.metrics.inc("kg_queries")
    return {
        "node": resolved,
        "kind": kind,
        "matches": [
            {"node": m.node, "kind": m.kind, "similarity": m.similarity, **to_wire(m.details)}
            for m in matches
        ],
        "configs": len(graph.index),
        "elapsed_ms": round((time.perf_counter() - started) * 1000, 3),
    }


async def kg_patterns(node: Node, params: dict[str, Any]) -> dict[str, Any]:
    """Speed-ups, batch scaling, precision effects, outliers and regressions."""
    limit = _number(params, "limit", 20, 1, MAX_LIMIT)
    await _current(node)
    found = await _read(node, lambda cur: detect_patterns(cur, int(limit)))
    node.metrics.inc("kg_queries")
    return to_wire(found)  # type: ignore[no-any-return]


async def kg_compat(node: Node, params: dict[str, Any]) -> list[dict[str, Any]]:
    """Model x hardware compatibility: compatible, incompatible (with reason) or unknown."""
    await _current(node)
    rows = await _read(node, compatibility_map)
    node.metrics.inc("kg_queries")
    return to_wire(rows)  # type: ignore[no-any-return]


async def kg_graph(node: Node, params: dict[str, Any]) -> dict[str, Any]:
    """All nodes and edges, column-wise (``peerctl kg export`` writes GraphML or JSON)."""
    graph = await _current(node)
    if not await node.read(lambda _s: graph.edges_fresh()):
        await node.write_derived(lambda _s: graph.refresh_similar_edges())

    def fetch(cur: duckdb.DuckDBPyConnection) -> dict[str, Any]:
        out = {}
        for name in ("nodes", "edges"):
            table = cur.sql(f"SELECT * FROM kg.{name} ORDER BY ALL").to_arrow_table()
            # strings, integers, floats and nulls only: msgpack carries them as they are
            out[name] = {c: table.column(c).to_pylist() for c in table.schema.names}
        return out

    return await _read(node, fetch)


async def kg_populate(node: Node, params: dict[str, Any]) -> dict[str, Any]:
    """Rebuild the graph from the replicated tables; returns time and sizes."""
    graph = graph_of(node)
    figures = await node.write_derived(lambda _s: graph.populate())
    node.metrics.inc("kg_rebuilds")
    return figures


def _counted(fn: Callable[[Node, dict[str, Any]], Any]) -> Callable[[Node, dict[str, Any]], Any]:
    """Count refused kg requests by error code (``kg_refused_bad_request`` ...)."""

    async def call(node: Node, params: dict[str, Any]) -> Any:
        try:
            return await fn(node, params)
        except ControlError as exc:
            node.metrics.inc(f"kg_refused_{exc.code}")
            raise

    return call


METHODS = {
    name: _counted(fn)
    for name, fn in {
        "kg_similar": kg_similar,
        "kg_patterns": kg_patterns,
        "kg_compat": kg_compat,
        "kg_graph": kg_graph,
        "kg_populate": kg_populate,
    }.items()
}
