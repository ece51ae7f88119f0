"""Apply a batch of changesets inside one DuckDB transaction with a few statements.

All row changes of the batch to one table are staged as one Arrow table (columns of
the schema plus the change's version and op), reduced to the largest version per key,
and applied with the last-writer-wins statements of :mod:`daemon.rowsql`. The cost is
a handful of statements per table per batch, whether the batch holds one changeset of
50,000 rows or 5,000 changesets of one row.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import TYPE_CHECKING

import duckdb
import pyarrow as pa

from daemon import rowsql
from protocol.changeset import Changeset, Op, TableChanges
from protocol.errors import RemoteProtocolError
from protocol.schema import TABLES, ColType

if TYPE_CHECKING:
    from daemon.store import Decoded

ARROW_TYPES = {
    ColType.TEXT: pa.string(),
    ColType.JSON: pa.string(),
    ColType.UUID: pa.string(),
    ColType.INT: pa.int64(),
    ColType.FLOAT: pa.float64(),
    ColType.BOOL: pa.bool_(),
    ColType.TIMESTAMP: pa.timestamp("us"),
}
_INTEGRAL = (ColType.INT, ColType.TIMESTAMP)
LOG_SCHEMA = pa.schema(
    [
        ("origin", pa.string()),
        ("seq", pa.int64()),
        ("hlc", pa.int64()),
        ("cid", pa.string()),
        ("prev", pa.string()),
        ("row_count", pa.int64()),
        ("applied", pa.int64()),
        ("block", pa.binary()),
    ]
)


def apply_batch(
    cur: duckdb.DuckDBPyConnection,
    items: Sequence[Decoded],
    first_applied: int,
    tombstone_tables: set[str],
) -> None:
    """Apply rows, log entries and chain heads of ``items`` (caller owns the transaction).

    ``tombstone_tables`` names tables that may hold tombstones; it is extended when
    this batch records one.
    """
    per_table: dict[str, list[pa.Table]] = defaultdict(list)
    for item in items:
        for table in item.changeset.tables:
            if len(table):
                per_table[table.table].append(stage_table(item.changeset, table))
    for name, parts in per_table.items():
        _apply_table(cur, name, pa.concat_tables(parts), tombstone_tables)
    _log(cur, items, first_applied)


def stage_table(cs: Changeset, table: TableChanges) -> pa.Table:
    """One changeset's changes to one table as Arrow, typed per the schema.

    Columns the writer did not send are NULL (an upsert carries the whole row).
    Values of the wrong type are a RemoteProtocolError.
    """
    n = len(table)
    given = dict(zip(table.columns, table.data, strict=True))
    arrays = []
    for name, kind in TABLES[table.table].columns:
        values = given.get(name)
        if values is None:
            arrays.append(pa.nulls(n, ARROW_TYPES[kind]))
            continue
        if kind in _INTEGRAL and set(map(type, values)) - {int, type(None)}:
            raise RemoteProtocolError(f"{table.table}.{name}: expected integers")  # not 1.5 -> 1
        try:
            arrays.append(pa.array(values, type=ARROW_TYPES[kind]))
        except (pa.ArrowException, TypeError, ValueError, OverflowError) as exc:
            raise RemoteProtocolError(f"{table.table}.{name}: bad values: {exc}") from exc
    hlc, origin = cs.version
    arrays += [
        pa.array([hlc] * n, pa.int64()),
        pa.array([origin] * n, pa.string()),
        pa.Array.from_buffers(pa.uint8(), n, [None, pa.py_buffer(bytes(table.ops))]),
    ]
    names = [*TABLES[table.table].column_names, "_hlc", "_origin", "_op"]
    return pa.Table.from_arrays(arrays, names=names)


def _apply_table(
    cur: duckdb.DuckDBPyConnection, name: str, staged: pa.Table, tombstone_tables: set[str]
) -> None:
    key = staged.column(0)
    if len(key.unique()) != len(key):  # a key changed more than once in this batch
        cur.register("raw", staged)
        staged = cur.sql(rowsql.dedupe_sql(name)).to_arrow_table()
        cur.unregister("raw")
    has_deletes = pa.compute.any(pa.compute.equal(staged.column("_op"), Op.DELETE)).as_py()
    cur.register("stage", staged)
    try:
        cur.execute(rowsql.upsert_sql(name, name in tombstone_tables))
        if name in tombstone_tables:
            cur.execute(rowsql.clear_tombstones_sql(name))
        if has_deletes:
            cur.execute(rowsql.tombstone_sql(name))
            cur.execute(rowsql.delete_rows_sql(name))
            tombstone_tables.add(name)
    finally:
        cur.unregister("stage")


def _log(cur: duckdb.DuckDBPyConnection, items: Sequence[Decoded], first_applied: int) -> None:
    """Append the blocks to the changeset log and move the chain heads."""
    columns = list(zip(*(
        (i.changeset.origin, i.changeset.seq, i.changeset.hlc, i.cid, i.changeset.prev,
         i.changeset.row_count(), first_applied + n, i.block)
        for n, i in enumerate(items)
    ), strict=True))  # fmt: skip
    cur.register("log_stage", pa.Table.from_arrays(
        [pa.array(c, f.type) for c, f in zip(columns, LOG_SCHEMA, strict=True)], schema=LOG_SCHEMA
    ))  # fmt: skip
    try:
        cur.execute("INSERT INTO store.changesets SELECT * FROM log_stage")
        cur.execute(
            "INSERT INTO store.heads SELECT origin, seq, cid, hlc FROM log_stage "
            "QUALIFY row_number() OVER (PARTITION BY origin ORDER BY seq DESC) = 1 "
            "ON CONFLICT (origin) DO UPDATE SET seq = excluded.seq, cid = excluded.cid, "
            "hlc = excluded.hlc"
        )
    finally:
        cur.unregister("log_stage")
