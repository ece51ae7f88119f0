"""Logging: every line the daemon writes is one JSON object, py-libp2p's included."""

from __future__ import annotations

import json
import subprocess
import sys

SCRIPT = """
import logging
from daemon.logs import configure_logging, count_subscription_drops
import libp2p.utils.logging  # noqa: F401  (py-libp2p stops its logger propagating here)
configure_logging("info")
logging.getLogger("libp2p.transport.tcp.tcp").error("Failed to open TCP stream: %s", "x")
drops = []
count_subscription_drops(lambda: drops.append(1))
log = logging.getLogger("libp2p.network.swarm")
try:
    raise RuntimeError("dial failed\\nsecond line")
except RuntimeError:
    log.exception("unexpected error\\nwith a second line")
log.warning("a warning py-libp2p emits all the time")  # below ERROR: not printed
logging.getLogger("libp2p.pubsub.pubsub").warning(
    "fail to deliver message to subscription for topic %s", "/duckpeer/default/v1")
print(len(drops))
"""


def test_stdlib_records_become_json_lines_and_drops_are_counted() -> None:
    proc = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True,
                          timeout=60, check=True)  # fmt: skip
    lines = proc.stderr.splitlines()
    assert len(lines) == 2, proc.stderr  # the errors only, tracebacks inside their JSON
    assert json.loads(lines[0])["event"] == "Failed to open TCP stream: x"
    entry = json.loads(lines[1])
    assert entry["logger"] == "libp2p.network.swarm"
    assert entry["level"] == "error"
    assert "second line" in entry["event"] and "RuntimeError" in entry["exception"]
    assert proc.stdout.strip() == "1"  # the dropped gossip message was counted, not printed
