"""The [cache] section of the daemon config: mapping, environment, validation."""

from __future__ import annotations

from pathlib import Path

import pytest

from daemon.config import ConfigError, load_config


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "duckpeer.toml"
    path.write_text(text)
    return path


def test_cache_section_maps_to_cache_fields(tmp_path: Path) -> None:
    path = write(tmp_path, "cluster = 'lab'\n[cache]\nmax_bytes = 1000\nshare = false\n"
                           "aggressive_ms = 10\n")  # fmt: skip
    config = load_config(path, {}, {})
    assert (config.cache_max_bytes, config.cache_share, config.cache_aggressive_ms) == (
        1000, False, 10.0,
    )  # fmt: skip
    assert config.cache_enabled and config.cluster == "lab"


def test_environment_overrides_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, "[cache]\nmax_bytes = 1000\n")
    assert load_config(path, {"DUCKPEER_CACHE_MAX_BYTES": "5"}, {}).cache_max_bytes == 5
    assert not load_config(None, {"DUCKPEER_CACHE_ENABLED": "off"}, {}).cache_enabled


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[cache]\nmax_bytes = -1\n", "cache_max_bytes: must be >= 0"),
        ("[cache]\nmax_bytez = 1\n", "unknown keys in [cache]: ['cache_max_bytez']"),
        ("[cache]\nhot_requests = 0\n", "cache_hot_requests: must be >= 1"),
        ("[cache]\ncheap_ms = 100\naggressive_ms = 10\n", "cache_aggressive_ms: must be >="),
        ("[cache]\nshare_timeout = 0\n", "cache_share_timeout: must be > 0"),
        ("[cache]\nshare_max_bytes = 1000000000\n", "cache_share_max_bytes: at most"),
        ("[cache]\nenabled = 'maybe'\n", "cache_enabled"),
        ("cache = 3\n", "[cache] must be a table"),
    ],
)
def test_bad_cache_settings_are_clear_errors(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        load_config(write(tmp_path, text), {}, {})
