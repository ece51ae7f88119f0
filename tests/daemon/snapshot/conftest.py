"""The ``node`` fixture of the snapshot tests: a FakeNode over a store with one row."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from snapkit import FakeNode
from storekit import models

from daemon.store.database import Store


@pytest.fixture
def node(tmp_path: Path) -> Iterator[Any]:
    """A FakeNode over a store with one model row from ``peerA``."""
    store = Store(tmp_path / "db.duckdb")
    store.commit_local("peerA", [models((0, "m1", "one"))])
    yield FakeNode(store, tmp_path)
    store.close()
