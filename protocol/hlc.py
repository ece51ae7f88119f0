"""Hybrid logical clock packed into one 64-bit integer.

The upper 48 bits hold wall-clock milliseconds, the lower 16 bits a logical counter.
Packed timestamps compare with plain integer comparison, which is what the store and
the conflict strategies need.
"""

from __future__ import annotations

from protocol.errors import RemoteProtocolError

COUNTER_BITS = 16
COUNTER_MASK = (1 << COUNTER_BITS) - 1
MAX_HLC = (1 << 63) - 1
DEFAULT_MAX_DRIFT_MS = 60_000


def pack(wall_ms: int, counter: int) -> int:
    """Pack wall-clock milliseconds and a counter into one timestamp."""
    if wall_ms < 0 or not 0 <= counter <= COUNTER_MASK:
        raise ValueError(f"bad hlc parts: wall_ms={wall_ms} counter={counter}")
    return (wall_ms << COUNTER_BITS) | counter


def wall_ms(ts: int) -> int:
    """Wall-clock milliseconds of a packed timestamp."""
    return ts >> COUNTER_BITS


def counter(ts: int) -> int:
    """Logical counter of a packed timestamp."""
    return ts & COUNTER_MASK


def tick(last: int, now_ms: int) -> int:
    """Next local timestamp: strictly greater than ``last``, close to ``now_ms``."""
    if now_ms > wall_ms(last):
        return pack(now_ms, 0)
    return last + 1  # counter overflow carries into the wall part, still monotonic


def observe(last: int, remote: int, now_ms: int, max_drift_ms: int = DEFAULT_MAX_DRIFT_MS) -> int:
    """Merge a remote timestamp into our clock; refuse ones too far in the future."""
    if not 0 <= remote <= MAX_HLC:
        raise RemoteProtocolError(f"hlc out of range: {remote}")
    if wall_ms(remote) > now_ms + max_drift_ms:
        raise RemoteProtocolError(
            f"remote clock {wall_ms(remote) - now_ms} ms ahead (limit {max_drift_ms} ms)"
        )
    return max(last, remote)
