"""Snapshots served to peers: one export per database CID, reused for snapshot_max_age
even after the database changes, and the old file removed once a newer one exists."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from snapkit import FakeNode
from storekit import models

from daemon.snapshot.service import Snapshots
from daemon.store.database import Store


async def test_one_export_per_cid_and_max_age(node: Any) -> None:
    snaps = Snapshots(node)
    first = await snaps.current()
    assert (await snaps.current()).info.root == first.info.root
    assert node.metrics.get("snapshots_exported") == 1
    node.store.commit_local("peerA", [models((0, "m2", "two"))])
    stale = await snaps.current(max_age=300.0)  # good enough for a bootstrap
    assert stale.info.root == first.info.root
    fresh = await snaps.current()  # but not for an export of the current state
    assert fresh.info.db_cid == node.store.db_cid() != first.info.db_cid
    assert node.metrics.get("snapshots_exported") == 2
    assert fresh.info.path.exists() and not first.info.path.exists()
    assert sorted(p.name for p in fresh.info.path.parent.iterdir()) == [fresh.info.path.name]


async def test_an_export_made_to_serve_is_fsynced_before_an_export_returns_it(
    node: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    synced: list[int] = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(fd), real_fsync(fd))[1])
    snaps = Snapshots(node)
    served = await snaps.current(max_age=300.0, durable=False)  # for a bootstrapping peer
    assert not served.durable and synced == []
    exported = await snaps.current()  # peerctl snapshot export: the same file, now on disk
    assert exported is served and exported.durable and len(synced) == 1
    assert (await snaps.current()).durable and len(synced) == 1  # once
    assert node.metrics.get("snapshots_exported") == 1


async def test_an_empty_database_export_is_not_reused_once_rows_arrive(tmp_path: Path) -> None:
    store = Store(tmp_path / "db.duckdb")
    try:
        snaps = Snapshots(FakeNode(store, tmp_path))
        empty = await snaps.current(max_age=300.0, durable=False)  # asked while empty
        assert empty.info.vector == {}
        store.commit_local("peerA", [models((0, "m1", "one"))])
        offered = await snaps.current(max_age=300.0, durable=False)
        assert offered.info.vector == {"peerA": 1} and offered.info.db_cid == store.db_cid()
    finally:
        store.close()
