"""The memory guard: stop the running queries when the daemon's RSS passes its bound.

DuckDB keeps what it accounts for under ``memory_limit``; ``daemon.query.sizes``
bounds the values a query can build outside it. What is left (many large values at
once, the Python side of a big result) grows between DuckDB's interrupt checks, so
while queries run this service reads the RSS every :data:`INTERVAL` and, above
``memory_limit + memory_margin``, interrupts every running query: each fails with
``resource_limit`` ("query stopped: daemon memory ... above ..."), the daemon serves on.
"""

from __future__ import annotations

import os
import threading
from functools import partial

import structlog
import trio

from daemon.node import Node
from daemon.store.running import RUNNING, RunningQueries

log = structlog.get_logger("query")

INTERVAL = 0.02  # while queries run
IDLE_INTERVAL = 60.0  # a wake-up now and then while idle (wait_busy is woken on a query)
PAGE = os.sysconf("SC_PAGE_SIZE")
_OWN_THREAD = trio.CapacityLimiter(1)  # not trio's shared pool of worker threads


def rss_bytes() -> int:
    """This process's resident set size."""
    with open("/proc/self/statm", "rb") as f:
        return int(f.read().split()[1]) * PAGE


def bound(node: Node) -> int:
    """The RSS above which queries are stopped."""
    return node.config.memory_limit_bytes + node.config.memory_margin


def check_once(node: Node, running: RunningQueries = RUNNING) -> int:
    """Stop every running query if the RSS is above the bound; returns how many."""
    rss, limit = rss_bytes(), bound(node)
    if rss <= limit or not len(running):
        return 0
    stopped = running.stop_all(
        f"daemon memory {rss >> 20} MiB above memory_limit + memory_margin ({limit >> 20} MiB)"
    )
    node.metrics.inc("queries_stopped_memory", stopped)
    log.warning("queries stopped: memory", rss_mib=rss >> 20, bound_mib=limit >> 20,
                queries=stopped)  # fmt: skip
    return stopped


async def serve(
    node: Node, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
) -> None:
    """Watch the RSS while queries run, in a thread of its own, until cancelled.

    Not a trio task: reading ``/proc/self/statm`` waits for the kernel's lock on the
    process's memory map, which the query threads hold while they allocate, so in the
    event loop the guard itself slowed every other task (measured under five queries).
    """
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            if RUNNING.wait_busy(stop, IDLE_INTERVAL):  # asleep, not polling, while no query runs
                check_once(node)
                stop.wait(INTERVAL)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(partial(trio.to_thread.run_sync, watch, limiter=_OWN_THREAD))
        task_status.started()
        try:
            await trio.sleep_forever()
        finally:
            stop.set()
            RUNNING.wake()  # the thread ends now; the nursery waits for it
