"""Alert rules evaluated against the time series: pending, firing, cleared.

A rule is checked on every series of its metric (each tag set is its own alert, so
``replication_lag_changesets`` alerts per peer). The condition must hold for the
rule's ``for`` duration before the alert fires; it clears as soon as the condition is
false or the series has no data in the window.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

from daemon.metrics.config import AlertRule
from daemon.metrics.timeseries import Ring, SeriesStore, Tags, summarize

MAX_EVENTS = 200


@dataclass
class AlertState:
    """One (rule, series) pair being watched."""

    rule: AlertRule
    tags: Tags
    value: float
    pending_since: float
    firing_since: float | None = None

    def as_dict(self) -> dict[str, object]:
        """Plain dict for the wire."""
        r = self.rule
        return {
            "name": r.title,
            "metric": r.metric,
            "tags": dict(self.tags),
            "severity": r.severity,
            "state": "firing" if self.firing_since is not None else "pending",
            "value": self.value,
            "threshold": r.threshold,
            "op": "above" if r.above else "below",
            "stat": r.stat,
            "pending_since": self.pending_since,
            "firing_since": self.firing_since,
        }


def rule_value(rule: AlertRule, ring: Ring, now: float) -> float | None:
    """The rule's statistic of one series over its window (None: no data)."""
    points = ring.points(now - rule.window)
    if not points:
        return None
    if rule.stat == "latest":
        return points[-1][1]
    summary = summarize(points)
    assert summary is not None
    return float(getattr(summary, rule.stat))


class AlertBook:
    """The alert states of all rules, and a short history of fire/clear events."""

    def __init__(self) -> None:
        self.states: dict[tuple[AlertRule, Tags], AlertState] = {}
        self.events: deque[dict[str, object]] = deque(maxlen=MAX_EVENTS)

    def evaluate(
        self, rules: Sequence[AlertRule], store: SeriesStore, now: float
    ) -> list[dict[str, object]]:
        """Update every state; return the fire/clear events of this round."""
        seen: set[tuple[AlertRule, Tags]] = set()
        events: list[dict[str, object]] = []
        for rule in rules:
            for tags, ring in list(store.matching(rule.metric)):
                value = rule_value(rule, ring, now)
                if value is None or not _breached(rule, value):
                    continue
                key = (rule, tags)
                seen.add(key)
                event = self._hold(key, value, now)
                if event:
                    events.append(event)
        for key in [k for k in self.states if k not in seen]:
            state = self.states.pop(key)
            if state.firing_since is not None:
                events.append(self._event("cleared", state, now))
        self.events.extend(events)
        return events

    def _hold(
        self, key: tuple[AlertRule, Tags], value: float, now: float
    ) -> dict[str, object] | None:
        state = self.states.get(key)
        if state is None:
            state = self.states[key] = AlertState(key[0], key[1], value, now)
        state.value = value
        if state.firing_since is None and now - state.pending_since >= key[0].for_seconds:
            state.firing_since = now
            return self._event("fired", state, now)
        return None

    @staticmethod
    def _event(kind: str, state: AlertState, now: float) -> dict[str, object]:
        return {"event": kind, "at": now, **state.as_dict()}

    def firing(self) -> list[AlertState]:
        """Alerts that are firing now, most severe first."""
        order = {"critical": 0, "warning": 1, "info": 2}
        live = [s for s in self.states.values() if s.firing_since is not None]
        return sorted(live, key=lambda s: (order[s.rule.severity], s.rule.title))

    def active(self) -> list[AlertState]:
        """Firing and pending alerts."""
        return list(self.states.values())


def _breached(rule: AlertRule, value: float) -> bool:
    return value > rule.threshold if rule.above else value < rule.threshold
