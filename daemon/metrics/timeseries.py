"""Time series of metric samples in fixed-size ring buffers, and what is read from them.

Writing a sample is O(1) and allocates nothing beyond the float it stores (two slots of
preallocated ``array('d')``). Everything costly (sorting for percentiles, trends) is
done when somebody reads a window.

Trend method (documented in the README): the window is split at its midpoint in time;
``change_pct`` is the mean of the later half minus the mean of the earlier half,
relative to the earlier mean's magnitude. Within ±5 % the trend is ``stable``; beyond,
a rise is ``improving`` for higher-is-better metrics and ``degrading`` for
lower-is-better ones (and the reverse for a fall). Metrics without a declared direction
report ``rising`` or ``falling``.
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

STABLE_BAND_PCT = 5.0
Tags = tuple[tuple[str, str], ...]
SeriesKey = tuple[str, Tags]


def make_key(name: str, tags: Mapping[str, str] | None = None) -> SeriesKey:
    """The store key of a series: its name and its tags, sorted."""
    return name, tuple(sorted(tags.items())) if tags else ()


class Ring:
    """The newest ``capacity`` (time, value) points of one series."""

    __slots__ = ("_next", "capacity", "count", "times", "values")

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.times = array("d", bytes(8 * capacity))
        self.values = array("d", bytes(8 * capacity))
        self._next = 0
        self.count = 0

    def append(self, t: float, value: float) -> None:
        """Add a point, overwriting the oldest when full."""
        i = self._next
        self.times[i] = t
        self.values[i] = value
        self._next = i + 1 if i + 1 < self.capacity else 0
        if self.count < self.capacity:
            self.count += 1

    def latest(self) -> tuple[float, float] | None:
        """The newest point, or None when empty."""
        if not self.count:
            return None
        i = self._next - 1 if self._next else self.capacity - 1
        return self.times[i], self.values[i]

    def points(self, since: float = -math.inf) -> list[tuple[float, float]]:
        """Points with time >= ``since``, oldest first."""
        start = (self._next - self.count) % self.capacity
        out = []
        for k in range(self.count):
            i = (start + k) % self.capacity
            if self.times[i] >= since:
                out.append((self.times[i], self.values[i]))
        return out


class SeriesStore:
    """Ring buffers by (name, tags); a series is created on its first sample."""

    def __init__(self, capacity: int = 4096, max_series: int = 2048) -> None:
        self.capacity = capacity
        self.max_series = max_series
        self.series: dict[SeriesKey, Ring] = {}

    def add(self, key: SeriesKey, t: float, value: float) -> bool:
        """Append a point; False (and nothing stored) when the series limit is reached."""
        ring = self.series.get(key)
        if ring is None:
            if len(self.series) >= self.max_series:
                return False
            ring = self.series[key] = Ring(self.capacity)
        ring.append(t, value)
        return True

    def names(self) -> list[str]:
        """Distinct series names, sorted."""
        return sorted({name for name, _ in self.series})

    def matching(self, name: str) -> Iterator[tuple[Tags, Ring]]:
        """Every series called ``name`` (any tags)."""
        for (n, tags), ring in self.series.items():
            if n == name:
                yield tags, ring


def percentile(sorted_values: list[float], q: float) -> float:
    """Linear-interpolated percentile (q in 0..100) of a sorted, non-empty list."""
    pos = (len(sorted_values) - 1) * q / 100.0
    lo = int(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


@dataclass(frozen=True)
class Summary:
    """Statistics of one series over a window."""

    count: int
    avg: float
    min: float
    max: float
    p50: float
    p95: float
    p99: float
    latest: float
    latest_at: float

    def as_dict(self) -> dict[str, float | int]:
        """Plain dict for the wire."""
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def summarize(points: list[tuple[float, float]]) -> Summary | None:
    """Count, mean, extremes, percentiles and the newest value; None when empty."""
    if not points:
        return None
    values = sorted(v for _, v in points)
    last_t, last_v = points[-1]
    return Summary(
        count=len(values),
        avg=sum(values) / len(values),
        min=values[0],
        max=values[-1],
        p50=percentile(values, 50),
        p95=percentile(values, 95),
        p99=percentile(values, 99),
        latest=last_v,
        latest_at=last_t,
    )


@dataclass(frozen=True)
class Trend:
    """Direction of a series over a window (see the module docstring for the method)."""

    trend: str  # improving | degrading | stable | rising | falling | unknown
    change_pct: float | None
    earlier_mean: float | None
    later_mean: float | None

    def as_dict(self) -> dict[str, object]:
        """Plain dict for the wire."""
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def trend(
    points: list[tuple[float, float]], better: str | None, band_pct: float = STABLE_BAND_PCT
) -> Trend:
    """Compare the mean of the later half of the window (by time) to the earlier half.

    ``better`` is ``"higher"``, ``"lower"`` or None (no declared direction).
    """
    if len(points) < 4:
        return Trend("unknown", None, None, None)
    mid = (points[0][0] + points[-1][0]) / 2
    early = [v for t, v in points if t <= mid]
    late = [v for t, v in points if t > mid]
    if not early or not late:
        return Trend("unknown", None, None, None)
    a, b = sum(early) / len(early), sum(late) / len(late)
    change = _change_pct(a, b)
    return Trend(_direction(change, better, band_pct), round(change, 3), a, b)


def _change_pct(earlier: float, later: float) -> float:
    if earlier == 0:
        return 0.0 if later == 0 else math.copysign(100.0, later)
    return (later - earlier) / abs(earlier) * 100.0


def _direction(change: float, better: str | None, band_pct: float) -> str:
    if abs(change) <= band_pct:
        return "stable"
    up = change > 0
    if better == "higher":
        return "improving" if up else "degrading"
    if better == "lower":
        return "degrading" if up else "improving"
    return "rising" if up else "falling"
