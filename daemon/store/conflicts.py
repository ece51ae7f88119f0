"""Conflict bookkeeping inside the apply transaction (rules in protocol/conflicts.py).

For every key a batch touches, the key's heads and pending bases are advanced by the
batch's changes. A key with one head and nothing pending stores nothing (its head is
the row's own version, or its tombstone's); a key with several heads stores every head
with its whole row in ``store.conflict_heads`` when its table is under ``manual``.
Under ``latest`` and ``merge`` concurrency is only counted: their rows resolve it.

This runs *before* the rows of the batch are applied, because a head that stays open
may be the row version the batch is about to replace, and its values are read here.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import duckdb

from daemon.store import rowsql
from daemon.store.lazy import lazy_module
from daemon.store.rowchanges import RowChange, canonical_row
from protocol.changeset import Op, Version
from protocol.conflicts import Arrival, Strategy, advance_heads
from protocol.schema import TABLES

if TYPE_CHECKING:
    import pyarrow as pa
else:
    pa = lazy_module("pyarrow")


Heads = frozenset[Version]


def track(
    cur: duckdb.DuckDBPyConnection,
    table: str,
    changes: Sequence[RowChange],
    strategy: Strategy,
    arrived_before: Mapping[str, int],
    with_entries: set[str],
) -> int:
    """Advance the heads of every key in ``changes``; return how many keys newly conflict.

    ``with_entries`` names the tables that may hold stored heads or pending bases; it is
    extended when this batch stores some.
    """
    by_key: dict[str, list[RowChange]] = defaultdict(list)
    for change in changes:
        by_key[change.key].append(change)
    keys = sorted(by_key)
    _register_keys(cur, keys)
    try:
        current = _current_versions(cur, table)
        stored, pending = _entries(cur, table) if table in with_entries else ({}, {})
        found = 0
        heads_out: dict[str, Heads] = {}
        pending_out: dict[str, Heads] = {}
        for key in keys:
            mine = by_key[key]
            now = current.get(key)
            kept = key in stored or key in pending
            if len(mine) == 1 and not kept and mine[0].bases == ((now,) if now else ()):
                continue  # the common case: an edit of the version it replaces
            before = frozenset(stored.get(key) or ((now,) if now else ()))
            arrivals = [Arrival(c.version, c.bases) for c in mine]
            heads, waiting = advance_heads(
                before, frozenset(pending.get(key, ())), arrivals, arrived_before
            )
            if len(heads) > 1 and heads != before:
                found += 1
            if kept or (strategy is Strategy.MANUAL and (len(heads) > 1 or waiting)):
                heads_out[key], pending_out[key] = heads, waiting
        if heads_out:
            _store(cur, table, heads_out, pending_out, by_key)
            if any(len(h) > 1 for h in heads_out.values()) or any(pending_out.values()):
                with_entries.add(table)
        return found
    finally:
        cur.unregister("batch_keys")


def _register_keys(cur: duckdb.DuckDBPyConnection, keys: list[str]) -> None:
    cur.register("batch_keys", pa.table({"pk": pa.array(keys, pa.string())}))


def _current_versions(cur: duckdb.DuckDBPyConnection, table: str) -> dict[str, Version]:
    """Version of the live row or tombstone of each batch key (``batch_keys``): with one
    head, that is the head."""
    key, kind = TABLES[table].key, rowsql.key_sql_type(table)
    rows = cur.execute(
        f"SELECT CAST(t.{key} AS VARCHAR), t._hlc, t._origin FROM store.{table} t "
        f"WHERE t.{key} IN (SELECT CAST(pk AS {kind}) FROM batch_keys)"
    ).fetchall()
    current = {pk: (hlc, origin) for pk, hlc, origin in rows}
    for pk, hlc, origin in cur.execute(
        "SELECT pk, _hlc, _origin FROM store.tombstones "
        "WHERE tbl = ? AND pk IN (SELECT pk FROM batch_keys)",
        [table],
    ).fetchall():
        if pk not in current or (hlc, origin) > current[pk]:
            current[pk] = (hlc, origin)
    return current


def _entries(
    cur: duckdb.DuckDBPyConnection, table: str
) -> tuple[dict[str, set[Version]], dict[str, set[Version]]]:
    """Stored heads and pending bases of the batch keys."""
    out: tuple[dict[str, set[Version]], dict[str, set[Version]]] = ({}, {})
    for source, into in zip(("conflict_heads", "pending_bases"), out, strict=True):
        for pk, hlc, origin in cur.execute(
            f"SELECT pk, _hlc, _origin FROM store.{source} "
            "WHERE tbl = ? AND pk IN (SELECT pk FROM batch_keys)",
            [table],
        ).fetchall():
            into.setdefault(pk, set()).add((hlc, origin))
    return out


def _store(
    cur: duckdb.DuckDBPyConnection,
    table: str,
    heads: Mapping[str, Heads],
    pending: Mapping[str, Heads],
    by_key: Mapping[str, list[RowChange]],
) -> None:
    """Replace the side-table entries of the batch's keys with their new state.

    Every batch key that had entries is among ``heads``' keys, so clearing the entries
    of all batch keys (``batch_keys``) clears exactly the ones being replaced.
    """
    open_keys = [k for k, h in heads.items() if len(h) > 1]
    values = _head_values(cur, table, open_keys, heads, by_key)
    for name in ("conflict_heads", "pending_bases"):
        cur.execute(
            f"DELETE FROM store.{name} WHERE tbl = ? AND pk IN (SELECT pk FROM batch_keys)",
            [table],
        )
    head_rows = [
        (table, k, hlc, origin, *values[k][(hlc, origin)])
        for k in open_keys
        for hlc, origin in sorted(heads[k])
    ]
    rowsql.insert_tuples(cur, "store.conflict_heads", rowsql.conflict_heads_schema(), head_rows)
    pending_rows = [(table, k, h, o) for k, p in pending.items() for h, o in sorted(p)]
    rowsql.insert_tuples(cur, "store.pending_bases", rowsql.tombstones_schema(), pending_rows)


def _head_values(
    cur: duckdb.DuckDBPyConnection,
    table: str,
    keys: list[str],
    heads: Mapping[str, Heads],
    by_key: Mapping[str, list[RowChange]],
) -> dict[str, dict[Version, tuple[int, str | None]]]:
    """(op, row JSON) of every head: from the batch, the stored heads, or the live row."""
    out: dict[str, dict[Version, tuple[int, str | None]]] = {}
    for key in keys:
        known = {
            c.version: (int(c.op), None if c.op == Op.DELETE else canonical_row(table, c.values))
            for c in by_key[key]
        }
        out[key] = known
    wanted = {k for k in keys if any(v not in out[k] for v in heads[k])}
    if not wanted:
        return out
    stored = cur.execute(
        "SELECT pk, _hlc, _origin, op, data FROM store.conflict_heads "
        "WHERE tbl = ? AND pk IN (SELECT pk FROM batch_keys)",
        [table],
    ).fetchall()
    for pk, hlc, origin, op, data in stored:
        if pk in wanted:
            out[pk].setdefault((hlc, origin), (op, data))
    lacking = [k for k in wanted if any(v not in out[k] for v in heads[k])]
    live = _live_rows(cur, table, lacking)
    for key in lacking:
        missing = [v for v in heads[key] if v not in out[key]]
        # the key's live row, or its tombstone (a delete), before this batch
        out[key][missing[0]] = (
            (int(Op.UPSERT), live[key]) if key in live else (int(Op.DELETE), None)
        )
    return out


def _live_rows(cur: duckdb.DuckDBPyConnection, table: str, keys: list[str]) -> dict[str, str]:
    """Canonical JSON of the live rows among ``keys``."""
    if not keys:
        return {}
    schema = TABLES[table]
    cols = ", ".join(rowsql.wire_select(name, kind) for name, kind in schema.columns)
    cur.register("live_keys", pa.table({"pk": pa.array(keys, pa.string())}))
    try:
        rows = cur.execute(
            f"SELECT CAST({schema.key} AS VARCHAR), {cols} FROM store.{table} WHERE {schema.key} "
            f"IN (SELECT CAST(pk AS {rowsql.key_sql_type(table)}) FROM live_keys)"
        ).fetchall()
    finally:
        cur.unregister("live_keys")
    names = schema.column_names
    return {pk: canonical_row(table, dict(zip(names, row, strict=True))) for pk, *row in rows}
