"""Helpers shared by the store tests: hand-built changesets and full dumps of a store."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from daemon.store.database import Store
from protocol.changeset import Changeset, Op, TableChanges, cid_of, encode
from protocol.schema import TABLES

U, D = Op.UPSERT, Op.DELETE


def tc(
    table: str,
    columns: Sequence[str],
    rows: Sequence[Sequence[Any]],
    ops: Sequence[int] | None = None,
) -> TableChanges:
    """Column-major TableChanges from row tuples (all upserts unless ``ops``)."""
    n = len(rows)
    return TableChanges(
        table,
        list(columns),
        bytes(ops if ops is not None else [U] * n),
        [None] * n,
        [(1 << len(columns)) - 1] * n,
        [[row[i] for row in rows] for i in range(len(columns))],
    )


def models(*rows: tuple[int, str, str | None]) -> TableChanges:
    """Changes to ``models``: (op, model_id, model_name)."""
    return tc("models", ["model_id", "model_name"], [r[1:] for r in rows], [r[0] for r in rows])


def chain(origin: str, specs: Sequence[tuple[int, Sequence[TableChanges]]]) -> list[bytes]:
    """Encoded, correctly linked blocks of one origin: specs are (hlc, tables)."""
    blocks, prev = [], None
    for seq, (stamp, tables) in enumerate(specs, start=1):
        block = encode(Changeset(origin, seq, stamp, prev, list(tables)))
        prev = cid_of(block)
        blocks.append(block)
    return blocks


def dump(store: Store) -> dict[str, list[tuple[Any, ...]]]:
    """Every replicated row (with its version) and every tombstone, in key order."""
    return {
        name: store.query(f"SELECT * FROM store.{name} ORDER BY ALL", 100_000, 30.0)[1]
        for name in [*TABLES, "tombstones"]
    }


def model_rows(store: Store) -> list[tuple[Any, ...]]:
    """``models`` rows with their versions, by key."""
    _, rows = store.query(
        "SELECT model_id, model_name, _hlc, _origin FROM store.models ORDER BY 1", 1000, 30.0
    )
    return rows


def tombstones(store: Store) -> list[tuple[Any, ...]]:
    """Every tombstone."""
    _, rows = store.query("SELECT * FROM store.tombstones ORDER BY ALL", 1000, 30.0)
    return rows
