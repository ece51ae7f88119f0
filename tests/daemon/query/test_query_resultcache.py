"""daemon.query.resultcache (GDSF byte-bounded cache) and daemon.query.strategy
(none/normal/aggressive)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from daemon.query.resultcache import CacheKey, ResultCache
from daemon.query.strategy import (
    AGGRESSIVE,
    NONE,
    NORMAL,
    QueryStats,
    StatsTable,
    Thresholds,
    strategy,
)


def key(name: str, cid: str = "cid1", max_rows: int = 100) -> CacheKey:
    return CacheKey(name, cid, max_rows)


def test_get_counts_hits_and_misses() -> None:
    cache = ResultCache(1000)
    assert cache.get(key("a")) is None
    assert cache.put(key("a"), "value", 10, cost_ms=5.0)
    assert cache.get(key("a")) == "value"
    assert cache.get(key("a", cid="cid2")) is None  # another database state: another entry
    assert cache.get(key("a", max_rows=5)) is None  # another row cap: another entry
    assert (cache.counters.hits, cache.counters.misses) == (1, 3)
    assert cache.bytes == 10 and len(cache) == 1


def test_replacing_an_entry_keeps_the_byte_count_right() -> None:
    cache = ResultCache(1000)
    cache.put(key("a"), "v1", 100, 1.0)
    cache.put(key("a"), "v2", 40, 1.0)
    assert cache.bytes == 40 and cache.get(key("a")) == "v2"


def test_an_entry_larger_than_the_entry_limit_is_refused() -> None:
    cache = ResultCache(1000)  # entry limit: a quarter
    assert not cache.put(key("big"), "x", 251, 100.0)
    assert cache.put(key("ok"), "x", 250, 100.0)
    assert cache.counters.rejected_too_large == 1 and len(cache) == 1
    explicit = ResultCache(1000, max_entry_bytes=900)
    assert explicit.put(key("big"), "x", 900, 1.0)
    assert not explicit.put(key("bigger"), "x", 1001, 1.0)


def test_large_cheap_entries_are_evicted_before_small_expensive_ones() -> None:
    cache = ResultCache(1000, max_entry_bytes=1000)
    cache.put(key("small-expensive"), "x", 100, cost_ms=500.0)
    cache.put(key("large-cheap"), "x", 400, cost_ms=2.0)
    cache.put(key("medium"), "x", 300, cost_ms=50.0)
    cache.put(key("new"), "x", 300, cost_ms=50.0)  # 1100 bytes: one must go
    assert key("large-cheap") not in cache
    assert key("small-expensive") in cache and key("new") in cache
    assert cache.bytes <= 1000 and cache.counters.evictions == 1


def test_entries_of_an_old_cid_are_the_first_victims() -> None:
    cache = ResultCache(1000, max_entry_bytes=1000)
    for i in range(3):
        cache.put(key(f"q{i}", cid="old"), "x", 200, cost_ms=10.0)
    for round_ in range(3):  # the database moved on: the same queries run at the new CID
        for i in range(3):
            cid = f"new{round_}"
            cache.put(key(f"q{i}", cid=cid), "x", 100, cost_ms=10.0)
            cache.get(key(f"q{i}", cid=cid))
    assert cache.bytes <= 1000
    assert not any(e.key.db_cid == "old" for e in cache.entries())
    assert all(key(f"q{i}", cid="new2") in cache for i in range(3))


def test_recently_used_entries_survive() -> None:
    cache = ResultCache(300, max_entry_bytes=300)
    cache.put(key("a"), "x", 100, 10.0)
    cache.put(key("b"), "x", 100, 10.0)
    cache.put(key("c"), "x", 100, 10.0)
    for _ in range(3):
        cache.get(key("a"))
    cache.put(key("d"), "x", 100, 10.0)
    assert key("a") in cache and key("d") in cache and len(cache) == 3


def test_clear_and_resize() -> None:
    cache = ResultCache(1000)
    for i in range(5):
        cache.put(key(str(i)), "x", 100, 1.0)
    cache.resize(250)
    assert cache.bytes <= 250 and len(cache) == 2
    assert cache.clear() == 2 and cache.bytes == 0 and len(cache) == 0


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 30), st.integers(1, 400), st.floats(0, 1000), st.booleans()),
        max_size=200,
    ),
    st.integers(0, 2000),
)
def test_the_byte_bound_always_holds(ops: list[tuple[int, int, float, bool]], bound: int) -> None:
    cache = ResultCache(bound)
    for name, size, cost, read in ops:
        if read:
            cache.get(key(str(name)))
        else:
            cache.put(key(str(name)), name, size, cost)
        assert cache.bytes <= bound
        assert cache.bytes == sum(e.size for e in cache.entries())


def test_strategy_from_cost_and_frequency() -> None:
    limits = Thresholds(cheap_ms=1.0, aggressive_ms=50.0, hot_requests=3)
    stats = QueryStats("fp", "SELECT 1", 10)
    assert strategy(None, limits) == NORMAL and strategy(stats, limits) == NORMAL
    stats.observe_run(0.4)
    assert strategy(stats, limits) == NONE
    costly = QueryStats("fp2", "SELECT 2", 10, requests=1)
    costly.observe_run(400.0)
    assert strategy(costly, limits) == NORMAL  # costly but not (yet) hot
    costly.requests = 3
    assert strategy(costly, limits) == AGGRESSIVE


def test_cost_is_a_moving_average() -> None:
    stats = QueryStats("fp", "q", 1)
    stats.observe_run(100.0)
    stats.observe_run(0.0)
    assert stats.cost_ms is not None and 60 < stats.cost_ms < 80 and stats.runs == 2


def test_stats_table_is_bounded_and_ranks_hot_queries() -> None:
    table = StatsTable(max_entries=3)
    limits = Thresholds(1.0, 50.0, 2)
    for name, cost, asks in (("a", 100.0, 2), ("b", 500.0, 2), ("c", 5.0, 5), ("d", 60.0, 2)):
        for _ in range(asks):
            stats = table.asked(name, f"q {name}", 10)
        stats.observe_run(cost)
    assert len(table) == 3 and table.get("a") is None  # least recently asked dropped
    assert [s.fingerprint for s in table.hottest(limits, 10)] == ["b", "d"]
    assert [s.fingerprint for s in table.hottest(limits, 1)] == ["b"]


@pytest.mark.parametrize("n", [0, 1, 15, 16, 9_999, 10_000, 10_001, 65_535, 65_536, 70_001])
def test_encoded_size_is_the_msgpack_size(n: int) -> None:
    import msgpack

    from daemon.query.cachestate import encoded_size

    rows = [[i, "v" * (i % 7)] for i in range(n)]
    assert encoded_size(["a", "b"], rows) == len(msgpack.packb([["a", "b"], rows]))
