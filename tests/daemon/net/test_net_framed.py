"""daemon.net.framed.FramedStream over in-memory trio streams (no sockets, mock clock)."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from daemon.net.framed import FramedStream, StreamClosedError, TrioByteStream
from protocol.errors import LocalProtocolError, RemoteProtocolError
from protocol.framing import HEADER, encode_frame

MAX = 1 << 16
TIMEOUT = 30.0


Pair = tuple[FramedStream, FramedStream, trio.StapledStream]


def pair(max_frame: int = MAX) -> Pair:
    a, b = trio.testing.memory_stream_pair()
    return (
        FramedStream(TrioByteStream(a), max_frame, TIMEOUT),
        FramedStream(TrioByteStream(b), max_frame, TIMEOUT),
        b,
    )


async def test_frames_round_trip_both_ways(autojump_clock: trio.testing.MockClock) -> None:
    left, right, _ = pair()
    payloads = [b"", b"x", b"hello world", bytes(range(256)) * 10, b"\x00" * MAX]
    for payload in payloads:
        await left.send(payload)
        assert await right.receive() == payload
    await right.send(b"back")
    assert await left.receive() == b"back"
    assert left.bytes_out == sum(len(p) + HEADER.size for p in payloads)
    assert right.bytes_in == left.bytes_out
    assert left.bytes_in == right.bytes_out == len(b"back") + HEADER.size


async def test_send_many_is_one_write_of_several_frames(
    autojump_clock: trio.testing.MockClock,
) -> None:
    left, right, _ = pair()
    payloads = [b"one", b"", b"three" * 100]
    await left.send_many(payloads)
    assert [await right.receive() for _ in payloads] == payloads


async def test_split_delivery_byte_by_byte(autojump_clock: trio.testing.MockClock) -> None:
    a, b = trio.testing.memory_stream_pair()
    reader = FramedStream(TrioByteStream(b), MAX, TIMEOUT)
    wire = encode_frame(b"first frame", MAX) + encode_frame(b"second", MAX)
    received: list[bytes | None] = []

    async def read_all() -> None:
        for _ in range(2):
            received.append(await reader.receive())

    async with trio.open_nursery() as nursery:
        nursery.start_soon(read_all)
        for i in range(len(wire)):
            await a.send_all(wire[i : i + 1])
            await trio.testing.wait_all_tasks_blocked()
    assert received == [b"first frame", b"second"]


async def test_several_frames_in_one_chunk_and_a_partial_tail(
    autojump_clock: trio.testing.MockClock,
) -> None:
    a, b = trio.testing.memory_stream_pair()
    reader = FramedStream(TrioByteStream(b), MAX, TIMEOUT)
    third = encode_frame(b"three", MAX)
    await a.send_all(encode_frame(b"1", MAX) + encode_frame(b"22", MAX) + third[:3])
    assert await reader.receive() == b"1"
    assert await reader.receive() == b"22"
    await a.send_all(third[3:])
    assert await reader.receive() == b"three"


async def test_clean_eof_returns_none(autojump_clock: trio.testing.MockClock) -> None:
    left, right, _ = pair()
    await left.send(b"last")
    await left.aclose()
    assert await right.receive() == b"last"
    assert await right.receive() is None
    assert await right.receive() is None


async def test_eof_mid_header_and_mid_payload_raise(
    autojump_clock: trio.testing.MockClock,
) -> None:
    for cut in (2, HEADER.size + 3):
        a, b = trio.testing.memory_stream_pair()
        reader = FramedStream(TrioByteStream(b), MAX, TIMEOUT)
        await a.send_all(encode_frame(b"0123456789", MAX)[:cut])
        await a.send_stream.aclose()
        with pytest.raises(StreamClosedError):
            await reader.receive()


async def test_silent_peer_times_out(autojump_clock: trio.testing.MockClock) -> None:
    _left, right, _ = pair()  # the peer stays open and says nothing
    start = trio.current_time()
    with pytest.raises(trio.TooSlowError):
        await right.receive()
    assert trio.current_time() - start == pytest.approx(TIMEOUT)


async def test_timeout_is_per_read_not_per_frame(autojump_clock: trio.testing.MockClock) -> None:
    """A slow but steady sender is fine: each read gets a fresh deadline."""
    a, b = trio.testing.memory_stream_pair()
    reader = FramedStream(TrioByteStream(b), MAX, TIMEOUT)
    wire = encode_frame(b"slowly", MAX)

    async def trickle() -> None:
        for i in range(len(wire)):
            await trio.sleep(TIMEOUT * 0.9)
            await a.send_all(wire[i : i + 1])

    start = trio.current_time()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(trickle)
        assert await reader.receive() == b"slowly"
    assert trio.current_time() - start > TIMEOUT * 2


async def test_silent_peer_mid_frame_times_out(autojump_clock: trio.testing.MockClock) -> None:
    a, b = trio.testing.memory_stream_pair()
    reader = FramedStream(TrioByteStream(b), MAX, TIMEOUT)
    await a.send_all(encode_frame(b"never finished", MAX)[:-1])
    with pytest.raises(trio.TooSlowError):
        await reader.receive()


async def test_oversize_frame_is_a_protocol_error(autojump_clock: trio.testing.MockClock) -> None:
    a, b = trio.testing.memory_stream_pair()
    reader = FramedStream(TrioByteStream(b), 100, TIMEOUT)
    await a.send_all(HEADER.pack(101))  # rejected on the header, before any payload
    with pytest.raises(RemoteProtocolError):
        await reader.receive()

    writer = FramedStream(TrioByteStream(a), 100, TIMEOUT)
    with pytest.raises(LocalProtocolError):
        await writer.send(b"x" * 101)
    assert writer.bytes_out == 0


async def test_sender_limit_can_be_raised(autojump_clock: trio.testing.MockClock) -> None:
    """The sync server raises its send limit after the (small) request frame."""
    a, b = trio.testing.memory_stream_pair()
    writer = FramedStream(TrioByteStream(a), 10, TIMEOUT)
    reader = FramedStream(TrioByteStream(b), 1000, TIMEOUT)
    with pytest.raises(LocalProtocolError):
        await writer.send(b"y" * 500)
    writer.max_frame = 1000
    await writer.send(b"y" * 500)
    assert await reader.receive() == b"y" * 500


async def test_broken_and_closed_streams_raise_stream_closed(
    autojump_clock: trio.testing.MockClock,
) -> None:
    _left, right, raw_right = pair()
    await raw_right.aclose()
    with pytest.raises(StreamClosedError):
        await right.receive()  # reading our own closed stream
    with pytest.raises(StreamClosedError):
        await right.send(b"x")

    a, b = trio.testing.lockstep_stream_pair()
    writer = FramedStream(TrioByteStream(a), MAX, TIMEOUT)
    await b.aclose()
    with pytest.raises(StreamClosedError):
        await writer.send(b"to nobody")


async def test_aclose_is_idempotent(autojump_clock: trio.testing.MockClock) -> None:
    left, right, _ = pair()
    await left.aclose()
    await left.aclose()
    assert await right.receive() is None
