"""Planner without sockets: reduce(map over every partition) equals the direct result."""

from __future__ import annotations

import random
import uuid
from typing import Any

import duckdb
import pytest
from distq_corpus import SINGLE_NODE_QUERIES, SPLIT_QUERIES, has_order, same_result
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from daemon.distq.keyspace import key_partitioning
from daemon.distq.plan import plan_query
from daemon.distq.reduce import from_ipc, reduce_partials, to_ipc
from daemon.distq.slices import Partitioning, fragment_sql, partition_sql
from daemon.query.sandbox import validate_query
from daemon.store.cluster import KeyDistribution, RowGroup
from protocol.schema import TABLES, ColType

DUCK_TYPES = {
    ColType.TEXT: "VARCHAR",
    ColType.INT: "BIGINT",
    ColType.FLOAT: "DOUBLE",
    ColType.BOOL: "BOOLEAN",
    ColType.JSON: "VARCHAR",
    ColType.TIMESTAMP: "TIMESTAMP",
    ColType.UUID: "UUID",
}
MODELS = [f"model-{i}" for i in range(12)]
HARDWARE = ["cpu", "cuda", "rocm", "mps"]


def make_db(results: list[tuple[Any, ...]]) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect(":memory:")
    for table in TABLES.values():
        cols = ", ".join(f"{n} {DUCK_TYPES[t]}" for n, t in table.columns)
        con.execute(f"CREATE TABLE {table.name} ({cols})")
    for i, m in enumerate(MODELS):
        con.execute("INSERT INTO models (model_id, model_family) VALUES (?, ?)", [m, f"fam{i % 3}"])
    for h in HARDWARE:
        con.execute("INSERT INTO hardware_platforms (hardware_id, hardware_type) VALUES (?, ?)",
                    [h, h.upper()])  # fmt: skip
    if not results:
        return con
    con.executemany(
        "INSERT INTO performance_results (result_id, model_id, hardware_id, batch_size, "
        "precision, average_latency_ms, throughput_items_per_second, memory_peak_mb) "
        "VALUES (uuid(), ?, ?, ?, ?, ?, ?, ?)",
        results,
    )
    return con


def random_rows(n: int, seed: int) -> list[tuple[Any, ...]]:
    rnd = random.Random(seed)
    return [
        (
            rnd.choice(MODELS),
            rnd.choice(HARDWARE),
            rnd.choice([1, 2, 4, 8, 16, 32]),
            rnd.choice(["fp32", "fp16", "int8", None]),
            round(rnd.uniform(0.5, 20.0), 3),
            round(rnd.uniform(10, 5000), 2),
            None if rnd.random() < 0.2 else round(rnd.uniform(100, 9000), 1),
        )
        for _ in range(n)
    ]


def rows_of(con: duckdb.DuckDBPyConnection, sql: str) -> list[list[Any]]:
    return [[str(v) if isinstance(v, uuid.UUID) else v for v in r] for r in con.sql(sql).fetchall()]


def distributed(con: duckdb.DuckDBPyConnection, sql: str, part: Partitioning) -> list[list[Any]]:
    plan = plan_query(sql)
    assert plan.distributed, plan.reason
    tables = []
    for i in range(part.count):
        fragment = fragment_sql(plan.map_sql, part, i)  # as peers run it: rewritten
        validate_query(fragment)  # what a peer checks before running it
        tables.append(from_ipc(to_ipc(con.sql(fragment).to_arrow_table()), 10**6))
    _, rows = reduce_partials(plan.reduce_sql, tables)
    return [list(r) for r in rows]


def key_distribution(con: duckdb.DuckDBPyConnection, groups: int = 40) -> KeyDistribution:
    """Zone maps as if the table were ``groups`` row groups in key order."""
    keys = sorted(r[0].int for r in con.sql("SELECT result_id FROM performance_results").fetchall())
    size = max(1, -(-len(keys) // groups))
    chunks = [keys[i : i + size] for i in range(0, len(keys), size)]
    return KeyDistribution([RowGroup(len(c), c[0], c[-1]) for c in chunks])


def partitionings(con: duckdb.DuckDBPyConnection, n: int) -> list[Partitioning]:
    """What coordinators send (key ranges of result_id by each strategy, unequal weights;
    ranges on another column) and the older wire strategies peers still answer."""
    qs = [(i + 1) / n for i in range(n - 1)]
    bounds = con.sql(
        f"SELECT quantile_disc(average_latency_ms, {qs}) FROM performance_results"
    ).fetchall()[0][0] if n > 1 else []  # fmt: skip
    dist = key_distribution(con)
    weights = [1.0 + i for i in range(n)]
    latency_bounds = tuple(bounds or [0.0] * (n - 1))
    return [
        *(key_partitioning(dist, s, weights) for s in ("range", "round_robin", "hash")),
        Partitioning("keys", n, "average_latency_ms", latency_bounds, tuple(range(n))),
        Partitioning("hash", n),
        Partitioning("round_robin", n),
        Partitioning("range", n, "average_latency_ms", latency_bounds),
    ]


@pytest.fixture(scope="module")
def db() -> duckdb.DuckDBPyConnection:
    return make_db(random_rows(600, seed=7))


@pytest.mark.parametrize("sql", SPLIT_QUERIES)
def test_split_queries_equal_direct(db: duckdb.DuckDBPyConnection, sql: str) -> None:
    expected = rows_of(db, sql)
    for part in [Partitioning("hash", 1), *partitionings(db, 3)]:
        got = distributed(db, sql, part)
        assert same_result(expected, got, has_order(sql)), (part, got[:5], expected[:5])


def test_corpus_is_large_enough() -> None:
    assert len(SPLIT_QUERIES) >= 25


@pytest.mark.parametrize("sql", SINGLE_NODE_QUERIES)
def test_unsplittable_queries_say_why(sql: str) -> None:
    plan = plan_query(sql)
    assert not plan.distributed
    assert plan.reason


def test_range_partitions_are_disjoint_and_complete(db: duckdb.DuckDBPyConnection) -> None:
    part = partitionings(db, 4)[6]
    sizes = [
        db.sql(partition_sql("SELECT COUNT(*) FROM performance_results", part, i)).fetchall()[0][0]
        for i in range(4)
    ]
    assert sum(sizes) == 600 and all(s > 0 for s in sizes)


def test_bad_partitioning_is_refused() -> None:
    from daemon.distq.plan import NotSplittable

    for part in (
        Partitioning("zigzag", 2),
        Partitioning("hash", 0),
        Partitioning("range", 2, "metrics; DROP", (1,)),
        Partitioning("range", 3, "batch_size", (1,)),
        Partitioning("range", 3, "batch_size", (1, "x")),
    ):
        with pytest.raises(NotSplittable):
            partition_sql("SELECT COUNT(*) FROM performance_results", part, 0)


row = st.tuples(
    st.sampled_from(MODELS[:4]),
    st.sampled_from(HARDWARE),
    st.one_of(st.none(), st.integers(-3, 40)),
    st.sampled_from(["fp32", "fp16", None]),
    st.floats(-1e6, 1e6, allow_nan=False),
    st.floats(0, 1e4, allow_nan=False),
    st.one_of(st.none(), st.floats(0, 1e4, allow_nan=False)),
)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows=st.lists(row, max_size=40), n=st.integers(1, 5), strategy=st.integers(0, 6))
def test_random_data_sets(rows: list[tuple[Any, ...]], n: int, strategy: int) -> None:
    con = make_db(rows)
    part = partitionings(con, n)[strategy]
    for sql in SPLIT_QUERIES[::3]:
        expected = rows_of(con, sql)
        got = distributed(con, sql, part)
        assert same_result(expected, got, has_order(sql)), (sql, got, expected)
