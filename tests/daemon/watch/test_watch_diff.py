"""daemon.watch.diff: the events between two results, keyed and not."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from daemon.watch.diff import RowEvent, diff, key_index


def test_rows_with_a_key_column_change_in_place() -> None:
    assert key_index(["model_id", "n"]) == 0
    assert key_index(["n", "result_id"]) == 1
    old = [("a", 1), ("b", 2), ("c", 3)]
    new = [("a", 1), ("b", 5), ("d", 4)]
    assert diff(old, new, 0) == [
        RowEvent("changed", ("b", 5), ("b", 2)),
        RowEvent("added", ("d", 4)),
        RowEvent("removed", ("c", 3)),
    ]


def test_rows_without_a_key_are_their_whole_value() -> None:
    assert key_index(["model", "avg"]) is None
    old = [("x", 1.0), ("x", 1.0), ("y", 2.0)]
    new = [("x", 1.0), ("y", 3.0)]
    assert diff(old, new, None) == [
        RowEvent("added", ("y", 3.0)),
        RowEvent("removed", ("x", 1.0)),
        RowEvent("removed", ("y", 2.0)),
    ]


rows = st.lists(st.tuples(st.sampled_from("abcdef"), st.integers(0, 3)), max_size=12)


@given(old=rows, new=rows)
def test_applying_the_events_gives_the_new_rows(
    old: list[tuple[str, int]], new: list[tuple[str, int]]
) -> None:
    bag = sorted(old)
    for event in diff(old, new, None):
        if event.kind == "added":
            bag.append(event.row)
        else:
            bag.remove(event.row)
    assert sorted(bag) == sorted(new)
    keyed_old = list({k: (k, v) for k, v in old}.values())
    keyed_new = list({k: (k, v) for k, v in new}.values())
    state = {row[0]: row for row in keyed_old}
    for event in diff(keyed_old, keyed_new, 0):
        if event.kind == "removed":
            del state[event.row[0]]
        else:
            state[event.row[0]] = event.row
    assert state == {row[0]: row for row in keyed_new}
