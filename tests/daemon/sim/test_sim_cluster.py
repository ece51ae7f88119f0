"""The simulator drives the daemon's real network services in virtual time: a 200-peer
cluster converges with bounded connections; partitions heal; members that leave are
forgotten (with why and when) and members back on a new address are found again."""

from __future__ import annotations

import random

import trio

from daemon.logs import configure_logging
from daemon.net import methods
from daemon.sim import scenarios
from daemon.sim.cluster import SimCluster, SimSettings


def _quiet() -> None:
    configure_logging("error")  # 200 peers' debug lines would dominate the run
    random.seed(15)


def test_200_peers_converge_with_bounded_connections() -> None:
    _quiet()
    cluster = SimCluster(200, SimSettings(latency=(0.005, 0.030), loss=0.01, seed=1))

    async def main() -> dict[str, object]:
        async with trio.open_nursery() as nursery:
            settled = await scenarios.settle(cluster, nursery, spread=5.0, timeout=300.0)
            report = await scenarios.writes(cluster, 3, gap=1.0, timeout=30.0, seed=2)
            await trio.sleep(120.0)  # past the first heartbeats, whose periods still grow
            idle = await scenarios.traffic(cluster, 30.0)
            out = {
                "writes": report.summary(),
                "converged": cluster.converged(),
                "degrees": scenarios.degrees(cluster),
                "idle": idle,
                "settled": settled,
                "members": [len(p.node.peers) for p in cluster.online() if p.node],
            }
            nursery.cancel_scope.cancel()
        return out

    out = scenarios.run(main)
    assert out["settled"] < 300.0
    writes = out["writes"]
    assert isinstance(writes, dict)
    assert writes["missing"] == 0
    assert out["converged"]
    ceiling = cluster.fabric.max_connections
    assert max(out["degrees"]) <= ceiling  # type: ignore[arg-type]
    idle = out["idle"]
    assert isinstance(idle, scenarios.TrafficReport)
    # O(1) messages per peer per second while idle: the whole cluster sends about
    # announce_cluster_rate heartbeats per second, each reaching a peer a few times
    assert idle.gossip_in_median < 5.0
    assert min(out["members"]) >= 20  # type: ignore[type-var]


def test_partition_heals_to_one_cid() -> None:
    _quiet()
    cluster = SimCluster(30, SimSettings(latency=(0.002, 0.020), seed=3))

    async def main() -> scenarios.HealReport:
        async with trio.open_nursery() as nursery:
            await scenarios.settle(cluster, nursery, spread=3.0, timeout=300.0)
            report = await scenarios.partition_heal(cluster, 20.0, writes_per_side=2)
            nursery.cancel_scope.cancel()
        return report

    report = scenarios.run(main)
    assert report.heal_s is not None
    assert cluster.converged()
    assert len({p.store.db_cid() for p in cluster.peers}) == 1


def test_left_peers_depart_and_a_moved_peer_is_found_again() -> None:
    _quiet()
    cluster = SimCluster(12, SimSettings(seed=4, config={"member_timeout": 20.0}))
    crashed, moved = cluster.peers[5], cluster.peers[7]

    async def main() -> dict[str, object]:
        async with trio.open_nursery() as nursery:
            await scenarios.settle(cluster, nursery, spread=2.0, timeout=300.0)
            watcher = cluster.peers[0].node
            assert watcher is not None
            await cluster.stop(crashed, graceful=False)
            await cluster.stop(moved, graceful=True)
            with trio.fail_after(600):
                while crashed.peer_id in watcher.peers or moved.peer_id in watcher.peers:
                    await trio.sleep(1.0)
            rows = {row["peer_id"]: row for row in await methods.peers(watcher, {})}
            await cluster.restart(moved, new_address=True)
            change = await cluster.write(cluster.peers[1], "after-move")
            everywhere = await cluster.wait_everywhere(change, 120.0)
            with trio.fail_after(600):
                while moved.peer_id not in watcher.peers:
                    await trio.sleep(1.0)
            addrs = watcher.peers[moved.peer_id].addrs
            out = {"rows": rows, "everywhere": everywhere, "addrs": addrs}
            nursery.cancel_scope.cancel()
        return out

    out = scenarios.run(main)
    rows = out["rows"]
    assert isinstance(rows, dict)
    for gone in (crashed, moved):
        row = rows[gone.peer_id]
        assert row["state"] == "left"
        assert row["last_seen"] is not None
    assert out["everywhere"]
    assert any(a.startswith(moved.addr) for a in out["addrs"])  # type: ignore[attr-defined]
    assert moved.store.vector() == cluster.peers[1].store.vector()


def test_churn_does_not_stall_replication() -> None:
    _quiet()
    cluster = SimCluster(20, SimSettings(latency=(0.002, 0.020), loss=0.02, seed=5))

    async def main() -> scenarios.ChurnReport:
        async with trio.open_nursery() as nursery:
            await scenarios.settle(cluster, nursery, spread=2.0, timeout=300.0)
            report = await scenarios.churn(cluster, 120.0, every=10.0, write_every=5.0)
            nursery.cancel_scope.cancel()
        return report

    report = scenarios.run(main)
    assert report.stops >= 5
    assert report.writes["missing"] == 0
    assert report.converged_after_s is not None
