"""Columnar ingest: a chunk of results as Arrow, checked and turned into row changes
without a Python object per row.

``peerctl ingest`` and ``Client.ingest_arrow`` send each chunk as an Arrow IPC stream
whose columns are the fields of ``record`` (``RESULT_FIELDS``). :func:`prepare` runs in
a reader thread: it checks types and values column by column (pyarrow compute), builds
the ``performance_results`` rows with one DuckDB query (UUIDv7 keys, hardware keys,
defaults) and compresses them into the block's columnar payload. :func:`changes` runs
in the writer: it adds the models and hardware rows not yet present, a few keys.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import duckdb

from daemon.store.database import Store
from daemon.store.lazy import lazy_module
from daemon.writes.changes import RESULT_FIELDS, WriteError, guess_family, now_us
from protocol.changeset import TableChanges
from protocol.errors import RemoteProtocolError
from protocol.schema import HARDWARE, MODELS, RESULTS

if TYPE_CHECKING:
    import pyarrow as pa
    import pyarrow.compute as pc

    from protocol import columnar
else:
    pa = lazy_module("pyarrow")
    pc = lazy_module("pyarrow.compute")
    columnar = lazy_module("protocol.columnar")


MAX_ROWS_PER_CHUNK = 500_000
COLUMNAR_MIN_ROWS = 512  # smaller chunks travel as msgpack (format 1): less overhead
MAX_TEXT = 4096
_NUMBER = {"throughput", "latency", "memory_mb"}
_INTEGER = {"batch_size"}


@dataclass
class Prepared:
    """A checked chunk: its results as row changes, and the models and hardware it names."""

    results: TableChanges
    models: dict[str, str | None]  # model name -> family of its first row
    hardware: dict[str, tuple[str, str | None]]  # hardware key -> (type, device)
    stamp: int

    @property
    def rows(self) -> int:
        """Results in the chunk."""
        return len(self.results)


def load() -> None:
    """Import what :func:`prepare` uses (pyarrow, compute, the columnar codec): a caller
    about to ingest asks for this first, so the import overlaps its own start-up."""
    columnar.MAX_RAW_BYTES  # noqa: B018  (the first attribute read imports the module)
    pc.field  # noqa: B018


def read_records(raw: bytes | bytearray | memoryview) -> pa.Table:
    """The chunk of an ``ingest`` request, typed per ``RESULT_FIELDS``; raises WriteError."""
    try:
        table = columnar.read_stream(raw, "ingest chunk")
    except RemoteProtocolError as exc:
        raise WriteError(str(exc)) from exc
    unknown = set(table.column_names) - set(RESULT_FIELDS)
    if unknown or len(set(table.column_names)) != table.num_columns:
        raise WriteError(f"unknown or repeated fields: {sorted(unknown) or table.column_names}")
    if not 0 < table.num_rows <= MAX_ROWS_PER_CHUNK:
        raise WriteError(f"between 1 and {MAX_ROWS_PER_CHUNK} rows per chunk, got {table.num_rows}")
    for name, (required, _) in RESULT_FIELDS.items():
        if name in table.column_names:
            table = table.set_column(
                table.column_names.index(name), name, _checked(name, table.column(name), required)
            )
        elif required:
            raise WriteError(f"missing required field {name!r}")
    return table


def _checked(name: str, column: pa.ChunkedArray, required: bool) -> pa.ChunkedArray:
    """One field's column, cast to its type and checked the way ``check_records`` does."""
    if required and column.null_count:
        raise WriteError(f"row {_first(pc.is_null(column))}: {name} is required")
    kind = column.type
    if name in _NUMBER:
        if not (pa.types.is_floating(kind) or pa.types.is_integer(kind)):
            raise WriteError(f"{name} must be numbers, got {kind}")
        column = column.cast(pa.float64())
        finite = pc.is_finite(column)
        if pc.any(pc.invert(pc.fill_null(finite, True))).as_py():
            raise WriteError(f"row {_first(pc.invert(pc.fill_null(finite, True)))}: "
                             f"{name} is not finite")  # fmt: skip
        return column
    if name in _INTEGER:
        if not pa.types.is_integer(kind):
            raise WriteError(f"{name} must be integers, got {kind}")
        return column.cast(pa.int64())
    if not (pa.types.is_string(kind) or pa.types.is_large_string(kind)):
        raise WriteError(f"{name} must be text, got {kind}")
    column = column.cast(pa.string())
    lengths = pc.utf8_length(pc.utf8_trim_whitespace(column))
    bad = pc.greater(lengths, MAX_TEXT)
    if required:
        bad = pc.or_(bad, pc.equal(lengths, 0))
    if pc.any(bad).as_py():
        raise WriteError(f"row {_first(bad)}: {name} is empty or too long")
    return column


def _first(mask: Any) -> int:
    """Index of the first true value of a boolean column."""
    return int(pc.index(pc.fill_null(mask, False), True).as_py())


def _text(table: pa.Table, name: str) -> str:
    return name if name in table.column_names else "NULL::VARCHAR"


def _results_sql(table: pa.Table, stamp: int) -> str:
    """The results rows of a registered ``chunk``, in wire types and column order."""
    device = _text(table, "device_name")
    has = set(table.column_names)
    exprs = {
        "result_id": "uuidv7()",
        "run_id": "CAST(run_id AS UUID)" if "run_id" in has else "NULL::UUID",
        "model_id": "model_name",
        "hardware_id": f"CASE WHEN {device} IS NULL OR {device} = '' THEN hardware_type "
        f"ELSE hardware_type || ':' || {device} END",
        "test_case": "coalesce(nullif(test_case, ''), 'default')" if "test_case" in has
        else "'default'",
        "batch_size": "coalesce(batch_size, 1)" if "batch_size" in has else "1::BIGINT",
        "precision": _text(table, "precision"),
        "average_latency_ms": "latency",
        "throughput_items_per_second": "throughput",
        "memory_peak_mb": "memory_mb" if "memory_mb" in has else "NULL::DOUBLE",
        "metrics": _text(table, "metrics"),
        "created_at": f"make_timestamp({int(stamp)}::BIGINT)",
    }  # fmt: skip
    return "SELECT " + ", ".join(f"{e} AS {n}" for n, e in exprs.items()) + " FROM chunk"


def prepare(store: Store, raw: bytes | bytearray | memoryview) -> Prepared:
    """Check a chunk and build its results (reader thread); raises WriteError."""
    records = read_records(raw)
    stamp = now_us()
    cur = store.cursor()
    try:
        cur.register("chunk", records)
        try:
            rows = cur.sql(_results_sql(records, stamp)).to_arrow_table()
        except duckdb.Error as exc:  # a run_id that is no UUID, say
            raise WriteError(f"bad value: {str(exc).splitlines()[0]}") from exc
    finally:
        cur.close()
    schema = columnar.wire_schema(RESULTS.name, rows.column_names)
    rows = rows.cast(schema)
    n = rows.num_rows
    data: Any = columnar.ArrowColumns(rows)
    if n >= COLUMNAR_MIN_ROWS:
        data.payload  # noqa: B018  (compress here, in the reader thread, not in the writer)
    else:
        data = [data[i] for i in range(len(data))]  # a small chunk: msgpack lists
    full = (1 << len(schema)) - 1
    results = TableChanges(RESULTS.name, schema.names, bytes(n), [None] * n, [full] * n, data)
    return Prepared(results, _models(records), _hardware(records, rows), stamp)


def _models(records: pa.Table) -> dict[str, str | None]:
    family = records.column("model_family") if "model_family" in records.column_names else None
    names = records.column("model_name")
    if family is None:
        return dict.fromkeys(pc.unique(names).to_pylist())
    first = pa.table({"m": names, "f": family}).group_by("m", use_threads=False)
    grouped = first.aggregate([("f", "first")])
    return dict(zip(grouped.column("m").to_pylist(), grouped.column("f_first").to_pylist(),
                    strict=True))  # fmt: skip


def _hardware(records: pa.Table, rows: pa.Table) -> dict[str, tuple[str, str | None]]:
    device = (records.column("device_name") if "device_name" in records.column_names
              else pa.nulls(records.num_rows, pa.string()))  # fmt: skip
    table = pa.table({"k": rows.column("hardware_id"), "t": records.column("hardware_type"),
                      "d": device})  # fmt: skip
    grouped = table.group_by("k", use_threads=False).aggregate([("t", "first"), ("d", "first")])
    keys, types, devices = (grouped.column(c).to_pylist() for c in ("k", "t_first", "d_first"))
    return {k: (t, d or None) for k, t, d in zip(keys, types, devices, strict=True)}


def changes(store: Store, prepared: Prepared) -> list[TableChanges]:
    """The chunk's row changes: missing models and hardware, then the results (writer)."""
    out: list[TableChanges] = []
    have = store.current_versions(MODELS.name, list(prepared.models))
    new = [m for m in prepared.models if m not in have]
    if new:
        out.append(_inserts(MODELS.name, {
            "model_id": new, "model_name": new,
            "model_family": [prepared.models[m] or guess_family(m) for m in new],
            "created_at": [prepared.stamp] * len(new),
        }))  # fmt: skip
    have = store.current_versions(HARDWARE.name, list(prepared.hardware))
    new = [h for h in prepared.hardware if h not in have]
    if new:
        out.append(_inserts(HARDWARE.name, {
            "hardware_id": new,
            "hardware_type": [prepared.hardware[h][0] for h in new],
            "device_name": [prepared.hardware[h][1] for h in new],
            "created_at": [prepared.stamp] * len(new),
        }))  # fmt: skip
    out.append(prepared.results)
    return out


def _inserts(table: str, columns: dict[str, list[Any]]) -> TableChanges:
    names = list(columns)
    n = len(columns[names[0]])
    full = (1 << len(names)) - 1
    return TableChanges(table, names, bytes(n), [None] * n, [full] * n, list(columns.values()))
