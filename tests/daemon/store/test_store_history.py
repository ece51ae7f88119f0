"""Pruning the changeset log: what every known peer holds goes, the rest stays servable,
segments are compacted, and the replicated state never changes."""

from __future__ import annotations

from pathlib import Path

import pytest
from storekit import chain, dump, models

from daemon.store import history
from daemon.store.database import Store

A, B = "origin-a", "origin-b"


@pytest.fixture
def store(tmp_path: Path) -> Store:
    s = Store(tmp_path / "duckpeer.duckdb")
    s.blocklog.segment_bytes = 600  # a few blocks per segment
    yield s
    s.close()


def fill(store: Store, origin: str, n: int) -> list[bytes]:
    """``n`` changesets of ``origin``, applied one by one (one log append each)."""
    blocks = chain(origin, [(10 + i, [models((0, f"{origin}-{i}", "x" * 40))]) for i in range(n)])
    for block in blocks:
        assert not store.apply_blocks([block]).rejected
    return blocks


def served(store: Store, have: dict[str, int]) -> list[bytes]:
    return [b for batch in store.missing_for(have) for b in batch]


def test_floors_are_the_least_any_known_peer_holds() -> None:
    heads = {A: (5, "x"), B: (3, "y")}
    assert history.floors(heads, {}) == {A: 5, B: 3}  # nobody known: all of it
    assert history.floors(heads, {"p": {A: 4, B: 3}, "q": {A: 2}}) == {A: 2, B: 0}


def test_prune_drops_what_every_known_peer_holds(store: Store) -> None:
    blocks = fill(store, A, 6) + fill(store, B, 2)
    before, cid = dump(store), store.db_cid()
    history.remember(store, {"p": ({A: 4, B: 2}, 1000.0)})
    peers = history.known(store, 1000.0, retention=60.0, uptime=0.0)
    done = history.prune(store, history.floors(store.heads_snapshot(), peers))
    assert (done.changesets, done.block_bytes) == (6, sum(map(len, blocks[:4] + blocks[6:])))
    assert dump(store) == before and store.db_cid() == cid  # rows and CID untouched
    assert served(store, {A: 4, B: 2}) == blocks[4:6]  # the peer we know still catches up
    assert store.unservable({A: 4, B: 2}) == []
    assert store.unservable({}) == [A, B]  # a newcomer needs a snapshot
    assert served(store, {A: 0}) == []


def test_pruned_history_survives_a_restart(tmp_path: Path) -> None:
    store = Store(tmp_path / "d.duckdb")
    fill(store, A, 3)
    history.prune(store, {A: 2})
    store.close()
    store = Store(tmp_path / "d.duckdb")
    try:
        assert store.history_floor == {A: 3}
        assert store.unservable({A: 1}) == [A] and store.unservable({A: 2}) == []
    finally:
        store.close()


def test_the_applied_count_survives_pruning_the_whole_log_and_a_restart(tmp_path: Path) -> None:
    """The knowledge graph records the applied count it is current to: had the count
    gone back to 0 with the log, every restart after a prune would rebuild the graph."""
    from daemon.kg.graph import KnowledgeGraph

    store = Store(tmp_path / "d.duckdb")
    fill(store, A, 3)
    graph = KnowledgeGraph(store)
    graph.open()
    store.on_commit.append(graph.on_commit)
    fill(store, B, 2)
    graph.flush()
    history.prune(store, {A: 3, B: 2})  # every changeset: the log is empty
    assert store.applied_count() == 5
    store.close()
    store = Store(tmp_path / "d.duckdb")
    try:
        assert store.applied_count() == 5
        assert KnowledgeGraph(store).open() is None  # current: no rebuild
        specs = [(10 + i, [models((0, f"{A}-{i}", "x" * 40))]) for i in range(4)]
        assert not store.apply_blocks(chain(A, specs)[3:]).rejected  # as fill's, one more
        assert store.applied_count() == 6
    finally:
        store.close()


def test_silent_peers_expire_only_after_the_retention_of_our_own_uptime(store: Store) -> None:
    fill(store, A, 2)
    history.remember(store, {"old": ({A: 1}, 1000.0), "new": ({A: 2}, 1000.0)})
    assert set(history.known(store, 5000.0, retention=60.0, uptime=10.0)) == {"old", "new"}
    assert history.known(store, 5000.0, retention=60.0, uptime=100.0) == {}
    history.remember(store, {"new": ({A: 2}, 4990.0)})
    assert history.known(store, 5000.0, retention=60.0, uptime=100.0) == {"new": {A: 2}}


def test_compaction_moves_live_blocks_and_deletes_dead_segments(store: Store) -> None:
    blocks = fill(store, A, 12)
    segments = store.blocklog.segments()
    assert len(segments) >= 3
    history.prune(store, {A: 7})  # segment 1 dead, segment 2 a quarter live
    retired: dict[int, float] = {}
    done = history.compact(store, history.Pruned(), retired, grace=60.0)
    assert done.moved_bytes > 0 and len(retired) == 2 and not done.segments_removed
    assert served(store, {A: 7}) == blocks[7:]  # read from their new places
    emptied = set(retired)
    later = history.compact(store, history.Pruned(), retired, grace=0.0)
    assert emptied <= set(later.segments_removed)  # unlinked once the grace is over
    _, used = store.query("SELECT DISTINCT seg FROM store.changesets", 100, 30.0)
    assert set(store.blocklog.segments()) <= {
        store.blocklog.current,
        *retired,
        *(s for (s,) in used),
    }
    assert served(store, {A: 7}) == blocks[7:]
    assert store.blocklog.size_bytes() < sum(segments.values())


def test_a_crash_between_copy_and_commit_leaves_only_dead_bytes(store: Store) -> None:
    blocks = fill(store, A, 6)
    history.prune(store, {A: 4})
    store.blocklog.append(blocks[4:])  # copied, then the daemon died before repointing
    retired: dict[int, float] = {}
    history.compact(store, history.Pruned(), retired, grace=0.0)
    history.compact(store, history.Pruned(), retired, grace=0.0)
    assert served(store, {A: 4}) == blocks[4:]
