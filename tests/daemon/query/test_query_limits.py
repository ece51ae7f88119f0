"""Per-query limits hold and a query over one fails alone: rows, result bytes, value
sizes, deadline, memory (the guard and DuckDB's per-query operator memory), temp
disk, the worker pool's queue; the daemon answers the next query as before."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import trio
from cachekit import call, open_node, with_rows

from daemon.config import Config
from daemon.node import Node
from daemon.query import guard
from daemon.query.limits import store_settings
from daemon.store.database import Store
from daemon.store.running import RUNNING
from protocol.control import ControlError

PR = "performance_results"
COUNT = f"SELECT count(*) FROM {PR}"
ENDLESS = f"SELECT count(*) FROM {PR} a, {PR} b, {PR} c, {PR} d, {PR} e"  # 500^5 rows


async def failure(node: Node, sql: str, **params: Any) -> ControlError:
    with pytest.raises(ControlError) as info:
        await call(node, "query", sql=sql, cache=False, **params)
    assert "\n" not in str(info.value)
    return info.value


async def serves_on(node: Node, rows: int = 500) -> None:
    assert (await call(node, "query", sql=COUNT, cache=False))["rows"] == [[rows]]


async def wait_for(condition: Callable[[], bool], timeout: float = 30.0) -> None:
    with trio.fail_after(timeout):
        while not condition():
            await trio.sleep(0.01)


async def test_row_cap_and_bad_max_rows(tmp_path: Path) -> None:
    async with open_node(tmp_path, query_max_rows=100) as node:
        error = await failure(node, f"SELECT * FROM {PR}")
        assert error.code == "bad_request" and "more than 100 rows" in str(error)
        assert len((await call(node, "query", sql=f"SELECT * FROM {PR} LIMIT 100"))["rows"]) == 100
        for bad in (-5, 0, "10", 1.5, True):
            error = await failure(node, COUNT, max_rows=bad)
            assert error.code == "bad_request" and "max_rows" in str(error)
        capped = await call(node, "query", sql=f"SELECT * FROM {PR} LIMIT 3", max_rows=10**9)
        assert len(capped["rows"]) == 3  # a larger cap than the config's is the config's
        await serves_on(node)


async def test_result_bytes_and_value_sizes(tmp_path: Path) -> None:
    async with open_node(tmp_path, query_max_result_bytes=20_000,
                         query_max_value_bytes=1024) as node:  # fmt: skip
        error = await failure(node, f"SELECT * FROM {PR}")
        assert error.code == "bad_request" and "query_max_result_bytes" in str(error)
        error = await failure(node, f"SELECT string_agg(model_id, ',') FROM {PR}")
        assert error.code == "bad_request" and "query_max_value_bytes" in str(error)
        await serves_on(node)


async def test_deadline(tmp_path: Path) -> None:
    async with open_node(tmp_path, query_timeout=0.2) as node:
        error = await failure(node, ENDLESS)
        assert error.code == "timeout" and "query_timeout" in str(error)
        assert len(RUNNING) == 0
        await serves_on(node)


async def test_memory_guard_stops_running_queries(tmp_path: Path) -> None:
    # A bound below any real RSS: the guard must stop what runs, and only that.
    async with open_node(tmp_path, memory_limit=1, memory_margin=0, query_timeout=60) as node:
        errors: list[ControlError] = []

        async def run() -> None:
            errors.append(await failure(node, ENDLESS))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(run)
            await wait_for(lambda: len(RUNNING) > 0)
            assert guard.check_once(node) == 1
        assert errors[0].code == "resource_limit" and "memory" in str(errors[0])
        assert node.metrics.get("queries_stopped_memory") == 1
        assert guard.check_once(node) == 0  # nothing runs: nothing to stop
        await serves_on(node)


async def test_memory_guard_service_stops_a_query(tmp_path: Path) -> None:
    async with open_node(tmp_path, memory_limit=1, memory_margin=0, query_timeout=60) as node:
        async with trio.open_nursery() as nursery:
            await nursery.start(guard.serve, node)
            error = await failure(node, ENDLESS)
            nursery.cancel_scope.cancel()
        assert error.code == "resource_limit"


def limited_node(tmp_path: Path, **config: Any) -> Node:
    """A node whose store has the daemon's DuckDB settings (memory, temp disk)."""
    cfg = replace(Config(data_dir=tmp_path), **config)
    store = Store(tmp_path / "db.duckdb", settings=store_settings(cfg))
    node = Node(cfg, store, "12D3KooWTestPeer")
    with_rows(node, 500)
    return node


FOUR = "(SELECT 1 AS x UNION ALL SELECT 2 UNION ALL SELECT 3 UNION ALL SELECT 4) c"
SORT = (
    "SELECT max(h) FROM (SELECT md5(a.model_id || b.result_id || c.x) || "
    f"md5(b.model_id || a.result_id) AS h FROM {PR} a, {PR} b, {FOUR} ORDER BY h OFFSET 1)"
)  # 1M rows of 64-character strings sorted: more than 64 MiB, so it spills


@pytest.mark.parametrize("settings", [{"max_temp_bytes": 0}, {"max_temp_bytes": 1 << 20}])
async def test_operator_memory_and_temp_disk(tmp_path: Path, settings: dict[str, Any]) -> None:
    node = limited_node(tmp_path, query_memory_limit=16 << 20, memory_limit=64 << 20, **settings)
    try:
        error = await failure(node, SORT)
        assert error.code == "resource_limit" and "out of memory" in str(error)
        await serves_on(node)
    finally:
        node.store.close()


async def test_spilling_within_the_temp_limit_succeeds(tmp_path: Path) -> None:
    node = limited_node(tmp_path, query_memory_limit=16 << 20, memory_limit=64 << 20)
    try:
        result = await call(node, "query", sql=SORT, cache=False)  # 4 GiB of temp allowed
        assert len(result["rows"]) == 1
        assert store_settings(node.config)["temp_directory"] == str(tmp_path / "duckpeer.tmp")
    finally:
        node.store.close()


async def test_full_pool_answers_busy_and_status_does_not_wait(tmp_path: Path) -> None:
    async with open_node(tmp_path, query_workers=1, query_queue=1, query_timeout=60) as node:
        errors: list[ControlError] = []

        async def slow() -> None:
            errors.append(await failure(node, ENDLESS))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(slow)
            await wait_for(lambda: node.queries.running == 1)
            nursery.start_soon(slow)  # waits in the queue
            await wait_for(lambda: node.queries.waiting == 1)
            busy = await failure(node, COUNT)
            assert busy.code == "busy" and "query_queue" in str(busy)
            status = await call(node, "status")  # control reads have their own workers
            assert status["rows"]["performance_results"] == 500
            with trio.fail_after(30):
                while len(errors) < 2:  # the queued one runs once the first is stopped
                    RUNNING.stop_all("test over")
                    await trio.sleep(0.01)
        assert [e.code for e in errors] == ["resource_limit", "resource_limit"]
        await serves_on(node)


def test_the_memory_guard_sleeps_until_a_query_runs(tmp_path: Path) -> None:
    # The guard's thread must not poll while idle: it waits for the first query, and a
    # stop wakes it at once.
    import threading

    from daemon.store.running import RunningQueries

    running, stop, woke = RunningQueries(), threading.Event(), []
    thread = threading.Thread(target=lambda: woke.append(running.wait_busy(stop, 30.0)))
    thread.start()
    store = Store(tmp_path / "d.duckdb")
    try:
        with running.guard(store.cursor(), 10.0):
            thread.join(5.0)
    finally:
        store.close()
    assert woke == [True]

    thread = threading.Thread(target=lambda: woke.append(running.wait_busy(stop, 30.0)))
    thread.start()
    stop.set()
    running.wake()
    thread.join(5.0)
    assert not thread.is_alive() and woke == [True, False]
