"""Version vectors: ``{origin peer id: highest contiguous seq applied}``."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from enum import Enum

VersionVector = Mapping[str, int]


class Order(Enum):
    """How two version vectors relate."""

    EQUAL = "equal"
    DOMINATES = "dominates"
    DOMINATED = "dominated"
    CONCURRENT = "concurrent"


def compare(a: VersionVector, b: VersionVector) -> Order:
    """Compare ``a`` against ``b``; missing origins count as seq 0."""
    a_ahead = b_ahead = False
    for origin in set(a) | set(b):
        x, y = a.get(origin, 0), b.get(origin, 0)
        a_ahead |= x > y
        b_ahead |= y > x
    if a_ahead and b_ahead:
        return Order.CONCURRENT
    if a_ahead:
        return Order.DOMINATES
    if b_ahead:
        return Order.DOMINATED
    return Order.EQUAL


def merge(vectors: Iterable[VersionVector]) -> dict[str, int]:
    """Pointwise maximum of several vectors."""
    out: dict[str, int] = {}
    for vector in vectors:
        for origin, seq in vector.items():
            if seq > out.get(origin, 0):
                out[origin] = seq
    return out


def lacks(mine: VersionVector, theirs: VersionVector) -> bool:
    """True when ``theirs`` holds a changeset that ``mine`` does not."""
    return any(seq > mine.get(origin, 0) for origin, seq in theirs.items())


def missing_count(mine: VersionVector, theirs: VersionVector) -> int:
    """How many changesets ``theirs`` holds beyond ``mine``."""
    return sum(max(0, seq - mine.get(origin, 0)) for origin, seq in theirs.items())
