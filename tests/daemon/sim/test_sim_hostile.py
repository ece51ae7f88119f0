"""Hostile peers in the simulator (real validator, real sync): junk gossip stops at the
first honest peer and gets its sender banned; an announce flood is rate-limited where it
enters; a peer that goes silent mid-sync costs the puller one read timeout; a flood of
inbound connections from one address is refused before the handshake."""

from __future__ import annotations

import random

import multiaddr
import trio

from daemon.logs import configure_logging
from daemon.net import gossip, sync
from daemon.net.adapter import PeerStream
from daemon.net.gossipcheck import JUNK_LIMIT
from daemon.net.network import ConnectionRateGate
from daemon.ratelimit import RateLimiter
from daemon.sim import scenarios
from daemon.sim.cluster import SimCluster, SimPeer, SimSettings
from protocol import messages


def _setup(size: int, seed: int, **config: object) -> SimCluster:
    configure_logging("error")
    random.seed(seed)
    return SimCluster(size, SimSettings(seed=seed, config=dict(config)))


def _metric(peer: SimPeer, name: str) -> float:
    assert peer.node is not None
    return float(peer.node.metrics.snapshot().get(name, 0))


def test_junk_is_not_relayed_and_its_sender_is_banned() -> None:
    cluster = _setup(16, 21, connections_target=3, connections_max=5)
    bad = cluster.peers[3]

    async def main() -> dict[str, object]:
        async with trio.open_nursery() as nursery:
            await scenarios.settle(cluster, nursery, spread=2.0, timeout=300.0)
            assert bad.node is not None and bad.node.network is not None
            neighbours = set(bad.node.network.connected_peers())
            hops: list[int] = []
            junk: set[tuple[str, int]] = set()
            cluster.fabric.on_first_delivery = lambda peer, msg_id, n: (
                hops.append(n) if msg_id in junk else None
            )
            published: list[tuple[str, int]] = []  # bad's own announces may interleave
            cluster.fabric.on_publish = lambda peer, msg_id: (
                published.append(msg_id) if peer == bad.peer_id else None
            )
            for i in range(100):
                await bad.node.network.publish(b"\x93junk" + bytes([i]))
                junk.add(published[-1])  # ours: published last, before publish returned
                await trio.sleep(0.01)
            cluster.fabric.on_publish = None
            await trio.sleep(2.0)
            change = await cluster.write(cluster.peers[0], "after-junk")
            everywhere = await cluster.wait_everywhere(change, 60.0)
            out = {
                "neighbours": neighbours,
                "everywhere": everywhere,
                "hops": hops,
                "still_linked": set(bad.node.network.connected_peers()) & neighbours,
                "metrics": {
                    p.peer_id: (_metric(p, "gossip_malformed"), _metric(p, "gossip_banned_peers"))
                    for p in cluster.peers
                    if p is not bad
                },
            }
            nursery.cancel_scope.cancel()
        return out

    out = scenarios.run(main)
    neighbours = out["neighbours"]
    assert isinstance(neighbours, set) and neighbours
    counts = out["metrics"]
    assert isinstance(counts, dict)
    assert out["hops"] and set(out["hops"]) == {1}  # type: ignore[arg-type]  # never relayed
    for peer_id, (malformed, banned) in counts.items():
        if peer_id in neighbours:
            assert malformed >= 1 and banned == 1
        # a peer it links to later counts junk too, but never more than it takes to ban
        assert malformed <= JUNK_LIMIT + 1
    assert out["still_linked"] == set()
    assert out["everywhere"]


def test_announce_flood_is_limited_where_it_enters() -> None:
    cluster = _setup(16, 22, connections_target=3, connections_max=5)
    loud = cluster.peers[4]
    flood = 3000

    async def main() -> tuple[set[str], list[float]]:
        async with trio.open_nursery() as nursery:
            await scenarios.settle(cluster, nursery, spread=2.0, timeout=300.0)
            node = loud.node
            assert node is not None and node.network is not None
            neighbours = set(node.network.connected_peers())
            before = {p.peer_id: _metric(p, "announces_received") for p in cluster.peers}
            for _ in range(flood):  # 1000 valid announces a second for 3 s
                await node.network.publish(messages.encode(gossip.current_announce(node)))
                await trio.sleep(0.001)
            await trio.sleep(2.0)
            received = {
                p.peer_id: _metric(p, "announces_received") - before[p.peer_id]
                for p in cluster.peers
                if p is not loud
            }
            limited = [_metric(p, "gossip_rate_limited") for p in cluster.peers
                       if p.peer_id in neighbours]  # fmt: skip
            nursery.cancel_scope.cancel()
        for peer_id, count in received.items():
            assert count < flood / 3, (peer_id in neighbours, count)
        return neighbours, limited

    neighbours, limited = scenarios.run(main)
    assert neighbours and all(n > 0 for n in limited)


def test_a_peer_silent_mid_sync_costs_one_read_timeout() -> None:
    cluster = _setup(4, 23, sync_read_timeout=5.0)
    puller, staller = cluster.peers[0], cluster.peers[1]

    async def stall(stream: PeerStream) -> None:
        await stream.read(1 << 16)  # take the request, then say nothing, forever
        await trio.sleep_forever()

    async def main() -> tuple[float, float]:
        async with trio.open_nursery() as nursery:
            await scenarios.settle(cluster, nursery, spread=1.0, timeout=300.0)
            assert staller.node is not None and staller.node.network is not None
            assert puller.node is not None
            staller.node.network.set_stream_handler(sync.PROTOCOL, stall)
            if staller.peer_id not in puller.node.connected_peers():
                await puller.node.network.connect(  # type: ignore[union-attr]
                    f"{staller.addr}/p2p/{staller.peer_id}"
                )
            start = trio.current_time()
            result = await sync.pull_logged(puller.node, staller.peer_id)
            took = trio.current_time() - start
            assert result is None  # failed, logged and counted
            change = await cluster.write(cluster.peers[2], "after-stall")
            assert await cluster.wait_everywhere(change, 60.0)
            errors = _metric(puller, "sync_pull_errors")
            nursery.cancel_scope.cancel()
        return took, errors

    took, errors = scenarios.run(main)
    assert took <= 5.0 + 1.0  # the read timeout plus a round trip or two (virtual time)
    assert errors >= 1


async def test_connection_flood_from_one_address_is_refused_before_the_handshake() -> None:
    class Inner:
        calls = 0

        async def is_allowed(self, addr: multiaddr.Multiaddr) -> bool:
            Inner.calls += 1
            return True

    refused: list[int] = []
    gate = ConnectionRateGate(
        Inner(), RateLimiter(10.0, 40.0, clock=lambda: 0.0), lambda: refused.append(1)
    )
    flooder = multiaddr.Multiaddr("/ip4/10.0.0.66/tcp/5000")
    honest = multiaddr.Multiaddr("/ip4/10.0.0.7/tcp/5000")
    allowed = [await gate.is_allowed(flooder) for _ in range(200)]
    assert sum(allowed) == 40  # the burst, then nothing (the clock does not move)
    assert len(refused) == 160
    assert await gate.is_allowed(honest)  # other addresses are not affected
    assert Inner.calls == 41  # refused attempts never reach py-libp2p's gate
