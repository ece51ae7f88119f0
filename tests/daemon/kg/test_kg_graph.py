"""daemon.kg.graph: the knowledge graph on constructed data where the answer is known, and the
incremental refresh equal to a full rebuild."""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kgkit import (
    compat,
    delete_results,
    hardware,
    models,
    open_graph,
    results,
    rid,
    snapshot,
)
from storekit import chain

from daemon.kg import graph as kg_module
from daemon.kg.graph import KnowledgeGraph
from daemon.kg.index import CATEGORIES
from daemon.kg.patterns import compatibility_map, detect_patterns
from daemon.store.database import Store


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store(tmp_path / "graph.duckdb")
    yield s
    s.close()


@pytest.fixture
def graph(store: Store) -> KnowledgeGraph:
    return open_graph(store)


def query(store: Store, sql: str) -> list[tuple]:
    cur = store.cursor()
    try:
        return cur.execute(sql).fetchall()
    finally:
        cur.close()


def similar(graph: KnowledgeGraph, node: str, k: int = 5) -> list[str]:
    graph.flush()
    cur = graph.store.cursor()
    try:
        return [m.node for m in graph.index.similar(cur, node, k, -1.0)[2]]
    finally:
        cur.close()


# -- families, nodes and edges ------------------------------------------------------------------


def test_families_from_column_or_name(store: Store, graph: KnowledgeGraph) -> None:
    store.commit_local(
        "me",
        [
            models(
                [
                    ("llama-2-7b", None, "text"),
                    ("meta-llama/Llama-2-13b-chat-hf", None, "text"),
                    ("bert-base-uncased", None, None),
                    ("t5-small", "T5", None),
                    ("mistral-7b-instruct-v0.2", None, None),
                    ("vit-base-patch16-224", None, "vision"),
                    ("gpt2", None, None),
                ]
            )
        ],
    )
    graph.flush()
    families = dict(query(store, "SELECT model_id, family FROM kg.models"))
    assert families == {
        "llama-2-7b": "llama-2",
        "meta-llama/Llama-2-13b-chat-hf": "llama-2",
        "bert-base-uncased": "bert",
        "t5-small": "t5",  # the column wins (lower-cased)
        "mistral-7b-instruct-v0.2": "mistral",
        "vit-base-patch16-224": "vit",
        "gpt2": "gpt2",
    }
    variant = query(store, "SELECT src, dst FROM kg.edges WHERE kind = 'variant_of' ORDER BY 1")
    assert ("model:llama-2-7b", "family:llama-2") in variant
    assert len(variant) == 7
    kinds = dict(query(store, "SELECT kind, count(*) FROM kg.nodes GROUP BY 1"))
    assert kinds == {"model": 7, "family": 6}


def test_nodes_and_edges_follow_results(store: Store, graph: KnowledgeGraph) -> None:
    store.commit_local("me", [hardware([("cuda:A100", "cuda"), ("cpu", "cpu")])])
    store.commit_local(
        "me",
        [
            results(
                [
                    (1, "bert-base", "cuda:A100", 8, "fp16", 800.0, 10.0, 2000.0, 1),
                    (2, "bert-base", "cuda:A100", 8, "fp16", 200.0, 40.0, 2000.0, 2),
                    (3, "bert-base", "cpu", 8, "fp16", 50.0, 160.0, 1000.0, 3),
                ]
            )
        ],
    )
    graph.flush()
    stats = query(store, "SELECT config_id, n_results, throughput FROM kg.config_stats ORDER BY 1")
    assert stats[0][:2] == ("bert-base|cpu|8|fp16", 1)
    assert stats[1][:2] == ("bert-base|cuda:A100|8|fp16", 2)
    assert stats[1][2] == pytest.approx(400.0)  # geometric mean of 800 and 200
    runs_on = query(store, "SELECT dst, weight FROM kg.edges WHERE kind = 'runs_on' ORDER BY 1")
    assert runs_on == [("hw:cpu", 1.0), ("hw:cuda:A100", 2.0)]
    store.commit_local("me", [delete_results([3])])
    graph.flush()
    runs_on = query(store, "SELECT dst FROM kg.edges WHERE kind = 'runs_on'")
    assert runs_on == [("hw:cuda:A100",)]
    assert query(store, "SELECT count(*) FROM kg.nodes WHERE kind = 'config'") == [(1,)]


# -- similarity --------------------------------------------------------------------------------


def planted_configs(store: Store) -> None:
    """A target configuration, a near twin on other hardware, and clearly different ones."""
    rows = []
    n = 0
    spec = [
        ("resnet-50", "cuda:A100", 32, "fp16", 5000.0, 6.4, 3000.0),  # target
        ("resnet-101", "cuda:A100", 32, "fp16", 4800.0, 6.7, 3100.0),  # twin
        ("resnet-50", "cpu", 1, "fp32", 40.0, 25.0, 800.0),
        ("whisper-large", "cpu", 1, "fp32", 0.5, 2000.0, 9000.0),
        ("llama-7b", "cuda:A100", 1, "fp16", 30.0, 33.0, 14000.0),
        ("bert-base", "mps", 4, "fp32", 300.0, 13.0, 1200.0),
    ]
    for model, hw, batch, prec, thr, lat, mem in spec:
        for jitter in (0.98, 1.0, 1.02):
            n += 1
            rows.append((n, model, hw, batch, prec, thr * jitter, lat / jitter, mem, n))
    store.commit_local("me", [results(rows)])


def test_similar_configuration_ranks_first(store: Store, graph: KnowledgeGraph) -> None:
    planted_configs(store)
    ranked = similar(graph, "resnet-50|cuda:A100|32|fp16")
    assert ranked[0] == "config:resnet-101|cuda:A100|32|fp16"
    assert "config:resnet-50|cuda:A100|32|fp16" not in ranked  # never itself
    # slow, high-latency, memory-hungry configurations find each other across hardware
    ranked = similar(graph, "config:whisper-large|cpu|1|fp32", 1)
    assert ranked == ["config:llama-7b|cuda:A100|1|fp16"]
    assert similar(graph, "resnet-50|cuda:A100|32|fp16", 10)[-1] == (
        "config:whisper-large|cpu|1|fp32"
    )


def test_similar_thresholds_and_unknown_nodes(store: Store, graph: KnowledgeGraph) -> None:
    planted_configs(store)
    graph.flush()
    cur = store.cursor()
    try:
        _, _, top = graph.index.similar(cur, "resnet-50|cuda:A100|32|fp16", 100, 0.9)
        assert [m.node for m in top] == ["config:resnet-101|cuda:A100|32|fp16"]
        assert top[0].similarity > 0.9
        assert top[0].details["throughput"] == pytest.approx(4800.0, rel=1e-3)
        node, kind, models_ = graph.index.similar(cur, "resnet-50", 5, -1.0)
        assert (node, kind) == ("model:resnet-50", "model")
        assert "model:resnet-50" not in [m.node for m in models_] and len(models_) == 4
        with pytest.raises(KeyError):
            graph.index.similar(cur, "no-such-model", 5, -1.0)
        with pytest.raises(KeyError):
            graph.index.similar(cur, "model:resnet-50|cuda:A100|32|fp16", 5, -1.0)
    finally:
        cur.close()


def test_index_patches_match_a_fresh_load(store: Store, graph: KnowledgeGraph) -> None:
    planted_configs(store)
    before = similar(graph, "resnet-50|cuda:A100|32|fp16")
    # a changeset that makes the llama configuration the twin and removes resnet-101
    store.commit_local(
        "me",
        [results([(100, "llama-7b", "cuda:A100", 32, "fp16", 5000.0, 6.4, 3000.0, 100)])],
    )
    store.commit_local("me", [delete_results([4, 5, 6])])
    patched = similar(graph, "resnet-50|cuda:A100|32|fp16")
    assert patched != before
    assert patched[0] == "config:llama-7b|cuda:A100|32|fp16"
    graph.index.invalidate(None)
    assert similar(graph, "resnet-50|cuda:A100|32|fp16") == patched
    # a family change patches the model's configurations only, like a fresh load
    store.commit_local("me", [models([("resnet-50", "vision-cnn", "vision")])])
    graph.flush()
    patched_state = index_state(graph)
    assert graph.index.info["model_id"].tolist().count("resnet-50") == 2
    graph.index.invalidate(None)
    assert index_state(graph) == patched_state
    fam = {v: c for c, v in graph.index._codes["family"]._codes.items()}
    i = graph.index.pos["resnet-50|cpu|1|fp32"]
    assert fam[int(graph.index.cats[i, 2])] == "vision-cnn"


# -- patterns, regressions, compatibility ---------------------------------------------------------


def test_planted_regression_is_found_and_noise_is_not(store: Store, graph: KnowledgeGraph) -> None:
    rng = random.Random(3)
    rows = []
    for n in range(40):  # steady config: 1 % noise, no regression
        rows.append((n, "bert-base", "cuda:A100", 8, "fp16", 1000 * rng.gauss(1, 0.01), 8.0,
                     2000.0, n))  # fmt: skip
    for n in range(40, 60):  # second config: steady, then one run 30 % slower
        rows.append((n, "t5-small", "cuda:A100", 8, "fp16", 500 * rng.gauss(1, 0.01), 16.0,
                     1500.0, n))  # fmt: skip
    rows.append((60, "t5-small", "cuda:A100", 8, "fp16", 350.0, 16.0, 1500.0, 60))
    rows.append((61, "t5-small", "cuda:A100", 8, "fp16", 500.0, 16.0, 1500.0, 61))
    store.commit_local("me", [results(rows)])
    graph.flush()
    cur = store.cursor()
    try:
        found = detect_patterns(cur, 50)
    finally:
        cur.close()
    regressions = found["regressions"]
    assert [r["result_id"] for r in regressions] == [rid(60)]
    assert regressions[0]["metric"] == "throughput"
    assert regressions[0]["throughput"] == 350.0
    assert regressions[0]["z"] < -4 and regressions[0]["history"] >= 10
    assert rid(60) in [o["result_id"] for o in found["outliers"]]


def test_speedups_scaling_and_precision(store: Store, graph: KnowledgeGraph) -> None:
    store.commit_local("me", [hardware([("cpu", "cpu"), ("cuda:A100", "cuda")])])
    rows, n = [], 0
    for model in ("llama-2-7b", "llama-2-13b"):
        for batch, gain in ((1, 1.0), (2, 1.9), (4, 3.6), (8, 3.8), (16, 3.9)):
            for hw, speed in (("cpu", 1.0), ("cuda:A100", 10.0)):
                for prec, factor in (("fp32", 1.0), ("fp16", 2.0)):
                    n += 1
                    thr = 10 * speed * gain * factor
                    rows.append((n, model, hw, batch, prec, thr, 1000 * batch / thr, 1000.0, n))
    store.commit_local("me", [results(rows)])
    graph.flush()
    cur = store.cursor()
    try:
        found = detect_patterns(cur, 100)
    finally:
        cur.close()
    speedups = found["hardware_speedups"]
    assert [(s["family"], s["hardware_id"]) for s in speedups] == [("llama-2", "cuda:A100")]
    assert speedups[0]["speedup_vs_cpu"] == pytest.approx(10.0)
    scaling = found["batch_scaling"]
    assert len(scaling) == 8 and all(s["saturates_at"] == 4 for s in scaling)
    assert all(s["batches"] == [1, 2, 4, 8, 16] for s in scaling)
    effects = found["precision_effects"]
    assert {(e["hardware_id"], e["precision"]) for e in effects} == {
        ("cpu", "fp16"),
        ("cuda:A100", "fp16"),
    }
    assert all(e["throughput_vs_fp32"] == pytest.approx(2.0) for e in effects)
    assert found["regressions"] == [] and found["outliers"] == []


def test_compatibility_map_with_reasons(store: Store, graph: KnowledgeGraph) -> None:
    store.commit_local(
        "me",
        [
            compat(
                [
                    (1, "llama-70b", "mps", False, "out of memory: needs 140 GB", 1),
                    (2, "bert-base", "webgpu", False, "unsupported op: gelu", 1),
                    (3, "bert-base", "webgpu", True, None, 2),  # fixed later: compatible now
                    (4, "whisper", "qnn", False, None, 1),
                ]
            ),
            results([(1, "bert-base", "cuda", 1, "fp32", 100.0, 10.0, 500.0, 1)]),
        ],
    )
    graph.flush()
    cur = store.cursor()
    try:
        rows = {(r["model_id"], r["hardware_id"]): r for r in compatibility_map(cur)}
    finally:
        cur.close()
    assert rows[("llama-70b", "mps")]["status"] == "incompatible"
    assert rows[("llama-70b", "mps")]["reason"] == "out of memory: needs 140 GB"
    assert rows[("bert-base", "webgpu")]["status"] == "compatible"
    assert rows[("bert-base", "webgpu")]["tests"] == 2
    assert rows[("whisper", "qnn")]["reason"] == "initialization failed"
    assert rows[("bert-base", "cuda")]["status"] == "compatible"
    assert rows[("bert-base", "cuda")]["evidence"] == "benchmark results"
    incompatible = query(
        store, "SELECT src, dst, reason FROM kg.edges WHERE kind = 'incompatible_with' ORDER BY 1"
    )
    assert incompatible == [
        ("model:llama-70b", "hw:mps", "out of memory: needs 140 GB"),
        ("model:whisper", "hw:qnn", "initialization failed"),
    ]


def index_state(graph: KnowledgeGraph) -> dict[str, tuple]:
    """The cached similarity matrix by configuration (after any pending patch)."""
    cur = graph.store.cursor()
    try:
        graph.index.ensure(cur)
    finally:
        cur.close()
    index = graph.index
    names = [{c: v for v, c in index._codes[n]._codes.items()} for n in CATEGORIES]
    return {
        cid: (
            tuple(round(float(x), 6) for x in index.z[i]),
            float(round(index.norm2[i], 6)),
            tuple(names[b].get(int(c)) for b, c in enumerate(index.cats[i])),
        )
        for cid, i in index.pos.items()
    }


# -- incremental == full rebuild --------------------------------------------------------------

MODELS_ = ["llama-2-7b", "bert-base", "t5-small"]
HW = ["cpu", "cuda:A100", "mps"]

ops = st.lists(
    st.one_of(
        st.tuples(
            st.just("result"),
            st.integers(0, 30),  # result number: repeats are updates
            st.sampled_from(MODELS_),
            st.sampled_from(HW),
            st.sampled_from([1, 8]),
            st.sampled_from(["fp32", "fp16", None]),
            st.one_of(st.none(), st.floats(0.5, 5000)),
        ),
        st.tuples(st.just("delete"), st.integers(0, 30)),
        st.tuples(
            st.just("compat"),
            st.integers(0, 5),
            st.sampled_from(MODELS_),
            st.sampled_from(HW),
            st.booleans(),
        ),
        st.tuples(st.just("model"), st.sampled_from(MODELS_), st.sampled_from(["a", "b", None])),
    ),
    min_size=1,
    max_size=25,
)


def _changes(op: tuple, t: int) -> list:
    kind = op[0]
    if kind == "result":
        _, n, m, h, b, p, thr = op
        return [results([(n, m, h, b, p, thr, None if thr is None else 1000 / thr, 100.0, t)])]
    if kind == "delete":
        return [delete_results([op[1]])]
    if kind == "compat":
        _, n, m, h, ok = op
        return [compat([(n, m, h, ok, None if ok else "broken", t)])]
    return [models([(op[1], op[2], "text")])]


@settings(
    max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(history=ops, batch=st.integers(1, 4), seed=st.integers(0, 1000))
def test_incremental_equals_full_rebuild(
    tmp_path_factory: pytest.TempPathFactory, history: list, batch: int, seed: int
) -> None:
    """Random inserts, updates, deletes (some of absent rows), compat verdicts and model
    changes, committed locally or replicated from another origin in batches, flushed at
    random points: the graph equals a rebuild from the same tables."""
    rng = random.Random(seed)
    store = Store(tmp_path_factory.mktemp("kg") / "p.duckdb")
    try:
        graph = open_graph(store)
        remote_specs = []
        for t, op in enumerate(history):
            changes = _changes(op, t)
            if op[0] == "delete" and not query(
                store, f"SELECT 1 FROM store.performance_results WHERE result_id = '{rid(op[1])}'"
            ):
                continue  # a delete of an absent row is refused locally
            if rng.random() < 0.3:
                remote_specs.append((10_000 + t, changes))
            else:
                store.commit_local("me", changes)
            if rng.random() < 0.3:
                graph.flush()
        blocks = chain("other", remote_specs)
        for start in range(0, len(blocks), batch):
            store.apply_blocks(blocks[start : start + batch])
        graph.flush()
        incremental = snapshot(store)
        patched = index_state(graph)
        graph.populate()
        assert snapshot(store) == incremental
        assert index_state(graph) == patched
    finally:
        store.close()


def test_a_graph_behind_the_store_is_rebuilt_on_open(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.duckdb")
    graph = open_graph(store)
    store.commit_local("me", [results([(1, "bert-base", "cpu", 1, "fp32", 10.0, 100.0, 1.0, 1)])])
    # no flush: as if the daemon died between the commit and the graph update
    store.close()
    store = Store(tmp_path / "s.duckdb")
    try:
        graph = KnowledgeGraph(store)
        assert graph.open() is not None  # rebuilt
        assert query(store, "SELECT config_id FROM kg.configs") == [("bert-base|cpu|1|fp32",)]
        assert KnowledgeGraph(store).open() is None  # current: nothing to do
        query(store, "UPDATE kg.meta SET version = 0")  # built by another code version
        assert KnowledgeGraph(store).open() is not None
    finally:
        store.close()


def test_graph_is_not_replicated(store: Store, graph: KnowledgeGraph, tmp_path: Path) -> None:
    """kg tables never enter changesets or the database CID."""
    store.commit_local("me", [results([(1, "bert-base", "cpu", 1, "fp32", 10.0, 100.0, 1.0, 1)])])
    cid = store.db_cid()
    graph.flush()
    graph.populate()
    graph.refresh_similar_edges()
    assert store.db_cid() == cid
    other = Store(tmp_path / "other.duckdb")
    try:
        blocks = [b for batch in store.missing_for({}) for b in batch]
        other.apply_blocks(blocks)
        assert other.db_cid() == cid
    finally:
        other.close()


def test_a_bulk_flush_rebuilds_instead(
    store: Store, graph: KnowledgeGraph, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(kg_module, "REBUILD_MIN_KEYS", 5)
    store.commit_local("me", [results([(1, "bert-base", "cpu", 1, "fp32", 10.0, 1.0, 1.0, 1)])])
    assert "rebuilt" not in graph.flush()
    rows = [(n, "bert-base", "cpu", 1 + n % 2, "fp32", 10.0 + n, 1.0, 1.0, n) for n in range(2, 12)]
    store.commit_local("me", [results(rows)])
    done = graph.flush()
    assert done["rebuilt"] and done["rows"] == 10 and done["configs"] == 2
    assert not graph.has_pending()
    assert similar(graph, "bert-base|cpu|1|fp32") == ["config:bert-base|cpu|2|fp32"]
    before = snapshot(store)
    graph.populate()
    assert snapshot(store) == before


def test_pending_keys_past_the_cap_are_dropped_and_the_fold_rebuilds(
    store: Store, graph: KnowledgeGraph, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(kg_module, "REBUILD_MIN_KEYS", 1_000)  # not the threshold path
    monkeypatch.setattr(kg_module, "MAX_PENDING_KEYS", 5)
    store.commit_local("me", [results([(1, "bert-base", "cpu", 1, "fp32", 10.0, 1.0, 1.0, 1)])])
    assert graph.pending_rows() == 1 and graph._pending  # still collecting keys
    rows = [(n, "bert-base", "cpu", 1 + n % 2, "fp32", 10.0 + n, 1.0, 1.0, n) for n in range(2, 8)]
    store.commit_local("me", [results(rows)])
    assert graph.pending_rows() == 7 and graph.has_pending()
    assert not graph._pending and not graph._pending_arrow  # nothing held past the cap
    done = graph.flush()
    assert done["rebuilt"] and done["rows"] == 7
    assert not graph.has_pending() and graph.pending_rows() == 0
    before = snapshot(store)
    graph.populate()
    assert snapshot(store) == before


def test_bulk_keys_are_held_apart_from_their_changeset(store: Store, graph: KnowledgeGraph) -> None:
    """The pending key column is a copy: a view of the changeset's column would keep its
    whole record batch (every column of every pending chunk) in memory until the fold."""
    pa = pytest.importorskip("pyarrow")
    from daemon.writes import bulk
    from peerctl.client import arrow_stream

    n = 600  # above COLUMNAR_MIN_ROWS: the results travel as Arrow
    records = pa.table({
        "model_name": ["bert-base", "gpt2"] * (n // 2),
        "hardware_type": ["cpu"] * n,
        "throughput": [float(i) for i in range(n)],
        "latency": [1.0] * n,
    })  # fmt: skip
    prepared = bulk.prepare(store, arrow_stream(records))
    item = store.commit_local("me", bulk.changes(store, prepared))
    (results_change,) = [t for t in item.changeset.tables if t.table == "performance_results"]
    assert results_change.arrow is not None
    committed = {b.address for c in results_change.arrow.column(0).chunks
                 for b in c.storage.buffers() if b is not None}  # fmt: skip
    (held,) = graph._pending_arrow["performance_results"]
    assert len(held) == n
    assert not committed & {b.address for c in held.chunks for b in c.storage.buffers() if b}
    assert graph.flush()["rows"] >= n
    assert query(store, "SELECT count(*) FROM kg.result_configs") == [(n,)]
