"""The dashboard's HTTP server: Starlette routes served by Hypercorn on trio.

Off unless ``[web] listen`` is set; like the Prometheus endpoint it has no
authentication, so a non-loopback address needs ``allow_remote = true``, and requests
whose Host header names another site are refused (a web page elsewhere cannot read a
dashboard on localhost through DNS rebinding). Everything it serves is read-only and
comes from the daemon's own read methods (daemon/web/api.py); its assets are in the
package (daemon/web/static/), none is fetched from the internet.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import structlog
import trio
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from daemon.metrics.config import split_host_port
from daemon.node import Node
from daemon.web.api import RECENT_SQL, Api
from protocol.control import ControlError

log = structlog.get_logger("web")

STATIC = Path(__file__).resolve().parent / "static"
OVERVIEW_EVERY_S = 1.0  # at most this often on the live stream, and only after a change
STATUS = {"bad_request": 400, "not_found": 404, "unavailable": 503, "timeout": 504}


def make_app(node: Node, listen: str) -> Starlette:
    """The dashboard application for ``node``, answering as ``listen``."""
    api = Api(node)
    allowed_hosts = _allowed_hosts(listen)

    def endpoint(
        fn: Callable[[Request], Awaitable[Any]],
    ) -> Callable[[Request], Awaitable[Response]]:
        async def handle(request: Request) -> Response:
            if request.headers.get("host", "").lower() not in allowed_hosts:
                node.metrics.inc("web_refused")
                return JSONResponse({"error": "unknown Host"}, status_code=421)
            try:
                return await _respond(await fn(request))
            except ControlError as exc:
                return JSONResponse({"error": str(exc)}, status_code=STATUS.get(exc.code, 500))

        return handle

    async def index(request: Request) -> FileResponse:
        return FileResponse(STATIC / "index.html", media_type="text/html")

    async def series(request: Request) -> Any:
        model, hardware = request.query_params.get("model"), request.query_params.get("hardware")
        if not model or not hardware:
            raise ControlError("bad_request", "series needs model and hardware")
        return await api.series(model, hardware)

    async def similar(request: Request) -> Any:
        target = request.query_params.get("node")
        if not target:
            raise ControlError("bad_request", "similar needs node")
        return await api.similar(target)

    async def events(request: Request) -> StreamingResponse:
        return StreamingResponse(_live(node, api), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-store"})  # fmt: skip

    routes = [
        Route("/", endpoint(index)),
        Route("/favicon.ico", lambda r: Response(status_code=204)),
        Route("/api/overview", endpoint(lambda r: api.overview())),
        Route("/api/recent", endpoint(lambda r: api.recent())),
        Route("/api/configs", endpoint(lambda r: api.configs())),
        Route("/api/series", endpoint(series)),
        Route("/api/regressions", endpoint(lambda r: api.regressions())),
        Route("/api/similar", endpoint(similar)),
        Route("/api/compat", endpoint(lambda r: api.compat())),
        Route("/api/events", endpoint(events)),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]
    return Starlette(routes=routes)


async def _respond(value: Any) -> Response:
    return value if isinstance(value, Response) else JSONResponse(value)


def _allowed_hosts(listen: str) -> set[str]:
    host, port = split_host_port(listen)
    loopback = host in ("127.0.0.1", "::1", "localhost")
    names = {host, "localhost", "127.0.0.1", "[::1]"} if loopback else {host}
    return {f"{n}:{port}" for n in names} | {f"[{host}]:{port}"}


def _sse(kind: str, data: Any) -> bytes:
    return f"event: {kind}\ndata: {json.dumps(data, default=str)}\n\n".encode()


async def _live(node: Node, api: Api) -> AsyncIterator[bytes]:
    """Server-sent events: ``result`` for each new result (from a live subscription to
    the recent results) and ``overview`` whenever the database changed."""
    if node.watches is None:
        yield _sse("error", {"error": "live subscriptions are not running"})
        return
    sub = await node.watches.subscribe(RECENT_SQL)
    send, receive = trio.open_memory_channel[bytes](64)
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_results, sub, send.clone())
            nursery.start_soon(_overviews, node, api, send)
            async for chunk in receive:
                yield chunk
    finally:
        node.watches.unsubscribe(sub)


async def _results(sub: Any, send: trio.MemorySendChannel[bytes]) -> None:
    async with send:
        while True:
            for event in await sub.next():
                if event["event"] == "snapshot":
                    await send.send(_sse("snapshot", event))
                elif event["event"] == "added":
                    await send.send(_sse("result", event))


async def _overviews(node: Node, api: Api, send: trio.MemorySendChannel[bytes]) -> None:
    async with send:
        while True:
            await send.send(_sse("overview", await api.overview()))
            await node.wait_changed()
            await trio.sleep(OVERVIEW_EVERY_S)


async def serve_dashboard(
    node: Node, listen: str, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
) -> None:
    """Serve the dashboard on ``listen`` (``HOST:PORT``) until cancelled."""
    from hypercorn.config import Config as HypercornConfig
    from hypercorn.trio import serve

    config = HypercornConfig()
    config.bind = [listen]
    config.accesslog = None
    config.errorlog = "-"
    config.graceful_timeout = 1.0
    log.info("dashboard", url=f"http://{listen}/")
    await serve(make_app(node, listen), config, task_status=task_status)  # type: ignore[arg-type]
