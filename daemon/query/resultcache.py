"""The result cache: a byte-bounded map with GreedyDual-Size-Frequency eviction.

Keys name an exact result: (query fingerprint, database CID, row cap). A database CID
names one exact database state, so an entry can never be stale and needs no TTL.

Eviction policy (GreedyDual-Size-Frequency, Cherkasova 1998): every entry has a
priority ``H = L + hits * cost / size`` where ``cost`` is what running the query took
(ms), ``size`` its encoded size in bytes and ``hits`` how often it was used. The entry
with the lowest ``H`` is evicted first and ``L`` (the "inflation" value) rises to that
``H``. Each use resets the entry's ``H`` from the current ``L``, so recency counts like in
LRU, but a large cheap result goes before a small expensive one. Entries of a database
state we have left (an old CID) are no longer used locally, so their ``H`` falls behind
``L`` and they are the first victims; until then a peer still at that CID may be answered
from them.

This module is pure: no trio, no DuckDB; the daemon wraps it in ``daemon.query.cached``.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, NamedTuple


class CacheKey(NamedTuple):
    """What names one exact result."""

    fingerprint: str
    db_cid: str
    max_rows: int


@dataclass
class Entry:
    """One cached result."""

    key: CacheKey
    value: Any
    size: int
    cost_ms: float
    hits: int = 0
    priority: float = 0.0
    version: int = 0


@dataclass
class CacheCounters:
    """Cumulative counters of one cache."""

    hits: int = 0
    misses: int = 0
    inserts: int = 0
    evictions: int = 0
    rejected_too_large: int = 0


@dataclass
class ResultCache:
    """Byte-bounded result cache with GreedyDual-Size-Frequency eviction."""

    max_bytes: int
    max_entry_bytes: int | None = None  # default: a quarter of max_bytes
    counters: CacheCounters = field(default_factory=CacheCounters)

    def __post_init__(self) -> None:
        if self.max_bytes < 0:
            raise ValueError("max_bytes must be >= 0")
        self._entries: dict[CacheKey, Entry] = {}
        self._heap: list[tuple[float, int, CacheKey, int]] = []
        self._seq = itertools.count()
        self._inflation = 0.0
        self.bytes = 0

    # -- lookups ---------------------------------------------------------------------------

    def get(self, key: CacheKey) -> Any | None:
        """The cached value, counting a hit (and refreshing its priority) or a miss."""
        entry = self._entries.get(key)
        if entry is None:
            self.counters.misses += 1
            return None
        self.counters.hits += 1
        entry.hits += 1
        self._prioritize(entry)
        return entry.value

    def peek(self, key: CacheKey) -> Entry | None:
        """The entry, without counting or refreshing anything."""
        return self._entries.get(key)

    def __contains__(self, key: object) -> bool:
        return key in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    def entries(self) -> Iterator[Entry]:
        """All entries (any order)."""
        return iter(list(self._entries.values()))

    # -- updates ---------------------------------------------------------------------------

    def put(self, key: CacheKey, value: Any, size: int, cost_ms: float) -> bool:
        """Insert or replace an entry, then evict until within ``max_bytes``.

        Returns False (and stores nothing) when one entry alone is larger than the
        per-entry limit.
        """
        limit = self.max_bytes // 4 if self.max_entry_bytes is None else self.max_entry_bytes
        if size > min(limit, self.max_bytes):
            self.counters.rejected_too_large += 1
            return False
        self.discard(key)
        entry = Entry(key, value, size, max(cost_ms, 0.0), hits=1)
        self._entries[key] = entry
        self.bytes += size
        self.counters.inserts += 1
        self._prioritize(entry)
        self._evict_to(self.max_bytes)
        return key in self._entries

    def discard(self, key: CacheKey) -> None:
        """Remove one entry if present."""
        entry = self._entries.pop(key, None)
        if entry is not None:
            self.bytes -= entry.size

    def clear(self) -> int:
        """Remove every entry; returns how many there were."""
        count = len(self._entries)
        self._entries.clear()
        self._heap.clear()
        self.bytes = 0
        self._inflation = 0.0
        return count

    def resize(self, max_bytes: int) -> None:
        """Change the byte bound (evicting at once if it shrank)."""
        self.max_bytes = max_bytes
        self._evict_to(max_bytes)

    # -- GDSF --------------------------------------------------------------------------------

    def _prioritize(self, entry: Entry) -> None:
        entry.priority = self._inflation + entry.hits * (entry.cost_ms + 0.001) / max(entry.size, 1)
        entry.version += 1
        heapq.heappush(self._heap, (entry.priority, next(self._seq), entry.key, entry.version))
        if len(self._heap) > 4 * len(self._entries) + 64:
            self._compact()

    def _evict_to(self, max_bytes: int) -> None:
        while self.bytes > max_bytes and self._heap:
            priority, _, key, version = heapq.heappop(self._heap)
            entry = self._entries.get(key)
            if entry is None or entry.version != version:
                continue  # stale heap record
            self._inflation = priority
            self.discard(key)
            self.counters.evictions += 1

    def _compact(self) -> None:
        self._heap = [
            (e.priority, next(self._seq), e.key, e.version) for e in self._entries.values()
        ]
        heapq.heapify(self._heap)
