"""Type=notify: READY=1 only once the control socket answers; the watchdog keeps being fed."""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from daemon.localcluster import LocalCluster, LocalPeer
from daemon.sdnotify import Notifier

pytestmark = pytest.mark.slow


def test_ready_after_control_socket_and_watchdog_pings() -> None:
    with LocalCluster(0) as cluster, socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sd:
        notify_path = cluster.base_dir / "notify.sock"
        sd.bind(str(notify_path))
        sd.settimeout(60)
        env = {"NOTIFY_SOCKET": str(notify_path), "WATCHDOG_USEC": "200000"}
        peer = LocalPeer("svc", cluster.base_dir / "svc", env)
        cluster.peers.append(peer)
        peer.spawn([])
        first = sd.recv(4096).decode()
        assert first.startswith("READY=1\nSTATUS=peers 0, db bafy")
        assert peer.status()["peer_id"]  # the control socket answered when READY came
        started, pings = time.monotonic(), 0
        while pings < 5:
            if sd.recv(4096) == b"WATCHDOG=1":
                pings += 1
        assert time.monotonic() - started < 10
        peer.stop()
        messages = []
        sd.settimeout(5)
        while not any(m.startswith("STOPPING=1") for m in messages):
            messages.append(sd.recv(4096).decode())


def test_notifier_is_a_no_op_outside_systemd() -> None:
    notifier = Notifier({})
    assert not notifier.enabled and notifier.watchdog_interval is None
    notifier.notify("READY=1")  # nothing to send to, nothing raised


def test_watchdog_interval_is_half_the_timeout_and_respects_pid() -> None:
    assert Notifier({"NOTIFY_SOCKET": "@x", "WATCHDOG_USEC": "3000000"}).watchdog_interval == 1.5
    other = Notifier({"NOTIFY_SOCKET": "@x", "WATCHDOG_USEC": "3000000", "WATCHDOG_PID": "1"})
    assert other.watchdog_interval is None


UNIT = Path(__file__).resolve().parents[2] / "systemd" / "duckpeer.service"
ANALYZE = shutil.which("systemd-analyze")


def _unit_with_real_exec(tmp_path: Path) -> Path:
    """The unit with ExecStart pointing at this environment's duckpeerd."""
    exe = Path(sys.executable).with_name("duckpeerd")
    unit = tmp_path / "duckpeer.service"
    unit.write_text(UNIT.read_text().replace("/opt/duckpeer/bin/duckpeerd", str(exe)))
    return unit


@pytest.mark.skipif(ANALYZE is None, reason="systemd-analyze not installed")
def test_unit_verifies_and_exposure_is_low(tmp_path: Path) -> None:
    unit = _unit_with_real_exec(tmp_path)
    verify = subprocess.run([ANALYZE, "verify", str(unit)], capture_output=True, text=True)
    assert verify.returncode == 0, verify.stderr
    security = subprocess.run(
        [ANALYZE, "security", "--offline=true", str(unit)], capture_output=True, text=True
    )
    match = re.search(r"Overall exposure level for duckpeer.service: ([\d.]+)", security.stdout)
    assert match, security.stdout[-500:] + security.stderr
    assert float(match.group(1)) <= 2.0
