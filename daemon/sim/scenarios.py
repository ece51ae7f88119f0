"""Measurements on a simulated cluster, in virtual time.

- :func:`settle`: start N peers (joining over a spread of time) and wait until every
  one holds its target number of connections.
- :func:`traffic`: messages and bytes each peer sends and receives per second, idle.
- :func:`writes`: one small write at a time on a random peer: time until every peer
  holds it, and gossip rounds (the most hops its announce took to a peer).
- :func:`partition_heal`: split the cluster in two, write on both sides, heal: the
  time to one database CID and the traffic the heal cost.
- :func:`churn`: peers leave and come back (some on new addresses) while writes go
  on: are they still visible everywhere, and how fast?
"""

from __future__ import annotations

import random
import statistics
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from typing import Any, TypeVar

import trio
import trio.testing

from daemon.net.memnet import Traffic
from daemon.sim.cluster import SimCluster, SimPeer

T = TypeVar("T")


def run(main: Callable[[], Awaitable[T]]) -> T:
    """Run ``main`` under trio with a virtual clock that jumps whenever all tasks wait."""
    return trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))


def percentile(values: list[float], q: float) -> float:
    """The ``q`` quantile (0..1), linear between ranks; 0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    pos = q * (len(ordered) - 1)
    lo = int(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


# -- joining ----------------------------------------------------------------------------


async def settle(
    cluster: SimCluster, nursery: trio.Nursery, spread: float = 10.0, timeout: float = 300.0
) -> float:
    """Start every peer; seconds until each holds ``connections_target`` connections."""
    await cluster.start(nursery, spread=spread)
    start = trio.current_time()
    with trio.move_on_after(timeout):
        while not _settled(cluster):
            await trio.sleep(1.0)
    return trio.current_time() - start


def _settled(cluster: SimCluster) -> bool:
    peers = cluster.online()
    target = min(len(peers) - 1, peers[0].node.config.connections_target) if peers else 0
    ceiling = peers[0].node.config.connections_max if peers else 0
    return all(
        p.node is not None and target <= len(p.node.network.connected_peers()) <= ceiling  # type: ignore[union-attr]
        for p in peers
    )


def degrees(cluster: SimCluster) -> list[int]:
    """Connections per online peer."""
    return [len(p.node.network.connected_peers()) for p in cluster.online() if p.node]  # type: ignore[union-attr]


# -- idle traffic ------------------------------------------------------------------------


@dataclass
class TrafficReport:
    """Per peer per second, over a window: median and max across peers."""

    seconds: float
    gossip_in_median: float
    gossip_in_max: float
    gossip_in_bytes_median: float
    gossip_out_median: float
    stream_bytes_median: float
    bytes_median: float
    bytes_max: float
    streams_median: float


async def traffic(cluster: SimCluster, window: float) -> TrafficReport:
    """What an idle cluster costs each peer, per second."""
    before = _copy(cluster)
    start = trio.current_time()
    await trio.sleep(window)
    seconds = trio.current_time() - start
    deltas = _deltas(cluster, before)
    rate = [
        (
            d.gossip_in / seconds,
            d.gossip_in_bytes / seconds,
            d.gossip_out / seconds,
            (d.stream_in_bytes + d.stream_out_bytes) / seconds,
            (d.gossip_in_bytes + d.gossip_out_bytes + d.stream_in_bytes + d.stream_out_bytes)
            / seconds,
            d.streams_opened / seconds,
        )
        for d in deltas
    ]
    col = list(zip(*rate, strict=True))
    return TrafficReport(
        seconds=seconds,
        gossip_in_median=statistics.median(col[0]),
        gossip_in_max=max(col[0]),
        gossip_in_bytes_median=statistics.median(col[1]),
        gossip_out_median=statistics.median(col[2]),
        stream_bytes_median=statistics.median(col[3]),
        bytes_median=statistics.median(col[4]),
        bytes_max=max(col[4]),
        streams_median=statistics.median(col[5]),
    )


def _copy(cluster: SimCluster) -> dict[str, Traffic]:
    out = {}
    for peer in cluster.online():
        snap = Traffic()
        snap.add(cluster.fabric.stats(peer.peer_id))
        out[peer.peer_id] = snap
    return out


def _deltas(cluster: SimCluster, before: dict[str, Traffic]) -> list[Traffic]:
    out = []
    for peer_id, old in before.items():
        now = cluster.fabric.stats(peer_id)
        delta = Traffic(**{k: getattr(now, k) - getattr(old, k) for k in asdict(now)})
        out.append(delta)
    return out


# -- writes -------------------------------------------------------------------------------


@dataclass
class WriteReport:
    """One write: when and how it reached the other peers."""

    everywhere_s: float | None  # None: not on every online peer within the timeout
    median_s: float
    rounds: int  # most gossip hops of its announce to any peer
    by_push: int  # peers that got it from the announce itself
    peers: int


@dataclass
class WritesReport:
    """Several writes."""

    writes: list[WriteReport] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        """p50/p99 of time-to-everywhere, rounds, misses."""
        done = [w.everywhere_s for w in self.writes if w.everywhere_s is not None]
        return {
            "writes": len(self.writes),
            "missing": len(self.writes) - len(done),
            "everywhere_p50_s": percentile(done, 0.5),
            "everywhere_p99_s": percentile(done, 0.99),
            "rounds_max": max((w.rounds for w in self.writes), default=0),
            "rounds_median": statistics.median([w.rounds for w in self.writes] or [0]),
            "by_push_share": (
                sum(w.by_push for w in self.writes) / max(1, sum(w.peers for w in self.writes))
            ),
        }


class _Hops:
    """Records the hop count of the first delivery of watched messages."""

    def __init__(self, cluster: SimCluster) -> None:
        self.cluster = cluster
        self.watch_sender: str | None = None
        self.msg_id: tuple[str, int] | None = None
        self.hops: dict[str, int] = {}
        cluster.fabric.on_publish = self._published
        cluster.fabric.on_first_delivery = self._delivered

    def expect(self, sender: str) -> None:
        self.watch_sender, self.msg_id, self.hops = sender, None, {}

    def _published(self, peer: str, msg_id: tuple[str, int]) -> None:
        if peer == self.watch_sender and self.msg_id is None:
            self.msg_id = msg_id

    def _delivered(self, peer: str, msg_id: tuple[str, int], hops: int) -> None:
        if msg_id == self.msg_id:
            self.hops[peer] = hops


async def writes(
    cluster: SimCluster, count: int, gap: float = 5.0, timeout: float = 60.0, seed: int = 0
) -> WritesReport:
    """``count`` writes on random online peers, one at a time, ``gap`` apart."""
    rng = random.Random(seed)
    hops = _Hops(cluster)
    report = WritesReport()
    for i in range(count):
        writer = rng.choice(cluster.online())
        report.writes.append(await _one_write(cluster, writer, hops, f"sim-{seed}-{i}", timeout))
        await trio.sleep(gap)
    return report


async def _one_write(
    cluster: SimCluster, writer: SimPeer, hops: _Hops, name: str, timeout: float
) -> WriteReport:
    others = [p for p in cluster.online() if p is not writer]
    pushed_before = {p.peer_id: _pushed(p) for p in others}
    hops.expect(writer.peer_id)
    start = trio.current_time()
    change = await cluster.write(writer, name)
    done = await cluster.wait_everywhere(change, timeout)
    reached = cluster.reached[change]
    times = [t - start for peer, t in reached.items() if peer != writer.peer_id]
    return WriteReport(
        everywhere_s=max(times, default=0.0) if done else None,
        median_s=statistics.median(times) if times else 0.0,
        rounds=max(hops.hops.values(), default=0),
        by_push=sum(1 for p in others if _pushed(p) > pushed_before[p.peer_id]),
        peers=len(others),
    )


def _pushed(peer: SimPeer) -> int:
    return int(peer.node.metrics.snapshot().get("changesets_pushed_in", 0)) if peer.node else 0


# -- partitions ---------------------------------------------------------------------------


@dataclass
class HealReport:
    """A partition and its heal."""

    partition_s: float
    writes_per_side: int
    heal_s: float | None  # seconds from the heal to one database CID (None: not in time)
    bytes_per_peer: float  # sent and received during the heal, per peer
    messages_per_peer: float
    dials_per_peer: float


async def partition_heal(
    cluster: SimCluster, duration: float, writes_per_side: int = 3, timeout: float = 900.0
) -> HealReport:
    """Split the online peers in two halves for ``duration`` s, write on both, heal."""
    peers = cluster.online()
    half = len(peers) // 2
    sides = [peers[:half], peers[half:]]
    cluster.fabric.partition([[p.peer_id for p in side] for side in sides])
    for i in range(writes_per_side):
        for side_no, side in enumerate(sides):
            await cluster.write(side[i % len(side)], f"side{side_no}-{i}")
        await trio.sleep(duration / max(1, writes_per_side))
    before = _copy(cluster)
    cluster.fabric.heal()
    healed = await cluster.wait_converged(timeout, poll=0.5)
    deltas = _deltas(cluster, before)
    n = max(1, len(deltas))
    return HealReport(
        partition_s=duration,
        writes_per_side=writes_per_side,
        heal_s=healed,
        bytes_per_peer=sum(
            d.gossip_in_bytes + d.gossip_out_bytes + d.stream_in_bytes + d.stream_out_bytes
            for d in deltas
        )
        / n,
        messages_per_peer=sum(d.gossip_in + d.gossip_out for d in deltas) / n,
        dials_per_peer=sum(d.dials for d in deltas) / n,
    )


# -- churn -----------------------------------------------------------------------------------


@dataclass
class ChurnReport:
    """Writes while peers come and go."""

    duration_s: float
    stops: int
    restarts_new_address: int
    writes: dict[str, Any]
    converged_after_s: float | None
    members_median: float  # live members per peer at the end (vs peers online)
    online: int


async def churn(
    cluster: SimCluster,
    duration: float,
    every: float = 10.0,
    write_every: float = 5.0,
    seed: int = 0,
) -> ChurnReport:
    """Every ``every`` s one random peer stops (half of them crash) and a stopped one
    comes back (half on a new address); a write every ``write_every`` s."""
    rng = random.Random(seed)
    stopped: list[SimPeer] = []
    stops = moved = 0
    report = WritesReport()
    hops = _Hops(cluster)
    end = trio.current_time() + duration
    next_churn = trio.current_time() + every
    i = 0
    while trio.current_time() < end:
        if trio.current_time() >= next_churn:
            next_churn += every
            victim = rng.choice(cluster.online()[1:] or cluster.online())
            await cluster.stop(victim, graceful=rng.random() < 0.5)
            stops += 1
            stopped.append(victim)
            if len(stopped) > 1:
                back = stopped.pop(0)
                new_address = rng.random() < 0.5
                moved += new_address
                await cluster.restart(back, new_address=new_address)
        writer = rng.choice(cluster.online())
        report.writes.append(await _one_write(cluster, writer, hops, f"churn-{i}", 60.0))
        i += 1
        await trio.sleep(write_every)
    for back in stopped:
        await cluster.restart(back)
    converged = await cluster.wait_converged(300.0, poll=0.5)
    members = [len(p.node.peers) for p in cluster.online() if p.node]
    return ChurnReport(
        duration_s=duration,
        stops=stops,
        restarts_new_address=moved,
        writes=report.summary(),
        converged_after_s=converged,
        members_median=statistics.median(members) if members else 0.0,
        online=len(cluster.online()),
    )
