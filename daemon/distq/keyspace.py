"""Cutting the key space of ``performance_results`` into slices sized by weight.

Every strategy ends as a ``keys`` partitioning: contiguous ``result_id`` chunks, each
owned by one partition, so each peer's scan skips to its chunks by the zone maps.

- ``range``: one chunk per partition, in partition order, sized by its weight.
- ``round_robin``: ``rounds`` rounds of one chunk per partition, dealt out in turn
  (each round a 1/rounds sliver of every partition's share): work spread over the
  whole key range, e.g. over old and recent results alike.
- ``hash``: the same rounds, but each round deals the partitions in an order given by
  a hash of (round, partition), so no partition is always first or last.

Chunks are kept at two row groups or more where the table allows (fewer rounds on small
tables): a chunk narrower than a row group cannot be skipped to, and every peer would
read that row group. Split points come from the coordinator's zone maps
(:class:`daemon.store.cluster.KeyDistribution`); they only balance the slices, since
any split points give disjoint and complete slices.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Sequence

from daemon.distq.plan import FACT_KEY
from daemon.distq.slices import KEYS, Partitioning
from daemon.store.cluster import ROW_GROUP_ROWS, KeyDistribution

STRATEGIES = ("range", "round_robin", "hash")
DEFAULT_STRATEGY = "range"
MAX_ROUNDS = 4
UNITS_PER_PARTITION = 16  # shares are multiples of 1/(16 n): stable SQL for caches


def shares(weights: Sequence[float]) -> list[float]:
    """Weights as fractions of the table that sum to 1, each at least one unit of
    1/(16 n), rounded to whole units (so equal capacities give repeatable bounds)."""
    n = len(weights)
    units = UNITS_PER_PARTITION * n
    total = sum(max(w, 0.0) for w in weights)
    raw = [max(w, 0.0) / total if total > 0 else 1 / n for w in weights]
    counts = [max(1, round(r * units)) for r in raw]
    while sum(counts) != units:  # rounding: the largest share gives or takes the rest
        i = max(range(n), key=lambda k: counts[k])
        counts[i] += 1 if sum(counts) < units else -1
    return [c / units for c in counts]


def rounds_for(strategy: str, partitions: int, row_groups: int) -> int:
    """How many rounds of chunks a strategy deals (1 for ``range``)."""
    if strategy == "range" or partitions <= 1:
        return 1
    return max(1, min(MAX_ROUNDS, row_groups // (2 * partitions)))


def chunks(strategy: str, fractions: Sequence[float], rounds: int) -> list[tuple[float, int]]:
    """(size, partition) of every chunk in key order; sizes sum to 1."""
    order = list(range(len(fractions)))
    out: list[tuple[float, int]] = []
    for r in range(rounds):
        if strategy == "hash":
            order = sorted(order, key=lambda i: _digest(r, i))
        out += [(fractions[i] / rounds, i) for i in order]
    return out


def _digest(round_: int, partition: int) -> bytes:
    return hashlib.blake2b(f"{round_}:{partition}".encode(), digest_size=8).digest()


def key_partitioning(
    dist: KeyDistribution, strategy: str, weights: Sequence[float]
) -> Partitioning:
    """A ``keys`` partitioning of ``result_id`` into ``len(weights)`` slices."""
    n = len(weights)
    if dist.total == 0 or n == 1:
        return Partitioning(KEYS, n, FACT_KEY, (), (0,))
    fractions = shares(weights)
    parts = chunks(strategy, fractions, rounds_for(strategy, n, len(dist.groups)))
    bounds: list[str] = []
    done = 0.0
    for size, _ in parts[:-1]:
        done += size
        bounds.append(str(uuid.UUID(int=dist.key_at(done))))
    return Partitioning(KEYS, n, FACT_KEY, tuple(bounds), tuple(p for _, p in parts))


def expected_rows(dist: KeyDistribution, part: Partitioning, index: int) -> float:
    """Rows of slice ``index`` by the zone-map estimate."""
    total = 0.0
    for lo, hi in part.ranges(index):
        top = dist.rows_below(_key(hi)) if hi is not None else dist.total
        total += top - (dist.rows_below(_key(lo)) if lo is not None else 0.0)
    return total


def _key(bound: object) -> int:
    return uuid.UUID(str(bound)).int


def key_ranges(part: Partitioning, index: int) -> list[tuple[int | None, int | None]]:
    """Slice ``index`` of a ``result_id`` partitioning as integer key ranges."""
    return [
        (None if lo is None else _key(lo), None if hi is None else _key(hi))
        for lo, hi in part.ranges(index)
    ]


__all__ = ["DEFAULT_STRATEGY", "ROW_GROUP_ROWS", "STRATEGIES", "key_partitioning", "shares"]
