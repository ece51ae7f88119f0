"""Gossip on ``/duckpeer/<cluster>/v1``: announce our state, act on others'.

What we announce, and when:

- right after a local commit (``announce_debounce``), pushing the new changesets
  when they are small: everyone applies them from the announce itself, and predicts
  that every member that was at the announce's ``base`` reached its CID (that keeps
  distributed queries and cache sharing informed without N re-announces);
- never for changesets we received: pushed ones reached everyone with the same
  announce, and pulled ones spread over the connections (sync nudges our neighbours,
  see :mod:`daemon.net.sync`), which costs each peer a few streams, not N messages;
- otherwise a heartbeat whose period grows with the cluster,
  ``max(announce_interval, members / announce_cluster_rate)``, jittered ± 20 %, so
  the whole cluster sends about ``announce_cluster_rate`` heartbeats per second and
  each peer receives that many (times its mesh's duplicates) whatever the size. A new
  peer announces 2 s after it starts, so it is known at once;
- membership news (a member we lost, a refutation of a report about us) at once, and
  a ``leaving`` announce on shutdown.

An announce showing something we lack schedules a pull: from its sender if connected,
else from a connected peer known to have it, else (after a short random wait, in case
one of them gets it meanwhile) from the sender, dialed on demand. Messages reach the
listener only after :mod:`daemon.net.gossipcheck` accepted them.
"""

from __future__ import annotations

import random

import structlog
import trio

from daemon.net import membership
from daemon.net.connmgr import jittered
from daemon.node import Node
from protocol import changeset, messages, vv
from protocol.errors import RemoteProtocolError
from protocol.messages import MAX_GONE, Announce

log = structlog.get_logger("gossip")

NEWS_DEBOUNCE_S = 0.05
FIRST_BEAT_S = 2.0
LEAVE_WAIT_S = 0.5
PULL_LATER_S = (0.2, 1.0)


def current_announce(
    node: Node, blocks: tuple[bytes, ...] = (), base: str = "", leaving: bool = False
) -> Announce:
    """Our state as an Announce message, optionally pushing our newest small blocks."""
    store = node.store
    heads, db_cid = store.state()
    return Announce(
        peer_id=node.peer_id,
        db_cid=db_cid,
        vector={origin: seq for origin, (seq, _) in heads.items()},
        addrs=tuple(node.network.listen_addrs()) if node.network else (),
        load=node.load(),
        hlc=store.hlc,
        blocks=blocks,
        period_ms=int(node.announce_period * 1000),
        base=base if blocks else "",
        leaving=leaving,
        gone=tuple(sorted(node.gone))[:MAX_GONE],
    )


def heartbeat_period(node: Node) -> float:
    """The heartbeat period for the cluster size we see."""
    members = len(node.peers) + 1
    return max(node.config.announce_interval, members / node.config.announce_cluster_rate)


class Announcer:
    """Decides when to announce (see the module docstring)."""

    def __init__(self, node: Node) -> None:
        self.node = node
        self.sent_own = self.own_seq()
        self.last = trio.current_time()
        self.factor = 1.0
        self.due = self.last + FIRST_BEAT_S  # a new peer is known at once
        self.advertised = 0.0  # the period our last announce stated (0: none yet)

    def own_seq(self) -> int:
        return self.node.store.vector().get(self.node.peer_id, 0)

    def reason(self) -> str | None:
        """Why we should announce now, if we should."""
        node = self.node
        if self.own_seq() > self.sent_own:
            return "commit"
        if node.announce_wanted:
            return "news"
        return None

    async def wait(self) -> str:
        """Sleep until there is a reason to announce, or the heartbeat is due."""
        while True:
            with trio.move_on_at(self.due):
                while (why := self.reason()) is None:
                    await self.node.wait_changed()
                return why
            if not self._postpone():
                return "heartbeat"

    def _postpone(self) -> bool:
        """The cluster we see may have grown since we scheduled this heartbeat: move it
        to one (new) period after our last announce, if that is still ahead."""
        if not self.advertised:
            return False
        period = min(heartbeat_period(self.node), 2 * self.advertised)  # members wait 3
        due = self.last + self.factor * period
        if due <= trio.current_time():
            return False
        self.due = due
        return True

    def schedule(self) -> None:
        """The next heartbeat: one period (the one the announce just sent stated) after
        it."""
        node = self.node
        self.last = trio.current_time()
        self.factor = jittered(1.0)
        self.due = self.last + self.factor * node.announce_period

    async def send(self, leaving: bool = False) -> Announce:
        node = self.node
        assert node.network is not None
        blocks = node.take_pushable()
        node.announce_period = heartbeat_period(node)  # stated in the announce
        announce = current_announce(node, blocks, node.push_base, leaving)
        node.announce_wanted = False
        node.gone.clear()
        await node.network.publish(messages.encode(announce))
        if announce.blocks and announce.base:
            _predict(node, announce, dict(announce.vector))  # our peers at base, too
        self.sent_own = announce.vector.get(node.peer_id, 0)
        self.advertised = announce.period_ms / 1000
        node.metrics.inc("announces_sent")
        log.debug(
            "announced", changesets=sum(announce.vector.values()), pushed=len(announce.blocks)
        )
        return announce


DEBOUNCE = {"news": NEWS_DEBOUNCE_S, "heartbeat": 0.0}


async def serve_announcer(
    node: Node, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
) -> None:
    """Announce after local commits, membership news and heartbeats."""
    assert node.network is not None
    announcer = Announcer(node)
    node.announcer = announcer
    task_status.started()
    while True:
        why = await announcer.wait()
        await trio.sleep(DEBOUNCE.get(why, node.config.announce_debounce))
        await announcer.send()
        announcer.schedule()


async def announce_leaving(node: Node) -> None:
    """Tell the cluster we are going (on shutdown), then give pubsub a moment to send."""
    announcer = node.announcer
    if node.network is None or not isinstance(announcer, Announcer):
        return
    if not node.connected_peers():
        return  # nobody to tell
    with trio.move_on_after(LEAVE_WAIT_S):
        await announcer.send(leaving=True)
        await trio.sleep(LEAVE_WAIT_S)


PUSH_QUEUE = 64  # announces with pushed blocks waiting for the writer


async def serve_listener(
    node: Node, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
) -> None:
    """Read the topic forever and act on what arrives.

    The reader never waits for the database: py-libp2p drops what does not fit in the
    subscription's 32-message buffer, so pushed changesets go to a bounded queue that
    one task applies, and an announce that finds the queue full is acted on by a pull.
    """
    assert node.network is not None
    task_status.started()
    send, receive = trio.open_memory_channel[Announce](PUSH_QUEUE)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_apply_pushes, node, receive, nursery)
        async for msg in node.network.messages():
            announce = _accepted(node, msg.sender, msg.data)
            if announce is None:
                continue
            if not _note(node, announce):
                continue
            if not announce.blocks or node.sync_held:
                _act_on(node, announce, nursery)
                continue
            try:
                send.send_nowait(announce)
            except trio.WouldBlock:
                node.metrics.inc("gossip_push_deferred")  # a pull fetches the same blocks
                _act_on(node, announce, nursery)


def _accepted(node: Node, sender: str, data: bytes) -> Announce | None:
    """The announce in an (already validated) gossip message; other message types go
    to their feature's handler. None when there is nothing to do here."""
    try:
        message = messages.decode(data, node.config.max_gossip_bytes)
    except RemoteProtocolError as exc:  # only without a validator (tests' fake networks)
        node.metrics.inc("gossip_malformed")
        log.warning("malformed gossip", peer=sender, error=str(exc))
        return None
    handler = node.gossip_handlers.get(type(message))
    if handler is not None:
        handler(sender, message)
        return None
    if not isinstance(message, Announce) or message.peer_id != sender:
        node.metrics.inc("gossip_unexpected")
        return None
    node.metrics.inc("announces_received")
    log.debug("announce", peer=sender, changesets=sum(message.vector.values()))
    return message


async def _apply_pushes(
    node: Node, receive: trio.MemoryReceiveChannel[Announce], nursery: trio.Nursery
) -> None:
    async for announce in receive:
        await _apply_pushed(node, announce)
        _act_on(node, announce, nursery)  # pulls whatever the push did not cover


async def _apply_pushed(node: Node, announce: Announce) -> None:
    """Apply pushed blocks that extend our chain of the sender; leave the rest to a pull."""
    if node.sync_held:
        return
    expected = node.store.vector().get(announce.peer_id, 0) + 1
    usable = []
    for block in announce.blocks:
        try:
            cs = changeset.decode(block)
        except RemoteProtocolError as exc:
            node.metrics.inc("gossip_malformed")
            log.warning("malformed pushed changeset", peer=announce.peer_id, error=str(exc))
            return
        if cs.origin != announce.peer_id:
            node.metrics.inc("gossip_spoofed")
            return
        if cs.seq == expected:
            usable.append(block)
            expected += 1
    if usable:
        result = await node.apply_blocks(usable, announce.peer_id)
        node.metrics.inc("changesets_pushed_in", result.applied)
        log.debug("applied pushed", peer=announce.peer_id, applied=result.applied)


def _note(node: Node, announce: Announce) -> bool:
    """Remember what a peer announced; False when it left (nothing more to do)."""
    sender = announce.peer_id
    if not membership.admit(node, sender):
        return False
    state = membership.heard(node, sender, announce.addrs, announce.period_ms / 1000)
    if announce.leaving:
        membership.suspect(node, sender, "left")
        return False
    state.db_cid = announce.db_cid
    state.vector = dict(announce.vector)
    state.load = announce.load
    if announce.blocks and announce.base:
        _predict(node, announce, state.vector)
    if announce.gone:
        connected = set(node.connected_peers())
        membership.on_gone(node, sender, announce.gone, connected)
    return True


def _predict(node: Node, announce: Announce, vector: dict[str, int]) -> None:
    """Members that were where the sender was apply its pushed blocks too: we take
    them to be at its new CID (until they say otherwise), provided the blocks are all
    the sender changed since ``base``. Not suspect members, and for our own announce
    only those we hold a link to (one that just went away would look up to date)."""
    sender = announce.peer_id
    own = sender == node.peer_id
    connected = set(node.connected_peers()) if own else set()
    for peer_id, state in node.peers.items():
        if peer_id == sender or state.suspect or (own and peer_id not in connected):
            continue  # our own announce: only peers we hold a link to surely got it
        at_base = state.db_cid == announce.base or _before(
            state.vector, vector, sender, len(announce.blocks)
        )
        if at_base and {**state.vector, sender: vector.get(sender, 0)} == vector:
            state.db_cid, state.vector = announce.db_cid, dict(vector)


def _before(theirs: dict[str, int], vector: dict[str, int], sender: str, pushed: int) -> bool:
    """``theirs`` lacks only some of the ``pushed`` newest changesets of the sender."""
    rest = {k: v for k, v in vector.items() if k != sender}
    newest = vector.get(sender, 0)
    return {k: v for k, v in theirs.items() if k != sender} == rest and (
        newest - pushed <= theirs.get(sender, 0) <= newest
    )


def _act_on(node: Node, announce: Announce, nursery: trio.Nursery) -> None:
    """Pull what the announce shows we lack, from the best source we know."""
    if not vv.lacks(node.store.vector(), announce.vector):
        return
    connected = set(node.connected_peers())
    source = announce.peer_id if announce.peer_id in connected else _holder(node, connected)
    if source is not None:
        node.request_sync(source)
    elif announce.peer_id not in node.dialing:
        node.dialing.add(announce.peer_id)
        nursery.start_soon(_pull_later, node, announce)


def _holder(node: Node, connected: set[str]) -> str | None:
    """The connected peer known to hold the most that we lack, if any holds some."""
    mine = node.store.vector()
    best, most = None, 0
    for peer in connected:
        state = node.peers.get(peer)
        count = vv.missing_count(mine, state.vector) if state else 0
        if count > most:
            best, most = peer, count
    return best


async def _pull_later(node: Node, announce: Announce) -> None:
    """Give our neighbours a moment to get it, then pull from one, or from the sender."""
    try:
        await trio.sleep(random.uniform(*PULL_LATER_S))
        if not vv.lacks(node.store.vector(), announce.vector):
            return
        connected = set(node.connected_peers())
        node.request_sync(_holder(node, connected) or announce.peer_id)
    finally:
        node.dialing.discard(announce.peer_id)
