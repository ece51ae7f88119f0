"""What every format reader shares: the record type, overrides, errors, file reading."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MAX_FILE_BYTES = 256 << 20  # a benchmark report, not a dataset
Overrides = dict[str, Any]  # record fields the user gives on the command line


class FormatError(Exception):
    """The file is not (valid) output of the named tool; the message says where."""


@dataclass(frozen=True)
class Record:
    """One result: record fields, and where in the file it came from."""

    fields: dict[str, Any]
    where: str


def read_text(path: Path) -> str:
    """The file's text, bounded in size; FormatError when unreadable or not UTF-8."""
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise FormatError(f"{path}: {size} bytes is more than a report ({MAX_FILE_BYTES})")
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise FormatError(f"{path}: cannot read: {exc}") from exc


def read_json(path: Path) -> Any:
    try:
        return json.loads(read_text(path))
    except json.JSONDecodeError as exc:
        raise FormatError(f"{path}: not JSON: {exc.msg} at line {exc.lineno}") from exc


def number(value: Any, what: str) -> float:
    """A finite positive-or-zero number, else FormatError naming ``what``."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise FormatError(f"{what}: expected a number, got {value!r}")
    if value != value or value in (float("inf"), float("-inf")) or value < 0:
        raise FormatError(f"{what}: {value!r} is not a finite non-negative number")
    return float(value)


def with_overrides(fields: dict[str, Any], overrides: Overrides) -> dict[str, Any]:
    """``fields`` with the user's values on top (None values in either are dropped)."""
    merged = {k: v for k, v in fields.items() if v is not None}
    merged.update({k: v for k, v in overrides.items() if v is not None})
    return merged
