"""The ``[metrics]`` section and ``[[alerts]]`` rules of the config file.

Parsing raises ``ValueError`` with a one-line message; ``daemon.config`` turns it into
a ``ConfigError`` naming the file.
"""

from __future__ import annotations

import ipaddress
import math
import re
from dataclasses import dataclass
from typing import Any

SEVERITIES = ("info", "warning", "critical")
STATS = ("latest", "avg", "min", "max", "p50", "p95", "p99")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.:-]{0,99}$")


def parse_duration(value: Any, what: str) -> float:
    """Seconds from a number or a string like ``250ms``, ``30s``, ``5m``, ``1h``, ``2d``."""
    if isinstance(value, bool):
        raise ValueError(f"{what}: expected a duration, got a boolean")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str) and (m := _DURATION.match(value)):
        seconds = float(m.group(1)) * _UNITS[m.group(2) or "s"]
    else:
        raise ValueError(f"{what}: expected a duration like 30s, 5m or 1h, got {value!r}")
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"{what}: expected a non-negative duration, got {value!r}")
    return seconds


def check_metric_name(name: Any, what: str) -> str:
    """A metric name: letters, digits, ``_ . : -``, starting with a letter or ``_``."""
    if not isinstance(name, str) or not _NAME.match(name):
        raise ValueError(f"{what}: bad metric name {name!r} (letters, digits, _ . : -)")
    return name


@dataclass(frozen=True)
class AlertRule:
    """Fire when ``stat`` of a metric over ``window`` is above/below ``threshold`` for
    at least ``for_seconds``; clear as soon as it is not."""

    metric: str
    threshold: float
    above: bool
    severity: str = "warning"
    for_seconds: float = 0.0
    stat: str = "latest"
    window: float = 60.0
    name: str = ""

    @property
    def title(self) -> str:
        """The rule's name, or a description of it."""
        op = ">" if self.above else "<"
        return self.name or f"{self.metric} {op} {self.threshold:g}"


@dataclass(frozen=True)
class MonitorConfig:
    """What the monitor samples, keeps, serves and alerts on."""

    enabled: bool = True
    sample_interval: float = 5.0
    retention: float = 6 * 3600.0
    prometheus_listen: str | None = None  # "127.0.0.1:9464"; None = off
    prometheus_allow_remote: bool = False
    higher_is_better: tuple[str, ...] = ()
    lower_is_better: tuple[str, ...] = ()
    alerts: tuple[AlertRule, ...] = ()
    persist: bool = False  # keep history in <data_dir>/metrics.duckdb across restarts
    persist_interval: float = 60.0

    @property
    def capacity(self) -> int:
        """Points kept per series."""
        return max(16, min(100_000, math.ceil(self.retention / self.sample_interval)))


_SECTION_KEYS = {
    "enabled",
    "sample_interval",
    "retention",
    "prometheus_listen",
    "prometheus_allow_remote",
    "higher_is_better",
    "lower_is_better",
    "persist",
    "persist_interval",
}
_ALERT_KEYS = {"metric", "above", "below", "severity", "for", "stat", "window", "name"}


def parse_monitor(section: Any, alerts: Any) -> MonitorConfig:
    """Build a MonitorConfig from the raw ``[metrics]`` table and ``[[alerts]]`` list."""
    section = {} if section is None else section
    if not isinstance(section, dict):
        raise ValueError("[metrics] must be a table")
    unknown = set(section) - _SECTION_KEYS
    if unknown:
        raise ValueError(f"[metrics]: unknown keys {sorted(unknown)}")
    config = MonitorConfig(
        enabled=_bool(section.get("enabled", True), "metrics.enabled"),
        sample_interval=_interval(section.get("sample_interval", 5.0)),
        retention=parse_duration(section.get("retention", 6 * 3600.0), "metrics.retention"),
        prometheus_listen=_listen(section.get("prometheus_listen")),
        prometheus_allow_remote=_bool(
            section.get("prometheus_allow_remote", False), "metrics.prometheus_allow_remote"
        ),
        higher_is_better=_names(section.get("higher_is_better", []), "higher_is_better"),
        lower_is_better=_names(section.get("lower_is_better", []), "lower_is_better"),
        alerts=_alerts(alerts),
        persist=_bool(section.get("persist", False), "metrics.persist"),
        persist_interval=parse_duration(
            section.get("persist_interval", 60.0), "metrics.persist_interval"
        ),
    )
    check_prometheus_address(config)
    return config


def _bool(value: Any, what: str) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{what}: expected true or false, got {value!r}")
    return value


def _interval(value: Any) -> float:
    seconds = parse_duration(value, "metrics.sample_interval")
    if seconds < 0.05:
        raise ValueError("metrics.sample_interval: must be at least 50ms")
    return seconds


def _names(value: Any, what: str) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise ValueError(f"metrics.{what}: expected a list of metric names")
    return tuple(check_metric_name(v, f"metrics.{what}") for v in value)


def split_host_port(address: str) -> tuple[str, int]:
    """``host:port`` (``[v6]:port`` for IPv6) into its parts; ValueError if malformed."""
    host, sep, port = address.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"expected HOST:PORT, got {address!r}")
    return host, int(port)


def _listen(value: Any) -> str | None:
    if value is None or value in ("", "off"):
        return None
    if not isinstance(value, str):
        raise ValueError(f"metrics.prometheus_listen: expected 'HOST:PORT', got {value!r}")
    try:
        split_host_port(value)
    except ValueError as exc:
        raise ValueError(f"metrics.prometheus_listen: {exc}") from None
    return value


def check_prometheus_address(config: MonitorConfig) -> None:
    """Refuse a non-loopback Prometheus address unless ``prometheus_allow_remote``."""
    if config.prometheus_listen is None or config.prometheus_allow_remote:
        return
    host, _ = split_host_port(config.prometheus_listen)
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise ValueError(
            f"metrics.prometheus_listen: {host} is not a loopback address; the metrics "
            "endpoint has no authentication (set prometheus_allow_remote = true to expose it)"
        )


def _alerts(raw: Any) -> tuple[AlertRule, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise ValueError("alerts must be an array of tables ([[alerts]])")
    return tuple(_alert(item, i) for i, item in enumerate(raw))


def _alert(item: Any, i: int) -> AlertRule:
    where = f"alerts[{i}]"
    if not isinstance(item, dict):
        raise ValueError(f"{where}: expected a table")
    unknown = set(item) - _ALERT_KEYS
    if unknown:
        raise ValueError(f"{where}: unknown keys {sorted(unknown)}")
    if "metric" not in item:
        raise ValueError(f"{where}: 'metric' is required")
    if ("above" in item) == ("below" in item):
        raise ValueError(f"{where}: give exactly one of 'above' or 'below'")
    threshold = item.get("above", item.get("below"))
    if isinstance(threshold, bool) or not isinstance(threshold, int | float):
        raise ValueError(f"{where}: threshold must be a number, got {threshold!r}")
    severity = item.get("severity", "warning")
    if severity not in SEVERITIES:
        raise ValueError(f"{where}: severity must be one of {', '.join(SEVERITIES)}")
    stat = item.get("stat", "latest")
    if stat not in STATS:
        raise ValueError(f"{where}: stat must be one of {', '.join(STATS)}")
    name = item.get("name", "")
    if not isinstance(name, str):
        raise ValueError(f"{where}: name must be a string")
    return AlertRule(
        metric=check_metric_name(item["metric"], f"{where}.metric"),
        threshold=float(threshold),
        above="above" in item,
        severity=severity,
        for_seconds=parse_duration(item.get("for", 0), f"{where}.for"),
        stat=stat,
        window=parse_duration(item.get("window", 60), f"{where}.window"),
        name=name,
    )
