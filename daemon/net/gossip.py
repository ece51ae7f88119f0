"""Gossip on ``/duckpeer/<cluster>/v1``: announce our state, act on others'.

Announces are debounced after every commit and repeated every few seconds. An
announce whose vector holds something we lack schedules a pull from its sender;
one from a peer we are not connected to makes us dial its addresses.
"""

from __future__ import annotations

import time

import structlog
import trio

from daemon.net.network import NetworkError
from daemon.node import Node, PeerState
from protocol import changeset, messages, vv
from protocol.errors import RemoteProtocolError
from protocol.messages import Announce

log = structlog.get_logger("gossip")


def current_announce(node: Node, blocks: tuple[bytes, ...] = ()) -> Announce:
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
    )


async def serve_announcer(
    node: Node, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
) -> None:
    """Publish an Announce after each change (debounced) and every interval."""
    assert node.network is not None
    task_status.started()
    while True:
        with trio.move_on_after(node.config.announce_interval):
            await node.wait_changed()
            await trio.sleep(node.config.announce_debounce)
        announce = current_announce(node, node.take_pushable())
        await node.network.publish(messages.encode(announce))
        log.debug("announced", changesets=sum(announce.vector.values()))
        node.metrics.inc("announces_sent")


PUSH_QUEUE = 64  # announces with pushed blocks waiting for the writer


async def serve_listener(
    node: Node, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
) -> None:
    """Read the topic forever; malformed messages are dropped, logged and counted.

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
            _note(node, announce)
            if not announce.blocks or node.sync_held:
                _act_on(node, announce, nursery)
                continue
            try:
                send.send_nowait(announce)
            except trio.WouldBlock:
                node.metrics.inc("gossip_push_deferred")  # a pull fetches the same blocks
                _act_on(node, announce, nursery)


def _accepted(node: Node, sender: str, data: bytes) -> Announce | None:
    """The announce in a gossip message, after rate, trust and shape checks; other
    message types go to their feature's handler. None when there is nothing to do."""
    if not node.gossip_limiter.allow(sender):
        node.metrics.inc("gossip_rate_limited")
        return None
    if not node.config.trusts(sender):
        node.metrics.inc("gossip_untrusted")
        log.debug("gossip from untrusted peer ignored", peer=sender)
        return None
    try:
        message = messages.decode(data, node.config.max_gossip_bytes)
    except RemoteProtocolError as exc:
        node.metrics.inc("gossip_malformed")
        log.warning("malformed gossip", peer=sender, error=str(exc))
        return None
    handler = node.gossip_handlers.get(type(message))
    if handler is not None:
        handler(sender, message)
        return None
    if not isinstance(message, Announce):
        node.metrics.inc("gossip_unexpected")
        return None
    if message.peer_id != sender:
        node.metrics.inc("gossip_spoofed")
        log.warning("announce for another peer", peer=sender, claimed=message.peer_id)
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


IDLE_REDIAL_S = 30.0


def _note(node: Node, announce: Announce) -> None:
    """Remember what a peer announced."""
    state = node.peers.setdefault(announce.peer_id, PeerState(announce.peer_id))
    state.db_cid = announce.db_cid
    state.vector = dict(announce.vector)
    state.addrs = announce.addrs
    state.load = announce.load
    state.last_seen = time.time()


def _act_on(node: Node, announce: Announce, nursery: trio.Nursery) -> None:
    """Pull what the announce shows we lack; dial its sender if we are not connected."""
    state = node.peers.setdefault(announce.peer_id, PeerState(announce.peer_id))
    lacking = vv.lacks(node.store.vector(), announce.vector)
    if announce.peer_id in node.connected_peers():
        if lacking:
            node.request_sync(announce.peer_id)
        return
    # Dial peers we only hear of through others too, so the cluster stays connected when
    # the peer relaying their gossip goes away; without news, at most every IDLE_REDIAL_S.
    if announce.peer_id in node.dialing:
        return
    if not lacking and state.last_dial > state.last_seen - IDLE_REDIAL_S:
        return
    state.last_dial = state.last_seen
    node.dialing.add(announce.peer_id)
    nursery.start_soon(_dial_then_sync, node, announce)


async def _dial_then_sync(node: Node, announce: Announce) -> None:
    assert node.network is not None
    try:
        await _dial_any(node, announce)
    finally:
        node.dialing.discard(announce.peer_id)


async def _dial_any(node: Node, announce: Announce) -> None:
    assert node.network is not None
    for addr in announce.addrs:
        if "/p2p/" not in addr:
            addr = f"{addr}/p2p/{announce.peer_id}"
        try:
            await node.network.connect(addr)
        except NetworkError as exc:
            log.debug("dial from announce failed", peer=announce.peer_id, addr=addr, error=str(exc))
            continue
        node.request_sync(announce.peer_id)
        return
