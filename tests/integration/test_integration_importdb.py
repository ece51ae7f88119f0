"""peerctl import-db: a legacy benchmark database (integer ids, foreign keys) becomes
duckpeer rows with global keys, completely, and importing it again adds nothing."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from daemon.localcluster import LocalCluster

pytestmark = pytest.mark.slow
LEGACY_SCHEMA = Path(__file__).resolve().parents[1] / "data" / "legacy_schema.sql"


def make_legacy_db(path: Path) -> None:
    """All five tables with foreign keys, a NULL device, JSON, timestamps."""
    con = duckdb.connect(str(path))
    con.execute(LEGACY_SCHEMA.read_text())
    con.execute("""
        INSERT INTO hardware_platforms (hardware_id, hardware_type, device_name, memory_gb,
            compute_units, metadata) VALUES
            (1, 'cuda', 'A100', 80, 108, '{"sm": 80}'), (2, 'cpu', NULL, 512, 64, NULL);
        INSERT INTO models (model_id, model_name, model_family, modality, parameters_million)
            VALUES (1, 'bert-base-uncased', 'bert', 'text', 110), (2, 't5-small', 't5', 'text', 60);
        INSERT INTO test_runs (run_id, test_name, test_type, started_at, success) VALUES
            (1, 'nightly', 'performance', TIMESTAMP '2026-11-01 02:00:00', true);
        INSERT INTO performance_results (result_id, run_id, model_id, hardware_id, test_case,
            batch_size, precision, average_latency_ms, throughput_items_per_second, metrics)
            SELECT i, 1, 1 + i % 2, 1 + i % 2, 'embedding', 1 << (i % 5), 'fp16',
                   10.0 + i, 1000.0 / (1 + i), '{"latency_p99": 12.5}'
            FROM range(1, 251) t(i);
        INSERT INTO hardware_compatibility (compatibility_id, run_id, model_id, hardware_id,
            is_compatible, detection_success, initialization_success, error_message) VALUES
            (1, 1, 2, 2, false, true, false, 'no AVX-512'), (2, 1, 1, 1, true, true, true, NULL);
    """)  # fmt: skip
    con.close()


def import_db(socket: Path, db: Path) -> dict[str, dict[str, int]]:
    proc = subprocess.run(
        [sys.executable, "-m", "peerctl", "--socket", str(socket), "import-db", str(db), "--json"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)  # type: ignore[no-any-return]


def test_import_is_complete_and_idempotent(tmp_path: Path) -> None:
    legacy = tmp_path / "legacy.duckdb"
    make_legacy_db(legacy)
    with LocalCluster(2) as cluster:
        a, b = cluster.peers
        first = import_db(a.socket, legacy)
        assert {t: c["new"] for t, c in first.items()} == {
            "hardware_platforms": 2, "models": 2, "test_runs": 1,
            "performance_results": 250, "hardware_compatibility": 2,
        }  # fmt: skip
        cluster.wait_converged(timeout=30)
        joined = b.call("query", sql="""
            SELECT m.model_name, h.hardware_id, count(*) AS n, min(r.batch_size) AS b
            FROM performance_results r JOIN models m USING (model_id)
            JOIN hardware_platforms h USING (hardware_id) JOIN test_runs t USING (run_id)
            GROUP BY ALL ORDER BY 1""")["rows"]  # fmt: skip
        assert joined == [["bert-base-uncased", "cuda:A100", 125, 1], ["t5-small", "cpu", 125, 1]]
        reason = b.call("query", sql="SELECT error_message FROM hardware_compatibility "
                                     "WHERE NOT is_compatible")["rows"]  # fmt: skip
        assert reason == [["no AVX-512"]]
        before = a.status()
        second = import_db(a.socket, legacy)
        assert all(c["new"] == 0 for c in second.values())
        assert a.status()["db_cid"] == before["db_cid"]  # not even an empty changeset


def test_not_a_legacy_database_is_a_one_line_error(tmp_path: Path) -> None:
    bogus = tmp_path / "bogus.duckdb"
    bogus.write_bytes(b"not a database")
    with LocalCluster(1) as cluster:
        proc = subprocess.run(
            [sys.executable, "-m", "peerctl", "--socket", str(cluster.peers[0].socket),
             "import-db", str(bogus)], capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert proc.returncode == 2 and proc.stderr.count("\n") == 1
