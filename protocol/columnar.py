"""Columnar row data of format-2 changesets: one Arrow IPC stream, zstd-compressed.

A bulk table entry carries its columns as an Arrow IPC stream (the schema message,
record batches, the end-of-stream marker), without IPC-level compression, compressed as
a whole with zstd; the entry states the stream's uncompressed size. A receiver checks
that size against its limit *before* decompressing (zstd can expand 32 MiB into
terabytes), decompresses into exactly that many bytes, and only then parses the stream:
field names and types must be those of the wire schema below, every buffer is validated
(offsets, UTF-8), the key column has no nulls and no repeats. Any defect is a
RemoteProtocolError, raised before anything is applied.

pyarrow is imported here only; ``protocol.changeset`` imports this module when it first
meets or writes a columnar table, so a daemon that never does need not load pyarrow.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Sequence
from functools import cache
from typing import Any, overload

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.ipc as ipc

from protocol.errors import LocalProtocolError, RemoteProtocolError
from protocol.schema import TABLES, ColType

MAX_RAW_BYTES = 256 << 20  # uncompressed Arrow stream of one table entry
MAX_BATCHES = 4096  # record batches in one stream
ZSTD_LEVEL = 1  # what writers use; any zstd frame decodes

_ERRORS = (pa.ArrowException, OSError, ValueError, TypeError, IndexError)


@cache
def arrow_type(kind: ColType) -> pa.DataType:
    """The Arrow type of a wire column type (UUIDs are 16 raw bytes, ``arrow.uuid``)."""
    return {
        ColType.TEXT: pa.string(),
        ColType.JSON: pa.string(),
        ColType.INT: pa.int64(),
        ColType.FLOAT: pa.float64(),
        ColType.BOOL: pa.bool_(),
        ColType.TIMESTAMP: pa.timestamp("us"),
        ColType.UUID: pa.uuid(),
    }[kind]


def wire_schema(table: str, columns: Sequence[str]) -> pa.Schema:
    """The schema a table entry's stream must have: ``columns`` in order, wire-typed."""
    kinds = dict(TABLES[table].columns)
    return pa.schema([pa.field(c, arrow_type(kinds[c])) for c in columns])


def encode_payload(data: pa.Table) -> tuple[bytes, int]:
    """(zstd bytes, uncompressed size) of ``data`` as an Arrow IPC stream."""
    sink = pa.BufferOutputStream()
    with ipc.new_stream(sink, data.schema) as writer:
        writer.write_table(data)
    raw = sink.getvalue()
    if raw.size > MAX_RAW_BYTES:
        raise LocalProtocolError(f"columnar data of {raw.size} bytes exceeds {MAX_RAW_BYTES}")
    codec = pa.Codec("zstd", compression_level=ZSTD_LEVEL)
    return codec.compress(raw, asbytes=True), raw.size


def decode_payload(table: str, columns: Sequence[str], blob: bytes, raw_size: int) -> pa.Table:
    """The validated Arrow table of one entry; raises RemoteProtocolError."""
    if not 0 < raw_size <= MAX_RAW_BYTES:
        raise RemoteProtocolError(f"{table}: columnar size {raw_size} outside 1..{MAX_RAW_BYTES}")
    try:
        raw = pa.Codec("zstd").decompress(blob, decompressed_size=raw_size)
    except _ERRORS as exc:
        raise RemoteProtocolError(f"{table}: columnar data does not decompress: {exc}") from exc
    want = wire_schema(table, columns)
    try:
        reader = ipc.open_stream(pa.BufferReader(raw))
    except _ERRORS as exc:
        raise RemoteProtocolError(f"{table}: not an Arrow IPC stream: {exc}") from exc
    try:  # names and metadata are decoded lazily: invalid UTF-8 surfaces anywhere here
        data = _read_checked(reader, want, table)
        _check_key(data.column(0), table)
    except _ERRORS as exc:
        raise RemoteProtocolError(f"{table}: bad columnar data: {exc}") from exc
    return data


def _read_checked(reader: ipc.RecordBatchStreamReader, want: pa.Schema, table: str) -> pa.Table:
    got = reader.schema
    if got.names != want.names:
        raise RemoteProtocolError(f"{table}: columnar fields {got.names} are not {want.names}")
    for field, expected in zip(got, want, strict=True):
        if field.type != expected.type and not _plain_uuid(field.type, expected.type):
            raise RemoteProtocolError(
                f"{table}.{field.name}: columnar type {field.type} is not {expected.type}"
            )
    batches: list[pa.RecordBatch] = []
    try:
        for batch in reader:
            if len(batches) >= MAX_BATCHES:
                raise RemoteProtocolError(f"{table}: more than {MAX_BATCHES} record batches")
            batch.validate(full=True)  # offsets inside buffers, valid UTF-8
            batches.append(pa.RecordBatch.from_arrays(_typed(batch, want), schema=want))
    except _ERRORS as exc:
        raise RemoteProtocolError(f"{table}: bad columnar data: {exc}") from exc
    return pa.Table.from_batches(batches, want)


def read_stream(raw: bytes, what: str, max_columns: int = 64) -> pa.Table:
    """An uncompressed Arrow IPC stream from a caller (an ingest chunk), fully validated
    but not checked against any schema; raises RemoteProtocolError."""
    try:
        reader = ipc.open_stream(pa.BufferReader(raw))
        names = reader.schema.names  # decoded here, so that invalid UTF-8 is caught here
        if len(names) > max_columns:
            raise RemoteProtocolError(f"{what}: more than {max_columns} columns")
        if any(pa.types.is_dictionary(f.type) or pa.types.is_nested(f.type)
               for f in reader.schema):  # fmt: skip
            raise RemoteProtocolError(f"{what}: dictionary or nested columns")
        batches: list[pa.RecordBatch] = []
        for batch in reader:
            if len(batches) >= MAX_BATCHES:
                raise RemoteProtocolError(f"{what}: more than {MAX_BATCHES} record batches")
            batch.validate(full=True)
            batches.append(batch)
        return pa.Table.from_batches(batches, reader.schema)
    except _ERRORS as exc:
        raise RemoteProtocolError(f"{what}: not a valid Arrow IPC stream: {exc}") from exc


def stream_view(data: pa.Table) -> memoryview:
    """``data`` as an uncompressed Arrow IPC stream (what :func:`read_stream` reads): a
    view of the Arrow buffer it was written to, not a copy."""
    sink = pa.BufferOutputStream()
    with ipc.new_stream(sink, data.schema) as writer:
        writer.write_table(data)
    return memoryview(sink.getvalue())


def _plain_uuid(got: pa.DataType, expected: pa.DataType) -> bool:
    """A UUID column may arrive as bare fixed_size_binary(16), without the annotation."""
    return bool(expected == pa.uuid() and got == pa.binary(16))


def _typed(batch: pa.RecordBatch, want: pa.Schema) -> list[pa.Array]:
    arrays = list(batch.columns)
    for i, field in enumerate(want):
        if arrays[i].type != field.type:  # bare 16-byte values of a UUID column
            arrays[i] = pa.ExtensionArray.from_storage(field.type, arrays[i])
    return arrays


def _check_key(key: pa.ChunkedArray, table: str) -> None:
    if key.null_count:
        raise RemoteProtocolError(f"{table}: a columnar row has no primary key")
    if pa.types.is_string(key.type) and len(key) and pc.min(pc.utf8_length(key)).as_py() == 0:
        raise RemoteProtocolError(f"{table}: an empty primary key")
    if pc.count_distinct(storage(key)).as_py() != len(key):
        raise RemoteProtocolError(f"{table}: duplicate primary keys")


class ArrowColumns(Sequence[list[Any]]):
    """Columns of a table entry held as one Arrow table, in the order of ``columns``.

    Indexing gives a column as wire values (UUIDs as canonical text, timestamps as
    microseconds), converted on first use: only the paths that look at single rows
    (conflicts, the merge strategy, tests) pay for it. The bulk path reads ``table``.
    """

    def __init__(self, table: pa.Table, payload: tuple[bytes, int] | None = None) -> None:
        self.table = table
        self._payload = payload
        self._lists: dict[int, list[Any]] = {}

    @property
    def payload(self) -> tuple[bytes, int]:
        """(zstd bytes, uncompressed size): the wire form, encoded once."""
        if self._payload is None:
            self._payload = encode_payload(self.table)
        return self._payload

    def __len__(self) -> int:
        return int(self.table.num_columns)

    @overload
    def __getitem__(self, index: int) -> list[Any]: ...

    @overload
    def __getitem__(self, index: slice) -> Sequence[list[Any]]: ...

    def __getitem__(self, index: int | slice) -> list[Any] | Sequence[list[Any]]:
        if isinstance(index, slice):
            return [self[i] for i in range(len(self))[index]]
        if index < 0:
            index += len(self)
        if index not in self._lists:
            self._lists[index] = wire_values(self.table.column(index))
        return self._lists[index]

    def __iter__(self) -> Iterator[list[Any]]:
        return (self[i] for i in range(len(self)))


def storage(column: pa.ChunkedArray) -> pa.ChunkedArray:
    """A UUID column's 16-byte values without the extension type (other columns as they are)."""
    if isinstance(column.type, pa.BaseExtensionType):
        return pa.chunked_array([c.storage for c in column.chunks], column.type.storage_type)
    return column


def wire_values(column: pa.ChunkedArray) -> list[Any]:
    """An Arrow column as the values a msgpack entry would carry."""
    if column.type == pa.uuid():
        raw = storage(column).to_pylist()
        return [None if b is None else str(uuid.UUID(bytes=b)) for b in raw]
    if pa.types.is_timestamp(column.type):
        return column.cast(pa.int64()).to_pylist()  # type: ignore[no-any-return]
    return column.to_pylist()  # type: ignore[no-any-return]
