"""``peerctl``: control a local duckpeerd.

Exit codes: 0 success; 1 the daemon failed the request; 2 bad arguments or a request
the daemon refused as invalid (bad SQL, unknown table...); 3 no daemon reachable on the
socket; 4 ingest finished but skipped bad rows.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from typing import Any

from peerctl import (
    cmd_cache,
    cmd_conflicts,
    cmd_distq,
    cmd_kg,
    cmd_monitor,
    cmd_snapshot,
    cmd_watch,
)
from peerctl.client import Client, ClientError
from peerctl.formats.command import add_format_flags, ingest_format
from peerctl.output import Progress, print_fields, print_json, print_table
from peerctl.usage import (
    Parser,
    UsageError,
    VersionAction,
    check_tabular_file,
    check_utf8,
    int_in,
    non_negative,
    positive_int,
)

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_UNREACHABLE, EXIT_PARTIAL = 0, 1, 2, 3, 4
INGEST_CHUNK = 122_880  # one DuckDB row group per changeset: written once, never rewritten
CHUNK_SIZE = int_in(1, 1_000_000)


# Command groups in their own modules; each has ``register(sub, common)`` adding
# its subcommands with ``set_defaults(run=fn)`` where ``fn(client, args) -> exit code``.
COMMAND_MODULES = (cmd_conflicts, cmd_kg, cmd_cache, cmd_snapshot, cmd_monitor, cmd_distq,
                   cmd_watch)  # fmt: skip


def build_parser() -> Parser:
    """All ``peerctl`` commands and flags."""
    parser = Parser(prog="peerctl", description="Control a local duckpeerd.")
    parser.add_argument("--socket", help="control socket (env DUCKPEER_SOCKET)")
    parser.add_argument("--version", action=VersionAction)
    common = Parser(add_help=False)
    common.add_argument("--json", action="store_true", help="machine-readable output")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    p = sub.add_parser("status", parents=[common], help="identity, CID, peers, row counts")
    p.set_defaults(run=cmd_status)
    p = sub.add_parser("peers", parents=[common], help="known peers and how far apart we are")
    p.set_defaults(run=cmd_peers)
    p = sub.add_parser("connect", parents=[common], help="dial a peer by multiaddr")
    p.set_defaults(run=cmd_connect)
    p.add_argument("addr")
    p = sub.add_parser("sync", parents=[common], help="pull from all peers now")
    p.set_defaults(run=cmd_sync)
    p.add_argument("--peer", help="only this peer id")
    p = sub.add_parser("record", parents=[common], help="store one benchmark result")
    p.set_defaults(run=cmd_record)
    p.add_argument("--model", required=True)
    p.add_argument("--hardware", required=True)
    p.add_argument("--throughput", type=non_negative, required=True)
    p.add_argument("--latency", type=non_negative, required=True)
    p.add_argument("--batch-size", type=positive_int)
    p.add_argument("--precision")
    p.add_argument("--memory-mb", type=non_negative)
    p.add_argument("--test-case")
    p.add_argument("--device-name")
    p = sub.add_parser("ingest", parents=[common], help="store results from CSV/JSON/Parquet")
    p.set_defaults(run=cmd_ingest)
    p.add_argument("file")
    p.add_argument("--chunk-size", type=CHUNK_SIZE, default=INGEST_CHUNK, help="rows per changeset")
    add_format_flags(p)
    p = sub.add_parser("import-db", parents=[common], help="import a legacy benchmark DuckDB")
    p.set_defaults(run=cmd_import_db)
    p.add_argument("file")
    p.add_argument("--chunk-size", type=CHUNK_SIZE, default=50_000)
    p = sub.add_parser("query", parents=[common], help="read-only SQL over the tables")
    p.set_defaults(run=cmd_query)
    p.add_argument("sql")
    p.add_argument("--max-rows", type=positive_int)
    p.add_argument(
        "--format",
        choices=["table", "csv", "json", "parquet"],
        default="table",
        help="csv/json/parquet: the result as Arrow, written as that format",
    )
    p.add_argument("--out", help="write the result to this file (with --format)")
    p = sub.add_parser("update", parents=[common], help="change columns of one row")
    p.set_defaults(run=cmd_update)
    p.add_argument("table")
    p.add_argument("key")
    p.add_argument("--set", action="append", required=True, metavar="COL=VALUE")
    p = sub.add_parser("completion", help="shell completion script (bash, zsh, fish)")
    p.set_defaults(run=cmd_completion)
    p.add_argument("shell", choices=["bash", "zsh", "fish"])
    p = sub.add_parser("delete", parents=[common], help="delete one row")
    p.set_defaults(run=cmd_delete)
    p.add_argument("table")
    p.add_argument("key")
    for module in COMMAND_MODULES:
        module.register(sub, common)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``peerctl`` console script: errors are one line on stderr."""
    argv = sys.argv[1:] if argv is None else argv
    try:
        check_utf8(argv)
        parser = build_parser()
        if "_ARGCOMPLETE" in os.environ:  # the shell asks for completions (argcomplete)
            import argcomplete

            argcomplete.autocomplete(parser)
        args = parser.parse_args(argv)
        with Client(args.socket) as client:
            run: Callable[[Client, argparse.Namespace], int] = args.run
            return run(client, args)
    except UsageError as exc:
        return _fail(str(exc), EXIT_USAGE)
    except ClientError as exc:
        return _fail(str(exc), exc.exit_code)
    except KeyboardInterrupt:
        return _fail("interrupted", 130)
    except BrokenPipeError:  # the reader went away (``peerctl ... | head``): no traceback
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except OSError as exc:  # a file of ours: unwritable --out, unreadable input...
        where = f"{exc.filename}: " if exc.filename else ""
        return _fail(f"{where}{exc.strerror or exc}", EXIT_USAGE)
    except Exception as exc:  # a bug: still one line (PEERCTL_DEBUG=1 shows the traceback)
        if os.environ.get("PEERCTL_DEBUG"):
            raise
        return _fail(f"internal error: {type(exc).__name__}: {exc}", EXIT_FAILED)


def _fail(message: str, code: int) -> int:
    first = message.strip().splitlines()[0] if message.strip() else "failed"
    print(f"peerctl: {first}", file=sys.stderr)
    return code


def cmd_completion(client: Client, args: argparse.Namespace) -> int:
    """Print the completion script; e.g. ``eval "$(peerctl completion bash)"``."""
    import argcomplete

    print(argcomplete.shellcode(["peerctl"], shell=args.shell))
    return EXIT_OK


def cmd_status(client: Client, args: argparse.Namespace) -> int:
    status = client.status()
    if args.json:
        print_json(status)
        return EXIT_OK
    print_fields(
        [
            ("peer_id", status["peer_id"]),
            ("db_cid", status["db_cid"]),
            ("cluster", status["cluster"]),
            ("peers", status["peers"]),
            ("changesets", status["changesets"]),
            ("listen", " ".join(status["listen_addrs"])),
            *((f"rows.{k}", v) for k, v in status["rows"].items()),
        ]
    )
    return EXIT_OK


def cmd_peers(client: Client, args: argparse.Namespace) -> int:
    peers = client.peers()
    if args.json:
        print_json(peers)
        return EXIT_OK
    rows = [
        [p["peer_id"], p["connected"], p["db_cid"], p["we_lack"], p["they_lack"], p["load"]]
        for p in peers
    ]
    print_table(["peer_id", "connected", "db_cid", "we_lack", "they_lack", "load"], rows)
    return EXIT_OK


def cmd_connect(client: Client, args: argparse.Namespace) -> int:
    peer = client.connect(args.addr)
    print_json({"peer_id": peer}) if args.json else print(peer)
    return EXIT_OK


def cmd_sync(client: Client, args: argparse.Namespace) -> int:
    result = client.sync(args.peer)
    if args.json:
        print_json(result)
    else:
        for p in result["peers"]:
            if "error" in p:
                print(f"peerctl: {p['peer']}: {p['error']}", file=sys.stderr)
                continue
            pushed = f", pushed {p['pushed']}" if "pushed" in p else ""
            print(f"{p['peer']}: received {p['received']}, applied {p['applied']}, "
                  f"conflicts {p['conflicts']}{pushed}")  # fmt: skip
        print(
            f"pulled {result['pulled']} changesets, {result['conflicts']} conflicts found; "
            f"db_cid {result['db_cid']}"
        )
    failed = [p for p in result["peers"] if "error" in p]
    return EXIT_FAILED if failed and len(failed) == len(result["peers"]) else EXIT_OK


def cmd_record(client: Client, args: argparse.Namespace) -> int:
    result_id = client.store_performance_result(
        model_name=args.model,
        hardware_type=args.hardware,
        throughput=args.throughput,
        latency=args.latency,
        batch_size=args.batch_size,
        precision=args.precision,
        memory_mb=args.memory_mb,
        test_case=args.test_case,
        device_name=args.device_name,
    )
    print_json({"result_id": result_id}) if args.json else print(result_id)
    return EXIT_OK


def cmd_ingest(client: Client, args: argparse.Namespace) -> int:
    from pathlib import Path

    from peerctl.ingest import ingest_file, skip_pandas
    from peerctl.records import RecordFileError

    if args.format:
        return ingest_format(client, args)
    check_tabular_file(args.file)
    skip_pandas()
    try:
        summary = ingest_file(client, Path(args.file), args.chunk_size)
    except RecordFileError as exc:
        raise UsageError(str(exc)) from exc
    bad = summary["errors"]
    if not summary["rows"] and not summary["bad_rows"]:
        raise UsageError(f"{args.file}: no records found")
    if args.json:
        print_json(summary)
    else:
        for line in bad:
            print(f"peerctl: skipped {line}", file=sys.stderr)
        print(
            f"ingested {summary['rows']} rows in {summary['changesets']} changesets "
            f"({summary['seconds']} s); skipped {summary['bad_rows']} bad rows"
        )
    return EXIT_PARTIAL if summary["bad_rows"] else EXIT_OK


def cmd_import_db(client: Client, args: argparse.Namespace) -> int:
    from pathlib import Path

    from peerctl.importdb import LegacyDbError, read_legacy

    summary: dict[str, dict[str, int]] = {}
    progress = Progress(None, f"import {Path(args.file).name}")
    try:
        for table, columns in read_legacy(Path(args.file), args.chunk_size):
            done = client.call("import_rows", table=table, columns=columns)
            counts = summary.setdefault(table, {"new": 0, "existing": 0})
            counts["new"] += done["new"]
            counts["existing"] += done["existing"]
            progress.advance(done["new"] + done["existing"])
    except LegacyDbError as exc:
        raise UsageError(str(exc)) from exc
    progress.finish()
    if args.json:
        print_json(summary)
    else:
        print_table(["table", "new", "already present"],
                    [[t, c["new"], c["existing"]] for t, c in summary.items()])  # fmt: skip
    return EXIT_OK


def cmd_query(client: Client, args: argparse.Namespace) -> int:
    if args.format != "table" or args.out:
        return _query_to_file(client, args)
    result = client.query(args.sql, args.max_rows)
    if args.json:
        print_json([dict(zip(result["columns"], row, strict=True)) for row in result["rows"]])
    else:
        print_table(result["columns"], result["rows"])
        print(f"({len(result['rows'])} rows, {result['elapsed_ms']} ms)")
    return EXIT_OK


def _query_to_file(client: Client, args: argparse.Namespace) -> int:
    import os

    from peerctl.export import ExportError, write_result

    fmt = "csv" if args.format == "table" else args.format
    if fmt == "parquet" and not args.out:
        raise UsageError("--format parquet needs --out FILE")
    table = client.query_arrow(args.sql, args.max_rows)
    try:
        write_result(table, fmt, os.path.abspath(args.out) if args.out else None)
    except ExportError as exc:
        raise UsageError(str(exc)) from exc
    if args.out:
        summary = {"rows": table.num_rows, "format": fmt, "out": os.path.abspath(args.out)}
        print_json(summary) if args.json else print(f"wrote {table.num_rows} rows to {args.out}")
    return EXIT_OK


def cmd_update(client: Client, args: argparse.Namespace) -> int:
    values = {}
    for item in args.set:
        column, sep, value = item.partition("=")
        if not sep or not column:
            raise UsageError(f"--set wants COL=VALUE, got {item!r}")
        values[column] = _parse_value(value)
    result = client.update(args.table, args.key, values)
    print_json(result) if args.json else print(result["cid"])
    return EXIT_OK


def cmd_delete(client: Client, args: argparse.Namespace) -> int:
    result = client.delete(args.table, args.key)
    print_json(result) if args.json else print(result["cid"])
    return EXIT_OK


def _parse_value(text: str) -> Any:
    """``null``/numbers/booleans as JSON, anything else as a string."""
    import json

    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


if __name__ == "__main__":
    sys.exit(main())
