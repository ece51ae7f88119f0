"""peerctl kg: argument errors, output, export files (against a fake daemon)."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from test_peerctl_cli import FakeDaemon, one_error_line, run

from peerctl.cli import EXIT_FAILED, EXIT_OK, EXIT_USAGE
from peerctl.kg_export import GRAPHML_NS

GRAPH = {
    "nodes": {
        "id": ["model:bert", "family:bert", "hw:cuda", "config:bert|cuda|8|fp16"],
        "kind": ["model", "family", "hardware", "config"],
        "label": ["bert", "bert", "cuda", "bert|cuda|8|fp16"],
        "batch_size": [None, None, None, 8],
        "throughput": [None, None, None, 812.5],
    },
    "edges": {
        "src": ["model:bert", "model:bert", "config:bert|cuda|8|fp16"],
        "dst": ["family:bert", "hw:cuda", "model:bert"],
        "kind": ["variant_of", "runs_on", "config_of"],
        "weight": [1.0, 3.0, 1.0],
        "reason": [None, None, None],
    },
}
SIMILAR = {
    "node": "config:bert|cuda|8|fp16",
    "kind": "config",
    "configs": 2,
    "elapsed_ms": 0.4,
    "matches": [{"node": "config:bert|cuda|16|fp16", "kind": "config", "similarity": 0.97,
                 "throughput": 900.0, "latency_ms": 17.0, "memory_mb": 3000.0, "n_results": 2}],
}  # fmt: skip
COMPAT = [
    {"model_id": "llama-70b", "hardware_id": "mps", "status": "incompatible",
     "reason": "out of memory", "evidence": "compatibility test", "results": 0, "tests": 1},
]  # fmt: skip


def not_found(params: dict[str, Any]) -> Any:
    raise RuntimeError("no configuration or model 'x' in the graph")


HANDLERS = {
    "kg_graph": lambda p: GRAPH,
    "kg_similar": lambda p: SIMILAR if p["node"] != "x" else not_found(p),
    "kg_compat": lambda p: [dict(r) for r in COMPAT],
    "kg_patterns": lambda p: {"regressions": [{"result_id": "r1", "z": -7.5}], "outliers": []},
    "kg_populate": lambda p: {"seconds": 0.1, "configs": 2},
}


@pytest.fixture
def daemon(sock_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeDaemon]:
    path = sock_dir / "fake.sock"
    with FakeDaemon(path, HANDLERS) as fake:
        monkeypatch.setenv("DUCKPEER_SOCKET", str(path))
        yield fake


@pytest.mark.parametrize(
    "argv",
    [
        ["kg"],
        ["kg", "similar"],
        ["kg", "similar", "x", "--top-k", "0"],
        ["kg", "similar", "x", "--min-similarity", "3"],
        ["kg", "patterns", "--limit", "0"],
        ["kg", "export", "--format", "gexf"],
    ],
)
def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str], argv: list[str]) -> None:
    code, out, err = run(capsys, argv)
    assert (code, out) == (EXIT_USAGE, "")
    one_error_line(err)


def test_similar_table_json_and_not_found(
    capsys: pytest.CaptureFixture[str], daemon: FakeDaemon
) -> None:
    code, out, _ = run(capsys, ["kg", "similar", "bert|cuda|8|fp16", "--top-k", "3"])
    assert code == EXIT_OK
    assert "config:bert|cuda|16|fp16" in out and "0.97" in out
    assert daemon.calls[-1] == (
        "kg_similar", {"node": "bert|cuda|8|fp16", "top_k": 3, "min_similarity": -1.0},
    )  # fmt: skip
    code, out, _ = run(capsys, ["kg", "similar", "bert|cuda|8|fp16", "--json"])
    assert json.loads(out) == SIMILAR
    code, out, err = run(capsys, ["kg", "similar", "x"])
    assert (code, out) == (EXIT_FAILED, "")
    assert "no configuration" in one_error_line(err)


def test_compat_patterns_rebuild(capsys: pytest.CaptureFixture[str], daemon: FakeDaemon) -> None:
    code, out, _ = run(capsys, ["kg", "compat"])
    assert code == EXIT_OK and "incompatible" in out and "out of memory" in out
    code, out, _ = run(capsys, ["kg", "compat", "--json"])
    assert json.loads(out)["llama-70b"]["mps"]["status"] == "incompatible"
    code, out, _ = run(capsys, ["kg", "patterns"])
    assert code == EXIT_OK and "regressions (1)" in out and "-7.5" in out
    code, out, _ = run(capsys, ["kg", "rebuild", "--json"])
    assert json.loads(out)["configs"] == 2


def test_export_graphml_and_json(
    capsys: pytest.CaptureFixture[str], daemon: FakeDaemon, tmp_path: Path
) -> None:
    path = tmp_path / "kg.graphml"
    code, _, err = run(capsys, ["kg", "export", "--output", str(path)])
    assert code == EXIT_OK and "4 nodes and 3 edges" in err[0]
    root = ET.parse(path).getroot()
    ns = {"g": GRAPHML_NS}
    nodes = root.findall("g:graph/g:node", ns)
    assert [n.get("id") for n in nodes] == GRAPH["nodes"]["id"]
    assert len(root.findall("g:graph/g:edge", ns)) == 3
    keys = {k.get("attr.name"): k.get("attr.type") for k in root.findall("g:key", ns)}
    assert keys["batch_size"] == "long" and keys["weight"] == "double"
    assert keys["kind"] == "string"
    code, out, _ = run(capsys, ["kg", "export", "--format", "json"])
    data = json.loads(out)
    assert data["directed"] and len(data["nodes"]) == 4 and len(data["links"]) == 3
    assert data["links"][0] == {"source": "model:bert", "target": "family:bert",
                                "kind": "variant_of", "weight": 1.0}  # fmt: skip


def test_networkx_reads_both_formats(tmp_path: Path) -> None:
    """The consumer the formats are for (networkx; Gephi reads the same GraphML)."""
    import io

    import networkx as nx

    from peerctl import kg_export

    path = tmp_path / "kg.graphml"
    with path.open("w") as out:
        kg_export.write_graphml(GRAPH, out)
    g = nx.read_graphml(path)
    assert g.is_directed() and g.number_of_nodes() == 4 and g.number_of_edges() == 3
    assert g.nodes["config:bert|cuda|8|fp16"]["throughput"] == 812.5
    assert g.nodes["config:bert|cuda|8|fp16"]["batch_size"] == 8
    assert g.edges["model:bert", "hw:cuda"]["kind"] == "runs_on"
    text = io.StringIO()
    json.dump(kg_export.node_link(GRAPH), text)
    h = nx.node_link_graph(json.loads(text.getvalue()), edges="links")
    assert h.is_multigraph() and h.number_of_nodes() == 4 and h.number_of_edges() == 3
