"""``duckpeerd``: run the daemon, or ``duckpeerd demo`` for a local three-peer cluster."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

EXIT_CONFIG = 2
EXIT_RUNTIME = 1


def build_parser() -> argparse.ArgumentParser:
    """Flags of ``duckpeerd``; flags win over environment and config file."""
    parser = argparse.ArgumentParser(prog="duckpeerd", description=__doc__)
    parser.add_argument("--config", type=Path, help="TOML config file (env DUCKPEER_CONFIG)")
    parser.add_argument("--data-dir", type=Path, help="where the database and identity live")
    parser.add_argument("--listen", action="append", help="libp2p multiaddr to listen on")
    parser.add_argument("--control-socket", type=Path, help="Unix control socket path")
    parser.add_argument("--bootstrap", action="append", help="peer multiaddr (/p2p/<id>) to join")
    parser.add_argument("--cluster", help="cluster name (gossip topic /duckpeer/<cluster>/v1)")
    parser.add_argument("--mdns", action="store_true", default=None, help="LAN discovery")
    parser.add_argument("--log-level", choices=["debug", "info", "warning", "error"])
    sub = parser.add_subparsers(dest="command")
    demo = sub.add_parser("demo", help="three peers on loopback, live convergence table")
    demo.add_argument("--once", action="store_true", help="exit after convergence")
    demo.add_argument("--results", type=int, default=500, help="sample results to write")
    demo.add_argument("--timeout", type=float, default=60.0, help="give up after seconds")
    return parser


class _NoPandas:
    """An import finder that makes ``import pandas`` fail as if it were not installed."""

    def find_spec(self, name: str, path: object = None, target: object = None) -> None:
        if name == "pandas" or name.startswith("pandas."):
            raise ModuleNotFoundError("the daemon does not use pandas", name=name)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``duckpeerd`` console script."""
    args = build_parser().parse_args(argv)
    # pyarrow's default pool (mimalloc) keeps what a bulk ingest freed for seconds to
    # minutes (measured: 100-300 MB of RSS); the system allocator returns it at once.
    # Set before anything imports pyarrow.
    os.environ.setdefault("ARROW_DEFAULT_MEMORY_POOL", "system")
    # pyarrow imports pandas, when installed, on its first conversion (40 MB and most of
    # a second); the daemon never hands Arrow to pandas (Client.query_df does, elsewhere).
    sys.meta_path.insert(0, _NoPandas())
    if args.command == "demo":
        from daemon.demo import run_demo

        return run_demo(once=args.once, results=args.results, timeout=args.timeout)
    return _run(args)


def _run(args: argparse.Namespace) -> int:
    import trio

    from daemon.app import run_daemon
    from daemon.config import ConfigError, load_config
    from daemon.control.server import SocketInUse
    from daemon.logs import configure_logging
    from daemon.net.identity import IdentityError
    from daemon.net.network import NetworkError

    flags = {
        "data_dir": args.data_dir,
        "listen": args.listen,
        "control_socket": args.control_socket,
        "bootstrap": args.bootstrap,
        "cluster": args.cluster,
        "mdns": args.mdns,
        "log_level": args.log_level,
    }
    try:
        config = load_config(args.config, dict(os.environ), flags)
    except ConfigError as exc:
        print(f"duckpeerd: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    configure_logging(config.log_level)
    try:
        trio.run(run_daemon, config, lambda: load_config(args.config, dict(os.environ), flags))
    except ConfigError as exc:
        print(f"duckpeerd: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except (SocketInUse, IdentityError, NetworkError, OSError) as exc:
        print(f"duckpeerd: {exc}", file=sys.stderr)
        return EXIT_RUNTIME
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
