"""Join the cluster through the bootstrap peers; mDNS discovery.

The bootstrap addresses are a way in, not permanent links: they are dialed while we
hold fewer than ``connections_target`` connections and know no member to dial
instead (at start, or after losing every link), with backoff. After that the
connection manager keeps us connected to random members, which the bootstrap peer's
member list (``/duckpeer/members/1``) and the announces told us about, and the
bootstrap peers may close our connection like any other.
"""

from __future__ import annotations

import structlog
import trio

from daemon.net import connmgr
from daemon.net.adapter import NetworkError
from daemon.node import Node

log = structlog.get_logger("bootstrap")

MAX_BACKOFF = 30.0
CHECK_S = 2.0


async def serve_bootstrap(
    node: Node, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
) -> None:
    """Dial the bootstrap peers whenever we have too few connections and no one else."""
    task_status.started()
    if not node.config.bootstrap:
        return
    backoff = 0.5
    while True:
        if _needed(node):
            if await _dial_all(node):
                backoff = 0.5
            else:
                await trio.sleep(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF)
                continue
        await trio.sleep(connmgr.jittered(CHECK_S))


def _needed(node: Node) -> bool:
    assert node.network is not None
    connected = set(node.network.connected_peers())
    if len(connected) >= node.config.connections_target:
        return False
    dialable = connmgr.manager(node).candidates(connected)
    return not connected or not dialable


async def _dial_all(node: Node) -> bool:
    """Dial every bootstrap address we are not connected to; True if any answered."""
    assert node.network is not None
    mgr, any_up = connmgr.manager(node), False
    for addr in node.config.bootstrap:
        peer_id = addr.rsplit("/p2p/", 1)[-1] if "/p2p/" in addr else None
        if peer_id is not None and peer_id in node.network.connected_peers():
            any_up = True
            continue
        try:
            peer_id = await node.network.connect(addr)
        except NetworkError as exc:
            log.info("bootstrap dial failed", addr=addr, error=str(exc))
            continue
        any_up = True
        log.info("connected to bootstrap peer", peer=peer_id)
        await mgr.joined(peer_id)
    return any_up


async def serve_discovery(
    node: Node, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
) -> None:
    """Dial peers that mDNS finds on the LAN (py-libp2p only discovers; we connect),
    while we hold fewer than ``connections_target`` connections."""
    assert node.network is not None
    task_status.started()
    async for addrs in node.network.discovered:
        connected = node.network.connected_peers()
        if len(connected) >= node.config.connections_target:
            continue
        for addr in addrs:
            if addr.rsplit("/p2p/", 1)[-1] in connected:
                break
            try:
                peer_id = await node.network.connect(addr)
            except NetworkError as exc:
                log.debug("mdns dial failed", addr=addr, error=str(exc))
                continue
            log.info("connected to mdns peer", peer=peer_id)
            await connmgr.manager(node).joined(peer_id)
            break
