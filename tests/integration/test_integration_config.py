"""Bad configurations against real ``duckpeerd`` processes: one line on stderr naming the
key, exit code 2, never a traceback; a bad SIGHUP reload keeps the running config."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from configkit import BAD_CONFIGS

from daemon.configcheck import machine_memory
from daemon.localcluster import LocalCluster, LocalPeer, wait_until
from peerctl.client import RequestFailed

pytestmark = pytest.mark.slow
EXIT_CONFIG = 2


@pytest.fixture
def base() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="dpc-", dir="/tmp"))  # short: socket paths
    yield path
    shutil.rmtree(path, ignore_errors=True)


def run_daemon(base: Path, *args: str, config: str | None = None,
               env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:  # fmt: skip
    """Start duckpeerd as a process and wait for it to exit (it must, with an error)."""
    cmd = [sys.executable, "-m", "daemon"]
    given = f"{config or ''} {' '.join(env or {})} {' '.join(args)}".lower()
    for flag, key, value in (
        ("--data-dir", "data_dir", str(base / "data")),
        ("--control-socket", "control_socket", str(base / "c.sock")),
        ("--listen", "listen", "/ip4/127.0.0.1/tcp/0"),
    ):
        if flag not in args and key not in given:  # flags would override the file
            cmd += [flag, value]
    if config is not None:
        (base / "bad.toml").write_text(config + "\n")
        cmd += ["--config", str(base / "bad.toml")]
    clean = {k: v for k, v in os.environ.items() if not k.startswith("DUCKPEER_")}
    return subprocess.run([*cmd, *args], capture_output=True, text=True, timeout=120,
                          env={**clean, **(env or {})}, check=False)  # fmt: skip


def assert_config_error(done: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert "Traceback" not in done.stderr, done.stderr
    assert done.returncode == EXIT_CONFIG, done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("duckpeerd: config "), done.stderr
    for needle in needles:
        assert needle in last, last


# A spread of the table of bad values: each class of check, in a real process.
SAMPLE = [BAD_CONFIGS[i] for i in range(0, len(BAD_CONFIGS), 5)]


@pytest.mark.parametrize(("key", "text"), SAMPLE, ids=[t for _, t in SAMPLE])
def test_bad_config_file(base: Path, key: str, text: str) -> None:
    assert_config_error(run_daemon(base, config=text), key)


@pytest.mark.parametrize(
    ("name", "value"),
    [("ANNOUNCE_DEBOUNCE", "-1"), ("ANTI_ENTROPY_INTERVAL", "0"), ("MEMORY_LIMIT", "1GB!"),
     ("QUERY_MAX_ROWS", "-1"), ("ANNOUNCE_INTERVAL", "nan")],
)  # fmt: skip
def test_bad_environment(base: Path, name: str, value: str) -> None:
    assert_config_error(run_daemon(base, env={f"DUCKPEER_{name}": value}), name.lower())


def test_bad_flags(base: Path) -> None:
    assert_config_error(run_daemon(base, "--listen", "/ip4/300.0.0.1/tcp/1"), "listen")
    assert_config_error(run_daemon(base, "--cluster", "a b"), "cluster")
    long_socket = str(base / ("s" * 120))
    assert_config_error(run_daemon(base, "--control-socket", long_socket), "control_socket")


def test_port_in_use(base: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        done = run_daemon(base, "--listen", f"/ip4/127.0.0.1/tcp/{port}")
    assert_config_error(done, "listen", f"port {port} is already in use")


def test_machine_checks(base: Path) -> None:
    too_much = f"memory_limit = {machine_memory() * 2}"
    assert_config_error(run_daemon(base, config=too_much), "memory_limit", "machine")
    (base / "file").write_text("x")
    assert_config_error(run_daemon(base, "--data-dir", str(base / "file" / "d")), "data_dir")
    done = run_daemon(base, "--control-socket", str(base / "file" / "c.sock"))
    assert_config_error(done, "control_socket")
    assert_config_error(run_daemon(base, config='psk_file = "/nonexistent/swarm.key"'), "psk_file")
    done = run_daemon(base, config='control_write_group = "no-such-group-here"')
    assert "Traceback" not in done.stderr and done.returncode == EXIT_CONFIG


def test_a_second_daemon_on_the_same_data_dir_or_socket(base: Path) -> None:
    with LocalCluster(1, base_dir=base / "cluster") as cluster:
        live = cluster.peers[0]
        pid = live.proc.pid if live.proc else 0
        done = run_daemon(base, "--data-dir", str(live.data_dir))
        assert_config_error(done, "data_dir", "in use by another duckpeerd", f"pid {pid}")
        done = run_daemon(base, "--control-socket", str(live.socket))
        assert_config_error(done, "control_socket", "another daemon is listening")
        assert live.running and live.status()["peer_id"]  # the first one serves on


def test_bad_reload_keeps_the_running_config(base: Path) -> None:
    config = base / "duckpeer.toml"
    config.write_text("query_max_rows = 100\n")
    peer = LocalPeer("p", base / "p", env={"DUCKPEER_CONFIG": str(config)}).start()
    try:
        peer.call("record", record={"model_name": "m", "hardware_type": "cpu",
                                    "throughput": 1.0, "latency": 1.0})  # fmt: skip
        many = "SELECT * FROM performance_results, (SELECT 1 UNION ALL SELECT 2) t"
        assert len(peer.call("query", sql=many, cache=False)["rows"]) == 2

        config.write_text("query_max_rows = 1\nquery_timeout = -1\n")
        reload(peer, "reload refused")
        assert len(peer.call("query", sql=many, cache=False)["rows"]) == 2  # unchanged

        config.write_text("query_max_rows = 1\n")
        reload(peer, "config reloaded")
        with pytest.raises(RequestFailed, match="more than 1 rows"):
            peer.call("query", sql=many, cache=False)
        log = peer.log_path.read_text()
        assert "query_timeout" in log and "Traceback" not in log
    finally:
        peer.stop()


def reload(peer: LocalPeer, marker: str) -> None:
    seen = peer.log_path.read_text().count(marker)
    assert peer.proc is not None
    peer.proc.send_signal(signal.SIGHUP)
    wait_until(lambda: peer.log_path.read_text().count(marker) > seen, 30, marker)
    assert peer.running
