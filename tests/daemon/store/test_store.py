"""daemon.store.database.Store: local commits, applying peers' blocks, LWW, sync deltas, queries."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest
from storekit import D, U, chain, dump, model_rows, models, tc, tombstones

from daemon.store.database import Store, StoreError
from daemon.writes import changes as writes
from protocol import hlc as hlc_clock
from protocol.changeset import Changeset, TableChanges, cid_of, decode, encode
from protocol.cid import EMPTY_DATABASE_CID, database_cid
from protocol.schema import TABLES

RUN_A = "01890a5d-ac96-774b-bcce-b302099a8057"


# -- helpers ---------------------------------------------------------------------------------


def flat(batches: Iterator[list[bytes]]) -> list[bytes]:
    return [b for batch in batches for b in batch]


RECORDS = {
    "model_name": ["bert-base-uncased", "gpt2", "bert-base-uncased"],
    "hardware_type": ["cuda", "cpu", "cuda"],
    "device_name": ["A100", None, "A100"],
    "throughput": [812.5, 40, 790.0],
    "latency": [9.8, 120.0, 10.1],
    "batch_size": [8, None, 16],
    "precision": ["fp16", None, "fp16"],
}


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store(tmp_path / "a.duckdb")
    yield s
    s.close()


@pytest.fixture
def other(tmp_path: Path) -> Iterator[Store]:
    s = Store(tmp_path / "b.duckdb")
    yield s
    s.close()


# -- local commits and replication -----------------------------------------------------------


def test_empty_store_state(store: Store) -> None:
    assert store.vector() == {}
    assert store.heads_snapshot() == {}
    assert store.db_cid() == EMPTY_DATABASE_CID
    assert store.changeset_count() == 0
    assert set(store.row_counts().values()) == {0}
    assert list(store.missing_for({})) == []


def test_commit_local_creates_rows_and_advances_state(store: Store) -> None:
    changes, ids = writes.result_changes(store, RECORDS)
    assert len(ids) == 3 and len(set(ids)) == 3
    before = store.hlc
    item = store.commit_local("peerA", changes)

    assert item.changeset.seq == 1 and item.changeset.prev is None
    assert item.cid == cid_of(item.block)
    assert store.vector() == {"peerA": 1}
    assert store.heads_snapshot() == {"peerA": (1, item.cid)}
    assert store.db_cid() == database_cid({"peerA": (1, item.cid)}) != EMPTY_DATABASE_CID
    assert store.hlc == item.changeset.hlc > before
    assert store.row_counts() == {
        "hardware_platforms": 2,
        "models": 2,
        "test_runs": 0,
        "performance_results": 3,
        "hardware_compatibility": 0,
    }
    row = store.read_row("performance_results", ids[0])
    assert row is not None
    assert row["model_id"] == "bert-base-uncased"
    assert row["hardware_id"] == "cuda:A100"
    assert row["throughput_items_per_second"] == 812.5
    assert row["batch_size"] == 8 and row["test_case"] == "default"
    assert store.read_row("performance_results", ids[1])["batch_size"] == 1  # type: ignore[index]
    assert store.read_row("models", "gpt2")["model_family"] == "gpt2"  # type: ignore[index]
    assert store.read_row("hardware_platforms", "cpu")["device_name"] is None  # type: ignore[index]

    # A second commit chains onto the first and only adds the new model.
    changes2, _ = writes.result_changes(
        store,
        {
            "model_name": ["gpt2", "t5-small"],
            "hardware_type": ["cpu", "cpu"],
            "throughput": [1.0, 2.0],
            "latency": [3.0, 4.0],
        },
    )
    assert {t.table: len(t) for t in changes2} == {"models": 1, "performance_results": 2}
    item2 = store.commit_local("peerA", changes2)
    assert item2.changeset.seq == 2 and item2.changeset.prev == item.cid
    assert item2.changeset.hlc > item.changeset.hlc
    assert store.vector() == {"peerA": 2}
    assert store.changeset_count() == 2
    assert store.row_counts()["performance_results"] == 5


def test_commit_local_failure_changes_nothing(store: Store) -> None:
    store.commit_local("peerA", writes.result_changes(store, RECORDS)[0])
    before, cid, hlc = dump(store), store.db_cid(), store.hlc
    bad = dict(RECORDS, metrics=["{not json", None, None])
    with pytest.raises(StoreError):
        store.commit_local("peerA", writes.result_changes(store, bad)[0])
    assert dump(store) == before
    assert store.db_cid() == cid and store.vector() == {"peerA": 1} and store.hlc == hlc


def test_second_store_converges_from_missing_for(store: Store, other: Store) -> None:
    store.commit_local("peerA", writes.result_changes(store, RECORDS)[0])
    store.commit_local("peerA", [models((U, "gpt2", "gpt-2 renamed"))])
    store.commit_local(
        "peerA", [writes.delete_change(store, "hardware_platforms", "cpu")]
    )  # also tests deletes replicate
    blocks = flat(store.missing_for({}))
    assert len(blocks) == 3

    result = other.apply_blocks(blocks)
    assert (result.applied, result.duplicates, result.rejected) == (3, 0, [])
    assert result.rows == sum(decode(b).row_count() for b in blocks)
    assert other.db_cid() == store.db_cid()
    assert other.vector() == store.vector() == {"peerA": 3}
    assert dump(other) == dump(store)
    assert other.read_row("hardware_platforms", "cpu") is None

    again = other.apply_blocks(blocks)
    assert (again.applied, again.duplicates, again.rows, again.rejected) == (0, 3, 0, [])
    assert dump(other) == dump(store)
    assert other.db_cid() == store.db_cid()


def test_duplicates_inside_one_batch_are_counted_once(store: Store, other: Store) -> None:
    blocks = chain("A", [(10, [models((U, "m", "1"))]), (20, [models((U, "m", "2"))])])
    result = other.apply_blocks([blocks[0], blocks[0], blocks[1], blocks[0], blocks[1]])
    assert (result.applied, result.duplicates, result.rejected) == (2, 3, [])
    assert model_rows(other) == [("m", "2", 20, "A")]


def test_seq_gap_and_broken_prev_are_rejected(store: Store) -> None:
    blocks = chain(
        "A",
        [
            (10, [models((U, "m1", "a"))]),
            (20, [models((U, "m2", "b"))]),
            (30, [models((U, "m3", "c"))]),
        ],
    )
    assert store.apply_blocks(blocks[:1]).applied == 1

    gap = store.apply_blocks([blocks[2]])
    assert gap.applied == 0 and len(gap.rejected) == 1
    assert gap.rejected[0][0] == cid_of(blocks[2])
    assert "seq" in gap.rejected[0][1]

    forged_prev = cid_of(b"not the head")
    forged = encode(Changeset("A", 2, 20, forged_prev, [models((U, "m9", "x"))]))
    broken = store.apply_blocks([forged])
    assert broken.applied == 0 and broken.rejected[0][0] == cid_of(forged)
    assert "prev" in broken.rejected[0][1]

    assert store.vector() == {"A": 1}
    assert model_rows(store) == [("m1", "a", 10, "A")]

    # The genuine chain still extends, and a gap inside one batch rejects only the tail.
    ok = store.apply_blocks([blocks[1], blocks[2]])
    assert ok.applied == 2 and ok.rejected == []
    assert store.vector() == {"A": 3}


def test_undecodable_block_is_rejected(store: Store) -> None:
    good = chain("B", [(5, [models((U, "ok", "ok"))])])
    result = store.apply_blocks([b"\x93garbage", *good])
    assert result.applied == 1
    assert [cid for cid, _ in result.rejected] == [cid_of(b"\x93garbage")]
    assert store.vector() == {"B": 1}


HW = ("hardware_platforms", ["hardware_id", "compute_units"])
BAD_VALUES = {
    "str-in-float": tc("models", ["model_id", "parameters_million"], [["m", "abc"]]),
    "bad-uuid-key": tc("test_runs", ["run_id"], [["not-a-uuid"]]),
    "bad-uuid": tc("performance_results", ["result_id", "run_id"], [[RUN_A, "nope"]]),
    "bad-json": tc("models", ["model_id", "metadata"], [["m", "{not json"]]),
    "str-in-bool": tc("test_runs", ["run_id", "success"], [[RUN_A, "yes"]]),
    "str-in-ts": tc("models", ["model_id", "created_at"], [["m", "yesterday"]]),
    "int-in-text": tc("models", ["model_id", "model_name"], [["m", 42]]),
    "str-in-int": tc(*HW, [["h", "8"]]),
    "int-overflow": tc(*HW, [["h", 1 << 63]]),
    "float-in-int": tc(*HW, [["h", 1.5]]),
    "float-in-ts": tc("models", ["model_id", "created_at"], [["m", 1.5]]),
    "bool-in-int": tc(*HW, [["h", True]]),
}


@pytest.mark.parametrize("bad", BAD_VALUES.values(), ids=BAD_VALUES.keys())
def test_wrong_typed_block_is_rejected_atomically(store: Store, bad: TableChanges) -> None:
    store.apply_blocks(chain("base", [(1, [models((U, "keep", "keep"))])]))
    before, vector = dump(store), store.vector()

    # The bad change follows a valid change in the same block: none of the block may land,
    # and the origin's next block (which depends on it) cannot apply either.
    valid = (
        models((U, "m", "valid part"))
        if bad.table != "models"
        else tc("hardware_platforms", ["hardware_id"], [["valid part"]])
    )
    (bad_block,) = chain("X", [(50, [valid, bad])])
    next_block = encode(Changeset("X", 2, 60, cid_of(bad_block), [models((U, "x2", "x"))]))
    (good,) = chain("Y", [(70, [models((U, "y", "fine"))])])

    result = store.apply_blocks([bad_block, next_block, good])
    assert [cid for cid, _ in result.rejected] == [cid_of(bad_block), cid_of(next_block)]
    assert (result.applied, result.rows) == (1, 1)
    assert store.vector() == {**vector, "Y": 1}
    after = dump(store)
    assert model_rows(store) == [("keep", "keep", 1, "base"), ("y", "fine", 70, "Y")]
    assert {k: v for k, v in after.items() if k != "models"} == {
        k: v for k, v in before.items() if k != "models"
    }
    assert flat(store.missing_for({})) == [
        *chain("base", [(1, [models((U, "keep", "keep"))])]),
        good,
    ]


# -- serving peers ----------------------------------------------------------------------------


def test_missing_for_returns_only_the_delta_in_apply_order(store: Store) -> None:
    a = chain("A", [(10 * i, [models((U, f"a{i}", "x"))]) for i in range(1, 5)])
    b = chain("B", [(10 * i + 1, [models((U, f"b{i}", "x"))]) for i in range(1, 4)])
    order = [a[0], b[0], a[1], a[2], b[1], a[3], b[2]]
    for block in order:
        store.apply_blocks([block])

    assert flat(store.missing_for({})) == order
    assert flat(store.missing_for({"A": 2})) == [b[0], a[2], b[1], a[3], b[2]]
    assert flat(store.missing_for({"A": 2, "B": 1})) == [a[2], b[1], a[3], b[2]]
    assert flat(store.missing_for({"A": 4, "B": 3})) == []
    assert flat(store.missing_for({"A": 9, "B": 9, "Z": 1})) == []
    assert flat(store.missing_for({"A": 4, "Z": 7})) == b

    batches = list(store.missing_for({}, batch=3))
    assert [len(x) for x in batches] == [3, 3, 1]
    assert flat(iter(batches)) == order
    batches = list(store.missing_for({"A": 1}, batch=2))
    assert [len(x) for x in batches] == [2, 2, 2]
    assert flat(iter(batches)) == [b[0], a[1], a[2], b[1], a[3], b[2]]


# -- persistence ------------------------------------------------------------------------------


def test_reopen_keeps_heads_hlc_and_rows(tmp_path: Path) -> None:
    path = tmp_path / "p.duckdb"
    s = Store(path)
    s.commit_local("me", writes.result_changes(s, RECORDS)[0])
    s.apply_blocks(chain("peer", [(5, [models((U, "remote", "r"))])]))
    s.commit_local("me", [models((U, "gpt2", "second"))])
    heads, hlc, cid, rows = s.heads_snapshot(), s.hlc, s.db_cid(), dump(s)
    expected_delta = flat(s.missing_for({"me": 1}))
    s.close()

    s = Store(path)
    try:
        assert s.heads_snapshot() == heads
        assert s.hlc == hlc
        assert s.db_cid() == cid
        assert dump(s) == rows
        assert flat(s.missing_for({"me": 1})) == expected_delta
        item = s.commit_local("me", [models((U, "after", "restart"))])
        assert item.changeset.seq == 3 and item.changeset.prev == heads["me"][1]
        assert item.changeset.hlc > hlc
        # New applies continue the apply order after the old ones.
        assert flat(s.missing_for({"me": 1}))[-1] == item.block
    finally:
        s.close()


def test_own_chain_clock_never_goes_back_after_restart(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "c.duckdb"
    s = Store(path)
    first = s.commit_local("me", [models((U, "m", "1"))]).changeset.hlc
    s.close()
    real = time.time()
    monkeypatch.setattr(time, "time", lambda: real - 600)  # the wall clock jumped back 10 min
    s = Store(path)
    try:
        second = s.commit_local("me", [models((U, "m", "2"))]).changeset.hlc
        assert second > first
        assert model_rows(s) == [("m", "2", second, "me")]  # the later write wins
    finally:
        s.close()


def test_far_future_remote_clock_is_not_adopted_even_after_restart(tmp_path: Path) -> None:
    far = hlc_clock.pack(int(time.time() * 1000) + 10 * 86_400_000, 0)  # ten days ahead
    path = tmp_path / "f.duckdb"
    s = Store(path)
    s.commit_local("me", [models((U, "mine", "x"))])
    assert s.apply_blocks(chain("liar", [(far, [models((U, "theirs", "y"))])])).applied == 1
    assert s.hlc < far  # applied for convergence, not adopted
    s.close()

    s = Store(path)
    try:
        assert s.hlc < far
        assert s.commit_local("me", [models((U, "next", "z"))]).changeset.hlc < far
    finally:
        s.close()


# -- queries ----------------------------------------------------------------------------------


def test_query_returns_columns_and_enforces_max_rows(store: Store) -> None:
    store.commit_local("me", writes.result_changes(store, RECORDS)[0])
    columns, rows = store.query("SELECT model_id FROM models ORDER BY 1", 2, 5.0)
    assert columns == ["model_id"]
    assert rows == [("bert-base-uncased",), ("gpt2",)]
    with pytest.raises(StoreError, match="more than 1 rows"):
        store.query("SELECT model_id FROM models", 1, 5.0)
    _, rows = store.query("SELECT * FROM range(10)", 10, 5.0)
    assert len(rows) == 10
    with pytest.raises(StoreError):
        store.query("SELECT * FROM range(11)", 10, 5.0)


@pytest.mark.timeout(60)
def test_query_timeout_interrupts_a_slow_query(store: Store) -> None:
    started = time.monotonic()
    with pytest.raises(duckdb.InterruptException):
        store.query(
            "SELECT sum(a.range * b.range) FROM range(100000000) a, range(1000000) b", 10, 0.5
        )
    assert time.monotonic() - started < 30
    # The store is still usable after an interrupted query.
    assert store.query("SELECT 42", 1, 5.0) == (["42"], [(42,)])


def test_query_connection_has_no_external_access(store: Store, tmp_path: Path) -> None:
    secret = tmp_path / "secret.csv"
    secret.write_text("a\n1\n")
    with pytest.raises(duckdb.Error):
        store.query(f"SELECT * FROM read_csv('{secret}')", 10, 5.0)
    with pytest.raises(duckdb.Error):
        store.query("SET enable_external_access = true", 10, 5.0)


# -- update / delete helpers --------------------------------------------------------------------


def test_update_change_is_based_on_current_version(store: Store, other: Store) -> None:
    store.commit_local("me", writes.result_changes(store, RECORDS)[0])
    original = store.read_row("models", "gpt2")
    version = store.current_versions("models", ["gpt2"])["gpt2"]
    assert version[1] == "me"

    change = writes.update_change(
        store, "models", "gpt2", {"model_family": "gpt", "parameters_million": "124"}
    )
    names = list(TABLES["models"].column_names)
    assert list(change.columns) == names
    assert change.ops == bytes([U]) and list(change.bases) == [version]
    assert change.changed == [
        (1 << names.index("model_family")) | (1 << names.index("parameters_million"))
    ]
    row = dict(next(change.rows()))
    assert row == {**original, "model_family": "gpt", "parameters_million": 124.0}  # type: ignore[dict-item]

    item = store.commit_local("me", [change])
    updated = store.read_row("models", "gpt2")
    assert updated == row
    assert store.current_versions("models", ["gpt2"])["gpt2"] == (item.changeset.hlc, "me")

    # The update replicates whole-row.
    other.apply_blocks(flat(store.missing_for({})))
    assert other.read_row("models", "gpt2") == updated


def test_update_change_errors(store: Store) -> None:
    store.commit_local("me", writes.result_changes(store, RECORDS)[0])
    with pytest.raises(writes.WriteError, match="no row"):
        writes.update_change(store, "models", "nope", {"model_family": "x"})
    with pytest.raises(writes.WriteError, match="unknown or key"):
        writes.update_change(store, "models", "gpt2", {"model_id": "x"})
    with pytest.raises(writes.WriteError, match="unknown or key"):
        writes.update_change(store, "models", "gpt2", {"bogus": 1})
    with pytest.raises(writes.WriteError, match="unknown or key"):
        writes.update_change(store, "models", "gpt2", {})
    with pytest.raises(writes.WriteError, match="unknown table"):
        writes.update_change(store, "store.models", "gpt2", {"x": 1})
    with pytest.raises(writes.WriteError, match="parameters_million"):
        writes.update_change(store, "models", "gpt2", {"parameters_million": "lots"})


def test_update_change_on_uuid_key(store: Store) -> None:
    changes, ids = writes.result_changes(store, RECORDS)
    store.commit_local("me", changes)
    change = writes.update_change(
        store, "performance_results", ids[0].upper(), {"batch_size": "32"}
    )
    assert change.keys == [ids[0]]
    store.commit_local("me", [change])
    assert store.read_row("performance_results", ids[0])["batch_size"] == 32  # type: ignore[index]


def test_delete_change_is_based_on_current_version(store: Store) -> None:
    changes, ids = writes.result_changes(store, RECORDS)
    store.commit_local("me", changes)
    version = store.current_versions("performance_results", [ids[1]])[ids[1]]

    change = writes.delete_change(store, "performance_results", ids[1])
    assert change.table == "performance_results"
    assert list(change.columns) == ["result_id"]
    assert change.ops == bytes([D]) and list(change.bases) == [version]
    assert change.keys == [ids[1]]

    item = store.commit_local("me", [change])
    assert store.read_row("performance_results", ids[1]) is None
    assert tombstones(store) == [("performance_results", ids[1], item.changeset.hlc, "me")]
    with pytest.raises(writes.WriteError, match="no row"):
        writes.delete_change(store, "performance_results", ids[1])
    with pytest.raises(writes.WriteError, match="unknown table"):
        writes.delete_change(store, "tombstones", "x")


def test_a_different_block_at_our_head_seq_is_a_fork(store: Store) -> None:
    first = chain("F", [(10, [models((U, "m", "one"))])])
    other = chain("F", [(11, [models((U, "m", "two"))])])
    assert store.apply_blocks(first).applied == 1
    result = store.apply_blocks(other)
    assert result.applied == 0 and result.duplicates == 0
    assert "fork" in result.rejected[0][1]
    assert model_rows(store)[0][1] == "one"


def test_blocks_of_untrusted_origins_are_refused_whoever_relays_them(store: Store) -> None:
    blocks = chain("mallory", [(10, [models((U, "m", "evil"))])])

    def admit(cs: Changeset, block: bytes) -> str | None:
        return "not a trusted peer" if cs.origin == "mallory" else None

    result = store.apply_blocks(blocks, admit)
    assert result.applied == 0 and "not a trusted peer" in result.rejected[0][1]
    assert model_rows(store) == [] and store.vector() == {}


def test_writes_after_reopening_a_store_that_holds_tombstones(tmp_path: Path) -> None:
    """Once a row was deleted, every write after a restart failed with DuckDB's
    'connection has an unfinished result' (a fetchone left on the writer cursor)."""
    path = tmp_path / "t.duckdb"
    s = Store(path)
    s.commit_local("me", [models((U, "gone", "x"))])
    s.commit_local("me", [writes.delete_change(s, "models", "gone")])
    s.close()
    s = Store(path)
    try:
        s.commit_local("me", [models((U, "again", "y"))])
        s.commit_local("me", writes.result_changes(s, RECORDS)[0])
        assert s.vector() == {"me": 4}
    finally:
        s.close()
