"""Benchmark-tool outputs read as result records (``peerctl ingest --format NAME``).

Each reader turns one file into records with the fields of ``peerctl record``
(``model_name``, ``hardware_type``, ``throughput``, ``latency``, ``batch_size``,
``precision``, ``memory_mb``, ``test_case``, ``device_name``, ``metrics``), each with the
place in the file it came from (for error messages). The README maps every field.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from peerctl.formats import mlperf, pytest_benchmark
from peerctl.formats.common import FormatError, Overrides, Record

Reader = Callable[[Path, Overrides], list[Record]]
FORMATS: dict[str, Reader] = {
    "pytest-benchmark": pytest_benchmark.read,
    "mlperf": mlperf.read,
}

__all__ = ["FORMATS", "FormatError", "Overrides", "Record", "read"]


def read(name: str, path: Path, overrides: Overrides | None = None) -> list[Record]:
    """Records of ``path`` in format ``name``; FormatError when it is not that format."""
    reader = FORMATS.get(name)
    if reader is None:
        raise FormatError(f"unknown format {name!r}; known: {', '.join(FORMATS)}")
    return reader(path, overrides or {})


def as_columns(records: list[Record]) -> dict[str, list[Any]]:
    """Records column-wise, as ``Client.ingest_columns`` takes them."""
    names = sorted({k for r in records for k in r.fields})
    return {n: [r.fields.get(n) for r in records] for n in names}
