"""Gossip on ``/duckpeer/<cluster>/v1``: announce our state, act on others'.

Announces are debounced after every commit and repeated every few seconds. An
announce whose vector holds something we lack schedules a pull from its sender;
one from a peer we are not connected to makes us dial its addresses.
"""

from __future__ import annotations

import time

import structlog
import trio

from daemon.network import NetworkError
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


async def serve_listener(
    node: Node, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
) -> None:
    """Read the topic forever; malformed messages are dropped, logged and counted."""
    assert node.network is not None
    task_status.started()
    async with trio.open_nursery() as nursery:
        async for msg in node.network.messages():
            if not node.gossip_limiter.allow(msg.sender):
                node.metrics.inc("gossip_rate_limited")
                continue
            if not node.config.trusts(msg.sender):
                node.metrics.inc("gossip_untrusted")
                log.debug("gossip from untrusted peer ignored", peer=msg.sender)
                continue
            try:
                announce = messages.decode(msg.data, node.config.max_gossip_bytes)
            except RemoteProtocolError as exc:
                node.metrics.inc("gossip_malformed")
                log.warning("malformed gossip", peer=msg.sender, error=str(exc))
                continue
            handler = node.gossip_handlers.get(type(announce))
            if handler is not None:
                handler(msg.sender, announce)
                continue
            if not isinstance(announce, Announce):
                node.metrics.inc("gossip_unexpected")
                continue
            if announce.peer_id != msg.sender:
                node.metrics.inc("gossip_spoofed")
                log.warning("announce for another peer", peer=msg.sender, claimed=announce.peer_id)
                continue
            node.metrics.inc("announces_received")
            log.debug("announce", peer=msg.sender, changesets=sum(announce.vector.values()))
            if announce.blocks:
                await _apply_pushed(node, announce)
            _on_announce(node, announce, nursery)


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


def _on_announce(node: Node, announce: Announce, nursery: trio.Nursery) -> None:
    state = node.peers.setdefault(announce.peer_id, PeerState(announce.peer_id))
    state.db_cid = announce.db_cid
    state.vector = dict(announce.vector)
    state.addrs = announce.addrs
    state.load = announce.load
    state.last_seen = time.time()
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
