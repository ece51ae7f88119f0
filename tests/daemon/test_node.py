"""daemon.node.Node: what it keeps for the announcer."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from daemon.config import Config
from daemon.node import Node
from daemon.store.database import Store
from protocol.messages import MAX_PUSHED_BLOCKS


@pytest.fixture
def node(tmp_path: Path) -> Iterator[Node]:
    store = Store(tmp_path / "db.duckdb")
    yield Node(Config(data_dir=tmp_path), store, "12D3KooWMe")
    store.close()


def test_no_more_blocks_are_pushed_than_receivers_accept(node: Node) -> None:
    """After more small commits than an announce may carry, the next announce pushes
    none (receivers pull) instead of carrying a list every receiver refuses."""
    for _ in range(MAX_PUSHED_BLOCKS + 1):
        node._remember_for_push(b"small")
    assert node.take_pushable() == ()
    node._remember_for_push(b"small")
    assert node.take_pushable() == (b"small",)
