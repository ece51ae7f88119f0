"""``peerctl query --format csv|json|parquet [--out FILE]``: a result written as a file.

The result arrives as Arrow (``Client.query_arrow``) and an in-memory DuckDB writes it:
CSV with a header, JSON as one object per line, Parquet (zstd). UUIDs come out as
text in CSV and JSON and as Parquet's UUID type; timestamps as ISO text in JSON.
Without ``--out`` CSV and JSON go to standard output.
"""

from __future__ import annotations

import sys
from typing import Any

FORMATS = {"csv": "FORMAT csv, HEADER true", "json": "FORMAT json",
           "parquet": "FORMAT parquet, COMPRESSION zstd"}  # fmt: skip


class ExportError(Exception):
    """The file cannot be written (the message says why)."""


def write_result(table: Any, fmt: str, out: str | None) -> None:
    """Write an Arrow table to ``out`` (or stdout) in ``fmt``."""
    import duckdb

    if fmt == "parquet" and out is None:
        raise ExportError("--format parquet needs --out FILE")
    con = duckdb.connect(config={"arrow_lossless_conversion": True})
    try:
        con.register("result", table)
        if out is None:
            sys.stdout.flush()
            target = "/dev/stdout"
        else:
            target = out
        quoted = "'" + target.replace("'", "''") + "'"
        con.execute(f"COPY result TO {quoted} ({FORMATS[fmt]})")
    except (duckdb.IOException, duckdb.PermissionException) as exc:
        raise ExportError(f"cannot write {out}: {str(exc).splitlines()[0]}") from exc
    finally:
        con.close()
