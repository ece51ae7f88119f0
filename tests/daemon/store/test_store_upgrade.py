"""A data dir written by the code before the columnar format (tests/data/datadir_v1.tar.gz)
opens with this code: same database CID, vector, rows; its format-1 blocks still serve
and apply; the migration ran once and new writes work on top."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import pytest

from daemon.store.database import STORE_VERSION, Store, StoreError
from protocol import changeset as cs_codec

FIXTURE = Path(__file__).resolve().parents[2] / "data" / "datadir_v1.tar.gz"


@pytest.fixture
def old_dir(tmp_path: Path) -> Path:
    with tarfile.open(FIXTURE) as archive:
        archive.extractall(tmp_path, filter="data")
    return tmp_path


def expected(old_dir: Path) -> dict:
    return json.loads((old_dir / "expected.json").read_text())


def test_old_data_dir_opens_with_its_state(old_dir: Path) -> None:
    want = expected(old_dir)
    store = Store(old_dir / "duckpeer.duckdb")
    try:
        assert store.db_cid() == want["db_cid"]
        assert store.vector() == want["version_vector"]
        assert store.row_counts() == want["rows"]
        _, rows = store.query(
            "SELECT model_id, count(*), round(sum(throughput_items_per_second), 3) "
            "FROM performance_results GROUP BY 1 ORDER BY 1",
            100,
            30.0,
        )
        assert [list(r) for r in rows] == want["results_by_model"]
        _, deleted = store.query(
            f"SELECT count(*) FROM performance_results "
            f"WHERE result_id = '{want['deleted_result_id']}'",
            1,
            30.0,
        )
        assert deleted == [(0,)]
        _, version = store.query("SELECT value FROM store.meta", 1, 30.0)
        assert version == [(str(STORE_VERSION),)]
    finally:
        store.close()


def test_old_blocks_serve_and_rebuild_the_same_state(old_dir: Path, tmp_path: Path) -> None:
    old = Store(old_dir / "duckpeer.duckdb")
    try:
        blocks = [b for batch in old.missing_for({}) for b in batch]
        cid = old.db_cid()
    finally:
        old.close()
    assert blocks and all(b[1] == cs_codec.FORMAT_VERSION for b in blocks)  # format 1
    fresh = Store(tmp_path / "fresh" / "duckpeer.duckdb")
    try:
        result = fresh.apply_blocks(blocks)
        assert not result.rejected
        assert fresh.db_cid() == cid
        assert fresh.row_counts() == expected(old_dir)["rows"]
    finally:
        fresh.close()


def test_migration_runs_once_and_writes_follow(old_dir: Path) -> None:
    from storekit import models

    store = Store(old_dir / "duckpeer.duckdb")
    store.close()
    store = Store(old_dir / "duckpeer.duckdb")  # second open: nothing left to migrate
    try:
        before = store.vector()
        item = store.commit_local("me", [models((0, "new-model", "new-model"))])
        assert item.changeset.seq == 1
        assert store.vector() == {**before, "me": 1}
        assert store.row_counts()["models"] == expected(old_dir)["rows"]["models"] + 1
    finally:
        store.close()


def test_a_newer_store_version_is_refused(old_dir: Path) -> None:
    store = Store(old_dir / "duckpeer.duckdb")
    store._writer.execute("UPDATE store.meta SET value = '99' WHERE key = 'store_version'")
    store.close()
    with pytest.raises(StoreError, match="newer duckpeer"):
        Store(old_dir / "duckpeer.duckdb")
