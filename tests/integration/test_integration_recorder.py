"""Recording from code against a real daemon: ``peerctl.benchmark``, its buffer while
the daemon is away, and the pytest plugin for pytest-benchmark results."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from daemon.localcluster import LocalCluster, LocalPeer
from peerctl import benchmark, flush_pending

pytestmark = pytest.mark.slow


def rows(peer: LocalPeer, sql: str) -> list[list[object]]:
    return peer.call("query", sql=sql)["rows"]  # type: ignore[no-any-return]


def test_a_timed_block_is_recorded_with_the_hardware(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DUCKPEER_BUFFER", str(tmp_path / "pending.jsonl"))
    with LocalCluster(1) as cluster:
        (peer,) = cluster.peers
        with benchmark("bert-base-uncased", batch_size=8, precision="fp16",
                       socket=str(peer.socket)) as run:  # fmt: skip
            sum(range(100_000))
        assert run.result_id is not None and run.latency_ms > 0

        @benchmark("resnet50", items=32, socket=str(peer.socket))
        def step() -> int:
            return sum(range(10_000))

        step()
        step()
        sql = (
            "SELECT model_id, hardware_id, batch_size, precision, "
            "throughput_items_per_second > 0 FROM performance_results ORDER BY 1"
        )
        got = rows(peer, sql)
        assert [r[0] for r in got] == ["bert-base-uncased", "resnet50", "resnet50"]
        assert got[0][1].startswith("cpu:") and got[0][2:] == [8, "fp16", True]


def test_results_wait_in_the_buffer_while_the_daemon_is_away(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    buffer = tmp_path / "pending.jsonl"
    monkeypatch.setenv("DUCKPEER_BUFFER", str(buffer))
    with LocalCluster(1) as cluster:
        (peer,) = cluster.peers
        socket = str(peer.socket)
        assert peer.stop() == 0
        for i in range(3):
            with benchmark(f"offline-{i}", hardware="cuda", device="A100", socket=socket) as run:
                pass
            assert run.buffered and run.result_id is None
        assert len(buffer.read_text().splitlines()) == 3
        peer.start()
        with benchmark("online", hardware="cuda", device="A100", socket=socket) as run:
            pass
        assert run.result_id is not None
        assert buffer.read_text() == ""  # the waiting ones went with it
        assert rows(peer, "SELECT count(*) FROM performance_results") == [[4]]
        assert flush_pending(socket) == 0


def test_the_pytest_plugin_records_pytest_benchmark_results(tmp_path: Path) -> None:
    (tmp_path / "test_bench.py").write_text(
        textwrap.dedent("""
        import pytest

        @pytest.mark.parametrize("batch_size", [1, 4])
        def test_infer(benchmark, batch_size):
            benchmark.extra_info.update(model="tiny-llm", batch_size=batch_size)
            benchmark(sum, range(1000 * batch_size))
        """)
    )
    with LocalCluster(1) as cluster:
        (peer,) = cluster.peers
        env = {**os.environ, "DUCKPEER_SOCKET": str(peer.socket),
               "DUCKPEER_BUFFER": str(tmp_path / "pending.jsonl")}  # fmt: skip
        proc = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--duckpeer",
             "--benchmark-max-time=0.001", "--benchmark-min-rounds=3", "-o", "addopts=",
             "test_bench.py"],
            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert "duckpeer: recorded 2 benchmark results" in proc.stdout
        got = rows(peer, "SELECT model_id, batch_size, test_case FROM performance_results "
                         "ORDER BY batch_size")  # fmt: skip
        assert got == [["tiny-llm", 1, "test_bench.py::test_infer[1]"],
                       ["tiny-llm", 4, "test_bench.py::test_infer[4]"]]  # fmt: skip


DATA = Path(__file__).resolve().parents[1] / "data" / "formats"


def peerctl(peer: LocalPeer, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "peerctl", "--socket", str(peer.socket), *args],
                          capture_output=True, text=True, timeout=60)  # fmt: skip


def test_ingest_of_benchmark_tool_files(tmp_path: Path) -> None:
    run = DATA / "mlperf/lab-a100-box/resnet50/Offline/performance/run_1/mlperf_log_summary.txt"
    with LocalCluster(1) as cluster:
        (peer,) = cluster.peers
        done = peerctl(peer, "ingest", "--format", "pytest-benchmark",
                       str(DATA / "pytest_benchmark.json"))  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert "ingested 3 pytest-benchmark results" in done.stdout
        assert peerctl(peer, "ingest", "--format", "mlperf", str(run)).returncode == 0
        single = str(DATA / "mlperf/loose/singlestream_summary.txt")
        loose = peerctl(peer, "ingest", "--format", "mlperf", single)
        assert loose.returncode == 2 and "--model" in loose.stderr
        assert len(loose.stderr.strip().splitlines()) == 1
        done = peerctl(peer, "ingest", "--format", "mlperf", "--model", "bert-99",
                       "--hardware", "cpu", single)  # fmt: skip
        assert done.returncode == 0, done.stderr
        wrong = peerctl(peer, "ingest", "--format", "pytest-benchmark", str(run))
        assert wrong.returncode == 2 and "not JSON" in wrong.stderr
        got = rows(peer, "SELECT model_id, hardware_id, metrics->>'source' FROM "
                         "performance_results ORDER BY 1, 3")  # fmt: skip
        assert got == [["bert-99", "cpu:PySUT", "mlperf"],
                       ["bert-base-uncased", "cpu:AMD EPYC", "pytest-benchmark"],
                       ["bert-base-uncased", "cpu:AMD EPYC", "pytest-benchmark"],
                       ["resnet50", "lab-a100-box:PySUT", "mlperf"],
                       ["test_tokenizer", "cpu:AMD EPYC", "pytest-benchmark"]]  # fmt: skip
