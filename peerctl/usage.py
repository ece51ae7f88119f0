"""Usage errors: a bad argument is one line on stderr and exit code 2.

Numeric flags take their type from here (``type=positive_int`` ...): a value out of
range is refused while parsing, with the flag's name, before anything is sent.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
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


def int_in(low: int, high: int | None = None) -> Callable[[str], int]:
    """An argparse type: an integer from ``low`` to ``high`` (inclusive)."""

    def parse(text: str) -> int:
        try:
            value = int(text, 10)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < low or (high is not None and value > high):
            bound = f"from {low} to {high}" if high is not None else f">= {low}"
            raise argparse.ArgumentTypeError(f"must be an integer {bound}, got {value}")
        return value

    parse.__name__ = "integer"
    return parse


def float_in(
    low: float, high: float = math.inf, *, low_open: bool = False
) -> Callable[[str], float]:
    """An argparse type: a finite number from ``low`` (excluded if ``low_open``) to ``high``."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        too_low = value < low or (low_open and value == low)
        if not math.isfinite(value) or too_low or value > high:
            lower = f"> {low:g}" if low_open else f">= {low:g}"
            upper = "" if math.isinf(high) else f" and <= {high:g}"
            raise argparse.ArgumentTypeError(f"must be a finite number {lower}{upper}, got {text}")
        return value

    parse.__name__ = "number"
    return parse


positive_int = int_in(1)
non_negative = float_in(0.0)
positive = float_in(0.0, low_open=True)


def check_utf8(argv: list[str]) -> None:
    """Arguments that were not valid UTF-8 (Python keeps them as lone surrogates) cannot
    travel to the daemon: refuse them here, by position."""
    for position, arg in enumerate(argv, start=1):
        try:
            arg.encode("utf-8")
        except UnicodeEncodeError:
            raise UsageError(f"argument {position} is not valid UTF-8") from None


SNIFF_BYTES = 64 << 10


def check_tabular_file(path: str) -> None:
    """An ingest file must be readable, and text for CSV/JSON (Parquet: its magic)."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(SNIFF_BYTES)
    except OSError as exc:
        raise UsageError(f"{path}: {exc.strerror or exc}") from None
    if path.lower().endswith(".parquet"):
        if not head.startswith(b"PAR1"):
            raise UsageError(f"{path}: not a Parquet file")
        return
    if b"\x00" in head or not _utf8_prefix(head):
        raise UsageError(f"{path}: binary data, not a CSV or JSON text file")


def _utf8_prefix(data: bytes) -> bool:
    """True when ``data`` is UTF-8, allowing a character cut off at the end."""
    for cut in range(4):
        try:
            data[: len(data) - cut].decode("utf-8")
        except UnicodeDecodeError:
            continue
        return True
    return False
