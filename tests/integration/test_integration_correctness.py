"""Replication correctness between real daemons: restarts, clock skew, moved peers.

Each test here failed before the fix it names (issue 13): writes refused after a restart
once a row had been deleted; an update from a clock an hour behind acknowledged but
never visible; a conflict listed between two sequential edits of one writer; a peer that
restarted on a new port unreachable at its new address.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from daemon.localcluster import LocalCluster, LocalPeer, wait_until
from peerctl.client import RequestFailed

pytestmark = pytest.mark.slow

STRATEGIES = {"DUCKPEER_CONFLICTS": "models=merge,hardware_platforms=manual"}
LIBFAKETIME = [
    Path("/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1"),
    Path("/usr/lib/aarch64-linux-gnu/faketime/libfaketime.so.1"),
]


def record(peer: LocalPeer, model: str = "m") -> str:
    with peer.client() as client:
        return client.store_performance_result(
            model_name=model, hardware_type="cuda", throughput=1.0, latency=2.0
        )


@pytest.mark.parametrize("how", ["sigterm", "sigkill"])
def test_writes_after_a_restart_once_a_row_was_deleted(how: str) -> None:
    with LocalCluster(1) as cluster:
        (peer,) = cluster.peers
        doomed = record(peer)
        peer.call("delete", table="performance_results", key=doomed)
        if how == "sigterm":
            assert peer.stop() == 0
        else:
            peer.kill()
        peer.start()
        record(peer, "after-restart")  # refused with "Resource In Use" before the fix
        with peer.client() as client:
            client.ingest_columns({"model_name": ["x", "y"], "hardware_type": ["cpu", "cpu"],
                                   "throughput": [1.0, 2.0], "latency": [3.0, 4.0]})  # fmt: skip
        assert peer.status()["rows"]["performance_results"] == 3


def _faketime_env(offset: str) -> dict[str, str]:
    lib = next((p for p in LIBFAKETIME if p.exists()), None)
    if lib is None:
        pytest.skip("libfaketime not installed (Debian package faketime; .ci/run installs it)")
    # The monotonic clock stays real: trio's timers and deadlines use it.
    return {"LD_PRELOAD": str(lib), "FAKETIME": offset, "FAKETIME_DONT_FAKE_MONOTONIC": "1"}


def _visible(peer: LocalPeer, result_id: str) -> list[object]:
    sql = (
        "SELECT m.model_family, h.platform, r.test_case FROM models m, hardware_platforms h, "
        f"performance_results r WHERE m.model_id = 'm' AND h.hardware_id = 'cuda' "
        f"AND r.result_id = '{result_id}'"
    )
    return peer.call("query", sql=sql)["rows"]  # type: ignore[no-any-return]


def _edit(peer: LocalPeer, result_id: str, tag: str) -> None:
    """One edit of a row under each strategy (merge, manual, latest)."""
    with peer.client() as client:
        client.update("models", "m", {"model_family": tag})
        client.update("hardware_platforms", "cuda", {"platform": tag})
        client.update("performance_results", result_id, {"test_case": tag})


def test_an_update_from_a_clock_an_hour_behind_is_visible_everywhere() -> None:
    with LocalCluster(1, env=STRATEGIES) as cluster:
        (a,) = cluster.peers
        behind = LocalPeer("behind", cluster.base_dir / "behind",
                           {**STRATEGIES, **_faketime_env("-1h")})  # fmt: skip
        cluster.peers.append(behind)
        behind.start([a.listen_addr])
        rid = record(a)
        cluster.wait_converged(timeout=30)
        hlcs = [p.status()["hlc"] >> 16 for p in cluster.peers]
        assert hlcs[0] - hlcs[1] > 3_000_000  # the clock really is an hour behind
        for tag in ("first-edit", "second-edit"):  # sequential edits by the same writer
            _edit(behind, rid, tag)
            cluster.wait_converged(timeout=30)
            assert _visible(a, rid) == _visible(behind, rid) == [[tag, tag, tag]]
            assert a.call("conflicts_list")["conflicts"] == []
            assert behind.call("conflicts_list")["conflicts"] == []
        _edit(a, rid, "edit-from-a")  # and the on-time peer's next edit still wins
        cluster.wait_converged(timeout=30)
        assert _visible(behind, rid) == [["edit-from-a"] * 3]


def test_connect_reaches_a_peer_that_restarted_on_a_new_port() -> None:
    with LocalCluster(1) as cluster:
        (a,) = cluster.peers
        moved = LocalPeer("moved", cluster.base_dir / "moved")
        cluster.peers.append(moved)
        moved.start([])
        old_addr = moved.listen_addr
        a.call("connect", addr=old_addr)
        moved_id = moved.status()["peer_id"]
        wait_until(lambda: a.status()["peers"] == 1, 30, "a to connect")
        assert moved.stop() == 0
        moved.port = 0  # comes back on another port
        moved.start([])
        new_addr = moved.listen_addr
        assert new_addr != old_addr
        with pytest.raises(RequestFailed):
            a.call("connect", addr=old_addr)  # nobody there now: fails, and py-libp2p
            # remembers the failure (its negative dial cache) as well as the old address
        assert a.call("connect", addr=new_addr)["peer_id"] == moved_id
        record(moved, "from-the-moved-peer")
        cluster.wait_converged(timeout=30)


def test_daemon_log_is_json_lines_only(tmp_path: Path) -> None:
    with LocalCluster(2, base_dir=tmp_path / "c") as cluster:
        record(cluster.peers[0])
        cluster.wait_converged(timeout=30)
    for peer in cluster.peers:
        for line in peer.log_path.read_text().splitlines():
            assert isinstance(json.loads(line), dict), line
    shutil.rmtree(tmp_path / "c", ignore_errors=True)


def test_a_conflict_resolved_right_after_a_restart_closes_everywhere() -> None:
    env = {"DUCKPEER_CONFLICTS": "hardware_platforms=manual"}
    with LocalCluster(3, env=env) as cluster:
        a, b, c = cluster.peers
        record(a)
        cluster.wait_converged(timeout=30)
        assert a.stop() == 0  # partition: A edits alone, then B and C
        b.call("update", table="hardware_platforms", key="cuda", set={"platform": "bc"})
        cluster.wait_converged(timeout=30, peers=[b, c])
        assert b.stop() == 0 and c.stop() == 0
        a.start()
        a.call("update", table="hardware_platforms", key="cuda", set={"platform": "a"})
        b.start()
        c.start()
        cluster.wait_converged(timeout=60)
        (conflict,) = c.call("conflicts_list")["conflicts"]
        c.kill()
        c.start()
        c.call("conflicts_resolve", id=conflict["id"], take=conflict["versions"][0]["origin"])
        for peer in cluster.peers:
            wait_until(lambda p=peer: not p.call("conflicts_list")["conflicts"], 30, "closed")
        cluster.wait_converged(timeout=30)
