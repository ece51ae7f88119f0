"""Partitioned real daemons edit the same rows; after healing every strategy converges."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest

from daemon.localcluster import LocalCluster, LocalPeer, wait_until

pytestmark = pytest.mark.slow

STRATEGIES = {"DUCKPEER_CONFLICTS": "models=merge,hardware_platforms=manual"}


def peerctl(peer: LocalPeer, *args: str) -> Any:
    proc = subprocess.run(
        [sys.executable, "-m", "peerctl", "--socket", str(peer.socket), *args, "--json"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def edit(peer: LocalPeer, result_id: str, tag: str, column: str) -> None:
    """Concurrent edits of one row per table (each strategy), as ``tag``."""
    with peer.client() as client:
        client.update("models", "m", {column: tag})
        client.update("hardware_platforms", "cuda", {"platform": tag})
        client.update("performance_results", result_id, {"test_case": tag})


def visible(peer: LocalPeer, result_id: str) -> list[Any]:
    sql = (
        "SELECT m.model_family, m.modality, h.platform, r.test_case FROM models m, "
        f"hardware_platforms h, performance_results r WHERE m.model_id = 'm' "
        f"AND h.hardware_id = 'cuda' AND r.result_id = '{result_id}'"
    )
    return peer.call("query", sql=sql)["rows"]  # type: ignore[no-any-return]


def _linked(peer: LocalPeer, other: str) -> bool:
    return any(p["peer_id"] == other and p["connected"] for p in peer.call("peers"))


def test_partition_heal_converges_under_each_strategy() -> None:
    with LocalCluster(3, env=STRATEGIES) as cluster:
        a, b, c = cluster.peers
        status = peerctl(a, "status")
        assert status["conflict_strategies"]["hardware_platforms"] == "manual"
        with a.client() as client:
            rid = client.store_performance_result(model_name="m", hardware_type="cuda",
                                                  throughput=1.0, latency=1.0)  # fmt: skip
        cluster.wait_converged(timeout=30)
        c_id = c.status()["peer_id"]
        wait_until(lambda: _linked(b, c_id), 30, "B and C to dial each other")

        # Partition: {B, C} edit while A is down, then A edits while B and C are down.
        assert a.stop() == 0
        edit(b, rid, "side-b", "modality")
        cluster.wait_converged(timeout=30, peers=[b, c])
        assert b.stop() == 0 and c.stop() == 0
        a.start()
        edit(a, rid, "side-a", "model_family")
        b.start()
        c.start()
        cluster.wait_converged(timeout=60)

        # merge keeps both sides' columns; latest and manual show A's later whole row
        rows = [visible(p, rid) for p in cluster.peers]
        assert rows[0] == rows[1] == rows[2] == [["side-a", "side-b", "side-a", "side-a"]]
        lists = [peerctl(p, "conflicts", "list")["conflicts"] for p in cluster.peers]
        assert lists[0] == lists[1] == lists[2]
        (conflict,) = lists[0]
        assert (conflict["table"], conflict["key"]) == ("hardware_platforms", "cuda")
        origins = {v["origin"] for v in conflict["versions"]}
        b_id = b.status()["peer_id"]
        assert origins == {a.status()["peer_id"], b_id}
        found = sum(p.status()["metrics"].get("conflicts_found", 0) for p in cluster.peers)
        assert found >= 3  # each table's fork was detected where it arrived

        # Resolve on C by taking B's version: the conflict closes everywhere.
        peerctl(c, "conflicts", "resolve", conflict["id"], "--take", b_id)

        def closed() -> bool:
            return all(not p.call("conflicts_list")["conflicts"] for p in cluster.peers)

        wait_until(closed, 30, "the resolution to reach every peer")
        cluster.wait_converged(timeout=30)
        rows = [visible(p, rid) for p in cluster.peers]
        assert rows[0] == rows[1] == rows[2] == [["side-a", "side-b", "side-b", "side-a"]]
        assert all(p.status()["conflicts_open"] == 0 for p in cluster.peers)
        report = peerctl(a, "sync", "--peer", b_id)
        assert report["peers"][0]["conflicts"] == 0 and "pushed" in report["peers"][0]
