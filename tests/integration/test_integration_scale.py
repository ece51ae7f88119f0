"""Ten real daemons: bounded connections, every write everywhere, one CID; a daemon that
stops leaves the others' members (with why and when), and one back on a new port is
found again."""

from __future__ import annotations

import pytest

from daemon.localcluster import LocalCluster, LocalPeer, wait_until

pytestmark = pytest.mark.slow

ENV = {"DUCKPEER_MEMBER_TIMEOUT": "5.0", "DUCKPEER_CONNECTIONS_TARGET": "4",
       "DUCKPEER_CONNECTIONS_MAX": "6"}  # fmt: skip


def record(peer: LocalPeer, model: str) -> str:
    with peer.client() as client:
        return client.store_performance_result(
            model_name=model, hardware_type="cuda", throughput=1.0, latency=2.0
        )


def count(peer: LocalPeer, result_id: str) -> int:
    sql = f"SELECT count(*) FROM performance_results WHERE result_id = '{result_id}'"
    return int(peer.call("query", sql=sql)["rows"][0][0])


@pytest.mark.timeout(900)
def test_ten_daemons_converge_with_bounded_connections() -> None:
    with LocalCluster(10, env=ENV) as cluster:
        peers = cluster.peers
        wait_until(lambda: all(s["peers"] >= 1 for s in cluster.statuses()), 60, "links")
        ids = [record(peers[i], f"scale-{i}") for i in (0, 3, 6, 9)]
        wait_until(
            lambda: all(count(p, rid) == 1 for p in peers for rid in ids), 60, "writes everywhere"
        )
        cluster.wait_converged(60)
        statuses = cluster.statuses()
        assert len({s["db_cid"] for s in statuses}) == 1
        # new links are kept 30 s (connmgr.GRACE_S) before extra ones are trimmed
        wait_until(lambda: all(s["peers"] <= 6 for s in cluster.statuses()), 120, "the trim")
        wait_until(lambda: all(s["members"] >= 9 for s in cluster.statuses()), 60, "members")

        leaving = peers[5]
        leaving_id = leaving.status()["peer_id"]
        assert leaving.stop() == 0
        watcher = peers[2]

        def left() -> bool:
            rows = {r["peer_id"]: r for r in watcher.call("peers")}
            row = rows.get(leaving_id)
            return row is not None and row["state"] == "left" and row["last_seen"] is not None

        wait_until(left, 90, "the stopped daemon to leave the members")
        rid = record(peers[7], "while-one-is-away")
        wait_until(lambda: all(count(p, rid) == 1 for p in peers if p is not leaving), 60, "write")

        leaving.port = 0  # back on a new ephemeral port
        leaving.start()
        wait_until(
            lambda: any(
                r["peer_id"] == leaving_id and r["state"] != "left" for r in watcher.call("peers")
            ),
            120,
            "the daemon back on a new address to be found again",
        )
        wait_until(lambda: count(leaving, rid) == 1, 60, "the returning daemon to catch up")
        cluster.wait_converged(60)
