"""Partial results as Arrow IPC bytes, and the reduce step over them.

The reduce runs in a private in-memory DuckDB with external access disabled, so a
reduce query (planner-made, or a user's for ``mapreduce``) sees only the partials.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

import duckdb

from daemon.distq.atcid import WATCHDOG
from daemon.distq.plan import PARTIALS
from daemon.store.lazy import lazy_module

if TYPE_CHECKING:
    import pyarrow as pa
else:
    pa = lazy_module("pyarrow")


class PartialError(ValueError):
    """Partial results that cannot be decoded or combined."""


def to_ipc(table: pa.Table) -> bytes:
    """An Arrow table as IPC stream bytes (the columnar wire format of partials)."""
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()  # type: ignore[no-any-return]


def from_ipc(data: bytes, max_rows: int) -> pa.Table:
    """Decode and validate IPC bytes from a peer; PartialError on any defect."""
    try:
        table = pa.ipc.open_stream(pa.py_buffer(data)).read_all()
        table.validate(full=True)
    except (pa.ArrowException, ValueError, OSError) as exc:
        raise PartialError(f"undecodable partial result: {exc}") from exc
    if table.num_rows > max_rows:
        raise PartialError(f"partial result has more than {max_rows} rows")
    return table


def combine(tables: list[pa.Table]) -> pa.Table:
    """The union of the map outputs (same schema by construction)."""
    try:
        return pa.concat_tables([_unique_names(t) for t in tables], promote_options="permissive")
    except (pa.ArrowException, ValueError) as exc:
        raise PartialError(f"partial results do not fit together: {exc}") from exc


def _unique_names(table: pa.Table) -> pa.Table:
    """``SELECT *`` over a join can repeat a column name; the reduce reads columns by
    position, so later repeats get a suffix (the caller names the result columns)."""
    names = table.column_names
    if len(set(names)) == len(names):
        return table
    seen: set[str] = set()
    unique = []
    for i, name in enumerate(names):
        unique.append(name if name not in seen else f"{name}__{i}")
        seen.add(name)
    return table.rename_columns(unique)


def reduce_partials(
    reduce_sql: str,
    tables: list[pa.Table],
    *,
    table_name: str = PARTIALS,
    max_rows: int = 1_000_000,
    timeout: float = 30.0,
) -> tuple[list[str], list[tuple[Any, ...]]]:
    """Run ``reduce_sql`` over the union of ``tables`` registered as ``table_name``."""
    partials = combine(tables)
    cur = _reduce_db().cursor()  # its own cursor: the registered table stays private
    try:
        with WATCHDOG.limit(cur, timeout):
            cur.register(table_name, partials)
            result = cur.execute(reduce_sql)
            columns = [d[0] for d in result.description or []]
            rows = result.fetchmany(max_rows + 1)
    finally:
        cur.close()
    if len(rows) > max_rows:
        raise PartialError(f"result has more than {max_rows} rows (limit)")
    return columns, rows


_db: duckdb.DuckDBPyConnection | None = None
_db_lock = threading.Lock()


def _reduce_db() -> duckdb.DuckDBPyConnection:
    """One empty in-memory database for every reduce (opening one costs ~80 ms here),
    external access disabled and its configuration locked."""
    global _db
    with _db_lock:
        if _db is None:
            db = duckdb.connect(":memory:", config={"enable_external_access": False})
            db.execute("SET lock_configuration = true")
            _db = db
        return _db
