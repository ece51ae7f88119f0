"""Queries running on the store, so that their deadline or the memory guard can stop them.

Every query cursor runs inside :meth:`RunningQueries.guard`: a timer interrupts it at
its deadline, and :meth:`RunningQueries.stop_all` interrupts every running one (the
memory guard of ``daemon.query.guard`` calls it when the daemon's RSS passes its bound).
A query stopped for a reason other than its deadline raises :class:`QueryStopped`.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

import duckdb


class QueryStopped(duckdb.InterruptException):
    """A running query was stopped before its deadline; the message says why."""


class _Ticket:
    def __init__(self, cur: duckdb.DuckDBPyConnection) -> None:
        self.cur = cur
        self.reason: str | None = None

    def stop(self, reason: str) -> None:
        if self.reason is None:
            self.reason = reason
        self.cur.interrupt()


class RunningQueries:
    """The cursors of the queries running now (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Condition()
        self._tickets: set[_Ticket] = set()

    def __len__(self) -> int:
        with self._lock:
            return len(self._tickets)

    @contextlib.contextmanager
    def guard(
        self, cur: duckdb.DuckDBPyConnection, timeout: float
    ) -> Iterator[duckdb.DuckDBPyConnection]:
        """Run a query on ``cur`` with a deadline, stoppable by :meth:`stop_all`."""
        ticket = _Ticket(cur)
        timer = threading.Timer(timeout, ticket.stop, ("deadline",))
        with self._lock:
            self._tickets.add(ticket)
            self._lock.notify_all()
        timer.start()
        try:
            yield cur
        except duckdb.InterruptException as exc:
            if ticket.reason not in (None, "deadline"):
                raise QueryStopped(f"query stopped: {ticket.reason}") from exc
            raise
        finally:
            timer.cancel()
            with self._lock:
                self._tickets.discard(ticket)

    def wait_busy(self, stop: threading.Event, timeout: float | None = None) -> bool:
        """Block until a query runs, ``stop`` is set (and :meth:`wake` called) or
        ``timeout`` passes; True if a query runs."""
        with self._lock:
            self._lock.wait_for(lambda: bool(self._tickets) or stop.is_set(), timeout)
            return bool(self._tickets)

    def wake(self) -> None:
        """Wake every :meth:`wait_busy`, to see its ``stop``."""
        with self._lock:
            self._lock.notify_all()

    def stop_all(self, reason: str) -> int:
        """Interrupt every running query; returns how many."""
        with self._lock:
            tickets = list(self._tickets)
        for ticket in tickets:
            ticket.stop(reason)
        return len(tickets)


RUNNING = RunningQueries()
