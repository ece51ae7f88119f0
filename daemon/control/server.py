"""The local control socket: length-prefixed control frames over a Unix socket."""

from __future__ import annotations

import contextlib
import os
import socket
import stat
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import structlog
import trio

from daemon.configcheck import socket_answers
from daemon.control.limits import Budget, ControlLimits, FrameReader, FrameTooSlow
from daemon.control.peercred import Access, Authorizer, peer_credentials
from daemon.node import PYTHON_WORK
from protocol import control
from protocol.control import ControlError, ControlRequest, ControlResponse, ControlStream
from protocol.errors import ProtocolError
from protocol.framing import HEADER

log = structlog.get_logger("control")

Handler = Callable[[dict[str, Any]], Awaitable[Any]]


class SocketInUse(Exception):
    """Another daemon answers on the control socket path."""


async def bind_control_socket(path: Path) -> trio.socket.SocketType:
    """Bind a Unix socket at ``path`` (mode 0660), replacing a stale socket file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists() or path.is_symlink():
        if not stat.S_ISSOCK(path.lstat().st_mode):
            raise SocketInUse(f"{path} exists and is not a socket")
        if await trio.to_thread.run_sync(socket_answers, path):
            raise SocketInUse(f"another daemon is listening on {path}")
        path.unlink()
    sock = trio.socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old_umask = os.umask(0o117)
    try:
        await sock.bind(str(path))
    finally:
        os.umask(old_umask)
    os.chmod(path, 0o660)
    sock.listen(128)
    return sock


LARGE_ITEMS = 2048  # a result with a longer list is encoded off the event loop
WRITE_METHODS = frozenset(
    {
        "record",
        "ingest",
        "update",
        "delete",
        "connect",
        "import_rows",
        "conflicts_resolve",
        "cache_clear",
        "snapshot_export",
        "snapshot_import",
        "snapshot_bootstrap",
        "snapshot_prune",
        "metrics_record",
    }
)


async def serve_control(
    path: Path,
    handlers: dict[str, Handler],
    on_malformed: Callable[[], None],
    *,
    authorize: Authorizer | None = None,
    on_refused: Callable[[], None] = lambda: None,
    max_frame: int = control.MAX_CONTROL_FRAME,
    limits: ControlLimits | None = None,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve control requests on ``path`` until cancelled; remove the socket file after.

    ``authorize`` judges each connection by its SO_PEERCRED credentials (None: anyone
    who can open the socket file may do anything). ``limits`` bound connections,
    buffered bytes and time per frame (``daemon.control.limits``).
    """
    sock = await bind_control_socket(path)
    limits = limits or ControlLimits(max_frame)
    policy = Policy(handlers, on_malformed, authorize, on_refused, limits)
    try:
        listener = trio.SocketListener(sock)
        task_status.started()
        await trio.serve_listeners(policy.serve, [listener])
    finally:
        sock.close()
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


class Policy:
    """Serves connections: credentials first, then requests the caller may make."""

    def __init__(
        self,
        handlers: dict[str, Handler],
        on_malformed: Callable[[], None],
        authorize: Authorizer | None,
        on_refused: Callable[[], None],
        limits: ControlLimits,
    ) -> None:
        self.handlers, self.on_malformed = handlers, on_malformed
        self.authorize, self.on_refused, self.limits = authorize, on_refused, limits
        self.budget = Budget(limits.max_buffered)
        self.connections = 0

    def access(self, stream: trio.SocketStream) -> tuple[Access, str]:
        if self.authorize is None:
            return Access.WRITE, "unchecked"
        try:
            caller = peer_credentials(stream.socket)  # type: ignore[arg-type]
        except OSError as exc:
            return Access.NONE, f"no credentials: {exc}"
        return self.authorize(caller), f"pid {caller.pid} uid {caller.uid} gid {caller.gid}"

    async def serve(self, stream: trio.SocketStream) -> None:
        if self.connections >= self.limits.max_connections:
            self.on_refused()
            log.warning("control connection refused: too many", limit=self.connections)
            await _refuse(stream, "busy", f"more than {self.limits.max_connections} control "
                          "connections (control_max_connections)")  # fmt: skip
            return
        self.connections += 1
        try:
            await self._serve(stream)
        finally:
            self.connections -= 1

    async def _serve(self, stream: trio.SocketStream) -> None:
        access, who = self.access(stream)
        reader = FrameReader(stream, self.limits, self.budget)
        try:
            if access is Access.NONE:
                self.on_refused()
                log.warning("control caller refused", caller=who)
                # Read the request first: closing with it unread resets the connection,
                # and the caller would see a broken pipe instead of the refusal.
                await reader.receive()
                await _send(stream, ControlResponse(0, None, "forbidden",
                                                    f"{who} may not use this daemon"))  # fmt: skip
                return
            await self._requests(stream, reader, access, who)
        except FrameTooSlow as exc:
            self.on_malformed()
            log.info("control connection dropped", caller=who, error=str(exc))
            with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                await _send(stream, ControlResponse(0, None, "busy", str(exc)))
        except (ProtocolError, trio.EndOfChannel, trio.TooSlowError, trio.BrokenResourceError,
                trio.ClosedResourceError) as exc:  # fmt: skip
            self.on_malformed()
            log.info("control connection dropped", caller=who,
                     error=f"{type(exc).__name__}: {exc}")  # fmt: skip
        finally:
            reader.release()
            with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                await stream.aclose()

    async def _requests(
        self, stream: trio.SocketStream, reader: FrameReader, access: Access, who: str
    ) -> None:
        while (frame := await reader.receive()) is not None:
            try:
                request = control.decode_request(frame, self.limits.max_frame)
            except ProtocolError as exc:
                self.on_malformed()
                log.warning("malformed control request", caller=who, error=str(exc))
                await _send(stream, ControlResponse(0, None, "bad_request", str(exc)))
                return
            del frame  # the decoded request is what is kept while it is handled
            if request.method in WRITE_METHODS and access is not Access.WRITE:
                self.on_refused()
                log.warning("control write refused", caller=who, method=request.method)
                response = ControlResponse(
                    request.id, None, "forbidden", f"{who} may read but not {request.method}"
                )
            else:
                response = await _dispatch(request, self.handlers)
            if isinstance(response.result, ControlStream):
                reader.release()
                await _stream(stream, request.id, response.result)
                return  # a stream ends its connection
            await _send(stream, response)


async def _send(stream: trio.SocketStream, response: ControlResponse) -> None:
    """A large result is encoded in a worker thread, a slice at a time: one ``packb``
    of it held the event loop (and the GIL) for tens of ms, and in the loop even the
    slices added up to a quarter of its time under five large queries."""
    if _is_large(response.result):
        pieces = await trio.to_thread.run_sync(_encode, response)
    else:
        pieces = [control.encode_response(response)]
    await stream.send_all(HEADER.pack(sum(map(len, pieces))))
    for piece in pieces:
        await stream.send_all(piece)


def _encode(response: ControlResponse) -> list[bytes | memoryview]:
    pieces: list[bytes | memoryview] = []
    parts = control.encode_response_pieces(response, LARGE_ITEMS)
    while True:
        with PYTHON_WORK:  # taken per piece: see daemon.node
            piece = next(parts, None)
        if piece is None:
            return pieces
        pieces.append(piece)


def _is_large(result: Any) -> bool:
    if isinstance(result, dict):
        return any(isinstance(v, list) and len(v) > LARGE_ITEMS for v in result.values())
    return isinstance(result, list) and len(result) > LARGE_ITEMS


async def _refuse(stream: trio.SocketStream, code: str, message: str) -> None:
    """Answer a connection we will not serve, without reading its request."""
    with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
        await _send(stream, ControlResponse(0, None, code, message))
        await stream.send_eof()
        with trio.move_on_after(1.0):  # let the caller read the answer before we close
            while await stream.receive_some(1 << 16):
                pass
    await stream.aclose()


async def _stream(sock: trio.SocketStream, request_id: int, stream: ControlStream) -> None:
    """Send a streamed result until it ends or the caller hangs up (the caller ends a
    stream by closing the connection; anything it sends meanwhile ends it too)."""

    async def caller_left(cancel: trio.CancelScope) -> None:
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
            await sock.receive_some(1)  # no idle deadline: a stream may be quiet for hours
        cancel.cancel()

    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(caller_left, nursery.cancel_scope)
            # Caught here, in the nursery's body: escaping it, the error would leave
            # wrapped in an exception group that no handler of the connection expects,
            # and a caller hanging up mid-send would stop the daemon.
            try:
                async for item in stream.items:
                    await _send(sock, ControlResponse(request_id, item, more=True))
                await _send(sock, ControlResponse(request_id, None))
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                log.info("control stream ended: the caller hung up")
            except Exception as exc:  # the stream's source failed: say so, end the stream
                log.exception("control stream failed")
                with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                    await _send(sock, ControlResponse(request_id, None, "internal",
                                                      f"{type(exc).__name__}: {exc}"))  # fmt: skip
            nursery.cancel_scope.cancel()
    finally:
        with trio.CancelScope(shield=True):
            aclose = getattr(stream.items, "aclose", None)
            if aclose is not None:
                await aclose()
        stream.close()


async def _dispatch(request: ControlRequest, handlers: dict[str, Handler]) -> ControlResponse:
    handler = handlers.get(request.method)
    if handler is None:
        return ControlResponse(
            request.id, None, "unknown_method", f"unknown method {request.method!r}"
        )
    try:
        result = await handler(request.params)
    except ControlError as exc:
        return ControlResponse(request.id, None, exc.code, str(exc))
    except Exception as exc:  # the one place that turns a handler bug into a reply, not a crash
        log.exception("control handler failed", method=request.method)
        return ControlResponse(request.id, None, "internal", f"{type(exc).__name__}: {exc}")
    return ControlResponse(request.id, result)
