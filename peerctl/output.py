"""Printing results: aligned text tables for people, JSON for scripts."""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable, Sequence
from typing import Any, TextIO


def print_json(value: Any, out: TextIO | None = None) -> None:
    """One JSON document."""
    import json  # lazily: most commands print tables

    out = out or sys.stdout  # looked up per call, so redirect_stdout and capsys work
    json.dump(value, out, indent=2, sort_keys=False, default=str)
    out.write("\n")


def print_table(
    columns: Sequence[str], rows: Sequence[Sequence[Any]], out: TextIO | None = None
) -> None:
    """An aligned plain-text table."""
    out = out or sys.stdout
    cells = [[_cell(v) for v in row] for row in rows]
    widths = [len(c) for c in columns]
    for row in cells:
        widths = [max(w, len(v)) for w, v in zip(widths, row, strict=True)]
    out.write("  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip() + "\n")
    out.write("  ".join("-" * w for w in widths) + "\n")
    for row in cells:
        out.write("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip() + "\n")


def print_fields(pairs: Sequence[tuple[str, Any]], out: TextIO | None = None) -> None:
    """``key: value`` lines, keys aligned."""
    out = out or sys.stdout
    width = max((len(k) for k, _ in pairs), default=0)
    for key, value in pairs:
        out.write(f"{key.ljust(width)}  {_cell(value)}\n")


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, dict | list):
        import json

        return json.dumps(value, default=str)
    return str(value)


class Progress:
    """A one-line progress bar on stderr (only when stderr is a terminal)."""

    def __init__(self, total: int | None, label: str, stream: TextIO | None = None) -> None:
        stream = stream or sys.stderr
        self.total, self.label, self.stream, self.done = total, label, stream, 0
        self.enabled = stream.isatty()

    def count_total(self, count: Callable[[], int | None]) -> None:
        """Learn the total from ``count()`` in a background thread, and only if the bar
        is shown: counting a file's lines reads all of it once more (0.6 s for 10M CSV
        rows), work that nothing uses when stderr is not a terminal."""
        if self.enabled:
            threading.Thread(target=lambda: setattr(self, "total", count()), daemon=True,
                             name="progress-total").start()  # fmt: skip

    def advance(self, n: int) -> None:
        """Add ``n`` finished items and redraw."""
        self.done += n
        if not self.enabled:
            return
        if self.total:
            frac = min(1.0, self.done / self.total)
            bar = "#" * int(frac * 30)
            self.stream.write(f"\r{self.label} [{bar:<30}] {self.done}/{self.total}")
        else:
            self.stream.write(f"\r{self.label} {self.done}")
        self.stream.flush()

    def finish(self) -> None:
        """End the progress line."""
        if self.enabled:
            self.stream.write("\n")
