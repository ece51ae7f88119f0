"""peerctl.records: reading result records from CSV, JSON, JSON lines and Parquet, in chunks."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from peerctl.records import REQUIRED, Chunk, RecordFileError, count_rows, normalize, read_chunks

ROWS = [
    {"model": "bert-base-uncased", "hardware": "cuda", "throughput": 812.5, "latency": 9.8,
     "batch_size": 8, "precision": "fp16", "device": "A100"},
    {"model_name": "gpt2", "hardware_type": "cpu", "throughput_items_per_second": "40",
     "latency_ms": 120, "memory_peak_mb": 512.0},
    {"Model": " t5-small ", "HARDWARE": "rocm", "THROUGHPUT": 1e3, "average_latency_ms": "1.5",
     "unrelated": "ignored", "memory_mb": None, "test_case": ""},
]  # fmt: skip
EXPECTED = {
    "model_name": ["bert-base-uncased", "gpt2", "t5-small"],
    "hardware_type": ["cuda", "cpu", "rocm"],
    "throughput": [812.5, 40.0, 1000.0],
    "latency": [9.8, 120.0, 1.5],
    "batch_size": [8, None, None],
    "precision": ["fp16", None, None],
    "memory_mb": [None, 512.0, None],
    "device_name": ["A100", None, None],
}


def read_all(path: Path, size: int = 50_000) -> list[Chunk]:
    return list(read_chunks(path, size))


def merged(chunks: list[Chunk]) -> tuple[dict[str, list[Any]], int, list[str]]:
    """Columns of all chunks concatenated (missing columns filled with None)."""
    total = sum(c.rows for c in chunks)
    names = {k for c in chunks for k in c.columns}
    columns: dict[str, list[Any]] = {k: [] for k in names}
    for chunk in chunks:
        for name in names:
            columns[name] += chunk.columns.get(name, [None] * chunk.rows)
    return columns, total, [b for c in chunks for b in c.bad]


def write_csv(path: Path, header: list[str], rows: list[list[Any]]) -> Path:
    lines = [",".join(header)] + [",".join("" if v is None else str(v) for v in r) for r in rows]
    path.write_text("\n".join(lines) + "\n")
    return path


def write_jsonl(path: Path, rows: list[Any]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def write_parquet(path: Path, rows: list[dict[str, Any]]) -> Path:
    pq.write_table(pa.Table.from_pylist(rows), path)
    return path


# -- formats and aliases ----------------------------------------------------------------------


def test_json_array_with_aliases(tmp_path: Path) -> None:
    path = tmp_path / "r.json"
    path.write_text(json.dumps(ROWS))
    (chunk,) = read_all(path)
    assert chunk.rows == 3 and chunk.bad == []
    assert chunk.columns == EXPECTED


def test_json_lines_with_aliases(tmp_path: Path) -> None:
    for suffix in (".jsonl", ".ndjson", ".JSONL"):
        (chunk,) = read_all(write_jsonl(tmp_path / f"r{suffix}", ROWS))
        assert chunk.columns == EXPECTED and chunk.bad == []


def test_json_with_leading_whitespace(tmp_path: Path) -> None:
    path = tmp_path / "r.json"
    path.write_text("\n  \n" + json.dumps(ROWS))
    (chunk,) = read_all(path)
    assert chunk.columns == EXPECTED


def test_csv_with_aliases(tmp_path: Path) -> None:
    path = write_csv(
        tmp_path / "r.csv",
        ["model", "hardware_type", "throughput_items_per_second", "latency_ms", "batch_size",
         "Device", "extra"],
        [["bert", "cuda", "812.5", "9.8", "8", "A100", "x"],
         ["gpt2", "cpu", "40", "120", "", "", ""]],
    )  # fmt: skip
    (chunk,) = read_all(path)
    assert chunk.rows == 2 and chunk.bad == []
    assert chunk.columns == {
        "model_name": ["bert", "gpt2"],
        "hardware_type": ["cuda", "cpu"],
        "throughput": [812.5, 40.0],
        "latency": [9.8, 120.0],
        "batch_size": [8, None],
        "device_name": ["A100", None],
    }


def test_csv_quoted_fields(tmp_path: Path) -> None:
    path = tmp_path / "q.csv"
    path.write_text('model,hardware,throughput,latency\n"org/model, v2",cuda,1,2\n')
    (chunk,) = read_all(path)
    assert chunk.columns["model_name"] == ["org/model, v2"]


def test_parquet_with_aliases(tmp_path: Path) -> None:
    rows = [
        {"model": "bert", "hardware": "cuda", "throughput": 812.5, "latency": 9.8,
         "batch_size": 8, "memory_peak_mb": None},
        {"model": "gpt2", "hardware": "cpu", "throughput": 40.0, "latency": 120.0,
         "batch_size": None, "memory_peak_mb": 512.0},
    ]  # fmt: skip
    (chunk,) = read_all(write_parquet(tmp_path / "r.parquet", rows))
    assert chunk.rows == 2 and chunk.bad == []
    assert chunk.columns == {
        "model_name": ["bert", "gpt2"],
        "hardware_type": ["cuda", "cpu"],
        "throughput": [812.5, 40.0],
        "latency": [9.8, 120.0],
        "batch_size": [8, None],
        "memory_mb": [None, 512.0],
    }


def test_all_none_optional_columns_are_dropped_required_kept(tmp_path: Path) -> None:
    rows = [{"model": "m", "hardware": "h", "throughput": 1, "latency": 2, "precision": None}]
    (chunk,) = read_all(write_jsonl(tmp_path / "r.jsonl", rows))
    assert set(chunk.columns) == set(REQUIRED)


# -- chunking ---------------------------------------------------------------------------------


def many(n: int) -> list[dict[str, Any]]:
    return [{"model": f"m{i}", "hardware": "cpu", "throughput": i, "latency": 1} for i in range(n)]


@pytest.mark.parametrize(
    ("n", "size", "expected"),
    [(10, 3, [3, 3, 3, 1]), (9, 3, [3, 3, 3]), (3, 5, [3]), (5, 1, [1] * 5), (1, 1, [1])],
)
def test_chunk_boundaries(tmp_path: Path, n: int, size: int, expected: list[int]) -> None:
    chunks = read_all(write_jsonl(tmp_path / "r.jsonl", many(n)), size)
    assert [c.rows for c in chunks] == expected
    for chunk in chunks:
        assert {len(v) for v in chunk.columns.values()} == {chunk.rows}
    columns, total, bad = merged(chunks)
    assert total == n and bad == []
    assert columns["model_name"] == [f"m{i}" for i in range(n)]
    assert columns["throughput"] == [float(i) for i in range(n)]


def test_chunks_of_csv_and_parquet(tmp_path: Path) -> None:
    csv_path = write_csv(
        tmp_path / "r.csv",
        ["model", "hardware", "throughput", "latency"],
        [[f"m{i}", "cpu", i, 1] for i in range(7)],
    )
    parquet_path = write_parquet(tmp_path / "r.parquet", many(7))
    for path in (csv_path, parquet_path):
        chunks = read_all(path, 3)
        assert [c.rows for c in chunks] == [3, 3, 1]
        assert merged(chunks)[0]["model_name"] == [f"m{i}" for i in range(7)]


def test_bad_rows_do_not_count_towards_chunk_size(tmp_path: Path) -> None:
    rows: list[Any] = []
    for i in range(4):
        rows += [{"model": f"m{i}", "hardware": "cpu", "throughput": 1, "latency": 1}, {"x": 1}]
    chunks = read_all(write_jsonl(tmp_path / "r.jsonl", rows), 2)
    # A chunk is cut as soon as it holds ``size`` good rows; trailing bad rows get their own.
    assert [c.rows for c in chunks] == [2, 2, 0]
    assert [len(c.bad) for c in chunks] == [1, 2, 1]
    assert [b.split(":")[0] for c in chunks for b in c.bad] == [f"line {i}" for i in (2, 4, 6, 8)]


def test_a_file_of_only_bad_rows_yields_one_chunk_of_errors(tmp_path: Path) -> None:
    (chunk,) = read_all(write_jsonl(tmp_path / "r.jsonl", [{"x": 1}, {"y": 2}]))
    assert chunk.rows == 0 and len(chunk.bad) == 2


def test_empty_files(tmp_path: Path) -> None:
    (tmp_path / "e.jsonl").write_text("")
    assert read_all(tmp_path / "e.jsonl") == []
    (tmp_path / "e.json").write_text("[]")
    assert read_all(tmp_path / "e.json") == []
    (tmp_path / "h.csv").write_text("model,hardware,throughput,latency\n")
    assert read_all(tmp_path / "h.csv") == []
    (tmp_path / "e.csv").write_text("")
    with pytest.raises(RecordFileError, match="empty CSV"):
        read_all(tmp_path / "e.csv")


# -- bad rows are reported with their line and skipped ------------------------------------------

GOOD = {"model": "ok", "hardware": "cpu", "throughput": 1.5, "latency": 2}


def test_jsonl_bad_rows(tmp_path: Path) -> None:
    path = tmp_path / "r.jsonl"
    lines = [
        json.dumps(GOOD),  # 1
        json.dumps({**GOOD, "throughput": "fast"}),  # 2: non-numeric
        "{not json",  # 3
        "",  # 4: blank, ignored
        json.dumps({"hardware": "cpu", "throughput": 1, "latency": 1}),  # 5: missing model
        json.dumps([1, 2]),  # 6: not an object
        json.dumps({**GOOD, "latency": "inf"}),  # 7: not finite
        json.dumps({**GOOD, "batch_size": 2.5}),  # 8: not an integer
        json.dumps({**GOOD, "model": "x" * 5000}),  # 9: too long
        json.dumps({**GOOD, "memory_mb": "NaN"}),  # 10
        json.dumps({**GOOD, "model": "last"}),  # 11
    ]
    path.write_text("\n".join(lines) + "\n")
    (chunk,) = read_all(path)
    assert chunk.columns["model_name"] == ["ok", "last"]
    where = [b.split(":")[0] for b in chunk.bad]
    assert where == ["line 2", "line 3", "line 5", "line 6", "line 7", "line 8", "line 9",
                     "line 10"]  # fmt: skip
    assert "invalid JSON" in chunk.bad[1]
    assert "missing model_name" in chunk.bad[2]
    assert "not an object" in chunk.bad[3]
    assert "finite" in chunk.bad[4]


@pytest.mark.parametrize(
    "value",
    [[1.0], {"v": 1}, 10**400],
    ids=["list", "object", "huge-int"],
)
def test_json_non_scalar_or_huge_number_is_a_bad_row_not_a_crash(
    tmp_path: Path, value: Any
) -> None:
    path = tmp_path / "r.jsonl"
    path.write_text(json.dumps({**GOOD, "throughput": value}) + "\n" + json.dumps(GOOD) + "\n")
    (chunk,) = read_all(path)
    assert chunk.rows == 1
    assert len(chunk.bad) == 1 and chunk.bad[0].startswith("line 1: ")


def test_json_array_bad_items(tmp_path: Path) -> None:
    path = tmp_path / "r.json"
    path.write_text(json.dumps([GOOD, "text", {**GOOD, "throughput": None}, GOOD]))
    (chunk,) = read_all(path)
    assert chunk.rows == 2
    assert [b.split(":")[0] for b in chunk.bad] == ["item 1", "item 2"]


def test_invalid_json_array_is_a_file_error(tmp_path: Path) -> None:
    path = tmp_path / "r.json"
    path.write_text('[{"model": "x"},')
    with pytest.raises(RecordFileError, match="invalid JSON"):
        read_all(path)


def test_csv_bad_rows(tmp_path: Path) -> None:
    path = tmp_path / "r.csv"
    path.write_text(
        "model,hardware,throughput,latency\n"  # 1
        "ok,cpu,1,2\n"  # 2
        "bad,cpu,abc,2\n"  # 3: non-numeric throughput
        "short,cpu,1\n"  # 4: wrong field count
        "long,cpu,1,2,3\n"  # 5: wrong field count
        ",cpu,1,2\n"  # 6: missing model
        "inf,cpu,inf,2\n"  # 7: not finite
        "last,cpu,3,4\n"  # 8
    )
    (chunk,) = read_all(path)
    assert chunk.columns["model_name"] == ["ok", "last"]
    where = [b.split(":")[0] for b in chunk.bad]
    assert where == ["line 3", "line 4", "line 5", "line 6", "line 7"]
    assert "expected 4 fields, got 3" in chunk.bad[1]
    assert "expected 4 fields, got 5" in chunk.bad[2]
    assert "missing model_name" in chunk.bad[3]


def test_csv_blank_lines_are_skipped_not_bad_rows(tmp_path: Path) -> None:
    path = tmp_path / "r.csv"
    path.write_text("model,hardware,throughput,latency\nok,cpu,1,2\n\nalso,cpu,3,4\n\n")
    (chunk,) = read_all(path)
    assert chunk.rows == 2 and chunk.bad == []


def test_csv_line_numbers_count_quoted_newlines(tmp_path: Path) -> None:
    path = tmp_path / "r.csv"
    path.write_text('model,hardware,throughput,latency\n"multi\nline",cpu,1,2\nbad,cpu,x,2\n')
    (chunk,) = read_all(path)
    assert chunk.columns["model_name"] == ["multi\nline"]
    assert [b.split(":")[0] for b in chunk.bad] == ["line 4"]


def test_parquet_bad_rows(tmp_path: Path) -> None:
    rows = [
        {"model": "ok", "hardware": "cpu", "throughput": 1.0, "latency": 2.0},
        {"model": None, "hardware": "cpu", "throughput": 1.0, "latency": 2.0},
        {"model": "inf", "hardware": "cpu", "throughput": float("inf"), "latency": 2.0},
        {"model": "last", "hardware": "cpu", "throughput": 3.0, "latency": 4.0},
    ]
    (chunk,) = read_all(write_parquet(tmp_path / "r.parquet", rows))
    assert chunk.columns["model_name"] == ["ok", "last"]
    assert [b.split(":")[0] for b in chunk.bad] == ["row 2", "row 3"]


def test_normalize_direct() -> None:
    assert normalize({"model": "m", "hardware": "h", "throughput": "1e3", "latency": 2}) == {
        "model_name": "m",
        "hardware_type": "h",
        "throughput": 1000.0,
        "latency": 2.0,
    }
    assert normalize({**GOOD, "batch_size": 4.0})["batch_size"] == 4
    assert normalize({**GOOD, "batch_size": "16"})["batch_size"] == 16
    with pytest.raises(ValueError, match="missing hardware_type, latency"):
        normalize({"model": "m", "throughput": 1})


# -- file errors ------------------------------------------------------------------------------


def test_unknown_extension(tmp_path: Path) -> None:
    path = tmp_path / "r.xlsx"
    path.write_text("whatever")
    with pytest.raises(RecordFileError, match="unknown format"):
        read_all(path)


def test_missing_file_and_directory(tmp_path: Path) -> None:
    with pytest.raises(RecordFileError, match="no such file"):
        read_all(tmp_path / "missing.csv")
    (tmp_path / "dir.csv").mkdir()
    with pytest.raises(RecordFileError):
        read_all(tmp_path / "dir.csv")


def test_not_a_parquet_file(tmp_path: Path) -> None:
    path = tmp_path / "r.parquet"
    path.write_text("model,hardware\n")
    with pytest.raises(RecordFileError, match="not a Parquet file"):
        read_all(path)


def test_count_rows(tmp_path: Path) -> None:
    assert count_rows(write_jsonl(tmp_path / "r.jsonl", many(5))) == 5
    csv_path = write_csv(tmp_path / "r.csv", ["model"], [["a"], ["b"]])
    assert count_rows(csv_path) == 2
    assert count_rows(write_parquet(tmp_path / "r.parquet", many(3))) == 3  # from its footer
    (tmp_path / "e.csv").write_text("")
    assert count_rows(tmp_path / "e.csv") == 0


def test_count_rows_of_a_missing_file_does_not_raise(tmp_path: Path) -> None:
    """The CLI calls count_rows before read_chunks; a missing file must reach RecordFileError."""
    assert count_rows(tmp_path / "missing.csv") is None
    (tmp_path / "dir.jsonl").mkdir()
    assert count_rows(tmp_path / "dir.jsonl") is None
