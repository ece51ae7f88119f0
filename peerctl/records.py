"""Read result records from CSV, JSON (array or lines) or Parquet, as Arrow, in chunks.

Each record has the fields of ``peerctl record``. Common alternative column names of
lab tooling are accepted (``model`` or ``model_name``, ``throughput_items_per_second``
or ``throughput``...). A bad row is reported with its line and skipped; it never
stops the other rows.

CSV and Parquet are read by pyarrow and checked column by column while they are clean
(no Python object per row); the first CSV block with a value that does not parse, a
ragged row or a value out of range switches to Python's csv module, row by row, so that
each bad line is named. A chunk is an Arrow table whose columns are the record fields:
``peerctl ingest`` sends it as an Arrow IPC stream.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ALIASES = {
    "model": "model_name",
    "model_name": "model_name",
    "hardware": "hardware_type",
    "hardware_type": "hardware_type",
    "throughput": "throughput",
    "throughput_items_per_second": "throughput",
    "latency": "latency",
    "latency_ms": "latency",
    "average_latency_ms": "latency",
    "batch_size": "batch_size",
    "precision": "precision",
    "memory_mb": "memory_mb",
    "memory_peak_mb": "memory_mb",
    "test_case": "test_case",
    "device_name": "device_name",
    "device": "device_name",
    "model_family": "model_family",
}
REQUIRED = ("model_name", "hardware_type", "throughput", "latency")
FLOATS = {"throughput", "latency", "memory_mb"}
INTS = {"batch_size"}
FIELDS = tuple(dict.fromkeys(ALIASES.values()))


class RecordFileError(Exception):
    """The file cannot be read at all (missing, unknown format, no usable columns)."""


@dataclass
class Chunk:
    """Up to ``chunk_size`` valid records as an Arrow table, plus the rows skipped.

    Its columns are the fields present (all-null optional columns are dropped)."""

    table: Any  # pyarrow.Table
    bad: list[str] = field(default_factory=list)

    @property
    def rows(self) -> int:
        """Valid records in the chunk."""
        return int(self.table.num_rows)

    @property
    def columns(self) -> dict[str, list[Any]]:
        """The records column-wise, as Python values (for tests and small chunks)."""
        return {name: self.table.column(name).to_pylist() for name in self.table.column_names}


def read_chunks(path: Path, chunk_size: int = 50_000) -> Iterator[Chunk]:
    """Valid records of a file in column-wise chunks. A missing file or an unknown
    format raises RecordFileError here, before the first chunk is asked for."""
    suffix = path.suffix.lower()
    if not path.is_file():
        raise RecordFileError(f"{path}: no such file")
    if suffix == ".csv":
        return _csv_chunks(path, chunk_size)
    if suffix == ".parquet":
        return _parquet_chunks(path, chunk_size)
    if suffix in {".json", ".jsonl", ".ndjson"}:
        return _chunked(_json_rows(path), chunk_size)
    raise RecordFileError(f"{path}: unknown format {suffix!r} (use .csv, .json, .jsonl, .parquet)")


def count_rows(path: Path) -> int | None:
    """A cheap estimate of the rows in a file, for the progress bar."""
    suffix = path.suffix.lower()
    try:
        if suffix in {".csv", ".jsonl", ".ndjson"}:
            with path.open("rb") as fh:
                lines = sum(block.count(b"\n") for block in iter(lambda: fh.read(1 << 20), b""))
            return max(0, lines - (suffix == ".csv"))
        if suffix == ".parquet":
            import pyarrow.parquet as pq

            return int(pq.ParquetFile(path).metadata.num_rows)
    except (OSError, ValueError):
        return None  # read_chunks reports the file error
    return None


Row = tuple[str, dict[str, Any] | str]  # (where, record or why it is unreadable)


def _chunked(rows: Iterator[Row], size: int) -> Iterator[Chunk]:
    columns: dict[str, list[Any]] = {name: [] for name in FIELDS}
    bad: list[str] = []
    count = 0
    for where, raw in rows:
        try:
            if isinstance(raw, str):
                raise ValueError(raw)
            record = normalize(raw)
        except (ValueError, TypeError, OverflowError) as exc:  # e.g. a list or 1e400 as a number
            bad.append(f"{where}: {exc}")
            continue
        for name in FIELDS:
            columns[name].append(record.get(name))
        count += 1
        if count >= size:
            yield Chunk(_to_arrow(columns), bad)
            columns, bad, count = {name: [] for name in FIELDS}, [], 0
    if count or bad:
        yield Chunk(_to_arrow(columns), bad)


def _to_arrow(columns: dict[str, list[Any]]) -> Any:
    """Python columns of valid records as a table (all-None optional columns dropped)."""
    import pyarrow as pa

    kept = {k: v for k, v in columns.items() if k in REQUIRED or any(x is not None for x in v)}
    return pa.table({k: pa.array(v, _arrow_type(pa, k)) for k, v in kept.items()})


def normalize(raw: dict[str, Any]) -> dict[str, Any]:
    """Map aliases, convert types and check required fields of one record."""
    record: dict[str, Any] = {}
    for key, value in raw.items():
        name = ALIASES.get(str(key).strip().lower())
        if name is None or value is None or value == "":
            continue
        record[name] = _convert(name, value)
    missing = [name for name in REQUIRED if name not in record]
    if missing:
        raise ValueError(f"missing {', '.join(missing)}")
    return record


def _convert(name: str, value: Any) -> Any:
    if name in FLOATS:
        number = float(value)
        if not math.isfinite(number):
            raise ValueError(f"{name} is not a finite number")
        return number
    if name in INTS:
        if isinstance(value, float) and not value.is_integer():
            raise ValueError(f"{name} must be an integer")
        return int(value)
    text = str(value).strip()
    if not text or len(text) > 4096:
        raise ValueError(f"{name} is empty or too long")
    return text


def _csv_chunks(path: Path, size: int) -> Iterator[Chunk]:
    """CSV via pyarrow's parser while the data is clean; from the first block that is
    not, row by row with Python's csv module so each bad line is named."""
    done = 0
    try:
        for chunk in _arrow_csv_chunks(path, size):
            done += chunk.rows
            yield chunk
        return
    except _NotClean:
        pass
    yield from _python_csv_chunks(path, size, skip=done)


class _NotClean(Exception):
    """The fast path met a value it cannot judge; the slow path takes over."""


def _arrow_csv_chunks(path: Path, size: int) -> Iterator[Chunk]:
    import pyarrow as pa  # only ingest of CSV pays for pyarrow
    import pyarrow.csv as pacsv

    with path.open(newline="", encoding="utf-8", errors="replace") as fh:
        header = next(csv.reader(fh), None)
    if not header:
        raise RecordFileError(f"{path}: empty CSV")
    fields = {i: ALIASES.get(h.strip().lower()) for i, h in enumerate(header)}
    by_field = {f: i for i, f in fields.items() if f is not None}  # the last alias wins
    if not set(REQUIRED) <= set(by_field) or len(set(header)) != len(header):
        raise _NotClean
    types = {header[i]: _arrow_type(pa, f) for f, i in by_field.items()}
    options = pacsv.ConvertOptions(
        column_types=types, include_columns=list(types), null_values=[""],
        strings_can_be_null=True, quoted_strings_can_be_null=True,
    )  # fmt: skip
    rename = {header[i]: f for f, i in by_field.items()}
    try:
        reader = pacsv.open_csv(path, convert_options=options,
                                read_options=pacsv.ReadOptions(block_size=4 << 20))  # fmt: skip
        yield from _rechunked((_checked(b, rename) for b in reader), size)
    except pa.ArrowInvalid as exc:  # a value that does not parse, a ragged row...
        raise _NotClean from exc


def _rechunked(batches: Iterator[Any], size: int) -> Iterator[Chunk]:
    """Chunks of exactly ``size`` rows (the last one shorter) from checked batches."""
    import pyarrow as pa

    buffered: list[Any] = []
    count = 0
    for batch in batches:
        buffered.append(batch)
        count += batch.num_rows
        while count >= size:
            table = pa.Table.from_batches(buffered)
            yield Chunk(_trimmed(table.slice(0, size)))
            rest = table.slice(size)
            buffered, count = rest.to_batches(), rest.num_rows
    if count:
        yield Chunk(_trimmed(pa.Table.from_batches(buffered)))


def _trimmed(table: Any) -> Any:
    """Without optional columns that hold no value (the wire carries only what was given)."""
    drop = [c for c in table.column_names
            if c not in REQUIRED and table.column(c).null_count == table.num_rows]  # fmt: skip
    return table.drop_columns(drop) if drop else table


def _arrow_type(pa: Any, field: str) -> Any:
    return pa.float64() if field in FLOATS else pa.int64() if field in INTS else pa.string()


def _checked(batch: Any, rename: dict[str, str]) -> Any:
    """A parsed batch with record field names, text trimmed; _NotClean when a value is out
    of range (not finite, empty where required, too long), so the slow path names it."""
    import pyarrow as pa
    import pyarrow.compute as pc

    arrays, names = [], []
    for column, source in zip(batch.columns, batch.schema.names, strict=True):
        name = rename[source]
        if name in FLOATS:
            if pc.any(pc.invert(pc.is_finite(column))).as_py():
                raise _NotClean  # inf or nan: the slow path names the line
        elif name not in INTS:
            column = pc.utf8_trim_whitespace(column)
            lengths = pc.utf8_length(column)
            if pc.any(pc.equal(lengths, 0)).as_py() or pc.any(pc.greater(lengths, 4096)).as_py():
                raise _NotClean
        if name in REQUIRED and column.null_count:
            raise _NotClean
        arrays.append(column)
        names.append(name)
    return pa.RecordBatch.from_arrays(arrays, names=names)


def _python_csv_chunks(path: Path, size: int, skip: int = 0) -> Iterator[Chunk]:
    """Row by row with line numbers, after the first ``skip`` data rows."""
    with path.open(newline="", encoding="utf-8", errors="replace") as fh:
        reader = csv.reader(fh)
        header = next(reader, None)
        if not header:
            raise RecordFileError(f"{path}: empty CSV")
        yield from _chunked(_csv_rows(reader, header, skip), size)


def _csv_rows(reader: Any, header: list[str], skip: int) -> Iterator[Row]:
    start = reader.line_num + 1
    for row in reader:
        where, start = f"line {start}", reader.line_num + 1  # quoted fields may span lines
        if not row:
            continue  # a blank line
        if skip:
            skip -= 1
            continue
        if len(row) != len(header):
            yield where, f"expected {len(header)} fields, got {len(row)}"
            continue
        yield where, dict(zip(header, row, strict=True))


def _json_rows(path: Path) -> Iterator[Row]:
    with path.open(encoding="utf-8", errors="replace") as fh:
        first = fh.read(1)
        while first.isspace():
            first = fh.read(1)
        fh.seek(0)
        if first == "[":
            try:
                items = json.load(fh)
            except json.JSONDecodeError as exc:
                raise RecordFileError(f"{path}: invalid JSON: {exc}") from exc
            for i, item in enumerate(items):
                yield f"item {i}", item if isinstance(item, dict) else "not an object"
            return
        for line, text in enumerate(fh, start=1):
            if not text.strip():
                continue
            try:
                item = json.loads(text)
            except json.JSONDecodeError as exc:
                yield f"line {line}", f"invalid JSON: {exc.msg}"
                continue
            yield f"line {line}", item if isinstance(item, dict) else "not an object"


def _parquet_chunks(path: Path, size: int) -> Iterator[Chunk]:
    """Parquet batches column-wise while their values are clean; a batch that is not
    (a value that does not convert, a null where required, inf) goes row by row."""
    import pyarrow as pa
    import pyarrow.parquet as pq  # only ingest of Parquet pays for pyarrow

    try:
        parquet = pq.ParquetFile(path)
    except (OSError, ValueError) as exc:
        raise RecordFileError(f"{path}: not a Parquet file: {exc}") from exc
    fields = {n: ALIASES.get(n.strip().lower()) for n in parquet.schema_arrow.names}
    rename = {n: f for n, f in fields.items() if f is not None}
    rename = {n: f for n, f in rename.items() if list(rename.values()).count(f) == 1}
    pending: list[str] = []  # bad rows seen since the last chunk

    def clean() -> Iterator[Any]:
        start = 0
        for batch in parquet.iter_batches(batch_size=65536):
            try:
                yield _checked(_converted(pa, batch, rename), {f: f for f in rename.values()})
            except (_NotClean, pa.ArrowInvalid, pa.ArrowNotImplementedError):
                good = _chunked(_batch_rows(batch, start), batch.num_rows + 1)
                for chunk in good:
                    pending.extend(chunk.bad)
                    if chunk.rows:
                        yield from chunk.table.to_batches()
            start += batch.num_rows

    for chunk in _rechunked(clean(), size):
        chunk.bad, pending[:] = list(pending), []
        yield chunk
    if pending:
        yield Chunk(_to_arrow({name: [] for name in FIELDS}), list(pending))


def _converted(pa: Any, batch: Any, rename: dict[str, str]) -> Any:
    """A Parquet batch with record field names and types (cast; raises if one fails)."""
    if not set(REQUIRED) <= set(rename.values()):
        raise _NotClean
    arrays, names = [], []
    for source, name in rename.items():
        column = batch.column(source)
        if name in INTS and pa.types.is_floating(column.type):
            raise _NotClean  # 4.0 is fine, 2.5 is a bad row: judged row by row
        arrays.append(column.cast(_arrow_type(pa, name)))
        names.append(name)
    return pa.RecordBatch.from_arrays(arrays, names=names)


def _batch_rows(batch: Any, start: int) -> Iterator[Row]:
    for index, row in enumerate(batch.to_pylist(), start=start + 1):
        yield f"row {index}", row
