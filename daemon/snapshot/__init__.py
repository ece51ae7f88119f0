"""Snapshots: the whole database at one CID as a UnixFS directory in a CARv1.

- ``archive``: export and import (Parquet per table, manifest, CAR).
- ``service``: ``/duckpeer/snapshot/1`` and bootstrap of an empty store from peers.
- ``ipfs``: pushing a CAR to an IPFS node.
- ``methods``: ``snapshot_export``, ``snapshot_import``, ``snapshot_bootstrap``.
"""
