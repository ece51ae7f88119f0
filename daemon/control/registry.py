"""The method table served on the control socket: what ``peerctl`` and the Python
client can ask the daemon.

Every capability keeps its methods in its own ``methods`` module as
``METHODS: {name: fn}``, where ``fn(node, params)`` is a coroutine returning
msgpack-able data; this module lists those modules, by plain import.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from types import ModuleType
from typing import Any

from daemon.control.server import Handler
from daemon.distq import methods as distq_methods
from daemon.kg import methods as kg_methods
from daemon.monitor import methods as monitor_methods
from daemon.net import methods as net_methods
from daemon.node import Node
from daemon.query import arrow_methods, cache_methods
from daemon.query import methods as query_methods
from daemon.snapshot import methods as snapshot_methods
from daemon.watch import methods as watch_methods
from daemon.writes import conflict_methods
from daemon.writes import methods as write_methods

Method = Callable[[Node, dict[str, Any]], Awaitable[Any]]
METHOD_MODULES: tuple[ModuleType, ...] = (
    net_methods,
    write_methods,
    query_methods,
    arrow_methods,
    conflict_methods,
    kg_methods,
    cache_methods,
    snapshot_methods,
    monitor_methods,
    distq_methods,
    watch_methods,
)


def methods() -> dict[str, Method]:
    """Every control method by name (a name defined twice is a bug, refused here)."""
    table: dict[str, Method] = {}
    for module in METHOD_MODULES:
        for name, fn in module.METHODS.items():
            if name in table:
                raise RuntimeError(f"control method {name!r} defined twice")
            table[name] = fn
    return table


def make_handlers(node: Node) -> dict[str, Handler]:
    """The method table bound to ``node``, counting every request."""

    def bind(fn: Method) -> Handler:
        async def call(params: dict[str, Any]) -> Any:
            node.metrics.inc("control_requests")
            return await fn(node, params)

        return call

    return {name: bind(fn) for name, fn in methods().items()}
