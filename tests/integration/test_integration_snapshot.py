"""Snapshots between real daemons: a new empty peer bootstraps from a snapshot fetched
from two peers over libp2p, ends at the cluster's CID, then follows by delta; the
peerctl commands export, list and import CARs, and refuse a tampered one."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from kubokit import FakeKubo

from daemon.demo import sample_results
from daemon.localcluster import LocalCluster, LocalPeer, wait_until

pytestmark = pytest.mark.slow


def peerctl(socket: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "peerctl", "--socket", str(socket), *args],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def rows(peer: LocalPeer) -> Any:
    sql = "SELECT result_id, model_id, throughput_items_per_second FROM performance_results"
    return sorted(map(tuple, peer.call("query", sql=sql + " ORDER BY 1")["rows"]))


def test_new_peer_bootstraps_from_snapshot_then_follows_by_delta(tmp_path: Path) -> None:
    with LocalCluster(2) as cluster:
        a, b = cluster.peers
        a.call("ingest", records=sample_results(3000, 1))
        b.call("ingest", records=sample_results(2000, 2))
        first = a.call("query", sql="SELECT model_id FROM models ORDER BY 1 LIMIT 1")
        a.call("delete", table="models", key=first["rows"][0][0])
        cluster.wait_converged(60)
        new = LocalPeer(
            "fresh",
            cluster.base_dir / "fresh",
            {"DUCKPEER_BOOTSTRAP_SNAPSHOT": "1", "DUCKPEER_BOOTSTRAP_SNAPSHOT_MIN_BYTES": "0"},
        )
        cluster.peers.append(new)
        new.start([a.listen_addr, b.listen_addr])
        cluster.wait_converged(60)
        status = new.status()
        metrics = status["metrics"]
        assert metrics.get("snapshot_bootstraps") == 1
        assert metrics.get("sync_changesets_in", 0) == 0  # everything came in the snapshot
        assert rows(new) == rows(a)
        assert metrics.get("snapshot_bootstrap_peers") == 2  # both offered the same snapshot

        def served() -> bool:  # and both sent blocks of it
            return all(p.status()["metrics"].get("snapshot_blocks_out") for p in (a, b))

        wait_until(served, 30, "both peers to count blocks served")
        # A later write replicates to the new peer by delta.
        b.call("record", record={"model_name": "late", "hardware_type": "cpu",
                                 "throughput": 1.0, "latency": 2.0})  # fmt: skip
        cluster.wait_converged(60)
        assert (
            new.status()["metrics"].get("sync_changesets_in", 0)
            + new.status()["metrics"].get("changesets_pushed_in", 0)
            >= 1
        )
        # The new peer serves only changesets after its snapshot: an empty peer asking
        # it for the full history is told to bootstrap from a snapshot. (With bootstrap
        # on, the default, it would not ask: the offer says history is missing, so it
        # takes the snapshot whatever its size.)
        lonely = LocalPeer(
            "lonely", cluster.base_dir / "lonely", {"DUCKPEER_BOOTSTRAP_SNAPSHOT": "0"}
        )
        cluster.peers.append(lonely)
        lonely.start([new.listen_addr])
        wait_until(lambda: new.status()["metrics"].get("sync_history_missing"), 30, "refusal")
        lonely.stop()
        cluster.peers.remove(lonely)


def test_peerctl_export_ls_import_and_tampered_car(tmp_path: Path, fake_kubo: str) -> None:
    car = tmp_path / "db.car"
    with LocalCluster(1, env={"DUCKPEER_IPFS_API": fake_kubo}) as cluster:
        (a,) = cluster.peers
        a.call("ingest", records=sample_results(500, 3))
        out = peerctl(a.socket, "snapshot", "export", "--out", str(car), "--json")
        assert out.returncode == 0, out.stderr
        exported = json.loads(out.stdout)
        assert exported["db_cid"] == a.status()["db_cid"]
        # ipfs_api is set: the daemon pushed the same CAR to the (fake) IPFS node
        assert exported["ipfs"]["roots"] == ["bafyroot"]
        assert [r["car"] for r in FakeKubo.received] == [car.read_bytes()]
        listed = peerctl(a.socket, "snapshot", "ls", str(car), "--json")
        assert listed.returncode == 0, listed.stderr
        assert json.loads(listed.stdout)["root"] == exported["root"]
        assert json.loads(listed.stdout)["rows"]["performance_results"] == 500

        empty = LocalPeer("empty", cluster.base_dir / "empty").start()
        cluster.peers.append(empty)
        bad = bytearray(car.read_bytes())
        bad[len(bad) // 2] ^= 0x10
        (tmp_path / "bad.car").write_bytes(bad)
        refused = peerctl(empty.socket, "snapshot", "import", str(tmp_path / "bad.car"))
        assert refused.returncode == 2 and "hash mismatch" in refused.stderr
        assert empty.status()["version_vector"] == {}
        bad_ls = peerctl(empty.socket, "snapshot", "ls", str(tmp_path / "bad.car"))
        assert bad_ls.returncode == 1

        loaded = peerctl(empty.socket, "snapshot", "import", str(car), "--json")
        assert loaded.returncode == 0, loaded.stderr
        assert empty.status()["db_cid"] == exported["db_cid"]
        assert rows(empty) == rows(a)
        again = peerctl(empty.socket, "snapshot", "import", str(car))
        assert again.returncode == 2 and "not empty" in again.stderr
