"""``peerctl snapshot export|import|ls|bootstrap``: the database as a CAR file.

``ls`` reads and verifies a CAR locally (no daemon needed); the others ask the daemon,
which reads and writes the files itself, so paths are made absolute here.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from peerctl.client import Client
from peerctl.output import print_fields, print_json, print_table

EXIT_OK, EXIT_FAILED = 0, 1


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    """Add the ``snapshot`` command group."""
    p = sub.add_parser("snapshot", help="export, import and inspect database snapshots (CAR)")
    group = p.add_subparsers(dest="snapshot_command", required=True, parser_class=type(p))
    q = group.add_parser("export", parents=[common], help="snapshot the database as a CAR")
    q.add_argument("--out", help="copy the CAR here (the daemon writes it)")
    q.set_defaults(run=cmd_export)
    q = group.add_parser("import", parents=[common], help="load a CAR into an empty daemon")
    q.add_argument("file")
    q.set_defaults(run=cmd_import)
    q = group.add_parser("ls", parents=[common], help="verify a CAR and list its contents")
    q.add_argument("file")
    q.set_defaults(run=cmd_ls)
    q = group.add_parser("prune", parents=[common], help="drop log blocks all known peers hold")
    q.set_defaults(run=cmd_prune)
    q = group.add_parser("bootstrap", parents=[common], help="load the latest snapshot of peers")
    q.add_argument("--peer", action="append", help="peer id (repeatable; default: connected)")
    q.set_defaults(run=cmd_bootstrap)


def cmd_export(client: Client, args: argparse.Namespace) -> int:
    out = os.path.abspath(args.out) if args.out else None
    result = client.snapshot_export(out)
    if args.json:
        print_json(result)
        return EXIT_OK
    print(f"snapshot {result['root']}")
    print(f"database {result['db_cid']}")
    print(f"file     {result['path']} ({result['bytes']:,} bytes, {result['blocks']} blocks)")
    ipfs = result.get("ipfs")
    if ipfs:
        print(f"ipfs     {ipfs.get('error') or 'pinned ' + ', '.join(ipfs['roots'])}")
    return EXIT_FAILED if ipfs and ipfs.get("error") else EXIT_OK


def cmd_prune(client: Client, args: argparse.Namespace) -> int:
    result = client.snapshot_prune()
    if args.json:
        print_json(result)
    else:
        print(
            f"pruned {result['changesets']} changesets ({result['block_bytes']:,} bytes), "
            f"moved {result['moved_bytes']:,} bytes; log now {result['log_bytes']:,} bytes"
        )
    return EXIT_OK


def cmd_import(client: Client, args: argparse.Namespace) -> int:
    result = client.snapshot_import(os.path.abspath(args.file))
    if args.json:
        print_json(result)
    else:
        print(f"loaded snapshot {result['root']}: database {result['loaded_db_cid']}")
        _rows(result["rows"])
    return EXIT_OK


def cmd_bootstrap(client: Client, args: argparse.Namespace) -> int:
    result = client.snapshot_bootstrap(args.peer)
    if args.json:
        print_json(result)
    elif result.get("skipped"):
        print(f"nothing loaded: {result['skipped']}")
    else:
        mb = result["bytes"] / 1e6
        took = f"fetched in {result['fetch_s']:.2f} s, loaded in {result['load_s']:.2f} s"
        print(f"loaded snapshot {result['root']} from {len(result['peers'])} peer(s): "
              f"{mb:.1f} MB {took}; database {result['loaded_db_cid']}")  # fmt: skip
    return EXIT_OK


def cmd_ls(client: Client, args: argparse.Namespace) -> int:
    from pathlib import Path

    from daemon.snapshot.archive import SnapshotError, SnapshotReader  # heavy imports, only here

    try:
        with SnapshotReader(Path(args.file).resolve()) as snap:
            info = snap.info()
            files = {name: snap.read_file(name) for name in snap.files}
    except SnapshotError as exc:
        print(f"peerctl: {exc}", file=sys.stderr)
        return EXIT_FAILED
    sizes = {name: len(data) for name, data in files.items()}
    if args.json:
        print_json(info.to_wire() | {"files": sizes, "verified": True})
        return EXIT_OK
    blocks = f"{info.blocks} (all verified)"
    print_fields([("snapshot", info.root), ("database", info.db_cid),
                  ("vector", info.vector), ("blocks", blocks)])  # fmt: skip
    print_table(["file", "bytes"], [[n, s] for n, s in sorted(sizes.items())])
    _rows(info.rows)
    return EXIT_OK


def _rows(rows: dict[str, int]) -> None:
    print_table(["table", "rows"], [[t, n] for t, n in rows.items()])
