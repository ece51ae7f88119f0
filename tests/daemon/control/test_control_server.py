"""daemon.control.server.serve_control, in-process, driven by peerctl.client.Client and
raw sockets."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import stat
import tempfile
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import trio

from daemon.control.limits import ControlLimits
from daemon.control.server import SocketInUse, bind_control_socket, serve_control
from peerctl.client import Client, DaemonUnavailable, RequestFailed
from protocol import codec
from protocol.control import MAX_CONTROL_FRAME, ControlError, ControlResponse, decode_response
from protocol.framing import FrameDecoder, encode_frame


async def echo(params: dict[str, Any]) -> Any:
    return {"echo": params}


async def refuse(params: dict[str, Any]) -> Any:
    raise ControlError("not_found", "no row with key 'x'")


async def refuse_bad(params: dict[str, Any]) -> Any:
    raise ControlError("bad_request", "parameter 'sql' must be a str")


async def crash(params: dict[str, Any]) -> Any:
    raise RuntimeError("boom")


HANDLERS = {"echo": echo, "refuse": refuse, "refuse_bad": refuse_bad, "crash": crash}


@pytest.fixture
def sock_dir() -> Iterator[Path]:
    # Unix socket paths are limited to 108 bytes: pytest's tmp_path can be too long.
    path = Path(tempfile.mkdtemp(prefix="dpc-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


class Server:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.malformed = 0

    def on_malformed(self) -> None:
        self.malformed += 1


@asynccontextmanager
async def running(path: Path, handlers: dict[str, Any] | None = None) -> AsyncIterator[Server]:
    server = Server(path)
    async with trio.open_nursery() as nursery:
        await nursery.start(
            partial(
                serve_control, path, HANDLERS if handlers is None else handlers, server.on_malformed
            )
        )
        yield server
        nursery.cancel_scope.cancel()


def call(path: Path, method: str, **params: Any) -> Any:
    with Client(path, timeout=10) as client:
        return client.call(method, **params)


async def acall(path: Path, method: str, **params: Any) -> Any:
    return await trio.to_thread.run_sync(partial(call, path, method, **params))


async def receive_until_closed(stream: trio.SocketStream) -> bytes:
    """Everything the server sends before it closes (a reply may come in pieces; a
    close with our bytes unread may end in a reset after the reply)."""
    data = b""
    with contextlib.suppress(trio.BrokenResourceError):
        while chunk := await stream.receive_some(65536):
            data += chunk
    return data


async def raw_exchange(path: Path, data: bytes, *, eof: bool = False) -> list[ControlResponse]:
    """Send raw bytes (then EOF if asked); read responses until the server closes."""
    responses: list[ControlResponse] = []
    decoder = FrameDecoder(MAX_CONTROL_FRAME)
    stream = await trio.open_unix_socket(str(path))
    async with stream:
        await stream.send_all(data)
        if eof:
            await stream.send_eof()
        with trio.fail_after(10):  # the server must close the connection
            while chunk := await stream.receive_some(65536):
                decoder.feed(chunk)
                while (frame := decoder.next_frame()) is not None:
                    responses.append(decode_response(frame))
    assert decoder.pending == 0
    return responses


async def test_ok_result_and_several_calls_per_connection(sock_dir: Path) -> None:
    path = sock_dir / "c.sock"
    async with running(path) as server:
        assert await acall(path, "echo", a=1, b=[1, "x"], c=None) == {
            "echo": {"a": 1, "b": [1, "x"], "c": None}
        }

        def several() -> list[Any]:
            with Client(path, timeout=10) as client:
                return [client.call("echo", n=i) for i in range(5)]

        assert await trio.to_thread.run_sync(several) == [{"echo": {"n": i}} for i in range(5)]
        assert server.malformed == 0


async def test_control_error_becomes_request_failed(sock_dir: Path) -> None:
    path = sock_dir / "c.sock"
    async with running(path):
        with pytest.raises(RequestFailed) as info:
            await acall(path, "refuse")
        assert info.value.code == "not_found"
        assert str(info.value) == "no row with key 'x'"
        assert info.value.exit_code == 1

        with pytest.raises(RequestFailed) as info:
            await acall(path, "refuse_bad")
        assert info.value.code == "bad_request" and info.value.exit_code == 2


async def test_unknown_method(sock_dir: Path) -> None:
    path = sock_dir / "c.sock"
    async with running(path):
        with pytest.raises(RequestFailed) as info:
            await acall(path, "no_such_method")
        assert info.value.code == "unknown_method"
        assert "no_such_method" in str(info.value)
        assert info.value.exit_code == 2


async def test_handler_crash_is_internal_error_and_server_survives(sock_dir: Path) -> None:
    path = sock_dir / "c.sock"
    async with running(path):

        def crash_then_echo_on_same_connection() -> tuple[RequestFailed, Any]:
            with Client(path, timeout=10) as client:
                with pytest.raises(RequestFailed) as info:
                    client.call("crash")
                return info.value, client.call("echo", again=True)

        error, after = await trio.to_thread.run_sync(crash_then_echo_on_same_connection)
        assert error.code == "internal"
        assert "RuntimeError" in str(error) and "boom" in str(error)
        assert after == {"echo": {"again": True}}
        assert await acall(path, "echo", next=1) == {"echo": {"next": 1}}


@pytest.mark.parametrize(
    "payload",
    [
        pytest.param(b"\xc1\xc1\xc1\xc1\xc1", id="not-msgpack"),
        pytest.param(codec.pack([1, 2, 3]), id="not-a-map"),
        pytest.param(codec.pack({"v": 99, "id": 1, "m": "echo"}), id="wrong-version"),
        pytest.param(codec.pack({"v": 1, "id": 1}), id="no-method"),
        pytest.param(codec.pack({"v": 1, "id": -1, "m": "echo"}), id="negative-id"),
        pytest.param(codec.pack({"v": 1, "id": 1, "m": "echo", "p": [1]}), id="params-not-map"),
        pytest.param(b"", id="empty-frame"),
    ],
)
async def test_malformed_frame_gets_bad_request_and_server_serves_others(
    sock_dir: Path, payload: bytes
) -> None:
    path = sock_dir / "c.sock"
    async with running(path) as server:
        responses = await raw_exchange(path, encode_frame(payload, MAX_CONTROL_FRAME))
        assert len(responses) == 1
        assert responses[0].error_code == "bad_request" and responses[0].id == 0
        assert responses[0].error
        assert server.malformed == 1
        assert await acall(path, "echo", ok=True) == {"echo": {"ok": True}}


async def test_oversize_length_prefix_closes_only_that_connection(sock_dir: Path) -> None:
    path = sock_dir / "c.sock"
    async with running(path) as server:
        bystander = await trio.to_thread.run_sync(partial(Client, path, 10))
        try:
            assert await trio.to_thread.run_sync(partial(bystander.call, "echo", n=1))
            oversize = (MAX_CONTROL_FRAME + 1).to_bytes(4, "big")
            assert await raw_exchange(path, oversize) == []
            assert server.malformed == 1
            # The open connection of another client is unaffected.
            assert await trio.to_thread.run_sync(partial(bystander.call, "echo", n=2)) == {
                "echo": {"n": 2}
            }
        finally:
            bystander.close()
        assert await acall(path, "echo", n=3) == {"echo": {"n": 3}}


async def test_client_vanishing_mid_frame_is_counted(sock_dir: Path) -> None:
    path = sock_dir / "c.sock"
    async with running(path) as server:
        frame = encode_frame(codec.pack({"v": 1, "id": 1, "m": "echo", "p": {}}), 1 << 20)
        assert await raw_exchange(path, frame[:-3], eof=True) == []
        assert server.malformed == 1
        assert await acall(path, "echo") == {"echo": {}}
        # A clean EOF between frames is not malformed.
        assert await raw_exchange(path, b"", eof=True) == []
        assert server.malformed == 1


async def test_idle_connection_is_dropped(
    sock_dir: Path, autojump_clock: trio.testing.MockClock
) -> None:
    path = sock_dir / "c.sock"
    async with running(path) as server:
        stream = await trio.open_unix_socket(str(path))
        async with stream:
            start = trio.current_time()
            assert await stream.receive_some(10) == b""  # the server gave up on us
            assert trio.current_time() - start >= ControlLimits(1).idle_timeout
        assert server.malformed == 1


def current_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


async def test_socket_file_mode_and_removal(sock_dir: Path) -> None:
    path = sock_dir / "sub" / "c.sock"  # the parent directory is created
    umask = current_umask()
    async with running(path):
        mode = path.lstat().st_mode
        assert stat.S_ISSOCK(mode)
        assert stat.S_IMODE(mode) == 0o660
        assert current_umask() == umask  # the bind's umask is not left behind
    assert not path.exists()


async def test_stale_socket_file_is_replaced(sock_dir: Path) -> None:
    path = sock_dir / "c.sock"
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(path))
    stale.close()  # the file stays, nobody listens
    assert path.exists()
    with pytest.raises(DaemonUnavailable):
        call(path, "echo")
    async with running(path):
        assert await acall(path, "echo", x=1) == {"echo": {"x": 1}}
    assert not path.exists()


async def test_live_socket_raises_socket_in_use(sock_dir: Path) -> None:
    path = sock_dir / "c.sock"
    live = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        live.bind(str(path))
        live.listen(1)
        async with trio.open_nursery() as nursery:
            with pytest.raises(SocketInUse, match="another daemon"):
                await nursery.start(partial(serve_control, path, HANDLERS, lambda: None))
        assert path.exists()  # the other daemon's socket is left alone
    finally:
        live.close()


async def test_second_server_on_same_path_raises(sock_dir: Path) -> None:
    path = sock_dir / "c.sock"
    async with running(path):
        with pytest.raises(SocketInUse):
            await bind_control_socket(path)
        assert await acall(path, "echo") == {"echo": {}}


async def test_non_socket_file_is_not_replaced(sock_dir: Path) -> None:
    path = sock_dir / "c.sock"
    path.write_text("precious")
    with pytest.raises(SocketInUse, match="not a socket"):
        await bind_control_socket(path)
    assert path.read_text() == "precious"


def test_client_without_daemon_is_unavailable(sock_dir: Path) -> None:
    with pytest.raises(DaemonUnavailable) as info:
        call(sock_dir / "nobody.sock", "status")
    assert info.value.exit_code == 3
    assert "\n" not in str(info.value)


async def test_configured_frame_limit_refuses_bigger_requests(sock_dir: Path) -> None:
    path = sock_dir / "c.sock"
    server = Server(path)
    async with trio.open_nursery() as nursery:
        await nursery.start(
            partial(serve_control, path, HANDLERS, server.on_malformed, max_frame=1024)
        )
        assert await acall(path, "echo", small="x") == {"echo": {"small": "x"}}
        with pytest.raises(DaemonUnavailable):
            await acall(path, "echo", big="x" * 4096)
        assert server.malformed == 1
        assert await acall(path, "echo", n=1) == {"echo": {"n": 1}}
        nursery.cancel_scope.cancel()


@asynccontextmanager
async def limited(path: Path, limits: ControlLimits) -> AsyncIterator[Server]:
    server = Server(path)
    async with trio.open_nursery() as nursery:
        await nursery.start(
            partial(serve_control, path, HANDLERS, server.on_malformed, limits=limits)
        )
        yield server
        nursery.cancel_scope.cancel()


def partial_frame(size: int) -> bytes:
    """The header and first byte of a request frame declaring ``size`` bytes."""
    return encode_frame(b"\x00" * size, size)[:5]


async def echo_on(stream: trio.SocketStream) -> ControlResponse:
    """One echo request on an open connection, and its response."""
    request = codec.pack({"v": 1, "id": 7, "m": "echo", "p": {}})
    await stream.send_all(encode_frame(request, 1 << 20))
    decoder = FrameDecoder(MAX_CONTROL_FRAME)
    with trio.fail_after(10):
        while (frame := decoder.next_frame()) is None:
            decoder.feed(await stream.receive_some(65536))
    return decode_response(frame)


async def test_connections_beyond_the_limit_are_answered_busy(sock_dir: Path) -> None:
    path = sock_dir / "c.sock"
    async with limited(path, ControlLimits(MAX_CONTROL_FRAME, max_connections=2)) as server:
        held = [await trio.open_unix_socket(str(path)) for _ in range(2)]
        try:
            for stream in held:  # both are being served (and counted) now
                assert (await echo_on(stream)).ok
            responses = await raw_exchange(path, b"")
            assert [r.error_code for r in responses] == ["busy"]
            assert "control_max_connections" in (responses[0].error or "")
        finally:
            for stream in held:
                await stream.aclose()
        with trio.fail_after(10):
            while True:  # the held connections are released as the server sees them close
                try:
                    assert await acall(path, "echo", n=1) == {"echo": {"n": 1}}
                    break
                except RequestFailed:
                    await trio.sleep(0.01)
        assert server.malformed == 0


async def test_partial_frames_share_one_byte_budget(sock_dir: Path) -> None:
    path = sock_dir / "c.sock"
    budget = 4 << 20
    limits = ControlLimits(MAX_CONTROL_FRAME, max_buffered=budget, frame_timeout=5.0)
    async with limited(path, limits) as server:
        # Two connections each declare 3 MiB: the first gets its room, the second waits
        # for room, and is answered busy when its frame time is up.
        first = await trio.open_unix_socket(str(path))
        second = await trio.open_unix_socket(str(path))
        async with first, second:
            await first.send_all(partial_frame(3 << 20))
            await second.send_all(partial_frame(3 << 20))
            with trio.fail_after(30):
                reply = await receive_until_closed(second)
            decoder = FrameDecoder(MAX_CONTROL_FRAME)
            decoder.feed(reply)
            frame = decoder.next_frame()
            assert frame is not None
            response = decode_response(frame)
            assert response.error_code == "busy" and "control_frame_timeout" in (
                response.error or ""
            )
        assert server.malformed >= 1
        assert await acall(path, "echo", n=2) == {"echo": {"n": 2}}


async def test_a_frame_larger_than_the_whole_budget_is_refused(sock_dir: Path) -> None:
    path = sock_dir / "c.sock"
    async with limited(path, ControlLimits(MAX_CONTROL_FRAME, max_buffered=1 << 20)) as server:
        assert await raw_exchange(path, partial_frame(2 << 20)) == []
        assert server.malformed == 1
        assert await acall(path, "echo", n=3) == {"echo": {"n": 3}}


async def test_half_sent_frame_times_out_quickly(
    sock_dir: Path, autojump_clock: trio.testing.MockClock
) -> None:
    path = sock_dir / "c.sock"
    limits = ControlLimits(MAX_CONTROL_FRAME, idle_timeout=3600.0, frame_timeout=10.0)
    async with limited(path, limits) as server:
        stream = await trio.open_unix_socket(str(path))
        async with stream:
            await stream.send_all(partial_frame(1000))
            start = trio.current_time()
            data = await receive_until_closed(stream)  # the busy answer, then EOF
            elapsed = trio.current_time() - start
            assert limits.frame_timeout <= elapsed < limits.idle_timeout
            decoder = FrameDecoder(MAX_CONTROL_FRAME)
            decoder.feed(data)
            frame = decoder.next_frame()
            assert frame is not None and decode_response(frame).error_code == "busy"
        assert server.malformed == 1


async def test_budget_is_released_after_each_request(sock_dir: Path) -> None:
    path = sock_dir / "c.sock"
    limits = ControlLimits(MAX_CONTROL_FRAME, max_buffered=1 << 20)

    def many() -> list[Any]:
        with Client(path, timeout=10) as client:
            return [client.call("echo", blob="x" * 600_000)["echo"]["blob"][:1] for _ in range(5)]

    async with limited(path, limits):
        assert await trio.to_thread.run_sync(many) == ["x"] * 5  # 3 MB through 1 MiB of room


def _streaming(fail_after: int | None = None) -> Any:
    """A ``watch``-like method: an endless stream of items (or one that fails)."""
    from protocol.control import ControlStream

    closed: list[bool] = []

    async def items() -> AsyncIterator[dict[str, int]]:
        n = 0
        while True:
            if fail_after is not None and n == fail_after:
                raise RuntimeError("source broke")
            yield {"n": n, "pad": "x" * 4096}
            n += 1
            await trio.sleep(0)

    async def method(params: dict[str, Any]) -> Any:
        return ControlStream(items(), lambda: closed.append(True))

    return method, closed


async def test_caller_hanging_up_mid_stream_does_not_stop_the_server(sock_dir: Path) -> None:
    # Found at 50 daemons: a watcher that went away while items were being sent raised
    # BrokenResourceError inside the stream's nursery, and the daemon exited.
    path = sock_dir / "s.sock"
    method, closed = _streaming()
    async with running(path, {**HANDLERS, "stream": method}):
        for _ in range(5):
            stream = await trio.open_unix_socket(str(path))
            frame = codec.pack({"v": 1, "id": 1, "m": "stream", "p": {}})
            await stream.send_all(encode_frame(frame, MAX_CONTROL_FRAME))
            await stream.receive_some(1024)  # items are flowing
            stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\0\0\0\0\0\0\0")
            await stream.aclose()  # a reset, while the server is sending
        with trio.fail_after(10):
            while len(closed) < 5:
                await trio.sleep(0.01)
        assert await acall(path, "echo", after=1) == {"echo": {"after": 1}}


async def test_stream_whose_source_fails_ends_with_internal_and_server_survives(
    sock_dir: Path,
) -> None:
    path = sock_dir / "f.sock"
    method, closed = _streaming(fail_after=2)
    async with running(path, {**HANDLERS, "stream": method}):
        frame = codec.pack({"v": 1, "id": 1, "m": "stream", "p": {}})
        responses = await raw_exchange(path, encode_frame(frame, MAX_CONTROL_FRAME))
        assert [r.more for r in responses] == [True, True, False]
        assert responses[-1].error_code == "internal"
        assert "source broke" in (responses[-1].error or "")
        assert closed == [True]
        assert await acall(path, "echo", after=2) == {"echo": {"after": 2}}


async def test_a_large_binary_parameter_arrives_whole(sock_dir: Path) -> None:
    # A 5 MB payload crosses the socket in many reads, into the frame's own buffer.
    path = sock_dir / "c.sock"
    blob = os.urandom(5 << 20)

    async def size(params: dict[str, Any]) -> Any:
        return {"n": len(params["arrow"]), "tail": params["arrow"][-8:]}

    handlers = {"size": size}
    async with running(path, handlers) as server:
        answer = await acall(path, "size", arrow=memoryview(blob))
        assert answer == {"n": len(blob), "tail": blob[-8:]}
        assert server.malformed == 0
