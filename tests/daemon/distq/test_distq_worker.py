"""The worker side without sockets: reads at exactly one CID, the first copy of a
fragment runs and the second is dropped, spoofed coordinators are refused."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest
import trio
from storekit import tc

from daemon.config import load_config
from daemon.distq.atcid import CidChanged, query_at
from daemon.distq.keymap import KeyMaps
from daemon.distq.slices import Partitioning
from daemon.distq.worker import FragmentInbox, Queued, scan_of
from daemon.node import Node
from daemon.store.database import Store
from protocol.changeset import TableChanges
from protocol.messages import QueryFragment

COUNT = "SELECT COUNT(*) AS n FROM performance_results"
Assign = dict[str, tuple[int, ...]]


COLUMNS = ["result_id", "model_id", "hardware_id", "average_latency_ms",
           "throughput_items_per_second"]  # fmt: skip


def results(n: int, start: int = 0) -> list[TableChanges]:
    keys = [f"0190a000-0000-7000-8000-{i:012x}" for i in range(start, start + n)]
    return [tc("performance_results", COLUMNS, [(k, "m", "cpu", 1.0, 1.0) for k in keys])]


@pytest.fixture
def store(tmp_path: Path) -> Store:
    s = Store(tmp_path / "db.duckdb")
    s.commit_local("me", results(10))
    return s


def test_query_at_reads_only_at_its_cid(store: Store) -> None:
    cid = store.db_cid()
    assert query_at(store, cid, COUNT, 10, 5.0).to_pylist() == [{"n": 10}]
    store.commit_local("me", results(5, 100))
    with pytest.raises(CidChanged):
        query_at(store, cid, COUNT, 10, 5.0)
    assert query_at(store, store.db_cid(), COUNT, 10, 5.0).to_pylist() == [{"n": 15}]


def test_a_fragment_past_its_time_limit_is_interrupted(store: Store) -> None:
    slow = "SELECT COUNT(*) FROM range(100000000000) a"
    with pytest.raises(duckdb.InterruptException):
        query_at(store, store.db_cid(), slow, 10, 0.2)
    assert query_at(store, store.db_cid(), COUNT, 10, 5.0).to_pylist() == [{"n": 10}]


def test_query_at_sees_a_commit_whose_cid_is_not_published_yet(store: Store) -> None:
    """The gap between DuckDB's COMMIT and the new CID: a hook that runs in it reads
    the old CID but the new rows; the fragment must refuse to run then."""
    seen: list[object] = []
    old = store.db_cid()

    def hook(items: object, applied: int) -> None:
        try:
            seen.append(query_at(store, old, COUNT, 10, 5.0).to_pylist())
        except CidChanged as exc:
            seen.append(exc)

    store.on_commit.append(hook)
    store.commit_local("me", results(1, 200))
    assert isinstance(seen[0], CidChanged), seen


def test_scan_stats_come_from_the_zone_maps(store: Store) -> None:
    maps = KeyMaps()
    everything = Partitioning("keys", 2, "result_id", ("0190a000-0000-7000-8000-000000000005",),
                              (0, 1))  # fmt: skip
    assert scan_of(store, maps, store.db_cid(), everything, 0) == (10, 1, 1)
    past_the_end = Partitioning("keys", 2, "result_id", ("ffffffff-0000-7000-8000-000000000000",),
                                (0, 1))  # fmt: skip
    assert scan_of(store, maps, store.db_cid(), past_the_end, 1) == (0, 0, 1)
    assert scan_of(store, maps, store.db_cid(), Partitioning("hash", 2), 1) == (10, 1, 1)
    other = Partitioning("keys", 2, "batch_size", (4,), (0, 1))
    assert scan_of(store, maps, store.db_cid(), other, 1) == (0, 0, 0)  # not known


async def test_the_first_copy_runs_and_the_second_is_dropped(store: Store) -> None:
    node = Node(load_config(None, {}, {}), store, "me")
    send, receive = trio.open_memory_channel[Queued](8)
    inbox = FragmentInbox(node, send)

    def fragment(coordinator: str, parts: Assign, qid: str = "q1") -> QueryFragment:
        cid = store.db_cid()
        return QueryFragment(qid, coordinator, cid, COUNT, "keys", 2, parts, "result_id", (),
                             30_000, (0,))  # fmt: skip

    inbox.offer("c", fragment("c", {"me": (1,)}), lambda: True)  # down the query link
    inbox.offer("c", fragment("c", {"me": (1,)}), lambda: True)  # the gossip copy
    inbox.offer("c", fragment("c", {"me": (0,), "x": (1,)}), lambda: True)  # a reassignment
    inbox.offer("c", fragment("c", {"x": (0, 1)}), lambda: True)  # not ours
    inbox.offer("evil", fragment("c", {"me": (1,)}, "q2"), lambda: True)  # spoofed coordinator
    inbox.offer("c", fragment("c", {"me": (1,)}, "q3"), lambda: False)  # over the rate limit
    queued = [receive.receive_nowait() for _ in range(2)]
    with pytest.raises(trio.WouldBlock):
        receive.receive_nowait()
    assert [parts for _, parts in queued] == [(1,), (0,)]
    metrics = node.metrics.snapshot()
    assert metrics["fragments_duplicate"] == 1 and metrics["fragments_refused"] == 1
    assert metrics["fragments_rate_limited"] == 1
