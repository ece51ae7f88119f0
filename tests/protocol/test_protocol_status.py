"""protocol.status: round trips, and the fuzz invariant (any bytes: a message or
RemoteProtocolError)."""

from __future__ import annotations

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocol import status
from protocol.errors import RemoteProtocolError
from protocol.status import StatusQuery, StatusReply

SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
NONCE = st.integers(min_value=0, max_value=status.MAX_NONCE)
VECTOR = st.dictionaries(st.text(max_size=128), st.integers(1, (1 << 63) - 1), max_size=6)
queries = st.builds(StatusQuery, nonce=NONCE)
replies = st.builds(
    StatusReply,
    nonce=NONCE,
    peer_id=st.text(max_size=128),
    db_cid=st.text(max_size=128),
    vector=VECTOR,
    hlc=st.integers(0, (1 << 63) - 1),
    load=st.floats(allow_nan=False),
)


@SETTINGS
@given(st.one_of(queries, replies))
def test_round_trip(msg: status.StatusMessage) -> None:
    assert status.decode(status.encode(msg)) == msg


@SETTINGS
@given(st.binary(max_size=512))
def test_any_bytes_give_a_message_or_remote_protocol_error(data: bytes) -> None:
    try:
        msg = status.decode(data)
    except RemoteProtocolError:
        return
    assert isinstance(msg, StatusQuery | StatusReply)


values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-(1 << 63), (1 << 64) - 1),
              st.floats(), st.text(max_size=10), st.binary(max_size=10)),
    lambda inner: st.lists(inner, max_size=4)
    | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=12,
)  # fmt: skip


@SETTINGS
@given(
    st.fixed_dictionaries(
        {"v": st.one_of(st.just(1), values), "t": st.sampled_from(["status_q", "status", "x"])},
        optional={"nonce": values, "peer": values, "cid": values, "vv": values, "hlc": values,
                  "load": values},
    )
)  # fmt: skip
def test_structured_garbage_gives_a_message_or_remote_protocol_error(raw: dict) -> None:
    data = msgpack.packb(raw, use_bin_type=True)
    try:
        status.decode(data)
    except RemoteProtocolError:
        pass


def test_oversize_and_wrong_version_refused() -> None:
    with pytest.raises(RemoteProtocolError, match="exceeds limit"):
        status.decode(b"\x00" * 100, max_size=10)
    with pytest.raises(RemoteProtocolError, match="wire version"):
        status.decode(msgpack.packb({"v": 2, "t": "status_q", "nonce": 1}))
    with pytest.raises(RemoteProtocolError, match="missing field"):
        status.decode(msgpack.packb({"v": 1, "t": "status", "nonce": 1}))
