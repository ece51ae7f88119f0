"""In-process counters and gauges the daemon keeps about itself."""

from __future__ import annotations

from collections import Counter


class Metrics:
    """Monotonic counters by name; cheap enough for every message."""

    def __init__(self) -> None:
        self.counters: Counter[str] = Counter()

    def inc(self, name: str, amount: int = 1) -> None:
        """Add ``amount`` to counter ``name``."""
        self.counters[name] += amount

    def get(self, name: str) -> int:
        """Current value of a counter (0 if never incremented)."""
        return self.counters[name]

    def snapshot(self) -> dict[str, int]:
        """All counters, sorted by name."""
        return dict(sorted(self.counters.items()))
