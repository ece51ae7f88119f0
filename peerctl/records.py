"""Read result records from CSV, JSON (array or lines) or Parquet, column-wise, in chunks.

Each record has the fields of ``peerctl record``. Common alternative column names of
lab tooling are accepted (``model`` or ``model_name``, ``throughput_items_per_second``
or ``throughput``...). A bad row is reported with its line and skipped; it never
stops the other rows.
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
    """Up to ``chunk_size`` valid records, column-wise, plus the rows skipped."""

    columns: dict[str, list[Any]]
    rows: int
    bad: list[str] = field(default_factory=list)


def read_chunks(path: Path, chunk_size: int = 50_000) -> Iterator[Chunk]:
    """Valid records of a file in column-wise chunks."""
    suffix = path.suffix.lower()
    if not path.is_file():
        raise RecordFileError(f"{path}: no such file")
    if suffix == ".csv":
        rows = _csv_rows(path)
    elif suffix in {".json", ".jsonl", ".ndjson"}:
        rows = _json_rows(path)
    elif suffix == ".parquet":
        rows = _parquet_rows(path)
    else:
        raise RecordFileError(
            f"{path}: unknown format {suffix!r} (use .csv, .json, .jsonl, .parquet)"
        )
    yield from _chunked(rows, chunk_size)


def count_rows(path: Path) -> int | None:
    """A cheap estimate of the rows in a file, for the progress bar."""
    if path.suffix.lower() in {".csv", ".jsonl", ".ndjson"}:
        try:
            with path.open("rb") as fh:
                return max(0, sum(1 for _ in fh) - (path.suffix.lower() == ".csv"))
        except OSError:
            return None  # read_chunks reports the file error
    return None


Row = tuple[str, dict[str, Any] | str]  # (where, record or why it is unreadable)


def _chunked(rows: Iterator[Row], size: int) -> Iterator[Chunk]:
    chunk = Chunk({name: [] for name in FIELDS}, 0)
    for where, raw in rows:
        try:
            if isinstance(raw, str):
                raise ValueError(raw)
            record = normalize(raw)
        except (ValueError, TypeError, OverflowError) as exc:  # e.g. a list or 1e400 as a number
            chunk.bad.append(f"{where}: {exc}")
            continue
        for name in FIELDS:
            chunk.columns[name].append(record.get(name))
        chunk.rows += 1
        if chunk.rows >= size:
            yield _trim(chunk)
            chunk = Chunk({name: [] for name in FIELDS}, 0)
    if chunk.rows or chunk.bad:
        yield _trim(chunk)


def _trim(chunk: Chunk) -> Chunk:
    """Drop all-None optional columns so the wire carries only what was given."""
    chunk.columns = {
        k: v for k, v in chunk.columns.items() if k in REQUIRED or any(x is not None for x in v)
    }
    return chunk


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


def _csv_rows(path: Path) -> Iterator[Row]:
    with path.open(newline="", encoding="utf-8", errors="replace") as fh:
        reader = csv.reader(fh)
        header = next(reader, None)
        if not header:
            raise RecordFileError(f"{path}: empty CSV")
        start = reader.line_num + 1
        for row in reader:
            where, start = f"line {start}", reader.line_num + 1  # quoted fields may span lines
            if not row:
                continue  # a blank line
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


def _parquet_rows(path: Path) -> Iterator[Row]:
    import pyarrow.parquet as pq  # only ingest of Parquet pays for pyarrow

    try:
        parquet = pq.ParquetFile(path)
    except (OSError, ValueError) as exc:
        raise RecordFileError(f"{path}: not a Parquet file: {exc}") from exc
    index = 0
    for batch in parquet.iter_batches(batch_size=65536):
        for row in batch.to_pylist():
            index += 1
            yield f"row {index}", row
