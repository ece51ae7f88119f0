"""The query cache's per-daemon state: result cache, query stats, limits.

Kept beside the Node (not in it) so the feature stays in its own modules; every
cache module reaches it through :func:`cache_state`.
"""

from __future__ import annotations

import weakref
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import msgpack

from daemon.node import PYTHON_WORK, Node
from daemon.query.resultcache import ResultCache
from daemon.query.strategy import StatsTable, Thresholds
from daemon.ratelimit import RateLimiter

MAX_REMEMBERED_SPELLINGS = 1024


@dataclass(frozen=True)
class CachedResult:
    """What the cache keeps for one key."""

    columns: list[str]
    rows: list[list[Any]]
    sql: str  # the spelling whose column names ``columns`` are
    rewrites: tuple[str, ...]


MAX_ENTRY_BYTES = 64 << 20  # no single result larger than this is cached
SIZE_CHUNK = 2048  # rows per packb call: each holds the GIL throughout


def encoded_size(columns: list[str], rows: list[list[Any]]) -> int:
    """Bytes of a result as msgpack (what the cache bound counts). Counting stops past
    :data:`MAX_ENTRY_BYTES` (such a result is never cached), so a huge result costs at
    most that much packing."""
    total = 1 + len(msgpack.packb(columns, use_bin_type=True)) + _array_header(len(rows))
    for start in range(0, len(rows), SIZE_CHUNK):
        chunk = rows[start : start + SIZE_CHUNK]
        with PYTHON_WORK:  # see daemon.node
            total += len(msgpack.packb(chunk, use_bin_type=True)) - _array_header(len(chunk))
        if total > MAX_ENTRY_BYTES:
            break
    return total


def _array_header(length: int) -> int:
    return 1 if length < 16 else 3 if length < 1 << 16 else 5


@dataclass
class CacheState:
    """Everything the query cache of one daemon holds."""

    cache: ResultCache
    stats: StatsTable
    thresholds: Thresholds
    share_limiter: RateLimiter
    columns: OrderedDict[str, list[str]] = field(default_factory=OrderedDict)
    prefetched: int = 0
    peer_hits: int = 0
    peer_misses: int = 0
    served: int = 0
    quiet_until: dict[str, float] = field(default_factory=dict)  # peer -> trio time

    def remember_columns(self, sql: str, columns: list[str]) -> None:
        """Output column names of one spelling of a query (bounded memo)."""
        self.columns[sql] = columns
        self.columns.move_to_end(sql)
        while len(self.columns) > MAX_REMEMBERED_SPELLINGS:
            self.columns.popitem(last=False)


def _entry_limit(max_bytes: int, max_entry_bytes: int) -> int:
    return min(max_entry_bytes or max_bytes // 4, MAX_ENTRY_BYTES)


_STATES: weakref.WeakKeyDictionary[Node, CacheState] = weakref.WeakKeyDictionary()


def cache_state(node: Node) -> CacheState:
    """The cache state of ``node`` (created from its config on first use)."""
    state = _STATES.get(node)
    if state is None:
        config = node.config
        state = CacheState(
            cache=ResultCache(
                config.cache_max_bytes,
                _entry_limit(config.cache_max_bytes, config.cache_max_entry_bytes),
            ),
            stats=StatsTable(),
            thresholds=Thresholds(
                config.cache_cheap_ms, config.cache_aggressive_ms, config.cache_hot_requests
            ),
            share_limiter=RateLimiter(config.cache_share_per_second, 40),
        )
        _STATES[node] = state
    return state
