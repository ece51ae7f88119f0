"""Give DuckDB's buffer cache back once writes settle, so that an idle daemon stays small
on the host whose benchmarks it records (see daemon.store.buffercache)."""

from __future__ import annotations

from functools import partial

import structlog
import trio

from daemon.node import Node
from daemon.store import buffercache

log = structlog.get_logger("cachetrim")
IDLE_S = 5.0  # no commit or apply for this long
BUSY_RETRY_S = 2.0  # queries running: try again this much later
TRIM_ABOVE = 128 << 20  # cached bytes that are worth a trim
KEEP = 64 << 20  # what the cache keeps


async def serve(
    node: Node, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
) -> None:
    """After every burst of writes, trim the cache when it holds more than TRIM_ABOVE."""
    task_status.started()
    while True:
        await node.wait_changed()
        await _settled(node)
        await trim_once(node, TRIM_ABOVE, KEEP)


async def trim_once(node: Node, above: int, keep: int) -> int:
    """Trim now if the cache holds more than ``above``; the bytes it gave back."""
    before = await node.read(buffercache.cached_bytes)
    if before <= above:
        return 0
    await node.write_derived(partial(buffercache.release, keep=keep))
    freed = max(0, before - await node.read(buffercache.cached_bytes))
    if not freed:
        return 0
    node.metrics.inc("buffer_cache_trims")
    node.metrics.inc("buffer_cache_trimmed_bytes", freed)
    log.info("buffer cache trimmed", before_mb=round(before / 1e6), freed_mb=round(freed / 1e6))
    return freed


async def _settled(node: Node) -> None:
    """Return once nothing was written for IDLE_S and no query runs (a trim evicts the
    blocks a running query is about to read again)."""
    while True:
        with trio.move_on_after(IDLE_S) as quiet:
            await node.wait_changed()
        if not quiet.cancelled_caught:
            continue
        if node.queries.running == 0:
            return
        await trio.sleep(BUSY_RETRY_S)
