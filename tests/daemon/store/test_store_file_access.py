"""The store's DuckDB reaches files only in its load directory (a snapshot load's
Parquet scratch files), and nothing can open more: the second wall behind the query
sandbox."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest

from daemon.store.database import Store


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store(tmp_path / "duckpeer.duckdb")
    yield s
    s.close()


def test_parquet_in_the_load_dir_is_readable(store: Store, tmp_path: Path) -> None:
    store.load_dir.mkdir(parents=True)
    inside = store.load_dir / "rows.parquet"
    duckdb.sql(f"COPY (SELECT 42 AS answer) TO '{inside}' (FORMAT parquet)")
    cur = store.cursor()
    assert cur.execute(f"SELECT answer FROM read_parquet('{inside}')").fetchall() == [(42,)]


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT * FROM read_csv('/etc/passwd')",
        "SELECT * FROM read_parquet('{outside}')",
        "COPY (SELECT 1) TO '{tmp}/written.csv'",
        "SET enable_external_access = true",
        "SET allowed_directories = ['/']",
        "ATTACH '{tmp}/other.duckdb' AS other",
    ],
)
def test_everything_else_stays_closed(store: Store, tmp_path: Path, sql: str) -> None:
    store.load_dir.mkdir(parents=True)
    outside = tmp_path / "outside.parquet"
    duckdb.sql(f"COPY (SELECT 1 AS x) TO '{outside}' (FORMAT parquet)")
    cur = store.cursor()
    with pytest.raises(duckdb.Error):
        cur.execute(sql.format(outside=outside, tmp=tmp_path))
