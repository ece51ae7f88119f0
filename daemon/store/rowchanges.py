"""Row changes of a batch, one Python object each, for the strategies that look at rows.

The last-writer-wins path stages whole tables as Arrow and never needs these; conflict
tracking and the merge strategy do, and only for the tables they concern.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from protocol.changeset import Decoded, Op, TableChanges, Version, base_versions
from protocol.schema import TABLES, ColType


class RowChange:
    """One change to one row: canonical key text, version, op, bases; the values it
    carried are read from its changeset only when asked for (most callers never do)."""

    __slots__ = ("_row", "_table", "bases", "key", "op", "version")

    def __init__(
        self, key: str, version: Version, op: Op, bases: tuple[Version, ...],
        table: TableChanges, row: int,
    ) -> None:  # fmt: skip
        self.key, self.version, self.op, self.bases = key, version, op, bases
        self._table, self._row = table, row

    @property
    def values(self) -> dict[str, Any]:
        """Every column the change carried, wire-typed."""
        t, r = self._table, self._row
        return {c: t.data[i][r] for i, c in enumerate(t.columns)}

    @property
    def changed(self) -> tuple[str, ...]:
        """The columns the writer set."""
        mask = self._table.changed[self._row]
        return tuple(c for i, c in enumerate(self._table.columns) if mask >> i & 1)


def row_changes(items: Sequence[Decoded], table: str) -> list[RowChange]:
    """Every change to ``table`` in ``items``, in batch order."""
    out: list[RowChange] = []
    kind = TABLES[table].columns[0][1]
    for item in items:
        cs = item.changeset
        version = cs.version
        for t in cs.tables:
            if t.table != table:
                continue
            keys = [key_text(kind, k) for k in t.keys]
            for r, (key, op, base) in enumerate(zip(keys, t.ops, t.bases, strict=True)):
                out.append(RowChange(key, version, Op(op), base_versions(base), t, r))
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
