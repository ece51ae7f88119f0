"""A bounded number of connections, to random members.

Each peer dials up to ``connections_target`` members chosen at random (the gossipsub
mesh, degree ``gossip_degree``, forms over these), accepts inbound connections up to a
hard cap, and when it holds more than ``connections_max`` closes idle ones (older than
:data:`GRACE_S`, no new stream for :data:`TRIM_IDLE_S`: anti-entropy and nudges touch
every link of a small cluster every few seconds) at random down to ``connections_max``
(down to the target would make every inbound connection cost several peers a new
dial).
Random choices make the connection graph a random graph: connected, with a small
diameter, whatever the join order. Every :data:`SHUFFLE_S` a peer also dials one
member it is not connected to (the trim closes one later), so the graph keeps mixing
and two sides of a healed partition find each other again.

Sync, snapshot, status, cache and query streams to a member we are not connected to
dial it on demand (:func:`reach`); such a connection is trimmed like any other.

A peer that closes a connection because it holds too many says ``bye`` first
(``/duckpeer/members/1``) and is not chosen again for a while. When a connection
drops without one, the peer is probed once: if it cannot be dialed it is suspect and
reported ``gone`` in our next announce (membership).
"""

from __future__ import annotations

import random

import structlog
import trio

from daemon.net import membership
from daemon.net.adapter import NetworkError
from daemon.net.gossipcheck import lift_bans
from daemon.node import Node

log = structlog.get_logger("connmgr")

TICK_S = 1.0
QUIET_TICK_S = 4.0  # the longest wait between ticks while nothing changes
EXPIRE_S = 5.0
GRACE_S = 30.0
TRIM_IDLE_S = 5.0  # a connection with no new stream this long can be trimmed
SHUFFLE_S = 300.0
PROBE_DELAY_S = 2.0
AVOID_S = 600.0  # a peer that closed our connection while alive is not redialed this long
BACKOFF_S = (5.0, 300.0)
MAX_DIALS = 4


def jittered(seconds: float) -> float:
    """``seconds`` ± 20 %: peers that started together do not stay in step."""
    return seconds * random.uniform(0.8, 1.2)


class ConnectionManager:
    """The connection bookkeeping of one node (see the module docstring)."""

    def __init__(self, node: Node) -> None:
        self.node = node
        self.since: dict[str, float] = {}  # connected peer -> when we first saw the link
        self.closing: set[str] = set()  # peers we disconnected ourselves
        self.backoff: dict[str, tuple[float, float]] = {}  # peer -> (next try, delay)
        self.avoid: dict[str, float] = {}  # peer -> until
        self.dialing: set[str] = set()
        self.next_shuffle = membership.now() + jittered(SHUFFLE_S)
        self.poked = trio.Event()
        self.next_expire = membership.now()

    # -- the tick --------------------------------------------------------------------------

    def poke(self) -> None:
        """Tick now instead of after the current wait (a peer was banned)."""
        self.poked.set()

    async def tick(self, nursery: trio.Nursery) -> bool:
        """One round: notice link changes, expire members, dial or trim. True if links
        changed or the round dialed, trimmed or closed any."""
        network = self.node.network
        assert network is not None
        connected = set(network.connected_peers())
        t = membership.now()
        acted = connected != set(self.since) or bool(self.dialing)
        for peer in set(self.since) - connected:
            self._dropped(peer, nursery)
        for peer in connected - set(self.since):
            self.since[peer] = t
            membership.touch(self.node, peer)
        membership.refresh(self.node, connected)
        if t >= self.next_expire:
            self.next_expire = t + EXPIRE_S
            membership.expire(self.node, connected)
            lift_bans(self.node)
        for peer in connected & set(self.node.banned):
            await self._close(peer, "banned")
            connected.discard(peer)
            acted = True
        target, ceiling = self.node.config.connections_target, self.node.config.connections_max
        if len(connected) < target:
            acted |= self._dial_some(target - len(connected), connected, nursery, not connected) > 0
        elif len(connected) > ceiling:
            await self._trim(connected, len(connected) - ceiling)
            acted = True
        elif t >= self.next_shuffle:
            self.next_shuffle = t + jittered(SHUFFLE_S)
            acted |= self._dial_some(1, connected, nursery, include_departed=True) > 0
        return acted

    def _dropped(self, peer: str, nursery: trio.Nursery) -> None:
        del self.since[peer]
        if peer in self.closing:
            self.closing.discard(peer)
            return
        if peer in self.node.parting:  # it closed ours on purpose: choose others
            self.node.parting.discard(peer)
            self.avoid[peer] = membership.now() + AVOID_S
            return
        state = self.node.peers.get(peer)
        if state is not None and not state.suspect and peer not in self.node.banned:
            nursery.start_soon(self._probe, peer)

    async def _probe(self, peer: str) -> None:
        """Is a peer whose connection dropped still there?"""
        await trio.sleep(PROBE_DELAY_S)
        network = self.node.network
        assert network is not None
        if peer in network.connected_peers() or peer not in self.node.peers:
            return
        if await self.dial(peer, exchange=False):
            self.avoid[peer] = membership.now() + AVOID_S  # it closed ours: choose others
            await self._close(peer, "probe only")
            return
        self.node.gone.add(peer)
        membership.suspect(self.node, peer, "unreachable")
        self.node.announce_soon()

    # -- dialing ---------------------------------------------------------------------------

    def candidates(self, connected: set[str], include_departed: bool = False) -> list[str]:
        """Members we could dial now."""
        t = membership.now()
        pool = list(self.node.peers.values())
        if include_departed:
            pool += list(self.node.departed.values())
        return [
            s.peer_id
            for s in pool
            if s.addrs
            and s.peer_id not in connected
            and s.peer_id not in self.dialing
            and s.peer_id not in self.node.banned
            and self.avoid.get(s.peer_id, 0.0) <= t
            and self.backoff.get(s.peer_id, (0.0, 0.0))[0] <= t
            and self.node.config.trusts(s.peer_id)
        ]

    def _dial_some(
        self,
        wanted: int,
        connected: set[str],
        nursery: trio.Nursery,
        include_departed: bool = False,
    ) -> int:
        room = min(wanted, MAX_DIALS - len(self.dialing))
        pool = self.candidates(connected, include_departed)
        chosen = random.sample(pool, min(room, len(pool))) if room > 0 else []
        for peer in chosen:
            self.dialing.add(peer)
            nursery.start_soon(self._dial_task, peer)
        return len(chosen)

    async def _dial_task(self, peer: str) -> None:
        try:
            await self.dial(peer)
        finally:
            self.dialing.discard(peer)

    async def dial(self, peer: str, exchange: bool = True) -> bool:
        """Dial a member at its known addresses; True once connected. With
        ``exchange``, then sync with it and maybe ask it for members (:meth:`joined`)."""
        network = self.node.network
        assert network is not None
        state = self.node.peers.get(peer) or self.node.departed.get(peer)
        for addr in state.addrs if state else ():
            if "/p2p/" not in addr:
                addr = f"{addr}/p2p/{peer}"
            try:
                await network.connect(addr)
            except NetworkError as exc:
                log.debug("dial failed", peer=peer, addr=addr, error=str(exc))
                continue
            self.backoff.pop(peer, None)
            self.node.metrics.inc("connections_dialed")
            if exchange:
                await self.joined(peer)
            else:
                membership.heard(self.node, peer)
            return True
        t = membership.now()
        delay = min(self.backoff.get(peer, (0.0, BACKOFF_S[0] / 2))[1] * 2, BACKOFF_S[1])
        self.backoff[peer] = (t + delay, delay)
        self.node.metrics.inc("connections_dial_failed")
        return False

    async def joined(self, peer: str) -> None:
        """We just connected to ``peer``: exchange vectors, and if we know few members
        yet, ask it for some."""
        node = self.node
        membership.heard(node, peer)
        node.request_sync(peer)
        if len(node.network.connected_peers()) == 1:  # type: ignore[union-attr]
            node.announce_soon()  # our first link: let the cluster know us now
        if len(node.peers) < 4 * node.config.connections_target:
            learned = membership.learn(node, await membership.ask_members(node, peer))
            log.debug("members learned", peer=peer, new=learned)

    # -- trimming ---------------------------------------------------------------------------

    async def _trim(self, connected: set[str], count: int) -> None:
        network = self.node.network
        assert network is not None
        t = membership.now()
        idle = [
            p
            for p in connected
            if t - self.since.get(p, t) > GRACE_S and network.stream_idle(p) > TRIM_IDLE_S
        ]
        for peer in random.sample(idle, min(count, len(idle))):
            await membership.say_bye(self.node, peer)
            await self._close(peer, "over connections_max")
            self.node.metrics.inc("connections_trimmed")

    async def _close(self, peer: str, why: str) -> None:
        network = self.node.network
        assert network is not None
        self.closing.add(peer)
        log.debug("closing connection", peer=peer, why=why)
        await network.disconnect(peer)


def manager(node: Node) -> ConnectionManager:
    """The node's connection manager (made on first use)."""
    if node.connections is None:
        node.connections = ConnectionManager(node)
    return node.connections  # type: ignore[no-any-return]


async def reach(node: Node, peer: str) -> bool:
    """Make sure we hold a connection to ``peer``, dialing it on demand."""
    assert node.network is not None
    if peer in node.network.connected_peers():
        return True
    return await manager(node).dial(peer, exchange=False)


async def serve(
    node: Node, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
) -> None:
    """Tick forever: every :data:`TICK_S` (jittered) while links change, the wait
    doubling up to :data:`QUIET_TICK_S` while nothing does (an idle daemon wakes less)."""
    mgr = manager(node)
    task_status.started()
    wait = TICK_S
    async with trio.open_nursery() as nursery:
        while True:
            wait = TICK_S if await mgr.tick(nursery) else min(wait * 2, QUIET_TICK_S)
            with trio.move_on_after(jittered(wait)):
                await mgr.poked.wait()  # a ban, say, is acted on at once
            mgr.poked = trio.Event()
