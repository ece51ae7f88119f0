"""Real duckpeerd processes on loopback replicate, catch up by delta and restart cleanly."""

from __future__ import annotations

from pathlib import Path

import pytest

from daemon.demo import sample_results
from daemon.localcluster import LocalCluster, LocalPeer, wait_until
from peerctl.client import RequestFailed

pytestmark = pytest.mark.slow

ALL_ROWS = {
    "performance_results": "SELECT * FROM performance_results ORDER BY result_id",
    "models": "SELECT * FROM models ORDER BY model_id",
    "hardware_platforms": "SELECT * FROM hardware_platforms ORDER BY hardware_id",
}


def dump(peer: LocalPeer) -> dict[str, list[list[object]]]:
    """Every row of the replicated tables, ordered by key."""
    return {name: peer.call("query", sql=sql)["rows"] for name, sql in ALL_ROWS.items()}


def record(peer: LocalPeer, model: str, hardware: str = "cuda", throughput: float = 1.0) -> str:
    with peer.client() as client:
        return client.store_performance_result(
            model_name=model, hardware_type=hardware, throughput=throughput, latency=2.0
        )


def test_writes_on_every_peer_converge(cluster3: LocalCluster) -> None:
    ids = [record(peer, f"model-{i}", f"hw-{i}") for i, peer in enumerate(cluster3.peers)]
    with cluster3.peers[1].client() as client:
        client.ingest_columns({k: v[:300] for k, v in sample_results(300).items()})
    cluster3.wait_converged(timeout=30)
    dumps = [dump(peer) for peer in cluster3.peers]
    assert dumps[0] == dumps[1] == dumps[2]
    assert len(dumps[0]["performance_results"]) == 303
    statuses = cluster3.statuses()
    assert len({s["db_cid"] for s in statuses}) == 1
    assert statuses[0]["db_cid"].startswith("bafy")
    assert all(s["version_vector"] == statuses[0]["version_vector"] for s in statuses)
    for result_id in ids:
        rows = cluster3.peers[2].call(
            "query", sql=f"SELECT count(*) FROM performance_results WHERE result_id = '{result_id}'"
        )["rows"]
        assert rows == [[1]]


def test_restarted_peer_catches_up_by_delta_only(cluster3: LocalCluster) -> None:
    a, b, c = cluster3.peers
    record(a, "before-stop")
    cluster3.wait_converged(timeout=30)
    assert c.stop() == 0
    missed = [record(a, f"missed-a-{i}") for i in range(3)] + [record(b, "missed-b")]
    cluster3.wait_converged(timeout=30, peers=[a, b])
    c.start()
    cluster3.wait_converged(timeout=30)
    metrics = c.status()["metrics"]
    assert metrics["changesets_applied"] == len(missed)  # each missed one, applied once
    # Pulls run one at a time, each from the vector the last one left, so pulls carry
    # at most the delta, never what c held. Gossipsub may also replay a recent announce
    # with pushed blocks to the rejoined c while a pull is in flight; a block that
    # arrives both ways counts as a duplicate, not as a second apply.
    pulled = metrics.get("sync_changesets_in", 0)
    assert pulled <= len(missed)
    assert pulled + metrics.get("changesets_pushed_in", 0) >= len(missed)
    assert dump(c) == dump(a)


def test_empty_peer_catches_up_fully(cluster3: LocalCluster) -> None:
    a = cluster3.peers[0]
    with a.client() as client:
        for start in range(0, 2000, 500):
            data = sample_results(2000)
            client.ingest_columns({k: v[start : start + 500] for k, v in data.items()})
    cluster3.wait_converged(timeout=30)
    late = LocalPeer("late", cluster3.base_dir / "late")
    cluster3.peers.append(late)
    late.start([a.listen_addr])
    cluster3.wait_converged(timeout=60)
    assert dump(late) == dump(a)
    assert late.status()["rows"]["performance_results"] == 2000


def test_sigterm_is_clean_and_identity_persists(tmp_path_factory: pytest.TempPathFactory) -> None:
    with LocalCluster(1) as cluster:
        peer = cluster.peers[0]
        before = peer.status()
        record(peer, "kept")
        assert peer.stop() == 0
        assert not peer.socket.exists()
        peer.start()
        after = peer.status()
        assert after["peer_id"] == before["peer_id"]
        assert after["rows"]["performance_results"] == 1


def test_acknowledged_writes_survive_kill(tmp_path_factory: pytest.TempPathFactory) -> None:
    with LocalCluster(1) as cluster:
        peer = cluster.peers[0]
        ids = [record(peer, f"m{i}") for i in range(20)]
        peer.kill()
        peer.start()
        rows = peer.call("query", sql="SELECT CAST(result_id AS VARCHAR) FROM performance_results")
        assert sorted(r[0] for r in rows["rows"]) == sorted(ids)
        assert peer.status()["changesets"] == 20


def test_peerctl_sync_reports_pulled(cluster3: LocalCluster) -> None:
    a, b, _ = cluster3.peers
    record(a, "x")
    wait_until(lambda: b.status()["rows"]["performance_results"] == 1, 30, "b to receive")
    result = b.call("sync")
    assert result["pulled"] == 0
    assert {p["peer"] for p in result["peers"]} >= {a.status()["peer_id"]}


def test_mdns_peers_find_each_other_without_bootstrap() -> None:
    with LocalCluster(0, env={"DUCKPEER_MDNS": "1"}) as cluster:
        for i in range(2):
            peer = LocalPeer(f"mdns{i}", cluster.base_dir / f"m{i}", {"DUCKPEER_MDNS": "1"})
            cluster.peers.append(peer)
            peer.spawn([])
        for peer in cluster.peers:
            peer.wait_ready(60)
        record(cluster.peers[0], "found-by-mdns")
        cluster.wait_converged(timeout=60)
        assert cluster.peers[1].status()["rows"]["performance_results"] == 1


def test_small_writes_are_pushed_with_the_announce(cluster3: LocalCluster) -> None:
    a, b, _ = cluster3.peers
    for i in range(5):
        record(a, f"pushed-{i}")
        wait_until(lambda i=i: b.status()["rows"]["performance_results"] == i + 1, 30, "b")
    assert b.status()["metrics"].get("changesets_pushed_in", 0) >= 1


def test_private_network_key_keeps_outsiders_out(tmp_path: Path) -> None:
    key = tmp_path / "swarm.key"
    key.write_text("/key/swarm/psk/1.0.0/\n/base16/\n" + "5a" * 32 + "\n")
    with LocalCluster(2, env={"DUCKPEER_PSK_FILE": str(key)}) as cluster:
        a = cluster.peers[0]
        record(a, "inside")
        cluster.wait_converged(timeout=30)
        outsider = LocalPeer("outsider", cluster.base_dir / "out")
        cluster.peers.append(outsider)
        outsider.start([])
        with pytest.raises(RequestFailed):
            outsider.call("connect", addr=a.listen_addr)
        assert outsider.status()["rows"]["performance_results"] == 0
