"""The network keys of issue 15 in the daemon config: defaults, environment, checks."""

from __future__ import annotations

import pytest

from daemon.config import ConfigError, load_config


def test_defaults_and_environment() -> None:
    config = load_config(None, {}, {})
    assert (config.connections_target, config.connections_max) == (8, 12)
    assert (config.announce_cluster_rate, config.member_timeout) == (0.1, 60.0)
    env = {"DUCKPEER_CONNECTIONS_TARGET": "4", "DUCKPEER_MEMBER_TIMEOUT": "5"}
    config = load_config(None, env, {})
    assert (config.connections_target, config.member_timeout) == (4, 5.0)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"DUCKPEER_CONNECTIONS_TARGET": "0"}, "connections_target: must be >= 1"),
        ({"DUCKPEER_CONNECTIONS_TARGET": "20"}, "connections_max: must be >= connections_target"),
        ({"DUCKPEER_ANNOUNCE_CLUSTER_RATE": "0"}, "announce_cluster_rate: must be > 0"),
        ({"DUCKPEER_MEMBER_TIMEOUT": "nan"}, "member_timeout"),
        ({"DUCKPEER_GOSSIP_BAN_SECONDS": "-1"}, "gossip_ban_seconds: must be > 0"),
        ({"DUCKPEER_CONNECTIONS_PER_IP_PER_SECOND": "-1"}, "connections_per_ip_per_second"),
    ],
)
def test_bad_values_are_clear_errors(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(None, env, {})
