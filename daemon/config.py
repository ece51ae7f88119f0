"""Daemon configuration: defaults < TOML file < DUCKPEER_* environment < flags."""

from __future__ import annotations

import ipaddress
import math
import os
import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from daemon.configcheck import (
    SIZE_KEYS,
    ConfigError,
    check_config,
    default_memory_limit,
    parse_size,
)
from daemon.metrics.config import MonitorConfig, parse_monitor, split_host_port
from protocol.conflicts import Strategy, parse_strategy
from protocol.schema import TABLES

CACHE_SHARE_LIMIT = 64 << 20  # protocol.cachemsg.MAX_RESULT_BYTES
__all__ = ["Config", "ConfigError", "default_data_dir", "load_config", "read_psk"]


MIN_QUERY_MEMORY = 16 << 20


def default_data_dir() -> Path:
    """``$STATE_DIRECTORY`` under systemd, else ``~/.local/share/duckpeer``."""
    state = os.environ.get("STATE_DIRECTORY")
    if state:
        return Path(state.split(":")[0])
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "duckpeer"


@dataclass(frozen=True)
class Config:
    """Everything the daemon reads at start-up."""

    data_dir: Path = field(default_factory=default_data_dir)
    listen: tuple[str, ...] = ("/ip4/0.0.0.0/tcp/4001",)
    control_socket: Path | None = None  # default: $RUNTIME_DIRECTORY or data_dir
    bootstrap: tuple[str, ...] = ()
    cluster: str = "default"
    mdns: bool = False
    log_level: str = "info"
    announce_interval: float = 3.0  # heartbeat period of a small cluster (the shortest)
    announce_cluster_rate: float = 0.1  # heartbeats/s of the whole cluster: period grows with N
    announce_debounce: float = 0.001
    anti_entropy_interval: float = 10.0  # after a change; doubles per quiet round ...
    anti_entropy_max_interval: float = 60.0  # ... up to this (the bound on detecting a loss)
    connections_target: int = 8  # connections a peer opens (gossipsub's mesh forms over them)
    connections_max: int = 12  # above this, idle connections are closed down to the target
    member_timeout: float = 60.0  # silence before a member is dropped (at least 3 periods)
    connections_per_ip_per_second: float = 10.0  # inbound, per address (bursts of 40)
    gossip_ban_seconds: float = 600.0  # a peer that keeps sending junk gossip is cut off
    sync_read_timeout: float = 15.0
    query_timeout: float = 30.0
    query_max_rows: int = 1_000_000
    max_gossip_per_second: float = 200.0
    gossip_heartbeat: float = 1.0  # gossipsub's mesh upkeep and IHAVE period, s
    gossip_degree: int = 4  # gossipsub mesh degree D (bounds: net.network.mesh_bounds)
    memory_limit: int | None = None  # bytes for DuckDB; None = a quarter of the machine's
    memory_margin: int = 1 << 30  # RSS allowed above memory_limit before queries are stopped
    query_memory_limit: int | None = None  # per query (sorts, hash tables); None = 1/4 of it
    max_temp_bytes: int = 4 << 30  # DuckDB's spill files in <data_dir>/duckpeer.tmp
    query_max_result_bytes: int = 32 << 20  # a result travels in one control frame
    query_max_value_bytes: int = 8 << 20
    query_workers: int = 2  # queries running at once
    query_queue: int = 16  # queries waiting for a worker; more are refused ("busy")
    control_max_connections: int = 64
    control_max_buffered_bytes: int = 256 << 20  # partial frames held across connections
    control_idle_timeout: float = 3600.0  # seconds a connection may wait between requests
    control_frame_timeout: float = 10.0  # seconds a started frame may take to arrive
    control_write_group: str | None = None  # if set, only its members may write
    trusted_peers: tuple[str, ...] = ()  # peer ids; empty = open cluster
    psk_file: Path | None = None  # private network key (py-libp2p peers only)
    max_block_bytes: int = 32 << 20  # largest changeset accepted on sync (protocol max)
    max_gossip_bytes: int = 1 << 20  # largest gossip message accepted (protocol max)
    max_control_bytes: int = 64 << 20  # largest control request (an ingest chunk)
    sync_requests_per_second: float = 5.0  # per peer, bursts of 20; 0 = unlimited
    gossip_per_peer_per_second: float = 50.0  # per sender, bursts of 100; 0 = unlimited
    conflicts: tuple[tuple[str, str], ...] = ()  # (table, strategy); unlisted tables: latest

    def strategies(self) -> dict[str, Strategy]:
        """Conflict strategy per table (every table; ``latest`` unless configured)."""
        chosen = {table: parse_strategy(name) for table, name in self.conflicts}
        return {table: chosen.get(table, Strategy.LATEST) for table in TABLES}

    # Result cache ([cache] section of the file: ``max_bytes = ...`` sets cache_max_bytes).
    cache_enabled: bool = True
    cache_max_bytes: int = 256 << 20
    cache_max_entry_bytes: int = 0  # 0 = a quarter of cache_max_bytes
    cache_cheap_ms: float = 1.0  # queries cheaper than this are not cached
    cache_aggressive_ms: float = 50.0  # hot queries at least this costly are prefetched
    cache_hot_requests: int = 3  # asks before a costly query counts as hot
    cache_prefetch_max: int = 8  # queries re-run per new CID; 0 = no prefetch
    cache_share: bool = True  # ask / answer peers at the same CID
    cache_share_min_ms: float = 20.0  # ask peers only for queries at least this costly
    cache_share_timeout: float = 2.0
    cache_share_max_bytes: int = 16 << 20  # largest result sent to or taken from a peer
    cache_share_per_second: float = 20.0  # answers per asking peer (bursts of 40)
    bootstrap_snapshot: bool = True  # empty store: load a peer's snapshot, then delta sync
    bootstrap_snapshot_wait: float = 30.0  # seconds to wait for a peer's snapshot offer
    bootstrap_snapshot_min_bytes: int = 8 << 20  # smaller offers: catch up by delta instead
    log_prune: bool = True  # drop changeset blocks every known peer holds
    log_prune_interval: float = 60.0  # seconds between pruning passes
    log_peer_retention: float = 7 * 86400.0  # a peer silent this long no longer holds it back
    snapshot_max_age: float = 300.0  # serve a snapshot this old to new peers (delta does the rest)
    ipfs_api: str | None = None  # e.g. http://127.0.0.1:5001: snapshots are imported and pinned
    monitor: MonitorConfig = field(default_factory=MonitorConfig)  # [metrics], [[alerts]]
    distq_deadline: float = 30.0  # seconds a peer has to return its partitions
    distq_max_partial_bytes: int = 32 << 20  # largest partial result accepted or sent
    distq_fragment_delay: float = 0.0  # test only: delay before running a peer's fragment
    distq_retries: int = 2  # plans again at the new CID when a write lands mid-query
    distq_advertised_cores: int = 0  # test only: cores a peer claims (0 = the real count)
    distq_switch_interval: float = 0.001  # Python's GIL switch interval (0 = its default)
    recluster: bool = True  # keep performance_results clustered by key in the background
    recluster_idle: float = 5.0  # seconds without writes before a re-cluster step
    web_listen: str | None = None  # [web] listen = "127.0.0.1:8080": the dashboard; None = off
    web_allow_remote: bool = False  # [web] allow_remote: a non-loopback address (no auth!)

    def trusts(self, peer_id: str) -> bool:
        """True when ``peer_id`` may gossip, sync and author changesets with us."""
        return not self.trusted_peers or peer_id in self.trusted_peers

    @property
    def memory_limit_bytes(self) -> int:
        """DuckDB's memory limit: configured, or a quarter of the machine's memory."""
        return self.memory_limit if self.memory_limit is not None else default_memory_limit()

    @property
    def query_memory_bytes(self) -> int:
        """One query's memory for sorts and hash tables."""
        if self.query_memory_limit is not None:
            return self.query_memory_limit
        return max(MIN_QUERY_MEMORY, self.memory_limit_bytes // 4)

    @property
    def socket_path(self) -> Path:
        """Where the control socket lives."""
        if self.control_socket is not None:
            return self.control_socket
        runtime = os.environ.get("RUNTIME_DIRECTORY")
        base = Path(runtime.split(":")[0]) if runtime else self.data_dir
        return base / "control.sock"

    @property
    def topic(self) -> str:
        """The gossipsub topic of this cluster."""
        return f"/duckpeer/{self.cluster}/v1"

    @property
    def db_path(self) -> Path:
        """The DuckDB database file."""
        return self.data_dir / "duckpeer.duckdb"


_SECTIONS = {"monitor"}  # built from TOML tables, not from scalar keys, env or flags
_TYPES = {f.name: f.type for f in fields(Config) if f.name not in _SECTIONS}
_ENV_LISTS = {"listen", "bootstrap", "trusted_peers"}


def load_config(path: Path | None, env: dict[str, str], flags: dict[str, Any]) -> Config:
    """Merge file, environment (``DUCKPEER_<FIELD>``) and flags, in that order."""
    values: dict[str, Any] = {}
    file_path = path or (Path(env["DUCKPEER_CONFIG"]) if env.get("DUCKPEER_CONFIG") else None)
    if file_path is not None:
        values.update(_read_file(file_path))
    values.update(_from_env(env))
    values.update({k: v for k, v in flags.items() if v not in (None, (), [])})
    return _build(values)


def _read_file(path: Path) -> dict[str, Any]:
    try:
        raw = tomllib.loads(path.read_text())
    except OSError as exc:
        raise ConfigError(f"cannot read config {path}: {exc.strerror}") from exc
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config {path} is not valid TOML: {exc}") from exc
    unknown = set(raw) - set(_TYPES) - {"metrics", "alerts", "cache", "web"}
    if unknown:
        raise ConfigError(f"config {path}: unknown keys {sorted(unknown)}")
    values = {k: v for k, v in raw.items() if k in _TYPES} | _section(path, raw, "cache")
    values |= _section(path, raw, "web")
    if "metrics" in raw or "alerts" in raw:
        try:
            values["monitor"] = parse_monitor(raw.get("metrics"), raw.get("alerts"))
        except ValueError as exc:
            raise ConfigError(f"config {path}: {exc}") from exc
    return values


def _section(path: Path, raw: dict[str, Any], name: str) -> dict[str, Any]:
    """A ``[name]`` table as ``name_<key>`` fields."""
    table = raw.get(name, {})
    if not isinstance(table, dict):
        raise ConfigError(f"config {path}: [{name}] must be a table")
    fields_ = {f"{name}_{k}": v for k, v in table.items()}
    unknown = sorted(k for k in fields_ if k not in _TYPES)
    if unknown:
        raise ConfigError(f"config {path}: unknown keys in [{name}]: {unknown}")
    return fields_


def _from_env(env: dict[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in _TYPES:
        value = env.get(f"DUCKPEER_{name.upper()}")
        if value is not None:
            out[name] = [v for v in value.split(",") if v] if name in _ENV_LISTS else value
    return out


def _build(values: dict[str, Any]) -> Config:
    converted = {
        name: value if name in _SECTIONS else _convert(name, value)
        for name, value in values.items()
    }
    if converted.get("ipfs_api") == "":
        converted["ipfs_api"] = None  # an empty setting switches the push off
    try:
        built = replace(Config(), **converted)
    except TypeError as exc:
        raise ConfigError(str(exc)) from exc
    check_config(built)
    if built.web_listen is not None:
        check_web_listen(built.web_listen, built.web_allow_remote)
    return built


def check_web_listen(listen: str, allow_remote: bool) -> None:
    """ConfigError unless ``listen`` is ``HOST:PORT`` on loopback (or remote is allowed):
    the dashboard, like the Prometheus endpoint, has no authentication."""
    try:
        host, _ = split_host_port(listen)
    except ValueError as exc:
        raise ConfigError(f"config web.listen: {exc}") from None
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback and not allow_remote:
        raise ConfigError(
            f"config web.listen: {host} is not a loopback address; the dashboard has no "
            "authentication (set [web] allow_remote = true to expose it)"
        )


def _convert(name: str, value: Any) -> Any:
    kind = str(_TYPES[name])
    try:
        if name == "conflicts":
            return _strategies(value)
        if name in SIZE_KEYS:
            return parse_size(value)
        if name in _ENV_LISTS:
            items = [value] if isinstance(value, str) else list(value)
            if not all(isinstance(v, str) for v in items):
                raise TypeError("expected a list of strings")
            return tuple(items)
        if "Path" in kind:
            if not isinstance(value, str | os.PathLike):
                raise TypeError(f"expected a path, got {type(value).__name__}")
            if not str(value).strip():
                raise ValueError("must not be empty")
            return Path(value).expanduser()
        if kind == "bool":
            return _boolean(value)
        if kind in ("float", "int") and isinstance(value, bool):
            raise TypeError("expected a number, got a boolean")
        if kind == "float":
            return _number(value)
        if kind == "int":
            if isinstance(value, float) and not value.is_integer():
                raise ValueError(f"expected an integer, got {value!r}")
            return int(value)
        if not isinstance(value, str | type(None)):
            raise TypeError(f"expected a string, got {type(value).__name__}")
        return value
    except (TypeError, ValueError, OverflowError) as exc:
        raise ConfigError(f"config {name}: {exc}") from exc


def _number(value: Any) -> float:
    number = float(value)
    if not math.isfinite(number):
        raise ValueError(f"expected a finite number, got {value!r}")
    return number


def _strategies(value: Any) -> tuple[tuple[str, str], ...]:
    """``[conflicts]`` (a TOML table) or ``table=strategy,...`` (environment)."""
    if isinstance(value, str):
        pairs = [item.partition("=")[::2] for item in value.split(",") if item.strip()]
    elif isinstance(value, dict):
        pairs = list(value.items())
    elif isinstance(value, tuple):
        pairs = list(value)
    else:
        raise TypeError("expected a table of table = strategy")
    out = []
    for table, strategy in pairs:
        table = str(table).strip()
        if table not in TABLES:
            raise ValueError(f"unknown table {table!r} (one of {', '.join(TABLES)})")
        if not isinstance(strategy, str):
            raise TypeError(f"{table}: expected a strategy name")
        out.append((table, parse_strategy(strategy.strip()).value))
    return tuple(sorted(out))


def _boolean(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in {"1", "true", "yes", "on"}:
        return True
    if text in {"0", "false", "no", "off"}:
        return False
    raise ValueError(f"expected a boolean (true/false), got {value!r}")


def read_psk(path: Path | None) -> str | None:
    """The 32-byte private-network key as 64 hex digits, from a go-libp2p style
    ``swarm.key`` (``/key/swarm/psk/1.0.0/``, ``/base16/``, hex) or a bare hex line."""
    if path is None:
        return None
    try:
        lines = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    except (OSError, UnicodeDecodeError) as exc:
        why = exc.strerror if isinstance(exc, OSError) else "not a text file"
        raise ConfigError(f"config psk_file: cannot read {path}: {why}") from exc
    if lines[:1] == ["/key/swarm/psk/1.0.0/"]:
        if lines[1:2] != ["/base16/"]:
            raise ConfigError(f"config psk_file: {path}: only /base16/ keys are supported")
        lines = lines[2:]
    key = lines[0].lower() if len(lines) == 1 else ""
    if len(key) != 64 or any(c not in "0123456789abcdef" for c in key):
        raise ConfigError(f"config psk_file: {path}: expected 64 hex digits (a 32-byte key)")
    return key
