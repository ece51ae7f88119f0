"""Control methods of the performance monitor (``peerctl metrics/alerts/health/top/
verify/report``)."""

from __future__ import annotations

import math
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any

from daemon.metrics.config import check_metric_name, parse_duration
from daemon.monitor import health as health_mod
from daemon.monitor.service import RATES, Monitor
from daemon.monitor.verify import verify as verify_cluster
from daemon.node import Node
from protocol import vv
from protocol.control import ControlError, param

MAX_WINDOW = 30 * 86400.0
MAX_TAGS = 8
_TAG_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")


def _monitor(node: Node) -> Monitor:
    monitor = getattr(node, "monitor", None)
    if monitor is None:
        raise ControlError("unavailable", "the monitor service is not running")
    return monitor  # type: ignore[no-any-return]


def _window(params: dict[str, Any], default: float = 3600.0) -> float:
    raw = params.get("window")
    if raw is None:
        return default
    try:
        seconds = parse_duration(raw, "window")
    except ValueError as exc:
        raise ControlError("bad_request", str(exc)) from exc
    if not 0 < seconds <= MAX_WINDOW:
        raise ControlError("bad_request", f"window must be within (0, {MAX_WINDOW:g}] s")
    return seconds


async def metrics(node: Node, params: dict[str, Any]) -> dict[str, Any]:
    """Summaries and trends of every series (or one name) over a window, plus counters."""
    name = param(params, "name", str, required=False)
    window = _window(params)
    monitor = _monitor(node)
    series = monitor.summaries(name, window, time.time())
    if name is not None and not series and name not in node.metrics.counters:
        raise ControlError("not_found", f"no metric called {name!r}")
    return {
        "window_s": window,
        "enabled": monitor.config.enabled,
        "sample_interval_s": monitor.config.sample_interval,
        "series": series,
        "counters": _counters(node, name),
    }


def _counters(node: Node, name: str | None) -> dict[str, int]:
    if name is None:
        return node.metrics.snapshot()
    return {name: node.metrics.get(name)} if name in node.metrics.counters else {}


def _tags(raw: Any) -> dict[str, str]:
    if raw is None:
        return {}
    if not isinstance(raw, dict) or len(raw) > MAX_TAGS:
        raise ControlError("bad_request", f"tags must be a map of at most {MAX_TAGS} entries")
    for key, value in raw.items():
        if not isinstance(key, str) or not _TAG_KEY.match(key):
            raise ControlError("bad_request", f"bad tag name {key!r} (letters, digits, _)")
        if not isinstance(value, str) or len(value) > 200:
            raise ControlError("bad_request", f"tag {key!r}: value must be a string <= 200 chars")
    return raw


async def record_metric(node: Node, params: dict[str, Any]) -> dict[str, Any]:
    """Store one value of a custom metric (``peerctl metrics record NAME VALUE``)."""
    try:
        name = check_metric_name(params.get("name"), "name")
    except ValueError as exc:
        node.metrics.inc("metrics_rejected")
        raise ControlError("bad_request", str(exc)) from exc
    value = params.get("value")
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        node.metrics.inc("metrics_rejected")
        raise ControlError("bad_request", "value must be a finite number")
    try:
        tags = _tags(params.get("tags"))
    except ControlError:
        node.metrics.inc("metrics_rejected")
        raise
    _monitor(node)
    if not node.metrics.observing:
        raise ControlError("unavailable", "metrics are disabled ([metrics] enabled = false)")
    if not node.metrics.observe(name, float(value), tags):
        node.metrics.inc("metrics_rejected")
        raise ControlError("unavailable", "too many series; value not stored")
    node.metrics.inc("metrics_recorded")
    return {"name": name, "value": float(value), "tags": tags}


async def history(node: Node, params: dict[str, Any]) -> dict[str, Any]:
    """Raw points of the named series over a window (for reports)."""
    names = param(params, "names", list)
    if not all(isinstance(n, str) for n in names):
        raise ControlError("bad_request", "names must be a list of strings")
    window = _window(params)
    return {"window_s": window, "series": _monitor(node).history(names, window, time.time())}


async def alerts(node: Node, params: dict[str, Any]) -> dict[str, Any]:
    """Firing and pending alerts, the configured rules and recent fire/clear events."""
    monitor = _monitor(node)
    active = [s.as_dict() for s in monitor.alerts.active()]
    return {
        "firing": [a for a in active if a["state"] == "firing"],
        "pending": [a for a in active if a["state"] == "pending"],
        "rules": [
            {
                "name": r.title,
                "metric": r.metric,
                "op": "above" if r.above else "below",
                "threshold": r.threshold,
                "severity": r.severity,
                "for_s": r.for_seconds,
                "stat": r.stat,
                "window_s": r.window,
            }
            for r in monitor.config.alerts
        ],
        "events": list(monitor.alerts.events)[-50:],
    }


async def health(node: Node, params: dict[str, Any]) -> dict[str, Any]:
    """healthy / degraded / unhealthy, with reasons."""
    return health_mod.assess(node)


async def snapshot(node: Node, params: dict[str, Any]) -> dict[str, Any]:
    """Everything ``peerctl top`` draws in one frame."""
    monitor = getattr(node, "monitor", None)
    mine = node.store.vector()
    connected = set(node.connected_peers())
    now = time.time()
    peers = []
    for peer_id in sorted(connected | set(node.peers)):
        state = node.peers.get(peer_id)
        peers.append(
            {
                "peer_id": peer_id,
                "connected": peer_id in connected,
                "db_cid": state.db_cid if state else None,
                "lag": vv.missing_count(state.vector, mine) if state else None,
                "ahead": vv.missing_count(mine, state.vector) if state else None,
                "load": state.load if state else None,
                "age_s": round(now - state.last_seen, 1) if state else None,
            }
        )
    names = [*RATES, "query_ms", "cache_hit_rate", "cpu_percent", "duckdb_size_bytes",
             "conflicts_open", "replication_behind_changesets"]  # fmt: skip
    figures = {n: monitor.latest(n) for n in names} if monitor else {}
    return {
        "peer_id": node.peer_id,
        "db_cid": node.store.db_cid(),
        "changesets": sum(mine.values()),
        "load": node.load(),
        "uptime_s": round(now - node.started_at, 1),
        "peers": peers,
        "figures": figures,
        "alerts": [s.as_dict() for s in monitor.alerts.firing()] if monitor else [],
        "health": health_mod.assess(node, now),
    }


async def verify(node: Node, params: dict[str, Any]) -> dict[str, Any]:
    """Ask every reachable peer for its CID and vector; who is behind, who diverges."""
    timeout = params.get("timeout", 5.0)
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not 0 < timeout <= 60:
        raise ControlError("bad_request", "timeout must be a number of seconds in (0, 60]")
    return await verify_cluster(node, float(timeout))


METHODS: dict[str, Callable[[Node, dict[str, Any]], Awaitable[Any]]] = {
    "metrics": metrics,
    "metrics_record": record_metric,
    "metrics_history": history,
    "alerts": alerts,
    "health": health,
    "monitor_snapshot": snapshot,
    "verify": verify,
}
