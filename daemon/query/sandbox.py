"""Read-only query validation: one SELECT over the replicated views, nothing else.

Three walls. :func:`validate_query` is the first, on sqlglot's parse: one SELECT, no
statement or clause that writes or reaches outside, no table but ours, no recursion,
bounded nesting and alias expansion. :func:`check_query` adds the second
(``daemon.query.binding``): what DuckDB itself parses and binds, against an allow-list
of tables and pure functions, with a bound on the size of the values the query can
build. The third is the DuckDB connection, opened with external access disabled and
its configuration locked.
"""

from __future__ import annotations

import functools

from daemon.query.binding import check_bound, check_parsed
from daemon.query.lazysqlglot import exp, sqlglot
from daemon.query.rejected import QueryRejected
from protocol.schema import TABLES

__all__ = [
    "ALLOWED_TABLES",
    "MAX_SQL_LENGTH",
    "QueryRejected",
    "check_query",
    "check_reduce_query",
    "validate_query",
]

ALLOWED_TABLES = frozenset(TABLES)


@functools.cache
def _forbidden_nodes() -> tuple[type[exp.Expression], ...]:
    return (
        exp.Insert,
        exp.Update,
        exp.Delete,
        exp.Create,
        exp.Drop,
        exp.Alter,
        exp.Command,
        exp.Copy,
        exp.Pragma,
        exp.Set,
        exp.Merge,
    )


_FORBIDDEN_FUNCTION_PREFIXES = ("read_", "glob", "parquet_", "sniff_", "query", "getenv")
MAX_SQL_LENGTH = 100_000
MAX_NESTING = 32  # subqueries inside subqueries (DuckDB's binder recurses on each)
MAX_ALIAS_EXPANSION = 10_000  # expression nodes once lateral aliases are substituted


@functools.lru_cache(maxsize=512)
def check_query(sql: str) -> None:
    """:func:`validate_query`, then what DuckDB binds (``daemon.query.binding``);
    queries that passed are remembered (dashboards repeat them)."""
    validate_query(sql)
    check_bound(sql)


def check_reduce_query(sql: str, allowed: frozenset[str]) -> None:
    """A reduce over ``allowed`` tables of a private in-memory database (not ours):
    :func:`validate_query` and DuckDB's parse tree (functions on the allow-list)."""
    validate_query(sql, allowed)
    check_parsed(sql)


def validate_query(sql: str, allowed: frozenset[str] = ALLOWED_TABLES) -> exp.Query:
    """Parse and check ``sql`` with sqlglot; return the parsed query or raise QueryRejected.

    This is the first filter only: :func:`check_query` is what gates execution."""
    if not sql.strip():
        raise QueryRejected("empty query")
    if len(sql) > MAX_SQL_LENGTH:
        raise QueryRejected(f"query longer than {MAX_SQL_LENGTH} characters")
    try:
        statements = [s for s in sqlglot.parse(sql, read="duckdb") if s is not None]
    except (sqlglot.errors.SqlglotError, RecursionError) as exc:
        raise QueryRejected(f"cannot parse query: {str(exc).splitlines()[0]}") from exc
    if len(statements) != 1:
        raise QueryRejected("exactly one statement is allowed")
    query = statements[0]
    if not isinstance(query, exp.Query):
        raise QueryRejected(f"only SELECT queries are allowed, not {query.key.upper()}")
    try:
        _check_nodes(query, allowed)
        _check_shape(query)
    except RecursionError as exc:
        raise QueryRejected("query nested too deeply") from exc
    return query


def _check_nodes(query: exp.Query, allowed: frozenset[str]) -> None:
    ctes = {cte.alias_or_name.lower() for cte in query.find_all(exp.CTE)}
    for node in query.walk():
        if isinstance(node, _forbidden_nodes()):
            raise QueryRejected(f"{node.key.upper()} is not allowed in a query")
        if isinstance(node, exp.Table):
            _check_table(node, allowed | ctes)
        elif isinstance(node, exp.Func):
            _check_function(node)
        elif isinstance(node, exp.With) and node.args.get("recursive"):
            raise QueryRejected(
                "recursive CTEs are not allowed (their depth and size cannot be bounded)"
            )


def _check_table(table: exp.Table, allowed: frozenset[str]) -> None:
    if not isinstance(table.this, exp.Identifier):
        raise QueryRejected("table functions are not allowed")
    if table.catalog or (table.db and table.db.lower() != "main"):
        raise QueryRejected(f"only tables of the main schema are allowed, not {table.sql()}")
    if table.name.lower() not in allowed:
        raise QueryRejected(
            f"unknown table {table.name!r}; queryable tables: {', '.join(sorted(ALLOWED_TABLES))}"
        )


def _check_function(func: exp.Func) -> None:
    name = (func.name if isinstance(func, exp.Anonymous) else func.sql_name()).lower()
    if name.startswith(_FORBIDDEN_FUNCTION_PREFIXES):
        raise QueryRejected(f"function {name} is not allowed")


def _check_shape(query: exp.Query) -> None:
    """Bound what DuckDB's binder does before any deadline applies: the nesting of
    subqueries, and lateral column aliases, which it expands by substitution
    (``SELECT 'x' AS c0, c0 || c0 AS c1, c1 || c1 AS c2, ...`` doubles per alias: 27 of
    them kept a core busy for minutes while binding)."""
    for select in query.find_all(exp.Select):
        if _nesting(select) > MAX_NESTING:
            raise QueryRejected(f"subqueries nested more than {MAX_NESTING} deep")
        _check_aliases(select)


def _nesting(node: exp.Expression) -> int:
    depth, parent = 0, node.parent
    while parent is not None:
        depth += isinstance(parent, exp.Query | exp.Subquery)
        parent = parent.parent
    return depth


def _check_aliases(select: exp.Select) -> None:
    sizes: dict[str, int] = {}
    for projection in select.expressions:
        size = 0
        for node in projection.walk():
            if isinstance(node, exp.Column) and not node.table:
                size += sizes.get(node.name.lower(), 1)
            else:
                size += 1
        if size > MAX_ALIAS_EXPANSION:
            raise QueryRejected(
                f"column aliases used in later columns expand to more than "
                f"{MAX_ALIAS_EXPANSION} expression nodes"
            )
        if isinstance(projection, exp.Alias):
            sizes[projection.alias.lower()] = size
