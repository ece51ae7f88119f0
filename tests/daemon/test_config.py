"""daemon.config.load_config: defaults < TOML file < DUCKPEER_* environment < flags."""

from __future__ import annotations

from pathlib import Path

import pytest
from configkit import BAD_CONFIGS

from daemon.config import Config, ConfigError, default_data_dir, load_config
from protocol.conflicts import Strategy

PEER = "12D3KooWQYV9dGMFoRzNStwpXztXaBUjtPqi6aU76ZgUriHhKust"


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("STATE_DIRECTORY", "RUNTIME_DIRECTORY", "XDG_DATA_HOME"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "duckpeer.toml"
    path.write_text(text)
    return path


def test_defaults() -> None:
    config = load_config(None, {}, {})
    assert config == Config()
    assert config.cluster == "default"
    assert config.listen == ("/ip4/0.0.0.0/tcp/4001",)
    assert config.announce_interval == 3.0
    assert config.query_max_rows == 1_000_000
    assert config.mdns is False
    assert config.topic == "/duckpeer/default/v1"
    assert config.data_dir == Path.home() / ".local" / "share" / "duckpeer"
    assert config.db_path == config.data_dir / "duckpeer.duckdb"
    assert config.socket_path == config.data_dir / "control.sock"


def test_default_data_dir_follows_systemd_and_xdg(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", "/xdg")
    assert default_data_dir() == Path("/xdg/duckpeer")
    monkeypatch.setenv("STATE_DIRECTORY", "/var/lib/duckpeer:/var/lib/other")
    assert default_data_dir() == Path("/var/lib/duckpeer")


def test_precedence_defaults_file_env_flags(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        'cluster = "file"\nannounce_interval = 1.5\nquery_timeout = 7\n'
        'log_level = "debug"\nlisten = ["/ip4/127.0.0.1/tcp/1"]\n',
    )
    env = {"DUCKPEER_CLUSTER": "env", "DUCKPEER_QUERY_TIMEOUT": "8.5", "UNRELATED": "x"}
    flags = {"cluster": "flag", "listen": None, "bootstrap": [], "mdns": None}

    config = load_config(path, env, flags)
    assert config.cluster == "flag"  # flag > env > file
    assert config.query_timeout == 8.5  # env > file
    assert config.announce_interval == 1.5  # file > default
    assert config.log_level == "debug"
    assert config.listen == ("/ip4/127.0.0.1/tcp/1",)  # None/empty flags do not override
    assert config.bootstrap == ()
    assert config.mdns is False
    assert config.anti_entropy_interval == Config().anti_entropy_interval  # default

    assert load_config(path, env, {}).cluster == "env"
    assert load_config(path, {}, {}).cluster == "file"
    assert load_config(None, {}, {}).cluster == "default"


def test_config_file_from_env(tmp_path: Path) -> None:
    path = write(tmp_path, 'cluster = "via-env"\n')
    assert load_config(None, {"DUCKPEER_CONFIG": str(path)}, {}).cluster == "via-env"
    # An explicit path wins over DUCKPEER_CONFIG.
    other = tmp_path / "other.toml"
    other.write_text('cluster = "explicit"\n')
    assert load_config(other, {"DUCKPEER_CONFIG": str(path)}, {}).cluster == "explicit"


def test_env_values_are_converted(tmp_path: Path) -> None:
    env = {
        "DUCKPEER_LISTEN": "/ip4/127.0.0.1/tcp/1,/ip4/127.0.0.1/tcp/2,",
        "DUCKPEER_BOOTSTRAP": f"/ip4/10.0.0.1/tcp/4001/p2p/{PEER}",
        "DUCKPEER_MDNS": "true",
        "DUCKPEER_QUERY_MAX_ROWS": "500",
        "DUCKPEER_ANNOUNCE_INTERVAL": "0.25",
        "DUCKPEER_DATA_DIR": str(tmp_path / "data"),
        "DUCKPEER_CONTROL_SOCKET": str(tmp_path / "c.sock"),
        "DUCKPEER_MEMORY_LIMIT": "1GB",
    }
    config = load_config(None, env, {})
    assert config.listen == ("/ip4/127.0.0.1/tcp/1", "/ip4/127.0.0.1/tcp/2")
    assert config.bootstrap == (f"/ip4/10.0.0.1/tcp/4001/p2p/{PEER}",)
    assert config.mdns is True
    assert config.query_max_rows == 500
    assert config.announce_interval == 0.25
    assert config.data_dir == tmp_path / "data"
    assert config.socket_path == tmp_path / "c.sock"
    assert config.memory_limit == 1_000_000_000
    assert load_config(None, {"DUCKPEER_MDNS": "0"}, {}).mdns is False


def test_flags_paths_and_lists(tmp_path: Path) -> None:
    config = load_config(
        None,
        {},
        {"data_dir": tmp_path / "d", "listen": ["/ip4/127.0.0.1/tcp/0"], "mdns": True},
    )
    assert config.data_dir == tmp_path / "d"
    assert config.listen == ("/ip4/127.0.0.1/tcp/0",)
    assert config.mdns is True


def test_data_dir_expands_user(tmp_path: Path) -> None:
    path = write(tmp_path, 'data_dir = "~/dp"\n')
    assert load_config(path, {}, {}).data_dir == Path.home() / "dp"


def test_conflict_strategies_per_table(tmp_path: Path) -> None:
    path = write(tmp_path, '[conflicts]\nmodels = "merge"\nhardware_platforms = "manual"\n')
    config = load_config(path, {}, {})
    assert config.conflicts == (("hardware_platforms", "manual"), ("models", "merge"))
    strategies = config.strategies()
    assert strategies["models"] is Strategy.MERGE
    assert strategies["performance_results"] is Strategy.LATEST  # the default
    env = {"DUCKPEER_CONFLICTS": "models=manual"}
    assert load_config(path, env, {}).strategies()["models"] is Strategy.MANUAL


@pytest.mark.parametrize(
    "section",
    ['models = "newest"', 'nosuch = "merge"', "models = 3", 'conflicts = "models"'],
)
def test_bad_conflict_strategies_are_config_errors(tmp_path: Path, section: str) -> None:
    text = section if section.startswith("conflicts") else f"[conflicts]\n{section}\n"
    with pytest.raises(ConfigError, match="conflicts"):
        load_config(write(tmp_path, text), {}, {})


def test_socket_path_honours_runtime_directory(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    config = load_config(None, {}, {"data_dir": tmp_path / "data"})
    assert config.socket_path == tmp_path / "data" / "control.sock"
    monkeypatch.setenv("RUNTIME_DIRECTORY", "/run/duckpeer:/run/other")
    assert config.socket_path == Path("/run/duckpeer/control.sock")
    explicit = load_config(None, {}, {"control_socket": tmp_path / "x.sock"})
    assert explicit.socket_path == tmp_path / "x.sock"  # an explicit socket wins


def one_line_error(path: Path | None, env: dict[str, str], flags: dict[str, object]) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(path, env, flags)
    message = str(info.value)
    assert message and "\n" not in message
    return message


@pytest.mark.parametrize(
    "text",
    [
        "cluster = ",
        "cluster = 'unterminated",
        "[section\n",
        "a = 1\na = 2\n",
        "=\n",
    ],
)
def test_bad_toml(tmp_path: Path, text: str) -> None:
    assert "not valid TOML" in one_line_error(write(tmp_path, text), {}, {})


def test_non_utf8_file(tmp_path: Path) -> None:
    path = tmp_path / "bin.toml"
    path.write_bytes(b"cluster = '\xff\xfe'\n")
    one_line_error(path, {}, {})


def test_unknown_keys(tmp_path: Path) -> None:
    message = one_line_error(write(tmp_path, 'clutser = "typo"\nother = 1\n'), {}, {})
    assert "unknown keys" in message and "clutser" in message and "other" in message


def test_unreadable_file(tmp_path: Path) -> None:
    message = one_line_error(tmp_path / "missing.toml", {}, {})
    assert "cannot read config" in message
    message = one_line_error(tmp_path, {}, {})  # a directory
    assert "cannot read config" in message
    assert "cannot read config" in one_line_error(
        None, {"DUCKPEER_CONFIG": str(tmp_path / "nope.toml")}, {}
    )


@pytest.mark.parametrize(
    "text",
    [
        'announce_interval = "abc"',
        "announce_interval = [1]",
        'query_max_rows = "many"',
        "query_max_rows = {}",
        "listen = 5",
        "listen = [1, 2]",
        "cluster = 5",
        'log_level = ["info"]',
        "memory_limit = 1",
    ],
)
def test_bad_types_in_file(tmp_path: Path, text: str) -> None:
    message = one_line_error(write(tmp_path, text + "\n"), {}, {})
    assert text.split(" ")[0] in message


@pytest.mark.parametrize(
    ("name", "value"),
    [("ANNOUNCE_INTERVAL", "abc"), ("QUERY_MAX_ROWS", "1.5x"), ("SYNC_READ_TIMEOUT", "")],
)
def test_bad_types_in_env(name: str, value: str) -> None:
    message = one_line_error(None, {f"DUCKPEER_{name}": value}, {})
    assert name.lower() in message


def test_bad_flag_value() -> None:
    assert "query_timeout" in one_line_error(None, {}, {"query_timeout": "soon"})


@pytest.mark.parametrize(
    "text",
    [
        "announce_interval = true",  # a boolean is not a number
        "query_max_rows = false",
        "query_max_rows = 1.5",  # would silently become 1
        'mdns = "maybe"',  # would silently become false
        "data_dir = 5",
        "control_socket = true",
    ],
)
def test_loose_types_are_rejected_not_coerced(tmp_path: Path, text: str) -> None:
    message = one_line_error(write(tmp_path, text + "\n"), {}, {})
    assert text.split(" ")[0] in message


def test_boolean_spellings(tmp_path: Path) -> None:
    spellings = {"true": True, "Yes": True, "on": True, "1": True}
    spellings |= {"false": False, "no": False, "OFF": False, "0": False}
    for text, expected in spellings.items():
        assert load_config(None, {"DUCKPEER_MDNS": text}, {}).mdns is expected
    assert "mdns" in one_line_error(None, {"DUCKPEER_MDNS": "ture"}, {})
    assert load_config(write(tmp_path, "mdns = true\n"), {}, {}).mdns is True
    assert load_config(write(tmp_path, "query_max_rows = 2.0\n"), {}, {}).query_max_rows == 2


def test_psk_file_formats(tmp_path: Path) -> None:
    from daemon.config import read_psk

    key = "ab" * 32
    swarm = tmp_path / "swarm.key"
    swarm.write_text(f"/key/swarm/psk/1.0.0/\n/base16/\n{key.upper()}\n")
    bare = tmp_path / "bare.key"
    bare.write_text(key + "\n")
    assert read_psk(swarm) == read_psk(bare) == key
    assert read_psk(None) is None
    for bad in ("short\n", "/key/swarm/psk/1.0.0/\n/base64/\nAAAA\n", "zz" * 32):
        bare.write_text(bad)
        with pytest.raises(ConfigError):
            read_psk(bare)
    with pytest.raises(ConfigError, match="cannot read"):
        read_psk(tmp_path / "missing.key")


@pytest.mark.parametrize(("key", "text"), BAD_CONFIGS, ids=[t for _, t in BAD_CONFIGS])
def test_bad_config_is_one_line_naming_the_key(tmp_path: Path, key: str, text: str) -> None:
    assert key in one_line_error(write(tmp_path, text + "\n"), {}, {})


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("ANNOUNCE_INTERVAL", "nan"),
        ("ANNOUNCE_DEBOUNCE", "-1"),
        ("QUERY_MAX_ROWS", "-1"),
        ("MEMORY_LIMIT", "12 parsecs"),
        ("LISTEN", "/ip4/0.0.0.0/tcp/x"),
        ("QUERY_WORKERS", "0"),
        ("GOSSIP_DEGREE", "0"),
        ("GOSSIP_HEARTBEAT", "0"),
        ("CONTROL_SOCKET", "/tmp/" + "s" * 120),
    ],
)
def test_bad_env_value_is_one_line_naming_the_key(name: str, value: str) -> None:
    assert name.lower() in one_line_error(None, {f"DUCKPEER_{name}": value}, {})


def test_sizes_accept_units() -> None:
    env = {
        "DUCKPEER_MEMORY_LIMIT": "2GiB",
        "DUCKPEER_QUERY_MEMORY_LIMIT": "512MB",
        "DUCKPEER_MAX_TEMP_BYTES": "0",
        "DUCKPEER_QUERY_MAX_RESULT_BYTES": "1048576",
    }
    config = load_config(None, env, {})
    assert config.memory_limit == 2 << 30 and config.memory_limit_bytes == 2 << 30
    assert config.query_memory_bytes == 512_000_000
    assert config.max_temp_bytes == 0 and config.query_max_result_bytes == 1 << 20


def test_default_memory_limit_follows_the_machine() -> None:
    from daemon.configcheck import default_memory_limit, machine_memory

    config = load_config(None, {}, {})
    assert config.memory_limit is None
    assert (
        config.memory_limit_bytes == default_memory_limit() == max(256 << 20, machine_memory() // 4)
    )
    assert config.query_memory_bytes == config.memory_limit_bytes // 4


def test_gossip_mesh_follows_gossip_degree() -> None:
    from daemon.net.network import mesh_bounds

    assert load_config(None, {}, {}).gossip_degree == 4
    assert load_config(None, {"DUCKPEER_GOSSIP_DEGREE": "6"}, {}).gossip_degree == 6
    assert mesh_bounds(4) == {"degree": 4, "degree_low": 2, "degree_high": 6}
    assert mesh_bounds(6) == {"degree": 6, "degree_low": 4, "degree_high": 9}
    for d in range(1, 65):
        bounds = mesh_bounds(d)
        assert 1 <= bounds["degree_low"] <= d < bounds["degree_high"]
