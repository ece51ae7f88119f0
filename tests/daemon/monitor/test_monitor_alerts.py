"""daemon.monitor.alerts: rules fire after their ``for`` duration and clear when the
condition ends."""

from __future__ import annotations

from daemon.metrics.config import AlertRule
from daemon.metrics.timeseries import SeriesStore, make_key
from daemon.monitor.alerts import AlertBook

LAG = AlertRule("lag", 100.0, above=True, severity="warning", for_seconds=30.0, window=60.0)


def test_alert_fires_after_for_and_clears() -> None:
    store, book = SeriesStore(), AlertBook()
    key = make_key("lag")
    store.add(key, 0.0, 150.0)
    assert book.evaluate([LAG], store, 0.0) == []  # pending, not yet firing
    assert [a.as_dict()["state"] for a in book.active()] == ["pending"]
    store.add(key, 20.0, 160.0)
    assert book.evaluate([LAG], store, 20.0) == []
    store.add(key, 30.0, 170.0)
    events = book.evaluate([LAG], store, 30.0)
    assert [e["event"] for e in events] == ["fired"]
    assert events[0]["value"] == 170.0 and events[0]["severity"] == "warning"
    assert [s.rule for s in book.firing()] == [LAG]
    store.add(key, 40.0, 20.0)
    events = book.evaluate([LAG], store, 40.0)
    assert [e["event"] for e in events] == ["cleared"]
    assert book.firing() == [] and book.active() == []
    assert [e["event"] for e in book.events] == ["fired", "cleared"]


def test_dip_below_threshold_restarts_the_for_timer() -> None:
    store, book = SeriesStore(), AlertBook()
    key = make_key("lag")
    for t, v in [(0.0, 150.0), (20.0, 50.0), (25.0, 150.0), (50.0, 150.0)]:
        store.add(key, t, v)
        assert book.evaluate([LAG], store, t) == []
    store.add(key, 55.0, 150.0)
    assert [e["event"] for e in book.evaluate([LAG], store, 55.0)] == ["fired"]


def test_each_tag_set_is_its_own_alert_and_no_data_clears() -> None:
    rule = AlertRule("lag", 10.0, above=True, severity="critical")
    store, book = SeriesStore(), AlertBook()
    store.add(make_key("lag", {"peer": "a"}), 0.0, 50.0)
    store.add(make_key("lag", {"peer": "b"}), 0.0, 1.0)
    events = book.evaluate([rule], store, 0.0)
    assert [(e["event"], e["tags"]) for e in events] == [("fired", {"peer": "a"})]
    # the window (60 s) passes with no new points: the alert clears
    events = book.evaluate([rule], store, 120.0)
    assert [e["event"] for e in events] == ["cleared"]


def test_below_rule_on_a_window_statistic() -> None:
    rule = AlertRule("hit_rate", 0.5, above=False, stat="avg", window=10.0, severity="info")
    store, book = SeriesStore(), AlertBook()
    for t, v in [(0.0, 0.9), (5.0, 0.2), (10.0, 0.2)]:
        store.add(make_key("hit_rate"), t, v)
    assert [e["event"] for e in book.evaluate([rule], store, 10.0)] == ["fired"]  # avg 0.43
    store.add(make_key("hit_rate"), 14.0, 0.99)
    assert book.evaluate([rule], store, 14.0) == []  # avg of 5..14 s: 0.46, still low
    store.add(make_key("hit_rate"), 15.0, 0.99)
    assert [e["event"] for e in book.evaluate([rule], store, 15.0)] == ["cleared"]  # 0.6


def test_removed_rule_clears_its_alerts() -> None:
    rule = AlertRule("x", 1.0, above=True)
    store, book = SeriesStore(), AlertBook()
    store.add(make_key("x"), 0.0, 5.0)
    book.evaluate([rule], store, 0.0)
    assert book.firing()
    assert [e["event"] for e in book.evaluate([], store, 1.0)] == ["cleared"]
