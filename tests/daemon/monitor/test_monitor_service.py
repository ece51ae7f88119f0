"""The monitor service in process: sampling, lag from gossip, health, verify's comparison,
control methods and the Prometheus endpoint scraped over HTTP."""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import trio

from daemon.config import Config
from daemon.metrics.config import AlertRule, MonitorConfig
from daemon.monitor import methods as monitor_methods
from daemon.monitor.health import assess
from daemon.monitor.prometheus import label_name, metric_name, serve_prometheus
from daemon.monitor.service import Monitor
from daemon.monitor.verify import PeerView, compare
from daemon.node import Node, PeerState
from daemon.store.database import Store
from protocol.control import ControlError


@pytest.fixture
def node(tmp_path: Path) -> Iterator[Node]:
    store = Store(tmp_path / "db.duckdb")
    n = Node(Config(data_dir=tmp_path), store, "12D3KooMe")
    n.monitor = Monitor(n)
    yield n
    store.close()


def with_rules(node: Node, *rules: AlertRule) -> None:
    node.config = replace(node.config, monitor=MonitorConfig(alerts=rules))


def latest(node: Node, name: str, **tags: str) -> float | None:
    return node.monitor.latest(name, tuple(sorted(tags.items())))


def test_rates_from_counters(node: Node) -> None:
    m: Monitor = node.monitor
    m.sample(1000.0)
    assert latest(node, "changesets_applied_per_s") is None  # no interval yet
    node.metrics.inc("changesets_applied", 50)
    node.metrics.inc("sync_bytes_in", 3000)
    node.metrics.inc("sync_bytes_out", 1000)
    node.metrics.inc("gossip_malformed", 2)
    m.sample(1010.0)
    assert latest(node, "changesets_applied_per_s") == 5.0
    assert latest(node, "sync_bytes_per_s") == 400.0
    assert latest(node, "malformed_messages_per_s") == 0.2
    assert latest(node, "malformed_messages") == 2.0
    assert latest(node, "conflicts_open") == 0.0
    assert latest(node, "duckdb_size_bytes") == float(node.store.size_bytes())
    assert latest(node, "monitor_cpu_seconds") is not None


def test_cache_hit_rate_only_when_the_cache_counts(node: Node) -> None:
    m: Monitor = node.monitor
    m.sample(0.0)
    m.sample(1.0)
    assert latest(node, "cache_hit_rate") is None
    node.metrics.inc("cache_hits", 3)
    node.metrics.inc("cache_misses", 1)
    m.sample(2.0)
    assert latest(node, "cache_hit_rate") == 0.75


def test_lag_per_peer_from_gossiped_vectors(node: Node) -> None:
    node.peers["A"] = PeerState("A", "cidA", {"12D3KooMe": 0, "C": 2})
    node.peers["B"] = PeerState("B", "cidB", {"C": 7})
    node.store.vector = lambda: {"C": 5}  # type: ignore[method-assign]
    node.monitor.sample(1.0)
    assert latest(node, "replication_lag_changesets", peer="A") == 3.0
    assert latest(node, "replication_lag_changesets", peer="B") == 0.0
    assert latest(node, "replication_lag_changesets") == 3.0
    assert latest(node, "replication_behind_changesets") == 2.0  # B holds 2 we lack
    assert latest(node, "peers_known") == 2.0


def test_alert_from_config_fires_and_health_follows(node: Node) -> None:
    rule = AlertRule("replication_lag_changesets", 100.0, True, "critical", 0.0)
    with_rules(node, rule)
    node.peers["A"] = PeerState("A", "cidA", {})
    node.store.vector = lambda: {"C": 500}  # type: ignore[method-assign]
    events = node.monitor.sample(time.time())
    assert {(e["event"], str(e["tags"])) for e in events} == {
        ("fired", "{}"), ("fired", "{'peer': 'A'}")}  # fmt: skip
    verdict = assess(node)
    assert verdict["status"] == "unhealthy"
    assert any("critical alert" in r for r in verdict["reasons"])
    node.store.vector = lambda: {}  # type: ignore[method-assign]
    events = node.monitor.sample(time.time())
    assert [e["event"] for e in events] == ["cleared", "cleared"]
    assert node.metrics.get("alerts_fired") == 2 and node.metrics.get("alerts_cleared") == 2
    assert "critical alert" not in " ".join(assess(node)["reasons"])


def test_health_verdicts(node: Node) -> None:
    assert assess(node)["status"] == "healthy"
    with_rules(node, AlertRule("x", 1.0, True, "warning"))
    node.metrics.observe("x", 5.0)
    node.monitor.sample(time.time())
    assert assess(node)["status"] == "degraded"
    with_rules(node, AlertRule("x", 1.0, True, "info"))
    node.monitor.sample(time.time())
    assert assess(node)["status"] == "healthy"
    node.peers["P"] = PeerState("P", "other-cid", {})  # same (empty) vector, another CID
    verdict = assess(node)
    assert verdict["status"] == "unhealthy"
    assert any("divergence" in r for r in verdict["reasons"])
    assert any("no peers connected" in r for r in verdict["reasons"])


def test_health_notices_a_stalled_sampler(node: Node) -> None:
    node.monitor.sample(1000.0)
    assert assess(node, now=1005.0)["status"] == "healthy"
    assert assess(node, now=1100.0)["reasons"] == ["monitor has not sampled for 3 intervals"]


def test_verify_compare_behind_and_divergence() -> None:
    report = compare(
        [
            PeerView("me", "self", "c1", {"a": 5, "b": 2}),
            PeerView("p1", "live", "c1", {"a": 5, "b": 2}),
            PeerView("p2", "live", "c2", {"a": 3}),
            PeerView("p3", "gossip", "c9", {"a": 3}, age_s=12.0, error="timed out"),
            PeerView("p4", "gossip", None, {}, error="never announced"),
        ]
    )
    assert report["target_vector"] == {"a": 5, "b": 2}
    by = {p["peer_id"]: p for p in report["peers"]}
    assert by["me"]["behind_total"] == 0 and by["p1"]["behind"] == {}
    assert by["p2"]["behind"] == {"a": 2, "b": 2} and by["p2"]["behind_total"] == 4
    assert by["p4"]["behind"] is None
    assert report["divergent"] == [{"version_vector": {"a": 3}, "peers": {"p2": "c2", "p3": "c9"}}]
    assert report["converged"] is False
    assert report["unreachable"] == ["p3", "p4"]
    assert report["reachable"] == 3


def test_verify_compare_converged() -> None:
    same = {"a": 1}
    report = compare([PeerView("me", "self", "c", same), PeerView("p", "live", "c", same)])
    assert report["converged"] and not report["divergent"]


async def test_record_metric_and_summaries(node: Node) -> None:
    for v in (1.0, 2.0, 3.0, 4.0):
        await monitor_methods.record_metric(
            node, {"name": "images_per_s", "value": v, "tags": {"gpu": "a100"}}
        )
    out = await monitor_methods.metrics(node, {"name": "images_per_s", "window": "5m"})
    (series,) = out["series"]
    assert series["tags"] == {"gpu": "a100"}
    assert series["summary"]["count"] == 4 and series["summary"]["max"] == 4.0
    assert node.metrics.get("metrics_recorded") == 4


@pytest.mark.parametrize(
    "params",
    [
        {"name": "bad name", "value": 1},
        {"name": "x", "value": "1"},
        {"name": "x", "value": float("inf")},
        {"name": "x", "value": True},
        {"name": "x", "value": 1, "tags": {"bad key": "v"}},
        {"name": "x", "value": 1, "tags": {"k": 5}},
        {"name": "x", "value": 1, "tags": "k=v"},
    ],
)
async def test_bad_custom_metrics_refused_and_counted(node: Node, params: dict[str, Any]) -> None:
    with pytest.raises(ControlError) as info:
        await monitor_methods.record_metric(node, params)
    assert info.value.code == "bad_request"
    assert node.metrics.get("metrics_rejected") == 1


async def test_metrics_method_errors(node: Node) -> None:
    with pytest.raises(ControlError, match="no metric called"):
        await monitor_methods.metrics(node, {"name": "nope"})
    with pytest.raises(ControlError, match="expected a duration"):
        await monitor_methods.metrics(node, {"window": "forever"})
    with pytest.raises(ControlError, match="window must be within"):
        await monitor_methods.metrics(node, {"window": 0})


async def test_disabled_monitor_stores_nothing(node: Node) -> None:
    node.metrics.observing = False
    with pytest.raises(ControlError, match="disabled"):
        await monitor_methods.record_metric(node, {"name": "x", "value": 1})
    assert not node.metrics.observe("query_ms", 3.0)
    assert node.metrics.series.series == {}


def test_prometheus_names() -> None:
    assert metric_name("query-ms.p95") == "duckpeer_query_ms_p95"
    assert label_name("9lives") == "_9lives"


def http_get(url: str) -> tuple[int, str, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            return resp.status, resp.headers["Content-Type"], resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers["Content-Type"], exc.read().decode()


async def test_prometheus_endpoint_scraped_over_http(node: Node) -> None:
    node.metrics.inc("changesets_applied", 7)
    node.peers["PeerA"] = PeerState("PeerA", "cid", {})
    node.monitor.sample(time.time())
    node.metrics.observe("query_ms", 12.5)
    node.metrics.observe("images", 3.0, {"gpu": "a100"})
    async with trio.open_nursery() as nursery:
        bound = await nursery.start(serve_prometheus, node, "127.0.0.1", 0)
        url = f"http://127.0.0.1:{bound[0][1]}"
        code, ctype, body = await trio.to_thread.run_sync(http_get, url + "/metrics")
        missing, _, _ = await trio.to_thread.run_sync(http_get, url + "/other")
        nursery.cancel_scope.cancel()
    assert code == 200 and ctype.startswith("text/plain")
    assert "duckpeer_changesets_applied_total 7.0" in body
    assert 'duckpeer_replication_lag_changesets{peer="PeerA"} 0.0' in body
    assert 'duckpeer_images{gpu="a100"} 3.0' in body
    assert 'duckpeer_query_ms_window{quantile="0.99"} 12.5' in body
    assert "# TYPE duckpeer_peers_connected gauge" in body
    assert missing == 404
    assert node.metrics.get("prometheus_scrapes") == 1


async def test_prometheus_bad_request_counted_not_fatal(node: Node) -> None:
    async with trio.open_nursery() as nursery:
        bound = await nursery.start(serve_prometheus, node, "127.0.0.1", 0)
        stream = await trio.open_tcp_stream("127.0.0.1", bound[0][1])
        await stream.send_all(b"\x00garbage\r\n\r\n")
        reply = await stream.receive_some(1000)
        await stream.aclose()
        code, _, _ = await trio.to_thread.run_sync(
            http_get, f"http://127.0.0.1:{bound[0][1]}/metrics"
        )
        nursery.cancel_scope.cancel()
    assert reply.startswith(b"HTTP/1.1 400")
    assert node.metrics.get("prometheus_bad_requests") == 1
    assert code == 200


async def test_history_persists_across_a_restart(tmp_path: Path) -> None:
    from daemon.monitor import service as monitor_mod

    config = Config(data_dir=tmp_path, monitor=MonitorConfig(persist=True, sample_interval=60))
    store = Store(tmp_path / "db.duckdb")
    try:
        first = Node(config, store, "me")
        async with trio.open_nursery() as nursery:
            await nursery.start(monitor_mod.serve, first)  # one sample, then sleeps
            first.metrics.observe("build_errors", 3.0, {"stage": "ci"})
            nursery.cancel_scope.cancel()  # shutdown flushes the history
        second = Node(config, store, "me")
        async with trio.open_nursery() as nursery:
            await nursery.start(monitor_mod.serve, second)
            nursery.cancel_scope.cancel()
    finally:
        store.close()
    assert second.monitor.latest("build_errors", (("stage", "ci"),)) == 3.0
    assert second.monitor.latest("peers_connected") == 0.0
    assert (tmp_path / "metrics.duckdb").exists()
    assert second.metrics.get("metrics_persist_errors") == 0


async def test_unusable_history_file_leaves_the_monitor_in_memory(tmp_path: Path) -> None:
    from daemon.monitor import service as monitor_mod

    (tmp_path / "metrics.duckdb").write_bytes(b"not a duckdb file" * 100)
    config = Config(data_dir=tmp_path, monitor=MonitorConfig(persist=True, sample_interval=60))
    store = Store(tmp_path / "db.duckdb")
    try:
        node = Node(config, store, "me")
        async with trio.open_nursery() as nursery:
            await nursery.start(monitor_mod.serve, node)
            nursery.cancel_scope.cancel()
    finally:
        store.close()
    assert node.metrics.get("metrics_persist_errors") == 1
    assert node.monitor.latest("peers_connected") == 0.0


async def test_conflicts_open_counts_keys_with_several_heads(node: Node, tmp_path: Path) -> None:
    from conflictkit import exchange, insert_model, update, with_strategy

    from daemon.monitor.service import ConflictCounter
    from protocol.conflicts import Strategy

    count_conflicts = ConflictCounter()
    assert await count_conflicts(node) == 0
    other = Store(tmp_path / "other.duckdb")
    a, b = with_strategy(node.store, Strategy.MANUAL), with_strategy(other, Strategy.MANUAL)
    insert_model(a, "A", "m", model_name="m")
    exchange([a, b])
    update(a, "A", "m", modality="text")
    update(b, "B", "m", modality="vision")
    exchange([a, b])
    other.close()
    assert await count_conflicts(node) == 1


async def test_conflict_count_is_read_again_only_after_a_change(node: Node) -> None:
    from daemon.monitor.service import ConflictCounter

    reads = []
    real = node.read

    async def counting(fn: object) -> object:
        reads.append(fn)
        return await real(fn)  # type: ignore[arg-type]

    node.read = counting  # type: ignore[method-assign]
    counter = ConflictCounter()
    assert await counter(node) == 0
    assert await counter(node) == 0
    assert len(reads) == 1  # same CID: not read again
    await node.commit_local(lambda store: [])  # any change moves the CID
    await counter(node)
    assert len(reads) == 2
