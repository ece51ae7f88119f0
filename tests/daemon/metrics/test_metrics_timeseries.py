"""daemon.metrics.timeseries: ring buffers, window summaries and trends on constructed series."""

from __future__ import annotations

import math

import pytest

from daemon.metrics.timeseries import Ring, SeriesStore, make_key, percentile, summarize, trend


def test_ring_keeps_the_newest_points_in_order() -> None:
    ring = Ring(4)
    assert ring.latest() is None and ring.points() == []
    for t in range(1, 7):
        ring.append(float(t), t * 10.0)
    assert ring.count == 4
    assert ring.points() == [(3.0, 30.0), (4.0, 40.0), (5.0, 50.0), (6.0, 60.0)]
    assert ring.points(since=5.0) == [(5.0, 50.0), (6.0, 60.0)]
    assert ring.latest() == (6.0, 60.0)


def test_store_keys_by_name_and_sorted_tags_and_limits_series() -> None:
    store = SeriesStore(capacity=8, max_series=2)
    assert make_key("lag", {"b": "2", "a": "1"}) == ("lag", (("a", "1"), ("b", "2")))
    assert store.add(make_key("lag", {"peer": "x"}), 1.0, 5.0)
    assert store.add(make_key("lag"), 1.0, 5.0)
    assert not store.add(make_key("other"), 1.0, 1.0)  # third series refused
    assert store.add(make_key("lag"), 2.0, 6.0)  # existing series still take points
    assert store.names() == ["lag"]
    assert sorted(tags for tags, _ in store.matching("lag")) == [(), (("peer", "x"),)]


def test_summary_over_a_window() -> None:
    points = [(float(t), float(v)) for t, v in enumerate(range(1, 101))]
    s = summarize(points)
    assert s is not None
    assert (s.count, s.min, s.max, s.avg) == (100, 1.0, 100.0, 50.5)
    assert s.p50 == pytest.approx(50.5)
    assert s.p95 == pytest.approx(95.05)
    assert s.p99 == pytest.approx(99.01)
    assert (s.latest, s.latest_at) == (100.0, 99.0)
    assert summarize([]) is None


def test_window_selects_points_by_time() -> None:
    ring = Ring(100)
    for t in range(100):
        ring.append(float(t), 1000.0 if t < 90 else 1.0)
    recent = summarize(ring.points(since=90.0))
    assert recent is not None and recent.max == 1.0 and recent.count == 10


def test_percentile_single_value() -> None:
    assert percentile([7.0], 99) == 7.0


def series(values: list[float]) -> list[tuple[float, float]]:
    return [(float(t), v) for t, v in enumerate(values)]


def test_trend_latency_falling_is_improving() -> None:
    t = trend(series([10.0] * 10 + [8.0] * 10), "lower")
    assert t.trend == "improving"
    assert t.change_pct == pytest.approx(-20.0)
    assert (t.earlier_mean, t.later_mean) == (10.0, 8.0)


def test_trend_throughput_falling_is_degrading() -> None:
    assert trend(series([100.0] * 10 + [80.0] * 10), "higher").trend == "degrading"
    assert trend(series([100.0] * 10 + [120.0] * 10), "higher").trend == "improving"
    assert trend(series([10.0] * 10 + [12.0] * 10), "lower").trend == "degrading"


def test_trend_within_five_percent_is_stable() -> None:
    assert trend(series([100.0, 104.0] * 10), "higher").trend == "stable"
    assert trend(series([100.0] * 10 + [104.9] * 10), "lower").trend == "stable"


def test_trend_without_direction_rises_or_falls() -> None:
    assert trend(series([1.0] * 5 + [2.0] * 5), None).trend == "rising"
    assert trend(series([2.0] * 5 + [1.0] * 5), None).trend == "falling"


def test_trend_needs_points_and_handles_zero() -> None:
    assert trend(series([1.0, 2.0, 3.0]), "higher").trend == "unknown"
    zero = trend(series([0.0] * 5 + [3.0] * 5), "lower")
    assert zero.trend == "degrading" and zero.change_pct == 100.0
    flat = trend(series([0.0] * 10), "lower")
    assert flat.trend == "stable" and flat.change_pct == 0.0
    assert not math.isnan(zero.change_pct or 0.0)
