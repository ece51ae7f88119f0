"""Version vectors: ordering, merging and "what am I missing"."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol import vv
from protocol.vv import Order

SETTINGS = settings(max_examples=300, deadline=None)

MIRROR = {
    Order.EQUAL: Order.EQUAL,
    Order.DOMINATES: Order.DOMINATED,
    Order.DOMINATED: Order.DOMINATES,
    Order.CONCURRENT: Order.CONCURRENT,
}

# A small origin alphabet so that vectors overlap often.
origins = st.sampled_from(["a", "b", "c", "d", "12D3KooWpeer"])
vectors = st.dictionaries(origins, st.integers(min_value=1, max_value=20), max_size=5)


def _reference(a: vv.VersionVector, b: vv.VersionVector) -> Order:
    keys = set(a) | set(b)
    le = all(a.get(k, 0) <= b.get(k, 0) for k in keys)
    ge = all(a.get(k, 0) >= b.get(k, 0) for k in keys)
    if le and ge:
        return Order.EQUAL
    if ge:
        return Order.DOMINATES
    if le:
        return Order.DOMINATED
    return Order.CONCURRENT


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        ({}, {}, Order.EQUAL),
        ({"a": 1}, {"a": 1}, Order.EQUAL),
        ({"a": 0}, {}, Order.EQUAL),  # missing counts as 0
        ({"a": 2}, {"a": 1}, Order.DOMINATES),
        ({"a": 1, "b": 1}, {"a": 1}, Order.DOMINATES),
        ({"a": 1}, {}, Order.DOMINATES),
        ({}, {"x": 3}, Order.DOMINATED),
        ({"a": 1}, {"a": 1, "b": 4}, Order.DOMINATED),
        ({"a": 2, "b": 1}, {"a": 1, "b": 2}, Order.CONCURRENT),
        ({"a": 1}, {"b": 1}, Order.CONCURRENT),
    ],
)
def test_compare_examples(a: dict[str, int], b: dict[str, int], expected: Order) -> None:
    assert vv.compare(a, b) is expected
    assert vv.compare(b, a) is MIRROR[expected]


@SETTINGS
@given(vectors, vectors)
def test_compare_matches_reference_and_mirrors(a: dict[str, int], b: dict[str, int]) -> None:
    order = vv.compare(a, b)
    assert order is _reference(a, b)
    assert vv.compare(b, a) is MIRROR[order]


@SETTINGS
@given(vectors)
def test_compare_reflexive(a: dict[str, int]) -> None:
    assert vv.compare(a, dict(a)) is Order.EQUAL


@SETTINGS
@given(vectors, vectors)
def test_merge_commutative(a: dict[str, int], b: dict[str, int]) -> None:
    assert vv.merge([a, b]) == vv.merge([b, a])


@SETTINGS
@given(vectors, vectors, vectors)
def test_merge_associative(a: dict[str, int], b: dict[str, int], c: dict[str, int]) -> None:
    left = vv.merge([vv.merge([a, b]), c])
    right = vv.merge([a, vv.merge([b, c])])
    assert left == right == vv.merge([a, b, c])


@SETTINGS
@given(vectors)
def test_merge_idempotent(a: dict[str, int]) -> None:
    assert vv.merge([a, a]) == a
    assert vv.merge([a]) == a
    assert vv.merge([vv.merge([a]), a]) == a


@SETTINGS
@given(vectors, vectors)
def test_merge_is_least_upper_bound(a: dict[str, int], b: dict[str, int]) -> None:
    m = vv.merge([a, b])
    assert vv.compare(m, a) in (Order.EQUAL, Order.DOMINATES)
    assert vv.compare(m, b) in (Order.EQUAL, Order.DOMINATES)
    assert set(m) == set(a) | set(b)
    for k, seq in m.items():
        assert seq == max(a.get(k, 0), b.get(k, 0))


def test_merge_empty_and_does_not_alias_inputs() -> None:
    assert vv.merge([]) == {}
    a = {"a": 1}
    m = vv.merge([a])
    m["a"] = 99
    assert a == {"a": 1}


@SETTINGS
@given(vectors, vectors)
def test_lacks_and_missing_count_consistent_with_compare(
    mine: dict[str, int], theirs: dict[str, int]
) -> None:
    order = vv.compare(theirs, mine)
    lacks = vv.lacks(mine, theirs)
    missing = vv.missing_count(mine, theirs)
    assert lacks == (order in (Order.DOMINATES, Order.CONCURRENT))
    assert (missing > 0) == lacks
    assert missing >= 0
    # After merging their vector in, I lack nothing of theirs.
    merged = vv.merge([mine, theirs])
    assert not vv.lacks(merged, theirs)
    assert vv.missing_count(merged, theirs) == 0
    # Missing counts add up to what the merge gained over my vector.
    assert missing == sum(merged.values()) - sum(mine.values())
    # Both sides lacking nothing of each other means equal.
    both_empty = not lacks and not vv.lacks(theirs, mine)
    assert both_empty == (order is Order.EQUAL)


def test_missing_count_examples() -> None:
    assert vv.missing_count({"a": 3}, {"a": 5, "b": 2}) == 4
    assert vv.missing_count({"a": 5, "b": 2}, {"a": 3}) == 0
    assert vv.lacks({"a": 3}, {"a": 5})
    assert not vv.lacks({"a": 5}, {"a": 3})
    assert not vv.lacks({}, {})
