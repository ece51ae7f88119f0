"""protocol.cachemsg: round trips, and any bytes give a message or RemoteProtocolError."""

from __future__ import annotations

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocol import cachemsg
from protocol.cachemsg import CacheFound, CacheGet, CacheMissing
from protocol.errors import RemoteProtocolError

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
FP = st.text(alphabet="0123456789abcdef", min_size=64, max_size=64)
scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-(1 << 63), (1 << 63) - 1),
    st.floats(allow_nan=False), st.text(max_size=20),
)  # fmt: skip
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=8,
)
gets = st.builds(CacheGet, FP, st.text(max_size=128), st.integers(0, (1 << 63) - 1))


@st.composite
def founds(draw: st.DrawFn) -> CacheFound:
    columns = tuple(draw(st.lists(st.text(max_size=20), max_size=5)))
    row = st.tuples(*[values for _ in columns])
    rows = tuple(draw(st.lists(row, max_size=5)))
    cost = draw(st.floats(min_value=0, allow_nan=False, allow_infinity=False))
    rewrites = tuple(draw(st.lists(st.text(max_size=20), max_size=4)))
    return CacheFound(columns, rows, cost, rewrites)


missings = st.builds(CacheMissing, st.text(max_size=4096))


@SETTINGS
@given(st.one_of(gets, founds(), missings))
def test_round_trip(msg: cachemsg.CacheMessage) -> None:
    assert cachemsg.decode(cachemsg.encode(msg)) == msg


@SETTINGS
@given(st.binary(max_size=512))
def test_any_bytes_give_a_message_or_remote_error(data: bytes) -> None:
    try:
        cachemsg.decode(data)
    except RemoteProtocolError:
        pass


@SETTINGS
@given(st.dictionaries(st.sampled_from(["v", "t", "fp", "cid", "max", "cols", "rows", "cost",
                                        "rw", "reason"]), values, max_size=8))  # fmt: skip
def test_hostile_maps_give_a_message_or_remote_error(raw: dict) -> None:
    raw.setdefault("v", 1)
    for tag in ("get", "found", "missing"):
        try:
            cachemsg.decode(msgpack.packb({**raw, "t": tag}))
        except RemoteProtocolError:
            pass


@pytest.mark.parametrize(
    "raw",
    [
        {"v": 1, "t": "get", "fp": "x" * 64, "cid": "c", "max": 1},  # not hex
        {"v": 1, "t": "get", "fp": "a" * 64, "cid": "c", "max": -1},
        {"v": 1, "t": "found", "cols": ["a"], "rows": [[1, 2]]},  # row wider than columns
        {"v": 1, "t": "found", "cols": ["a"], "rows": [[b"raw"]]},  # bytes are not a value
        {"v": 1, "t": "found", "cols": ["a"], "rows": [[1]], "cost": -1},
        {"v": 1, "t": "found", "cols": ["a"], "rows": [[[[[[[[[[[[1]]]]]]]]]]]]},  # too deep
        {"v": 2, "t": "missing", "reason": ""},
        {"v": 1, "t": "nope"},
    ],
)
def test_defects_are_remote_errors(raw: dict) -> None:
    with pytest.raises(RemoteProtocolError):
        cachemsg.decode(msgpack.packb(raw, use_bin_type=True))


def test_size_limit() -> None:
    big = cachemsg.encode(CacheMissing("x" * 4000))
    with pytest.raises(RemoteProtocolError):
        cachemsg.decode(big, max_size=100)
