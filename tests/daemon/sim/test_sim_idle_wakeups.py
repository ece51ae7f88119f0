"""An idle daemon wakes seldom: once its links are settled and nothing changes, the
connection manager's tick backs off to QUIET_TICK_S; a change brings it back at once."""

from __future__ import annotations

import random

import trio

from daemon.logs import configure_logging
from daemon.net import connmgr
from daemon.sim import scenarios
from daemon.sim.cluster import SimCluster, SimSettings


def test_connection_manager_ticks_back_off_while_idle_and_a_write_still_arrives() -> None:
    configure_logging("error")
    random.seed(7)
    cluster = SimCluster(6, SimSettings(seed=7))
    ticks: list[float] = []
    watched = cluster.peers[2]

    async def main() -> tuple[int, bool]:
        async with trio.open_nursery() as nursery:
            await scenarios.settle(cluster, nursery, spread=1.0, timeout=120.0)
            await trio.sleep(30.0)  # links settle, the backoff reaches its ceiling
            assert watched.node is not None
            mgr = connmgr.manager(watched.node)
            real = mgr.tick

            async def counted(nursery: trio.Nursery) -> bool:
                ticks.append(trio.current_time())
                return await real(nursery)

            mgr.tick = counted  # type: ignore[method-assign]
            await trio.sleep(40.0)
            idle_ticks = len(ticks)
            change = await cluster.write(cluster.peers[0], "after-idle")
            everywhere = await cluster.wait_everywhere(change, 30.0)
            nursery.cancel_scope.cancel()
        return idle_ticks, everywhere

    idle_ticks, everywhere = scenarios.run(main)
    # 40 s at one tick a second would be ~40; backed off to QUIET_TICK_S (jittered) ~10
    assert idle_ticks <= 40 / connmgr.QUIET_TICK_S * 1.5, idle_ticks
    assert everywhere
