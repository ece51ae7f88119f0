"""Keep the changeset log to what some known peer may still ask for.

Every ``log_prune_interval`` seconds: remember the vectors our trusted peers announced,
drop the blocks every known peer holds, compact the segments (daemon/store/history.py
says what "known" means and what a peer asking for pruned history gets). It runs in the
writer thread and changes no replicated state: the database CID stays as it is.
"""

from __future__ import annotations

import time
import weakref

import duckdb
import structlog
import trio

from daemon.node import Node
from daemon.store import history
from daemon.store.blocklog import BlockLogError
from daemon.store.database import Store

log = structlog.get_logger("prune")


REFRESH_S = 3600.0  # a live peer's stored last-seen time is at most this old ...
REFRESH_SHARE = 0.1  # ... or this share of the retention, if that is shorter


class Pruner:
    """One node's pruning state: when it started, segments awaiting deletion, and what
    it last wrote to ``store.known_peers``."""

    def __init__(self, node: Node) -> None:
        self.node = node
        self.started = time.monotonic()
        self.retired: dict[int, float] = {}
        self.written: dict[str, tuple[dict[str, int], float]] = {}

    def unwritten(
        self, seen: dict[str, tuple[dict[str, int], float]], retention: float
    ) -> dict[str, tuple[dict[str, int], float]]:
        """The peers of ``seen`` whose vector changed since we wrote it, or whose stored
        time is more than the refresh period old. An idle cluster's pass then writes
        nothing: one transaction per peer each minute was most of an idle daemon's CPU
        at 20 peers. A stored time lags by at most the refresh period, so a silent peer
        may expire that much before its retention is over, never later."""
        refresh = min(REFRESH_S, REFRESH_SHARE * retention)
        out = {}
        for peer, (vector, at) in seen.items():
            before = self.written.get(peer)
            if before is None or before[0] != vector or at - before[1] >= refresh:
                out[peer] = (vector, at)
        return out

    async def run_once(self, grace: float | None = None) -> history.Pruned:
        """One pass now. Emptied segments are unlinked ``grace`` seconds later (default:
        one interval, so a sync reading them finishes; ``peerctl snapshot prune`` says 0)."""
        config = self.node.config
        seen = {
            peer: (dict(state.vector), state.last_seen)
            for peer, state in self.node.peers.items()
            if state.last_seen and config.trusts(peer)
        }
        uptime = time.monotonic() - self.started
        grace = config.log_prune_interval if grace is None else grace
        changed = self.unwritten(seen, config.log_peer_retention)

        def run(store: Store) -> history.Pruned:
            history.remember(store, changed)
            self.written.update(changed)
            peers = history.known(store, time.time(), config.log_peer_retention, uptime)
            done = history.prune(store, history.floors(store.heads_snapshot(), peers))
            return history.compact(store, done, self.retired, grace)

        done = await self.node.write_derived(run)
        metrics = self.node.metrics
        metrics.inc("log_pruned_changesets", done.changesets)
        metrics.inc("log_pruned_bytes", done.block_bytes)
        metrics.inc("log_compacted_bytes", done.moved_bytes)
        if done.changesets or done.segments_removed:
            log.info("changeset log pruned", **done.to_wire())
        return done


_PRUNERS: weakref.WeakKeyDictionary[Node, Pruner] = weakref.WeakKeyDictionary()


def pruner_of(node: Node) -> Pruner:
    """The node's :class:`Pruner` (created on first use)."""
    if node not in _PRUNERS:
        _PRUNERS[node] = Pruner(node)
    return _PRUNERS[node]


async def serve(
    node: Node, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
) -> None:
    """Prune on a timer (``log_prune``, on by default); a failed pass is logged and
    counted, and the next one tries again."""
    pruner = pruner_of(node)
    task_status.started()
    while True:
        await trio.sleep(node.config.log_prune_interval)
        if not node.config.log_prune:
            continue
        try:
            await pruner.run_once()
        except (duckdb.Error, BlockLogError, OSError) as exc:
            node.metrics.inc("log_prune_errors")
            log.error("changeset log pruning failed", error=f"{type(exc).__name__}: {exc}")
