"""Control methods of the peer network: status, peers, connect, sync."""

from __future__ import annotations

import time
from typing import Any

import trio

from daemon.net import sync
from daemon.net.gossip import current_announce
from daemon.net.network import NetworkError
from daemon.node import Node
from protocol import vv
from protocol.control import ControlError, param


async def status(node: Node, params: dict[str, Any]) -> dict[str, Any]:
    """Identity, database CID and vector, addresses, peers, row counts, counters."""
    announce = current_announce(node)
    rows, conflicts = await node.read(lambda s: (s.row_counts(), s.open_conflict_count()))
    return {
        "peer_id": node.peer_id,
        "db_cid": announce.db_cid,
        "version_vector": dict(announce.vector),
        "listen_addrs": list(announce.addrs),
        "peers": len(node.connected_peers()),
        "rows": rows,
        "changesets": sum(announce.vector.values()),
        "hlc": announce.hlc,
        "cluster": node.config.cluster,
        "data_dir": str(node.config.data_dir),
        "db_bytes": node.store.size_bytes(),
        "uptime_s": round(time.time() - node.started_at, 3),
        "metrics": node.metrics.snapshot(),
        "conflict_strategies": {t: s.value for t, s in node.store.strategies.items()},
        "conflicts_open": conflicts,
    }


async def peers(node: Node, params: dict[str, Any]) -> list[dict[str, Any]]:
    """Known peers: connected or heard of by gossip, with how far apart we are."""
    mine = node.store.vector()
    connected = set(node.connected_peers())
    out = []
    for peer_id in sorted(connected | set(node.peers)):
        state = node.peers.get(peer_id)
        theirs = state.vector if state else {}
        out.append(
            {
                "peer_id": peer_id,
                "connected": peer_id in connected,
                "db_cid": state.db_cid if state else None,
                "version_vector": theirs,
                "they_lack": vv.missing_count(theirs, mine) if state else None,
                "we_lack": vv.missing_count(mine, theirs) if state else None,
                "addrs": list(state.addrs) if state else [],
                "load": state.load if state else None,
                "last_seen": state.last_seen if state else None,
            }
        )
    return out


async def connect(node: Node, params: dict[str, Any]) -> dict[str, Any]:
    """Dial a peer by multiaddr and pull from it."""
    addr = param(params, "addr", str)
    assert node.network is not None
    try:
        peer_id = await node.network.connect(addr)
    except NetworkError as exc:
        raise ControlError("unavailable", str(exc)) from exc
    node.request_sync(peer_id)
    return {"peer_id": peer_id}


async def sync_now(node: Node, params: dict[str, Any]) -> dict[str, Any]:
    """Pull from every connected peer (or one) now; report what moved."""
    wanted = param(params, "peer", str, required=False)
    targets = [wanted] if wanted else node.connected_peers()
    results = []
    for peer in targets:
        try:
            r = await sync.pull(node, peer)
        except sync.SyncFailed as exc:
            results.append({"peer": peer, "error": str(exc)})
            continue
        results.append(
            {
                "peer": peer,
                "received": r.received,
                "applied": r.applied,
                "bytes": r.bytes,
                "rejected": r.rejected,
                "conflicts": r.conflicts,
            }
        )
    if wanted and "error" not in results[0]:
        results[0]["pushed"] = await _push(node, wanted)
    return {
        "peers": results,
        "pulled": sum(r.get("applied", 0) for r in results),
        "conflicts": sum(r.get("conflicts", 0) for r in results),
        "db_cid": node.store.db_cid(),
    }


async def _push(node: Node, peer: str) -> int:
    """Announce now and wait (a few seconds at most) for ``peer`` to pull what it lacks;
    return how many of our changesets it took, as its gossiped vector shows."""
    mine = node.store.vector()

    def lacking() -> int:
        state = node.peers.get(peer)
        return vv.missing_count(mine, state.vector) if state else 0

    before = lacking()
    node.notify_changed()
    with trio.move_on_after(min(5.0, node.config.sync_read_timeout)):
        while lacking():
            await trio.sleep(0.02)
    return before - lacking()


METHODS = {"status": status, "peers": peers, "connect": connect, "sync": sync_now}
