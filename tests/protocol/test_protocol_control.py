"""Control-socket requests and responses between peerctl and the daemon."""

from __future__ import annotations

from typing import Any

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol import codec, control
from protocol.control import ControlRequest, ControlResponse
from protocol.errors import LocalProtocolError, RemoteProtocolError
from protocol.framing import encode_frame, frame_pieces

SETTINGS = settings(max_examples=300, deadline=None)

U63 = st.integers(min_value=0, max_value=(1 << 63) - 1)
values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(1 << 63), max_value=(1 << 64) - 1)
    | st.floats(allow_nan=False)
    | st.text(max_size=20)
    | st.binary(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)
requests = st.builds(
    ControlRequest,
    id=U63,
    method=st.text(max_size=64),
    params=st.dictionaries(st.text(max_size=16), values, max_size=6),
)
responses = st.builds(
    ControlResponse,
    id=U63,
    result=values,
    error_code=st.none() | st.text(max_size=64),
    error=st.none() | st.text(max_size=500),
)


def _pack(obj: object) -> bytes:
    return msgpack.packb(obj, use_bin_type=True)  # type: ignore[no-any-return]


@SETTINGS
@given(requests)
def test_request_round_trip(req: ControlRequest) -> None:
    data = control.encode_request(req)
    assert control.decode_request(data) == req
    assert control.encode_request(control.decode_request(data)) == data


@SETTINGS
@given(responses)
def test_response_round_trip(resp: ControlResponse) -> None:
    data = control.encode_response(resp)
    back = control.decode_response(data)
    assert back == resp
    assert back.ok == (resp.error_code is None)
    assert control.encode_response(back) == data


def test_examples() -> None:
    req = ControlRequest(1, "status")
    assert control.decode_request(control.encode_request(req)) == ControlRequest(1, "status", {})
    ok = ControlResponse(1, {"peers": 3})
    assert ok.ok
    assert control.decode_response(control.encode_response(ok)) == ok
    err = ControlResponse(2, None, "not_found", "no such run")
    assert not err.ok
    assert control.decode_response(control.encode_response(err)) == err


def test_params_size_limit() -> None:
    params = {f"k{i}": i for i in range(64)}
    req = ControlRequest(1, "m", params)
    assert control.decode_request(control.encode_request(req)) == req
    with pytest.raises(RemoteProtocolError):
        control.decode_request(control.encode_request(ControlRequest(1, "m", {**params, "x": 0})))


def test_params_default_to_empty() -> None:
    assert control.decode_request(_pack({"v": 1, "id": 5, "m": "ping"})) == ControlRequest(
        5, "ping", {}
    )


def test_response_defaults() -> None:
    assert control.decode_response(_pack({"v": 1, "id": 5})) == ControlResponse(5)


def test_encode_refuses_unencodable() -> None:
    with pytest.raises(LocalProtocolError):
        control.encode_request(ControlRequest(1, "x", {"obj": object()}))
    with pytest.raises(LocalProtocolError):
        control.encode_response(ControlResponse(1, result=1 << 70))


BAD_VERSIONS: list[Any] = [None, 0, 2, "1", 1.5, [1], {"v": 1}]


@pytest.mark.parametrize("version", [*BAD_VERSIONS, "missing"])
def test_wrong_version_rejected(version: Any) -> None:
    req: dict[str, Any] = {"v": version, "id": 1, "m": "status", "p": {}}
    resp: dict[str, Any] = {"v": version, "id": 1, "r": None, "c": None, "e": None}
    if version == "missing":
        del req["v"], resp["v"]
    with pytest.raises(RemoteProtocolError, match="version"):
        control.decode_request(_pack(req))
    with pytest.raises(RemoteProtocolError, match="version"):
        control.decode_response(_pack(resp))


@pytest.mark.parametrize(
    "raw",
    [
        {"v": 1, "m": "status"},  # missing id
        {"v": 1, "id": 1},  # missing method
        {"v": 1, "id": -1, "m": "status"},
        {"v": 1, "id": 1 << 63, "m": "status"},
        {"v": 1, "id": True, "m": "status"},
        {"v": 1, "id": "1", "m": "status"},
        {"v": 1, "id": 1, "m": 5},
        {"v": 1, "id": 1, "m": b"status"},
        {"v": 1, "id": 1, "m": "m" * 65},
        {"v": 1, "id": 1, "m": "status", "p": None},
        {"v": 1, "id": 1, "m": "status", "p": ["a"]},
        {"v": 1, "id": 1, "m": "status", "p": {str(i): i for i in range(65)}},
        {"v": 1, "id": 1, "m": "status", "p": {}, **{f"x{i}": i for i in range(6)}},
    ],
    ids=repr,
)
def test_bad_requests_rejected(raw: dict[str, Any]) -> None:
    with pytest.raises(RemoteProtocolError):
        control.decode_request(_pack(raw))


@pytest.mark.parametrize(
    "raw",
    [
        {"v": 1},  # missing id
        {"v": 1, "id": None},
        {"v": 1, "id": -5},
        {"v": 1, "id": False},
        {"v": 1, "id": 1, "c": 3},
        {"v": 1, "id": 1, "c": "c" * 65},
        {"v": 1, "id": 1, "c": "err", "e": 7},
        {"v": 1, "id": 1, "e": b"bytes"},
        {"v": 1, "id": 1, **{f"x{i}": i for i in range(8)}},
    ],
    ids=repr,
)
def test_bad_responses_rejected(raw: dict[str, Any]) -> None:
    with pytest.raises(RemoteProtocolError):
        control.decode_response(_pack(raw))


@pytest.mark.parametrize(
    "data", [b"", b"\xc1", b"\x93\x01\x02\x03", _pack("status"), _pack(None), b"\x80\x80"]
)
def test_garbage_rejected(data: bytes) -> None:
    with pytest.raises(RemoteProtocolError):
        control.decode_request(data)
    with pytest.raises(RemoteProtocolError):
        control.decode_response(data)


def test_max_size() -> None:
    req = ControlRequest(1, "ingest", {"rows": "x" * 1000})
    data = control.encode_request(req)
    assert control.decode_request(data, max_size=len(data)) == req
    with pytest.raises(RemoteProtocolError, match="exceeds limit"):
        control.decode_request(data, max_size=len(data) - 1)
    resp_data = control.encode_response(ControlResponse(1, "y" * 1000))
    with pytest.raises(RemoteProtocolError, match="exceeds limit"):
        control.decode_response(resp_data, max_size=100)


def test_large_ingest_chunk_fits_default_limit() -> None:
    rows = [[f"model-{i}", i, float(i), None] for i in range(50_000)]
    req = ControlRequest(9, "ingest", {"table": "models", "rows": rows})
    data = control.encode_request(req)
    assert len(data) < control.MAX_CONTROL_FRAME
    assert control.decode_request(data) == req


def test_streamed_items_carry_more_and_one_shot_bytes_are_unchanged() -> None:
    one_shot = control.encode_response(ControlResponse(7, {"x": 1}))
    assert b"\xa1m" not in one_shot  # no "m" key: the bytes older clients know
    item = control.decode_response(control.encode_response(ControlResponse(7, [1], more=True)))
    assert item.more and item.result == [1] and item.ok
    assert not control.decode_response(one_shot).more


_PARAMS = st.dictionaries(
    st.text(max_size=8),
    st.one_of(
        st.integers(-(2**63), 2**63 - 1),
        st.text(max_size=20),
        st.binary(max_size=100),
        st.binary(min_size=codec.BIG_BINARY, max_size=codec.BIG_BINARY + 300),
        st.lists(st.integers(-(2**63), 2**63 - 1), max_size=3000),
    ),
    max_size=4,
)


@settings(max_examples=30, deadline=None)
@given(_PARAMS)
def test_request_pieces_framed_are_the_frame_of_the_request(params: dict[str, Any]) -> None:
    req = ControlRequest(7, "ingest", params)
    pieces = frame_pieces(control.encode_request_pieces(req), 1 << 30)
    assert b"".join(pieces) == encode_frame(control.encode_request(req), 1 << 30)
    assert control.decode_request(b"".join(pieces[1:]), 1 << 30) == req


def test_a_large_binary_is_sent_as_the_object_itself_not_a_copy() -> None:
    blob = bytes(range(256)) * 1024
    view = memoryview(blob)
    pieces = frame_pieces(
        control.encode_request_pieces(ControlRequest(1, "ingest", {"arrow": view})), 1 << 30
    )
    assert len(pieces) == 3  # length prefix, the small head, the blob
    assert pieces[-1].obj is blob  # type: ignore[union-attr]


def test_framing_pieces_over_the_limit_is_a_local_error() -> None:
    big = ControlRequest(1, "ingest", {"arrow": bytes(codec.BIG_BINARY)})
    with pytest.raises(LocalProtocolError):
        frame_pieces(control.encode_request_pieces(big), codec.BIG_BINARY)
