"""What changed between two results of the same query: pure functions, no I/O.

Rows are matched by a key column when the result has one (a replicated table's primary
key, such as ``result_id``), so an edit is one ``changed`` event; otherwise a row is its
whole value, and an edit is a ``removed`` plus an ``added``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from protocol.schema import TABLES

KEY_COLUMNS = frozenset(schema.key for schema in TABLES.values())

Row = tuple[Any, ...]


@dataclass(frozen=True)
class RowEvent:
    """One row added, changed or removed (``old`` is the row before, for ``changed``)."""

    kind: str  # "added" | "changed" | "removed"
    row: Row
    old: Row | None = None


def key_index(columns: Sequence[str]) -> int | None:
    """Position of the column that identifies rows, or None (whole-row identity)."""
    for i, name in enumerate(columns):
        if name in KEY_COLUMNS:
            return i
    return None


def diff(old: Sequence[Row], new: Sequence[Row], key: int | None) -> list[RowEvent]:
    """Events that turn ``old`` into ``new`` (in ``new``'s order, removals last)."""
    if key is None:
        return _diff_multiset(old, new)
    before = {row[key]: row for row in old}
    after = {row[key]: row for row in new}
    events = []
    for row in new:
        was = before.get(row[key])
        if was is None:
            events.append(RowEvent("added", row))
        elif was != row:
            events.append(RowEvent("changed", row, was))
    events += [RowEvent("removed", row) for k, row in before.items() if k not in after]
    return events


def _diff_multiset(old: Sequence[Row], new: Sequence[Row]) -> list[RowEvent]:
    gone = Counter(old) - Counter(new)
    came = Counter(new) - Counter(old)
    events = []
    for row in new:
        if came[row]:
            came[row] -= 1
            events.append(RowEvent("added", row))
    for row in old:
        if gone[row]:
            gone[row] -= 1
            events.append(RowEvent("removed", row))
    return events
