"""Query rewrites that preserve results: pure functions over sqlglot trees.

Applied in this order to a validated query, each one recorded by name only when it
changed the query:

* ``constant_folding``: constant sub-expressions folded, trivially true predicates
  dropped (``sqlglot.optimizer.simplify``).
* ``select_star_narrowed``: a ``SELECT *`` inside a subquery or CTE narrowed to the
  columns the outer query uses (``pushdown_projections`` after ``qualify`` expands
  stars against ``protocol.schema``).
* ``projection_pushdown``: other unused columns of subqueries / CTEs dropped.
* ``predicate_pushdown``: outer WHERE / join predicates moved into the subqueries and
  CTEs they only depend on (``pushdown_predicates``).

DuckDB's own optimizer does much of this for a local query; the rewrites matter when a
query is split into fragments for other peers (a distributed planner can call
:func:`rewrite` on a fragment), and they make equivalent spellings run the same SQL.
A query the rewriter cannot qualify (unknown column, ambiguous reference) is run as
written. The rewritten SQL's output column names may differ; the caller keeps the
original's names (``DESCRIBE``).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

from daemon.query.lazysqlglot import exp, optimizer, sqlglot
from daemon.query.sandbox import QueryRejected, validate_query
from daemon.store.rowsql import SQL_TYPES
from protocol.schema import TABLES

DIALECT = "duckdb"
SCHEMA: dict[str, dict[str, str]] = {
    table.name: {name: SQL_TYPES[kind] for name, kind in table.columns} for table in TABLES.values()
}


@dataclass(frozen=True)
class Rewritten:
    """The SQL to run and the rewrites applied to get it (empty: run as written)."""

    sql: str
    rewrites: tuple[str, ...]


@functools.lru_cache(maxsize=1024)
def rewrite_sql(sql: str) -> Rewritten:
    """Rewrite a query text (validated first; raises QueryRejected if not allowed)."""
    return rewrite(validate_query(sql), sql)


def rewrite(tree: exp.Expression, original_sql: str | None = None) -> Rewritten:
    """Apply the result-preserving rewrites to a parsed query."""
    fallback = original_sql if original_sql is not None else tree.sql(dialect=DIALECT)
    try:
        current = optimizer("qualify")(
            tree.copy(), schema=SCHEMA, dialect=DIALECT, quote_identifiers=False, identify=False
        )
    except (sqlglot.errors.SqlglotError, RecursionError):
        return Rewritten(fallback, ())
    applied: list[str] = []
    for name, step in _STEPS:
        try:
            candidate = step(current.copy())
        except (sqlglot.errors.SqlglotError, RecursionError):
            continue
        if _changed(name, current, candidate):
            applied.append(_name(name, current))
            current = candidate
    if not applied:
        return Rewritten(fallback, ())
    # simplify drops the WHERE TRUE a pushdown leaves
    cleaned = optimizer("simplify")(current, dialect=DIALECT)
    _revalidate(cleaned)
    return Rewritten(cleaned.sql(dialect=DIALECT), tuple(applied))


def _changed(step: str, before: exp.Expression, after: exp.Expression) -> bool:
    if step == "constant_folding":  # a mere reordering of predicates is not worth a rewrite
        return _size(after) < _size(before)
    if step == "predicate_pushdown":  # some predicate now sits in a subquery or CTE
        return _nested_predicates(after) > _nested_predicates(before)
    return after.sql(dialect=DIALECT) != before.sql(dialect=DIALECT)


def _nested_predicates(tree: exp.Expression) -> int:
    """Conjuncts in the WHERE, HAVING and JOIN ON clauses of every select but the outermost."""
    count = 0
    for select in tree.find_all(exp.Select):
        if select is tree:
            continue
        clauses = [select.args.get("where"), select.args.get("having")]
        clauses += [j.args.get("on") for j in select.args.get("joins") or []]
        for clause in clauses:
            condition = clause.this if isinstance(clause, exp.Where | exp.Having) else clause
            if condition is not None:
                count += len(list(condition.flatten())) if isinstance(condition, exp.And) else 1
    return count


def _size(tree: exp.Expression) -> int:
    return sum(1 for _ in tree.walk())


def _name(step: str, before: exp.Expression) -> str:
    if step == "projection_pushdown" and _inner_star(before):
        return "select_star_narrowed"
    return step


def _inner_star(tree: exp.Expression) -> bool:
    """Whether a subquery or CTE selects every column (qualify expanded its star into
    the full column list of a table)."""
    for select in tree.find_all(exp.Select):
        if select is tree:
            continue
        tables = [t for t in select.find_all(exp.Table) if t.parent_select is select]
        if len(tables) == 1 and tables[0].name in SCHEMA:
            names = {p.alias_or_name for p in select.expressions}
            if names == set(SCHEMA[tables[0].name]):
                return True
    return False


def _revalidate(tree: exp.Expression) -> None:
    """The rewritten query must still pass the sandbox (it always should)."""
    validate_query(tree.sql(dialect=DIALECT))


def _fold(tree: exp.Expression) -> exp.Expression:
    return optimizer("simplify")(tree, dialect=DIALECT)


def _projections(tree: exp.Expression) -> exp.Expression:
    return optimizer("pushdown_projections")(tree)


def _predicates(tree: exp.Expression) -> exp.Expression:
    return optimizer("pushdown_predicates")(tree, dialect=DIALECT)


_STEPS: tuple[tuple[str, Callable[[exp.Expression], exp.Expression]], ...] = (
    ("constant_folding", _fold),
    ("projection_pushdown", _projections),
    ("predicate_pushdown", _predicates),
)

__all__ = ["SCHEMA", "QueryRejected", "Rewritten", "rewrite", "rewrite_sql"]
