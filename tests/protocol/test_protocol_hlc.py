"""Hybrid logical clock: packing, local ticks and merging remote timestamps."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol import hlc
from protocol.errors import RemoteProtocolError

SETTINGS = settings(max_examples=300, deadline=None)

# Wall clocks that keep a packed timestamp within 63 bits (well beyond year 6000).
MAX_WALL = (hlc.MAX_HLC >> hlc.COUNTER_BITS) - 1
walls = st.integers(min_value=0, max_value=MAX_WALL)
counters = st.integers(min_value=0, max_value=hlc.COUNTER_MASK)
# Realistic "now" values: around the present, plus small values and jumps backwards.
nows = st.one_of(
    st.integers(min_value=0, max_value=1 << 20),
    st.integers(min_value=1_600_000_000_000, max_value=1_600_000_000_000 + (1 << 16)),
    st.integers(min_value=0, max_value=MAX_WALL - (1 << 20)),
)


@SETTINGS
@given(walls, counters)
def test_pack_unpack_round_trip(wall: int, count: int) -> None:
    ts = hlc.pack(wall, count)
    assert hlc.wall_ms(ts) == wall
    assert hlc.counter(ts) == count
    assert 0 <= ts <= hlc.MAX_HLC


@SETTINGS
@given(walls, counters, walls, counters)
def test_pack_order_is_lexicographic(w1: int, c1: int, w2: int, c2: int) -> None:
    assert (hlc.pack(w1, c1) < hlc.pack(w2, c2)) == ((w1, c1) < (w2, c2))


@pytest.mark.parametrize(("wall", "count"), [(-1, 0), (0, -1), (0, hlc.COUNTER_MASK + 1)])
def test_pack_rejects_bad_parts(wall: int, count: int) -> None:
    with pytest.raises(ValueError):
        hlc.pack(wall, count)


@SETTINGS
@given(st.integers(min_value=0, max_value=hlc.MAX_HLC >> 1), st.lists(nows, max_size=200))
def test_tick_strictly_monotonic(start: int, now_sequence: list[int]) -> None:
    last = start
    for now in now_sequence:
        nxt = hlc.tick(last, now)
        assert nxt > last
        # Never behind the wall clock we were given.
        assert hlc.wall_ms(nxt) >= now
        last = nxt


@SETTINGS
@given(nows)
def test_tick_jumps_to_new_wall_clock(now: int) -> None:
    last = hlc.pack(now, 7)
    assert hlc.tick(last, now + 1) == hlc.pack(now + 1, 0)
    # Same or older wall clock: logical counter advances instead.
    assert hlc.tick(last, now) == hlc.pack(now, 8)
    assert hlc.tick(last, max(0, now - 5)) == hlc.pack(now, 8)


def test_tick_counter_overflow_stays_monotonic() -> None:
    wall = 1_700_000_000_000
    last = hlc.pack(wall, hlc.COUNTER_MASK)
    nxt = hlc.tick(last, wall)
    assert nxt > last
    assert nxt == hlc.pack(wall + 1, 0)
    # Keep ticking with a frozen clock far past a full counter cycle.
    ts = hlc.pack(wall, 0)
    seen = [ts]
    for _ in range(3 * (hlc.COUNTER_MASK + 1)):
        ts = hlc.tick(ts, wall)
        seen.append(ts)
    assert all(a < b for a, b in itertools.pairwise(seen))
    assert hlc.wall_ms(seen[-1]) == wall + 3


@SETTINGS
@given(
    st.integers(min_value=0, max_value=hlc.MAX_HLC),
    st.integers(min_value=0, max_value=hlc.MAX_HLC),
    st.integers(min_value=0, max_value=MAX_WALL),
)
def test_observe_returns_max_or_rejects(last: int, remote: int, now: int) -> None:
    if hlc.wall_ms(remote) > now + hlc.DEFAULT_MAX_DRIFT_MS:
        with pytest.raises(RemoteProtocolError):
            hlc.observe(last, remote, now)
    else:
        merged = hlc.observe(last, remote, now)
        assert merged == max(last, remote)
        assert hlc.tick(merged, now) > remote


@SETTINGS
@given(walls, counters, st.integers(min_value=0, max_value=10**7))
def test_observe_drift_boundary(now: int, count: int, drift: int) -> None:
    if now + drift + 1 > MAX_WALL:
        return
    at_limit = hlc.pack(now + drift, count)
    assert hlc.observe(0, at_limit, now, max_drift_ms=drift) == at_limit
    with pytest.raises(RemoteProtocolError):
        hlc.observe(0, hlc.pack(now + drift + 1, 0), now, max_drift_ms=drift)


def test_observe_rejects_far_future_with_default_limit() -> None:
    now = 1_700_000_000_000
    remote = hlc.pack(now + hlc.DEFAULT_MAX_DRIFT_MS + 1, 0)
    with pytest.raises(RemoteProtocolError, match="ahead"):
        hlc.observe(hlc.pack(now, 0), remote, now)
    # Exactly at the limit is fine.
    ok = hlc.pack(now + hlc.DEFAULT_MAX_DRIFT_MS, hlc.COUNTER_MASK)
    assert hlc.observe(hlc.pack(now, 0), ok, now) == ok


@pytest.mark.parametrize("remote", [-1, -(1 << 70), hlc.MAX_HLC + 1, 1 << 64, 1 << 100])
def test_observe_rejects_out_of_range(remote: int) -> None:
    with pytest.raises(RemoteProtocolError, match="out of range"):
        hlc.observe(0, remote, 1 << 46)


@SETTINGS
@given(
    st.integers(min_value=0, max_value=hlc.MAX_HLC // 2),
    st.integers(0, hlc.DEFAULT_MAX_DRIFT_MS),
)
def test_observe_never_goes_backwards(last: int, lag: int) -> None:
    now = max(0, hlc.wall_ms(last) - lag)  # our own clock may be ahead of the wall clock
    older = last // 2
    assert hlc.observe(last, older, now) == last
    assert hlc.observe(last, last, now) == last
