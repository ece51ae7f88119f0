"""Cluster convergence check behind ``peerctl verify``.

Every connected peer is asked for its CID and version vector over
``/duckpeer/status/1`` (in parallel, with a deadline); peers we only know from gossip,
or that do not answer, are reported from their last announce with its age. Then:
who is behind the union of all vectors, by how many changesets per origin, and whether
two peers at the same version vector hold different CIDs (which must never happen: the
CID is a function of the changesets held, so it is a divergence bug alarm).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import trio

from daemon.net.peerstatus import StatusFailed, ask_status, my_reply
from daemon.node import Node
from protocol import vv


@dataclass
class PeerView:
    """One peer's state as we learned it."""

    peer_id: str
    source: str  # self | live | gossip
    db_cid: str | None
    vector: dict[str, int] = field(default_factory=dict)
    age_s: float | None = None
    error: str | None = None


def compare(views: list[PeerView]) -> dict[str, Any]:
    """Who is behind, by how much, and which same-vector peers disagree on the CID."""
    known = [v for v in views if v.db_cid is not None]
    target = vv.merge(v.vector for v in known)
    peers = []
    for view in views:
        behind = {
            o: s - view.vector.get(o, 0) for o, s in target.items() if s > view.vector.get(o, 0)
        }
        peers.append(
            {
                "peer_id": view.peer_id,
                "source": view.source,
                "db_cid": view.db_cid,
                "version_vector": view.vector,
                "changesets": sum(view.vector.values()),
                "behind": behind if view.db_cid is not None else None,
                "behind_total": sum(behind.values()) if view.db_cid is not None else None,
                "age_s": view.age_s,
                "error": view.error,
            }
        )
    divergent = _divergent(known)
    fresh = [p for p in peers if p["source"] in ("self", "live")]
    converged = (
        not divergent
        and all(p["behind_total"] == 0 for p in fresh)
        and len({p["db_cid"] for p in fresh}) == 1
    )
    return {
        "target_vector": target,
        "target_changesets": sum(target.values()),
        "peers": peers,
        "divergent": divergent,
        "converged": converged,
        "reachable": len(fresh),
        "unreachable": [p["peer_id"] for p in peers if p["source"] == "gossip"],
    }


def _divergent(views: list[PeerView]) -> list[dict[str, Any]]:
    groups: dict[tuple[tuple[str, int], ...], list[PeerView]] = {}
    for view in views:
        groups.setdefault(tuple(sorted(view.vector.items())), []).append(view)
    out = []
    for vector, members in groups.items():
        cids = {v.db_cid for v in members}
        if len(cids) > 1:
            out.append(
                {
                    "version_vector": dict(vector),
                    "peers": {v.peer_id: v.db_cid for v in members},
                }
            )
    return out


async def gather_views(node: Node, timeout: float) -> list[PeerView]:
    """Our own state, a fresh answer from each connected peer, gossip for the rest."""
    mine = my_reply(node, 0)
    views = [PeerView(node.peer_id, "self", mine.db_cid, dict(mine.vector), 0.0)]
    connected = [p for p in node.connected_peers() if node.config.trusts(p)]
    answers: dict[str, PeerView] = {}

    async def ask(peer: str) -> None:
        try:
            with trio.fail_after(timeout):
                reply = await ask_status(node, peer, timeout)
        except StatusFailed as exc:
            answers[peer] = _from_gossip(node, peer, str(exc))
            return
        except trio.TooSlowError:
            answers[peer] = _from_gossip(node, peer, f"no answer within {timeout:g} s")
            return
        answers[peer] = PeerView(peer, "live", reply.db_cid, dict(reply.vector), 0.0)

    async with trio.open_nursery() as nursery:
        for peer in connected:
            nursery.start_soon(ask, peer)
    views += [answers[p] for p in sorted(answers)]
    views += [_from_gossip(node, p, None) for p in sorted(node.peers) if p not in answers]
    return views


def _from_gossip(node: Node, peer: str, error: str | None) -> PeerView:
    state = node.peers.get(peer)
    if state is None:
        return PeerView(peer, "gossip", None, {}, None, error or "never announced")
    age = round(time.time() - state.last_seen, 3)
    return PeerView(peer, "gossip", state.db_cid, dict(state.vector), age, error)


async def verify(node: Node, timeout: float) -> dict[str, Any]:
    """The convergence report of the cluster as seen from this peer."""
    report = compare(await gather_views(node, timeout))
    node.metrics.inc("verify_runs")
    if report["divergent"]:
        node.metrics.inc("verify_divergent")
    return report
