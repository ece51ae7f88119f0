"""Conflict strategies on real stores: concurrent edits, deletes, resolutions."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from conflictkit import (
    delete,
    exchange,
    insert_model,
    pull,
    snapshot,
    update,
    with_strategy,
    write,
)

from daemon.store.database import Store
from daemon.writes.changes import WriteError
from daemon.writes.resolve import list_conflicts, resolve_change
from protocol.conflicts import Strategy


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[tuple[Store, Store]]:
    a, b = Store(tmp_path / "a.duckdb"), Store(tmp_path / "b.duckdb")
    yield a, b
    a.close()
    b.close()


def _row(store: Store, key: str) -> tuple[object, ...] | None:
    return (
        store.cursor()
        .execute("SELECT model_name, model_family, modality FROM models WHERE model_id = ?", [key])
        .fetchone()
    )


def _fork(a: Store, b: Store) -> None:
    """A shared row, then A changes the family and B the modality, concurrently."""
    insert_model(a, "A", "m", model_name="m", model_family="f0", modality="text")
    exchange([a, b])
    update(a, "A", "m", model_family="f1")
    update(b, "B", "m", modality="vision")


@pytest.mark.parametrize("strategy", list(Strategy))
def test_concurrent_edits_converge_under_every_strategy(
    pair: tuple[Store, Store], strategy: Strategy
) -> None:
    a, b = (with_strategy(s, strategy) for s in pair)
    _fork(a, b)
    found = pull(a, b).conflicts + pull(b, a).conflicts
    assert found == 2  # each side saw the other's edit as concurrent
    assert snapshot(a) == snapshot(b)
    winner = max(_version(a, "A"), _version(b, "B"))
    if strategy is Strategy.MERGE:
        assert _row(a, "m") == ("m", "f1", "vision")  # both sides' columns survive
    else:
        expected = ("m", "f1", "text") if winner[1] == "A" else ("m", "f0", "vision")
        assert _row(a, "m") == expected  # whole row of the larger version
    opened = list_conflicts(a)
    if strategy is Strategy.MANUAL:
        assert len(opened) == 1 and len(opened[0]["versions"]) == 2
        assert {v["origin"] for v in opened[0]["versions"]} == {"A", "B"}
    else:
        assert opened == []


def _version(store: Store, origin: str) -> tuple[int, str]:
    return (store.head_hlc[origin], origin)


def test_manual_resolution_closes_the_conflict_everywhere(pair: tuple[Store, Store]) -> None:
    a, b = (with_strategy(s, Strategy.MANUAL) for s in pair)
    _fork(a, b)
    exchange([a, b])
    (conflict,) = list_conflicts(b)
    assert list_conflicts(a) == [conflict]  # same id, versions and values on both
    write(b, "B", [resolve_change(b, conflict["id"], take="A")])
    assert list_conflicts(b) == []
    exchange([a, b])
    assert list_conflicts(a) == []
    assert _row(a, "m") == _row(b, "m") == ("m", "f1", "text")
    assert snapshot(a) == snapshot(b)


def test_resolution_with_values_and_by_table_key(pair: tuple[Store, Store]) -> None:
    a, b = (with_strategy(s, Strategy.MANUAL) for s in pair)
    _fork(a, b)
    exchange([a, b])
    change = resolve_change(a, "models/m", values={"model_family": "f9", "modality": "audio"})
    write(a, "A", [change])
    exchange([a, b])
    assert _row(b, "m") == ("m", "f9", "audio")
    assert list_conflicts(a) == list_conflicts(b) == []


def test_delete_concurrent_with_update_is_a_conflict_not_a_lost_write(
    pair: tuple[Store, Store],
) -> None:
    a, b = (with_strategy(s, Strategy.MANUAL) for s in pair)
    insert_model(a, "A", "m", model_name="m", model_family="f0")
    exchange([a, b])
    delete(a, "A", "m")
    update(b, "B", "m", model_family="kept")
    exchange([a, b])
    (conflict,) = list_conflicts(a)
    assert sorted(v["op"] for v in conflict["versions"]) == ["delete", "upsert"]
    kept = next(v for v in conflict["versions"] if v["op"] == "upsert")
    assert kept["values"]["model_family"] == "kept"
    write(a, "A", [resolve_change(a, conflict["id"], take="B")])  # undo the delete
    exchange([a, b])
    assert _row(a, "m") == _row(b, "m") == ("m", "kept", None)
    assert snapshot(a) == snapshot(b)


def test_resolving_by_taking_the_delete(pair: tuple[Store, Store]) -> None:
    a, b = (with_strategy(s, Strategy.MANUAL) for s in pair)
    insert_model(a, "A", "m", model_name="m")
    exchange([a, b])
    delete(a, "A", "m")
    update(b, "B", "m", model_family="x")
    exchange([a, b])
    (conflict,) = list_conflicts(b)
    write(b, "B", [resolve_change(b, conflict["id"], take="A")])
    exchange([a, b])
    assert _row(a, "m") is None and _row(b, "m") is None
    assert list_conflicts(a) == []
    assert snapshot(a) == snapshot(b)


def test_merge_revives_a_row_deleted_concurrently_with_an_edit(pair: tuple[Store, Store]) -> None:
    a, b = (with_strategy(s, Strategy.MERGE) for s in pair)
    insert_model(a, "A", "m", model_name="m", model_family="f0", modality="text")
    exchange([a, b])
    delete(a, "A", "m")
    update(b, "B", "m", modality="vision")  # later than the delete: the row comes back
    exchange([a, b])
    assert snapshot(a) == snapshot(b)
    row = _row(a, "m")
    if _version(b, "B") > _version(a, "A"):
        assert row == (None, None, "vision")  # the delete cleared what the edit did not set
    else:
        assert row is None


def test_out_of_causal_order_arrival_ends_the_same(tmp_path: Path) -> None:
    """C edits after seeing B's edit; D receives C's change before B's."""
    stores = [with_strategy(Store(tmp_path / f"{n}.duckdb"), Strategy.MANUAL) for n in "abcd"]
    a, b, c, d = stores
    insert_model(a, "A", "m", model_name="m")
    exchange(stores)
    update(b, "B", "m", model_family="b")
    pull(c, b)
    update(c, "C", "m", modality="c")  # based on B's version
    only_c = [blk for batch in c.missing_for({**d.vector(), "B": 99}) for blk in batch]
    assert d.apply_blocks(only_c).applied == 1
    pending = d.cursor().execute("SELECT count(*) FROM store.pending_bases").fetchone()
    assert pending == (1,)  # B's version is known to be superseded before it arrives
    exchange(stores)
    assert all(list_conflicts(s) == [] for s in stores)
    assert len({str(snapshot(s)) for s in stores}) == 1
    for s in stores:
        s.close()


def test_resolve_refuses_what_it_cannot_do(pair: tuple[Store, Store]) -> None:
    a, b = (with_strategy(s, Strategy.MANUAL) for s in pair)
    _fork(a, b)
    exchange([a, b])
    (conflict,) = list_conflicts(a)
    for kwargs in ({}, {"take": "A", "values": {}}, {"take": "nobody"},
                   {"values": {"nope": 1}}):  # fmt: skip
        with pytest.raises(WriteError):
            resolve_change(a, conflict["id"], **kwargs)  # type: ignore[arg-type]
    with pytest.raises(WriteError):
        resolve_change(a, "000000000000", take="A")


def test_strategy_change_affects_future_conflicts_only(pair: tuple[Store, Store]) -> None:
    a, b = (with_strategy(s, Strategy.MANUAL) for s in pair)
    _fork(a, b)
    exchange([a, b])
    assert len(list_conflicts(a)) == 1
    for s in (a, b):
        with_strategy(s, Strategy.LATEST)
    assert len(list_conflicts(a)) == 1  # still open until resolved
    insert_model(a, "A", "n", model_name="n")
    exchange([a, b])
    update(a, "A", "n", model_family="x")
    update(b, "B", "n", model_family="y")
    exchange([a, b])
    assert [c["key"] for c in list_conflicts(a)] == ["m"]  # no new one under latest
    (conflict,) = list_conflicts(b)
    write(b, "B", [resolve_change(b, conflict["id"], take="A")])
    exchange([a, b])
    assert list_conflicts(a) == []


def test_recreating_a_deleted_row_is_based_on_the_delete(pair: tuple[Store, Store]) -> None:
    a, b = (with_strategy(s, Strategy.MANUAL) for s in pair)
    insert_model(a, "A", "m", model_name="m")
    delete(a, "A", "m")
    insert_model(a, "A", "m", model_name="again")
    exchange([a, b])
    assert list_conflicts(a) == list_conflicts(b) == []
    assert _row(b, "m") == ("again", None, None)
