"""Changesets: one local write transaction, as a content-addressed block.

A changeset carries its origin, its seq in that origin's chain, a hybrid logical clock
timestamp, the CID of the origin's previous changeset, and row changes grouped per
table in columnar form, so a bulk ingest of 50,000 rows is one compact block rather
than 50,000 messages. The encoding is canonical (positional msgpack arrays), so the
same changeset always has the same bytes and the same CID.

Every row change in a changeset has the version ``(hlc, origin)`` of its changeset.
``base`` is the version of the row the writer saw (None for a row it did not have).

Format 1 carries every table's values as msgpack arrays. Format 2 lets a table entry
carry them as compressed Arrow columns instead (``protocol.columnar``): a bulk ingest
chunk then travels and rests as columnar data and is applied with one DuckDB insert
from Arrow. Writers use format 2 only for such entries; both formats decode.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

from protocol import codec
from protocol.cid import block_cid, check_cid
from protocol.codec import expect, expect_int, expect_list, expect_str
from protocol.errors import LocalProtocolError, RemoteProtocolError
from protocol.schema import TABLES

FORMAT_VERSION = 1
FORMAT_COLUMNAR = 2  # some table entry carries Arrow columns (6.10 of SPEC.md)
FORMATS = (FORMAT_VERSION, FORMAT_COLUMNAR)
MAX_ROWS_PER_TABLE = 1 << 20

Version = tuple[int, str]
"""A row version: (hlc, origin). Larger compares later; origin breaks ties."""

Base = Version | tuple[Version, ...] | None
"""What a row change was based on: None (the writer had no such row), the one version
it saw, or several versions (a conflict resolution supersedes every conflicting one)."""

MAX_BASES = 64


def base_versions(base: Base) -> tuple[Version, ...]:
    """The versions a base names, as a tuple (empty for None)."""
    if base is None:
        return ()
    if isinstance(base[0], int):
        return (base,)
    return base


class Op(IntEnum):
    """Kind of row change."""

    UPSERT = 0
    DELETE = 1


@dataclass(frozen=True)
class TableChanges:
    """Row changes to one table, column-major.

    ``data[i][r]`` is the value of ``columns[i]`` in row ``r``; ``columns[0]`` is the
    table's primary key. For deletes only the key is meaningful. ``changed[r]`` is a
    bit mask over ``columns`` of the columns the writer set (all, for inserts).
    ``data`` may be a :class:`protocol.columnar.ArrowColumns` (format 2): the same
    columns held as Arrow, see :attr:`arrow`.
    """

    table: str
    columns: Sequence[str]
    ops: bytes
    bases: Sequence[Base]
    changed: Sequence[int]
    data: Sequence[Sequence[Any]]

    def __len__(self) -> int:
        return len(self.ops)

    @property
    def keys(self) -> Sequence[Any]:
        """Primary-key values, one per row."""
        return self.data[0]

    @property
    def arrow(self) -> Any:
        """The columns as a ``pyarrow.Table`` when held columnar (format 2), else None."""
        return getattr(self.data, "table", None)

    def rows(self) -> Iterator[dict[str, Any]]:
        """Rows as dicts (slow path: for tests and small changesets)."""
        for r in range(len(self.ops)):
            yield {c: self.data[i][r] for i, c in enumerate(self.columns)}


@dataclass(frozen=True)
class Changeset:
    """One origin's atomic write, linked to its predecessor by CID."""

    origin: str
    seq: int
    hlc: int
    prev: str | None
    tables: Sequence[TableChanges]
    signature: bytes | None = None
    """The origin's Ed25519 signature of the unsigned block (see :func:`sign_block`)."""

    @property
    def version(self) -> Version:
        """The version every row change in this changeset carries."""
        return (self.hlc, self.origin)

    def row_count(self) -> int:
        """Number of row changes across tables."""
        return sum(len(t) for t in self.tables)


@dataclass(frozen=True)
class Decoded:
    """A changeset with the block it was decoded from and that block's CID."""

    changeset: Changeset
    cid: str
    block: bytes


def encode(cs: Changeset) -> bytes:
    """Canonical block bytes of a changeset (signed if it carries a signature).

    Format 2 when some table holds its columns as Arrow, else format 1.
    """
    if cs.seq < 1 or (cs.seq == 1) != (cs.prev is None):
        raise LocalProtocolError("seq 1 has no prev; every later seq has one")
    tables = [_encode_table(t) for t in cs.tables]
    columnar = any(t.arrow is not None for t in cs.tables)
    version = FORMAT_COLUMNAR if columnar else FORMAT_VERSION
    unsigned = codec.pack([version, cs.origin, cs.seq, cs.hlc, cs.prev, tables])
    return unsigned if cs.signature is None else sign_block(unsigned, cs.signature)


def _encode_table(t: TableChanges) -> list[Any]:
    head = [t.table, list(t.columns)]
    bases = _encode_bases(t.bases)
    changed = _encode_changed(t.changed, len(t.columns))
    if t.arrow is None:
        return [*head, bytes(t.ops), bases, changed, [list(col) for col in t.data]]
    if len(t.ops) != t.arrow.num_rows or t.arrow.column_names != list(t.columns):
        raise LocalProtocolError(f"{t.table}: Arrow columns do not match ops and columns")
    blob, raw_size = t.data.payload  # type: ignore[attr-defined]
    ops = None if t.ops.count(0) == len(t.ops) else bytes(t.ops)  # nil: all upserts
    return [*head, ops, bases, changed, blob, raw_size]


def _encode_bases(bases: Sequence[Base]) -> list[Any] | None:
    """None stands for "no row had a base" (every row new: the bulk-insert case).

    A row's base is None, ``[hlc, origin]``, or ``[[hlc, origin], ...]`` (several).
    """
    if bases.count(None) == len(bases):  # C speed: bulk inserts have a million
        return None
    return [_encode_base(b) for b in bases]


def _encode_base(base: Base) -> Any:
    versions = tuple(sorted(set(base_versions(base))))
    if len(versions) > MAX_BASES:
        raise LocalProtocolError(f"a row change names at most {MAX_BASES} bases")
    if not versions:
        return None
    if len(versions) == 1:
        return [versions[0][0], versions[0][1]]
    return [[h, o] for h, o in versions]


def _encode_changed(changed: Sequence[int], width: int) -> list[int] | None:
    """None stands for "every row set every column"."""
    full = (1 << width) - 1
    return None if changed.count(full) == len(changed) else list(changed)


SIGNATURE_BYTES = 64
_UNSIGNED_HEADER = b"\x96"  # msgpack fixarray of 6: the unsigned block
_SIGNED_HEADER = b"\x97"  # fixarray of 7: the same elements, then the signature


def sign_block(unsigned: bytes, signature: bytes) -> bytes:
    """The signed form of an unsigned block: its 6 elements plus the signature as a 7th.

    Signing the unsigned bytes and appending keeps one encoding pass for a block of
    any size; :func:`signed_payload` recovers exactly the bytes that were signed.
    """
    if unsigned[:1] != _UNSIGNED_HEADER or len(signature) != SIGNATURE_BYTES:
        raise LocalProtocolError("sign_block wants an unsigned block and a 64-byte signature")
    return _SIGNED_HEADER + unsigned[1:] + codec.pack(signature)


def signed_payload(block: bytes) -> tuple[bytes, bytes] | None:
    """(the bytes the origin signed, the signature), or None for an unsigned block."""
    tail = len(codec.pack(bytes(SIGNATURE_BYTES)))
    if block[:1] != _SIGNED_HEADER or len(block) <= tail:
        return None
    signature = block[-SIGNATURE_BYTES:]
    if block[-tail:] != codec.pack(signature):
        return None
    return _UNSIGNED_HEADER + block[1:-tail], signature


def decode(block: bytes, max_size: int = codec.MAX_BLOCK) -> Changeset:
    """Decode and structurally validate a block; raises RemoteProtocolError.

    The signature, when present, is only checked for shape here; verifying it needs
    the origin's public key and is the daemon's job.
    """
    raw = expect_list(codec.unpack(block, max_size), "changeset", 7)
    if len(raw) not in (6, 7) or raw[0] not in FORMATS or type(raw[0]) is not int:
        raise RemoteProtocolError("changeset: unknown format or wrong arity")
    signature = None
    if len(raw) == 7:
        signature = expect(raw[6], bytes, "changeset.signature")
        if len(signature) != SIGNATURE_BYTES:
            raise RemoteProtocolError("changeset.signature: expected 64 bytes")
    origin = expect_str(raw[1], "changeset.origin", 128)
    seq = expect_int(raw[2], "changeset.seq", 1)
    hlc = expect_int(raw[3], "changeset.hlc")
    prev = None if raw[4] is None else expect_str(raw[4], "changeset.prev", 128)
    if (seq == 1) != (prev is None):
        raise RemoteProtocolError("changeset: prev must be absent exactly for seq 1")
    if prev is not None:
        check_cid(prev)
    entries = expect_list(raw[5], "changeset.tables", len(TABLES))
    tables = [_decode_table(t, raw[0]) for t in entries]
    if len({t.table for t in tables}) != len(tables):
        raise RemoteProtocolError("changeset: a table appears twice")
    if raw[0] == FORMAT_COLUMNAR and all(t.arrow is None for t in tables):
        raise RemoteProtocolError("changeset: format 2 without a columnar table")
    return Changeset(origin, seq, hlc, prev, tables, signature)


def _decode_table(raw: object, version: int) -> TableChanges:
    parts = expect_list(raw, "table", 7)
    columnar = version == FORMAT_COLUMNAR and len(parts) == 7
    if len(parts) != 6 and not columnar:
        raise RemoteProtocolError("table: wrong arity")
    name = expect_str(parts[0], "table.name", 64)
    schema = TABLES.get(name)
    if schema is None:
        raise RemoteProtocolError(f"table: unknown table {name!r}")
    columns = [expect_str(c, "table.column", 64) for c in expect_list(parts[1], "columns", 64)]
    known = set(schema.column_names)
    if not columns or columns[0] != schema.key or len(set(columns)) != len(columns):
        raise RemoteProtocolError(f"{name}: columns must start with the key and be unique")
    if not known.issuperset(columns):
        raise RemoteProtocolError(f"{name}: unknown columns {sorted(set(columns) - known)}")
    if columnar:
        return _decode_columnar(name, columns, parts)
    ops = _decode_ops(parts[2], name)
    n = len(ops)
    bases = _decode_bases(parts[3], name, n)
    changed = _decode_changed(parts[4], name, n, len(columns))
    data = [expect_list(col, f"{name}.data") for col in expect_list(parts[5], f"{name}.data", 64)]
    if len(data) != len(columns) or any(len(col) != n for col in data):
        raise RemoteProtocolError(f"{name}: column lengths disagree")
    if not _hashable(data[0]) or len(set(data[0])) != n:
        raise RemoteProtocolError(f"{name}: duplicate or unhashable primary keys")
    return TableChanges(name, columns, ops, bases, changed, data)


def _decode_ops(raw: object, table: str) -> bytes:
    ops = expect(raw, bytes, f"{table}.ops")
    if len(ops) > MAX_ROWS_PER_TABLE or max(ops, default=0) > Op.DELETE:
        raise RemoteProtocolError(f"{table}: bad ops")
    return ops


def _decode_columnar(name: str, columns: list[str], parts: list[Any]) -> TableChanges:
    """A format-2 entry: ``[name, columns, ops|nil, bases, changed, zstd bytes, size]``."""
    from protocol import columnar  # pyarrow loads with the first columnar block

    blob = expect(parts[5], bytes, f"{name}.data")
    raw_size = expect_int(parts[6], f"{name}.size")
    ops = None if parts[2] is None else _decode_ops(parts[2], name)
    if ops is not None and not ops:
        raise RemoteProtocolError(f"{name}: a columnar entry has rows")
    arrow = columnar.decode_payload(name, columns, blob, raw_size)
    n = arrow.num_rows
    if not 0 < n <= MAX_ROWS_PER_TABLE or (ops is not None and len(ops) != n):
        raise RemoteProtocolError(f"{name}: {n} columnar rows, ops say {len(ops or b'')}")
    bases = _decode_bases(parts[3], name, n)
    changed = _decode_changed(parts[4], name, n, len(columns))
    data = columnar.ArrowColumns(arrow, (blob, raw_size))
    return TableChanges(name, columns, ops if ops is not None else bytes(n), bases, changed, data)


def _hashable(values: list[Any]) -> bool:
    """Keys must be str or int (not bool); checked at C speed via the set of types."""
    return set(map(type, values)) <= {str, int}


def _decode_bases(raw: object, table: str, n: int) -> list[Base]:
    if raw is None:
        return [None] * n
    bases = [_decode_base(b, table) for b in expect_list(raw, f"{table}.bases")]
    if len(bases) != n:
        raise RemoteProtocolError(f"{table}: column lengths disagree")
    return bases


def _decode_changed(raw: object, table: str, n: int, width: int) -> list[int]:
    full = (1 << width) - 1
    if raw is None:
        return [full] * n
    changed = expect_list(raw, f"{table}.changed")
    if len(changed) != n:
        raise RemoteProtocolError(f"{table}: column lengths disagree")
    if n and (set(map(type, changed)) != {int} or min(changed) < 0 or max(changed) > full):
        raise RemoteProtocolError(f"{table}.changed: expected bit masks over the columns")
    return changed


def _decode_base(raw: object, table: str) -> Base:
    if raw is None:
        return None
    if (  # the common case, one version, checked inline (10k-row deltas decode it 10k times)
        type(raw) is list
        and len(raw) == 2
        and type(raw[0]) is int
        and type(raw[1]) is str
        and 0 <= raw[0] < 1 << 63
        and len(raw[1]) <= 128
    ):
        return (raw[0], raw[1])
    items = expect_list(raw, f"{table}.base", MAX_BASES)
    if items and isinstance(items[0], list):
        versions = tuple(_decode_version(v, table) for v in items)
        if len(versions) < 2 or list(versions) != sorted(set(versions)):
            raise RemoteProtocolError(f"{table}.base: several bases must be sorted and unique")
        return versions
    return _decode_version(items, table)


def _decode_version(raw: object, table: str) -> Version:
    pair = expect_list(raw, f"{table}.base", 2)
    if len(pair) != 2:
        raise RemoteProtocolError(f"{table}.base: wrong arity")
    return (expect_int(pair[0], f"{table}.base.hlc"), expect_str(pair[1], f"{table}.base", 128))


def newest_base_hlc(tables: Sequence[TableChanges]) -> int:
    """The largest hlc among the versions the row changes are based on (0 if none).

    A writer stamps its changeset above it, so that every change is later than what it
    replaces even when the writer's clock is behind the base's writer's.
    """
    newest = 0
    for table in tables:
        if table.bases.count(None) == len(table.bases):  # C speed for bulk inserts
            continue
        for base in table.bases:
            if base is not None:
                newest = max(newest, *(hlc for hlc, _ in base_versions(base)))
    return newest


def ordering_problem(cs: Changeset) -> str | None:
    """Why ``cs`` breaks the rule that every row change is later than each of its bases
    (in (hlc, origin) order), or None. Conflict bookkeeping relies on the rule: with it,
    a key with one head shows that head, whatever the batching of arrivals."""
    version = cs.version
    for table in cs.tables:
        if table.bases.count(None) == len(table.bases):
            continue
        for base in table.bases:
            if base is None:
                continue
            for b in base_versions(base):
                if b >= version:
                    return (f"{cs.origin}#{cs.seq}: a {table.table} change at hlc {cs.hlc} "
                            f"is not later than its base {list(b)}")  # fmt: skip
    return None


def cid_of(block: bytes) -> str:
    """CID of an encoded changeset block."""
    return block_cid(block)


def verify_link(cs: Changeset, expected_prev: str | None, expected_seq: int) -> None:
    """Check that ``cs`` extends its origin's chain at the point we hold."""
    if cs.seq != expected_seq:
        raise RemoteProtocolError(f"{cs.origin}: expected seq {expected_seq}, got {cs.seq}")
    if cs.prev != expected_prev:
        raise RemoteProtocolError(f"{cs.origin}#{cs.seq}: prev does not match our chain head")
