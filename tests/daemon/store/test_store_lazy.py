"""pyarrow and numpy load on first use: a started daemon that has done nothing has not
loaded them (their ~45 MB of RSS), and the first write, query or similarity search
loads them and works."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

from daemon.store.lazy import LazyModule, lazy_module

HEAVY = ("pyarrow", "numpy", "protocol.columnar")


def loaded_after(code: str) -> dict[str, bool]:
    """Which of HEAVY are in sys.modules after running ``code`` in a fresh interpreter."""
    probe = f"{code}\nimport sys\nprint(*[m in sys.modules for m in {HEAVY!r}])"
    out = (
        subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
        .stdout.splitlines()[-1]
        .split()
    )
    return dict(zip(HEAVY, (w == "True" for w in out), strict=True))


def test_the_daemon_imports_without_pyarrow_or_numpy() -> None:
    assert loaded_after("import daemon.app") == dict.fromkeys(HEAVY, False)


def test_an_empty_store_and_graph_open_without_them(tmp_path: Path) -> None:
    code = (
        "from daemon.store.database import Store\n"
        "from daemon.kg.graph import KnowledgeGraph\n"
        f"s = Store({str(tmp_path / 'd.duckdb')!r})\n"
        "KnowledgeGraph(s).open()\n"
        "print(s.db_cid(), s.row_counts())\n"
        "s.close()"
    )
    assert loaded_after(code) == dict.fromkeys(HEAVY, False)


def test_the_first_write_loads_them(tmp_path: Path) -> None:
    code = (
        "from daemon.store.database import Store\n"
        "from daemon.writes.changes import result_changes\n"
        f"s = Store({str(tmp_path / 'd.duckdb')!r})\n"
        "changes, _ = result_changes(s, {'model_name': ['m1'], 'hardware_type': ['cuda'], "
        "'throughput': [1.0], 'latency': [2.0]})\n"
        "s.commit_local('peerA', changes)\n"
        "assert s.row_counts()['performance_results'] == 1\n"
        "s.close()"
    )
    assert loaded_after(code)["pyarrow"]


def test_lazy_module_imports_once_on_first_attribute() -> None:
    mod = lazy_module("json")
    assert isinstance(mod, LazyModule)
    assert "not loaded" in repr(mod)
    seen: list[object] = []
    threads = [threading.Thread(target=lambda: seen.append(mod.dumps)) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    import json

    assert seen == [json.dumps] * 8
    assert mod.loads("[1]") == [1]
    assert "loaded" in repr(mod) and "not" not in repr(mod)


def test_an_idle_pruning_pass_loads_neither(tmp_path: Path) -> None:
    # The pruner runs every minute on every daemon: on an empty store, or with peers but
    # nothing to drop, it must not pull in pyarrow (the idle daemon's RSS and CPU).
    code = (
        "import time\n"
        "from daemon.store.database import Store\n"
        "from daemon.store import history\n"
        f"s = Store({str(tmp_path / 'd.duckdb')!r})\n"
        "history.remember(s, {'peer-b': ({'origin-a': 3}, time.time())})\n"
        "peers = history.known(s, time.time(), 3600.0, 0.0)\n"
        "assert peers == {'peer-b': {'origin-a': 3}}, peers\n"
        "done = history.prune(s, history.floors(s.heads_snapshot(), peers))\n"
        "history.compact(s, done, {}, 0.0)\n"
        "s.close()"
    )
    assert loaded_after(code) == dict.fromkeys(HEAVY, False)
