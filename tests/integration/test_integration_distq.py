"""Distributed queries over three real daemons: exact results for every partition
strategy, single-node fallback with a reason, failover when a peer dies mid-query,
the CLI, and cluster status."""

from __future__ import annotations

import concurrent.futures
import json
import random
from collections.abc import Iterator
from typing import Any

import pytest
from distq_corpus import SINGLE_NODE_QUERIES, SPLIT_QUERIES, has_order, same_result

from daemon.localcluster import LocalCluster, LocalPeer, wait_until
from peerctl.cli import main as peerctl_main

pytestmark = pytest.mark.slow
ROWS = 600


def sample_records(n: int, seed: int) -> dict[str, list[Any]]:
    """Results over 12 models and 4 hardware types, with NULL precision and memory."""
    rnd = random.Random(seed)
    models = [rnd.randrange(12) for _ in range(n)]
    return {
        "model_name": [f"model-{m}" for m in models],
        "model_family": [f"fam{m % 3}" for m in models],
        "hardware_type": [rnd.choice(["cpu", "cuda", "rocm", "mps"]) for _ in range(n)],
        "batch_size": [rnd.choice([1, 2, 4, 8, 16, 32]) for _ in range(n)],
        "precision": [rnd.choice(["fp32", "fp16", "int8", None]) for _ in range(n)],
        "latency": [round(rnd.uniform(0.5, 20.0), 3) for _ in range(n)],
        "throughput": [round(rnd.uniform(10, 5000), 2) for _ in range(n)],
        "memory_mb": [
            None if rnd.random() < 0.2 else round(rnd.uniform(100, 9000), 1) for _ in range(n)
        ],
    }


def metric(peer: LocalPeer, name: str) -> int:
    return int(peer.status()["metrics"].get(name, 0))


def ready_cluster(cluster: LocalCluster) -> LocalPeer:
    """Load the sample data on the first peer; wait until all three can take fragments."""
    coordinator = cluster.peers[0]
    coordinator.call("ingest", records=sample_records(ROWS, seed=11))
    cluster.wait_converged(60)
    size = len(cluster.peers)
    wait_until(lambda: coordinator.call("cluster_status")["query_nodes"] == size, 30,
               "every peer at the coordinator's CID")  # fmt: skip
    return coordinator


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalCluster]:
    with LocalCluster(3) as c:
        ready_cluster(c)
        yield c


@pytest.mark.parametrize("strategy", ["hash", "round_robin", "range"])
def test_corpus_equals_single_node(cluster: LocalCluster, strategy: str) -> None:
    coordinator = cluster.peers[0]
    with coordinator.client() as client:
        for sql in SPLIT_QUERIES:
            expected = client.query(sql)
            got = client.execute_distributed_query(sql, partition_strategy=strategy)
            assert got["distributed"], (sql, got["reason"])
            assert got["node_count"] == 3 and got["partitions"] == 3, got["node_timings"]
            assert got["columns"] == expected["columns"], sql
            assert same_result(expected["rows"], got["rows"], has_order(sql)), sql


def test_more_partitions_than_peers_run_locally(cluster: LocalCluster) -> None:
    sql = SPLIT_QUERIES[6]
    peer = cluster.peers[1]
    wait_until(lambda: peer.call("cluster_status")["query_nodes"] == 3, 30, "a full mesh")
    with peer.client() as client:
        expected = client.query(sql)["rows"]
        got = client.execute_distributed_query(sql, "round_robin", nodes=5)
    assert got["partitions"] == 5 and got["node_count"] == 3
    mine = next(t for t in got["node_timings"] if t["peer_id"] == client.status()["peer_id"])
    assert len(mine["partitions"]) == 3
    assert same_result(expected, got["rows"], ordered=False)


def test_unsplittable_queries_run_on_one_node_and_say_why(cluster: LocalCluster) -> None:
    with cluster.peers[0].client() as client:
        for sql in SINGLE_NODE_QUERIES:
            got = client.execute_distributed_query(sql)
            assert not got["distributed"] and got["reason"], sql
            assert got["node_count"] == 1
            assert same_result(client.query(sql)["rows"], got["rows"], has_order(sql))


def test_mapreduce_and_cluster_status(cluster: LocalCluster) -> None:
    with cluster.peers[2].client() as client:
        job = client.map_reduce(
            "SELECT hardware_id, COUNT(*) AS c FROM performance_results GROUP BY hardware_id",
            "SELECT hardware_id, SUM(c) AS c FROM partials GROUP BY hardware_id ORDER BY 1",
        )
        direct = client.query(
            "SELECT hardware_id, COUNT(*) FROM performance_results GROUP BY 1 ORDER BY 1"
        )
        status = client.get_cluster_status()
    assert job["distributed"] and job["node_count"] == 3
    assert job["rows"] == direct["rows"]
    assert status["total_nodes"] == 3 and status["available_nodes"] == 3
    assert all(n["behind"] == 0 and n["same_cid"] for n in status["nodes"])


def test_bad_requests_are_refused(cluster: LocalCluster) -> None:
    from peerctl.client import RequestFailed

    with cluster.peers[0].client() as client:
        for call in (
            lambda: client.execute_distributed_query("DELETE FROM models"),
            lambda: client.execute_distributed_query("SELECT 1", partition_strategy="zigzag"),
            lambda: client.execute_distributed_query(SPLIT_QUERIES[0], "range", column="metrics"),
            lambda: client.map_reduce("SELECT * FROM models", "SELECT * FROM partials"),
            lambda: client.map_reduce(SPLIT_QUERIES[0], "SELECT * FROM models"),
        ):
            with pytest.raises(RequestFailed) as info:
                call()
            assert info.value.code == "bad_request"


def test_cli(cluster: LocalCluster, capsys: pytest.CaptureFixture[str]) -> None:
    sock = str(cluster.peers[0].socket)
    sql = "SELECT precision, COUNT(*) AS n FROM performance_results GROUP BY 1 ORDER BY 1"
    assert peerctl_main(["--socket", sock, "query", sql, "--distributed", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["distributed"] and sum(r["n"] for r in out["rows"]) == ROWS
    assert peerctl_main(["--socket", sock, "query", sql, "--distributed",
                         "--partition", "range", "--nodes", "2"]) == 0  # fmt: skip
    text = capsys.readouterr().out
    assert "distributed over 2 nodes" in text
    assert peerctl_main(["--socket", sock, "cluster", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["total_nodes"] == 3
    assert peerctl_main(["--socket", sock, "mapreduce", "--map",
                         "SELECT COUNT(*) AS c FROM performance_results",
                         "--reduce", "SELECT SUM(c) AS total FROM partials"]) == 0  # fmt: skip
    assert str(ROWS) in capsys.readouterr().out
    assert peerctl_main(["--socket", sock, "query", sql, "--partition", "zigzag"]) == 2


def test_failover_on_missed_deadline_and_on_a_peer_killed_mid_query() -> None:
    cluster = LocalCluster(3)
    cluster.peers[2].env["DUCKPEER_DISTQ_FRAGMENT_DELAY"] = "120"  # holds its partitions
    cluster.peers[1].env["DUCKPEER_DISTQ_DEADLINE"] = "2"
    with cluster:
        coordinator, impatient, slow = ready_cluster(cluster), cluster.peers[1], cluster.peers[2]
        sql = SPLIT_QUERIES[11]
        expected = coordinator.call("query", sql=sql)["rows"]
        # 1. The slow peer misses peer1's 2 s deadline: its partition is run elsewhere.
        wait_until(lambda: impatient.call("cluster_status")["query_nodes"] == 3, 30, "mesh")
        got = impatient.call("query_distributed", sql=sql, strategy="range")
        assert got["failovers"] == 1 and same_result(expected, got["rows"], ordered=True)
        assert any("deadline" in f for t in got["node_timings"] for f in t["failed"])
        # 2. The slow peer dies while peer0 waits for it (default 10 s deadline).
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            future = pool.submit(
                lambda: coordinator.call("query_distributed", sql=sql, strategy="hash")
            )
            wait_until(lambda: metric(slow, "fragments_received") >= 2, 30, "slow peer's fragment")
            slow.kill()
            got = future.result(timeout=60)
    assert got["distributed"] and got["failovers"] >= 1
    assert same_result(expected, got["rows"], ordered=True)
    failed = [t for t in got["node_timings"] if t["failed"]]
    assert failed and "disconnected" in failed[0]["failed"][0]
    assert sorted(p for t in got["node_timings"] for p in t["partitions"]) == [0, 1, 2]
