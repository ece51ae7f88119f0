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
from peerctl.client import RequestFailed

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


def test_fragments_go_down_query_links_and_timings_say_what_was_read(
    cluster: LocalCluster,
) -> None:
    coordinator, worker = cluster.peers[0], cluster.peers[1]
    sql = SPLIT_QUERIES[5]
    with coordinator.client() as client:
        expected = client.query(sql)["rows"]

        def streamed() -> bool:
            got = client.execute_distributed_query(sql)
            assert same_result(expected, got["rows"], ordered=False)
            return metric(coordinator, "fragments_streamed") > 0

        wait_until(streamed, 30, "a fragment sent down a query link")
        got = client.execute_distributed_query(sql, "round_robin")
    # Each worker ran the first copy of each fragment and dropped the other one.
    wait_until(lambda: metric(worker, "fragments_duplicate") > 0, 30, "a gossip copy dropped")
    timings = got["node_timings"]
    assert sum(t["share"] for t in timings) == pytest.approx(1.0, abs=1e-3)
    assert all(t["row_groups_total"] >= 1 and t["scanned_rows"] >= 1 for t in timings), timings
    assert got["partitioning"]["wire_strategy"] == "keys" and got["attempts"] == 1
    status = coordinator.call("cluster_status")
    assert all(n["capacity"]["cores"] for n in status["nodes"]), status["nodes"]


def test_a_write_mid_query_makes_the_coordinator_plan_again() -> None:
    cluster = LocalCluster(3)
    cluster.peers[2].env["DUCKPEER_DISTQ_FRAGMENT_DELAY"] = "2"  # holds its partitions
    cluster.peers[1].env["DUCKPEER_DISTQ_RETRIES"] = "0"
    with cluster:
        coordinator, writer, slow = ready_cluster(cluster), cluster.peers[1], cluster.peers[2]
        sql = SPLIT_QUERIES[6]
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            future = pool.submit(lambda: coordinator.call("query_distributed", sql=sql))
            wait_until(lambda: metric(slow, "fragments_received") >= 1, 30, "slow fragment")
            writer.call("ingest", records=sample_records(7, seed=99))  # lands mid-query
            got = future.result(timeout=120)
        cluster.wait_converged(60)
        assert got["attempts"] >= 2 and got["distributed"]
        assert same_result(coordinator.call("query", sql=sql)["rows"], got["rows"], False)
        assert got["db_cid"] == coordinator.status()["db_cid"]
        # A coordinator allowed no second plan says so.
        wait_until(lambda: writer.call("cluster_status")["query_nodes"] == 3, 30, "mesh")
        received = metric(slow, "fragments_received")
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            future = pool.submit(lambda: writer.call("query_distributed", sql=sql))
            wait_until(lambda: metric(slow, "fragments_received") > received, 30, "fragment")
            coordinator.call("ingest", records=sample_records(3, seed=98))
            with pytest.raises(RequestFailed, match="changed during each of 1 attempt"):
                future.result(timeout=120)


def test_a_peer_claiming_cores_it_lacks_gets_less_work_after_its_first_slow_answer() -> None:
    cluster = LocalCluster(3)
    liar = cluster.peers[2]
    liar.env["DUCKPEER_DISTQ_ADVERTISED_CORES"] = "64"
    liar.env["DUCKPEER_DISTQ_FRAGMENT_DELAY"] = "3"  # and it is not fast at all
    with cluster:
        coordinator = cluster.peers[0]
        for seed in (5, 6):
            coordinator.call("ingest", records=sample_records(60_000, seed=seed))
        cluster.wait_converged(120)
        liar_id = liar.status()["peer_id"]

        def claim() -> int | None:
            status = coordinator.call("cluster_status")
            if status["query_nodes"] != 3:
                return None
            return next(n for n in status["nodes"] if n["peer_id"] == liar_id)["capacity"]["cores"]

        wait_until(lambda: claim() == 64, 30, "the liar's capacity report")
        sql = SPLIT_QUERIES[6]
        shares = []
        for _ in range(3):
            got = coordinator.call("query_distributed", sql=sql)
            assert got["failovers"] == 0
            shares.append(next(t["share"] for t in got["node_timings"] if t["peer_id"] == liar_id))
    assert shares[0] > 0.8, shares  # believed at first: 64 cores against 2 and 2
    assert shares[1] < shares[0] - 0.2 and shares[2] < min(shares[1], 0.5), shares
