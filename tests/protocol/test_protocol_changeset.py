"""Changesets: canonical encoding, structural validation and chain links."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from typing import Any

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocol import changeset, hlc
from protocol.changeset import Changeset, Op, TableChanges
from protocol.cid import block_cid, parse_cid
from protocol.errors import LocalProtocolError, RemoteProtocolError
from protocol.schema import TABLES, ColType, Table

SETTINGS = settings(max_examples=300, deadline=None)
# Changeset generation is comparatively expensive (many columns per table).
CS_SETTINGS = settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)

INT64 = st.integers(min_value=-(1 << 63), max_value=(1 << 63) - 1)
json_text = st.dictionaries(
    st.text(max_size=5), st.none() | st.integers(-1000, 1000) | st.text(max_size=8), max_size=3
).map(json.dumps)

VALUES: dict[ColType, st.SearchStrategy[Any]] = {
    ColType.TEXT: st.text(max_size=24),
    ColType.INT: INT64,
    ColType.FLOAT: st.floats(allow_nan=False),
    ColType.BOOL: st.booleans(),
    ColType.JSON: json_text,
    ColType.TIMESTAMP: st.integers(min_value=0, max_value=(1 << 62)),
    ColType.UUID: st.uuids().map(str),
}
KEYS: dict[ColType, st.SearchStrategy[Any]] = {
    ColType.TEXT: st.text(min_size=1, max_size=24),
    ColType.UUID: st.uuids().map(str),
}
HLCS = st.integers(min_value=0, max_value=hlc.MAX_HLC)
ORIGINS = st.text(min_size=1, max_size=60)
CIDS = st.binary(max_size=64).map(block_cid)


@st.composite
def table_changes(draw: st.DrawFn, table: Table | None = None) -> TableChanges:
    if table is None:
        table = draw(st.sampled_from(sorted(TABLES.values(), key=lambda t: t.name)))
    others = draw(st.permutations(table.columns[1:]))
    # Usually a few columns (cheap), sometimes all of them.
    width = draw(st.one_of(st.integers(0, 4), st.just(len(others))))
    chosen = [table.columns[0], *others[:width]]
    columns = [name for name, _ in chosen]
    n = draw(st.integers(min_value=0, max_value=4))
    keys = draw(st.lists(KEYS[chosen[0][1]], min_size=n, max_size=n, unique=True))
    ops = bytes(draw(st.lists(st.sampled_from([Op.UPSERT, Op.DELETE]), min_size=n, max_size=n)))
    several = st.lists(st.tuples(HLCS, ORIGINS), min_size=2, max_size=4, unique=True).map(
        lambda versions: tuple(sorted(versions))
    )  # a resolution's bases
    one = st.tuples(HLCS, ORIGINS)
    bases = draw(st.lists(st.none() | one | several, min_size=n, max_size=n))
    changed = draw(st.lists(st.integers(0, (1 << len(columns)) - 1), min_size=n, max_size=n))
    data: list[list[Any]] = [keys]
    for _, ctype in chosen[1:]:
        data.append(draw(st.lists(st.none() | VALUES[ctype], min_size=n, max_size=n)))
    return TableChanges(table.name, columns, ops, bases, changed, data)


@st.composite
def changesets(draw: st.DrawFn) -> Changeset:
    seq = draw(st.one_of(st.just(1), st.just(2), st.integers(1, (1 << 63) - 1)))
    prev = None if seq == 1 else draw(CIDS)
    tables = draw(st.lists(table_changes(), max_size=3, unique_by=lambda t: t.table))
    return Changeset(draw(ORIGINS), seq, draw(HLCS), prev, tables)


def _simple(seq: int = 1, prev: str | None = None, rows: int = 2) -> Changeset:
    tc = TableChanges(
        "models",
        ["model_id", "model_name", "parameters_million"],
        bytes([Op.UPSERT] * rows),
        [None] * rows,
        [0b111] * rows,
        [[f"m{i}" for i in range(rows)], [f"name{i}" for i in range(rows)], [1.5] * rows],
    )
    return Changeset("12D3KooWorigin", seq, hlc.pack(1_700_000_000_000, 3), prev, [tc])


# --------------------------------------------------------------------- round trip


@CS_SETTINGS
@given(changesets())
def test_encode_decode_round_trip(cs: Changeset) -> None:
    block = changeset.encode(cs)
    back = changeset.decode(block)
    assert back == cs
    assert changeset.encode(back) == block
    assert back.version == (cs.hlc, cs.origin)
    assert back.row_count() == sum(len(t.ops) for t in cs.tables)


@CS_SETTINGS
@given(changesets())
def test_encoding_is_deterministic(cs: Changeset) -> None:
    # The same changeset built from different container types encodes identically.
    rebuilt = Changeset(
        cs.origin,
        cs.seq,
        cs.hlc,
        cs.prev,
        tuple(
            TableChanges(
                t.table,
                tuple(t.columns),
                bytearray(t.ops),  # type: ignore[arg-type]
                tuple(t.bases),
                tuple(t.changed),
                tuple(tuple(col) for col in t.data),
            )
            for t in cs.tables
        ),
    )
    first = changeset.encode(cs)
    assert changeset.encode(copy.deepcopy(cs)) == first
    assert changeset.encode(rebuilt) == first
    assert changeset.cid_of(first) == changeset.cid_of(changeset.encode(rebuilt))
    assert changeset.cid_of(first).startswith("bafk")
    assert changeset.cid_of(first) == block_cid(first)


@settings(CS_SETTINGS, max_examples=50)
@given(changesets(), changesets())
def test_distinct_changesets_have_distinct_cids(a: Changeset, b: Changeset) -> None:
    if a != b:
        assert changeset.cid_of(changeset.encode(a)) != changeset.cid_of(changeset.encode(b))


@CS_SETTINGS
@given(table_changes())
def test_rows_and_keys(tc: TableChanges) -> None:
    rows = list(tc.rows())
    assert len(rows) == len(tc) == len(tc.ops)
    assert [r[tc.columns[0]] for r in rows] == list(tc.keys)
    for r in rows:
        assert list(r) == list(tc.columns)


def test_empty_changeset_round_trips() -> None:
    cs = Changeset("o", 1, 0, None, [])
    assert changeset.decode(changeset.encode(cs)) == cs
    assert cs.row_count() == 0


@pytest.mark.parametrize(
    ("seq", "prev"),
    [(1, block_cid(b"x")), (2, None), (0, None), (-1, None)],
)
def test_encode_refuses_bad_links(seq: int, prev: str | None) -> None:
    with pytest.raises(LocalProtocolError):
        changeset.encode(Changeset("o", seq, 0, prev, []))


def test_encode_refuses_unencodable_values() -> None:
    cs = _simple()
    bad = TableChanges("models", ["model_id"], b"\x00", [None], [1], [[object()]])
    with pytest.raises(LocalProtocolError):
        changeset.encode(Changeset(cs.origin, 1, 0, None, [bad]))


# ----------------------------------------------------------------- invalid blocks


def _raw(cs: Changeset) -> list[Any]:
    raw = msgpack.unpackb(changeset.encode(cs), raw=False)
    assert isinstance(raw, list)
    return raw


def _pack(raw: object) -> bytes:
    return msgpack.packb(raw, use_bin_type=True)  # type: ignore[no-any-return]


def _set(index: int, value: object) -> Callable[[list[Any]], None]:
    def mutate(raw: list[Any]) -> None:
        raw[index] = value

    return mutate


def _table(part: int, value: object) -> Callable[[list[Any]], None]:
    def mutate(raw: list[Any]) -> None:
        raw[5][0][part] = value

    return mutate


def _dup_table(raw: list[Any]) -> None:
    raw[5].append(copy.deepcopy(raw[5][0]))


def _short_data_column(raw: list[Any]) -> None:
    raw[5][0][5][1].pop()


def _extra_field(raw: list[Any]) -> None:
    raw.append(None)


KEY_COLS = ["model_id", "model_name", "parameters_million"]
INVALID: dict[str, Callable[[list[Any]], None]] = {
    "format version": _set(0, 2),
    "arity": _extra_field,
    "origin type": _set(1, 7),
    "origin too long": _set(1, "o" * 129),
    "seq zero": _set(2, 0),
    "seq negative": _set(2, -3),
    "seq bool": _set(2, True),
    "seq 1 with prev": _set(4, block_cid(b"prev")),
    "hlc negative": _set(3, -1),
    "hlc above 63 bits": _set(3, (1 << 64) - 1),
    "hlc float": _set(3, 1.0),
    "tables not a list": _set(5, {"models": []}),
    "too many tables": _set(5, [None] * (len(TABLES) + 1)),
    "unknown table": _table(0, "users"),
    "table name not str": _table(0, b"models"),
    "table arity": lambda raw: raw[5][0].pop(),
    "table not a list": _set(5, ["models"]),
    "duplicate table": _dup_table,
    "columns not starting with key": _table(1, ["model_name", "model_id", "parameters_million"]),
    "columns empty": _table(1, []),
    "columns duplicated": _table(1, ["model_id", "model_name", "model_name"]),
    "unknown column": _table(1, ["model_id", "model_name", "secret"]),
    "ops not bytes": _table(2, [0, 0]),
    "ops str": _table(2, "\x00\x00"),
    "bad op": _table(2, b"\x00\x02"),
    "ops longer than columns": _table(2, b"\x00\x00\x00"),
    "bases length": _table(3, [None]),
    "base arity": _table(3, [None, [5]]),
    "base origin type": _table(3, [None, [5, 5]]),
    "base hlc negative": _table(3, [None, [-5, "o"]]),
    "base not list": _table(3, [None, "5:o"]),
    "several bases, one": _table(3, [None, [[5, "o"]]]),
    "several bases unsorted": _table(3, [None, [[6, "o"], [5, "o"]]]),
    "several bases repeated": _table(3, [None, [[5, "o"], [5, "o"]]]),
    "several bases nested badly": _table(3, [None, [[5, "o"], 5]]),
    "changed length": _table(4, [1, 1, 1]),
    "changed negative": _table(4, [1, -1]),
    "changed type": _table(4, [1, "1"]),
    "data count vs columns": _table(5, [["m0", "m1"], ["a", "b"]]),
    "data column length": _short_data_column,
    "duplicate keys": _table(5, [["m0", "m0"], ["a", "b"], [1.0, 2.0]]),
    "duplicate int keys": _table(5, [[1, 1], ["a", "b"], [1.0, 2.0]]),
    "bool key": _table(5, [[True, False], ["a", "b"], [1.0, 2.0]]),
    "float key": _table(5, [[1.0, 2.0], ["a", "b"], [1.0, 2.0]]),
    "none key": _table(5, [[None, "x"], ["a", "b"], [1.0, 2.0]]),
    "unhashable key": _table(5, [[["m"], "x"], ["a", "b"], [1.0, 2.0]]),
    "data not list": _table(5, "data"),
}


@pytest.mark.parametrize("mutate", INVALID.values(), ids=INVALID.keys())
def test_decode_rejects_invalid_structure(mutate: Callable[[list[Any]], None]) -> None:
    raw = _raw(_simple())
    mutate(raw)
    with pytest.raises(RemoteProtocolError):
        changeset.decode(_pack(raw))


def test_unmutated_simple_block_is_valid() -> None:
    # Guards the table above: each case differs from a valid block in one way only.
    raw = _raw(_simple())
    assert changeset.decode(_pack(raw)) == _simple()
    assert raw[5][0][1] == KEY_COLS


@pytest.mark.parametrize(
    "prev",
    [None, "", "b", "bafy", "notacid", "Qm!!", "bafkrei" + "!" * 52, "z", "\x00", 12, b"bafk"],
)
def test_decode_seq2_requires_valid_prev(prev: object) -> None:
    raw = _raw(_simple(seq=2, prev=block_cid(b"genesis")))
    assert changeset.decode(_pack(raw)).prev == block_cid(b"genesis")
    raw[4] = prev
    with pytest.raises(RemoteProtocolError):
        changeset.decode(_pack(raw))


@pytest.mark.parametrize(
    "block",
    [b"", b"\xc1", b"\x96", b"\x90", _pack({"v": 1}), _pack(None), _pack([1] * 6)],
)
def test_decode_rejects_garbage(block: bytes) -> None:
    with pytest.raises(RemoteProtocolError):
        changeset.decode(block)


def test_decode_rejects_trailing_bytes_and_oversize() -> None:
    block = changeset.encode(_simple())
    with pytest.raises(RemoteProtocolError):
        changeset.decode(block + b"\x00")
    with pytest.raises(RemoteProtocolError):
        changeset.decode(block, max_size=len(block) - 1)
    assert changeset.decode(block, max_size=len(block)) == _simple()


def test_decode_accepts_int_keys_and_any_cell_values() -> None:
    # Keys may be str or int; cell values are not type-checked by the codec.
    raw = _raw(_simple())
    raw[5][0][5] = [[1, 2], [{"nested": [1]}, None], [None, "not a float"]]
    cs = changeset.decode(_pack(raw))
    assert list(cs.tables[0].keys) == [1, 2]


# -------------------------------------------------------------------- chain links


def test_verify_link_accepts_the_next_link() -> None:
    first = _simple(seq=1)
    first_block = changeset.encode(first)
    changeset.verify_link(changeset.decode(first_block), None, 1)
    second = _simple(seq=2, prev=changeset.cid_of(first_block))
    decoded = changeset.decode(changeset.encode(second))
    changeset.verify_link(decoded, changeset.cid_of(first_block), 2)
    assert parse_cid(decoded.prev or "").codec.name == "raw"


@pytest.mark.parametrize(
    ("expected_prev", "expected_seq"),
    [
        ("PREV", 3),  # gap
        ("PREV", 1),  # replay of an older seq number
        (None, 2),  # we hold nothing yet
        ("OTHER", 2),  # fork: different predecessor
    ],
)
def test_verify_link_rejects(expected_prev: str | None, expected_seq: int) -> None:
    prev = changeset.cid_of(changeset.encode(_simple(seq=1)))
    other = changeset.cid_of(changeset.encode(_simple(seq=1, rows=3)))
    resolved = {"PREV": prev, "OTHER": other, None: None}[expected_prev]
    cs = _simple(seq=2, prev=prev)
    with pytest.raises(RemoteProtocolError):
        changeset.verify_link(cs, resolved, expected_seq)


@CS_SETTINGS
@given(changesets())
def test_verify_link_property(cs: Changeset) -> None:
    changeset.verify_link(cs, cs.prev, cs.seq)
    with pytest.raises(RemoteProtocolError):
        changeset.verify_link(cs, cs.prev, cs.seq + 1)
    wrong = block_cid(b"wrong") if cs.prev != block_cid(b"wrong") else None
    with pytest.raises(RemoteProtocolError):
        changeset.verify_link(cs, wrong, cs.seq)
