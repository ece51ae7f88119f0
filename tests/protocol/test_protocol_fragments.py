"""QueryFragment / PartialResult / PartialFailed / Capacity: round trips, limits, and
the fuzz invariant (any bytes give a message or RemoteProtocolError)."""

from __future__ import annotations

from typing import Any

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocol import messages
from protocol.errors import RemoteProtocolError
from protocol.messages import Capacity, PartialFailed, PartialResult, QueryFragment

SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

BOUND = st.one_of(
    st.integers(-(1 << 63), (1 << 63) - 1), st.floats(allow_nan=False), st.text(max_size=20)
)


@st.composite
def fragments(draw: st.DrawFn) -> QueryFragment:
    n = draw(st.integers(1, 8))
    peers = draw(st.lists(st.text(max_size=20), max_size=4, unique=True))
    return QueryFragment(
        query_id=draw(st.text(max_size=64)),
        coordinator=draw(st.text(max_size=128)),
        db_cid=draw(st.text(max_size=128)),
        sql=draw(st.text(max_size=200)),
        strategy=draw(st.sampled_from(["keys", "hash", "round_robin", "range", "x"])),
        partitions=n,
        assignments={p: tuple(draw(st.lists(st.integers(0, n - 1), max_size=n))) for p in peers},
        column=draw(st.text(max_size=20)),
        bounds=tuple(draw(st.lists(BOUND, max_size=3 * n))),
        deadline_ms=draw(st.integers(1, 3_600_000)),
        owners=tuple(draw(st.lists(st.integers(0, n - 1), max_size=3 * n))),
    )


partials = st.builds(
    PartialResult,
    query_id=st.text(max_size=64),
    partition=st.integers(0, 255),
    data=st.binary(max_size=64),
    rows=st.integers(0, 1 << 40),
    elapsed_ms=st.floats(0, 1e9),
    scanned_rows=st.integers(0, 1 << 40),
    row_groups=st.integers(0, 1 << 20),
    row_groups_total=st.integers(0, 1 << 20),
)
capacities = st.builds(
    Capacity,
    cores=st.integers(1, 65536),
    load=st.floats(0, 1e6, allow_nan=False),
    busy=st.floats(0, 1e3, allow_nan=False),
)
failures = st.builds(
    PartialFailed,
    query_id=st.text(max_size=64),
    partition=st.integers(0, 255),
    reason=st.text(max_size=100),
)
any_message = st.one_of(fragments(), partials, failures, capacities)


@SETTINGS
@given(msg=any_message)
def test_round_trip(msg: messages.Message) -> None:
    assert messages.decode(messages.encode(msg), 1 << 22) == msg


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    data = bytearray(messages.encode(draw(any_message)))
    for _ in range(draw(st.integers(1, 4))):
        if not data:
            break
        i = draw(st.integers(0, len(data) - 1))
        data[i] = draw(st.integers(0, 255))
    cut = draw(st.integers(0, len(data)))
    return bytes(data[:cut] if draw(st.booleans()) else data)


FIELD_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(1 << 63), (1 << 64) - 1),  # what msgpack can carry
    st.floats(),
    st.text(max_size=10),
    st.binary(max_size=10),
    st.lists(st.integers(-3, 300), max_size=5),
    st.dictionaries(st.text(max_size=5), st.lists(st.integers(-3, 300), max_size=3), max_size=3),
)
structured = st.builds(
    lambda t, fields: msgpack.packb({"v": 1, "t": t, **fields}, use_bin_type=True),
    st.sampled_from(["fragment", "partial", "partial_failed", "capacity"]),
    st.dictionaries(
        st.sampled_from(
            [
                "qid",
                "coord",
                "cid",
                "sql",
                "strat",
                "n",
                "assign",
                "col",
                "bounds",
                "deadline",
                "p",
                "data",
                "rows",
                "ms",
                "reason",
                "owner",
                "srows",
                "rg",
                "rgt",
                "cores",
                "load",
                "busy",
            ]
        ),
        FIELD_VALUES,
        max_size=12,
    ),
)


@SETTINGS
@given(data=st.one_of(st.binary(max_size=200), mutated(), structured))
def test_any_bytes_give_a_message_or_remote_error(data: bytes) -> None:
    try:
        msg = messages.decode(data)
    except RemoteProtocolError:
        return
    assert messages.decode(messages.encode(msg)) == msg


def _fragment_raw(**over: Any) -> bytes:
    raw = messages.encode(QueryFragment("q", "c", "cid", "SELECT 1", "hash", 2, {"p": (0, 1)}))
    fields = msgpack.unpackb(raw)
    fields.update(over)
    return msgpack.packb(fields, use_bin_type=True)  # type: ignore[no-any-return]


@pytest.mark.parametrize(
    "over",
    [
        {"n": 0},
        {"n": 257},
        {"assign": {"p": [2]}},  # partition out of range
        {"assign": {"p": [-1]}},
        {"bounds": [True]},
        {"bounds": [None]},
        {"bounds": [1] * 1024},  # more bounds than chunks
        {"owner": [2]},  # chunk owner out of range
        {"owner": [0] * 1025},
        {"sql": "x" * 100_001},
        {"deadline": 0},
        {"assign": {f"p{i}": [0] for i in range(65)}},
    ],
)
def test_invalid_fragments_rejected(over: dict[str, Any]) -> None:
    with pytest.raises(RemoteProtocolError):
        messages.decode(_fragment_raw(**over), 1 << 22)


@pytest.mark.parametrize(
    "raw",
    [
        {"cores": 0},
        {"cores": 65537},
        {"cores": True},
        {"cores": 2, "load": -1.0},
        {"cores": 2, "load": float("inf")},
        {"cores": 2, "busy": "x"},
        {"load": 1.0},
    ],
)
def test_invalid_capacities_rejected(raw: dict[str, Any]) -> None:
    with pytest.raises(RemoteProtocolError):
        messages.decode(msgpack.packb({"v": 1, "t": "capacity", **raw}), 1 << 22)
