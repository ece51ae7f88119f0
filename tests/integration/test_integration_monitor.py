"""The monitor between real daemons: verify over /duckpeer/status/1 with a peer stopped
and behind, Prometheus scraped over HTTP, custom metrics, alerts, health exit codes,
SIGHUP reload of alert rules, ``top --once`` and ``report``."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from daemon.demo import sample_results
from daemon.localcluster import LocalCluster, LocalPeer, wait_until

pytestmark = pytest.mark.slow

PEERCTL = [sys.executable, "-m", "peerctl"]


def peerctl(peer: LocalPeer, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DUCKPEER_SOCKET": str(peer.socket)}
    return subprocess.run([*PEERCTL, *args], env=env, capture_output=True, text=True, timeout=120)


def peerctl_json(peer: LocalPeer, *args: str) -> Any:
    return json.loads(peerctl(peer, *args, "--json").stdout)


def record(peer: LocalPeer, model: str) -> None:
    with peer.client() as client:
        client.store_performance_result(
            model_name=model, hardware_type="cuda", throughput=10.0, latency=2.0
        )


def test_verify_reports_a_stopped_peer_behind_then_converged(cluster3: LocalCluster) -> None:
    p0, p1, p2 = cluster3.peers
    record(p0, "m0")
    cluster3.wait_converged(timeout=30)
    wait_until(lambda: peerctl_json(p0, "verify")["reachable"] == 3, 30, "3 reachable peers")
    p2_id = peerctl_json(p2, "status")["peer_id"]

    def p0_knows_p2_is_current() -> bool:  # from its announces or sync requests
        return any(p["peer_id"] == p2_id and p["they_lack"] == 0 for p in peerctl_json(p0, "peers"))

    wait_until(p0_knows_p2_is_current, 30, "p0 to learn that p2 holds m0")
    p2.stop()
    for i in range(3):
        record(p0, f"after-{i}")
    cluster3.wait_converged(timeout=30, peers=[p0, p1])
    report = wait_until(
        lambda: (r := peerctl_json(p0, "verify"))["reachable"] == 2 and r, 30, "p2 unreachable"
    )
    by_source = {p["source"] for p in report["peers"]}
    assert by_source == {"self", "live", "gossip"}
    (stale,) = [p for p in report["peers"] if p["source"] == "gossip"]
    assert stale["behind_total"] == 3  # the three writes made while it was down
    assert list(stale["behind"].values()) == [3]
    assert stale["age_s"] is not None and stale["age_s"] >= 0
    assert report["converged"] and not report["divergent"]  # the reachable ones agree
    text = peerctl(p0, "verify")
    assert text.returncode == 0 and "known only from gossip" in text.stdout
    p2.start()
    cluster3.wait_converged(timeout=30)
    final = wait_until(
        lambda: (r := peerctl_json(p0, "verify"))["reachable"] == 3 and r["converged"] and r,
        30,
        "verify to see all three converged",
    )
    assert all(p["behind_total"] == 0 for p in final["peers"])
    assert len({p["db_cid"] for p in final["peers"]}) == 1


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


CONFIG = """
[metrics]
sample_interval = "0.2s"
prometheus_listen = "127.0.0.1:{port}"
lower_is_better = ["build_errors"]

[[alerts]]
metric = "build_errors"
above = 5
severity = "critical"
"""


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
        return resp.read().decode()


def test_prometheus_alerts_health_and_reload(tmp_path: Path) -> None:
    port = free_port()
    config = tmp_path / "duckpeer.toml"
    config.write_text(CONFIG.format(port=port))
    peer = LocalPeer("mon", tmp_path / "p", {"DUCKPEER_CONFIG": str(config)})
    try:
        peer.start()
        assert peerctl(peer, "health").returncode == 0
        assert (
            peerctl(peer, "metrics", "record", "build_errors", "9", "--tag", "stage=ci").returncode
            == 0
        )
        wait_until(lambda: peerctl(peer, "health").returncode == 1, 30, "unhealthy")
        health = peerctl_json(peer, "health")
        assert health["status"] == "unhealthy" and "build_errors" in health["reasons"][0]
        alerts = peerctl_json(peer, "alerts")
        assert [a["tags"] for a in alerts["firing"]] == [{"stage": "ci"}]
        body = scrape(port)
        assert 'duckpeer_build_errors{stage="ci"} 9.0' in body
        assert "duckpeer_control_requests_total" in body
        assert "duckpeer_alerts_fired_total 1.0" in body
        peerctl(peer, "metrics", "record", "build_errors", "0", "--tag", "stage=ci")
        wait_until(lambda: peerctl(peer, "health").returncode == 0, 30, "healthy again")
        summary = peerctl_json(peer, "metrics", "build_errors", "--window", "10m")["series"][0]
        assert summary["summary"]["count"] == 2 and summary["summary"]["max"] == 9.0
        assert summary["better"] == "lower"
        # SIGHUP: new alert rules apply without a restart
        config.write_text(CONFIG.format(port=port).replace("above = 5", "above = -1"))
        assert peer.proc is not None
        peer.proc.send_signal(signal.SIGHUP)
        wait_until(lambda: peerctl(peer, "health").returncode == 1, 30, "reloaded rule to fire")
        top = peerctl(peer, "top", "--once")
        assert top.returncode == 0 and "UNHEALTHY" in top.stdout and "build_errors" in top.stdout
        bad = peerctl(peer, "metrics", "record", "bad name", "1")
        assert bad.returncode == 2 and "bad metric name" in bad.stderr
        with peer.client() as client:
            client.ingest_columns(sample_results(200))
        out = tmp_path / "r.html"
        done = peerctl(peer, "report", "--out", str(out), "--png-dir", str(tmp_path / "png"))
        assert done.returncode == 0, done.stderr
        assert out.read_text().count("data:image/png;base64,") == 6
        assert len(list((tmp_path / "png").glob("*.png"))) == 6
    finally:
        peer.stop()


GRAFANA = Path(__file__).resolve().parents[2] / "systemd" / "grafana-duckpeer.json"
EVENT_COUNTERS = {  # counters that exist only once something went wrong
    "duckpeer_changesets_rejected_total": "changesets_rejected",
    "duckpeer_writes_failed_total": "writes_failed",
    "duckpeer_gossip_dropped_total": "gossip_dropped",
}


def test_the_grafana_dashboard_uses_metrics_the_daemon_exports(tmp_path: Path) -> None:
    dashboard = json.loads(GRAFANA.read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    names = {n for e in exprs for n in re.findall(r"duckpeer_[a-z0-9_]+", e)}
    assert len(dashboard["panels"]) >= 10 and len(names) >= 15
    port = free_port()
    config = tmp_path / "duckpeer.toml"
    config.write_text(CONFIG.format(port=port))
    with LocalCluster(1, base_dir=tmp_path / "c", env={"DUCKPEER_CONFIG": str(config)}) as cl:
        (a,) = cl.peers  # scraped; b writes, so replication figures move on a
        b = LocalPeer("b", tmp_path / "c" / "b")
        cl.peers.append(b)
        b.start([a.listen_addr])
        with b.client() as client:
            client.ingest_columns(sample_results(50))
        cl.wait_converged(timeout=30)
        a.call("query", sql="SELECT count(*) FROM performance_results")

        def exported() -> set[str]:
            return {line.split("{")[0].split(" ")[0] for line in scrape(port).splitlines()
                    if line.startswith("duckpeer_")}  # fmt: skip

        wait_until(lambda: names - set(EVENT_COUNTERS) <= exported(), 30, "every panel's metric")
    sources = "\n".join(p.read_text() for p in (GRAFANA.parents[1] / "daemon").rglob("*.py"))
    for counter in EVENT_COUNTERS.values():
        assert f'inc("{counter}"' in sources or f"inc('{counter}'" in sources, counter
