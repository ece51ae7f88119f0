"""``duckpeerd``: run the daemon, or ``duckpeerd demo`` for a local three-peer cluster."""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import types
from pathlib import Path

from peerctl.usage import VersionAction

EXIT_CONFIG = 2
EXIT_RUNTIME = 1
SWITCH_INTERVAL = 0.001


def build_parser() -> argparse.ArgumentParser:
    """Flags of ``duckpeerd``; flags win over environment and config file."""
    parser = argparse.ArgumentParser(prog="duckpeerd", description=__doc__)
    parser.add_argument("--version", action=VersionAction)
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
    demo.add_argument("--no-web", action="store_true", help="without the web dashboard")
    return parser


class _Absent:
    """An import finder that makes the named packages fail to import, as if they were
    not installed."""

    def __init__(self, names: frozenset[str], why: str) -> None:
        self.names, self.why = names, why

    def find_spec(self, name: str, path: object = None, target: object = None) -> None:
        if name.partition(".")[0] in self.names:
            raise ModuleNotFoundError(self.why, name=name)


class _Deferred:
    """An import finder that loads the modules named in ``names`` only when first used.

    py-libp2p imports httpx and requests at start for its AutoTLS ACME client, which
    the daemon never enables: 14 MB of RSS and ~0.3 s of start-up (measured); aioquic,
    for the QUIC transport it does not enable either, imports service_identity and with
    it pyOpenSSL (~1 MB). A deferred module is executed on its first attribute access,
    so a real use still works.
    """

    def __init__(self, names: frozenset[str]) -> None:
        self.names = names

    def find_spec(self, name: str, path: object = None, target: object = None) -> object:
        if name not in self.names:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(name, path, target)
            if spec is not None and spec.loader is not None:
                spec.loader = _LazyLoader(spec.loader)
                return spec
        return None


class _LazyModule(importlib.util._LazyModule):  # type: ignore[name-defined,misc]
    """importlib's lazy module, except that reading ``__spec__`` does not load it (the
    import system reads it when a second module imports the same name)."""

    def __getattribute__(self, attr: str) -> object:
        if attr == "__spec__":
            return types.ModuleType.__getattribute__(self, attr)
        return super().__getattribute__(attr)


class _LazyLoader(importlib.util.LazyLoader):
    def exec_module(self, module: types.ModuleType) -> None:
        super().exec_module(module)
        module.__class__ = _LazyModule


DEFERRED_IMPORTS = frozenset({"httpx", "requests", "service_identity"})


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``duckpeerd`` console script."""
    args = build_parser().parse_args(argv)
    # pyarrow's default pool (mimalloc) keeps what a bulk ingest freed for seconds to
    # minutes (measured: 100-300 MB of RSS); the system allocator returns it at once.
    # Set before anything imports pyarrow.
    os.environ.setdefault("ARROW_DEFAULT_MEMORY_POOL", "system")
    # pyarrow imports pandas, when installed, on its first conversion (40 MB and most of
    # a second); the daemon never hands Arrow to pandas (Client.query_df does, elsewhere).
    sys.meta_path.insert(0, _Absent(frozenset({"pandas"}), "the daemon does not use pandas"))
    sys.meta_path.insert(0, _Deferred(DEFERRED_IMPORTS))
    if args.command == "demo":
        from daemon.demo import run_demo

        return run_demo(
            once=args.once, results=args.results, timeout=args.timeout, web=not args.no_web
        )
    return _run(args)


def _run(args: argparse.Namespace) -> int:
    # structlog imports rich, when installed, for its console renderer (5.7 MB of RSS and
    # 0.13 s of start-up); the daemon logs JSON. (The demo and peerctl use rich.)
    sys.meta_path.insert(0, _Absent(frozenset({"rich"}), "the daemon does not use rich"))
    import trio

    from daemon.app import run_daemon
    from daemon.config import ConfigError, load_config
    from daemon.logs import configure_logging

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
    # A thread that wants the GIL waits up to this long for the holder to give it up:
    # 1 ms instead of 5 ms keeps the event loop (status, replication, gossip) responsive
    # while query workers convert results (bench/bench_control.py).
    sys.setswitchinterval(SWITCH_INTERVAL)
    try:
        trio.run(run_daemon, config, lambda: load_config(args.config, dict(os.environ), flags))
    except KeyboardInterrupt:
        pass
    except BaseException as exc:  # every expected start-up failure becomes one line
        failure = start_failure(exc)
        if failure is None:
            raise
        code, message = failure
        print(f"duckpeerd: {message}", file=sys.stderr)
        return code
    return 0


def start_failure(exc: BaseException) -> tuple[int, str] | None:
    """Exit code and one-line message for an expected failure (also inside the exception
    groups of trio's nurseries), None for a bug, which keeps its traceback."""
    import duckdb

    from daemon.config import ConfigError
    from daemon.control.server import SocketInUse
    from daemon.net.identity import IdentityError
    from daemon.net.network import NetworkError

    if isinstance(exc, BaseExceptionGroup):
        found = [start_failure(e) for e in exc.exceptions if not isinstance(e, KeyboardInterrupt)]
        known = [f for f in found if f is not None]
        return min(known) if known and len(known) == len(found) else None
    if isinstance(exc, ConfigError | SocketInUse):
        return EXIT_CONFIG, str(exc)
    if isinstance(exc, duckdb.IOException) and "lock" in str(exc).lower():
        return EXIT_CONFIG, f"config data_dir: the database is in use: {_first_line(exc)}"
    if isinstance(exc, IdentityError | NetworkError | OSError | duckdb.Error):
        return EXIT_RUNTIME, _first_line(exc)
    return None


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


if __name__ == "__main__":
    sys.exit(main())
