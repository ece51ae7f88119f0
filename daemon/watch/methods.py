"""The control method ``watch``: a query's rows, then each change to them."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import trio

from daemon.node import Node
from daemon.watch.hub import Subscription, WatchError
from protocol.control import ControlError, ControlStream, param


async def watch(node: Node, params: dict[str, Any]) -> ControlStream:
    """Stream ``{"events": [...]}`` items: first a snapshot, then added / changed /
    removed rows with the origins of the writes, ``lagged`` plus a fresh snapshot when
    the caller reads too slowly, ``error`` if the query stops working."""
    sql = param(params, "sql", str)
    watches = node.watches
    if watches is None:
        raise ControlError("unavailable", "live subscriptions are not running")
    try:
        sub = await watches.subscribe(sql)
    except WatchError as exc:
        raise ControlError("bad_request", str(exc)) from exc
    return ControlStream(_events(sub), lambda: watches.unsubscribe(sub))


async def _events(sub: Subscription) -> AsyncIterator[dict[str, Any]]:
    while True:
        try:
            events = await sub.next()
        except trio.EndOfChannel:
            return
        yield {"events": events}


METHODS = {"watch": watch}
