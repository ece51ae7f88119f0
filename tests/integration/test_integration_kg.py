"""The knowledge graph between real duckpeerd processes: results written on one peer
show up in another peer's ``kg similar`` / ``patterns`` / ``compat`` after replication,
so the incremental hook runs on replicated changesets too."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from daemon.localcluster import LocalCluster, LocalPeer, wait_until
from peerctl.client import RequestFailed

pytestmark = pytest.mark.slow


def similar(peer: LocalPeer, node: str) -> list[str] | None:
    with peer.client() as client:
        try:
            found = client.find_similar_benchmarks(node, top_k=3)
        except RequestFailed:
            return None
    return [m["node"] for m in found["matches"]]


def peerctl(peer: LocalPeer, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "peerctl", "--socket", str(peer.socket), *argv],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


def test_replicated_results_reach_the_other_peers_graph() -> None:
    with LocalCluster(2) as cluster:
        a, b = cluster.peers
        with a.client() as client:
            columns: dict[str, list] = {k: [] for k in (
                "model_name", "hardware_type", "device_name", "batch_size", "precision",
                "throughput", "latency", "memory_mb")}  # fmt: skip
            spec = [
                ("resnet-50", 5000.0, 6.4, 3000.0),
                ("resnet-101", 4800.0, 6.7, 3100.0),
                ("whisper-large", 0.5, 2000.0, 9000.0),
            ]
            for model, thr, lat, mem in spec:
                for jitter in (0.99, 1.0, 1.01):
                    row = (model, "cuda", "A100", 32, "fp16", thr * jitter, lat, mem)
                    for name, value in zip(columns, row, strict=True):
                        columns[name].append(value)
            client.ingest_columns(columns)
        target = "resnet-50|cuda:A100|32|fp16"
        ranked = wait_until(lambda: similar(b, target), 30, "b's graph to know the configs")
        assert ranked[0] == "config:resnet-101|cuda:A100|32|fp16"

        # a regression written on A is found by B's patterns
        with a.client() as client:
            history = {
                "model_name": ["bert-base"] * 12,
                "hardware_type": ["cpu"] * 12,
                "throughput": [100.0 + i % 3 for i in range(12)],
                "latency": [10.0] * 12,
            }
            client.ingest_columns(history)
        cluster.wait_converged(timeout=30)
        with a.client() as client:
            client.store_performance_result(
                model_name="bert-base", hardware_type="cpu", throughput=60.0, latency=10.0
            )
        cluster.wait_converged(timeout=30)
        done = peerctl(b, "kg", "patterns", "--json")
        assert done.returncode == 0, done.stderr
        regressions = json.loads(done.stdout)["regressions"]
        assert [r["throughput"] for r in regressions] == [60.0]

        # a delete on A removes the configuration from B's graph
        with a.client() as client:
            ids = client.query_dicts(
                "SELECT result_id FROM performance_results WHERE model_id = 'resnet-101'"
            )
            for row in ids:
                client.delete("performance_results", row["result_id"])
        cluster.wait_converged(timeout=30)
        assert similar(b, "resnet-101|cuda:A100|32|fp16") is None
        assert "config:resnet-101|cuda:A100|32|fp16" not in (similar(b, target) or [])

        done = peerctl(b, "kg", "export", "--format", "json")
        assert done.returncode == 0, done.stderr
        graph = json.loads(done.stdout)
        assert {n["id"] for n in graph["nodes"]} >= {"model:resnet-50", "hw:cuda:A100"}
        status = b.status()
        assert status["metrics"].get("kg_updates", 0) >= 1
