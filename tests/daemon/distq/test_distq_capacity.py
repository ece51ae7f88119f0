"""The capacity model: priors from what peers report, corrections from how fast they
answer (measured by the coordinator), and the peer that claims cores it lacks."""

from __future__ import annotations

import pytest

from daemon.distq.capacity import CapacityModel, local_capacity, prior, worth_reporting
from protocol.messages import Capacity


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def model(**told: Capacity) -> CapacityModel:
    m = CapacityModel(Clock())
    for peer, capacity in told.items():
        m.told(peer, capacity)
    return m


def run(
    m: CapacityModel, speed: dict[str, float], rows: float = 1e7, fixed_ms: float = 0.0
) -> dict[str, float]:
    """Plan by the model's weights, 'run' at the peers' true speeds (rows per ms, plus a
    fixed cost), learn; the shares it planned."""
    weights = m.weights(speed)
    total = sum(weights.values())
    share = {p: w / total for p, w in weights.items()}
    elapsed = {p: fixed_ms + share[p] * rows / speed[p] for p in speed}
    m.observe(weights, share, elapsed, rows)
    return share


def test_priors_follow_cores_and_load() -> None:
    assert prior(8, 0.0, 0.0) == 8.0
    assert prior(2, 1.0, 0.0) == 2.0  # one runnable task on two cores: a query gets both
    assert prior(2, 3.0, 0.0) == 1.0  # four wanting two cores: half of them
    assert prior(4, 0.0, 2.0) == 2.0  # two database slots already busy
    assert local_capacity(0.0).cores >= 1


def test_unreported_peers_get_the_median_prior() -> None:
    m = model(a=Capacity(4), b=Capacity(8), c=Capacity(16))
    assert m.weights(["a", "b", "c", "d"])["d"] == 8.0


def test_a_peer_claiming_cores_it_lacks_gets_less_after_its_first_slow_answer() -> None:
    m = model(me=Capacity(2), honest=Capacity(2), liar=Capacity(64))
    speed = {"me": 1000.0, "honest": 1000.0, "liar": 1000.0}  # all really alike
    first = run(m, speed)
    assert first["liar"] > 0.9  # believed at first
    second = run(m, speed)
    assert second["liar"] < 0.5 < first["liar"]
    for _ in range(12):
        last = run(m, speed)
    assert last["liar"] == pytest.approx(1 / 3, abs=0.1)


def test_a_liar_is_caught_even_when_small_slices_are_mostly_fixed_costs() -> None:
    m = model(me=Capacity(2), honest=Capacity(2), liar=Capacity(64))
    speed = {"me": 100.0, "honest": 100.0, "liar": 100.0}
    first = run(m, speed, rows=1e5, fixed_ms=200.0)  # 2k-row slices take ~200 ms anyway
    second = run(m, speed, rows=1e5, fixed_ms=200.0)
    assert first["liar"] > 0.9 and second["liar"] < 0.6


def test_noise_does_not_move_equal_peers() -> None:
    m = model(a=Capacity(2), b=Capacity(2), c=Capacity(2))
    for jitter in (1.0, 1.15, 0.88, 1.1, 0.9, 1.12, 0.87, 1.0):  # within 25 %
        weights = m.weights(["a", "b", "c"])
        total = sum(weights.values())
        share = {p: w / total for p, w in weights.items()}
        elapsed = {"a": 300.0 * jitter, "b": 300.0, "c": 300.0 / jitter}
        m.observe(weights, share, elapsed, 1e7)
    assert all(m.correction(p) == pytest.approx(1.0) for p in "abc")


def test_a_slow_peer_gets_less_and_equal_peers_stay_equal() -> None:
    m = model(a=Capacity(2), b=Capacity(2), c=Capacity(2))
    for _ in range(12):
        share = run(m, {"a": 1000.0, "b": 1000.0, "c": 250.0})
    assert share["c"] == pytest.approx(1 / 9, rel=0.3)
    assert share["a"] == pytest.approx(4 / 9, rel=0.1)
    m = model(a=Capacity(2), b=Capacity(2))
    for _ in range(5):
        share = run(m, {"a": 500.0, "b": 500.0})
    assert share["a"] == pytest.approx(0.5)


def test_small_queries_teach_overheads_not_speeds() -> None:
    m = model(a=Capacity(2), b=Capacity(2))
    for _ in range(20):  # tiny queries: b answers over the network, 15 ms later
        m.observe({"a": 2.0, "b": 2.0}, {"a": 0.5, "b": 0.5}, {"a": 5.0, "b": 20.0}, 1000)
    assert m.correction("b") == 1.0
    # a big query where both scan at the same speed: b's overhead is not held against it
    m.observe({"a": 2.0, "b": 2.0}, {"a": 0.5, "b": 0.5}, {"a": 105.0, "b": 120.0}, 1e6)
    assert m.correction("b") == pytest.approx(1.0, abs=0.02)


def test_failures_halve_and_reports_expire() -> None:
    clock = Clock()
    m = CapacityModel(clock)
    m.told("a", Capacity(8))
    m.penalize("a")
    assert m.correction("a") == 0.5
    clock.now = 120.0  # the report is two minutes old
    assert m.prior("a") is None


def test_a_report_goes_out_only_when_the_weight_moves() -> None:
    idle = Capacity(cores=8, load=0.2)
    assert worth_reporting(idle, None, 0.1)  # the first
    assert not worth_reporting(Capacity(cores=8, load=0.25), idle, 0.1)  # load noise
    assert worth_reporting(Capacity(cores=8, load=9.0), idle, 0.1)  # the host got busy
    assert worth_reporting(Capacity(cores=4, load=0.2), idle, 0.1)  # fewer cores
    assert worth_reporting(Capacity(cores=8, load=0.2, busy=2.0), idle, 0.1)  # busy slots
