"""Stay connected to the bootstrap peers, redialing with backoff when a link drops."""

from __future__ import annotations

import structlog
import trio

from daemon.net.network import NetworkError
from daemon.node import Node

log = structlog.get_logger("bootstrap")

MAX_BACKOFF = 30.0


async def serve_bootstrap(
    node: Node, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
) -> None:
    """One task per bootstrap address, each keeping its link up."""
    async with trio.open_nursery() as nursery:
        for addr in node.config.bootstrap:
            nursery.start_soon(_keep_connected, node, addr)
        task_status.started()


async def _keep_connected(node: Node, addr: str) -> None:
    assert node.network is not None
    backoff = 0.5
    peer_id = addr.rsplit("/p2p/", 1)[-1] if "/p2p/" in addr else None
    while True:
        if peer_id is None or peer_id not in node.connected_peers():
            try:
                connected = await node.network.connect(addr)
            except NetworkError as exc:
                log.info("bootstrap dial failed", addr=addr, error=str(exc), retry_s=backoff)
                await trio.sleep(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF)
                continue
            peer_id = connected
            log.info("connected to bootstrap peer", peer=peer_id)
            node.request_sync(peer_id)
            backoff = 0.5
        await trio.sleep(2.0)


async def serve_discovery(
    node: Node, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
) -> None:
    """Dial peers that mDNS finds on the LAN (py-libp2p only discovers; we connect)."""
    assert node.network is not None
    task_status.started()
    async for addrs in node.network.discovered:
        for addr in addrs:
            if addr.rsplit("/p2p/", 1)[-1] in node.connected_peers():
                break
            try:
                peer_id = await node.network.connect(addr)
            except NetworkError as exc:
                log.debug("mdns dial failed", addr=addr, error=str(exc))
                continue
            log.info("connected to mdns peer", peer=peer_id)
            node.request_sync(peer_id)
            break
