"""Per-query caching strategy from measured cost and frequency.

For every fingerprint the daemon keeps how often it was asked and what running it
cost (an exponentially weighted mean of the measured milliseconds). The strategy:

* ``none``: running the query costs less than ``cheap_ms`` (default 1 ms): a cache
  entry would cost about as much as running it again, so it is not stored.
* ``aggressive``: it costs at least ``aggressive_ms`` (default 50 ms) and was asked at
  least ``hot_requests`` times (default 3): stored, and re-run in the background as soon
  as the database CID changes (prefetch), so the next ask is a hit.
* ``normal``: everything else: stored when it runs, never prefetched.

Pure data: no trio, no DuckDB.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

NONE, NORMAL, AGGRESSIVE = "none", "normal", "aggressive"
EWMA_WEIGHT = 0.3  # weight of the newest measurement


@dataclass(frozen=True)
class Thresholds:
    """Where the strategies split."""

    cheap_ms: float = 1.0
    aggressive_ms: float = 50.0
    hot_requests: int = 3


@dataclass
class QueryStats:
    """What we know about one fingerprint."""

    fingerprint: str
    sql: str  # the text last asked (what a prefetch runs)
    max_rows: int
    requests: int = 0
    hits: int = 0
    runs: int = 0
    cost_ms: float | None = None  # EWMA of measured run time; None before the first run
    last_cid: str = ""

    def observe_run(self, elapsed_ms: float) -> None:
        """Fold one measured execution into the cost."""
        self.runs += 1
        if self.cost_ms is None:
            self.cost_ms = elapsed_ms
        else:
            self.cost_ms = (1 - EWMA_WEIGHT) * self.cost_ms + EWMA_WEIGHT * elapsed_ms


def strategy(stats: QueryStats | None, thresholds: Thresholds) -> str:
    """``none`` / ``normal`` / ``aggressive`` for a fingerprint (normal if unmeasured)."""
    if stats is None or stats.cost_ms is None:
        return NORMAL
    if stats.cost_ms < thresholds.cheap_ms:
        return NONE
    if stats.cost_ms >= thresholds.aggressive_ms and stats.requests >= thresholds.hot_requests:
        return AGGRESSIVE
    return NORMAL


class StatsTable:
    """Bounded table of QueryStats by fingerprint (least recently asked dropped first)."""

    def __init__(self, max_entries: int = 4096) -> None:
        self.max_entries = max_entries
        self._stats: OrderedDict[str, QueryStats] = OrderedDict()

    def get(self, fingerprint: str) -> QueryStats | None:
        """Stats of a fingerprint, if known."""
        return self._stats.get(fingerprint)

    def asked(self, fingerprint: str, sql: str, max_rows: int) -> QueryStats:
        """Count one request (creating the stats if new) and return them."""
        stats = self._stats.get(fingerprint)
        if stats is None:
            stats = self._stats[fingerprint] = QueryStats(fingerprint, sql, max_rows)
            while len(self._stats) > self.max_entries:
                self._stats.popitem(last=False)
        else:
            self._stats.move_to_end(fingerprint)
            stats.sql, stats.max_rows = sql, max_rows
        stats.requests += 1
        return stats

    def hottest(self, thresholds: Thresholds, limit: int) -> list[QueryStats]:
        """Aggressive fingerprints, most valuable (requests x cost) first."""
        hot = [s for s in self._stats.values() if strategy(s, thresholds) == AGGRESSIVE]
        hot.sort(key=lambda s: s.requests * (s.cost_ms or 0.0), reverse=True)
        return hot[:limit]

    def clear(self) -> None:
        """Forget everything."""
        self._stats.clear()

    def __len__(self) -> int:
        return len(self._stats)
