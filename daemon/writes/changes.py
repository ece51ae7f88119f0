"""Turn user writes (records, ingest chunks, updates, deletes) into row changes.

Inputs come from the control socket, so everything is validated here: a bad value is
a :class:`WriteError` naming the field and row, never a half-written changeset.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from typing import Any

from daemon.store.database import Store
from protocol.changeset import Op, TableChanges
from protocol.schema import MODELS, RESULTS, TABLES, ColType

MAX_ROWS_PER_WRITE = 100_000

# record field -> (required, accepted python types)
RESULT_FIELDS: dict[str, tuple[bool, tuple[type, ...]]] = {
    "model_name": (True, (str,)),
    "hardware_type": (True, (str,)),
    "throughput": (True, (int, float)),
    "latency": (True, (int, float)),
    "batch_size": (False, (int,)),
    "precision": (False, (str,)),
    "memory_mb": (False, (int, float)),
    "test_case": (False, (str,)),
    "device_name": (False, (str,)),
    "model_family": (False, (str,)),
    "run_id": (False, (str,)),
    "metrics": (False, (str,)),
}


class WriteError(ValueError):
    """A write request is invalid; the message says which field of which row."""


def now_us() -> int:
    """Current time in microseconds since the epoch (the wire form of timestamps)."""
    return time.time_ns() // 1000


def check_records(records: Mapping[str, Any]) -> int:
    """Validate columnar result records; return the row count."""
    if not isinstance(records, Mapping):
        raise WriteError("records must be a map of field -> list")
    unknown = set(records) - set(RESULT_FIELDS)
    if unknown:
        raise WriteError(f"unknown fields: {sorted(unknown)}")
    lengths = {len(v) if isinstance(v, list) else -1 for v in records.values()}
    if len(lengths) != 1 or -1 in lengths:
        raise WriteError("every field must be a list of the same length")
    n = lengths.pop()
    if not 0 < n <= MAX_ROWS_PER_WRITE:
        raise WriteError(f"between 1 and {MAX_ROWS_PER_WRITE} rows per write, got {n}")
    for name, (required, kinds) in RESULT_FIELDS.items():
        _check_column(name, records.get(name), required, kinds, n)
    return n


def _check_column(
    name: str, values: list[Any] | None, required: bool, kinds: tuple[type, ...], n: int
) -> None:
    """Type-check a whole column at C speed (sets of types, map over builtins)."""
    if values is None:
        if required:
            raise WriteError(f"missing required field {name!r}")
        return
    present = [v for v in values if v is not None] if None in values else values
    if required and len(present) != n:
        raise WriteError(f"row {values.index(None)}: {name} is required")
    bad_types = set(map(type, present)) - set(kinds)
    if bad_types:
        row = next(i for i, v in enumerate(values) if type(v) in bad_types)
        raise WriteError(f"row {row}: {name} has type {type(values[row]).__name__}")
    if float in kinds and not all(map(math.isfinite, present)):
        row = next(i for i, v in enumerate(values) if v is not None and not math.isfinite(v))
        raise WriteError(f"row {row}: {name} is not finite")
    if str in kinds and present:
        lengths = list(map(len, map(str.strip, present)))
        if max(lengths) > 4096 or (required and min(lengths) == 0):
            row = next(i for i, v in enumerate(values) if not 0 < len(v.strip()) <= 4096)
            raise WriteError(f"row {row}: {name} is empty or too long")


def result_changes(
    store: Store, records: Mapping[str, list[Any]]
) -> tuple[list[TableChanges], list[str]]:
    """Row changes for new results, plus models and hardware rows not yet present."""
    n = check_records(records)
    col = lambda name: records.get(name) or [None] * n  # noqa: E731
    devices = col("device_name")
    types = records["hardware_type"]
    hw_keys = (
        list(types)
        if devices.count(None) == n
        else [f"{t}:{d}" if d else t for t, d in zip(types, devices, strict=True)]
    )  # fmt: skip  (hardware_key, written out: this runs for every ingested row)
    ids = store.uuid7(n)  # time-ordered, globally unique without coordination
    stamp = now_us()
    results = _insert_changes(
        RESULTS.name,
        {
            "result_id": ids,
            "run_id": col("run_id"),
            "model_id": list(records["model_name"]),
            "hardware_id": hw_keys,
            "test_case": _filled(records.get("test_case"), "default", n),
            "batch_size": _filled(records.get("batch_size"), 1, n),
            "precision": col("precision"),
            "average_latency_ms": list(map(float, records["latency"])),
            "throughput_items_per_second": list(map(float, records["throughput"])),
            "memory_peak_mb": _floats(col("memory_mb")),
            "metrics": col("metrics"),
            "created_at": [stamp] * n,
        },
    )
    changes = [
        *_missing_models(store, records["model_name"], col("model_family"), stamp),
        *_missing_hardware(store, hw_keys, records["hardware_type"], devices, stamp),
        results,
    ]
    return changes, ids


def _insert_changes(table: str, columns: Mapping[str, list[Any]]) -> TableChanges:
    names = [TABLES[table].key, *(c for c in columns if c != TABLES[table].key)]
    n = len(columns[names[0]])
    mask = (1 << len(names)) - 1
    return TableChanges(
        table, names, bytes(n), [None] * n, [mask] * n, [list(columns[c]) for c in names]
    )


def _first_seen(keys: Sequence[Any], *cols: Sequence[Any]) -> dict[Any, tuple[Any, ...]]:
    """Distinct keys with the values of their first row (built backwards at C speed)."""
    return dict(zip(reversed(keys), zip(*(reversed(c) for c in cols), strict=True), strict=True))


def _filled(values: list[Any] | None, default: Any, n: int) -> list[Any]:
    """``values`` with None (or empty) replaced by ``default``."""
    if values is None:
        return [default] * n
    if None in values or "" in values:
        return [default if v is None or v == "" else v for v in values]
    return values


def _floats(values: list[Any]) -> list[float | None]:
    if None in values:
        return [None if v is None else float(v) for v in values]
    return list(map(float, values))


def _missing_models(
    store: Store, names: Sequence[str], families: Sequence[str | None], stamp: int
) -> list[TableChanges]:
    wanted = _first_seen(names, families)
    existing = store.current_versions(MODELS.name, list(wanted))
    new = [k for k in wanted if k not in existing]
    if not new:
        return []
    return [
        _insert_changes(
            MODELS.name,
            {
                "model_id": new,
                "model_name": new,
                "model_family": [wanted[k][0] or guess_family(k) for k in new],
                "created_at": [stamp] * len(new),
            },
        )
    ]


def _missing_hardware(
    store: Store,
    keys: Sequence[str],
    types: Sequence[str],
    devices: Sequence[str | None],
    stamp: int,
) -> list[TableChanges]:
    wanted = _first_seen(keys, types, devices)
    existing = store.current_versions("hardware_platforms", list(wanted))
    new = [k for k in wanted if k not in existing]
    if not new:
        return []
    return [
        _insert_changes(
            "hardware_platforms",
            {
                "hardware_id": new,
                "hardware_type": [wanted[k][0] for k in new],
                "device_name": [wanted[k][1] for k in new],
                "created_at": [stamp] * len(new),
            },
        )
    ]


def guess_family(model_name: str) -> str:
    """Family from a model name: ``bert-base-uncased`` -> ``bert``."""
    base = model_name.rsplit("/", 1)[-1].lower()
    for sep in "-_.:":
        base = base.split(sep, 1)[0]
    return base


def update_change(store: Store, table: str, key: Any, values: Mapping[str, Any]) -> TableChanges:
    """A whole-row upsert of an existing row with ``values`` changed, based on its version."""
    schema = _table(table)
    unknown = set(values) - set(schema.column_names[1:])
    if unknown or not values:
        raise WriteError(f"unknown or key columns for {table}: {sorted(unknown) or 'none given'}")
    row = store.read_row(table, key)
    if row is None:
        raise WriteError(f"{table}: no row with key {key!r}")
    kinds = dict(schema.columns)
    for name, value in values.items():
        row[name] = coerce(kinds[name], value, name)
    base = store.current_versions(table, [key])[str(row[schema.key])]
    names = list(schema.column_names)
    mask = sum(1 << names.index(c) for c in values)
    return TableChanges(table, names, bytes([Op.UPSERT]), [base], [mask], [[row[c]] for c in names])


def delete_change(store: Store, table: str, key: Any) -> TableChanges:
    """A delete of an existing row, based on its version."""
    schema = _table(table)
    versions = store.current_versions(table, [key])
    if not versions:
        raise WriteError(f"{table}: no row with key {key!r}")
    ((text_key, base),) = versions.items()
    return TableChanges(table, [schema.key], bytes([Op.DELETE]), [base], [1], [[text_key]])


def _table(name: str) -> Any:
    schema = TABLES.get(name)
    if schema is None:
        raise WriteError(f"unknown table {name!r}; tables: {', '.join(TABLES)}")
    return schema


def coerce(kind: ColType, value: Any, name: str) -> Any:
    """Convert a user-given value (often a string from the CLI) to the wire type."""
    if value is None:
        return None
    try:
        if kind is ColType.INT:
            return int(value)
        if kind is ColType.FLOAT:
            return float(value)
        if kind is ColType.BOOL:
            return value if isinstance(value, bool) else str(value).lower() in {"1", "true", "yes"}
        if kind is ColType.TIMESTAMP:
            return int(value)
    except (TypeError, ValueError) as exc:
        raise WriteError(f"{name}: cannot convert {value!r} to {kind.value}") from exc
    return str(value)


def import_change(
    store: Store, table: str, columns: Mapping[str, Any]
) -> tuple[TableChanges | None, int]:
    """Rows of an import whose keys are not in the store (nor repeated), as one insert.

    Returns the change (None when nothing is new) and how many rows were skipped.
    """
    schema = _table(table)
    if not isinstance(columns, Mapping) or schema.key not in columns:
        raise WriteError(f"{table}: columns must be a map that includes {schema.key!r}")
    unknown = set(columns) - set(schema.column_names)
    if unknown:
        raise WriteError(f"{table}: unknown columns {sorted(unknown)}")
    lengths = {len(v) if isinstance(v, list) else -1 for v in columns.values()}
    if len(lengths) != 1 or -1 in lengths or not 0 < min(lengths) <= MAX_ROWS_PER_WRITE:
        raise WriteError(f"{table}: columns must be lists of 1..{MAX_ROWS_PER_WRITE} equal length")
    keys = columns[schema.key]
    if None in keys:
        raise WriteError(f"{table}: every row needs a {schema.key}")
    existing = store.current_versions(table, keys)
    rows: list[int] = []
    seen: set[str] = set()
    for i, key in enumerate(keys):
        text = str(key)
        if text not in existing and text not in seen:
            seen.add(text)
            rows.append(i)
    if not rows:
        return None, len(keys)
    picked = {name: [values[i] for i in rows] for name, values in columns.items()}
    return _insert_changes(table, picked), len(keys) - len(rows)
