"""Helpers for the knowledge-graph tests: a store with a graph, constructed rows, snapshots."""

from __future__ import annotations

import math
import uuid
from collections.abc import Sequence
from typing import Any

from storekit import tc

from daemon.kg.graph import KnowledgeGraph
from daemon.store.database import Store
from protocol.changeset import TableChanges

BASE_US = 1_750_000_000_000_000  # a fixed epoch (microseconds) for created_at


def open_graph(store: Store) -> KnowledgeGraph:
    """A graph hooked to ``store``'s commits, opened (built) now."""
    graph = KnowledgeGraph(store)
    store.on_commit.append(graph.on_commit)
    graph.open()
    return graph


def rid(n: int) -> str:
    """A deterministic result/compatibility UUID."""
    return str(uuid.UUID(int=n + 1))


RESULT_COLS = (
    "result_id", "model_id", "hardware_id", "batch_size", "precision",
    "throughput_items_per_second", "average_latency_ms", "memory_peak_mb", "created_at",
)  # fmt: skip


def results(rows: Sequence[Sequence[Any]], ops: Sequence[int] | None = None) -> TableChanges:
    """performance_results upserts: (n, model, hw, batch, precision, thr, lat, mem, t)."""
    full = [(rid(r[0]), *r[1:8], BASE_US + r[8] * 1_000_000) for r in rows]
    return tc("performance_results", RESULT_COLS, full, ops)


def delete_results(ns: Sequence[int]) -> TableChanges:
    """Deletes of results by number."""
    return tc("performance_results", ["result_id"], [(rid(n),) for n in ns], [1] * len(ns))


def models(rows: Sequence[tuple[str, str | None, str | None]]) -> TableChanges:
    """models rows: (model_id, model_family, modality)."""
    return tc(
        "models",
        ["model_id", "model_name", "model_family", "modality"],
        [(m, m, f, mod) for m, f, mod in rows],
    )


def hardware(rows: Sequence[tuple[str, str]]) -> TableChanges:
    """hardware_platforms rows: (hardware_id, hardware_type)."""
    return tc("hardware_platforms", ["hardware_id", "hardware_type"], list(rows))


COMPAT_COLS = (
    "compatibility_id", "model_id", "hardware_id", "is_compatible", "detection_success",
    "initialization_success", "error_message", "created_at",
)  # fmt: skip


def compat(rows: Sequence[tuple[int, str, str, bool, str | None, int]]) -> TableChanges:
    """hardware_compatibility rows: (n, model, hw, compatible, error message, t)."""
    full = [
        (rid(10_000_000 + n), m, h, ok, True, ok, err, BASE_US + t * 1_000_000)
        for n, m, h, ok, err, t in rows
    ]
    return tc("hardware_compatibility", COMPAT_COLS, full)


def snapshot(store: Store) -> dict[str, list[tuple[Any, ...]]]:
    """Every kg table and view, floats rounded (sums of logs differ in the last bits)."""
    cur = store.cursor()
    out = {}
    try:
        for name in ("result_configs", "configs", "compat", "config_stats", "nodes", "edges"):
            rows = cur.execute(f"SELECT * FROM kg.{name} ORDER BY ALL").fetchall()
            out[name] = [tuple(_round(v) for v in row) for row in rows]
    finally:
        cur.close()
    return out


def _round(value: Any) -> Any:
    if isinstance(value, float):
        return round(value, 6) if math.isfinite(value) else value
    return value
