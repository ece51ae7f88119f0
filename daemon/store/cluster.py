"""How ``performance_results`` lies in row groups by key, and re-clustering it.

DuckDB keeps a min/max (zone map) of every column per row group of 122,880 rows and
skips a row group whose range cannot match a scan's filter. ``result_id`` is a UUIDv7,
so rows written in time order land in row groups with narrow, disjoint key ranges, and
a scan of a key range reads only the row groups it covers: that is what lets the peers
of a distributed query each read their share of the table (daemon/distq).

Rows that arrive out of key order widen row groups: a peer catching up after a day
away appends a day of old keys, a writer whose clock is hours behind interleaves keys
from hours ago with today's, imported legacy rows carry random UUIDs. A wide row group
is read by every slice its range overlaps. :func:`measure` says how much more a slice
reads than it would in a sorted table; :func:`move_sorted` rewrites the rows of one key
range in key order (same rows, same versions, no changeset: the database CID does not
change), which daemon/distq/recluster.py runs in the background while writes pause.

Everything here is synchronous DuckDB work for a worker thread; the key arithmetic is
plain Python over UUIDs as 128-bit integers.
"""

from __future__ import annotations

import bisect
import itertools
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

import duckdb

TABLE = "performance_results"
KEY = "result_id"
ROW_GROUP_ROWS = 122_880  # DuckDB's row group size
KEY_SPACE = 1 << 128
_STAGE = "_dp_recluster"


@dataclass(frozen=True)
class RowGroup:
    """One row group of the fact table: its rows and the key range of its zone map."""

    rows: int
    lo: int  # smallest key, a UUID as an int
    hi: int  # largest key


def row_groups(cur: duckdb.DuckDBPyConnection) -> list[RowGroup]:
    """The row groups of ``store.performance_results`` with their key ranges (from
    DuckDB's storage metadata: no table scan; rows include deleted ones not yet
    vacuumed)."""
    found = cur.execute(
        f"SELECT row_group_id, sum(count), min(stats.min), max(stats.max) "
        f"FROM pragma_storage_info('store.{TABLE}') "
        f"WHERE column_name = '{KEY}' AND segment_type = 'UUID' GROUP BY 1 ORDER BY 1"
    ).fetchall()
    return [
        RowGroup(int(rows), lo.int, hi.int)
        for _, rows, lo, hi in found
        if rows and isinstance(lo, uuid.UUID) and isinstance(hi, uuid.UUID)
    ]


# -- the key distribution ----------------------------------------------------------------


class KeyDistribution:
    """Where keys lie, estimated from the zone maps: each row group's rows spread evenly
    over its key range. Exact to a row group in a clustered table; a usable estimate in
    any other (any split points give correct slices, estimates only balance them)."""

    def __init__(self, groups: Sequence[RowGroup]) -> None:
        self.groups = list(groups)
        self.total = sum(g.rows for g in self.groups)
        events: dict[int, float] = {}
        for g in self.groups:  # density rows/width over [lo, hi + 1)
            density = g.rows / (g.hi - g.lo + 1)
            events[g.lo] = events.get(g.lo, 0.0) + density
            events[g.hi + 1] = events.get(g.hi + 1, 0.0) - density
        self._points = sorted(events)
        self._below: list[float] = []  # rows below each point
        self._slope: list[float] = []  # density from each point to the next
        below, slope = 0.0, 0.0
        for i, point in enumerate(self._points):
            if i:
                below += slope * (point - self._points[i - 1])
            slope += events[point]
            self._below.append(below)
            self._slope.append(max(slope, 0.0))

    def rows_below(self, key: int) -> float:
        """Estimated rows with a key < ``key``."""
        i = bisect.bisect_right(self._points, key) - 1
        if i < 0:
            return 0.0
        return min(self._below[i] + self._slope[i] * (key - self._points[i]), self.total)

    def key_at(self, fraction: float) -> int:
        """A key with about ``fraction`` of the rows below it (0 for an empty table)."""
        if not self._points:
            return 0
        target = max(0.0, min(1.0, fraction)) * self.total
        i = max(bisect.bisect_right(self._below, target) - 1, 0)
        start, slope = self._points[i], self._slope[i]
        end = self._points[i + 1] if i + 1 < len(self._points) else start
        if slope <= 0.0:
            return start
        return min(start + int((target - self._below[i]) / slope), end)


KeyRange = tuple[int | None, int | None]  # [lo, hi); None = unbounded


def overlapping(groups: Sequence[RowGroup], ranges: Sequence[KeyRange]) -> list[RowGroup]:
    """The row groups a scan of ``ranges`` ([lo, hi) key ranges, None = unbounded) must
    read: those whose zone map overlaps one of them. DuckDB skips the others."""
    return [
        g
        for g in groups
        if any((lo is None or g.hi >= lo) and (hi is None or g.lo < hi) for lo, hi in ranges)
    ]


# -- clustering --------------------------------------------------------------------------


@dataclass(frozen=True)
class Slice:
    """One of the equal-count key ranges :func:`measure` probes."""

    lo: int
    hi: int  # exclusive
    rows: float
    scanned: int  # row groups a scan of [lo, hi) reads
    ideal: int  # row groups it would read in a table sorted by key

    @property
    def disordered(self) -> bool:
        """Reads more than twice what a sorted table would."""
        return self.scanned >= 2 * self.ideal and self.scanned > self.ideal + 1


@dataclass(frozen=True)
class Clustering:
    """How well the table is clustered by key, probed with equal-count key slices."""

    row_groups: int
    rows: int
    slices: tuple[Slice, ...]

    @property
    def scanned(self) -> int:
        """Row groups all probe slices read together."""
        return sum(s.scanned for s in self.slices)

    @property
    def ideal(self) -> int:
        """Row groups they would read in a table sorted by key."""
        return sum(s.ideal for s in self.slices)

    @property
    def amplification(self) -> float:
        """Row groups read per row group needed (1.0 = perfectly clustered)."""
        return self.scanned / max(self.ideal, 1)

    def to_dict(self) -> dict[str, object]:
        """JSON form (status, logs, benchmarks)."""
        return {
            "row_groups": self.row_groups,
            "rows": self.rows,
            "probe_slices": len(self.slices),
            "row_groups_scanned": self.scanned,
            "row_groups_ideal": self.ideal,
            "amplification": round(self.amplification, 3),
            "disordered_slices": sum(1 for s in self.slices if s.disordered),
        }


def measure(groups: Sequence[RowGroup], slice_rows: int = 4 * ROW_GROUP_ROWS) -> Clustering:
    """Probe the layout with equal-count key slices of about ``slice_rows`` rows (at
    least 8 slices) and count the row groups each must read."""
    dist = KeyDistribution(groups)
    count = max(8, -(-dist.total // max(slice_rows, 1)))
    keys = [dist.key_at(i / count) for i in range(count)] + [KEY_SPACE]
    slices = []
    for lo, hi in itertools.pairwise(keys):
        if hi <= lo:
            continue
        rows = dist.rows_below(hi) - dist.rows_below(lo)
        scanned = len(overlapping(groups, [(lo, hi)]))
        ideal = -(-int(rows) // ROW_GROUP_ROWS) + 1 if rows >= 1 else 0
        slices.append(Slice(lo, hi, rows, scanned, min(ideal, len(groups))))
    return Clustering(len(groups), dist.total, tuple(slices))


def next_piece(clustering: Clustering, after: int) -> Slice | None:
    """The first disordered probe slice starting at or after key ``after``."""
    for s in clustering.slices:
        if s.disordered and s.hi > after and s.lo >= after:
            return s
    return None


def move_sorted(cur: duckdb.DuckDBPyConnection, lo: int, hi: int) -> int:
    """Rewrite the rows with keys in [lo, hi) in key order, in one transaction; the
    number of rows moved. Values and versions are untouched: the rows are the same,
    only where they lie changes. Run it where writes are serialized (the writer)."""
    where = f"{KEY} >= {uuid_literal(lo)} AND {KEY} < {uuid_literal(hi)}"
    cur.execute("BEGIN TRANSACTION")
    try:
        cur.execute(
            f"CREATE TEMP TABLE {_STAGE} AS SELECT * FROM store.{TABLE} WHERE {where} "
            f"ORDER BY {KEY}"
        )
        (staged,) = cur.execute(f"SELECT count(*) FROM {_STAGE}").fetchall()[0]
        deleted = cur.execute(f"DELETE FROM store.{TABLE} WHERE {where}").fetchall()[0][0]
        cur.execute(f"INSERT INTO store.{TABLE} SELECT * FROM {_STAGE} ORDER BY {KEY}")
        cur.execute(f"DROP TABLE {_STAGE}")
        if deleted != staged:
            raise duckdb.InvalidInputException(f"re-cluster moved {deleted} of {staged} rows")
        cur.execute("COMMIT")
    except BaseException:
        cur.execute("ROLLBACK")
        raise
    return int(staged)


def uuid_literal(key: int) -> str:
    """A key as a DuckDB UUID literal."""
    return f"CAST('{uuid.UUID(int=max(0, min(key, KEY_SPACE - 1)))}' AS UUID)"
