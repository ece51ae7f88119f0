"""``duckpeerd demo``: three peers converge, a result is written every few seconds, the
screen says how to reach the peers, and SIGTERM stops everything cleanly."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from daemon.localcluster import wait_until
from peerctl.client import Client, ClientError

pytestmark = pytest.mark.slow


def test_demo_keeps_writing_and_says_how_to_talk_to_it(tmp_path: Path) -> None:
    out = tmp_path / "demo.out"
    with out.open("w") as sink:
        proc = subprocess.Popen([sys.executable, "-m", "daemon", "demo", "--results", "20"],
                                stdout=sink, stderr=subprocess.STDOUT,
                                env={**os.environ, "COLUMNS": "120"})  # fmt: skip
    try:
        base = wait_until(lambda: re.search(r"data dirs under (\S+)", out.read_text()), 60,
                          "the demo to start").group(1)  # fmt: skip
        sockets = [Path(base) / f"p{i}" / "control.sock" for i in range(3)]

        def results() -> list[int]:
            counts = []
            for path in sockets:
                try:
                    with Client(path, timeout=10) as client:
                        counts.append(client.status()["rows"]["performance_results"])
                except ClientError:
                    return []
            return counts

        # The demo first loads 20 results and one more by hand, then writes every 3 s once the
        # peers agree: two rows past 21 everywhere means its live loop is running.
        seeded = 21
        first = wait_until(lambda: (r := results()) and len(set(r)) == 1 and min(r) >= seeded and r,
                           60, "converged")  # fmt: skip
        wait_until(lambda: (r := results()) and min(r) >= first[0] + 2, 60, "two more results")
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(60)
    text = out.read_text()
    assert code == 0, text
    assert f"export DUCKPEER_SOCKET={sockets[1]}" in text
    assert "peerctl status" in text and "every 3 s" in text
    assert re.search(r"Dashboard: http://127\.0\.0\.1:\d+/", text), text
    assert not Path(base).exists()  # the peers stopped and cleaned up
