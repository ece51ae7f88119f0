"""Read a database in the lab's existing layout (integer ids) as duckpeer rows.

Ids become global keys: a hardware platform's key is ``hardware_type[:device_name]``,
a model's is its name, and runs, results and compatibility rows get UUIDv5s derived
from their legacy id and content, so importing the same database twice yields the
same keys (and the daemon adds nothing the second time).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from protocol.schema import hardware_key

NAMESPACE = uuid.UUID("6f9f4a52-6a8e-4c7b-9d0e-2b1d2f6c7a31")  # duckpeer legacy imports
TABLE_ORDER = ("hardware_platforms", "models", "test_runs", "performance_results",
               "hardware_compatibility")  # fmt: skip


class LegacyDbError(Exception):
    """The file is not a readable database in the legacy layout."""


def _key(kind: str, *parts: Any) -> str:
    return str(uuid.uuid5(NAMESPACE, kind + "|" + "|".join(map(str, parts))))


def read_legacy(path: Path, chunk: int = 50_000) -> Iterator[tuple[str, dict[str, list[Any]]]]:
    """(table, columns) chunks of duckpeer rows, parents before children."""
    import duckdb  # only import-db pays for DuckDB

    if not path.is_file():
        raise LegacyDbError(f"{path}: no such file")
    try:
        con = duckdb.connect(str(path), read_only=True)
    except duckdb.Error as exc:
        raise LegacyDbError(f"{path}: not a DuckDB database: {exc}") from exc
    try:
        ids = _IdMaps()
        for table in TABLE_ORDER:
            yield from _chunks(table, _rows(con, table, ids), chunk)
    except duckdb.Error as exc:
        raise LegacyDbError(
            f"{path}: not in the legacy layout: {str(exc).splitlines()[0]}"
        ) from exc
    finally:
        con.close()


class _IdMaps:
    def __init__(self) -> None:
        self.hardware: dict[int, str] = {}
        self.models: dict[int, str] = {}
        self.runs: dict[int, str] = {}


def _rows(con: Any, table: str, ids: _IdMaps) -> Iterator[dict[str, Any]]:
    return {
        "hardware_platforms": _hardware,
        "models": _models,
        "test_runs": _runs,
        "performance_results": _results,
        "hardware_compatibility": _compatibility,
    }[table](con, ids)


def _select(con: Any, sql: str) -> Iterator[dict[str, Any]]:
    cur = con.execute(sql)
    names = [d[0] for d in cur.description]
    while batch := cur.fetchmany(10_000):
        for row in batch:
            yield dict(zip(names, row, strict=True))


_TS = "CAST(epoch_us({0}) AS BIGINT) AS {0}"


def _hardware(con: Any, ids: _IdMaps) -> Iterator[dict[str, Any]]:
    sql = (f"SELECT hardware_id AS legacy_id, hardware_type, device_name, platform, "
           f"platform_version, driver_version, CAST(memory_gb AS DOUBLE) AS memory_gb, "
           f"compute_units, CAST(metadata AS VARCHAR) AS metadata, {_TS.format('created_at')} "
           f"FROM hardware_platforms ORDER BY hardware_id")  # fmt: skip
    for row in _select(con, sql):
        key = hardware_key(row["hardware_type"], row["device_name"])
        ids.hardware[row.pop("legacy_id")] = key
        yield {"hardware_id": key, **row}


def _models(con: Any, ids: _IdMaps) -> Iterator[dict[str, Any]]:
    sql = (f"SELECT model_id AS legacy_id, model_name, model_family, modality, source, version, "
           f"CAST(parameters_million AS DOUBLE) AS parameters_million, "
           f"CAST(metadata AS VARCHAR) AS metadata, {_TS.format('created_at')} "
           f"FROM models ORDER BY model_id")  # fmt: skip
    for row in _select(con, sql):
        ids.models[row.pop("legacy_id")] = row["model_name"]
        yield {"model_id": row["model_name"], **row}


def _runs(con: Any, ids: _IdMaps) -> Iterator[dict[str, Any]]:
    sql = (f"SELECT run_id AS legacy_id, test_name, test_type, {_TS.format('started_at')}, "
           f"{_TS.format('completed_at')}, CAST(execution_time_seconds AS DOUBLE) AS "
           f"execution_time_seconds, success, git_commit, git_branch, command_line, "
           f"CAST(metadata AS VARCHAR) AS metadata, {_TS.format('created_at')} "
           f"FROM test_runs ORDER BY run_id")  # fmt: skip
    for row in _select(con, sql):
        legacy = row.pop("legacy_id")
        key = _key("run", legacy, row["test_name"], row["created_at"], row["started_at"])
        ids.runs[legacy] = key
        yield {"run_id": key, **row}


def _results(con: Any, ids: _IdMaps) -> Iterator[dict[str, Any]]:
    floats = ("total_time_seconds", "average_latency_ms", "throughput_items_per_second",
              "memory_peak_mb")  # fmt: skip
    sql = (f"SELECT result_id AS legacy_id, run_id, model_id, hardware_id, test_case, "
           f"batch_size, precision, {', '.join(f'CAST({c} AS DOUBLE) AS {c}' for c in floats)}, "
           f"iterations, warmup_iterations, CAST(metrics AS VARCHAR) AS metrics, "
           f"{_TS.format('created_at')} FROM performance_results ORDER BY result_id")  # fmt: skip
    for row in _select(con, sql):
        row = _map_refs(row, ids)
        key = _key("result", row.pop("legacy_id"), row["model_id"], row["hardware_id"],
                   row["test_case"], row["batch_size"], row["created_at"])  # fmt: skip
        yield {"result_id": key, **row}


def _compatibility(con: Any, ids: _IdMaps) -> Iterator[dict[str, Any]]:
    sql = (f"SELECT compatibility_id AS legacy_id, run_id, model_id, hardware_id, "
           f"is_compatible, detection_success, initialization_success, error_message, "
           f"error_type, suggested_fix, workaround_available, "
           f"CAST(compatibility_score AS DOUBLE) AS compatibility_score, "
           f"CAST(metadata AS VARCHAR) AS metadata, {_TS.format('created_at')} "
           f"FROM hardware_compatibility ORDER BY compatibility_id")  # fmt: skip
    for row in _select(con, sql):
        row = _map_refs(row, ids)
        key = _key("compat", row.pop("legacy_id"), row["model_id"], row["hardware_id"],
                   row["created_at"])  # fmt: skip
        yield {"compatibility_id": key, **row}


def _map_refs(row: dict[str, Any], ids: _IdMaps) -> dict[str, Any]:
    """Legacy integer references to global keys (None where the parent is missing)."""
    row["run_id"] = ids.runs.get(row["run_id"]) if row["run_id"] is not None else None
    row["model_id"] = ids.models.get(row["model_id"])
    row["hardware_id"] = ids.hardware.get(row["hardware_id"])
    return row


def _chunks(
    table: str, rows: Iterator[dict[str, Any]], size: int
) -> Iterator[tuple[str, dict[str, list[Any]]]]:
    batch: list[dict[str, Any]] = []
    for row in rows:
        batch.append(row)
        if len(batch) >= size:
            yield table, _columns(batch)
            batch = []
    if batch:
        yield table, _columns(batch)


def _columns(rows: list[dict[str, Any]]) -> dict[str, list[Any]]:
    return {name: [r[name] for r in rows] for name in rows[0]}
