"""Load the replication path's heavy modules once the daemon has a peer.

Applying a changeset builds Arrow arrays, and pyarrow (with numpy) is imported on first
use (:mod:`daemon.store.lazy`) so that a lone, empty daemon stays small. A daemon with a
peer will apply changesets soon, and its first one paid the import: 80-150 ms of CPU on
this machine, on every daemon at once for the cluster's first write (at 20 daemons on 2
cores that write took 2.1-2.6 s to reach everyone, the others 0.3-0.4 s). So once a
peer is connected the import runs in a worker thread, while nothing waits for it.
"""

from __future__ import annotations

import importlib

import structlog
import trio

from daemon.node import Node

log = structlog.get_logger("warmup")

MODULES = ("pyarrow",)
FIRST_LOOK_S = 1.0
MAX_LOOK_S = 30.0  # a lone daemon looks for a peer this seldom at most


def preload(names: tuple[str, ...] = MODULES) -> None:
    """Import ``names`` (in a worker thread: the import lock serializes it with any
    first use elsewhere)."""
    for name in names:
        importlib.import_module(name)


async def serve(
    node: Node, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
) -> None:
    """Wait for a first peer (or rows in the store), then preload :data:`MODULES`."""
    task_status.started()
    wait = FIRST_LOOK_S
    while not node.connected_peers() and not node.store.heads_snapshot():
        await trio.sleep(wait)
        wait = min(wait * 2, MAX_LOOK_S)
    started = trio.current_time()
    await trio.to_thread.run_sync(preload)
    log.debug("replication path loaded", seconds=round(trio.current_time() - started, 3))
