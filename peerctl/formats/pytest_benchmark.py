"""pytest-benchmark's JSON (``pytest --benchmark-json=FILE``, or a saved run under
``.benchmarks/``): one result per entry of ``benchmarks``.

pytest-benchmark times a test function; what the function benchmarked (model, batch,
precision...) is what the test put in ``benchmark.extra_info`` or its parameters. Field
by field (first that is present wins; see the README table):

- model_name: extra_info.model, params.model, group, then the test's name
- hardware_type: extra_info.hardware, params.hardware, else ``cpu``
- device_name: extra_info.device, machine_info.cpu.brand_raw, machine_info.processor
- latency (ms): stats.mean * 1000 (pytest-benchmark's stats are seconds per call)
- batch_size: extra_info.batch_size, params.batch_size, else 1
- throughput (items/s): extra_info.throughput, else batch_size * stats.ops
- precision, memory_mb: extra_info or params of those names
- test_case: fullname (``tests/test_x.py::test_y[param]``)
- metrics (JSON): min/max/median/stddev/iqr in ms, rounds, iterations, ops, the commit
  id and whether it was dirty, the Python version, and ``"source": "pytest-benchmark"``
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from peerctl.formats.common import (
    FormatError,
    Overrides,
    Record,
    number,
    read_json,
    with_overrides,
)


def read(path: Path, overrides: Overrides) -> list[Record]:
    """The file's benchmarks as records."""
    data = read_json(path)
    if not isinstance(data, dict) or not isinstance(data.get("benchmarks"), list):
        raise FormatError(f"{path}: not pytest-benchmark JSON (no 'benchmarks' list)")
    context = _context(data)
    records = []
    for i, bench in enumerate(data["benchmarks"]):
        where = f"{path}: benchmarks[{i}]"
        if not isinstance(bench, dict):
            raise FormatError(f"{where}: not an object")
        records.append(Record(with_overrides(record_fields(bench, context, where), overrides),
                              where))  # fmt: skip
    return records


def _context(data: dict[str, Any]) -> dict[str, Any]:
    machine = data.get("machine_info") if isinstance(data.get("machine_info"), dict) else {}
    commit = data.get("commit_info") if isinstance(data.get("commit_info"), dict) else {}
    cpu = machine.get("cpu") if isinstance(machine.get("cpu"), dict) else {}
    return {
        "device": cpu.get("brand_raw") or machine.get("processor") or None,
        "python": machine.get("python_version"),
        "commit": commit.get("id"),
        "dirty": commit.get("dirty"),
    }


def record_fields(bench: dict[str, Any], context: dict[str, Any], where: str) -> dict[str, Any]:
    """One benchmark entry as record fields (``context`` from the file's header)."""
    stats = bench.get("stats")
    if not isinstance(stats, dict):
        raise FormatError(f"{where}: no stats")
    extra = bench.get("extra_info") if isinstance(bench.get("extra_info"), dict) else {}
    params = bench.get("params") if isinstance(bench.get("params"), dict) else {}

    def pick(*names: str) -> Any:
        for source in (extra, params):
            for name in names:
                if source.get(name) is not None:
                    return source[name]
        return None

    mean = number(stats.get("mean"), f"{where}: stats.mean")
    if mean <= 0:
        raise FormatError(f"{where}: stats.mean must be positive")
    batch = pick("batch_size") or 1
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise FormatError(f"{where}: batch_size must be a positive integer, got {batch!r}")
    throughput = pick("throughput", "items_per_second")
    return {
        "model_name": str(pick("model", "model_name") or bench.get("group") or _test_name(bench)),
        "hardware_type": str(pick("hardware", "hardware_type") or "cpu"),
        "device_name": pick("device", "device_name") or context["device"],
        "latency": mean * 1000.0,
        "batch_size": batch,
        "throughput": number(throughput, f"{where}: throughput")
        if throughput is not None
        else batch / mean,
        "precision": _text(pick("precision")),
        "memory_mb": pick("memory_mb"),
        "test_case": str(bench.get("fullname") or bench.get("name") or "pytest-benchmark"),
        "metrics": json.dumps(_metrics(stats, context), sort_keys=True),
    }


def _test_name(bench: dict[str, Any]) -> str:
    name = str(bench.get("name") or "benchmark")
    return name.split("[", 1)[0]


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def _metrics(stats: dict[str, Any], context: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"source": "pytest-benchmark"}
    for name in ("min", "max", "median", "stddev", "iqr"):
        if isinstance(stats.get(name), int | float):
            out[f"{name}_ms"] = stats[name] * 1000.0
    for name in ("rounds", "iterations", "ops"):
        if isinstance(stats.get(name), int | float):
            out[name] = stats[name]
    for name in ("commit", "dirty", "python"):
        if context.get(name) is not None:
            out[name] = context[name]
    return out
