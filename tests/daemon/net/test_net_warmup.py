"""The replication path's modules load once a peer is connected, not before."""

from __future__ import annotations

import sys
from typing import Any

import pytest
import trio
import trio.testing

from daemon.net import warmup


class _Store:
    def __init__(self, heads: dict[str, Any]) -> None:
        self.heads = heads

    def heads_snapshot(self) -> dict[str, Any]:
        return self.heads


class _Node:
    def __init__(self, heads: dict[str, Any] | None = None) -> None:
        self.peers: list[str] = []
        self.store = _Store(heads or {})

    def connected_peers(self) -> list[str]:
        return self.peers


@pytest.fixture
def loads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    calls: list[str] = []  # preload runs in a worker thread
    monkeypatch.setattr(warmup, "preload", lambda: calls.append("loaded"))
    return calls


async def test_a_lone_empty_daemon_loads_nothing_until_a_peer_connects(
    loads: list[str], autojump_clock: trio.testing.MockClock
) -> None:
    node = _Node()
    async with trio.open_nursery() as nursery:  # serve returns once it has loaded
        await nursery.start(warmup.serve, node)
        await trio.sleep(600)
        assert loads == []
        node.peers.append("peer")
        joined = trio.current_time()
    assert loads == ["loaded"]
    assert trio.current_time() - joined <= warmup.MAX_LOOK_S


async def test_a_store_with_rows_loads_at_once(loads: list[str]) -> None:
    with trio.fail_after(5):
        await warmup.serve(_Node({"origin": (1, "cid")}))  # type: ignore[arg-type]
    assert len(loads) == 1


def test_preload_imports_what_applying_needs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delitem(sys.modules, "colorsys", raising=False)
    warmup.preload(("colorsys",))
    assert "colorsys" in sys.modules
    assert "pyarrow" in warmup.MODULES
