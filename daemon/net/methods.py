"""Control methods of the peer network: status, peers, connect, sync, wait_state."""

from __future__ import annotations

import time
from typing import Any

import trio

from daemon.net import membership, peerstatus, sync
from daemon.net.adapter import NetworkError
from daemon.net.gossip import current_announce
from daemon.node import Node, PeerState
from protocol import vv
from protocol.control import ControlError, param

MAX_WAIT_S = 300.0


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
        "members": len(node.peers),
        "announce_period_s": round(node.announce_period, 3),
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
    """Known peers: connected, members heard of, and those that left (with why and when
    they were last seen), with how far apart we are."""
    mine = node.store.vector()
    connected = set(node.connected_peers())
    out = []
    for peer_id in sorted(connected | set(node.peers)):
        state = node.peers.get(peer_id)
        status = (
            "connected"
            if peer_id in connected
            else "suspect"
            if state and state.suspect
            else "alive"
        )
        out.append(_peer_row(peer_id, state, mine, peer_id in connected, status))
    for peer_id in sorted(set(node.departed) - connected - set(node.peers)):
        out.append(_peer_row(peer_id, node.departed[peer_id], mine, False, "left"))
    return out


def _peer_row(
    peer_id: str, state: PeerState | None, mine: dict[str, int], connected: bool, status: str
) -> dict[str, Any]:
    theirs = state.vector if state else {}
    age = membership.now() - state.seen_at if state else None
    return {
        "peer_id": peer_id,
        "connected": connected,
        "state": status,
        "why": (state.left or state.suspect) if state else "",
        "db_cid": state.db_cid if state else None,
        "version_vector": theirs,
        "they_lack": vv.missing_count(theirs, mine) if state else None,
        "we_lack": vv.missing_count(mine, theirs) if state else None,
        "addrs": list(state.addrs) if state else [],
        "load": state.load if state else None,
        "last_seen": state.last_seen if state else None,
        "last_seen_age_s": round(age, 3) if age is not None and age != float("inf") else None,
    }


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
    return how many of our changesets it took, as its status answers show."""
    mine = node.store.vector()

    async def lacking() -> int | None:
        try:
            reply = await peerstatus.ask_status(node, peer)
        except peerstatus.StatusFailed:
            return None
        return vv.missing_count(mine, reply.vector)

    before = await lacking()
    if not before:
        return 0
    node.announce_soon()
    now = before
    with trio.move_on_after(min(5.0, node.config.sync_read_timeout)):
        while now:
            await trio.sleep(0.05)
            now = await lacking()
    return before - (now or 0)


async def wait_state(node: Node, params: dict[str, Any]) -> dict[str, Any]:
    """Wait until we hold every changeset of ``vector`` (at most ``timeout`` s): for
    measuring replication. ``at`` is the wall-clock time we first held them."""
    wanted = param(params, "vector", dict)
    timeout = params.get("timeout", 30.0)
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not timeout >= 0:
        raise ControlError("bad_request", "parameter 'timeout' must be a number >= 0")
    if not all(isinstance(k, str) and isinstance(v, int) for k, v in wanted.items()):
        raise ControlError("bad_request", "parameter 'vector' must map origins to seqs")
    with trio.move_on_after(min(float(timeout), MAX_WAIT_S)):
        while vv.lacks(node.store.vector(), wanted):
            await node.wait_changed()
    reached = not vv.lacks(node.store.vector(), wanted)
    return {"reached": reached, "at": time.time(), "db_cid": node.store.db_cid()}


METHODS = {
    "status": status,
    "peers": peers,
    "connect": connect,
    "sync": sync_now,
    "wait_state": wait_state,
}
