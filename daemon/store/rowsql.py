"""SQL that applies staged row changes with last-writer-wins on (hlc, origin).

A key's state is the change with the largest version among all changes to it: a row
when that change is an upsert, a tombstone when it is a delete. Applying changes in
any order, or any batch of them at once (after keeping each key's largest version
within the batch), therefore ends in the same state: that is why peers converge.

Every statement reads the registered relation ``stage`` with the table's columns plus
``_hlc``, ``_origin`` (the change's version) and ``_op`` (0 upsert, 1 delete), holding
at most one change per key. Statements are generated once per table and cached.
"""

from __future__ import annotations

from functools import cache
from typing import TYPE_CHECKING, Any

import duckdb

from daemon.store.lazy import lazy_module
from protocol.schema import TABLES, ColType

if TYPE_CHECKING:
    import pyarrow as pa
else:
    pa = lazy_module("pyarrow")


SQL_TYPES = {
    ColType.TEXT: "VARCHAR",
    ColType.INT: "BIGINT",
    ColType.FLOAT: "DOUBLE",
    ColType.BOOL: "BOOLEAN",
    ColType.JSON: "JSON",
    ColType.TIMESTAMP: "TIMESTAMP",
    ColType.UUID: "UUID",
}


@cache
def arrow_type(kind: ColType) -> pa.DataType:
    """The Arrow type a column of ``kind`` is staged as (UUIDs as text)."""
    return {
        ColType.TEXT: pa.string(),
        ColType.JSON: pa.string(),
        ColType.UUID: pa.string(),
        ColType.INT: pa.int64(),
        ColType.FLOAT: pa.float64(),
        ColType.BOOL: pa.bool_(),
        ColType.TIMESTAMP: pa.timestamp("us"),
    }[kind]


def _older(a: str, b: str) -> str:
    """SQL: version of ``a`` is smaller than version of ``b``."""
    return f"({a}._hlc < {b}._hlc OR ({a}._hlc = {b}._hlc AND {a}._origin < {b}._origin))"


def key_sql_type(table: str) -> str:
    """DuckDB type of a table's primary key."""
    return SQL_TYPES[TABLES[table].columns[0][1]]


def _key(table: str, alias: str) -> str:
    """The staged key cast to the column type."""
    return f"CAST({alias}.{TABLES[table].key} AS {key_sql_type(table)})"


def _key_text(table: str, alias: str) -> str:
    """Canonical text of the staged key (tombstones key on text)."""
    return f"CAST({_key(table, alias)} AS VARCHAR)"


@cache
def dedupe_sql(table: str) -> str:
    """Keep each key's largest version among the staged changes (relation ``raw``)."""
    key = TABLES[table].key
    return (
        f"SELECT * FROM raw QUALIFY row_number() OVER "
        f"(PARTITION BY {key} ORDER BY _hlc DESC, _origin DESC) = 1"
    )


@cache
def upsert_sql(table: str, check_tombstones: bool, optimistic: bool = False) -> str:
    """Insert staged upserts unless the key has a row (or a newer tombstone).

    Run :func:`replace_older_sql` first: it removes the rows that staged upserts
    supersede, so a row still there is newer (or the same change again) and wins.
    ``optimistic`` drops the check against stored rows: right when the caller has
    made sure no staged key exists (:func:`existing_sql`). No ON CONFLICT: the tables
    keyed by UUIDv7 have no key index (migration 003), and DuckDB's ON CONFLICT is
    several times slower than these joins anyway.
    """
    schema = TABLES[table]
    names = schema.column_names
    select = ", ".join(f"CAST(s.{n} AS {SQL_TYPES[k]})" for n, k in schema.columns)
    guard = (
        f" AND NOT EXISTS (SELECT 1 FROM store.tombstones d WHERE d.tbl = '{table}' "
        f"AND d.pk = {_key_text(table, 's')} AND NOT {_older('d', 's')})"
        if check_tombstones
        else ""
    )
    insert = (
        f"INSERT INTO store.{table} ({', '.join(names)}, _hlc, _origin) "
        f"SELECT {select}, s._hlc, s._origin FROM stage s WHERE s._op = 0{guard}"
    )
    if optimistic:
        return insert
    return (
        f"{insert} AND NOT EXISTS (SELECT 1 FROM store.{table} r "
        f"WHERE r.{schema.key} = {_key(table, 's')})"
    )


@cache
def replace_older_sql(table: str) -> str:
    """Delete stored rows older than a staged upsert of their key."""
    key = TABLES[table].key
    return (
        f"DELETE FROM store.{table} r USING stage s WHERE s._op = 0 "
        f"AND r.{key} = {_key(table, 's')} AND {_older('r', 's')}"
    )


@cache
def existing_sql(table: str) -> str:
    """One row if any staged upsert's key already has a stored row (else none).

    Fresh UUIDv7 keys are newer than every stored one: DuckDB's join filter (the staged
    keys' min and max) then skips every row group by its zone map.
    """
    key = TABLES[table].key
    return (
        f"SELECT 1 FROM stage s JOIN store.{table} r ON r.{key} = {_key(table, 's')} "
        f"WHERE s._op = 0 LIMIT 1"
    )


@cache
def tombstoned_sql(table: str) -> str:
    """One row if any staged upsert's key has a tombstone (else none)."""
    return (
        f"SELECT 1 FROM stage s JOIN store.tombstones d ON d.tbl = '{table}' "
        f"AND d.pk = {_key_text(table, 's')} WHERE s._op = 0 LIMIT 1"
    )


@cache
def clear_tombstones_sql(table: str) -> str:
    """Drop tombstones that a staged upsert supersedes."""
    return (
        f"DELETE FROM store.tombstones d USING stage s WHERE d.tbl = '{table}' AND s._op = 0 "
        f"AND d.pk = {_key_text(table, 's')} AND {_older('d', 's')}"
    )


@cache
def tombstone_sql(table: str) -> str:
    """Record tombstones for staged deletes unless a newer row exists."""
    key = TABLES[table].key
    return (
        f"INSERT INTO store.tombstones AS tgt "
        f"SELECT '{table}', {_key_text(table, 's')}, s._hlc, s._origin FROM stage s "
        f"WHERE s._op = 1 AND NOT EXISTS (SELECT 1 FROM store.{table} r "
        f"WHERE r.{key} = {_key(table, 's')} AND NOT {_older('r', 's')}) "
        f"ON CONFLICT (tbl, pk) DO UPDATE SET _hlc = excluded._hlc, _origin = excluded._origin "
        f"WHERE {_older('tgt', 'excluded')}"
    )


@cache
def delete_rows_sql(table: str) -> str:
    """Delete rows older than the staged deletes."""
    key = TABLES[table].key
    return (
        f"DELETE FROM store.{table} r USING stage s WHERE s._op = 1 "
        f"AND r.{key} = {_key(table, 's')} AND {_older('r', 's')}"
    )


def wire_select(name: str, kind: ColType) -> str:
    """SQL selecting a column as its wire type (UUID/JSON as text, timestamps as µs)."""
    if kind is ColType.UUID or kind is ColType.JSON:
        return f"CAST({name} AS VARCHAR)"
    if kind is ColType.TIMESTAMP:
        return f"epoch_us({name})"
    return name


def insert_tuples(
    cur: duckdb.DuckDBPyConnection, target: str, schema: pa.Schema, rows: list[tuple[Any, ...]]
) -> None:
    """Insert ``rows`` into ``target`` in one statement (executemany costs a statement
    per row in DuckDB: seconds for a few thousand)."""
    if not rows:
        return
    columns = list(zip(*rows, strict=True))
    arrays = [pa.array(col, f.type) for col, f in zip(columns, schema, strict=True)]
    cur.register("tuples_stage", pa.Table.from_arrays(arrays, schema=schema))
    try:
        cur.execute(f"INSERT INTO {target} SELECT * FROM tuples_stage")
    finally:
        cur.unregister("tuples_stage")


def _version_fields() -> list[tuple[str, pa.DataType]]:
    return [("_hlc", pa.int64()), ("_origin", pa.string())]


@cache
def tombstones_schema() -> pa.Schema:
    """Rows of ``store.tombstones`` (and ``store.pending_bases``, alike)."""
    return pa.schema([("tbl", pa.string()), ("pk", pa.string()), *_version_fields()])


@cache
def cell_versions_schema() -> pa.Schema:
    """Rows of ``store.cell_versions``."""
    return pa.schema(
        [("tbl", pa.string()), ("pk", pa.string()), ("col", pa.string()), *_version_fields()]
    )


@cache
def conflict_heads_schema() -> pa.Schema:
    """Rows of ``store.conflict_heads``."""
    return pa.schema(
        [("tbl", pa.string()), ("pk", pa.string()), *_version_fields(), ("op", pa.int8()),
         ("data", pa.string())]
    )  # fmt: skip
