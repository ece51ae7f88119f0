"""The layout holds: no import cycle in daemon/, dependencies point one way, features are
registered by plain imports, and daemon/ keeps few modules at its top.

Every import counts, including those under ``TYPE_CHECKING`` and inside functions: a
reader follows them all. Layers, lowest first (a module may import from its own layer
and those below it, never from a higher one):

    0 protocol
    1 daemon.store
    2 daemon.metrics, daemon.config, daemon.configcheck, daemon.ratelimit, daemon.logs,
      daemon.sdnotify,
      daemon.net.network, daemon.net.framed, daemon.net.adapter,
      daemon.net.p2ptuning   (the foundation the
      node stands on; the adapter is the network interface the node holds)
    3 daemon.node
    4 daemon.net
    5 daemon.writes, daemon.query, daemon.distq, daemon.kg, daemon.snapshot,
      daemon.monitor, daemon.watch, daemon.sim   (features; the simulator runs
      daemon.net's services)
    6 daemon.control, daemon.web   (they serve the capabilities' methods to callers)
    7 daemon.app
    8 peerctl   (the client and CLI; it reads snapshot files with daemon's reader)
    9 daemon.cli, daemon.demo, daemon.localcluster, daemon.__main__   (they start
      daemons and talk to them through peerctl's client)
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LAYERS: list[tuple[str, int]] = [  # most specific prefix first
    ("protocol", 0),
    ("daemon.store", 1),
    ("daemon.net.network", 2),
    ("daemon.net.framed", 2),
    ("daemon.net.adapter", 2),
    ("daemon.net.p2ptuning", 2),  # the network adapter's py-libp2p tuning
    ("daemon.metrics", 2),
    ("daemon.config", 2),
    ("daemon.configcheck", 2),  # config.py merges the sources, configcheck.py checks them
    ("daemon.ratelimit", 2),
    ("daemon.logs", 2),
    ("daemon.sdnotify", 2),
    ("daemon.node", 3),
    ("daemon.net", 4),
    ("daemon.writes", 5),
    ("daemon.query", 5),
    ("daemon.distq", 5),
    ("daemon.kg", 5),
    ("daemon.snapshot", 5),
    ("daemon.monitor", 5),
    ("daemon.watch", 5),
    ("daemon.sim", 5),
    ("daemon.control", 6),
    ("daemon.web", 6),
    ("daemon.app", 7),
    ("peerctl", 8),
    ("daemon.cli", 9),
    ("daemon.demo", 9),
    ("daemon.localcluster", 9),
    ("daemon.__main__", 9),
]
MAX_TOP_MODULES = 12


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, Path]:
    found = {}
    for package in ("daemon", "protocol", "peerctl"):
        for path in (ROOT / package).rglob("*.py"):
            found[module_name(path)] = path
    return found


def imports(path: Path, known: dict[str, Path]) -> set[str]:
    """Our modules that ``path`` imports (``from a.b import c`` counts a.b.c when c is a
    module, else a.b)."""
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name in known}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                if sub in known:
                    out.add(sub)
                elif node.module in known:
                    out.add(node.module)
    return out


def graph() -> dict[str, set[str]]:
    known = modules()
    return {name: imports(path, known) - {name} for name, path in known.items()}


def layer(name: str) -> int:
    for prefix, number in LAYERS:
        if name == prefix or name.startswith(prefix + "."):
            return number
    raise AssertionError(f"{name} has no layer: add it to LAYERS in tests/test_layout.py")


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1 = on the stack, 2 = done
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for start in sorted(edges):
        if start not in state and (cycle := visit(start)):
            return cycle
    return None


def test_no_import_cycle() -> None:  # in daemon/, protocol/ and peerctl/
    cycle = find_cycle(graph())
    assert cycle is None, " -> ".join(cycle or [])


def test_dependencies_point_one_way() -> None:
    upward = [
        f"{a} (layer {layer(a)}) imports {b} (layer {layer(b)})"
        for a, targets in sorted(graph().items())
        for b in sorted(targets)
        if layer(b) > layer(a)
    ]
    assert upward == []


def test_protocol_is_sans_io() -> None:
    for name, path in modules().items():
        if not name.startswith("protocol"):
            continue
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else []
            )
            for imported in names:
                top = imported.split(".")[0]
                assert top not in {"trio", "libp2p", "duckdb", "socket", "daemon"}, (name, top)


def test_few_modules_at_the_top_of_daemon() -> None:
    top = sorted(p.name for p in (ROOT / "daemon").glob("*.py"))
    assert len(top) <= MAX_TOP_MODULES, top


@pytest.mark.parametrize("path", ["daemon/app.py", "daemon/control/registry.py", "peerctl/cli.py"])
def test_features_are_registered_by_plain_imports(path: str) -> None:
    assert "importlib" not in (ROOT / path).read_text()
