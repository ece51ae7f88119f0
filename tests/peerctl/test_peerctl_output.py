"""peerctl.output: tables for people, JSON for scripts, a progress line on terminals only."""

from __future__ import annotations

import contextlib
import datetime
import io
import json
import threading
import time

from peerctl.output import Progress, print_fields, print_json, print_table


def test_table_is_aligned_and_formats_cells() -> None:
    out = io.StringIO()
    print_table(
        ["model", "tput", "meta"],
        [["bert-base", 812.123456789, {"a": 1}], ["t5", None, [1, 2]], ["x", 3, True]],
        out,
    )
    lines = out.getvalue().splitlines()
    assert lines[0] == "model      tput     meta"
    assert lines[1] == "---------  -------  --------"
    assert lines[2] == 'bert-base  812.123  {"a": 1}'
    assert lines[3] == "t5                  [1, 2]"
    assert lines[4] == "x          3        True"


def test_empty_table_has_header_only() -> None:
    out = io.StringIO()
    print_table(["a", "bb"], [], out)
    assert out.getvalue() == "a  bb\n-  --\n"


def test_fields_are_aligned() -> None:
    out = io.StringIO()
    print_fields([("peer_id", "12D3"), ("rows.models", 5), ("empty", None)], out)
    lines = [line.rstrip() for line in out.getvalue().splitlines()]
    assert lines == ["peer_id      12D3", "rows.models  5", "empty"]


def test_json_handles_non_json_values() -> None:
    out = io.StringIO()
    stamp = datetime.datetime(2024, 1, 2, 3, 4, 5)
    print_json({"at": stamp, "n": 1}, out)
    assert json.loads(out.getvalue()) == {"at": "2024-01-02 03:04:05", "n": 1}


def test_default_streams_follow_redirection() -> None:
    """Defaults are resolved per call: redirect_stdout (and pytest's capsys) see the output."""
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        print_json([1])
        print_table(["a"], [[1]])
        print_fields([("k", "v")])
    assert buffer.getvalue() == "[\n  1\n]\na\n-\n1\nk  v\n"


def test_progress_is_silent_unless_a_terminal() -> None:
    stream = io.StringIO()
    progress = Progress(10, "ingest", stream)
    progress.advance(5)
    progress.finish()
    assert stream.getvalue() == "" and progress.done == 5


def test_progress_on_a_terminal() -> None:
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    stream = Tty()
    progress = Progress(4, "ingest", stream)
    progress.advance(2)
    progress.advance(4)  # over the total: capped at a full bar
    progress.finish()
    text = stream.getvalue()
    assert "\ringest [###############               ] 2/4" in text
    assert "[" + "#" * 30 + "] 6/4" in text and text.endswith("\n")

    unknown = Tty()
    Progress(None, "x", unknown).advance(3)
    assert unknown.getvalue() == "\rx 3"


def test_the_total_is_counted_only_for_a_terminal_and_off_the_callers_thread() -> None:
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    counted: list[str] = []
    quiet = Progress(None, "ingest", io.StringIO())
    quiet.count_total(lambda: counted.append(threading.current_thread().name) or 5)
    assert counted == [] and quiet.total is None

    shown = Progress(None, "ingest", Tty())
    shown.count_total(lambda: counted.append(threading.current_thread().name) or 5)
    deadline = time.monotonic() + 10
    while shown.total is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert shown.total == 5 and counted == ["progress-total"]
