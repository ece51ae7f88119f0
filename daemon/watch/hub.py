"""Live subscriptions: watched queries, their subscribers and bounded event buffers.

Subscribers of the same SQL share one :class:`WatchedQuery`: it is evaluated once per
batch of commits that touched a table it reads, whatever the number of subscribers,
and each subscriber gets the events of the difference. A subscriber's buffer is
bounded: one that does not keep up is told it lagged and gets a fresh snapshot; it
never holds up the store, replication or other subscribers.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import trio

from daemon.watch.diff import Row, RowEvent, diff, key_index

MAX_BUFFERED_EVENTS = 1024  # per subscriber, before it is told it lagged
Event = dict[str, Any]


class WatchError(Exception):
    """A watched query cannot be evaluated (bad SQL, too many rows, a deadline)."""


@dataclass
class Result:
    """One evaluation of a watched query."""

    columns: list[str]
    rows: list[Row]
    db_cid: str


Evaluate = Callable[[str], Awaitable[Result]]


class Subscription:
    """One subscriber's view: an event buffer it reads with :meth:`next`."""

    def __init__(self, watched: WatchedQuery, max_events: int = MAX_BUFFERED_EVENTS) -> None:
        self.watched = watched
        self._events: deque[Event] = deque()
        self._max = max_events
        self._ready = trio.Event()
        self.lagged = 0  # events dropped since it last caught up
        self.closed = False

    def push(self, events: Sequence[Event]) -> None:
        """Queue events; on overflow, drop them all and owe the subscriber a snapshot."""
        if self.lagged or len(self._events) + len(events) > self._max:
            self.lagged += len(self._events) + len(events)
            self._events.clear()
        else:
            self._events.extend(events)
        self._ready.set()

    async def next(self) -> list[Event]:
        """Wait for events and take all of them (a lag notice plus a snapshot if it fell
        behind)."""
        while not self._events and not self.lagged:
            if self.closed:
                raise trio.EndOfChannel
            await self._ready.wait()
            self._ready = trio.Event()
        if self.lagged:
            dropped, self.lagged = self.lagged, 0
            return [{"event": "lagged", "dropped": dropped}, self.watched.snapshot()]
        events = list(self._events)
        self._events.clear()
        return events

    def close(self) -> None:
        self.closed = True
        self._ready.set()


@dataclass
class WatchedQuery:
    """A query somebody watches, with its last result."""

    sql: str
    tables: frozenset[str]
    result: Result | None = None
    subscribers: set[Subscription] = field(default_factory=set)
    dirty: bool = False  # a commit touched one of its tables since the last evaluation
    origins: set[str] = field(default_factory=set)  # writers of those commits

    def snapshot(self) -> Event:
        """The whole current result as one event."""
        assert self.result is not None
        r = self.result
        return {"event": "snapshot", "columns": r.columns, "rows": [list(x) for x in r.rows],
                "db_cid": r.db_cid}  # fmt: skip

    def events(self, new: Result) -> list[Event]:
        """Row events from the last result to ``new``."""
        assert self.result is not None
        origins = sorted(self.origins)
        return [
            _row_event(e, origins, new.db_cid)
            for e in diff(self.result.rows, new.rows, key_index(new.columns))
        ]


def _row_event(change: RowEvent, origins: list[str], db_cid: str) -> Event:
    event: Event = {"event": change.kind, "row": list(change.row), "origins": origins,
                    "db_cid": db_cid}  # fmt: skip
    if change.old is not None:
        event["old"] = list(change.old)
    return event


class Hub:
    """Every watched query of one daemon; evaluations run one at a time."""

    def __init__(self, evaluate: Evaluate) -> None:
        self._evaluate = evaluate
        self.queries: dict[str, WatchedQuery] = {}
        self._lock = trio.Lock()
        self._wakeup = trio.Event()
        self.evaluations = 0

    async def subscribe(self, sql: str, tables: frozenset[str]) -> Subscription:
        """A new subscription whose buffer starts with the query's current snapshot."""
        watched = self.queries.setdefault(sql, WatchedQuery(sql, tables))
        sub = Subscription(watched)
        watched.subscribers.add(sub)  # commits from now on mark the query dirty
        try:
            async with self._lock:
                if watched.result is None:
                    watched.result = await self._run(sql)
        except BaseException:
            self.unsubscribe(sub)
            raise
        sub.push([watched.snapshot()])
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        """Forget a subscriber; a query nobody watches is dropped."""
        sub.close()
        watched = sub.watched
        watched.subscribers.discard(sub)
        if not watched.subscribers and self.queries.get(watched.sql) is watched:
            del self.queries[watched.sql]

    def note_commit(self, tables: Iterable[str], origins: Iterable[str]) -> None:
        """A batch of changesets touching ``tables`` committed (call from the trio thread)."""
        touched, writers = set(tables), set(origins)
        for watched in self.queries.values():
            if watched.tables & touched:
                watched.dirty = True
                watched.origins |= writers
                self._wakeup.set()

    async def serve(self) -> None:
        """Re-evaluate dirty queries and hand out their events, forever."""
        while True:
            await self._wakeup.wait()
            self._wakeup = trio.Event()
            async with self._lock:
                for watched in list(self.queries.values()):
                    if watched.dirty and watched.result is not None:
                        await self._refresh(watched)

    async def _refresh(self, watched: WatchedQuery) -> None:
        watched.dirty = False
        try:
            new = await self._run(watched.sql)
        except WatchError as exc:  # it fails now (e.g. it grew over the row cap)
            error: Event = {"event": "error", "error": str(exc).splitlines()[0]}
            for sub in list(watched.subscribers):
                sub.push([error])
            return
        events = watched.events(new)
        watched.result, watched.origins = new, set()
        if events:
            for sub in list(watched.subscribers):
                sub.push(events)

    async def _run(self, sql: str) -> Result:
        self.evaluations += 1
        return await self._evaluate(sql)
