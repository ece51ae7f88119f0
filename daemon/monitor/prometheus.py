"""Prometheus exposition on ``[metrics] prometheus_listen``: a tiny trio HTTP server.

``GET /metrics`` answers ``generate_latest`` of a registry whose one collector reads the
daemon's counters and the newest point of every series at scrape time; nothing is kept
twice. Names get the ``duckpeer_`` prefix; counters end in ``_total``. The endpoint
has no authentication, so a non-loopback address needs ``prometheus_allow_remote``.
"""

from __future__ import annotations

import re
import time
from collections import defaultdict
from collections.abc import Iterator
from typing import Any

import structlog
import trio
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from daemon.metrics.timeseries import percentile
from daemon.node import Node

log = structlog.get_logger("prometheus")

PREFIX = "duckpeer_"
MAX_REQUEST = 8192
REQUEST_TIMEOUT = 5.0
OBSERVED = ("query_ms",)  # series of raw observations: also exported as quantiles
QUANTILE_WINDOW = 300.0
_BAD = re.compile(r"[^a-zA-Z0-9_]")


def metric_name(name: str) -> str:
    """``duckpeer_`` + the name with anything Prometheus refuses replaced by ``_``."""
    return PREFIX + _BAD.sub("_", name)


def label_name(name: str) -> str:
    """A valid label name (letters, digits, underscores; not starting with a digit)."""
    clean = _BAD.sub("_", name)
    return f"_{clean}" if clean[:1].isdigit() or clean.startswith("__") else clean


class DaemonCollector:
    """Reads ``node.metrics`` when Prometheus scrapes."""

    def __init__(self, node: Node) -> None:
        self.node = node

    def collect(self) -> Iterator[Metric]:
        """Counters, then one gauge family per series name, then query-time quantiles."""
        counters = dict(self.node.metrics.counters)
        for name, value in sorted(counters.items()):
            yield CounterMetricFamily(metric_name(name), f"duckpeer counter {name}", value=value)
        yield from self._gauges(set(counters))
        yield from self._quantiles()

    def _gauges(self, counter_names: set[str]) -> Iterator[Metric]:
        groups: dict[str, list[tuple[dict[str, str], float]]] = defaultdict(list)
        for (name, tags), ring in list(self.node.metrics.series.series.items()):
            point = ring.latest()
            if point is not None and name not in counter_names:
                groups[name].append(({label_name(k): v for k, v in tags}, point[1]))
        for name, rows in sorted(groups.items()):
            labels = sorted({k for tags, _ in rows for k in tags})
            family = GaugeMetricFamily(metric_name(name), f"duckpeer {name}", labels=labels)
            for tags, value in rows:
                family.add_metric([tags.get(k, "") for k in labels], value)
            yield family

    def _quantiles(self) -> Iterator[Metric]:
        since = time.time() - QUANTILE_WINDOW
        for name in OBSERVED:
            ring = self.node.metrics.series.series.get((name, ()))
            values = sorted(v for _, v in ring.points(since)) if ring else []
            if not values:
                continue
            family = GaugeMetricFamily(
                metric_name(f"{name}_window"),
                f"{name} quantiles over the last {QUANTILE_WINDOW:g} s",
                labels=["quantile"],
            )
            for q in (0.5, 0.95, 0.99):
                family.add_metric([str(q)], percentile(values, q * 100))
            yield family


def make_registry(node: Node) -> CollectorRegistry:
    """A registry holding only the daemon's collector."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(DaemonCollector(node))  # type: ignore[arg-type]
    return registry


async def serve_prometheus(
    node: Node,
    host: str,
    port: int,
    *,
    task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Listen on ``host:port`` and answer scrapes until cancelled."""
    registry = make_registry(node)
    listeners = await trio.open_tcp_listeners(port, host=host)
    bound = [ln.socket.getsockname() for ln in listeners]  # type: ignore[attr-defined]
    log.info("prometheus endpoint", listen=[f"{a[0]}:{a[1]}" for a in bound])
    task_status.started(bound)

    async def handle(stream: trio.SocketStream) -> None:
        await _handle(node, registry, stream)

    await trio.serve_listeners(handle, listeners)


async def _handle(node: Node, registry: CollectorRegistry, stream: trio.SocketStream) -> None:
    try:
        with trio.fail_after(REQUEST_TIMEOUT):
            head = await _read_head(stream)
            status, ctype, body = _respond(node, registry, head)
            await stream.send_all(_http(status, ctype, body))
    except (trio.TooSlowError, trio.BrokenResourceError, trio.ClosedResourceError, ValueError):
        node.metrics.inc("prometheus_bad_requests")
    finally:
        await stream.aclose()


async def _read_head(stream: trio.SocketStream) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data and b"\n\n" not in data:
        chunk = await stream.receive_some(4096)
        if not chunk:
            break
        data += chunk
        if len(data) > MAX_REQUEST:
            raise ValueError("request head too large")
    return data


def _respond(node: Node, registry: CollectorRegistry, head: bytes) -> tuple[str, str, bytes]:
    parts = head.split(b"\r\n", 1)[0].split()
    if len(parts) != 3 or not parts[2].startswith(b"HTTP/"):
        node.metrics.inc("prometheus_bad_requests")
        return "400 Bad Request", "text/plain", b"bad request\n"
    method, path = parts[0], parts[1].split(b"?", 1)[0]
    if method not in (b"GET", b"HEAD"):
        return "405 Method Not Allowed", "text/plain", b"GET only\n"
    if path != b"/metrics":
        return "404 Not Found", "text/plain", b"see /metrics\n"
    started = time.thread_time()
    body = generate_latest(registry)
    monitor = getattr(node, "monitor", None)
    if monitor is not None:
        monitor.cpu_seconds += time.thread_time() - started
    node.metrics.inc("prometheus_scrapes")
    return "200 OK", CONTENT_TYPE_LATEST, body if method == b"GET" else b""


def _http(status: str, ctype: str, body: bytes) -> bytes:
    head = (
        f"HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {len(body)}\r\n"
        "Connection: close\r\n\r\n"
    )
    return head.encode() + body
