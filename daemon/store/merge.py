"""Apply a batch's changes to a table under the ``merge`` strategy.

Every column is a last-writer-wins register (protocol.conflicts.MergedRow). The row
keeps the largest version of any register as its ``_hlc, _origin``; columns whose
version is older are listed in ``store.cell_versions`` so the next change is compared
per column. A row whose existence register says "deleted" becomes a tombstone with
that version, as under ``latest``.

This path is per key in Python: meant for the small, edited tables (models, hardware)
one would put under ``merge``, not for bulk-ingested results.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import duckdb

from daemon.store import rowsql
from daemon.store.lazy import lazy_module
from daemon.store.rowchanges import RowChange
from daemon.store.rowsql import arrow_type
from protocol.changeset import Op, Version
from protocol.conflicts import NO_VERSION, MergedRow
from protocol.errors import RemoteProtocolError
from protocol.schema import TABLES

if TYPE_CHECKING:
    import pyarrow as pa
else:
    pa = lazy_module("pyarrow")


def apply_merge(cur: duckdb.DuckDBPyConnection, table: str, changes: Sequence[RowChange]) -> bool:
    """Merge ``changes`` into the stored rows; True when tombstones were written."""
    schema = TABLES[table]
    columns = schema.column_names[1:]
    by_key: dict[str, list[RowChange]] = defaultdict(list)
    for change in changes:
        by_key[change.key].append(change)
    cur.register("merge_keys", pa.table({"pk": pa.array(sorted(by_key), pa.string())}))
    try:
        rows = _load(cur, table, columns)
        for key, key_changes in by_key.items():
            row = rows.setdefault(key, MergedRow((NO_VERSION, False)))
            for change in key_changes:
                if change.op == Op.DELETE:
                    row.delete(change.version, columns)
                else:
                    row.upsert(change.version, {c: change.values.get(c) for c in change.changed
                                                if c != schema.key})  # fmt: skip
        return _write(cur, table, rows)
    finally:
        cur.unregister("merge_keys")


def _load(
    cur: duckdb.DuckDBPyConnection, table: str, columns: Sequence[str]
) -> dict[str, MergedRow]:
    """The registers of the batch's keys (registered as ``merge_keys``)."""
    schema = TABLES[table]
    kind = rowsql.key_sql_type(table)
    select = ", ".join(rowsql.wire_select(n, k) for n, k in schema.columns[1:])
    live = cur.execute(
        f"SELECT CAST({schema.key} AS VARCHAR), _hlc, _origin, {select} FROM store.{table} "
        f"WHERE {schema.key} IN (SELECT CAST(pk AS {kind}) FROM merge_keys)"
    ).fetchall()
    lagging: dict[str, dict[str, Version]] = defaultdict(dict)
    for pk, col, hlc, origin in cur.execute(
        "SELECT pk, col, _hlc, _origin FROM store.cell_versions "
        "WHERE tbl = ? AND pk IN (SELECT pk FROM merge_keys)",
        [table],
    ).fetchall():
        lagging[pk][col] = (hlc, origin)
    rows: dict[str, MergedRow] = {}
    for pk, hlc, origin, *values in live:
        top = (hlc, origin)
        cells = {c: (lagging[pk].get(c, top), v) for c, v in zip(columns, values, strict=True)}
        rows[pk] = MergedRow((top, True), cells)
    for pk, hlc, origin in cur.execute(
        "SELECT pk, _hlc, _origin FROM store.tombstones "
        "WHERE tbl = ? AND pk IN (SELECT pk FROM merge_keys)",
        [table],
    ).fetchall():
        if pk not in rows:
            version = (hlc, origin)
            rows[pk] = MergedRow((version, False), {c: (version, None) for c in columns})
    return rows


def _write(cur: duckdb.DuckDBPyConnection, table: str, rows: dict[str, MergedRow]) -> bool:
    schema = TABLES[table]
    columns = schema.column_names[1:]
    kind = rowsql.key_sql_type(table)
    cur.execute(
        f"DELETE FROM store.{table} WHERE {schema.key} IN "
        f"(SELECT CAST(pk AS {kind}) FROM merge_keys)"
    )
    for side in ("tombstones", "cell_versions"):
        cur.execute(
            f"DELETE FROM store.{side} WHERE tbl = ? AND pk IN (SELECT pk FROM merge_keys)",
            [table],
        )
    live = {k: r for k, r in rows.items() if r.exists[1]}
    if live:
        _insert_rows(cur, table, live)
    lag = [(table, k, c, h, o) for k, r in live.items() for c, (h, o) in r.lagging(columns).items()]
    rowsql.insert_tuples(cur, "store.cell_versions", rowsql.cell_versions_schema(), lag)
    dead = [
        (table, k, *r.exists[0])
        for k, r in rows.items()
        if not r.exists[1] and r.exists[0] != NO_VERSION
    ]
    rowsql.insert_tuples(cur, "store.tombstones", rowsql.tombstones_schema(), dead)
    return bool(dead)


def _insert_rows(cur: duckdb.DuckDBPyConnection, table: str, rows: dict[str, MergedRow]) -> None:
    schema = TABLES[table]
    data: dict[str, list[Any]] = {name: [] for name in schema.column_names}
    versions = []
    for key, row in rows.items():
        data[schema.key].append(key)
        for name, value in row.values(schema.column_names[1:]).items():
            data[name].append(value)
        versions.append(row.version)
    try:
        arrays = [pa.array(data[n], arrow_type(k)) for n, k in schema.columns]
    except (pa.ArrowException, TypeError, ValueError, OverflowError) as exc:
        raise RemoteProtocolError(f"{table}: bad values: {exc}") from exc
    arrays += [pa.array([h for h, _ in versions], pa.int64()),
               pa.array([o for _, o in versions], pa.string())]  # fmt: skip
    cur.register("merged", pa.Table.from_arrays(arrays, [*schema.column_names, "_hlc", "_origin"]))
    try:
        select = ", ".join(f"CAST(m.{n} AS {rowsql.SQL_TYPES[k]})" for n, k in schema.columns)
        cur.execute(f"INSERT INTO store.{table} SELECT {select}, m._hlc, m._origin FROM merged m")
    finally:
        cur.unregister("merged")
