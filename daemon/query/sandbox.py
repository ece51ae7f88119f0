"""Read-only query validation: one SELECT over the replicated views, nothing else.

This is the first of two walls; the second is the DuckDB connection itself, opened
with external access disabled and its configuration locked.
"""

from __future__ import annotations

import functools

import sqlglot
from sqlglot import exp
from sqlglot.errors import SqlglotError

from protocol.schema import TABLES

ALLOWED_TABLES = frozenset(TABLES)
_FORBIDDEN_NODES = (
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


class QueryRejected(ValueError):
    """The query is not a read-only SELECT over our tables."""


@functools.lru_cache(maxsize=512)
def check_query(sql: str) -> None:
    """:func:`validate_query`, remembering queries that passed (dashboards repeat them)."""
    validate_query(sql)


def validate_query(sql: str, allowed: frozenset[str] = ALLOWED_TABLES) -> exp.Query:
    """Parse and check ``sql``; return the parsed query or raise QueryRejected."""
    if not sql.strip():
        raise QueryRejected("empty query")
    if len(sql) > MAX_SQL_LENGTH:
        raise QueryRejected(f"query longer than {MAX_SQL_LENGTH} characters")
    try:
        statements = [s for s in sqlglot.parse(sql, read="duckdb") if s is not None]
    except (SqlglotError, RecursionError) as exc:
        raise QueryRejected(f"cannot parse query: {str(exc).splitlines()[0]}") from exc
    if len(statements) != 1:
        raise QueryRejected("exactly one statement is allowed")
    query = statements[0]
    if not isinstance(query, exp.Query):
        raise QueryRejected(f"only SELECT queries are allowed, not {query.key.upper()}")
    _check_nodes(query, allowed)
    return query


def _check_nodes(query: exp.Query, allowed: frozenset[str]) -> None:
    ctes = {cte.alias_or_name.lower() for cte in query.find_all(exp.CTE)}
    for node in query.walk():
        if isinstance(node, _FORBIDDEN_NODES):
            raise QueryRejected(f"{node.key.upper()} is not allowed in a query")
        if isinstance(node, exp.Table):
            _check_table(node, allowed | ctes)
        elif isinstance(node, exp.Func):
            _check_function(node)


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
