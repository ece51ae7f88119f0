"""Row changes of a batch, one Python object each, for the strategies that look at rows.

The last-writer-wins path stages whole tables as Arrow and never needs these; conflict
tracking and the merge strategy do, and only for the tables they concern.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from protocol.changeset import Op, Version, base_versions
from protocol.schema import TABLES, ColType

if TYPE_CHECKING:
    from daemon.store import Decoded


@dataclass(frozen=True)
class RowChange:
    """One change to one row: canonical key text, version, op, bases, what it carried."""

    key: str
    version: Version
    op: Op
    bases: tuple[Version, ...]
    values: dict[str, Any]  # every column the change carried, wire-typed
    changed: tuple[str, ...]  # the columns the writer set


def row_changes(items: Sequence[Decoded], table: str) -> list[RowChange]:
    """Every change to ``table`` in ``items``, in batch order."""
    out: list[RowChange] = []
    kind = TABLES[table].columns[0][1]
    for item in items:
        cs = item.changeset
        for t in cs.tables:
            if t.table != table:
                continue
            for r in range(len(t)):
                values = {c: t.data[i][r] for i, c in enumerate(t.columns)}
                mask = t.changed[r]
                changed = tuple(c for i, c in enumerate(t.columns) if mask >> i & 1)
                key = key_text(kind, t.keys[r])
                out.append(RowChange(key, cs.version, Op(t.ops[r]),
                                     base_versions(t.bases[r]), values, changed))  # fmt: skip
    return out


def key_text(kind: ColType, key: Any) -> str:
    """The key as DuckDB prints it after casting to the column type (tombstone form)."""
    if kind is ColType.UUID:
        try:
            return str(uuid.UUID(str(key)))
        except ValueError:
            return str(key)  # the row apply refuses it with a clear error
    return str(key)


def canonical_row(table: str, values: Mapping[str, Any]) -> str:
    """A whole row (missing columns as null) as JSON that every peer writes alike."""
    row = {}
    for name, kind in TABLES[table].columns:
        value = values.get(name)
        if value is not None:
            if kind is ColType.FLOAT:
                value = float(value)
            elif kind is ColType.UUID:
                value = key_text(kind, value)
        row[name] = value
    return json.dumps(row, sort_keys=True, separators=(",", ":"))
