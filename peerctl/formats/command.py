"""``peerctl ingest --format NAME FILE``: a benchmark tool's output as results."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from peerctl.client import Client
from peerctl.formats import FORMATS, FormatError, as_columns, read
from peerctl.output import print_json
from peerctl.usage import UsageError

OVERRIDES = {  # flag dest -> record field
    "model": "model_name",
    "hardware": "hardware_type",
    "device_name": "device_name",
    "precision": "precision",
    "format_batch_size": "batch_size",
}


def add_format_flags(p: argparse.ArgumentParser) -> None:
    """``--format`` and the fields a tool's output may not name."""
    p.add_argument("--format", choices=sorted(FORMATS), help="a benchmark tool's output")
    p.add_argument("--model", help="with --format: model_name of every result")
    p.add_argument("--hardware", help="with --format: hardware_type of every result")
    p.add_argument("--device-name", help="with --format: device_name of every result")
    p.add_argument("--precision", help="with --format: precision of every result")
    p.add_argument("--batch-size", dest="format_batch_size", type=int,
                   help="with --format: batch_size of every result")  # fmt: skip


def ingest_format(client: Client, args: argparse.Namespace) -> int:
    """Read the file in its tool's format and store its results as one changeset."""
    overrides: dict[str, Any] = {field: getattr(args, dest) for dest, field in OVERRIDES.items()}
    if overrides["batch_size"] is not None and overrides["batch_size"] < 1:
        raise UsageError("--batch-size must be a positive integer")
    try:
        records = read(args.format, Path(args.file), overrides)
    except FormatError as exc:
        raise UsageError(str(exc)) from exc
    if not records:
        raise UsageError(f"{args.file}: no results in it")
    stored = client.ingest_columns(as_columns(records))
    summary = {"rows": stored["rows"], "format": args.format, "changesets": 1,
               "sources": [r.where for r in records][:20]}  # fmt: skip
    if args.json:
        print_json(summary)
    else:
        print(f"ingested {stored['rows']} {args.format} results from {args.file}", file=sys.stdout)
    return 0
