"""The result cache on the daemon's query path (Node + store in process, no network)."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio
from cachekit import call, open_node, with_rows

from daemon.query.analyze import Operator, Profile, TableFacts, suggest
from daemon.query.cachestate import cache_state
from daemon.query.prefetch import prefetch_once
from protocol.control import ControlError

AGG = (
    "SELECT model_id, count(*) AS n, avg(average_latency_ms) AS lat FROM performance_results "
    "GROUP BY model_id ORDER BY model_id"
)
REFORMATTED = (
    "select MODEL_ID, COUNT(*) as n, AVG(average_latency_ms) as lat\n"
    "  from Performance_Results  group by model_id order by model_id"
)
FAST = dict(cache_cheap_ms=0.0)  # cache even the (fast) small test queries


async def test_a_reformatted_query_is_a_hit(tmp_path: Path) -> None:
    async with open_node(tmp_path, **FAST) as node:
        first = await call(node, "query", sql=AGG)
        again = await call(node, "query", sql=REFORMATTED)
        assert (first["cache"], again["cache"]) == ("miss", "hit")
        assert again["rows"] == first["rows"] and again["columns"] == first["columns"]
        assert again["fingerprint"] == first["fingerprint"]
        assert node.metrics.get("cache_hits") == 1 and node.metrics.get("cache_misses") == 1
        stats = await call(node, "cache_stats")
        assert (stats["hits"], stats["misses"], stats["entries"]) == (1, 1, 1)
        assert stats["hit_rate"] == 0.5 and stats["bytes"] > 0


async def test_a_new_spelling_gets_its_own_column_names(tmp_path: Path) -> None:
    async with open_node(tmp_path, **FAST) as node:
        await call(node, "query", sql="SELECT sum(batch_size) FROM performance_results")
        hit = await call(node, "query", sql="SELECT SUM(Batch_Size) FROM performance_results")
        assert hit["cache"] == "hit"
        assert hit["columns"] == ["sum(Batch_Size)"]  # as DuckDB names this spelling


async def test_a_write_changes_the_cid_and_the_next_query_is_fresh(tmp_path: Path) -> None:
    async with open_node(tmp_path, **FAST) as node:
        count = "SELECT count(*) FROM performance_results"
        before = await call(node, "query", sql=count)
        assert (await call(node, "query", sql=count))["cache"] == "hit"
        with_rows(node, 25, seed=9)
        after = await call(node, "query", sql=count)
        assert after["cache"] == "miss" and after["db_cid"] != before["db_cid"]
        assert after["rows"] == [[before["rows"][0][0] + 25]]
        assert (await call(node, "query", sql=count))["cache"] == "hit"


async def test_literals_and_row_caps_are_separate_entries(tmp_path: Path) -> None:
    async with open_node(tmp_path, **FAST) as node:
        sql = "SELECT count(*) FROM performance_results WHERE batch_size = {}"
        one = await call(node, "query", sql=sql.format(1))
        two = await call(node, "query", sql=sql.format(32))
        assert two["cache"] == "miss" and one["fingerprint"] != two["fingerprint"]
        capped = await call(node, "query", sql=sql.format(1), max_rows=5)
        assert capped["cache"] == "miss"


async def test_cheap_queries_are_not_cached(tmp_path: Path) -> None:
    async with open_node(tmp_path, cache_cheap_ms=10_000.0, cache_aggressive_ms=10_000.0) as node:
        await call(node, "query", sql=AGG)
        assert (await call(node, "query", sql=AGG))["cache"] == "miss"
        assert (await call(node, "query_explain_cache", sql=AGG))["strategy"] == "none"
        assert (await call(node, "cache_stats"))["entries"] == 0


async def test_eviction_keeps_the_byte_bound(tmp_path: Path) -> None:
    async with open_node(
        tmp_path, cache_max_bytes=6000, cache_max_entry_bytes=6000, **FAST
    ) as node:
        for batch in (1, 2, 4, 8, 16, 32):
            await call(node, "query", sql=f"SELECT * FROM performance_results WHERE batch_size = "
                                          f"{batch} ORDER BY result_id LIMIT 20")  # fmt: skip
        stats = await call(node, "cache_stats")
        assert 0 < stats["bytes"] <= 6000 and stats["evictions"] > 0


async def test_disabled_cache_and_no_cache_flag(tmp_path: Path) -> None:
    async with open_node(tmp_path, cache_enabled=False) as node:
        await call(node, "query", sql=AGG)
        assert (await call(node, "query", sql=AGG))["cache"] == "off"
    async with open_node(tmp_path / "b", **FAST) as node:
        await call(node, "query", sql=AGG)
        assert (await call(node, "query", sql=AGG, cache=False))["cache"] == "miss"


async def test_rewrites_are_listed_and_names_kept(tmp_path: Path) -> None:
    async with open_node(tmp_path, **FAST) as node:
        sql = "SELECT model_id, count(*) FROM (SELECT * FROM performance_results) s " \
              "WHERE batch_size > 4 GROUP BY model_id ORDER BY 1"  # fmt: skip
        rewritten = await call(node, "query", sql=sql)
        plain = await call(node, "query", sql=sql, cache=False)
        assert rewritten["rewrites"] == ["select_star_narrowed", "predicate_pushdown"]
        assert rewritten["columns"] == ["model_id", "count_star()"]
        assert rewritten["rows"] == plain["rows"]


async def test_clear_explain_and_bad_sql(tmp_path: Path) -> None:
    async with open_node(tmp_path, **FAST) as node:
        await call(node, "query", sql=AGG)
        info = await call(node, "query_explain_cache", sql=REFORMATTED)
        assert info["cached_at_current_cid"] and info["strategy"] == "normal"
        assert info["normalized_sql"].startswith('SELECT "model_id"') and info["runs"] == 1
        assert (await call(node, "cache_clear"))["removed"] == 1
        assert (await call(node, "cache_stats"))["entries"] == 0
        for method in ("query", "query_explain_cache", "query_analyze"):
            with pytest.raises(ControlError) as err:
                await call(node, method, sql="DROP TABLE models")
            assert err.value.code == "bad_request"
        assert node.metrics.get("queries_rejected") == 3


async def test_hot_costly_queries_are_prefetched_on_a_new_cid(tmp_path: Path) -> None:
    async with open_node(tmp_path, cache_cheap_ms=0.0, cache_aggressive_ms=0.0,
                         cache_hot_requests=2) as node:  # fmt: skip
        for _ in range(2):
            await call(node, "query", sql=AGG)
        assert (await call(node, "query_explain_cache", sql=AGG))["strategy"] == "aggressive"
        with_rows(node, 10, seed=3)
        assert await prefetch_once(node, node.store.db_cid()) == 1
        hit = await call(node, "query", sql=AGG)
        assert hit["cache"] == "hit" and sum(r[1] for r in hit["rows"]) == 510
        assert node.metrics.get("cache_prefetched") == 1
        assert cache_state(node).prefetched == 1


async def test_analyze_reports_operators(tmp_path: Path) -> None:
    async with open_node(tmp_path) as node:
        report = await call(node, "query_analyze", sql=AGG)
        names = [op["name"] for op in report["operators"]]
        assert any("SCAN" in n for n in names) and any("GROUP_BY" in n for n in names)
        scan = next(op for op in report["operators"] if "SCAN" in op["name"])
        assert scan["table"] == "performance_results" and scan["rows"] == 500
        assert report["total_ms"] > 0


def test_suggestions_carry_the_numbers() -> None:
    scan = Operator("SEQ_SCAN", 2, 820.0, 10_000_000, {"Table": "memory.store.performance_results"})
    filtered = Operator("SEQ_SCAN", 2, 300.0, 12, {"Table": "memory.store.performance_results",
                                                   "Filters": ["(model_id = 'x')"]})  # fmt: skip
    join = Operator("HASH_JOIN", 1, 50.0, 5_000_000, child_rows=[1000, 2000])
    group = Operator("HASH_GROUP_BY", 0, 10.0, 900_000, child_rows=[1_000_000])
    facts = {"performance_results": TableFacts(10_000_000, {"result_id"}, {"model_id": 2_000_000})}
    text = "\n".join(suggest(Profile(900.0, 10_000_000, [group, join, scan, filtered]), facts))
    assert "SEQ_SCAN on performance_results takes 820.0 ms = 69% of the operator time" in text
    assert "full scan of performance_results: 10,000,000 rows" in text
    assert "model_id: 2,000,000 distinct values" in text
    assert "HASH_JOIN produced 5,000,000 rows from inputs of at most 2,000 (2,500x)" in text
    assert "900,000 groups from 1,000,000 rows" in text


async def test_the_prefetch_service_fills_the_cache_after_a_commit(
    tmp_path: Path, nursery: trio.Nursery
) -> None:
    from daemon.demo import sample_results
    from daemon.query import prefetch
    from daemon.query.resultcache import CacheKey
    from daemon.writes.changes import result_changes

    async with open_node(tmp_path, cache_cheap_ms=0.0, cache_aggressive_ms=0.0,
                         cache_hot_requests=2) as node:  # fmt: skip
        for _ in range(2):
            fp = (await call(node, "query", sql=AGG))["fingerprint"]
        await nursery.start(prefetch.serve, node)
        rows = sample_results(5, seed=4)
        await node.commit_local(lambda store: result_changes(store, rows)[0])
        key = CacheKey(fp, node.store.db_cid(), node.config.query_max_rows)
        with trio.fail_after(20):
            while key not in cache_state(node).cache:
                await trio.sleep(0.01)
        assert (await call(node, "query", sql=AGG))["cache"] == "hit"
        nursery.cancel_scope.cancel()


def test_clearing_the_cache_needs_write_access() -> None:
    from daemon.control.server import WRITE_METHODS

    assert "cache_clear" in WRITE_METHODS
    assert not {"cache_stats", "query_explain_cache", "query_analyze"} & WRITE_METHODS
