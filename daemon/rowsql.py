"""SQL that applies one table's row changes with last-writer-wins on (hlc, origin).

A key's state is the change with the largest version among all changes to it: a row
when that change is an upsert, a tombstone when it is a delete. Applying changes in
any order therefore ends in the same state, which is what makes peers converge.
Statements are generated once per (table, column set) and cached.
"""

from __future__ import annotations

from functools import cache

from protocol.schema import TABLES, ColType

SQL_TYPES = {
    ColType.TEXT: "VARCHAR",
    ColType.INT: "BIGINT",
    ColType.FLOAT: "DOUBLE",
    ColType.BOOL: "BOOLEAN",
    ColType.JSON: "JSON",
    ColType.TIMESTAMP: "TIMESTAMP",
    ColType.UUID: "UUID",
}

# "(row version) < (hlc, origin) of the change", parameters: hlc, hlc, origin
_OLDER = "({t}._hlc < ? OR ({t}._hlc = ? AND {t}._origin < ?))"
_NEWER_OR_SAME = "({t}._hlc > ? OR ({t}._hlc = ? AND {t}._origin >= ?))"


def key_sql_type(table: str) -> str:
    """DuckDB type of a table's primary key."""
    schema = TABLES[table]
    return SQL_TYPES[schema.columns[0][1]]


def _key_text(table: str, alias: str) -> str:
    """Canonical text of the staged key (tombstones key on text)."""
    key = TABLES[table].key
    return f"CAST(CAST({alias}.{key} AS {key_sql_type(table)}) AS VARCHAR)"


@cache
def upsert_sql(table: str, columns: tuple[str, ...]) -> str:
    """Insert staged rows unless a newer row or tombstone exists.

    Parameters: hlc, origin, then twice (hlc, hlc, origin).
    """
    schema = TABLES[table]
    names = schema.column_names
    select = ", ".join(
        f"CAST(s.{name} AS {SQL_TYPES[kind]})" if name in columns else "NULL"
        for name, kind in schema.columns
    )
    assign = ", ".join(f"{n} = excluded.{n}" for n in (*names[1:], "_hlc", "_origin"))
    return (
        f"INSERT INTO store.{table} AS tgt ({', '.join(names)}, _hlc, _origin) "
        f"SELECT {select}, ?, ? FROM stage s WHERE NOT EXISTS ("
        f"SELECT 1 FROM store.tombstones d WHERE d.tbl = '{table}' "
        f"AND d.pk = {_key_text(table, 's')} AND {_NEWER_OR_SAME.format(t='d')}) "
        f"ON CONFLICT ({schema.key}) DO UPDATE SET {assign} WHERE {_OLDER.format(t='tgt')}"
    )


@cache
def clear_tombstones_sql(table: str) -> str:
    """Drop tombstones that an upsert just superseded. Parameters: hlc, hlc, origin."""
    return (
        f"DELETE FROM store.tombstones WHERE tbl = '{table}' "
        f"AND pk IN (SELECT {_key_text(table, 's')} FROM stage s) "
        f"AND {_OLDER.format(t='store.tombstones')}"
    )


@cache
def tombstone_sql(table: str) -> str:
    """Record tombstones for staged deletes unless a newer row exists.

    Parameters: hlc, origin, hlc, hlc, origin, hlc, hlc, origin.
    """
    key = TABLES[table].key
    return (
        f"INSERT INTO store.tombstones AS tgt SELECT '{table}', {_key_text(table, 's')}, ?, ? "
        f"FROM stage s WHERE NOT EXISTS (SELECT 1 FROM store.{table} r "
        f"WHERE r.{key} = CAST(s.{key} AS {key_sql_type(table)}) "
        f"AND {_NEWER_OR_SAME.format(t='r')}) "
        f"ON CONFLICT (tbl, pk) DO UPDATE SET _hlc = excluded._hlc, _origin = excluded._origin "
        f"WHERE {_OLDER.format(t='tgt')}"
    )


@cache
def delete_rows_sql(table: str) -> str:
    """Delete rows older than the staged deletes. Parameters: hlc, hlc, origin."""
    key = TABLES[table].key
    return (
        f"DELETE FROM store.{table} WHERE {key} IN "
        f"(SELECT CAST(s.{key} AS {key_sql_type(table)}) FROM stage s) "
        f"AND {_OLDER.format(t=f'store.{table}')}"
    )
