"""The performance monitor: samples the daemon's own figures into time series, checks
alert rules, and serves Prometheus when configured.

Every ``[metrics] sample_interval`` seconds the sampler turns counters into rates
(``*_per_s``), reads gauges (peers, lag per peer from gossiped version vectors,
conflicts, DuckDB size, CPU) and appends one point per series. Counter increments on
the hot paths stay plain ``Counter`` additions; this service does all the arithmetic,
once per interval, and measures its own CPU time (``monitor_cpu_seconds``).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import duckdb
import structlog
import trio

from daemon.metrics.config import MonitorConfig, split_host_port
from daemon.metrics.timeseries import Tags, make_key, summarize, trend
from daemon.monitor.alerts import AlertBook
from daemon.monitor.history import HistoryFile, collect
from daemon.node import Node
from protocol import vv

log = structlog.get_logger("monitor")

MALFORMED = ("gossip_malformed", "gossip_unexpected", "gossip_spoofed", "control_malformed")
RATES: dict[str, tuple[str, ...]] = {
    "changesets_applied_per_s": ("changesets_applied",),
    "changesets_committed_per_s": ("changesets_committed",),
    "rows_written_per_s": ("rows_written",),
    "sync_bytes_per_s": ("sync_bytes_in", "sync_bytes_out"),
    "control_requests_per_s": ("control_requests",),
    "queries_per_s": ("queries",),
    "malformed_messages_per_s": MALFORMED,
}
# Which way is better, per built-in metric; custom ones come from the config.
BETTER: dict[str, str] = {
    "query_ms": "lower",
    "cache_hit_rate": "higher",
    "changesets_applied_per_s": "higher",
    "changesets_committed_per_s": "higher",
    "rows_written_per_s": "higher",
    "sync_bytes_per_s": "higher",
    "queries_per_s": "higher",
    "replication_lag_changesets": "lower",
    "replication_behind_changesets": "lower",
    "peers_connected": "higher",
    "conflicts_open": "lower",
    "malformed_messages": "lower",
    "malformed_messages_per_s": "lower",
    "cpu_percent": "lower",
    "monitor_cpu_seconds": "lower",
}


class Monitor:
    """Sampler state and alert book of one node (``node.monitor``)."""

    def __init__(self, node: Node) -> None:
        self.node = node
        self.alerts = AlertBook()
        self.cpu_seconds = 0.0
        self.last_sample: float | None = None
        self._last_counters: dict[str, int] = {}
        self._last_t: float | None = None
        self._last_cpu = time.process_time()

    @property
    def config(self) -> MonitorConfig:
        """The current ``[metrics]`` settings (reloaded on SIGHUP)."""
        return self.node.config.monitor

    def better(self, name: str) -> str | None:
        """``"higher"``, ``"lower"`` or None for a metric name."""
        if name in self.config.higher_is_better:
            return "higher"
        if name in self.config.lower_is_better:
            return "lower"
        return BETTER.get(name)

    def sample(self, now: float, conflicts: int = 0) -> list[dict[str, object]]:
        """Take one round of samples at wall time ``now``; return alert events."""
        started = time.thread_time()
        add = self.node.metrics.series.add
        for key, value in self._figures(now, conflicts):
            add(key, now, value)
        events = self.alerts.evaluate(self.config.alerts, self.node.metrics.series, now)
        for event in events:
            self._log_event(event)
        self.last_sample = now
        self.cpu_seconds += time.thread_time() - started
        add(make_key("monitor_cpu_seconds"), now, self.cpu_seconds)
        return events

    def _figures(self, now: float, conflicts: int) -> list[tuple[Any, float]]:
        node = self.node
        counters = node.metrics.counters
        out: list[tuple[Any, float]] = []
        dt = now - self._last_t if self._last_t is not None else 0.0
        if dt > 0:
            for name, sources in RATES.items():
                delta = sum(counters[s] - self._last_counters.get(s, 0) for s in sources)
                out.append((make_key(name), delta / dt))
            out.extend(self._cache_rate(counters))
            cpu = time.process_time()
            out.append((make_key("cpu_percent"), (cpu - self._last_cpu) / dt * 100.0))
            self._last_cpu = cpu
        self._last_t = now
        self._last_counters = dict(counters)
        out.extend(self._lag())
        out.append((make_key("peers_connected"), float(len(node.connected_peers()))))
        out.append((make_key("peers_known"), float(len(node.peers))))
        out.append((make_key("conflicts_open"), float(conflicts)))
        out.append((make_key("malformed_messages"), float(sum(counters[m] for m in MALFORMED))))
        out.append((make_key("duckdb_size_bytes"), float(node.store.size_bytes())))
        out.append((make_key("changesets_total"), float(sum(node.store.vector().values()))))
        return out

    def _cache_rate(self, counters: Mapping[str, int]) -> list[tuple[Any, float]]:
        """Hit rate of the result cache over the last interval, if it has counters."""
        if "cache_hits" not in counters and "cache_misses" not in counters:
            return []
        hits = counters["cache_hits"] - self._last_counters.get("cache_hits", 0)
        misses = counters["cache_misses"] - self._last_counters.get("cache_misses", 0)
        if hits + misses <= 0:
            return []
        return [(make_key("cache_hit_rate"), hits / (hits + misses))]

    def _lag(self) -> list[tuple[Any, float]]:
        """Per peer: changesets we hold that it lacks (by its last announce); overall:
        the largest of those, and what we lack against everything announced."""
        mine = self.node.store.vector()
        out: list[tuple[Any, float]] = []
        worst = 0
        for peer_id, state in self.node.peers.items():
            lag = vv.missing_count(state.vector, mine)
            worst = max(worst, lag)
            out.append((make_key("replication_lag_changesets", {"peer": peer_id}), float(lag)))
        out.append((make_key("replication_lag_changesets"), float(worst)))
        union = vv.merge(s.vector for s in self.node.peers.values())
        out.append(
            (make_key("replication_behind_changesets"), float(vv.missing_count(mine, union)))
        )
        return out

    def _log_event(self, event: dict[str, object]) -> None:
        self.node.metrics.inc(f"alerts_{event['event']}")
        fields = {k: event[k] for k in ("name", "severity", "value", "tags")}
        if event["event"] == "fired":
            log.warning("alert fired", **fields)
        else:
            log.info("alert cleared", **fields)

    # -- reading -----------------------------------------------------------------------------

    def summaries(self, name: str | None, window: float, now: float) -> list[dict[str, Any]]:
        """Summary and trend of every series (or those called ``name``) over ``window``."""
        store = self.node.metrics.series
        out = []
        for (series, tags), ring in sorted(store.series.items()):
            if name is not None and series != name:
                continue
            points = ring.points(now - window)
            summary = summarize(points)
            out.append(
                {
                    "name": series,
                    "tags": dict(tags),
                    "better": self.better(series),
                    "summary": summary.as_dict() if summary else None,
                    "trend": trend(points, self.better(series)).as_dict(),
                }
            )
        return out

    def history(self, names: list[str], window: float, now: float) -> list[dict[str, Any]]:
        """Raw points of the named series over ``window`` (for charts)."""
        out = []
        for (series, tags), ring in sorted(self.node.metrics.series.series.items()):
            if series in names:
                pts = ring.points(now - window)
                out.append({"name": series, "tags": dict(tags), "points": pts})
        return out

    def latest(self, name: str, tags: Tags = ()) -> float | None:
        """The newest value of one series."""
        ring = self.node.metrics.series.series.get((name, tags))
        point = ring.latest() if ring else None
        return point[1] if point else None


class ConflictCounter:
    """Keys with open conflicts (several heads kept under the ``manual`` strategy),
    counted again only when the database CID has changed: the count is a function of the
    changesets the CID covers, so an idle sampler reads nothing."""

    def __init__(self) -> None:
        self._cid: str | None = None
        self._count = 0

    async def __call__(self, node: Node) -> int:
        cid = node.store.db_cid()
        if cid == self._cid:
            return self._count
        try:
            self._count = await node.read(lambda store: store.open_conflict_count())
        except duckdb.Error as exc:
            node.metrics.inc("monitor_errors")
            log.warning("cannot count open conflicts", error=str(exc))
            return self._count
        self._cid = cid
        return self._count


async def serve(
    node: Node, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
) -> None:
    """Sample every interval and evaluate alerts; serve Prometheus if configured; keep
    the history in its own file if ``persist``.

    With ``[metrics] enabled = false`` nothing is sampled, observed or served.
    """
    monitor = Monitor(node)
    node.monitor = monitor
    config = node.config.monitor
    node.metrics.observing = config.enabled
    node.metrics.series.capacity = config.capacity
    if not config.enabled:
        log.info("monitor disabled")
        task_status.started()
        return
    history = await _open_history(node) if config.persist else None
    try:
        async with trio.open_nursery() as nursery:
            if config.prometheus_listen:
                from daemon.monitor.prometheus import serve_prometheus

                host, port = split_host_port(config.prometheus_listen)
                await nursery.start(serve_prometheus, node, host, port)
            task_status.started()
            await _sample_forever(monitor, history)
    finally:
        if history is not None:
            with trio.CancelScope(shield=True):
                await _flush(node, history)
                await trio.to_thread.run_sync(history.file.close)


async def _sample_forever(monitor: Monitor, history: _History | None) -> None:
    node = monitor.node
    conflicts = ConflictCounter()
    while True:
        monitor.sample(time.time(), await conflicts(node))
        if history is not None and time.time() - history.flushed >= monitor.config.persist_interval:
            await _flush(node, history)
        await trio.sleep(monitor.config.sample_interval)


class _History:
    """The history file and how far it has been written."""

    def __init__(self, file: HistoryFile, flushed: float) -> None:
        self.file = file
        self.flushed = flushed


async def _open_history(node: Node) -> _History | None:
    """Open the history file and reload it; without it (unreadable, locked) the monitor
    runs from memory only."""
    path = node.config.data_dir / "metrics.duckdb"
    now = time.time()
    since = now - node.config.monitor.retention
    try:
        file = await trio.to_thread.run_sync(HistoryFile, path)
        loaded = await trio.to_thread.run_sync(file.load, node.metrics.series, since)
    except (duckdb.Error, ValueError) as exc:
        node.metrics.inc("metrics_persist_errors")
        log.error("metrics history unavailable; keeping it in memory only", error=str(exc))
        return None
    log.info("metrics history loaded", points=loaded, path=str(path))
    return _History(file, now)


async def _flush(node: Node, history: _History) -> None:
    """Write the points since the last flush (collected here, written in a thread)."""
    now = time.time()
    rows = collect(node.metrics.series, history.flushed, now)
    before = now - node.config.monitor.retention

    def write() -> None:
        history.file.write(rows)
        history.file.prune(before)

    try:
        await trio.to_thread.run_sync(write)
    except duckdb.Error as exc:
        node.metrics.inc("metrics_persist_errors")
        log.error("metrics history not written", error=str(exc))
        return
    history.flushed = now
