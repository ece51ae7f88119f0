"""Config fields of distributed queries: defaults, environment, range checks."""

from __future__ import annotations

import pytest

from daemon.config import ConfigError, load_config


def test_defaults_and_environment() -> None:
    config = load_config(None, {}, {})
    assert config.distq_deadline == 30.0 and config.distq_fragment_delay == 0.0
    env = {"DUCKPEER_DISTQ_DEADLINE": "2.5", "DUCKPEER_DISTQ_MAX_PARTIAL_BYTES": "4096"}
    config = load_config(None, env, {})
    assert config.distq_deadline == 2.5 and config.distq_max_partial_bytes == 4096


@pytest.mark.parametrize(
    "env",
    [
        {"DUCKPEER_DISTQ_DEADLINE": "0"},
        {"DUCKPEER_DISTQ_DEADLINE": "soon"},
        {"DUCKPEER_DISTQ_MAX_PARTIAL_BYTES": "10"},
        {"DUCKPEER_DISTQ_FRAGMENT_DELAY": "-1"},
    ],
)
def test_bad_values_are_config_errors(env: dict[str, str]) -> None:
    with pytest.raises(ConfigError, match="distq"):
        load_config(None, env, {})
