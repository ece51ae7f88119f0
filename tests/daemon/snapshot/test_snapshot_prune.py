"""The pruning pass writes ``store.known_peers`` only for what changed: an idle cluster's
pass is no transaction per peer (at 20 peers that was most of an idle daemon's CPU)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from daemon.config import Config
from daemon.node import PeerState
from daemon.snapshot.prune import REFRESH_S, Pruner
from daemon.store.database import Store


def seen(peer: str, vector: dict[str, int], last_seen: float) -> PeerState:
    return PeerState(peer, vector=vector, last_seen=last_seen)


def stored(store: Store) -> dict[str, float]:
    rows = store.cursor().execute("SELECT peer, seen_at FROM store.known_peers").fetchall()
    return dict(rows)


def counting_transactions(store: Store, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls: list[int] = []
    real = store.transaction

    def counted(fn: Callable[..., None]) -> None:
        calls.append(1)
        real(fn)

    monkeypatch.setattr(store, "transaction", counted)
    return calls


async def test_a_pass_writes_all_new_peers_in_one_transaction_then_nothing_while_idle(
    node: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    node.peers = {f"p{i}": seen(f"p{i}", {"peerA": 1}, 1_000.0 + i) for i in range(20)}
    calls = counting_transactions(node.store, monkeypatch)
    pruner = Pruner(node)
    await pruner.run_once()
    assert stored(node.store) == {f"p{i}": 1_000.0 + i for i in range(20)}
    writes = len(calls)
    assert writes <= 2  # known_peers, and the log's pruning (all 20 hold peerA's 1)
    for state in node.peers.values():
        state.last_seen += 60.0  # heard again a minute later, same vector
    await pruner.run_once()
    assert len(calls) == writes  # nothing changed that matters: no transaction at all
    assert stored(node.store)["p0"] == 1_000.0


async def test_a_changed_vector_or_an_old_time_is_written(node: Any) -> None:
    node.peers = {p: seen(p, {"peerA": 1}, 1_000.0) for p in ("p", "q")}
    pruner = Pruner(node)
    await pruner.run_once()
    node.peers["p"].vector = {"peerA": 1, "peerB": 4}
    node.peers["p"].last_seen = 1_010.0
    node.peers["q"].last_seen = 1_000.0 + REFRESH_S
    await pruner.run_once()
    assert stored(node.store) == {"p": 1_010.0, "q": 1_000.0 + REFRESH_S}


async def test_the_refresh_is_a_tenth_of_a_short_retention(node: Any) -> None:
    node.config = Config(data_dir=node.config.data_dir, log_peer_retention=600.0)
    node.peers = {"p": seen("p", {"peerA": 1}, 1_000.0)}
    pruner = Pruner(node)
    await pruner.run_once()
    node.peers["p"].last_seen = 1_059.0
    await pruner.run_once()
    assert stored(node.store) == {"p": 1_000.0}
    node.peers["p"].last_seen = 1_060.0
    await pruner.run_once()
    assert stored(node.store) == {"p": 1_060.0}
