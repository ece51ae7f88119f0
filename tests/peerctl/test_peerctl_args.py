"""peerctl on hostile argument vectors: never a traceback, errors as one line on stderr,
numbers range-checked before anything is sent, files checked before they are read."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from peerctl.cli import EXIT_UNREACHABLE, EXIT_USAGE, build_parser, main


def outcome(capsys: pytest.CaptureFixture[str], argv: list[str]) -> tuple[int, list[str]]:
    code = main(argv)
    out, err = capsys.readouterr()
    lines = err.splitlines()
    assert "Traceback" not in err and "Traceback" not in out
    if code:
        assert len(lines) == 1 and lines[0].startswith("peerctl: "), err
    return code, lines


BAD_NUMBERS = [
    ["query", "SELECT 1", "--max-rows", "-5"],
    ["query", "SELECT 1", "--max-rows", "0"],
    ["query", "SELECT 1", "--max-rows", "1e3"],
    ["query", "SELECT 1", "--max-rows", "99999999999999999999999x"],
    ["record", "--model", "m", "--hardware", "h", "--throughput", "1", "--latency", "1",
     "--batch-size", "-3"],
    ["record", "--model", "m", "--hardware", "h", "--throughput", "nan", "--latency", "1"],
    ["record", "--model", "m", "--hardware", "h", "--throughput", "1", "--latency", "-inf"],
    ["record", "--model", "m", "--hardware", "h", "--throughput", "1", "--latency", "1",
     "--memory-mb", "-1"],
    ["ingest", "x.csv", "--chunk-size", "0"],
    ["ingest", "x.csv", "--chunk-size", "100000000"],
    ["import-db", "x.duckdb", "--chunk-size", "-1"],
    ["kg", "similar", "x", "--top-k", "0"],
    ["kg", "similar", "x", "--min-similarity", "2"],
    ["kg", "patterns", "--limit", "-1"],
    ["query", "SELECT 1", "--distributed", "--nodes", "0"],
    ["query", "SELECT 1", "--distributed", "--nodes", "1000"],
    ["top", "--interval", "0"],
    ["verify", "--timeout", "-1"],
    ["verify", "--timeout", "1000"],
]  # fmt: skip


@pytest.mark.parametrize("argv", BAD_NUMBERS, ids=[" ".join(a) for a in BAD_NUMBERS])
def test_numbers_out_of_range_are_usage_errors(
    capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    code, err = outcome(capsys, argv)
    assert code == EXIT_USAGE, err


def test_non_utf8_arguments(capsys: pytest.CaptureFixture[str]) -> None:
    sql = os.fsdecode(b"SELECT '\xff\xfe'")  # as Python hands such argv bytes over
    code, err = outcome(capsys, ["query", sql])
    assert code == EXIT_USAGE and "not valid UTF-8" in err[0]


def test_report_out_checked_before_any_work(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    for out in ("/proc/no/such/dir/r.html", str(tmp_path)):
        code, err = outcome(capsys, ["report", "--out", out])
        assert code == EXIT_USAGE and "--out" in err[0]
    locked = tmp_path / "ro"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        if not os.access(locked, os.W_OK):  # root may write anyway
            code, err = outcome(capsys, ["report", "--out", str(locked / "r.html")])
            assert code == EXIT_USAGE and "not writable" in err[0]
    finally:
        locked.chmod(0o700)


def test_binary_and_empty_ingest_files(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    binary = tmp_path / "junk.csv"
    binary.write_bytes(bytes(range(256)) * 50)
    code, err = outcome(capsys, ["ingest", str(binary)])
    assert code == EXIT_USAGE and "binary" in err[0]
    fake_parquet = tmp_path / "x.parquet"
    fake_parquet.write_text("model,hardware\n")
    code, err = outcome(capsys, ["ingest", str(fake_parquet)])
    assert code == EXIT_USAGE and "not a Parquet file" in err[0]
    code, err = outcome(capsys, ["ingest", str(tmp_path / "missing.csv")])
    assert code == EXIT_USAGE
    unreadable = tmp_path / "dir.csv"
    unreadable.mkdir()
    code, err = outcome(capsys, ["ingest", str(unreadable)])
    assert code == EXIT_USAGE


def commands() -> list[str]:
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    return sorted(sub.choices)  # type: ignore[attr-defined]


TOKENS = st.sampled_from(
    ["--json", "--max-rows", "-1", "0", "1", "nan", "inf", "-inf", "1e309", "--chunk-size",
     "--batch-size", "--top-k", "--nodes", "--limit", "--timeout", "--interval", "--out",
     "/proc/x", "--peer", "x", "--set", "a=", "=b", "--values", "{", "--take", "--table",
     "--partition", "hash", "--distributed", "--window", "-5m", "--", "-", "", "\x00",
     os.fsdecode(b"\xff"), "é", "SELECT 1", "record", "stats", "export", "similar"]
)  # fmt: skip


@settings(
    max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.sampled_from(commands()), st.lists(TOKENS | st.text(max_size=8), max_size=8))
def test_any_argument_vector_fails_cleanly(
    capsys: pytest.CaptureFixture[str], command: str, rest: list[str]
) -> None:
    """Without a daemon every vector ends in a usage error, an unreachable daemon or
    (for local-only commands) success; always without a traceback."""
    code, _ = outcome(capsys, [command, *rest])
    assert code in (0, 1, EXIT_USAGE, EXIT_UNREACHABLE)
