"""Helpers for conflict tests: replicas that write like peers and exchange changesets."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from storekit import tc

from daemon.store.database import ApplyResult, Store
from daemon.writes.changes import delete_change, update_change
from protocol.changeset import TableChanges
from protocol.conflicts import Strategy
from protocol.schema import TABLES


def write(store: Store, origin: str, tables: Sequence[TableChanges]) -> None:
    """Commit a local changeset as ``origin``."""
    store.commit_local(origin, list(tables))


def insert_model(store: Store, origin: str, key: str, **values: Any) -> None:
    """A new ``models`` row (no base)."""
    names = ["model_id", *values]
    write(store, origin, [tc("models", names, [[key, *values.values()]])])


def update(store: Store, origin: str, key: str, **values: Any) -> None:
    """An edit of the row as ``store`` sees it (based on its visible version)."""
    write(store, origin, [update_change(store, "models", key, values)])


def delete(store: Store, origin: str, key: str) -> None:
    """A delete of the row as ``store`` sees it."""
    write(store, origin, [delete_change(store, "models", key)])


def pull(into: Store, source: Store) -> ApplyResult:
    """Everything ``source`` holds that ``into`` lacks, applied in ``source``'s order."""
    total = ApplyResult()
    for batch in source.missing_for(into.vector()):
        r = into.apply_blocks(batch)
        assert r.rejected == [], r.rejected
        total.applied += r.applied
        total.conflicts += r.conflicts
    return total


def exchange(stores: Sequence[Store]) -> None:
    """Full anti-entropy between every pair."""
    for a in stores:
        for b in stores:
            if a is not b:
                pull(a, b)


def snapshot(store: Store, like: str = "%") -> dict[str, Any]:
    """Rows with versions, tombstones, conflict bookkeeping and the CID."""
    q = store.cursor()
    out: dict[str, Any] = {"cid": store.db_cid()}
    for name in TABLES:
        key = TABLES[name].key
        out[name] = q.execute(
            f"SELECT * FROM store.{name} WHERE CAST({key} AS VARCHAR) LIKE ? ORDER BY ALL", [like]
        ).fetchall()
    for side in ("tombstones", "conflict_heads", "pending_bases", "cell_versions"):
        out[side] = q.execute(
            f"SELECT * FROM store.{side} WHERE pk LIKE ? ORDER BY ALL", [like]
        ).fetchall()
    return out


def with_strategy(store: Store, strategy: Strategy, table: str = "models") -> Store:
    """Set ``table``'s strategy on ``store`` and return it."""
    store.strategies[table] = strategy
    return store
