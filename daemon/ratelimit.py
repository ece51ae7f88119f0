"""Per-peer token buckets: a flood from one peer is dropped while others are served."""

from __future__ import annotations

from collections.abc import Callable

import trio


class RateLimiter:
    """``rate`` events per second per key, with bursts up to ``burst``."""

    def __init__(
        self, rate: float, burst: float, clock: Callable[[], float] = trio.current_time
    ) -> None:
        self.rate, self.burst, self._clock = rate, burst, clock
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, last time)

    def allow(self, key: str) -> bool:
        """Take one token for ``key`` if there is one."""
        if self.rate <= 0:
            return True  # limiting switched off
        now = self._clock()
        tokens, last = self._buckets.get(key, (self.burst, now))
        tokens = min(self.burst, tokens + (now - last) * self.rate)
        allowed = tokens >= 1.0
        self._buckets[key] = (tokens - 1.0 if allowed else tokens, now)
        if len(self._buckets) > 10_000:  # forget idle peers; a full bucket is the default
            self._buckets = {k: v for k, v in self._buckets.items() if v[0] < self.burst}
        return allowed
