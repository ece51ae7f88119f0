"""Key-range slices (``keys``): disjoint and complete on every replica whatever its
physical row order, dealt by strategy and weight, rewritten like local queries, and
refused when malformed."""

from __future__ import annotations

import random
import uuid

import duckdb
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from daemon.distq.keyspace import (
    chunks,
    expected_rows,
    key_partitioning,
    rounds_for,
    shares,
)
from daemon.distq.plan import NotSplittable, plan_query
from daemon.distq.slices import Partitioning, fragment_sql, partition_sql, slice_sql
from daemon.query.sandbox import validate_query
from daemon.store.cluster import KeyDistribution, RowGroup

PR = "performance_results"


def table_with(keys: list[str]) -> duckdb.DuckDBPyConnection:
    """A fact table holding ``keys`` in exactly this physical order."""
    con = duckdb.connect(":memory:")
    con.execute(f"CREATE TABLE {PR} (result_id UUID, batch_size BIGINT)")
    if keys:
        con.executemany(f"INSERT INTO {PR} VALUES (?, ?)", [(k, i % 7) for i, k in enumerate(keys)])
    return con


def slice_keys(con: duckdb.DuckDBPyConnection, part: Partitioning, i: int) -> list[str]:
    sql = partition_sql(f"SELECT result_id FROM {PR}", part, i)
    validate_query_any(sql)
    return [str(r[0]) for r in con.sql(sql).fetchall()]


def validate_query_any(sql: str) -> None:
    validate_query(sql)  # what a peer checks before running it


uuids = st.integers(0, (1 << 128) - 1).map(lambda n: str(uuid.UUID(int=n)))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    keys=st.lists(uuids, min_size=0, max_size=60, unique=True),
    cuts=st.lists(uuids, max_size=12),
    n=st.integers(1, 5),
    seed=st.integers(0, 1000),
)
def test_slices_are_disjoint_and_complete_whatever_the_row_order(
    keys: list[str], cuts: list[str], n: int, seed: int
) -> None:
    rnd = random.Random(seed)
    bounds = tuple(sorted(cuts, key=lambda k: uuid.UUID(k).int))
    owners = tuple(rnd.randrange(n) for _ in range(len(bounds) + 1))
    part = Partitioning("keys", n, "result_id", bounds, owners)
    shuffled = keys[:]
    rnd.shuffle(shuffled)
    replicas = [table_with(keys), table_with(shuffled)]  # same rows, other physical order
    per_replica = [[slice_keys(con, part, i) for i in range(n)] for con in replicas]
    for slices in per_replica:
        flat = [k for s in slices for k in s]
        assert sorted(flat) == sorted(keys)  # complete, and nothing twice: disjoint
    assert [sorted(s) for s in per_replica[0]] == [sorted(s) for s in per_replica[1]]


def test_adjacent_chunks_of_one_partition_are_merged() -> None:
    keys = [str(uuid.UUID(int=i << 100)) for i in (1, 2, 3, 4)]
    part = Partitioning("keys", 2, "result_id", tuple(keys), (0, 0, 1, 1, 0))
    assert part.ranges(0) == [(None, keys[1]), (keys[3], None)]
    assert part.ranges(1) == [(keys[1], keys[3])]
    sql = slice_sql(part, 1)
    assert sql.count("result_id >=") == 1 and "IS NULL" not in sql  # the key is never NULL


def test_a_partition_without_chunks_reads_nothing_and_one_chunk_everything() -> None:
    part = Partitioning("keys", 3, "result_id", (), (0,))
    assert slice_sql(part, 0).endswith("WHERE 1 = 1")
    assert slice_sql(part, 2).endswith("WHERE 1 = 0")


@pytest.mark.parametrize(
    "part",
    [
        Partitioning("keys", 2, "result_id", ("x",), (0, 1)),  # not a UUID
        Partitioning("keys", 2, "result_id", (1,), (0, 1)),  # a number for the key
        Partitioning(
            "keys", 2, "result_id", (str(uuid.UUID(int=9)), str(uuid.UUID(int=3))), (0, 1, 0)
        ),  # fmt: skip  (decreasing)
        Partitioning("keys", 2, "result_id", (), (0, 1)),  # owners != bounds + 1
        Partitioning("keys", 2, "result_id", (), (2,)),  # owner out of range
        Partitioning("keys", 2, "result_id", (), ()),  # no chunk at all
        Partitioning("keys", 2, "batch_size", (float("nan"),), (0, 1)),
        Partitioning("keys", 2, "batch_size", (1, "a"), (0, 1, 0)),
        Partitioning("keys", 2, "metrics", (1,), (0, 1)),  # not a range column
        Partitioning("range", 3, "batch_size", (8, 2)),  # legacy: decreasing bounds
    ],
)
def test_bad_key_partitionings_are_refused(part: Partitioning) -> None:
    with pytest.raises(NotSplittable):
        fragment_sql(f"SELECT COUNT(*) FROM {PR}", part, 0)


# -- dealing chunks --------------------------------------------------------------------


def test_shares_follow_weights_in_whole_units() -> None:
    assert shares([1.0, 1.0]) == [0.5, 0.5]
    got = shares([1.0, 3.0])
    assert got == [0.25, 0.75] and sum(got) == 1.0
    tiny = shares([1000.0, 0.0001, 1.0])
    assert min(tiny) == 1 / 48 and abs(sum(tiny) - 1.0) < 1e-12  # nobody gets nothing


def test_round_robin_deals_chunks_in_turn_and_hash_shuffles_each_round() -> None:
    fr = [0.25, 0.25, 0.5]
    rr = chunks("round_robin", fr, 3)
    assert [p for _, p in rr] == [0, 1, 2] * 3
    assert sum(size for size, p in rr if p == 2) == pytest.approx(0.5)
    hashed = chunks("hash", fr, 4)
    rounds = [[p for _, p in hashed[r * 3 : r * 3 + 3]] for r in range(4)]
    assert all(sorted(r) == [0, 1, 2] for r in rounds) and len({tuple(r) for r in rounds}) > 1


def test_chunks_stay_two_row_groups_or_more() -> None:
    assert rounds_for("round_robin", 3, 1) == 1  # a tiny table: one chunk each
    assert rounds_for("round_robin", 3, 18) == 3
    assert rounds_for("hash", 2, 1000) == 4
    assert rounds_for("range", 4, 1000) == 1


def uniform(groups: int, rows: int = 122_880) -> KeyDistribution:
    width = (1 << 120) // groups
    return KeyDistribution(
        [RowGroup(rows, (1 << 121) + i * width, (1 << 121) + (i + 1) * width - 1)
         for i in range(groups)]
    )  # fmt: skip


@pytest.mark.parametrize("strategy", ["range", "round_robin", "hash"])
def test_slices_get_their_weight_of_the_rows(strategy: str) -> None:
    dist = uniform(80)
    part = key_partitioning(dist, strategy, [1.0, 2.0, 1.0])
    got = [expected_rows(dist, part, i) / dist.total for i in range(3)]
    assert got == pytest.approx([0.25, 0.5, 0.25], abs=1e-6)
    assert len(part.owners) == (3 if strategy == "range" else 12)


def test_an_empty_table_is_one_chunk() -> None:
    part = key_partitioning(KeyDistribution([]), "round_robin", [1.0, 1.0])
    assert part.owners == (0,) and part.bounds == ()


# -- rewrites on fragments --------------------------------------------------------------


def test_fragments_are_rewritten_like_local_queries() -> None:
    sql = (
        f"SELECT model_id, COUNT(*) AS n FROM {PR} WHERE batch_size > 4 AND "
        "precision = 'fp16' GROUP BY model_id"
    )
    plan = plan_query(sql)
    part = key_partitioning(uniform(20), "range", [1.0, 1.0])
    fragment = fragment_sql(plan.map_sql, part, 1)
    inner = fragment[fragment.index("(SELECT") : fragment.rindex(") AS")]
    assert "SELECT *" not in inner  # the slice reads only the columns used
    assert "batch_size > 4" in inner and "result_id >=" in inner  # filters pushed into it
    assert fragment.startswith("SELECT performance_results.model_id AS _g0")
    validate_query_any(fragment)


def test_older_strategies_run_as_written() -> None:
    part = Partitioning("hash", 2)
    plan = plan_query(f"SELECT COUNT(*) FROM {PR}")
    assert fragment_sql(plan.map_sql, part, 1) == partition_sql(plan.map_sql, part, 1)
    assert "hash(result_id) % 2 = 1" in fragment_sql(plan.map_sql, part, 1).lower()
