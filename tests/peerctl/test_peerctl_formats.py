"""peerctl.formats: benchmark-tool outputs as result records (fixtures made by the tools
themselves: pytest-benchmark 5 and MLPerf LoadGen 6, see tests/data/formats/README.md)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from daemon.writes.changes import WriteError, check_records
from peerctl.formats import FormatError, as_columns, read

DATA = Path(__file__).resolve().parent.parent / "data" / "formats"
MLPERF_RUN = DATA / "mlperf/lab-a100-box/resnet50/Offline/performance/run_1/mlperf_log_summary.txt"
SINGLE = DATA / "mlperf/loose/singlestream_summary.txt"


def test_pytest_benchmark_entries_map_onto_records() -> None:
    records = read("pytest-benchmark", DATA / "pytest_benchmark.json")
    raw = json.loads((DATA / "pytest_benchmark.json").read_text())["benchmarks"]
    assert len(records) == len(raw) == 3
    first, second, plain = (r.fields for r in records)
    assert first["model_name"] == "bert-base-uncased" and first["precision"] == "fp32"
    assert first["latency"] == pytest.approx(raw[0]["stats"]["mean"] * 1000)
    assert second["batch_size"] == 8
    assert second["throughput"] == pytest.approx(8 / raw[1]["stats"]["mean"])
    assert second["test_case"] == "test_infer.py::test_bert_inference[8]"
    assert plain["model_name"] == "test_tokenizer" and plain["hardware_type"] == "cpu"
    metrics = json.loads(first["metrics"])
    assert metrics["source"] == "pytest-benchmark" and metrics["rounds"] == 5
    assert records[1].where.endswith("benchmarks[1]")


def test_mlperf_summary_in_the_submission_layout_names_model_and_hardware() -> None:
    (record,) = read("mlperf", MLPERF_RUN)
    fields = record.fields
    assert (fields["model_name"], fields["hardware_type"]) == ("resnet50", "lab-a100-box")
    assert fields["throughput"] == 174133.0  # "Samples per second"
    assert fields["latency"] == pytest.approx(3.15851)  # mean latency, ms
    assert fields["test_case"] == "mlperf-Offline"
    metrics = json.loads(fields["metrics"])
    assert metrics["valid"] is False and metrics["p99_ms"] == pytest.approx(3.15851)


def test_mlperf_single_stream_needs_model_and_hardware_from_the_user() -> None:
    with pytest.raises(FormatError, match="--model"):
        read("mlperf", SINGLE)
    (record,) = read("mlperf", SINGLE, {"model_name": "bert-99", "hardware_type": "cpu"})
    assert record.fields["throughput"] == 434.68  # QPS w/o loadgen overhead
    assert json.loads(record.fields["metrics"])["p90_ms"] == pytest.approx(2.306206)


def test_records_pass_the_daemons_validation() -> None:
    for name, path, extra in [("pytest-benchmark", DATA / "pytest_benchmark.json", {}),
                              ("mlperf", MLPERF_RUN, {})]:  # fmt: skip
        columns = as_columns(read(name, path, extra))
        assert check_records(columns) == len(columns["model_name"])


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("pytest-benchmark", "not json", "not JSON"),
        ("pytest-benchmark", '{"benchmarks": 3}', "no 'benchmarks' list"),
        ("pytest-benchmark", '{"benchmarks": [{"name": "x"}]}', "no stats"),
        ("pytest-benchmark", '{"benchmarks": [{"stats": {"mean": -1}}]}', "non-negative"),
        (
            "pytest-benchmark",
            '{"benchmarks": [{"stats": {"mean": 1}, "extra_info": {"batch_size": "8"}}]}',
            "batch_size",
        ),
        ("mlperf", "hello", "not an MLPerf"),
        ("mlperf", "MLPerf Results Summary\nScenario : Weird\n", "unknown scenario"),
        ("mlperf", "MLPerf Results Summary\nScenario : Offline\n", "Mean latency"),
        ("nope", "", "unknown format"),
    ],
)
def test_malformed_files_are_one_line_errors(
    tmp_path: Path, name: str, text: str, message: str
) -> None:
    path = tmp_path / "input"
    path.write_text(text)
    with pytest.raises(FormatError, match=message):
        read(name, path, {"model_name": "m", "hardware_type": "h"})


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.binary(max_size=400), name=st.sampled_from(["pytest-benchmark", "mlperf"]))
def test_any_bytes_give_records_or_a_format_error(tmp_path: Path, data: bytes, name: str) -> None:
    path = tmp_path / "fuzz"
    path.write_bytes(data)
    try:
        read(name, path, {"model_name": "m", "hardware_type": "h"})
    except FormatError:
        pass


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(doc=st.recursive(
    st.none() | st.booleans() | st.floats() | st.integers() | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
        st.sampled_from(["benchmarks", "stats", "mean", "extra_info", "params", "name",
                         "batch_size", "machine_info", "cpu"]), inner, max_size=4),
    max_leaves=20))  # fmt: skip
def test_any_json_gives_records_or_a_format_error(tmp_path: Path, doc: object) -> None:
    path = tmp_path / "fuzz.json"
    path.write_text(json.dumps({"benchmarks": [doc]}))
    try:
        for record in read("pytest-benchmark", path):
            check_records(as_columns([record]))  # or the daemon names the bad field
    except (FormatError, WriteError):
        pass
