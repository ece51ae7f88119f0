"""The buffer cache given back after writes settle (daemon.writes.cachetrim)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import trio

from daemon.config import Config
from daemon.node import Node
from daemon.store import buffercache
from daemon.store.database import Store
from daemon.writes import cachetrim
from tests.kits.cachekit import with_rows

MB = 1 << 20


def limited_node(path: Path, limit: str | None = "1GB") -> Node:
    store = Store(path / "db.duckdb", memory_limit=limit)
    return Node(replace(Config(data_dir=path)), store, "12D3KooWTestPeer")


def setting(node: Node) -> str:
    row = node.store.cursor().execute("SELECT current_setting('memory_limit')").fetchone()
    assert row is not None
    return str(row[0])


async def test_a_trim_evicts_cached_blocks_and_restores_the_limit(tmp_path: Path) -> None:
    node = limited_node(tmp_path)
    try:
        with_rows(node, 100_000)
        configured = setting(node)
        before = buffercache.cached_bytes(node.store)
        assert before > 8 * MB
        freed = await cachetrim.trim_once(node, above=MB, keep=4 * MB)
        assert freed > 0 and buffercache.cached_bytes(node.store) <= 4 * MB
        assert setting(node) == configured
        assert node.metrics.get("buffer_cache_trims") == 1
        count = node.store.cursor().execute("SELECT count(*) FROM performance_results").fetchone()
        assert count == (100_000,)
    finally:
        node.store.close()


async def test_no_trim_below_the_threshold_or_without_a_configured_limit(tmp_path: Path) -> None:
    for name, limit, above in (("small", "1GB", 1 << 40), ("nolimit", None, MB)):
        node = limited_node(tmp_path / name, limit)
        try:
            with_rows(node, 20_000)
            assert await cachetrim.trim_once(node, above=above, keep=MB) == 0
            assert node.metrics.get("buffer_cache_trims") == 0
        finally:
            node.store.close()


async def test_the_service_trims_once_writes_settle(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cachetrim, "IDLE_S", 0.05)
    monkeypatch.setattr(cachetrim, "TRIM_ABOVE", MB)
    monkeypatch.setattr(cachetrim, "KEEP", 4 * MB)
    node = limited_node(tmp_path)
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(cachetrim.serve, node)
            await node.write(lambda store: with_rows(node, 100_000))
            with trio.fail_after(30):
                while node.metrics.get("buffer_cache_trims") == 0:
                    await trio.sleep(0.02)
            assert buffercache.cached_bytes(node.store) <= 4 * MB
            nursery.cancel_scope.cancel()
    finally:
        node.store.close()
