"""Usage errors: a bad argument is one line on stderr and exit code 2."""

from __future__ import annotations

import argparse
from typing import Any, NoReturn


class UsageError(Exception):
    """A bad argument; printed as one line, exit code 2."""


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors instead of usage dumps."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


def package_version() -> str:
    """duckpeer's installed version (one package ships peerctl and duckpeerd)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("duckpeer")
    except PackageNotFoundError:
        return "unknown (not installed)"


class VersionAction(argparse.Action):
    """``--version``: print ``PROG VERSION`` and exit; the version is looked up only
    then (importlib.metadata costs milliseconds that every other command would pay)."""

    def __init__(self, option_strings: list[str], dest: str = argparse.SUPPRESS,
                 **kwargs: Any) -> None:  # fmt: skip
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS,
                         help="print the version and exit")  # fmt: skip

    def __call__(self, parser: argparse.ArgumentParser, *args: Any) -> None:
        print(f"{parser.prog} {package_version()}")
        parser.exit()
