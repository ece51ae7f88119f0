"""Queries that must give the single-node result when run distributed, and a comparer.

Shared by the planner unit tests (in-memory DuckDB) and the integration tests (three
real daemons). Float aggregates are compared with a relative tolerance of 1e-9: a sum
of doubles depends on the order of additions, on one node as much as on three.
"""

from __future__ import annotations

import math
from typing import Any

PR = "performance_results"

SPLIT_QUERIES: list[str] = [
    f"SELECT COUNT(*) FROM {PR}",
    f"SELECT COUNT(*) AS n, COUNT(precision) AS with_precision FROM {PR}",
    f"SELECT COUNT(DISTINCT model_id) FROM {PR}",
    f"SELECT SUM(batch_size), MIN(average_latency_ms), MAX(throughput_items_per_second) FROM {PR}",
    f"SELECT AVG(average_latency_ms) AS avg_lat, AVG(batch_size) FROM {PR}",
    f"SELECT model_id, COUNT(*) AS n FROM {PR} GROUP BY model_id",
    f"SELECT hardware_id, precision, AVG(throughput_items_per_second), MAX(memory_peak_mb) "
    f"FROM {PR} GROUP BY hardware_id, precision",
    f"SELECT precision, COUNT(*) FROM {PR} GROUP BY precision",  # NULL group
    f"SELECT model_id, SUM(batch_size) AS s FROM {PR} GROUP BY 1 HAVING SUM(batch_size) > 40",
    f"SELECT model_id, COUNT(*) AS n FROM {PR} GROUP BY model_id "
    "HAVING AVG(average_latency_ms) > 5",
    f"SELECT model_id, AVG(average_latency_ms) AS a FROM {PR} GROUP BY model_id "
    "ORDER BY a DESC, model_id LIMIT 3",
    f"SELECT hardware_id, COUNT(DISTINCT model_id) AS models, COUNT(*) AS runs FROM {PR} "
    "GROUP BY hardware_id ORDER BY hardware_id",
    f"SELECT COUNT(DISTINCT precision), SUM(DISTINCT batch_size), COUNT(*) FROM {PR}",
    f"SELECT COUNT(*), SUM(batch_size), AVG(memory_peak_mb), MIN(precision) FROM {PR} WHERE 1 = 0",
    f"SELECT model_id, COUNT(*) FROM {PR} WHERE batch_size > 1000 GROUP BY model_id",
    f"SELECT AVG(memory_peak_mb), COUNT(memory_peak_mb), MIN(memory_peak_mb) FROM {PR}",
    f"SELECT batch_size * 2 AS b2, COUNT(*) * 10 AS c10 FROM {PR} GROUP BY batch_size * 2 "
    "ORDER BY b2",
    f"SELECT upper(model_id) AS m, MAX(average_latency_ms) - MIN(average_latency_ms) AS spread "
    f"FROM {PR} GROUP BY model_id ORDER BY spread DESC, m",
    f"SELECT result_id, average_latency_ms FROM {PR} ORDER BY average_latency_ms DESC, "
    "result_id LIMIT 5",
    f"SELECT result_id FROM {PR} ORDER BY throughput_items_per_second, result_id LIMIT 4 OFFSET 3",
    f"SELECT model_id, batch_size FROM {PR} WHERE precision = 'fp16' AND batch_size >= 4",
    f"SELECT DISTINCT model_id, precision FROM {PR}",
    f"SELECT * FROM {PR} WHERE memory_peak_mb IS NULL ORDER BY result_id LIMIT 7",
    f"SELECT result_id, batch_size FROM {PR} WHERE precision IS NULL ORDER BY memory_peak_mb "
    "NULLS FIRST, result_id LIMIT 6",
    f"SELECT m.model_family, COUNT(*) AS n, AVG(r.average_latency_ms) AS lat FROM {PR} r "
    "JOIN models m ON r.model_id = m.model_id GROUP BY m.model_family",
    f"SELECT h.hardware_type, m.model_family, MAX(r.throughput_items_per_second) FROM {PR} r "
    "JOIN models m ON r.model_id = m.model_id JOIN hardware_platforms h "
    "ON r.hardware_id = h.hardware_id GROUP BY ALL",
    f"SELECT r.result_id, m.model_family FROM {PR} r LEFT JOIN models m "
    "ON r.model_id = m.model_id WHERE r.batch_size = 8",
    f"SELECT model_id, COUNT(*) FROM {PR} WHERE model_id LIKE 'model-1%' GROUP BY model_id "
    "ORDER BY 2 DESC, 1 LIMIT 2",
    f"SELECT COUNT(*) FROM {PR} WHERE result_id IS NULL",
    f"SELECT model_id FROM {PR} WHERE 1 = 0 ORDER BY model_id LIMIT 3",
    f"SELECT * FROM {PR} r JOIN models m ON r.model_id = m.model_id WHERE r.batch_size = 2 "
    "ORDER BY r.result_id LIMIT 4",
]

SINGLE_NODE_QUERIES: list[str] = [
    f"SELECT median(average_latency_ms) FROM {PR}",
    f"SELECT model_id, row_number() OVER (ORDER BY result_id) FROM {PR}",
    f"SELECT * FROM {PR} WHERE model_id IN (SELECT model_id FROM models)",
    "SELECT COUNT(*) FROM models",
    f"SELECT COUNT(*) FROM models m LEFT JOIN {PR} r ON r.model_id = m.model_id",
    f"WITH x AS (SELECT * FROM {PR}) SELECT COUNT(*) FROM x",
    f"SELECT DISTINCT ON (model_id) model_id, result_id FROM {PR}",
    f"SELECT COUNT(*) FILTER (WHERE batch_size > 2) FROM {PR}",
    f"SELECT COUNT(*) FROM {PR} a JOIN {PR} b ON a.result_id = b.result_id",
]


def has_order(sql: str) -> bool:
    """True when row order is part of the answer."""
    return " ORDER BY " in sql.upper()


def same_result(expected: list[list[Any]], got: list[list[Any]], ordered: bool) -> bool:
    """Equal rows (floats to 1e-9 relative), in order when ``ordered``."""
    if len(expected) != len(got):
        return False
    if not ordered:
        expected, got = sorted(expected, key=_sort_key), sorted(got, key=_sort_key)
    return all(_same_row(a, b) for a, b in zip(expected, got, strict=True))


def _sort_key(row: list[Any]) -> list[tuple[int, Any]]:
    return [(0, "") if v is None else (1, round(v, 6) if isinstance(v, float) else str(v))
            for v in row]  # fmt: skip


def _same_row(a: list[Any], b: list[Any]) -> bool:
    return len(a) == len(b) and all(_same_value(x, y) for x, y in zip(a, b, strict=True))


def _same_value(x: Any, y: Any) -> bool:
    if isinstance(x, float) or isinstance(y, float):
        if x is None or y is None:
            return x is y
        return math.isclose(float(x), float(y), rel_tol=1e-9, abs_tol=1e-12)
    return bool(x == y)
