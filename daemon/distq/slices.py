"""Partitionings of the fact table and the SQL of one slice (sqlglot, no I/O).

A partition query is the map query with its one reference to ``performance_results``
replaced by a subquery that reads only the slice. The slices of a partitioning are
disjoint and complete on every peer whatever its physical row order, because each is a
condition on column values, never on row positions.

``keys`` (what coordinators send): ``bounds`` cut a column into ``len(bounds) + 1``
contiguous chunks and ``owners[j]`` names the partition of chunk ``j``; a slice is the
union of its chunks, merged where adjacent. On ``result_id`` (a UUIDv7, so rows lie in
row groups roughly in key order) a chunk is a key range DuckDB's zone maps skip to: a
peer reads about its share of the row groups, not the whole table.

``hash``, ``round_robin`` and ``range`` (one chunk per partition, no owners) are the
wire strategies of older coordinators, still answered: a hash of every key and a
``row_number()`` over the whole table cannot be skipped to, so each such slice scans
everything.
"""

from __future__ import annotations

import functools
import itertools
import math
import re
import uuid
from dataclasses import dataclass

from daemon.distq.plan import FACT_KEY, FACT_TABLE, NotSplittable
from daemon.query.lazysqlglot import exp, sqlglot
from daemon.query.rewrite import rewrite_sql
from daemon.query.sandbox import QueryRejected
from protocol.messages import MAX_CHUNKS, MAX_PARTITIONS

KEYS = "keys"
LEGACY_STRATEGIES = ("hash", "round_robin", "range")
WIRE_STRATEGIES = (KEYS, *LEGACY_STRATEGIES)
# Columns a partitioning may split on (numbers, text and the UUID key: literal bounds
# are exact). Only the key prunes in general: other columns are not clustered.
RANGE_COLUMNS = frozenset(
    {
        FACT_KEY,
        "batch_size",
        "iterations",
        "warmup_iterations",
        "total_time_seconds",
        "average_latency_ms",
        "throughput_items_per_second",
        "memory_peak_mb",
        "model_id",
        "hardware_id",
        "test_case",
        "precision",
    }
)
Bound = int | float | str
Range = tuple[Bound | None, Bound | None]  # [lo, hi); None = unbounded (lo None: NULLs too)
_DIALECT = "duckdb"


@dataclass(frozen=True)
class Partitioning:
    """How the fact table's rows are split: ``count`` disjoint, complete slices."""

    strategy: str
    count: int
    column: str = ""
    bounds: tuple[Bound, ...] = ()
    owners: tuple[int, ...] = ()

    def problem(self) -> str | None:
        """Why this partitioning is invalid, or None."""
        if self.strategy not in WIRE_STRATEGIES:
            return f"unknown partition strategy {self.strategy!r}"
        if not 1 <= self.count <= MAX_PARTITIONS:
            return f"partition count must be 1..{MAX_PARTITIONS}"
        if self.strategy == KEYS:
            return self._keys_problem() or _bounds_problem(self.column, self.bounds)
        if self.strategy == "range":
            if len(self.bounds) != self.count - 1:
                return "range partitioning needs count - 1 bounds"
            return _bounds_problem(self.column, self.bounds)
        return None

    def _keys_problem(self) -> str | None:
        if not 1 <= len(self.owners) <= MAX_CHUNKS:
            return f"a keys partitioning has 1..{MAX_CHUNKS} chunks"
        if len(self.owners) != len(self.bounds) + 1:
            return "a keys partitioning needs one owner per chunk (bounds + 1)"
        if any(not 0 <= o < self.count for o in self.owners):
            return "chunk owner out of range"
        return None

    def ranges(self, index: int) -> list[Range]:
        """The key ranges of slice ``index``: its chunks, adjacent ones merged."""
        if self.strategy != KEYS:
            raise NotSplittable(f"{self.strategy} slices are not key ranges")
        edges: list[Bound | None] = [None, *self.bounds, None]
        out: list[Range] = []
        for j, owner in enumerate(self.owners):
            if owner != index:
                continue
            if out and self.owners[j - 1] == index:  # adjacent to the previous chunk
                out[-1] = (out[-1][0], edges[j + 1])
            else:
                out.append((edges[j], edges[j + 1]))
        return out


def _bounds_problem(column: str, bounds: tuple[Bound, ...]) -> str | None:
    if column not in RANGE_COLUMNS:
        return f"range partitioning needs a column of {sorted(RANGE_COLUMNS)}"
    numbers = all(_is_number(b) for b in bounds)
    if not numbers and not all(isinstance(b, str) for b in bounds):
        return "range bounds must be all numbers or all strings"
    if numbers and any(isinstance(b, float) and math.isnan(b) for b in bounds):
        return "range bounds must not be NaN"
    if column == FACT_KEY:
        if numbers and bounds:
            return f"bounds of {FACT_KEY} are UUID strings"
        keys = [_uuid(b) for b in bounds]
        if any(k is None for k in keys):
            return f"bounds of {FACT_KEY} must be UUIDs"
        ordered: list[object] = [k.int for k in keys if k is not None]
    else:
        ordered = list(bounds)
    if any(a > b for a, b in itertools.pairwise(ordered)):  # type: ignore[operator]
        return "range bounds must not decrease"
    return None


def _uuid(value: Bound) -> uuid.UUID | None:
    try:
        return uuid.UUID(str(value))
    except ValueError:
        return None


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


@functools.lru_cache(maxsize=1024)
def partition_sql(map_sql: str, part: Partitioning, index: int) -> str:
    """``map_sql`` restricted to slice ``index`` of the fact table."""
    if part.problem() is not None or not 0 <= index < part.count:
        raise NotSplittable(part.problem() or f"partition {index} out of range")
    return _with_slice(map_sql, slice_sql(part, index))


def _with_slice(map_sql: str, slice_query: str) -> str:
    query = sqlglot.parse_one(map_sql, read=_DIALECT)
    facts = [t for t in query.find_all(exp.Table) if t.name.lower() == FACT_TABLE]
    if len(facts) != 1:
        raise NotSplittable(f"a fragment must read {FACT_TABLE} exactly once")
    table = facts[0]
    table.replace(sqlglot.parse_one(slice_query, read=_DIALECT).subquery(table.alias_or_name))
    return query.sql(_DIALECT)


@functools.lru_cache(maxsize=1024)
def fragment_sql(map_sql: str, part: Partitioning, index: int) -> str:
    """The partition query as run: the map query through the optimizer's rewrites
    (daemon/query/rewrite.py: the slice's ``SELECT *`` narrowed to the columns used,
    the query's filters pushed down into it) with the slice's condition in place.

    The rewrites cost tens of milliseconds of sqlglot, so they run once per map query,
    on a template whose slice condition is a marker, and each slice's condition is put
    where the marker ended up. Older strategies, and templates whose output columns
    would change (the reduce reads them by name), run as written."""
    problem = part.problem()
    if problem is not None or not 0 <= index < part.count:
        raise NotSplittable(problem or f"partition {index} out of range")
    template = _template(map_sql) if part.strategy == KEYS else None
    if template is None:
        return partition_sql(map_sql, part, index)
    return template.replace(_HOLE, f"({slice_condition(part, index)})")


_MARK = "ffffffff-ffff-4fff-bfff-ffffffffd0d0"  # a key no slice condition contains
_MARKED = re.compile(rf"[\w.]*{FACT_KEY} = CAST\('{_MARK}' AS UUID\)")
_HOLE = "__dp_slice__"


@functools.lru_cache(maxsize=256)
def _template(map_sql: str) -> str | None:
    marked = _with_slice(
        map_sql, f"SELECT * FROM {FACT_TABLE} WHERE {FACT_KEY} = CAST('{_MARK}' AS UUID)"
    )
    try:
        rewritten = rewrite_sql(marked)
    except QueryRejected:
        return None
    holes = _MARKED.findall(rewritten.sql)
    names = _output_names(marked)
    if not rewritten.rewrites or len(holes) != 1 or names is None:
        return None
    if _HOLE in rewritten.sql or _output_names(rewritten.sql) != names:
        return None
    return rewritten.sql.replace(holes[0], _HOLE)


def _output_names(sql: str) -> list[str] | None:
    select = sqlglot.parse_one(sql, read=_DIALECT)
    if not isinstance(select, exp.Select) or any(e.is_star for e in select.expressions):
        return None  # a star's columns follow the tables; the reduce reads by position
    return [e.alias_or_name for e in select.expressions]


def slice_condition(part: Partitioning, i: int) -> str:
    """The boolean SQL of slice ``i`` of a ``keys`` partitioning (over the fact table)."""
    conds = [_range_condition(part.column, lo, hi) for lo, hi in part.ranges(i)]
    if not conds:
        return "1 = 0"
    if conds == [""]:
        return "1 = 1"
    return " OR ".join(conds)


def slice_sql(part: Partitioning, i: int) -> str:
    """``SELECT * FROM performance_results`` restricted to slice ``i``."""
    n, col = part.count, part.column
    if part.strategy == KEYS:
        return f"SELECT * FROM {FACT_TABLE} WHERE {slice_condition(part, i)}"
    if n == 1:
        return f"SELECT * FROM {FACT_TABLE}"
    if part.strategy == "hash":
        return f"SELECT * FROM {FACT_TABLE} WHERE hash({FACT_KEY}) % {n} = {i}"
    if part.strategy == "round_robin":
        return (
            f"SELECT * EXCLUDE (_dp_rn) FROM (SELECT *, row_number() OVER "
            f"(ORDER BY {FACT_KEY}) AS _dp_rn FROM {FACT_TABLE}) WHERE (_dp_rn - 1) % {n} = {i}"
        )
    lo = part.bounds[i - 1] if i > 0 else None
    hi = part.bounds[i] if i < n - 1 else None
    return f"SELECT * FROM {FACT_TABLE} WHERE {_range_condition(col, lo, hi)}"


def _range_condition(col: str, lo: Bound | None, hi: Bound | None) -> str:
    """``col`` in [lo, hi); NULLs belong to the range with no lower bound (the key is
    never NULL: no ``IS NULL`` there, which would keep DuckDB from pruning)."""
    conds = []
    if lo is not None:
        conds.append(f"{col} >= {_literal(col, lo)}")
    if hi is not None:
        upper = f"{col} < {_literal(col, hi)}"
        nullable = lo is None and col != FACT_KEY
        conds.append(f"({upper} OR {col} IS NULL)" if nullable else upper)
    if not conds:
        return ""
    return f"({' AND '.join(conds)})" if len(conds) > 1 else conds[0]


def _literal(col: str, value: Bound) -> str:
    if col == FACT_KEY:
        key = _uuid(value)
        if key is None:
            raise NotSplittable(f"bad {FACT_KEY} bound {value!r}")
        return f"CAST('{key}' AS UUID)"
    if isinstance(value, float):
        return f"CAST('{value!r}' AS DOUBLE)"
    return exp.convert(value).sql(_DIALECT)
