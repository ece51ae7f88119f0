"""Conflict strategies and the order-independent rules behind them (sans-IO).

Two changes to one row are concurrent when neither was based on the other. Every row
change names the version(s) it was based on, so a row's **heads** are the versions no
arrived change was based on: one head is a clean history, two or more a conflict.

- ``latest``: the row is the version with the largest (hlc, origin), whole row.
- ``merge``: every column is its own last-writer-wins register: a column takes the value
  of the largest version that changed it, so a column changed on one side only keeps
  that side. Existence is a register too (upserts write "exists", deletes write
  "deleted" and clear every column).
- ``manual``: the row is as under ``latest``, and while a key has several heads, every
  head (origin, hlc, values) is kept as an open conflict until a change based on all of
  them (a resolution) arrives.

Both rules are functions of the *set* of changes that have arrived, not of their order,
which is what makes every peer end in the same state (see tests/protocol and
tests/daemon for the property tests).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from protocol.changeset import Version

NO_VERSION: Version = (0, "")
"""Version of a register nobody has written (a column a partial update did not carry)."""


class Strategy(StrEnum):
    """How concurrent changes to one row end up."""

    LATEST = "latest"
    MERGE = "merge"
    MANUAL = "manual"


def parse_strategy(text: str) -> Strategy:
    """``latest`` / ``merge`` / ``manual``; ValueError otherwise."""
    try:
        return Strategy(text)
    except ValueError:
        raise ValueError(f"unknown conflict strategy {text!r} (latest, merge, manual)") from None


def conflict_id(table: str, key: str) -> str:
    """Stable short id of a key's conflict, the same on every peer."""
    return hashlib.sha256(f"{table}\0{key}".encode()).hexdigest()[:12]


# -- heads ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Arrival:
    """One arrived row change: its version and the versions it was based on."""

    version: Version
    bases: tuple[Version, ...]


def advance_heads(
    heads: frozenset[Version],
    pending: frozenset[Version],
    arrivals: Sequence[Arrival],
    arrived_before: Mapping[str, int],
) -> tuple[frozenset[Version], frozenset[Version]]:
    """Heads and pending bases of one key after ``arrivals`` (any order, all at once).

    ``pending`` holds bases named by arrived changes whose own change has not arrived
    yet (possible when origins are delivered out of causal order): when it arrives it
    is known to be superseded. ``arrived_before[origin]`` is the largest hlc applied
    from that origin before these arrivals (an origin's hlc grows along its chain).

    Invariant: heads = arrived versions - every arrived change's bases, and pending =
    those bases - arrived versions; both depend only on the set of arrivals so far.
    """
    new = {a.version for a in arrivals}
    bases = {b for a in arrivals for b in a.bases}
    next_heads = (heads | (new - pending)) - bases
    waiting = {b for b in bases - new if b[0] > arrived_before.get(b[1], 0)}
    return frozenset(next_heads), frozenset((pending - new) | waiting)


# -- merge registers -------------------------------------------------------------------


@dataclass
class MergedRow:
    """A row under ``merge``: a last-writer-wins register per column, plus existence."""

    exists: tuple[Version, bool]
    cells: dict[str, tuple[Version, Any]] = field(default_factory=dict)

    @property
    def version(self) -> Version:
        """The largest version of any register: the row's version."""
        return max([self.exists[0], *(v for v, _ in self.cells.values())])

    def upsert(self, version: Version, values: Mapping[str, Any]) -> None:
        """Apply an upsert that changed ``values`` (column -> value)."""
        if version > self.exists[0]:
            self.exists = (version, True)
        for column, value in values.items():
            if version > self.cells.get(column, (NO_VERSION, None))[0]:
                self.cells[column] = (version, value)

    def delete(self, version: Version, columns: Iterable[str]) -> None:
        """Apply a delete: existence and every column are written at ``version``."""
        if version > self.exists[0]:
            self.exists = (version, False)
        for column in columns:
            if version > self.cells.get(column, (NO_VERSION, None))[0]:
                self.cells[column] = (version, None)

    def values(self, columns: Sequence[str]) -> dict[str, Any]:
        """Visible column values (None for registers nobody wrote)."""
        return {c: self.cells.get(c, (NO_VERSION, None))[1] for c in columns}

    def lagging(self, columns: Sequence[str]) -> dict[str, Version]:
        """Columns whose version is older than the row's (what must be stored aside)."""
        top = self.version
        return {c: v for c in columns if (v := self.cells.get(c, (NO_VERSION, None))[0]) != top}
