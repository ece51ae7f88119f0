"""A stand-in for the Node the snapshot services use (Snapshots, Pruner), over a real
store."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import trio

from daemon.config import Config
from daemon.metrics.counters import Metrics
from daemon.store.database import Store

T = TypeVar("T")


class FakeNode:
    """What Snapshots and Pruner use of a Node: config, store, metrics, peers, and the
    store's reader and writer (worker threads here)."""

    def __init__(self, store: Store, data_dir: Path) -> None:
        self.store = store
        self.config = Config(data_dir=data_dir)
        self.metrics = Metrics()
        self.peers: dict[str, Any] = {}

    async def read(self, fn: Callable[[Store], T]) -> T:
        return await trio.to_thread.run_sync(fn, self.store)

    async def write_derived(self, fn: Callable[[Store], T]) -> T:
        return await trio.to_thread.run_sync(fn, self.store)
