"""In-process counters and gauges the daemon keeps about itself."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Mapping

from daemon.metrics.timeseries import SeriesStore, make_key


class Metrics:
    """Monotonic counters by name, plus timed observations; cheap enough for every message.

    ``series`` holds the time series the monitor samples (daemon/monitor/service.py) and the
    observations recorded here (query times, custom metrics). ``observing`` is False
    when ``[metrics] enabled = false``: observations are then dropped at once.
    """

    def __init__(self) -> None:
        self.counters: Counter[str] = Counter()
        self.series = SeriesStore()
        self.observing = True

    def inc(self, name: str, amount: int = 1) -> None:
        """Add ``amount`` to counter ``name``."""
        self.counters[name] += amount

    def get(self, name: str) -> int:
        """Current value of a counter (0 if never incremented)."""
        return self.counters[name]

    def snapshot(self) -> dict[str, int]:
        """All counters, sorted by name."""
        return dict(sorted(self.counters.items()))

    def observe(self, name: str, value: float, tags: Mapping[str, str] | None = None) -> bool:
        """Record one timed value of series ``name`` (O(1)); False if not stored."""
        if not self.observing:
            return False
        return self.series.add(make_key(name, tags), time.time(), float(value))
