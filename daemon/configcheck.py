"""Checking a configuration: what every key may be, then whether this machine agrees.

``daemon.config`` converts values to their types; :func:`check_config` then checks the
whole Config and raises ConfigError naming the first key that is wrong and why, in
one line. Numbers must be finite; intervals that a loop sleeps on have a floor (an
``announce_interval`` of 0 spins a core), sizes are bytes or ``"512MiB"``-style
strings, addresses are parsed the way the network will parse them.

:func:`preflight` then checks a valid Config against this machine before anything is
opened: a data dir that another live daemon holds (an exclusive ``flock`` on
``<data_dir>/duckpeer.lock``, kept for the daemon's lifetime), a listen port already
taken, a control socket another daemon answers on or that cannot be created, a
``memory_limit`` beyond the machine's memory. Each problem is a ConfigError naming the
key, which ``duckpeerd`` prints in one line and exits 2 on.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import functools
import math
import os
import re
import socket
import stat
import urllib.parse
from collections.abc import Iterator
from dataclasses import fields
from pathlib import Path
from typing import Any

import multiaddr
from libp2p.peer.id import ID

from protocol.control import MAX_CONTROL_FRAME


class ConfigError(ValueError):
    """The configuration file, an environment variable or a flag is invalid."""


MIB = 1 << 20


@functools.lru_cache(maxsize=1)
def machine_memory() -> int:
    """Physical memory, or the cgroup's limit when that is lower (bytes)."""
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
    except OSError:
        return total
    return min(total, int(limit)) if limit.isdigit() else total


def default_memory_limit() -> int:
    """A quarter of the machine's memory (DuckDB's own default is 80 %), at least 256 MiB."""
    return max(256 << 20, machine_memory() // 4)


UNLIMITED = math.inf
# key: (lowest, highest, lowest allowed?) for numbers; None as highest = no bound.
RANGES: dict[str, tuple[float, float, bool]] = {
    "announce_interval": (0.05, 3600, True),
    "announce_debounce": (0, 60, True),
    "anti_entropy_interval": (0.1, 86400, True),
    "anti_entropy_max_interval": (0.1, 86400, True),
    "announce_cluster_rate": (0, 1e6, False),
    "member_timeout": (0, 86400 * 30, False),
    "gossip_ban_seconds": (0, 86400 * 365, False),
    "connections_target": (1, 1024, True),
    "connections_max": (1, 1024, True),
    "connections_per_ip_per_second": (0, 1e6, True),
    "sync_read_timeout": (0, 3600, False),
    "query_timeout": (0, 86400, False),
    "query_max_rows": (1, 100_000_000, True),
    "max_gossip_per_second": (0, 100_000, False),
    "gossip_heartbeat": (0.05, 60, True),
    "gossip_degree": (1, 64, True),
    "memory_limit": (64 * MIB, UNLIMITED, True),
    "memory_margin": (64 * MIB, UNLIMITED, True),
    "query_memory_limit": (16 * MIB, UNLIMITED, True),
    "max_temp_bytes": (0, UNLIMITED, True),
    "query_max_result_bytes": (1024, 60 * MIB, True),
    "query_max_value_bytes": (1024, 60 * MIB, True),
    "query_workers": (1, 64, True),
    "query_queue": (0, 10_000, True),
    "control_max_connections": (1, 10_000, True),
    "control_max_buffered_bytes": (MIB, UNLIMITED, True),
    "control_idle_timeout": (1, 86400 * 7, True),
    "control_frame_timeout": (0.1, 3600, True),
    "max_block_bytes": (1024, 32 * MIB, True),
    "max_gossip_bytes": (1024, MIB, True),
    "max_control_bytes": (1024, MAX_CONTROL_FRAME, True),
    "sync_requests_per_second": (0, 1e6, True),
    "gossip_per_peer_per_second": (0, 1e6, True),
    "cache_max_bytes": (0, UNLIMITED, True),
    "cache_max_entry_bytes": (0, UNLIMITED, True),
    "cache_cheap_ms": (0, 86400e3, True),
    "cache_aggressive_ms": (0, 86400e3, True),
    "cache_hot_requests": (1, 1_000_000, True),
    "cache_prefetch_max": (0, 10_000, True),
    "cache_share_min_ms": (0, 86400e3, True),
    "cache_share_timeout": (0, 3600, False),
    "cache_share_max_bytes": (0, 64 * MIB, True),
    "cache_share_per_second": (0, 1e6, True),
    "bootstrap_snapshot_wait": (0, 86400, False),
    "snapshot_max_age": (0, 86400 * 365, True),
    "distq_deadline": (0, 3600, False),
    "distq_max_partial_bytes": (1024, 256 * MIB, True),
    "distq_fragment_delay": (0, 3600, True),
    "distq_retries": (0, 10, True),
    "distq_advertised_cores": (0, 65536, True),
    "distq_switch_interval": (0, 0.1, True),
    "recluster_idle": (0, 86400, False),
    "log_prune_interval": (0, 86400 * 365, False),
    "log_peer_retention": (0, UNLIMITED, True),
    "bootstrap_snapshot_min_bytes": (0, UNLIMITED, True),
}
SIZE_KEYS = frozenset(
    {"memory_limit", "memory_margin", "query_memory_limit", "max_temp_bytes",
     "query_max_result_bytes", "query_max_value_bytes", "control_max_buffered_bytes",
     "max_block_bytes", "max_gossip_bytes", "max_control_bytes", "cache_max_bytes",
     "cache_max_entry_bytes", "cache_share_max_bytes", "distq_max_partial_bytes",
     "bootstrap_snapshot_min_bytes"}
)  # fmt: skip
LOG_LEVELS = ("debug", "info", "warning", "error")
_CLUSTER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]i?B|B)?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "b": 1, "kb": 1e3, "mb": 1e6, "gb": 1e9, "tb": 1e12,
          "kib": 1 << 10, "mib": 1 << 20, "gib": 1 << 30, "tib": 1 << 40}  # fmt: skip
MAX_SOCKET_PATH = 107  # sun_path holds 108 bytes with the terminating NUL


def parse_size(value: Any) -> int:
    """Bytes from an integer or a string like ``1GB``, ``512MiB``, ``1048576``."""
    if isinstance(value, bool):
        raise TypeError("expected a size, got a boolean")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    match = _SIZE.match(value) if isinstance(value, str) else None
    if match is None:
        raise ValueError(f"expected bytes or a size like 512MiB or 2GB, got {value!r}")
    return int(float(match.group(1)) * _UNITS[(match.group(2) or "").lower()])


def check_config(config: Any) -> None:  # a daemon.config.Config
    """Raise ConfigError for the first key of ``config`` that is out of range or format."""
    for f in fields(config):
        value = getattr(config, f.name)
        if f.name in RANGES and value is not None:
            _check_range(f.name, value)
    _check_text(config)
    _check_addresses(config)
    _check_relations(config)


def _check_range(name: str, value: float) -> None:
    low, high, low_ok = RANGES[name]
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"config {name}: must be a finite number, got {value}")
    if value < low or (value == low and not low_ok):
        bound = f">= {_number(low)}" if low_ok else f"> {_number(low)}"
        raise ConfigError(f"config {name}: must be {bound}, got {_number(value)}")
    if value > high:
        raise ConfigError(f"config {name}: at most {_number(high)}, got {_number(value)}")


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def _check_text(config: Any) -> None:  # a daemon.config.Config
    if not _CLUSTER.match(config.cluster):
        raise ConfigError(
            f"config cluster: 1-64 letters, digits, '.', '_' or '-', got {config.cluster!r}"
        )
    if config.log_level not in LOG_LEVELS:
        raise ConfigError(f"config log_level: one of {', '.join(LOG_LEVELS)}")
    if config.control_write_group is not None and not config.control_write_group.strip():
        raise ConfigError("config control_write_group: must not be empty")
    if config.ipfs_api is not None:
        url = urllib.parse.urlsplit(config.ipfs_api)
        if url.scheme not in ("http", "https") or not url.hostname:
            raise ConfigError(
                f"config ipfs_api: expected an http(s)://host:port URL, got {config.ipfs_api!r}"
            )
    for peer in config.trusted_peers:
        if not is_peer_id(peer):
            raise ConfigError(f"config trusted_peers: {peer!r} is not a libp2p peer id")
    if not str(config.data_dir).strip():
        raise ConfigError("config data_dir: must not be empty")
    if len(str(config.socket_path).encode()) > MAX_SOCKET_PATH:
        raise ConfigError(
            f"config control_socket: {config.socket_path} is longer than "
            f"{MAX_SOCKET_PATH} bytes (the limit of a Unix socket path)"
        )


def _check_addresses(config: Any) -> None:  # a daemon.config.Config
    if not config.listen:
        raise ConfigError("config listen: at least one address is needed")
    for addr in config.listen:
        problem = multiaddr_problem(addr, need_peer=False)
        if problem:
            raise ConfigError(f"config listen: {addr!r}: {problem}")
    for addr in config.bootstrap:
        problem = multiaddr_problem(addr, need_peer=True)
        if problem:
            raise ConfigError(f"config bootstrap: {addr!r}: {problem}")


def _check_relations(config: Any) -> None:  # a daemon.config.Config
    if config.query_memory_bytes > config.memory_limit_bytes:
        raise ConfigError("config query_memory_limit: must not exceed memory_limit")
    if config.cache_aggressive_ms < config.cache_cheap_ms:
        raise ConfigError("config cache_aggressive_ms: must be >= cache_cheap_ms")
    if config.connections_max < config.connections_target:
        raise ConfigError("config connections_max: must be >= connections_target")


def multiaddr_problem(addr: str, *, need_peer: bool) -> str | None:
    """Why ``addr`` is not a TCP multiaddr the network can use, or None."""
    try:
        parsed = multiaddr.Multiaddr(addr)
        names = [p.name for p in parsed.protocols()]
        peer = parsed.value_for_protocol("p2p") if "p2p" in names else None
    except Exception as exc:  # multiaddr raises many unrelated types
        return f"not a multiaddr ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})"
    if not names or names[0] not in ("ip4", "ip6", "dns", "dns4", "dns6") or "tcp" not in names:
        return "expected /ip4|/ip6|/dns4/<host>/tcp/<port>"
    if need_peer and not (peer and is_peer_id(peer)):
        return "needs /p2p/<peer id> at the end"
    return None


def is_peer_id(text: str) -> bool:
    """True for a base58 libp2p peer id (an identity or sha2-256 multihash)."""
    try:
        raw = ID.from_base58(text).to_bytes()
    except ValueError:
        return False
    return len(raw) > 2 and raw[0] in (0x00, 0x12) and raw[1] == len(raw) - 2


# -- against this machine, at start ---------------------------------------------------

LOCK_NAME = "duckpeer.lock"


@contextlib.contextmanager
def preflight(config: Any) -> Iterator[None]:  # a daemon.config.Config
    """Check ``config`` against the machine and hold the data dir while the block runs."""
    check_memory(config)
    with hold_data_dir(config.data_dir):
        check_listen(config.listen)
        check_control_socket(config.socket_path)
        yield


def check_memory(config: Any) -> None:
    """``memory_limit`` must fit in this machine's memory (or its cgroup's)."""
    total = machine_memory()
    if config.memory_limit_bytes > total:
        raise ConfigError(
            f"config memory_limit: {config.memory_limit_bytes} bytes is more than this "
            f"machine's memory ({total} bytes)"
        )


@contextlib.contextmanager
def hold_data_dir(data_dir: Path) -> Iterator[None]:
    """Create ``data_dir`` if needed and lock it; ConfigError if a live daemon holds it."""
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(data_dir / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as exc:
        raise ConfigError(f"config data_dir: cannot use {data_dir}: {exc.strerror}") from exc
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            raise ConfigError(
                f"config data_dir: {data_dir} is in use by another duckpeerd (pid {holder})"
            ) from exc
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)  # releases the lock


def check_listen(listen: tuple[str, ...]) -> None:
    """Every listen address with a fixed port must be free to bind."""
    for addr in listen:
        host, port = _ip_and_port(addr)
        if host is None or port == 0:
            continue
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((host, port))
            except OSError as exc:
                problem = "is already in use" if exc.errno == errno.EADDRINUSE else exc.strerror
                raise ConfigError(f"config listen: {addr}: port {port} {problem}") from exc


def _ip_and_port(addr: str) -> tuple[str | None, int]:
    parsed = multiaddr.Multiaddr(addr)  # valid: checked by daemon.configcheck
    names = [p.name for p in parsed.protocols()]
    if names[0] not in ("ip4", "ip6"):
        return None, 0
    return parsed.value_for_protocol(names[0]), int(parsed.value_for_protocol("tcp"))


def check_control_socket(path: Path) -> None:
    """The socket's directory must be usable and no live daemon may answer on it."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(
            f"config control_socket: cannot create {path.parent}: {exc.strerror}"
        ) from exc
    if not (path.exists() or path.is_symlink()):
        return
    if not stat.S_ISSOCK(path.lstat().st_mode):
        raise ConfigError(f"config control_socket: {path} exists and is not a socket")
    if socket_answers(path):
        raise ConfigError(f"config control_socket: another daemon is listening on {path}")


def socket_answers(path: Path) -> bool:
    """True when something accepts connections on the Unix socket ``path``."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        try:
            probe.connect(str(path))
        except OSError as exc:
            if exc.errno in (errno.ECONNREFUSED, errno.ENOENT):
                return False
            raise ConfigError(f"config control_socket: {path}: {exc.strerror}") from exc
    return True
