"""daemon.store.database.Store: last-writer-wins on (hlc, origin), whatever the arrival order."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import pytest
from storekit import D, U, chain, dump, model_rows, models, tc, tombstones

from daemon.store.database import Store

RUN_A = "01890a5d-ac96-774b-bcce-b302099a8057"
RUN_B = "01890a5d-ac96-774b-bcce-b302099a8058"


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store(tmp_path / "a.duckdb")
    yield s
    s.close()


# -- last writer wins -----------------------------------------------------------------------

# One changeset per origin, all touching the same keys; every one of the 24 orders must end
# in the same state. Keys: "k" (upserts and a delete racing, hlc tie between B and C),
# "d" (a delete is newest), "r" (an old upsert after a delete must not resurrect it).
LWW_SPECS = {
    "A": (10, [(U, "k", "A"), (U, "d", "A"), (D, "r", None)]),
    "B": (20, [(D, "k", None), (U, "d", "B"), (U, "r", "B")]),
    "C": (20, [(U, "k", "C"), (D, "d", None)]),
    "D": (5, [(U, "k", "D"), (U, "r", "D")]),
}


def lww_blocks(tag: str) -> dict[str, bytes]:
    """The LWW scenario with keys and origins namespaced by ``tag`` (origin order kept)."""
    out = {}
    for origin, (stamp, rows) in LWW_SPECS.items():
        named = [(op, f"{tag}/{key}", value) for op, key, value in rows]
        (out[origin],) = chain(f"{origin}{tag}", [(stamp, [models(*named)])])
    return out


def test_lww_every_order_gives_the_same_state(tmp_path: Path) -> None:
    # Each permutation uses its own keys and origins, so one store holds all 24 runs.
    s = Store(tmp_path / "perm.duckdb")
    try:
        for i, order in enumerate(itertools.permutations("ABCD")):
            tag = f"{i:02d}"
            blocks = lww_blocks(tag)
            if i % 2:
                result = s.apply_blocks([blocks[o] for o in order])  # one transaction
                assert (result.applied, result.rejected) == (4, [])
            else:
                for o in order:  # one transaction each
                    assert s.apply_blocks([blocks[o]]).rejected == []
            _, rows = s.query(
                f"SELECT model_id, model_name, _hlc, _origin FROM store.models "
                f"WHERE model_id LIKE '{tag}/%' ORDER BY 1",
                100,
                5.0,
            )
            _, tombs = s.query(
                f"SELECT * FROM store.tombstones WHERE pk LIKE '{tag}/%' ORDER BY ALL", 100, 5.0
            )
            # Winner per key is the largest (hlc, origin): k -> C (ties B at 20, "C" > "B"),
            # d -> deleted by C@20, r -> B@20 beats the A@10 delete and D@5.
            assert rows == [(f"{tag}/k", "C", 20, f"C{tag}"), (f"{tag}/r", "B", 20, f"B{tag}")]
            assert tombs == [("models", f"{tag}/d", 20, f"C{tag}")]
    finally:
        s.close()


def test_lww_orders_converge_to_the_same_cid(tmp_path: Path) -> None:
    blocks = lww_blocks("x")
    states = set()
    for i, order in enumerate(["ABCD", "DCBA", "CADB"]):
        s = Store(tmp_path / f"{i}.duckdb")
        try:
            s.apply_blocks([blocks[o] for o in order])
            states.add((repr(dump(s)), s.db_cid()))
        finally:
            s.close()
    assert len(states) == 1


@pytest.mark.parametrize("order", list(itertools.permutations(range(3))))
def test_lww_uuid_keys_in_every_order(tmp_path: Path, order: tuple[int, ...]) -> None:
    cols = ["run_id", "test_name", "success"]
    blocks = [
        *chain("p1", [(100, [tc("test_runs", cols, [[RUN_A, "p1", True], [RUN_B, "p1", True]])])]),
        *chain("p2", [(100, [tc("test_runs", cols, [[RUN_A.upper(), "p2", False]])])]),
        *chain("p0", [(150, [tc("test_runs", ["run_id"], [[RUN_B]], [D])])]),
    ]
    s = Store(tmp_path / "u.duckdb")
    try:
        for i in order:
            assert s.apply_blocks([blocks[i]]).rejected == []
        _, rows = s.query("SELECT run_id::VARCHAR, test_name, success FROM test_runs", 10, 5.0)
        assert rows == [(RUN_A, "p2", False)]  # same hlc: origin "p2" > "p1"
        assert tombstones(s) == [("test_runs", RUN_B, 150, "p0")]
    finally:
        s.close()


def test_newer_delete_leaves_tombstone_and_older_upsert_does_not_resurrect(store: Store) -> None:
    store.apply_blocks(chain("A", [(10, [models((U, "m", "v1"))])]))
    assert model_rows(store) == [("m", "v1", 10, "A")]

    store.apply_blocks(chain("B", [(20, [models((D, "m", None))])]))
    assert model_rows(store) == []
    assert tombstones(store) == [("models", "m", 20, "B")]

    late = chain("C", [(15, [models((U, "m", "late"))])])
    assert store.apply_blocks(late).applied == 1
    assert model_rows(store) == []
    assert tombstones(store) == [("models", "m", 20, "B")]

    newer = chain("D", [(25, [models((U, "m", "back"))])])
    store.apply_blocks(newer)
    assert model_rows(store) == [("m", "back", 25, "D")]
    assert tombstones(store) == []


def test_delete_of_unknown_key_blocks_a_later_older_insert(store: Store) -> None:
    store.apply_blocks(chain("B", [(20, [models((D, "ghost", None))])]))
    assert tombstones(store) == [("models", "ghost", 20, "B")]
    store.apply_blocks(chain("A", [(10, [models((U, "ghost", "boo"))])]))
    assert model_rows(store) == []


def test_older_delete_does_not_remove_newer_row(store: Store) -> None:
    store.apply_blocks(chain("A", [(30, [models((U, "m", "new"))])]))
    store.apply_blocks(chain("B", [(20, [models((D, "m", None))])]))
    assert model_rows(store) == [("m", "new", 30, "A")]
    assert tombstones(store) == []


def test_partial_upsert_replaces_whole_row(store: Store) -> None:
    full = tc("models", ["model_id", "model_name", "model_family"], [["m", "n", "fam"]])
    store.apply_blocks(chain("A", [(10, [full])]))
    store.apply_blocks(chain("B", [(20, [models((U, "m", "n2"))])]))
    row = store.read_row("models", "m")
    assert row is not None and row["model_name"] == "n2" and row["model_family"] is None
