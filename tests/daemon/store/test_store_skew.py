"""Clock skew: a change is ordered after the version it is based on, whatever the clocks.

A peer whose clock is an hour behind edits a row it has seen: the edit must win on every
peer under every strategy, with no conflict (it is based on what it replaces). Receivers
refuse a change that is not later than its base, since conflict bookkeeping relies on it.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conflictkit import insert_model, pull, update, with_strategy
from storekit import U, chain, models

from daemon.store.database import Store
from protocol import hlc as hlc_clock
from protocol.changeset import TableChanges
from protocol.conflicts import Strategy

HOUR_MS = 3_600_000


def skewed(offset_ms: int) -> object:
    return lambda: int(time.time() * 1000) + offset_ms


@pytest.fixture
def stores(tmp_path: Path) -> Iterator[tuple[Store, Store]]:
    a = Store(tmp_path / "a.duckdb")
    behind = Store(tmp_path / "b.duckdb", clock_ms=skewed(-HOUR_MS))  # type: ignore[arg-type]
    yield a, behind
    a.close()
    behind.close()


def family(store: Store, key: str) -> str | None:
    row = store.read_row("models", key)
    return None if row is None else row["model_family"]


@pytest.mark.parametrize("strategy", list(Strategy))
def test_an_edit_from_a_clock_an_hour_behind_wins_everywhere(
    stores: tuple[Store, Store], strategy: Strategy
) -> None:
    a, behind = (with_strategy(s, strategy) for s in stores)
    insert_model(a, "A", "bert", model_name="bert", model_family="first")
    pull(behind, a)
    update(behind, "B", "bert", model_family="second")  # based on what it saw
    pull(a, behind)
    assert family(a, "bert") == family(behind, "bert") == "second"
    assert a.db_cid() == behind.db_cid()
    assert a.open_conflict_count() == behind.open_conflict_count() == 0
    update(behind, "B", "bert", model_family="third")  # and again, sequentially
    pull(a, behind)
    assert family(a, "bert") == family(behind, "bert") == "third"
    assert a.open_conflict_count() == behind.open_conflict_count() == 0


def test_the_writer_stamps_above_its_base_without_adopting_the_clock(
    stores: tuple[Store, Store],
) -> None:
    a, behind = stores
    insert_model(a, "A", "bert", model_name="bert")
    pull(behind, a)
    ((seen, _),) = a.current_versions("models", ["bert"]).values()
    assert behind.hlc < seen  # an hour ahead of B's clock: applied, not adopted
    update(behind, "B", "bert", model_family="x")
    ((edit, origin),) = behind.current_versions("models", ["bert"]).values()
    assert (edit, origin) == (seen + 1, "B")  # just above its base, not an hour later


def test_a_change_not_later_than_its_base_is_refused(tmp_path: Path) -> None:
    s = Store(tmp_path / "c.duckdb")
    try:
        now = hlc_clock.pack(int(time.time() * 1000), 0)
        assert s.apply_blocks(chain("A", [(now, [models((U, "m", "1"))])])).applied == 1
        stale = TableChanges("models", ["model_id", "model_name"], bytes([U]), [(now, "A")],
                             [3], [["m"], ["2"]])  # fmt: skip
        result = s.apply_blocks(chain("B", [(now - 5, [stale])]))
        assert result.applied == 0
        assert "not later than its base" in result.rejected[0][1]
        assert (s.read_row("models", "m") or {})["model_name"] == "1"
    finally:
        s.close()
