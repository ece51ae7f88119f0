"""Token buckets per peer, on a clock the test controls."""

from __future__ import annotations

from daemon.ratelimit import RateLimiter


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_burst_then_steady_rate_per_peer() -> None:
    clock = Clock()
    limiter = RateLimiter(rate=2.0, burst=3, clock=clock)
    assert [limiter.allow("a") for _ in range(4)] == [True, True, True, False]
    assert limiter.allow("b")  # another peer has its own bucket
    clock.now = 0.5  # one token back at 2/s
    assert limiter.allow("a") and not limiter.allow("a")
    clock.now = 100.0  # never more than the burst
    assert [limiter.allow("a") for _ in range(4)] == [True, True, True, False]


def test_zero_rate_means_unlimited() -> None:
    limiter = RateLimiter(rate=0, burst=1, clock=Clock())
    assert all(limiter.allow("a") for _ in range(1000))
