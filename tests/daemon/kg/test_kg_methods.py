"""daemon.kg.methods: the kg service and control methods in process (a real Node and
Store, no network): queries see committed writes, bad parameters are refused."""

from __future__ import annotations

import io
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import duckdb
import pytest
import trio
from kgkit import compat, results

from daemon.config import Config
from daemon.kg import methods as kg_methods
from daemon.node import Node
from daemon.store.database import Store
from peerctl import kg_export
from protocol.control import ControlError


@pytest.fixture
async def node(tmp_path: Path) -> AsyncIterator[Node]:
    store = Store(tmp_path / "duckpeer.duckdb")
    node = Node(Config(data_dir=tmp_path), store, "peerA")
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(kg_methods.serve, node)
            with trio.fail_after(30):
                while not kg_methods.is_ready(node):
                    await trio.sleep(0.01)
            yield node
            nursery.cancel_scope.cancel()
    finally:
        store.close()


ROWS = [
    (1, "resnet-50", "cuda:A100", 32, "fp16", 5000.0, 6.4, 3000.0, 1),
    (2, "resnet-101", "cuda:A100", 32, "fp16", 4800.0, 6.7, 3100.0, 2),
    (3, "resnet-50", "cpu", 1, "fp32", 40.0, 25.0, 800.0, 3),
    (4, "whisper", "cpu", 1, "fp32", 0.5, 2000.0, 9000.0, 4),
]


async def write(node: Node, *changes: Any) -> None:
    await node.commit_local(lambda _store: list(changes))


async def test_similar_sees_committed_writes(node: Node) -> None:
    await write(node, results(ROWS))
    out = await kg_methods.kg_similar(node, {"node": "resnet-50|cuda:A100|32|fp16", "top_k": 2})
    assert out["node"] == "config:resnet-50|cuda:A100|32|fp16" and out["kind"] == "config"
    assert out["matches"][0]["node"] == "config:resnet-101|cuda:A100|32|fp16"
    assert len(out["matches"]) == 2 and out["configs"] == 4
    await write(node, results([(5, "resnet-152", "cuda:A100", 32, "fp16", 5000.0, 6.4, 3000.0, 5)]))
    out = await kg_methods.kg_similar(node, {"node": "config:resnet-50|cuda:A100|32|fp16"})
    assert out["matches"][0]["node"] == "config:resnet-152|cuda:A100|32|fp16"
    assert out["configs"] == 5
    assert node.metrics.get("kg_queries") == 2


@pytest.mark.parametrize(
    ("params", "code"),
    [
        ({}, "bad_request"),
        ({"node": 5}, "bad_request"),
        ({"node": "x", "top_k": 0}, "bad_request"),
        ({"node": "x", "top_k": 2.5}, "bad_request"),
        ({"node": "x", "top_k": True}, "bad_request"),
        ({"node": "x", "min_similarity": 2}, "bad_request"),
        ({"node": "x", "min_similarity": "high"}, "bad_request"),
        ({"node": "no-such-config"}, "not_found"),
    ],
)
async def test_similar_refuses_bad_parameters(node: Node, params: dict, code: str) -> None:
    await write(node, results(ROWS))
    with pytest.raises(ControlError) as info:
        await kg_methods.METHODS["kg_similar"](node, params)
    assert info.value.code == code
    assert node.metrics.get(f"kg_refused_{code}") == 1


async def test_patterns_compat_and_graph(node: Node) -> None:
    await write(node, results(ROWS), compat([(1, "whisper", "mps", False, "no fp64", 1)]))
    patterns = await kg_methods.kg_patterns(node, {"limit": 5})
    assert set(patterns) == {
        "hardware_speedups", "batch_scaling", "precision_effects", "outliers", "regressions",
    }  # fmt: skip
    with pytest.raises(ControlError):
        await kg_methods.kg_patterns(node, {"limit": -1})
    rows = await kg_methods.kg_compat(node, {})
    assert {"model_id": "whisper", "hardware_id": "mps", "status": "incompatible"}.items() <= (
        next(r for r in rows if r["hardware_id"] == "mps").items()
    )
    graph = await kg_methods.kg_graph(node, {})
    n_nodes, n_edges = len(graph["nodes"]["id"]), len(graph["edges"]["src"])
    # 4 models (+ whisper on mps only via compat), 4 families, 3 hardware, 4 configs
    assert graph["nodes"]["kind"].count("config") == 4
    assert graph["edges"]["kind"].count("incompatible_with") == 1
    text = io.StringIO()
    kg_export.write_graphml(graph, text)
    root = ET.fromstring(text.getvalue())
    ns = {"g": kg_export.GRAPHML_NS}
    assert len(root.findall("g:graph/g:node", ns)) == n_nodes
    assert len(root.findall("g:graph/g:edge", ns)) == n_edges
    data = kg_export.node_link(graph)
    assert len(data["nodes"]) == n_nodes and len(data["links"]) == n_edges
    rebuilt = await kg_methods.kg_populate(node, {})
    assert rebuilt["configs"] == 4 and rebuilt["edges"] == n_edges


async def test_service_flushes_in_the_background(node: Node) -> None:
    graph = kg_methods.graph_of(node)
    await write(node, results(ROWS))
    with trio.fail_after(10):  # the service flushes after the change signal, unasked
        while node.metrics.get("kg_updates") == 0:
            await trio.sleep(0.01)
    assert not graph.has_pending()


async def test_writes_close_together_cost_one_background_fold(
    node: Node, monkeypatch: pytest.MonkeyPatch
) -> None:
    graph = kg_methods.graph_of(node)
    await write(node, results(ROWS[:1]))
    with trio.fail_after(10):
        while node.metrics.get("kg_updates") < 1:  # the first fold comes after QUIET
            await trio.sleep(0.01)
    monkeypatch.setattr(kg_methods, "FOLD_EVERY", 3600.0)  # read after the next change
    for row in ROWS[1:]:
        await write(node, results([row]))
    with trio.move_on_after(3 * kg_methods.QUIET):  # past QUIET, well short of FOLD_EVERY
        while node.metrics.get("kg_updates") < 2:
            await trio.sleep(0.01)
    assert node.metrics.get("kg_updates") == 1 and graph.pending_rows() == 3
    graph_now = await kg_methods.kg_graph(node, {})  # a query folds first, unasked
    assert graph_now["nodes"]["kind"].count("config") == 4 and not graph.has_pending()


async def test_methods_without_the_service(tmp_path: Path) -> None:
    store = Store(tmp_path / "duckpeer.duckdb")
    try:
        lonely = Node(Config(data_dir=tmp_path), store, "peerB")
        with pytest.raises(ControlError) as info:
            await kg_methods.kg_compat(lonely, {})
        assert info.value.code == "unavailable"
    finally:
        store.close()


async def test_a_failed_update_is_counted_and_rebuilds(
    node: Node, monkeypatch: pytest.MonkeyPatch
) -> None:
    graph = kg_methods.graph_of(node)

    def broken() -> dict:
        raise duckdb.IOException("disk gone")

    monkeypatch.setattr(graph, "flush", broken)
    await write(node, results(ROWS))
    await kg_methods.flush(node, graph)
    assert node.metrics.get("kg_errors") >= 1 and node.metrics.get("kg_rebuilds") >= 1
    monkeypatch.undo()
    out = await kg_methods.kg_similar(node, {"node": "resnet-50|cuda:A100|32|fp16"})
    assert out["configs"] == 4  # the rebuild read the committed rows


async def test_a_graph_that_cannot_be_built_leaves_the_daemon_serving(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(self: object) -> None:
        raise duckdb.IOException("no space left on device")

    monkeypatch.setattr(kg_methods.KnowledgeGraph, "open", broken)
    store = Store(tmp_path / "duckpeer.duckdb")
    node = Node(Config(data_dir=tmp_path), store, "peerC")
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(kg_methods.serve, node)
            with trio.fail_after(10):
                while node.metrics.get("kg_errors") == 0:
                    await trio.sleep(0.01)
            with pytest.raises(ControlError) as info:
                await kg_methods.METHODS["kg_similar"](node, {"node": "x"})
            assert info.value.code == "unavailable"
            await write(node, results(ROWS))  # writes go on
            nursery.cancel_scope.cancel()
    finally:
        store.close()
