"""An in-process daemon core (Node + store, no network) for the cache tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

from daemon.config import Config
from daemon.control import registry
from daemon.demo import sample_results
from daemon.node import Node
from daemon.store.database import Store


def make_node(path: Path, rows: int = 500, **config: Any) -> Node:
    """A Node over a fresh store holding ``rows`` sample results."""
    store = Store(path / "db.duckdb")
    node = Node(replace(Config(data_dir=path), **config), store, "12D3KooWTestPeer")
    if rows:
        with_rows(node, rows)
    return node


def with_rows(node: Node, rows: int, seed: int = 7) -> None:
    """Commit ``rows`` more sample results synchronously (outside trio)."""
    from daemon.writes.changes import result_changes

    columns = sample_results(rows, seed)
    node.store.commit_local(node.peer_id, result_changes(node.store, columns)[0])


async def call(node: Node, method: str, **params: Any) -> Any:
    """One control method, as the socket would call it."""
    return await registry.make_handlers(node)[method](params)


@asynccontextmanager
async def open_node(path: Path, rows: int = 500, **config: Any) -> AsyncIterator[Node]:
    """:func:`make_node`, closed afterwards."""
    node = make_node(path, rows, **config)
    try:
        yield node
    finally:
        node.store.close()
