"""The sandbox's second wall: decide on what DuckDB itself parses and binds.

The sqlglot checks of ``daemon.query.sandbox`` read the query as sqlglot understands
it; DuckDB may resolve the same names differently (a CTE defined inside a subquery is
not in scope outside it, where the name falls through to the catalog:
``duckdb_databases``, ``duckdb_tables``, ``pg_settings`` ...). So the query is also
handed to DuckDB, in a private in-memory database with exactly our schema and no data:

- ``json_serialize_sql`` gives DuckDB's own parse tree: exactly one SELECT, and every
  function it names on the list of ``daemon.query.functions`` (some, such as
  ``getvariable``, are folded to constants while binding and leave no trace in the
  plan);
- ``json_serialize_plan`` gives the bound, unoptimized logical plan (nothing runs, no
  constant is folded): every scan must read one of the five replicated tables through
  its view, every operator must be a read-only one, every bound function, aggregate
  and window on the list, and ``daemon.query.sizes`` bounds the values it can build.

Binding needs only the catalog, so the result holds for the daemon's database, whose
``main`` schema and system catalog are the same; other schemas are never searched.
"""

from __future__ import annotations

import json
import threading
from importlib import resources
from typing import Any

import duckdb

from daemon.query.functions import is_allowed, words
from daemon.query.rejected import QueryRejected
from daemon.query.sizes import check_plan_sizes
from protocol.schema import TABLES

Node = dict[str, Any]
CATALOG = "memory"  # the catalog name DuckDB gives an in-memory database
READ_OPERATORS = frozenset(
    f"LOGICAL_{name}"
    for name in words(
        """
        PROJECTION FILTER AGGREGATE_AND_GROUP_BY WINDOW UNNEST LIMIT ORDER_BY TOP_N DISTINCT
        SAMPLE GET CHUNK_GET DELIM_GET EXPRESSION_GET DUMMY_SCAN EMPTY_RESULT CTE_REF
        MATERIALIZED_CTE JOIN DELIM_JOIN COMPARISON_JOIN ANY_JOIN CROSS_PRODUCT
        POSITIONAL_JOIN ASOF_JOIN DEPENDENT_JOIN UNION EXCEPT INTERSECT
        """
    )
)
FUNCTION_CATALOGS = ("system",)
_OUR_TABLES = [[name] for name in TABLES]
FUNCTION_SCHEMAS = ("", "main", "pg_catalog")


def check_bound(sql: str) -> None:
    """Raise QueryRejected unless DuckDB parses ``sql`` as one SELECT that binds to our
    tables and allowed functions only, with bounded value sizes."""
    cur = _cursor()
    check_parse_tree(_serialized(cur, "json_serialize_sql", sql, "statements"))
    plans = _serialized(cur, "json_serialize_plan", sql, "plans")
    check_plan(plans)
    check_plan_sizes(plans)


def check_parsed(sql: str) -> None:
    """Only the parse-tree half of :func:`check_bound`: for SQL over tables the binder
    database does not have (a ``mapreduce`` reduce reads its private ``partials``)."""
    check_parse_tree(_serialized(_cursor(), "json_serialize_sql", sql, "statements"))


def check_parse_tree(statements: list[Node]) -> None:
    """Exactly one SELECT; every function it names is allowed; no table functions."""
    if len(statements) != 1:
        raise QueryRejected("exactly one statement is allowed")
    for node in _dicts(statements):
        if node.get("class") in ("FUNCTION", "WINDOW") and "function_name" in node:
            if (
                node.get("catalog", "") not in ("", *FUNCTION_CATALOGS)
                or node.get("schema", "") not in FUNCTION_SCHEMAS
            ):
                raise QueryRejected(f"function {node['function_name']!r} of another schema")
            _check_function(str(node["function_name"]))
        elif node.get("type") == "TABLE_FUNCTION":
            raise QueryRejected("table functions are not allowed")


def check_plan(plans: list[Node]) -> None:
    """Read-only operators, scans of our tables only, allowed functions only."""
    for node in _dicts(plans):
        kind = node.get("type")
        if isinstance(kind, str) and kind.startswith("LOGICAL_"):
            if kind not in READ_OPERATORS:
                raise QueryRejected(f"{_operator_name(kind)} is not allowed in a query")
            if kind == "LOGICAL_GET":
                _check_scan(node)
        elif "qname" in node and "expression_class" in node:
            path = [str(p) for p in node["qname"].get("path", [])]
            if len(path) > 1 and path[0] not in FUNCTION_CATALOGS:
                raise QueryRejected(f"function {'.'.join(path)} is not built in")
            _check_function(path[-1] if path else "")


def _check_scan(node: Node) -> None:
    function = ".".join(node.get("qname", {}).get("path", []))
    data = node.get("function_data") or {}
    path = (data.get("qualified_name") or {}).get("path", [])
    if function == "seq_scan" and path[:2] == [CATALOG, "store"] and path[2:] in _OUR_TABLES:
        return
    what = ".".join(path[1:]) if function == "seq_scan" else f"{function}()"
    raise QueryRejected(f"the query reads {what}; queryable tables: {', '.join(sorted(TABLES))}")


def _check_function(name: str) -> None:
    if not is_allowed(name.lower()):
        raise QueryRejected(f"function {name} is not allowed")


def _operator_name(kind: str) -> str:
    return kind.removeprefix("LOGICAL_").replace("_", " ")


def _serialized(cur: duckdb.DuckDBPyConnection, function: str, sql: str, key: str) -> Any:
    try:
        (text,) = cur.execute(f"SELECT {function}(?)", [sql]).fetchall()[0]
        tree = json.loads(text)
    except (duckdb.Error, ValueError, RecursionError) as exc:
        raise QueryRejected(f"DuckDB cannot check the query: {_first_line(exc)}") from exc
    if tree.get("error"):
        message = tree.get("error_message") or tree.get("error_type") or "error"
        raise QueryRejected(_first_line(message))
    found = tree.get(key)
    if not isinstance(found, list):
        raise QueryRejected("DuckDB cannot check the query")
    return found


def _first_line(value: object) -> str:
    lines = str(value).strip().splitlines()
    return lines[0] if lines else type(value).__name__


def _dicts(value: Any) -> Any:
    """Every dict inside ``value`` (iteratively: plans can nest deeply)."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            yield item
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


# -- the private binder database ----------------------------------------------------------

_base: duckdb.DuckDBPyConnection | None = None
_base_lock = threading.Lock()
_local = threading.local()


def _cursor() -> duckdb.DuckDBPyConnection:
    """This thread's cursor on the binder database (DuckDB cursors are per thread)."""
    cur = getattr(_local, "cursor", None)
    if cur is None:
        cur = _local.cursor = _binder().cursor()
    return cur  # type: ignore[no-any-return]


def _binder() -> duckdb.DuckDBPyConnection:
    global _base
    with _base_lock:
        if _base is None:
            _base = _open_binder()
        return _base


def _open_binder() -> duckdb.DuckDBPyConnection:
    """An empty in-memory database with the replicated schema (the store's migrations),
    external access off, configuration locked."""
    con = duckdb.connect(":memory:", config={"enable_external_access": False, "threads": 1})
    (name,) = con.execute("SELECT current_database()").fetchall()[0]
    if name != CATALOG:  # _check_scan compares scans against it
        raise RuntimeError(f"in-memory DuckDB catalog is {name!r}, not {CATALOG!r}")
    folder = resources.files("daemon.store.migrations")
    for name in sorted(p.name for p in folder.iterdir() if p.name.endswith(".sql")):
        con.execute(folder.joinpath(name).read_text())
    con.execute("SET lock_configuration = true")
    return con
