"""Write failures: the caller's bad values are ``bad_request``; the store's own failures
are ``internal``, logged with their cause and counted (issue 13: they were reported as
``bad_request`` and not logged, which hid writes refused after every restart)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import pytest
from structlog.testing import capture_logs

from daemon.config import Config
from daemon.node import Node
from daemon.store.database import Store
from daemon.writes import methods as write_methods
from protocol.control import ControlError

RECORD = {"model_name": "m", "hardware_type": "cuda", "throughput": 1.0, "latency": 2.0}


@pytest.fixture
def node(tmp_path: Path) -> Iterator[Node]:
    store = Store(tmp_path / "db.duckdb")
    yield Node(Config(data_dir=tmp_path), store, "12D3KooWMe")
    store.close()


async def test_a_failing_store_is_internal_logged_and_counted(
    node: Node, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: Any, **kwargs: Any) -> Any:
        raise duckdb.IOException("IO Error: could not write to the database file")

    monkeypatch.setattr(node.store, "_transaction", broken)
    with capture_logs() as logs, pytest.raises(ControlError) as failure:
        await write_methods.record(node, {"record": RECORD})
    assert failure.value.code == "internal"
    assert "could not write" in str(failure.value)
    assert node.metrics.snapshot()["writes_failed"] == 1
    (entry,) = [e for e in logs if e["event"] == "write failed"]
    assert entry["log_level"] == "error" and "IOException" in entry["error"]


async def test_a_bad_value_is_still_a_bad_request(node: Node) -> None:
    with pytest.raises(ControlError) as failure:
        await write_methods.record(node, {"record": {**RECORD, "run_id": "not-a-uuid"}})
    assert failure.value.code == "bad_request"
    assert node.metrics.snapshot()["writes_rejected"] == 1


async def test_ingest_begin_loads_the_arrow_path_and_stores_nothing(node: Node) -> None:
    assert await write_methods.ingest(node, {"begin": True}) == {"rows": 0}
    assert node.store.vector() == {}
    assert "protocol.columnar" in sys.modules
    with pytest.raises(ControlError) as failure:  # begin with a chunk is not a begin
        await write_methods.ingest(node, {"begin": True, "records": "x"})
    assert failure.value.code == "bad_request"
