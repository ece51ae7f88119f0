"""Control methods for snapshots: export, import, bootstrap from peers."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import duckdb
import trio

from daemon.node import Node
from daemon.snapshot.archive import SnapshotError, import_snapshot
from daemon.snapshot.ipfs import IpfsPushError, push_car
from daemon.snapshot.prune import pruner_of
from daemon.snapshot.service import BootstrapFailed, bootstrap, release, snapshots_of
from protocol.control import ControlError, param


def _path(params: dict[str, Any], name: str, required: bool = True) -> Path | None:
    text = param(params, name, str, required)
    if text is None:
        return None
    path = Path(text)
    if not path.is_absolute():
        raise ControlError("bad_request", f"{name} must be an absolute path (the daemon opens it)")
    return path


async def snapshot_export(node: Node, params: dict[str, Any]) -> dict[str, Any]:
    """Snapshot the current state (reused while the database CID holds); copy it to
    ``path`` if given; push it to the configured IPFS node."""
    out = _path(params, "path", required=False)
    try:
        served = await snapshots_of(node).current()
    except (OSError, SnapshotError, duckdb.Error) as exc:
        raise ControlError("failed", f"export failed: {exc}") from exc
    result = served.info.to_wire()
    if out is not None:
        try:
            await trio.to_thread.run_sync(shutil.copyfile, served.info.path, out)
        except OSError as exc:
            raise ControlError("bad_request", f"cannot write {out}: {exc.strerror}") from exc
        result["path"] = str(out)
    if node.config.ipfs_api:
        api = node.config.ipfs_api
        try:
            result["ipfs"] = await trio.to_thread.run_sync(push_car, api, served.info.path)
            node.metrics.inc("snapshot_ipfs_pushes")
        except IpfsPushError as exc:
            node.metrics.inc("snapshot_ipfs_errors")
            result["ipfs"] = {"api": api, "error": str(exc)}
    return result


async def snapshot_import(node: Node, params: dict[str, Any]) -> dict[str, Any]:
    """Verify and load a snapshot CAR (daemon-readable path) into our empty store."""
    path = _path(params, "path")
    assert path is not None
    try:
        info = await node.write(lambda store: import_snapshot(store, path))
    except SnapshotError as exc:
        node.metrics.inc("snapshot_import_refused")
        raise ControlError("bad_request", str(exc)) from exc
    node.metrics.inc("snapshot_imports")
    release(node)  # catch up by delta from the snapshot's vector
    return info.to_wire() | {"loaded_db_cid": node.store.db_cid()}


async def snapshot_bootstrap(node: Node, params: dict[str, Any]) -> dict[str, Any]:
    """Fetch the most advanced snapshot from connected peers (or ``peers``) and load it."""
    peers = params.get("peers") or [p for p in node.connected_peers() if node.config.trusts(p)]
    if not isinstance(peers, list) or not all(isinstance(p, str) for p in peers):
        raise ControlError("bad_request", "peers must be a list of peer ids")
    if node.store.heads_snapshot():
        raise ControlError("bad_request", "the store is not empty: a snapshot loads only into "
                                          "an empty store")  # fmt: skip
    if not peers:
        raise ControlError("unavailable", "no connected peer to bootstrap from")
    node.sync_held = True
    try:
        result = await bootstrap(node, peers)
    except BootstrapFailed as exc:
        raise ControlError("failed", str(exc)) from exc
    finally:
        release(node)
    return result.to_wire() | {"loaded_db_cid": node.store.db_cid()}


async def snapshot_prune(node: Node, params: dict[str, Any]) -> dict[str, Any]:
    """Drop now the changeset blocks every known peer holds and compact the log."""
    done = await pruner_of(node).run_once(grace=0.0)
    return done.to_wire() | {"log_bytes": node.store.blocklog.size_bytes()}


METHODS = {
    "snapshot_prune": snapshot_prune,
    "snapshot_export": snapshot_export,
    "snapshot_import": snapshot_import,
    "snapshot_bootstrap": snapshot_bootstrap,
}
