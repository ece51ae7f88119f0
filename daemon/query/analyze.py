"""``peerctl query --analyze``: DuckDB's profile of a query, and advice backed by numbers.

The query runs (read-only, sandboxed, with the usual deadline) under
``EXPLAIN (ANALYZE, FORMAT JSON)``; the JSON tree gives each operator's name, time and
output rows. :func:`suggest` turns that profile plus a few table statistics into
concrete suggestions, each quoting the figure it rests on:

* an operator taking most of the time (>= 50 %);
* a full scan of a large table (>= ``LARGE_TABLE`` rows) with no filter;
* a filter on a high-cardinality column that has no index (only primary keys have
  one here), so DuckDB can only prune by min/max zone maps;
* a join whose output is much larger than its inputs (an exploding join);
* a GROUP BY producing about as many groups as input rows (grouping by a near-unique
  column);
* a sort of a large input without LIMIT.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from daemon.query.limits import QueryLimits, query_cursor
from daemon.query.sandbox import check_query
from daemon.store.database import Store
from daemon.store.running import RUNNING
from protocol.schema import TABLES

LARGE_TABLE = 1_000_000
DOMINANT_SHARE = 0.5
EXPLODING_FACTOR = 10
SKIPPED = {"RESULT_COLLECTOR", "EXPLAIN_ANALYZE"}


@dataclass
class Operator:
    """One node of the profiled plan."""

    name: str
    depth: int
    ms: float
    rows: int
    info: dict[str, Any] = field(default_factory=dict)
    child_rows: list[int] = field(default_factory=list)

    @property
    def table(self) -> str | None:
        """The replicated table a scan reads (``memory.store.performance_results``)."""
        raw = self.info.get("Table")
        return str(raw).rsplit(".", 1)[-1] if raw else None

    @property
    def filters(self) -> list[str]:
        """Filter expressions pushed into a scan."""
        out: list[str] = []
        for key in ("Filters", "Dynamic Filters"):
            raw = self.info.get(key)
            out.extend([raw] if isinstance(raw, str) else list(raw or []))
        return out


@dataclass
class Profile:
    """A parsed DuckDB JSON profile."""

    total_ms: float  # wall-clock time of the query
    rows_scanned: int
    operators: list[Operator]

    @property
    def operator_ms(self) -> float:
        """Operator time summed over the plan (and over DuckDB's threads): the base of
        each operator's share, since one operator's time can exceed the wall clock."""
        return sum(op.ms for op in self.operators) or 1e-9


@dataclass
class TableFacts:
    """What the suggestions need about one table."""

    rows: int
    indexed: set[str]
    distinct: dict[str, int]


def parse_profile(text: str) -> Profile:
    """The operators (pre-order, with depth) of an ``EXPLAIN (ANALYZE, FORMAT JSON)``."""
    doc = json.loads(text)
    operators: list[Operator] = []
    for root in doc.get("operator", []):
        _walk(root, 0, operators)
    query = doc.get("query", {})
    total = float(query.get("total_time") or query.get("latency") or 0.0) * 1000
    total = total or sum(op.ms for op in operators)
    return Profile(round(total, 3), int(query.get("total_rows_scanned") or 0), operators)


def _walk(node: dict[str, Any], depth: int, out: list[Operator]) -> None:
    name = str(node.get("name", "?")).strip()
    children = node.get("children", [])
    if name in SKIPPED:
        for child in children:
            _walk(child, depth, out)
        return
    rows = node.get("operator_cardinality", node.get("intermediate_rows", 0)) or 0
    op = Operator(name, depth, float(node.get("timing") or 0.0) * 1000, int(rows),
                  dict(node.get("extra_info") or {}))  # fmt: skip
    out.append(op)
    for child in children:
        op.child_rows.append(
            int(child.get("operator_cardinality", child.get("intermediate_rows", 0)) or 0)
        )
        _walk(child, depth + 1, out)


def filter_columns(op: Operator) -> list[str]:
    """Columns of the scanned table named in a scan's filters."""
    table = TABLES.get(op.table or "")
    if table is None:
        return []
    words = set(re.findall(r"[A-Za-z_][A-Za-z0-9_]*", " ".join(op.filters)))
    return [c for c in table.column_names if c in words]


def suggest(profile: Profile, facts: dict[str, TableFacts]) -> list[str]:
    """Concrete suggestions, each with the number from the profile behind it."""
    total = profile.operator_ms
    out: list[str] = []
    for op in profile.operators:
        share = op.ms / total
        if share >= DOMINANT_SHARE:
            out.append(f"{op.name}{_on(op)} takes {op.ms:,.1f} ms = {share:.0%} of the "
                       f"operator time ({total:,.1f} ms over all threads; "
                       f"{profile.total_ms:,.1f} ms wall clock)")  # fmt: skip
        out.extend(_scan_advice(op, share, facts))
        out.extend(_shape_advice(op))
    return out


def _on(op: Operator) -> str:
    return f" on {op.table}" if op.table else ""


def _scan_advice(op: Operator, share: float, facts: dict[str, TableFacts]) -> list[str]:
    fact = facts.get(op.table or "")
    if "SCAN" not in op.name or fact is None or fact.rows < LARGE_TABLE:
        return []
    if not op.filters:
        return [f"full scan of {op.table}: {fact.rows:,} rows read with no filter "
                f"({op.ms:,.1f} ms, {share:.0%} of the time); filter on created_at or another "
                "selective column, or pre-aggregate into a smaller table"]  # fmt: skip
    advice = []
    for column in filter_columns(op):
        distinct = fact.distinct.get(column, 0)
        if column not in fact.indexed and distinct >= min(10_000, fact.rows // 10):
            advice.append(
                f"filter on {op.table}.{column}: {distinct:,} distinct values in {fact.rows:,} "
                f"rows and no index (only {'/'.join(sorted(fact.indexed))} has one): the scan "
                f"reads every row group its min/max cannot rule out ({op.ms:,.1f} ms); rows "
                f"ingested in {column} order prune far better, or narrow by a created_at "
                "range first"
            )
    return advice


def _shape_advice(op: Operator) -> list[str]:
    inputs = max(op.child_rows, default=0)
    if "JOIN" in op.name and inputs and op.rows > EXPLODING_FACTOR * inputs:
        return [f"{op.name} produced {op.rows:,} rows from inputs of at most {inputs:,} "
                f"({op.rows / inputs:,.0f}x): the join keys are not unique on either side or "
                "a join condition is missing"]  # fmt: skip
    if "GROUP_BY" in op.name and inputs >= 100_000 and op.rows >= 0.5 * inputs:
        return [f"{op.name} made {op.rows:,} groups from {inputs:,} rows: grouping by a "
                "near-unique column aggregates almost nothing"]  # fmt: skip
    if op.name in ("ORDER_BY", "SORT") and inputs >= LARGE_TABLE:
        return [f"{op.name} sorts {inputs:,} rows ({op.ms:,.1f} ms); add a LIMIT (top-N is "
                "much cheaper) or sort after aggregating"]  # fmt: skip
    return []


# -- running (reader thread) ---------------------------------------------------------------


def analyze(store: Store, sql: str, limits: QueryLimits) -> dict[str, Any]:
    """Profile ``sql`` and collect suggestions. Runs in a query worker."""
    check_query(sql)
    with RUNNING.guard(query_cursor(store, limits), limits.timeout) as cur:
        try:
            row = cur.execute(f"EXPLAIN (ANALYZE, FORMAT JSON) {sql}").fetchone()
            profile = parse_profile(row[1] if row else "{}")
            facts = _facts(cur, profile)
        finally:
            cur.close()
    return {
        "total_ms": profile.total_ms,
        "operator_ms": round(profile.operator_ms, 3),
        "rows_scanned": profile.rows_scanned,
        "operators": [
            {
                "name": op.name,
                "depth": op.depth,
                "ms": round(op.ms, 3),
                "rows": op.rows,
                "share": round(op.ms / profile.operator_ms, 4),
                "table": op.table,
                "filters": op.filters,
            }
            for op in profile.operators
        ],
        "suggestions": suggest(profile, facts),
    }


def _facts(cur: Any, profile: Profile) -> dict[str, TableFacts]:
    facts: dict[str, TableFacts] = {}
    for op in profile.operators:
        table = op.table
        if table not in TABLES or table in facts:
            continue
        rows = cur.execute(f"SELECT count(*) FROM main.{table}").fetchone()[0]
        fact = TableFacts(rows, {TABLES[table].key}, {})
        if rows >= LARGE_TABLE:
            for column in filter_columns(op):
                fact.distinct[column] = cur.execute(
                    f"SELECT approx_count_distinct({column}) FROM main.{table}"
                ).fetchone()[0]
        facts[table] = fact
    return facts
