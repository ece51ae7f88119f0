"""The fact table's layout by key: zone-map estimates, what a key-range scan reads (as
DuckDB's own profile counts it), and re-clustering that changes where rows lie but not
what they are."""

from __future__ import annotations

import re
import uuid
from pathlib import Path

import pyarrow as pa
import pytest

from daemon.distq.recluster import layout, needs_pass, recluster_pass
from daemon.store.cluster import (
    ROW_GROUP_ROWS,
    KeyDistribution,
    RowGroup,
    overlapping,
    row_groups,
    uuid_literal,
)
from daemon.store.database import Store

HOUR_MS = 3_600_000
NOW_MS = 1_760_000_000_000


def v7(ms: int, n: int) -> int:
    """A UUIDv7-shaped key: 48-bit milliseconds, then a counter where random bits go."""
    return (ms << 80) | (0x7 << 76) | n


def insert(store: Store, keys: list[int]) -> None:
    """Append rows with these keys, in this order (straight into the table: only the
    physical layout matters here)."""
    cur = store.cursor()
    batch = pa.table({"k": pa.array([str(uuid.UUID(int=k)) for k in keys]),
                      "b": pa.array([k % 7 for k in keys], pa.int64())})  # fmt: skip
    cur.register("batch", batch)
    cur.execute(
        "INSERT INTO store.performance_results (result_id, batch_size, _hlc, _origin) "
        "SELECT CAST(k AS UUID), b, 1, 'o' FROM batch"
    ).fetchall()
    cur.unregister("batch")
    cur.close()


def groups_scanned_by_duckdb(store: Store, lo: int, hi: int) -> tuple[int, int]:
    sql = (
        "EXPLAIN ANALYZE SELECT sum(batch_size) FROM store.performance_results WHERE result_id >= "
        f"{uuid_literal(lo)} AND result_id < {uuid_literal(hi)}"
    )
    plan = store.query(sql, 10, 30.0)[1][0][1]
    found = re.search(r"Row Groups Scanned: (\d+) / (\d+)", plan)
    assert found, plan
    return int(found.group(1)), int(found.group(2))


def skewed_writers(batches: int, size: int) -> list[list[int]]:
    """Changesets of two writers as a replica applies them, interleaved; one writer's
    clock is two hours behind, so its keys belong two hours back."""
    out = []
    for b in range(batches):
        base = NOW_MS + b * 1000 - (2 * HOUR_MS if b % 2 else 0)
        out.append([v7(base + i // 50, i) for i in range(size)])
    return out


@pytest.fixture(scope="module")
def skewed(tmp_path_factory: pytest.TempPathFactory) -> Store:
    store = Store(Path(tmp_path_factory.mktemp("cluster")) / "db.duckdb")
    for keys in skewed_writers(160, 6144):  # 983,040 rows: 8 row groups
        insert(store, keys)
    return store


def test_the_distribution_inverts_and_counts_rows() -> None:
    dist = KeyDistribution([RowGroup(100, 0, 99), RowGroup(100, 1000, 1099), RowGroup(1, 5, 5)])
    assert dist.total == 201
    assert dist.rows_below(50) == pytest.approx(51.0)  # 50 of the first group + the point
    assert dist.rows_below(10_000) == 201
    for fraction in (0.1, 0.4, 0.6, 0.9):
        assert dist.rows_below(dist.key_at(fraction)) == pytest.approx(fraction * 201, abs=1.5)
    assert KeyDistribution([]).key_at(0.5) == 0


def test_overlap_is_what_a_scan_reads() -> None:
    groups = [RowGroup(10, 0, 9), RowGroup(10, 10, 19), RowGroup(10, 5, 25)]
    assert overlapping(groups, [(10, 12)]) == groups[1:]
    assert overlapping(groups, [(None, 3), (26, None)]) == groups[:1]
    assert overlapping(groups, [(None, None)]) == groups


def test_skewed_writers_spoil_pruning_and_a_pass_restores_it(skewed: Store) -> None:
    before_rows = skewed.query(
        "SELECT result_id, batch_size, _hlc, _origin FROM store.performance_results "
        "ORDER BY result_id", 2_000_000, 60.0)[1]  # fmt: skip
    cid = skewed.db_cid()
    before = layout(skewed, ROW_GROUP_ROWS)
    assert needs_pass(before) and before.amplification > 2.5, before.to_dict()
    probe = before.slices[len(before.slices) // 2]
    assert groups_scanned_by_duckdb(skewed, probe.lo, probe.hi)[0] == probe.scanned

    moved, after = recluster_pass(skewed, 2 * ROW_GROUP_ROWS)
    assert moved >= len(before_rows) // 2
    assert after.amplification < 1.5 and not needs_pass(after), after.to_dict()
    for s in after.slices:  # our count is DuckDB's count, slice by slice
        assert groups_scanned_by_duckdb(skewed, s.lo, s.hi) == (s.scanned, after.row_groups)
    rows = skewed.query(
        "SELECT result_id, batch_size, _hlc, _origin FROM store.performance_results "
        "ORDER BY result_id", 2_000_000, 60.0)[1]  # fmt: skip
    assert rows == before_rows and skewed.db_cid() == cid  # same rows, versions, CID


def test_a_table_in_key_order_needs_no_pass(tmp_path: Path) -> None:
    store = Store(tmp_path / "db.duckdb")
    for b in range(100):
        insert(store, [v7(NOW_MS + b * 1000 + i // 50, i) for i in range(5000)])
    report = layout(store, ROW_GROUP_ROWS)
    assert report.row_groups == len(row_groups(store.cursor())) == 5
    assert report.amplification < 1.5 and not needs_pass(report, 0)
    store.close()
