"""MLPerf inference results: LoadGen's ``mlperf_log_summary.txt`` (one result per file).

The summary says the scenario, mode, result and LoadGen's statistics but not which
model or hardware ran: those come from ``--model`` / ``--hardware`` or, for a file in
the submission layout ``<system>/<benchmark>/<scenario>/performance/run_N/``, from the
path (system → hardware_type, benchmark → model_name). Field by field:

- throughput (samples/s): "Samples per second" (Offline), "Completed samples per second"
  (Server), "QPS w/o loadgen overhead" (SingleStream), samples per query / mean latency
  (MultiStream)
- latency (ms): "Mean latency (ns)" / 10^6
- batch_size: ``samples_per_query`` for MultiStream (the samples of one query), else 1
- test_case: ``mlperf-<scenario>`` (``-<mode>`` unless PerformanceOnly)
- device_name: "SUT name"
- metrics (JSON): scenario, mode, validity, tokens per second (LLM benchmarks), min/max
  and every percentile latency in ms, target QPS and ``"source": "mlperf"``
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from peerctl.formats.common import FormatError, Overrides, Record, read_text, with_overrides

_LINE = re.compile(r"^\s*([^:=]+?)\s*:\s*(.+?)\s*$")
_PERCENTILE = re.compile(r"^(\d+(?:\.\d+)?) percentile latency \(ns\)$")
SCENARIOS = ("Offline", "Server", "SingleStream", "MultiStream")
THROUGHPUT_KEYS = {
    "Offline": "Samples per second",
    "Server": "Completed samples per second",
    "SingleStream": "QPS w/o loadgen overhead",
}


def read(path: Path, overrides: Overrides) -> list[Record]:
    """The summary's result as one record."""
    values = parse_summary(read_text(path), str(path))
    fields = with_overrides({**_from_path(path), **record_fields(values, str(path))}, overrides)
    for required in ("model_name", "hardware_type"):
        if required not in fields:
            flag = "--model" if required == "model_name" else "--hardware"
            raise FormatError(f"{path}: the summary does not name the {required}; give {flag}")
    return [Record(fields, str(path))]


def parse_summary(text: str, where: str) -> dict[str, str]:
    """``key : value`` pairs of a LoadGen summary (section rulers and notes skipped)."""
    if "MLPerf Results Summary" not in text:
        raise FormatError(f"{where}: not an MLPerf LoadGen summary")
    values: dict[str, str] = {}
    for line in text.splitlines():
        match = _LINE.match(line)
        if match and not line.lstrip().startswith(("*", "=")):
            values.setdefault(match.group(1), match.group(2))
    return values


def record_fields(values: dict[str, str], where: str) -> dict[str, Any]:
    """Record fields from the summary's values."""
    scenario = values.get("Scenario", "")
    if scenario not in SCENARIOS:
        raise FormatError(f"{where}: unknown scenario {scenario!r}")
    mean_ms = _ns(values, "Mean latency (ns)", where) / 1e6
    per_query = (
        (_float(values.get("samples_per_query")) or 1.0) if scenario == "MultiStream" else 1.0
    )
    throughput = _float(values.get(THROUGHPUT_KEYS.get(scenario, "")))
    if throughput is None:
        if mean_ms <= 0:
            raise FormatError(f"{where}: no throughput and no mean latency")
        throughput = per_query / (mean_ms / 1000.0)
    mode = values.get("Mode", "PerformanceOnly")
    return {
        "throughput": throughput,
        "latency": mean_ms,
        "batch_size": int(per_query),
        "device_name": values.get("SUT name"),
        "test_case": f"mlperf-{scenario}" + ("" if mode == "PerformanceOnly" else f"-{mode}"),
        "metrics": json.dumps(_metrics(values, scenario, mode), sort_keys=True),
    }


def _from_path(path: Path) -> dict[str, str]:
    """hardware_type and model_name from the submission layout, when the path has it."""
    parts = path.resolve().parts
    if len(parts) >= 6 and parts[-3] == "performance" and parts[-2].startswith("run_"):
        system, benchmark, scenario = parts[-6], parts[-5], parts[-4]
        if scenario in SCENARIOS:
            return {"hardware_type": system, "model_name": benchmark}
    return {}


def _ns(values: dict[str, str], key: str, where: str) -> float:
    value = _float(values.get(key))
    if value is None:
        raise FormatError(f"{where}: no {key!r}")
    return value


def _float(text: str | None) -> float | None:
    if text is None:
        return None
    try:
        value = float(text)
    except ValueError:
        return None
    return value if value == value and value >= 0 and value != float("inf") else None


def _metrics(values: dict[str, str], scenario: str, mode: str) -> dict[str, Any]:
    out: dict[str, Any] = {"source": "mlperf", "scenario": scenario, "mode": mode,
                           "valid": values.get("Result is") == "VALID"}  # fmt: skip
    for key, name in (("Min latency (ns)", "min_ms"), ("Max latency (ns)", "max_ms")):
        if (ns := _float(values.get(key))) is not None:
            out[name] = ns / 1e6
    for key, value in values.items():
        match = _PERCENTILE.match(key)
        if match and (ns := _float(value)) is not None:
            out[f"p{match.group(1).rstrip('0').rstrip('.')}_ms"] = ns / 1e6
    for key, name in (("Tokens per second", "tokens_per_second"), ("target_qps", "target_qps")):
        if (number := _float(values.get(key))) is not None:
            out[name] = number
    return out
