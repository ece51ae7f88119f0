"""The local control socket: length-prefixed control frames over a Unix socket."""

from __future__ import annotations

import contextlib
import errno
import os
import socket
import stat
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog
import trio

from daemon.control.peercred import Access, Authorizer, peer_credentials
from daemon.net.framed import FramedStream, StreamClosedError, TrioByteStream
from protocol import control
from protocol.control import ControlError, ControlRequest, ControlResponse
from protocol.errors import ProtocolError

log = structlog.get_logger("control")

IDLE_TIMEOUT = 3600.0
Handler = Callable[[dict[str, Any]], Awaitable[Any]]


class SocketInUse(Exception):
    """Another daemon answers on the control socket path."""


async def bind_control_socket(path: Path) -> trio.socket.SocketType:
    """Bind a Unix socket at ``path`` (mode 0660), replacing a stale socket file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists() or path.is_symlink():
        if not stat.S_ISSOCK(path.lstat().st_mode):
            raise SocketInUse(f"{path} exists and is not a socket")
        if await _answers(path):
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


async def _answers(path: Path) -> bool:
    probe = trio.socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        await probe.connect(str(path))
    except OSError as exc:
        if exc.errno in (errno.ECONNREFUSED, errno.ENOENT):
            return False
        raise
    finally:
        probe.close()
    return True


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
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve control requests on ``path`` until cancelled; remove the socket file after.

    ``authorize`` judges each connection by its SO_PEERCRED credentials (None: anyone
    who can open the socket file may do anything).
    """
    sock = await bind_control_socket(path)
    policy = Policy(handlers, on_malformed, authorize, on_refused, max_frame)
    try:
        listener = trio.SocketListener(sock)
        task_status.started()
        await trio.serve_listeners(policy.serve, [listener])
    finally:
        sock.close()
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


@dataclass
class Policy:
    """Serves connections: credentials first, then requests the caller may make."""

    handlers: dict[str, Handler]
    on_malformed: Callable[[], None]
    authorize: Authorizer | None
    on_refused: Callable[[], None]
    max_frame: int = control.MAX_CONTROL_FRAME

    def access(self, stream: trio.SocketStream) -> tuple[Access, str]:
        if self.authorize is None:
            return Access.WRITE, "unchecked"
        try:
            caller = peer_credentials(stream.socket)  # type: ignore[arg-type]
        except OSError as exc:
            return Access.NONE, f"no credentials: {exc}"
        return self.authorize(caller), f"pid {caller.pid} uid {caller.uid} gid {caller.gid}"

    async def serve(self, stream: trio.SocketStream) -> None:
        access, who = self.access(stream)
        framed = FramedStream(TrioByteStream(stream), self.max_frame, IDLE_TIMEOUT)
        try:
            if access is Access.NONE:
                self.on_refused()
                log.warning("control caller refused", caller=who)
                # Read the request first: closing with it unread resets the connection,
                # and the caller would see a broken pipe instead of the refusal.
                await framed.receive()
                await framed.send(control.encode_response(
                    ControlResponse(0, None, "forbidden", f"{who} may not use this daemon")
                ))  # fmt: skip
                return
            await self._requests(framed, access, who)
        except (ProtocolError, StreamClosedError, trio.TooSlowError) as exc:
            self.on_malformed()
            log.info("control connection dropped", error=f"{type(exc).__name__}: {exc}")
        finally:
            await framed.aclose()

    async def _requests(self, framed: FramedStream, access: Access, who: str) -> None:
        while (frame := await framed.receive()) is not None:
            try:
                request = control.decode_request(frame, self.max_frame)
            except ProtocolError as exc:
                self.on_malformed()
                log.warning("malformed control request", caller=who, error=str(exc))
                await framed.send(
                    control.encode_response(ControlResponse(0, None, "bad_request", str(exc)))
                )
                return
            if request.method in WRITE_METHODS and access is not Access.WRITE:
                self.on_refused()
                log.warning("control write refused", caller=who, method=request.method)
                response = ControlResponse(
                    request.id, None, "forbidden", f"{who} may read but not {request.method}"
                )
            else:
                response = await _dispatch(request, self.handlers)
            await framed.send(control.encode_response(response))


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
