"""``peerctl health``: healthy, degraded or unhealthy, with the reasons.

- unhealthy: a ``critical`` alert is firing, or two peers announce the same version
  vector with different database CIDs (divergence);
- degraded: a ``warning`` alert is firing, peers are known but none is connected, or
  the monitor's sampler has stalled (no sample for three intervals);
- healthy otherwise. ``info`` alerts are listed but change nothing.
"""

from __future__ import annotations

import time
from typing import Any

from daemon.net.gossip import current_announce
from daemon.node import Node

RANK = {"healthy": 0, "degraded": 1, "unhealthy": 2}


def assess(node: Node, now: float | None = None) -> dict[str, Any]:
    """The health verdict and its reasons, worst first."""
    now = time.time() if now is None else now
    reasons: list[tuple[str, str]] = []
    monitor = getattr(node, "monitor", None)
    if monitor is not None:
        for state in monitor.alerts.firing():
            level = {"critical": "unhealthy", "warning": "degraded"}.get(state.rule.severity)
            if level:
                tags = f" {dict(state.tags)}" if state.tags else ""
                reasons.append((level, f"{state.rule.severity} alert: {state.rule.title}"
                                       f"{tags} (value {state.value:g})"))  # fmt: skip
        if monitor.config.enabled and _stalled(monitor, now):
            reasons.append(("degraded", "monitor has not sampled for 3 intervals"))
    reasons += [("unhealthy", r) for r in _divergence(node)]
    connected = node.connected_peers()
    if node.peers and not connected:
        reasons.append(("degraded", f"no peers connected ({len(node.peers)} known)"))
    reasons.sort(key=lambda r: -RANK[r[0]])
    status = reasons[0][0] if reasons else "healthy"
    return {
        "status": status,
        "reasons": [text for _, text in reasons],
        "peers_connected": len(connected),
        "peers_known": len(node.peers),
        "monitor": bool(monitor and monitor.config.enabled),
    }


def _stalled(monitor: Any, now: float) -> bool:
    last = monitor.last_sample
    return last is not None and now - last > 3 * monitor.config.sample_interval + 1.0


def _divergence(node: Node) -> list[str]:
    """Peers (us included) that announce the same vector with different CIDs."""
    mine = current_announce(node)
    states = [(node.peer_id, mine.db_cid, dict(mine.vector))]
    states += [(p, s.db_cid, s.vector) for p, s in node.peers.items() if s.db_cid]
    by_vector: dict[tuple[tuple[str, int], ...], dict[str, str]] = {}
    for peer, cid, vector in states:
        by_vector.setdefault(tuple(sorted(vector.items())), {})[peer] = cid
    out = []
    for members in by_vector.values():
        if len(set(members.values())) > 1:
            out.append(f"divergence: peers {sorted(members)} hold the same changesets "
                       f"but different CIDs")  # fmt: skip
    return out
