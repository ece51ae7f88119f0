"""The [metrics] section and [[alerts]] rules: parsed, validated with clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from daemon.config import ConfigError, load_config
from daemon.metrics.config import AlertRule, MonitorConfig, parse_duration


def load(tmp_path: Path, text: str) -> MonitorConfig:
    path = tmp_path / "duckpeer.toml"
    path.write_text(text)
    return load_config(path, {}, {}).monitor


def test_defaults_monitor_on_prometheus_off(tmp_path: Path) -> None:
    config = load_config(None, {}, {}).monitor
    assert config == MonitorConfig()
    assert config.enabled and config.prometheus_listen is None and config.alerts == ()


def test_full_section_and_rules(tmp_path: Path) -> None:
    config = load(
        tmp_path,
        """
cluster = "lab"
[metrics]
enabled = true
sample_interval = "2s"
retention = "1h"
prometheus_listen = "127.0.0.1:9464"
higher_is_better = ["images_per_s"]
persist = true
persist_interval = "2m"

[[alerts]]
metric = "replication_lag_changesets"
above = 100
severity = "warning"
for = "30s"

[[alerts]]
name = "slow queries"
metric = "query_ms"
above = 250.5
stat = "p95"
window = "5m"
severity = "critical"
""",
    )
    assert config.sample_interval == 2.0 and config.retention == 3600.0
    assert config.capacity == 1800
    assert config.prometheus_listen == "127.0.0.1:9464"
    assert config.higher_is_better == ("images_per_s",)
    assert config.persist and config.persist_interval == 120.0
    lag, slow = config.alerts
    assert lag == AlertRule("replication_lag_changesets", 100.0, True, "warning", 30.0)
    assert slow.title == "slow queries" and slow.stat == "p95" and slow.window == 300.0
    assert lag.title == "replication_lag_changesets > 100"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[metrics]\nfoo = 1", "unknown keys ['foo']"),
        ("[metrics]\nenabled = 'yes'", "metrics.enabled: expected true or false"),
        ("[metrics]\npersist = 1", "metrics.persist: expected true or false"),
        ("[metrics]\nsample_interval = '0.001s'", "at least 50ms"),
        ("[metrics]\nsample_interval = 'soon'", "expected a duration"),
        ("[metrics]\nprometheus_listen = 'nohost'", "expected HOST:PORT"),
        ("[metrics]\nprometheus_listen = '0.0.0.0:9464'", "not a loopback address"),
        ("[metrics]\nprometheus_listen = 'example.org:9464'", "not a loopback address"),
        ("[[alerts]]\nabove = 1", "'metric' is required"),
        ("[[alerts]]\nmetric = 'x'", "exactly one of 'above' or 'below'"),
        ("[[alerts]]\nmetric = 'x'\nabove = 1\nbelow = 2", "exactly one of"),
        ("[[alerts]]\nmetric = 'x'\nabove = 'high'", "threshold must be a number"),
        ("[[alerts]]\nmetric = 'x'\nabove = 1\nseverity = 'panic'", "severity must be one of"),
        ("[[alerts]]\nmetric = 'x'\nabove = 1\nstat = 'median'", "stat must be one of"),
        ("[[alerts]]\nmetric = 'x'\nabove = 1\nfor = '-5s'", "alerts[0].for"),
        ("[[alerts]]\nmetric = 'x y'\nabove = 1", "bad metric name"),
        ("[[alerts]]\nmetric = 'x'\nabove = 1\ncolour = 'red'", "unknown keys ['colour']"),
        ("alerts = 5", "array of tables"),
        ("metrics = 5", "[metrics] must be a table"),
    ],
)
def test_bad_settings_are_clear_config_errors(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=r"duckpeer\.toml") as info:
        load(tmp_path, text)
    assert message in str(info.value)


def test_remote_prometheus_needs_explicit_permission(tmp_path: Path) -> None:
    config = load(
        tmp_path,
        "[metrics]\nprometheus_listen = '0.0.0.0:9464'\nprometheus_allow_remote = true\n",
    )
    assert config.prometheus_listen == "0.0.0.0:9464"
    assert load(tmp_path, "[metrics]\nprometheus_listen = '[::1]:9464'").prometheus_listen
    assert load(tmp_path, "[metrics]\nprometheus_listen = 'localhost:1'").prometheus_listen


def test_env_cannot_set_the_section(tmp_path: Path) -> None:
    config = load_config(None, {"DUCKPEER_MONITOR": "x"}, {})
    assert config.monitor == MonitorConfig()


@pytest.mark.parametrize(
    ("value", "seconds"), [(5, 5.0), (0.5, 0.5), ("250ms", 0.25), ("30s", 30.0), ("5m", 300.0),
                           ("1h", 3600.0), ("2d", 172800.0), ("10", 10.0)],
)  # fmt: skip
def test_durations(value: object, seconds: float) -> None:
    assert parse_duration(value, "x") == seconds
