"""Columnar (format 2) table entries: round trips, and hostile payloads refused before use.

A receiver decodes a block before anything is applied; every defect of the Arrow
payload (truncated, corrupt, a size that lies, a zstd bomb, wrong names or types,
invalid UTF-8, bad keys) must come out as RemoteProtocolError, never as another
exception, a crash or a huge allocation.
"""

from __future__ import annotations

import uuid
from typing import Any

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocol import changeset, codec, columnar
from protocol.changeset import Changeset, TableChanges
from protocol.errors import RemoteProtocolError
from protocol.schema import TABLES

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
RESULTS = TABLES["performance_results"]
COLUMNS = ["result_id", "model_id", "batch_size", "throughput_items_per_second", "created_at"]


def results_table(n: int, seed: int = 1) -> pa.Table:
    keys = [uuid.UUID(int=(seed << 64) + i).bytes for i in range(n)]
    return pa.table(
        {
            "result_id": pa.ExtensionArray.from_storage(pa.uuid(), pa.array(keys, pa.binary(16))),
            "model_id": [f"model-{i % 3}" for i in range(n)],
            "batch_size": pa.array([i if i % 4 else None for i in range(n)], pa.int64()),
            "throughput_items_per_second": [i * 1.5 for i in range(n)],
            "created_at": pa.array(
                [1_750_000_000_000_000 + i for i in range(n)], pa.timestamp("us")
            ),
        }
    )


def entry(data: pa.Table, table: str = "performance_results") -> TableChanges:
    n = data.num_rows
    full = (1 << data.num_columns) - 1
    return TableChanges(table, data.column_names, bytes(n), [None] * n, [full] * n,
                        columnar.ArrowColumns(data))  # fmt: skip


def block(*entries: TableChanges, seq: int = 1) -> bytes:
    prev = None if seq == 1 else changeset.cid_of(b"x")
    return changeset.encode(Changeset("origin", seq, 7, prev, list(entries)))


def raw_stream(data: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, data.schema) as writer:
        writer.write_table(data)
    return sink.getvalue().to_pybytes()


def packed(raw: bytes, size: int | None = None, columns: list[str] | None = None) -> bytes:
    """A format-2 block whose one entry carries ``raw`` (an IPC stream), compressed."""
    blob = pa.Codec("zstd").compress(raw, asbytes=True)
    n_cols = len(columns or COLUMNS)
    table = ["performance_results", columns or COLUMNS, None, None, None, blob,
             len(raw) if size is None else size]  # fmt: skip
    del n_cols
    return codec.pack([2, "origin", 1, 7, None, [table]])


# -- round trips -----------------------------------------------------------------------------


def test_round_trip_keeps_types_and_values() -> None:
    data = results_table(50).cast(columnar.wire_schema("performance_results", COLUMNS))
    cs = changeset.decode(block(entry(data)))
    (table,) = cs.tables
    assert table.arrow.equals(data)
    assert table.keys[0] == str(uuid.UUID(int=1 << 64))
    assert table.data[4][0] == 1_750_000_000_000_000  # microseconds, as in format 1
    assert table.data[2][:2] == [None, 1]
    assert changeset.encode(cs) == block(entry(data))  # decoded blocks re-encode to the bytes


def test_format_two_mixes_columnar_and_msgpack_entries() -> None:
    models = TableChanges("models", ["model_id"], b"\x00", [None], [1], [["gpt2"]])
    raw = block(entry(results_table(3)), models)
    assert raw[1] == changeset.FORMAT_COLUMNAR
    cs = changeset.decode(raw)
    assert [t.arrow is not None for t in cs.tables] == [True, False]


def test_plain_fixed_size_binary_uuids_are_accepted() -> None:
    data = results_table(4)
    plain = data.set_column(0, "result_id", data.column(0).combine_chunks().storage)
    cs = changeset.decode(packed(raw_stream(plain)))
    assert cs.tables[0].arrow.schema.field(0).type == pa.uuid()


def test_a_format_two_block_without_columnar_entry_is_refused() -> None:
    models = ["models", ["model_id"], b"\x00", None, None, [["gpt2"]]]
    with pytest.raises(RemoteProtocolError, match="format 2 without"):
        changeset.decode(codec.pack([2, "origin", 1, 7, None, [models]]))


@st.composite
def arrow_entries(draw: st.DrawFn) -> pa.Table:
    n = draw(st.integers(1, 6))
    keys = draw(st.lists(st.uuids(), min_size=n, max_size=n, unique=True))
    texts = st.none() | st.text(max_size=10)
    floats = st.none() | st.floats(allow_nan=False)
    return pa.table(
        {
            "result_id": pa.ExtensionArray.from_storage(
                pa.uuid(), pa.array([k.bytes for k in keys], pa.binary(16))
            ),
            "model_id": pa.array(draw(st.lists(texts, min_size=n, max_size=n)), pa.string()),
            "batch_size": pa.array(
                draw(
                    st.lists(
                        st.none() | st.integers(-(1 << 63), (1 << 63) - 1), min_size=n, max_size=n
                    )
                ),
                pa.int64(),
            ),
            "throughput_items_per_second": pa.array(
                draw(st.lists(floats, min_size=n, max_size=n)), pa.float64()
            ),
            "created_at": pa.array(
                draw(st.lists(st.none() | st.integers(0, 1 << 60), min_size=n, max_size=n)),
                pa.timestamp("us"),
            ),
        }
    )


@SETTINGS
@given(arrow_entries())
def test_columnar_and_msgpack_entries_carry_the_same_wire_values(data: pa.Table) -> None:
    (table,) = changeset.decode(block(entry(data))).tables
    lists = [list(col) for col in table.data]
    as_msgpack = TableChanges(table.table, table.columns, table.ops, table.bases, table.changed,
                              lists)  # fmt: skip
    (again,) = changeset.decode(block(as_msgpack)).tables
    assert [list(c) for c in again.data] == lists


# -- hostile payloads ---------------------------------------------------------------------------


def refused(data: bytes, match: str | None = None) -> None:
    with pytest.raises(RemoteProtocolError, match=match):
        changeset.decode(data)


def test_size_above_the_limit_is_refused_before_decompressing() -> None:
    refused(packed(raw_stream(results_table(3)), size=columnar.MAX_RAW_BYTES + 1), "outside")


def test_a_zstd_bomb_is_refused_without_expanding_it() -> None:
    bomb = pa.Codec("zstd").compress(bytes(64 << 20), asbytes=True)  # 64 MiB of zeros
    assert len(bomb) < 1 << 16
    table = ["performance_results", COLUMNS, None, None, None, bomb, 4096]
    refused(codec.pack([2, "origin", 1, 7, None, [table]]), "does not decompress")


@pytest.mark.parametrize("delta", [-1, 1])
def test_a_size_that_lies_is_refused(delta: int) -> None:
    raw = raw_stream(results_table(3))
    refused(packed(raw, size=len(raw) + delta), "does not decompress")


def test_truncated_blocks_are_refused_at_every_length() -> None:
    good = block(entry(results_table(5)))
    for cut in range(0, len(good), 7):
        refused(good[:cut])


def test_not_an_ipc_stream() -> None:
    refused(packed(b"\x00" * 64), "not an Arrow IPC stream|bad columnar")


@pytest.mark.parametrize(
    ("change", "match"),
    [
        (lambda t: t.rename_columns(["result_id", "model", *t.column_names[2:]]), "fields"),
        (lambda t: t.drop_columns(["created_at"]), "fields"),
        (lambda t: t.set_column(2, "batch_size", t.column(2).cast(pa.float64())), "type"),
        (lambda t: t.set_column(4, "created_at", t.column(4).cast(pa.timestamp("us", "UTC"))),
         "type"),
        (lambda t: t.set_column(4, "created_at", t.column(4).cast(pa.timestamp("ns"))), "type"),
        (lambda t: t.set_column(1, "model_id", t.column(1).dictionary_encode()), "type"),
        (lambda t: t.set_column(1, "model_id", t.column(1).cast(pa.large_string())), "type"),
        (lambda t: t.set_column(0, "result_id", pa.array([str(uuid.uuid4()) for _ in range(3)])),
         "type"),
        (lambda t: t.set_column(1, "model_id", pa.array([[1], [2], [3]])), "type"),
    ],
    ids=["renamed", "missing", "float-int", "tz", "nanoseconds", "dictionary", "large-string",
         "uuid-as-text", "nested"],
)  # fmt: skip
def test_mistyped_columns_are_refused(change: Any, match: str) -> None:
    refused(packed(raw_stream(change(results_table(3)))), match)


def test_bad_keys_are_refused() -> None:
    data = results_table(3)
    same = data.set_column(0, "result_id", data.column(0).take([0, 0, 1]))
    refused(packed(raw_stream(same)), "duplicate")
    storage = data.column(0).combine_chunks().storage
    nulls = pa.array([storage[0].as_py(), None, storage[2].as_py()], pa.binary(16))
    refused(packed(raw_stream(data.set_column(0, "result_id", nulls))), "no primary key")
    models = pa.table({"model_id": ["a", ""]})
    entry_ = ["models", ["model_id"], None, None, None,
              pa.Codec("zstd").compress(raw_stream(models), asbytes=True),
              len(raw_stream(models))]  # fmt: skip
    refused(codec.pack([2, "origin", 1, 7, None, [entry_]]), "empty primary key")


def test_invalid_utf8_is_refused() -> None:
    data = results_table(3)
    bad = pa.array([b"ok", b"\xff\xfe", b"x"], pa.binary()).view(pa.string())
    refused(packed(raw_stream(data.set_column(1, "model_id", bad))), "bad columnar")


def test_ops_that_disagree_with_the_rows_are_refused() -> None:
    raw = raw_stream(results_table(3))
    blob = pa.Codec("zstd").compress(raw, asbytes=True)
    table = ["performance_results", COLUMNS, b"\x00\x00", None, None, blob, len(raw)]
    refused(codec.pack([2, "origin", 1, 7, None, [table]]), "ops say")


@st.composite
def mutated_streams(draw: st.DrawFn) -> bytes:
    raw = bytearray(raw_stream(results_table(draw(st.integers(1, 8)))))
    for _ in range(draw(st.integers(1, 6))):
        pos = draw(st.integers(0, len(raw) - 1))
        raw[pos] = draw(st.integers(0, 255))
    if draw(st.booleans()):
        del raw[draw(st.integers(0, len(raw) - 1)) :]
    return bytes(raw) or b"\x00"


@settings(SETTINGS, max_examples=400)
@given(mutated_streams())
def test_corrupt_arrow_streams_raise_only_remote_protocol_error(raw: bytes) -> None:
    """Bytes of the IPC stream itself mutated (then compressed with the right size, so
    they reach Arrow's reader): a valid table or RemoteProtocolError, nothing else."""
    try:
        cs = changeset.decode(packed(raw))
    except RemoteProtocolError:
        return
    (table,) = cs.tables
    assert table.arrow.schema == columnar.wire_schema("performance_results", COLUMNS)
    for i in range(len(table.data)):
        table.data[i]


@st.composite
def mutated_blocks(draw: st.DrawFn) -> bytes:
    data = bytearray(block(entry(results_table(draw(st.integers(1, 6))))))
    for _ in range(draw(st.integers(1, 4))):
        pos = draw(st.integers(0, len(data) - 1))
        data[pos] ^= 1 << draw(st.integers(0, 7))
    return bytes(data)


@settings(SETTINGS, max_examples=300)
@given(mutated_blocks())
def test_corrupt_columnar_blocks_raise_only_remote_protocol_error(data: bytes) -> None:
    """Flipped bits anywhere in a whole block: msgpack, zstd frame or stream."""
    try:
        cs = changeset.decode(data)
    except RemoteProtocolError:
        return
    again = changeset.encode(cs)  # what we accept we can re-encode, to a fixed point
    assert changeset.encode(changeset.decode(again)) == again


def test_an_ingest_stream_with_bad_utf8_names_is_refused() -> None:
    raw = bytearray(raw_stream(results_table(2)))
    at = raw.index(b"model_id")
    raw[at] = 0xFF
    with pytest.raises(RemoteProtocolError):
        columnar.read_stream(bytes(raw), "ingest chunk")
