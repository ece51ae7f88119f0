"""The result cache between real duckpeerd processes: fresh after remote writes, shared
between peers at the same database CID, and driven through ``peerctl``."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator

import pytest

from daemon.demo import sample_results
from daemon.localcluster import LocalCluster, LocalPeer, wait_until

pytestmark = pytest.mark.slow

AGG = (
    "SELECT model_id, count(*) AS n, quantile_cont(average_latency_ms, 0.9) AS p90 "
    "FROM performance_results GROUP BY model_id ORDER BY model_id"
)
COUNT = "SELECT count(*) FROM performance_results"


@pytest.fixture
def cluster2() -> Iterator[LocalCluster]:
    with LocalCluster(2, env={"DUCKPEER_CACHE_CHEAP_MS": "0"}) as cluster:
        with cluster.peers[0].client() as client:
            client.ingest_columns(sample_results(400))
        cluster.wait_converged(timeout=30)
        yield cluster


def sees_same_cid(peer: LocalPeer, other: LocalPeer) -> bool:
    """``peer`` has heard ``other`` announce the CID both hold now."""
    mine = peer.status()["db_cid"]
    known = {p["peer_id"]: p for p in peer.call("peers")}
    theirs = known.get(other.status()["peer_id"])
    return bool(theirs and theirs["connected"] and theirs["db_cid"] == mine)


def test_a_write_elsewhere_makes_the_next_query_miss_with_a_fresh_result(
    cluster2: LocalCluster,
) -> None:
    a, b = cluster2.peers
    first = b.call("query", sql=COUNT)
    assert b.call("query", sql=COUNT.lower())["cache"] == "hit"
    with a.client() as client:
        client.store_performance_result(
            model_name="new-model", hardware_type="cuda", throughput=1.0, latency=2.0
        )
    cluster2.wait_converged(timeout=30)
    fresh = b.call("query", sql=COUNT)
    assert fresh["cache"] in ("miss", "peer") and fresh["db_cid"] != first["db_cid"]
    assert fresh["rows"] == [[first["rows"][0][0] + 1]]


def test_peers_at_the_same_cid_share_results(cluster2: LocalCluster) -> None:
    a, b = cluster2.peers
    wait_until(lambda: sees_same_cid(b, a), 30, "b to hear a's CID")
    ran = a.call("query", sql=AGG)
    shared = b.call("query", sql=AGG)
    assert ran["cache"] == "miss" and shared["cache"] == "peer"
    assert shared["rows"] == ran["rows"] and shared["columns"] == ran["columns"]
    assert b.call("query", sql=AGG)["cache"] == "hit"
    assert b.status()["metrics"]["cache_peer_hits"] == 1
    assert a.call("cache_stats")["served_to_peers"] == 1


def peerctl(peer: LocalPeer, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "peerctl", "--socket", str(peer.socket), *args],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


def test_peerctl_cache_commands(cluster2: LocalCluster) -> None:
    a = cluster2.peers[0]
    assert peerctl(a, "query", AGG).returncode == 0
    explained = peerctl(a, "query", "--explain-cache", "--json", AGG.lower())
    info = json.loads(explained.stdout)
    assert info["cached_at_current_cid"] and info["runs"] == 1 and info["strategy"] == "normal"
    analyzed = peerctl(a, "query", "--analyze", AGG)
    assert analyzed.returncode == 0 and "SEQ_SCAN" in analyzed.stdout
    stats = json.loads(peerctl(a, "cache", "stats", "--json").stdout)
    assert stats["entries"] >= 1 and stats["misses"] >= 1
    assert "hit_rate" in peerctl(a, "cache", "stats").stdout
    assert peerctl(a, "cache", "clear").returncode == 0
    assert json.loads(peerctl(a, "cache", "stats", "--json").stdout)["entries"] == 0
    bad = peerctl(a, "query", "--analyze", "DELETE FROM models")
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1
