"""The key invariant of the sans-IO layer, in the style of h2's fuzz tests.

Whatever bytes arrive, every decoder either returns a valid message object or raises
RemoteProtocolError; no other exception may escape. Also: framing is independent of
how the byte stream is split, and every message type survives encode/decode.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocol import changeset, control, hlc, messages
from protocol.changeset import Changeset, TableChanges
from protocol.cid import block_cid
from protocol.errors import LocalProtocolError, RemoteProtocolError
from protocol.framing import HEADER, FrameDecoder, encode_frame
from protocol.schema import TABLES

SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# ---------------------------------------------------------------------- strategies

U63 = st.integers(min_value=0, max_value=(1 << 63) - 1)
SEQ = st.integers(min_value=1, max_value=(1 << 63) - 1)
VECTOR = st.dictionaries(st.text(max_size=128), SEQ, max_size=6)
CID_TEXT = st.one_of(st.binary(max_size=16).map(block_cid), st.text(max_size=128))

announces = st.builds(
    messages.Announce,
    peer_id=st.text(max_size=128),
    db_cid=CID_TEXT,
    vector=VECTOR,
    addrs=st.lists(st.text(max_size=512), max_size=32).map(tuple),
    load=st.floats(0, 1e6),
    hlc=st.integers(min_value=0, max_value=hlc.MAX_HLC),
)
sync_requests = st.builds(messages.SyncRequest, have=VECTOR, max_changesets=U63)
sync_blocks = st.builds(messages.SyncBlock, block=st.binary(max_size=256))
sync_ends = st.builds(messages.SyncEnd, count=U63, db_cid=CID_TEXT, vector=VECTOR)
sync_errors = st.builds(messages.SyncError, reason=st.text(max_size=4096))
all_messages = st.one_of(announces, sync_requests, sync_blocks, sync_ends, sync_errors)

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(1 << 63), max_value=(1 << 64) - 1),
    st.floats(allow_nan=False),
    st.text(max_size=20),
    st.binary(max_size=20),
)
msgpack_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=6,
)
control_requests = st.builds(
    control.ControlRequest,
    id=U63,
    method=st.text(max_size=64),
    params=st.dictionaries(st.text(max_size=16), msgpack_values, max_size=4),
)
control_responses = st.builds(
    control.ControlResponse,
    id=U63,
    result=msgpack_values,
    error_code=st.none() | st.text(max_size=64),
    error=st.none() | st.text(max_size=200),
)


@st.composite
def small_changesets(draw: st.DrawFn) -> Changeset:
    """Cheap valid changesets: a few tables with the key and at most two text-ish columns."""
    tables = []
    names = draw(st.lists(st.sampled_from(sorted(TABLES)), max_size=2, unique=True))
    for name in names:
        schema = TABLES[name]
        extra = draw(st.lists(st.sampled_from(schema.column_names[1:]), max_size=2, unique=True))
        columns = [schema.key, *extra]
        n = draw(st.integers(0, 3))
        keys = draw(st.lists(st.text(min_size=1, max_size=8), min_size=n, max_size=n, unique=True))
        cell = st.none() | st.text(max_size=8) | st.integers(-5, 5) | st.floats(allow_nan=False)
        data = [keys] + [draw(st.lists(cell, min_size=n, max_size=n)) for _ in extra]
        tables.append(
            TableChanges(
                name,
                columns,
                bytes(draw(st.lists(st.integers(0, 1), min_size=n, max_size=n))),
                draw(
                    st.lists(
                        st.none() | st.tuples(U63, st.text(max_size=8)), min_size=n, max_size=n
                    )
                ),
                draw(st.lists(st.integers(0, 7), min_size=n, max_size=n)),
                data,
            )
        )
    seq = draw(st.integers(1, 3))
    prev = None if seq == 1 else block_cid(draw(st.binary(max_size=8)))
    return Changeset(draw(st.text(max_size=16)), seq, draw(U63), prev, tables)


# Valid encodings of each decoder's input, to be mutated.
VALID: dict[str, st.SearchStrategy[bytes]] = {
    "message": all_messages.map(messages.encode),
    "request": control_requests.map(control.encode_request),
    "response": control_responses.map(control.encode_response),
    "changeset": small_changesets().map(changeset.encode),
}


@st.composite
def mutated(draw: st.DrawFn, valid: st.SearchStrategy[bytes]) -> bytes:
    """A valid encoding with a few bytes flipped, inserted, replaced or deleted."""
    data = bytearray(draw(valid))
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["flip", "insert", "delete", "replace", "truncate"]))
        pos = draw(st.integers(0, len(data)))
        if kind == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=4))
        elif not data:
            continue
        elif kind == "truncate":
            del data[pos:]
        else:
            pos = min(pos, len(data) - 1)
            if kind == "flip":
                data[pos] ^= 1 << draw(st.integers(0, 7))
            elif kind == "delete":
                del data[pos]
            else:
                data[pos] = draw(st.integers(0, 255))
    return bytes(data)


ext_values = st.one_of(
    st.builds(msgpack.ExtType, st.integers(0, 127), st.binary(max_size=12)),
    st.builds(msgpack.Timestamp, st.integers(0, (1 << 34) - 1), st.integers(0, 999_999_999)),
)
any_values = st.recursive(
    scalars | ext_values,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.text(max_size=8) | st.binary(max_size=4), inner, max_size=3)
    ),
    max_leaves=8,
)
TAGS = st.sampled_from(["announce", "sync_req", "block", "end", "error", "nope", ""])
MESSAGE_FIELDS = ["v", "t", "peer", "cid", "vv", "addrs", "load", "hlc", "have", "max"]
FIELDS = st.sampled_from([*MESSAGE_FIELDS, "b", "n", "reason", "id", "m", "p", "r", "c", "e"])
VERSION = st.one_of(st.just(1), st.just(1), any_values)
# Maps that look like messages (right version and tag, fields of random types), so the
# fuzzer reaches the per-field validators rather than stopping at the envelope.
envelopes = st.builds(
    lambda v, t, rest: {**rest, "v": v, "t": t},
    VERSION,
    TAGS | any_values,
    st.dictionaries(FIELDS, any_values, max_size=4),
)
# Strings that get past a multibase prefix check: a prefix plus a few (maybe wrong) chars,
# or a truncated / corrupted real CID.
CID_ISH = st.one_of(
    st.sampled_from(["", "b", "z", "m", "u", "f", "B", "k"]),  # multibase prefix alone
    st.builds(
        str.__add__,
        st.sampled_from(["b", "B", "f", "F", "z", "m", "u", "k", "Qm", "bafk", "bafy"]),
        st.text(st.sampled_from("abcdefghijklmnopqrstuvwxyz234567=01!"), max_size=6),
    ),
    st.builds(lambda cid, n: cid[:n], st.binary(max_size=8).map(block_cid), st.integers(0, 70)),
)


def mostly(valid: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Usually (4 in 5) a plausible value, sometimes anything at all."""
    return st.sampled_from([True, True, True, True, False]).flatmap(
        lambda plausible: valid if plausible else any_values
    )


raw_tables = st.lists(
    st.tuples(
        mostly(st.sampled_from([*TABLES, "x"])),
        mostly(st.lists(st.sampled_from(["model_id", "run_id", "model_name", "x"]), max_size=3)),
        mostly(st.binary(max_size=3)),
        mostly(st.lists(st.none() | st.tuples(U63, st.text(max_size=4)).map(list), max_size=3)),
        mostly(st.lists(st.integers(-1, 7), max_size=3)),
        mostly(st.lists(st.lists(scalars, max_size=3), max_size=3)),
    ).map(list),
    max_size=3,
)
# Positional changeset arrays whose fields are usually plausible.
CS_FIELDS = st.tuples(
    mostly(st.just(1)),
    mostly(st.text(max_size=8)),
    mostly(st.sampled_from([0, 1, 2, 2, 3])),
    mostly(U63),
    mostly(st.one_of(st.none(), st.binary(max_size=8).map(block_cid), CID_ISH, CID_ISH)),
    mostly(raw_tables),
).map(list)


def _packb(obj: object, use_bin_type: bool) -> bytes:
    return msgpack.packb(obj, use_bin_type=use_bin_type)  # type: ignore[no-any-return]


def packed(values: st.SearchStrategy[Any]) -> st.SearchStrategy[bytes]:
    return st.builds(_packb, values, st.sampled_from([True, True, False]))


# Per decoder: msgpack-encoded objects shaped like its input, to get past the envelope.
STRUCTURED: dict[str, st.SearchStrategy[bytes]] = {
    "message": packed(envelopes),
    "request": packed(envelopes),
    "response": packed(envelopes),
    "changeset": packed(CS_FIELDS),
}


def fuzz_inputs(kind: str) -> st.SearchStrategy[bytes]:
    return st.one_of(
        st.binary(max_size=200),
        mutated(VALID[kind]),
        packed(any_values),
        STRUCTURED[kind],
        STRUCTURED[kind],
    )


# -------------------------------------------------------------------- the invariant

DECODERS: dict[str, tuple[Callable[[bytes], object], Callable[[Any], bytes], tuple[type, ...]]] = {
    "message": (
        messages.decode,
        messages.encode,
        (
            messages.Announce,
            messages.SyncRequest,
            messages.SyncBlock,
            messages.SyncEnd,
            messages.SyncError,
            messages.QueryFragment,
            messages.PartialResult,
            messages.PartialFailed,
            messages.Capacity,
        ),
    ),
    "request": (control.decode_request, control.encode_request, (control.ControlRequest,)),
    "response": (control.decode_response, control.encode_response, (control.ControlResponse,)),
    "changeset": (changeset.decode, changeset.encode, (Changeset,)),
}


def check_decoder(kind: str, data: bytes) -> None:
    decode, encode, types = DECODERS[kind]
    try:
        result = decode(data)
    except RemoteProtocolError:
        return
    assert isinstance(result, types)
    # Whatever we accept, we can re-encode, and that encoding is a fixed point.
    again = encode(result)
    assert encode(decode(again)) == again


@pytest.mark.parametrize("kind", sorted(DECODERS))
@SETTINGS
@given(data=st.data())
def test_decoders_raise_only_remote_protocol_error(kind: str, data: st.DataObject) -> None:
    check_decoder(kind, data.draw(fuzz_inputs(kind)))


@pytest.mark.parametrize("kind", sorted(DECODERS))
@settings(SETTINGS, max_examples=100)
@given(data=st.data())
def test_cross_decoding_raises_only_remote_protocol_error(kind: str, data: st.DataObject) -> None:
    # Valid input for one decoder fed to another one.
    other = data.draw(st.sampled_from(sorted(VALID)))
    check_decoder(kind, data.draw(VALID[other]))


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\xc1",  # never-used msgpack byte
        b"\xdd\xff\xff\xff\xff",  # array32 declaring 4G items
        b"\xdf\xff\xff\xff\xff",  # map32 declaring 4G entries
        b"\xdb\xff\xff\xff\xff",  # str32 declaring 4 GiB
        b"\x91" * 5000 + b"\xc0",  # deeply nested arrays
        b"\x81\x01\x02",  # int map key (strict_map_key)
        b"\x81\x91\x01\x02",  # unhashable map key
        b"\xa2\xff\xfe",  # invalid UTF-8
        b"\xd6\xff\x00\x00",  # truncated timestamp ext
        b"\xd5\xff\x00\x00",  # timestamp ext with an invalid length
        b"\x80\x00",  # trailing data
    ],
)
def test_decoders_on_hostile_inputs(data: bytes) -> None:
    for kind in DECODERS:
        check_decoder(kind, data)
        with pytest.raises(RemoteProtocolError):
            DECODERS[kind][0](data)


@pytest.mark.parametrize("kind", sorted(DECODERS))
def test_decoders_enforce_max_size(kind: str) -> None:
    decoder = {
        "message": messages.decode,
        "request": control.decode_request,
        "response": control.decode_response,
        "changeset": changeset.decode,
    }[kind]
    with pytest.raises(RemoteProtocolError, match="exceeds limit"):
        decoder(b"\xc0" * 65, max_size=64)


def test_changeset_with_prefix_only_prev_is_remote_error() -> None:
    # Regression: parse_cid("b") used to leak an IndexError out of changeset.decode.
    block = msgpack.packb([1, "o", 2, 0, "b", []], use_bin_type=True)
    with pytest.raises(RemoteProtocolError):
        changeset.decode(block)


# ----------------------------------------------------------------------- round trip


@SETTINGS
@given(all_messages)
def test_messages_round_trip(msg: messages.Message) -> None:
    data = messages.encode(msg)
    back = messages.decode(data)
    assert back == msg
    assert type(back) is type(msg)
    assert messages.encode(back) == data


@pytest.mark.parametrize(
    "msg",
    [
        messages.Announce("peer", "bafy", {}),
        messages.Announce("p", "c", {"a": 1}, ("/ip4/127.0.0.1/tcp/1",), 0.5, 7),
        messages.SyncRequest({}),
        messages.SyncRequest({"a": 3}, 10),
        messages.SyncBlock(b""),
        messages.SyncEnd(0, "c"),
        messages.SyncEnd(3, "c", {"a": 3}),
        messages.SyncError(""),
    ],
    ids=repr,
)
def test_message_examples_round_trip(msg: messages.Message) -> None:
    assert messages.decode(messages.encode(msg)) == msg


def test_optional_message_fields_default() -> None:
    raw = {"v": 1, "t": "announce", "peer": "p", "cid": "c", "vv": {}}
    assert messages.decode(msgpack.packb(raw)) == messages.Announce("p", "c", {})
    assert messages.decode(msgpack.packb({"v": 1, "t": "sync_req", "have": {}})) == (
        messages.SyncRequest({})
    )
    assert messages.decode(msgpack.packb({"v": 1, "t": "end", "n": 0, "cid": "c"})) == (
        messages.SyncEnd(0, "c")
    )
    # An int load is accepted and normalised to float.
    raw["load"] = 2
    assert messages.decode(msgpack.packb(raw)).load == 2.0  # type: ignore[union-attr]


@pytest.mark.parametrize(
    "raw",
    [
        {"t": "error", "reason": "x"},
        {"v": 2, "t": "error", "reason": "x"},
        {"v": 0, "t": "error", "reason": "x"},
        {"v": "1", "t": "error", "reason": "x"},
        {"v": None, "t": "error", "reason": "x"},
        {"v": 1, "reason": "x"},
        {"v": 1, "t": "nope"},
        {"v": 1, "t": 1},
        {"v": 1, "t": "error"},
        {"v": 1, "t": "error", "reason": 5},
        {"v": 1, "t": "block"},
        {"v": 1, "t": "block", "b": "text"},
        {"v": 1, "t": "announce", "peer": "p", "cid": "c"},
        {"v": 1, "t": "announce", "peer": "p", "cid": "c", "vv": {"a": 0}},
        {"v": 1, "t": "announce", "peer": "p", "cid": "c", "vv": {"a": True}},
        {"v": 1, "t": "announce", "peer": "p", "cid": "c", "vv": {}, "load": "1"},
        {"v": 1, "t": "announce", "peer": "p", "cid": "c", "vv": {}, "load": True},
        {"v": 1, "t": "announce", "peer": "p", "cid": "c", "vv": {}, "addrs": ["a"] * 33},
        {"v": 1, "t": "announce", "peer": "p" * 129, "cid": "c", "vv": {}},
        {"v": 1, "t": "announce", "peer": "p", "cid": "c", "vv": {}, "hlc": -1},
        {"v": 1, "t": "sync_req", "have": {"a": 1}, "max": -1},
        {"v": 1, "t": "sync_req", "have": [["a", 1]]},
        {"v": 1, "t": "end", "n": -1, "cid": "c"},
        {"v": 1, "t": "end", "n": 0},
        {"v": 1, "t": "end", "n": 0, "cid": "c", "vv": {"a": 1.5}},
        {str(i): i for i in range(17)} | {"v": 1, "t": "error", "reason": "x"},
    ],
    ids=repr,
)
def test_invalid_messages_rejected(raw: dict[str, Any]) -> None:
    with pytest.raises(RemoteProtocolError):
        messages.decode(msgpack.packb(raw, use_bin_type=True))


# -------------------------------------------------------------------------- framing

MAX_FRAME = 300
payloads = st.lists(st.binary(max_size=MAX_FRAME), max_size=8)


def drain(decoder: FrameDecoder) -> list[bytes]:
    out = []
    while (frame := decoder.next_frame()) is not None:
        out.append(frame)
    return out


def feed_in_chunks(stream: bytes, cuts: list[int]) -> list[bytes]:
    decoder = FrameDecoder(MAX_FRAME)
    out: list[bytes] = []
    bounds = [0, *sorted(c % (len(stream) + 1) for c in cuts), len(stream)]
    for start, end in itertools.pairwise(bounds):
        decoder.feed(stream[start:end])
        out += drain(decoder)
    assert decoder.pending == 0
    return out


@SETTINGS
@given(payloads, st.lists(st.integers(min_value=0), max_size=20))
def test_frames_independent_of_splitting(frames: list[bytes], cuts: list[int]) -> None:
    stream = b"".join(encode_frame(p, MAX_FRAME) for p in frames)
    whole = FrameDecoder(MAX_FRAME)
    whole.feed(stream)
    assert drain(whole) == frames
    assert whole.pending == 0
    assert feed_in_chunks(stream, list(range(len(stream)))) == frames  # byte by byte
    assert feed_in_chunks(stream, cuts) == frames


@SETTINGS
@given(payloads, st.binary(min_size=1, max_size=HEADER.size + 10))
def test_incomplete_frame_is_buffered(frames: list[bytes], tail: bytes) -> None:
    decoder = FrameDecoder(MAX_FRAME)
    stream = b"".join(encode_frame(p, MAX_FRAME) for p in frames)
    partial = encode_frame(b"x" * (len(tail) + 20), MAX_FRAME)[: HEADER.size + len(tail) // 2]
    decoder.feed(stream + partial)
    assert drain(decoder) == frames
    assert decoder.pending == len(partial)
    assert decoder.next_frame() is None


@SETTINGS
@given(st.integers(min_value=MAX_FRAME + 1, max_value=(1 << 32) - 1), st.binary(max_size=8))
def test_oversize_length_raises_before_payload(length: int, rest: bytes) -> None:
    decoder = FrameDecoder(MAX_FRAME)
    decoder.feed(encode_frame(b"ok", MAX_FRAME) + HEADER.pack(length) + rest)
    assert decoder.next_frame() == b"ok"
    with pytest.raises(RemoteProtocolError, match="exceeds limit"):
        decoder.next_frame()


def test_frame_length_limits() -> None:
    decoder = FrameDecoder(4)
    decoder.feed(HEADER.pack(4) + b"abcd" + HEADER.pack(0))
    assert drain(decoder) == [b"abcd", b""]
    with pytest.raises(LocalProtocolError):
        encode_frame(b"abcde", 4)
    decoder.feed(HEADER.pack(5))
    with pytest.raises(RemoteProtocolError):
        decoder.next_frame()


def _decode_stream(chunks: list[bytes]) -> tuple[list[bytes], bool]:
    """Payloads yielded before any error, and whether a RemoteProtocolError ended it."""
    decoder = FrameDecoder(MAX_FRAME)
    out: list[bytes] = []
    for chunk in chunks:
        decoder.feed(chunk)
        try:
            while (frame := decoder.next_frame()) is not None:
                out.append(frame)
        except RemoteProtocolError:
            return out, True
    return out, False


@SETTINGS
@given(
    st.one_of(
        st.binary(max_size=600),
        payloads.map(lambda ps: b"".join(map(HEADER.pack, map(len, ps))) + b"".join(ps)),
    )
)
def test_random_bytes_only_yield_payloads_or_remote_error(data: bytes) -> None:
    byte_by_byte = _decode_stream([data[i : i + 1] for i in range(len(data))])
    at_once = _decode_stream([data])
    assert byte_by_byte == at_once
    frames, _ = at_once
    assert all(len(f) <= MAX_FRAME for f in frames)
    assert sum(HEADER.size + len(f) for f in frames) <= len(data)


@SETTINGS
@given(st.lists(all_messages, max_size=5), st.lists(st.integers(min_value=0), max_size=10))
def test_messages_over_frames(msgs: list[messages.Message], cuts: list[int]) -> None:
    limit = 1 << 20
    stream = b"".join(encode_frame(messages.encode(m), limit) for m in msgs)
    decoder = FrameDecoder(limit)
    out: list[messages.Message] = []
    bounds = [0, *sorted(c % (len(stream) + 1) for c in cuts), len(stream)]
    for start, end in itertools.pairwise(bounds):
        decoder.feed(stream[start:end])
        while (frame := decoder.next_frame()) is not None:
            out.append(messages.decode(frame))
    assert out == msgs
