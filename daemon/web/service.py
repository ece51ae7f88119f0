"""The dashboard service: serves ``[web] listen`` when it is set, else nothing (the
address was checked with the rest of the config: daemon.config.check_web_listen)."""

from __future__ import annotations

import trio

from daemon.node import Node


async def serve(
    node: Node, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
) -> None:
    """Run the dashboard until cancelled, if configured."""
    listen = node.config.web_listen
    if listen is None:
        task_status.started()
        return
    from daemon.web.server import serve_dashboard  # Starlette and Hypercorn only when used

    await serve_dashboard(node, listen, task_status=task_status)
