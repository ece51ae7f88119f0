"""daemon.query.sandbox.validate_query: one read-only SELECT over the replicated tables,
nothing else."""

from __future__ import annotations

import logging

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlglot import exp

from daemon.query.sandbox import MAX_SQL_LENGTH, QueryRejected, validate_query


@pytest.fixture(autouse=True)
def _quiet_sqlglot(caplog: pytest.LogCaptureFixture) -> None:
    # sqlglot logs a warning when it falls back to a generic Command; that is expected here.
    caplog.set_level(logging.ERROR, logger="sqlglot")


ACCEPTED = [
    "SELECT * FROM performance_results",
    "select * from models;",
    "SELECT * FROM MODELS",
    "SELECT * FROM main.models",
    "SELECT 1",
    "FROM models",
    "SELECT model_id, avg(throughput_items_per_second) AS t FROM performance_results "
    "GROUP BY model_id HAVING count(*) > 1 ORDER BY t DESC LIMIT 5",
    "WITH best AS (SELECT model_id, max(throughput_items_per_second) m "
    "FROM performance_results GROUP BY 1) SELECT * FROM best JOIN models USING (model_id)",
    "SELECT r.*, m.model_family, h.device_name FROM performance_results r "
    "JOIN models m ON r.model_id = m.model_id LEFT JOIN hardware_platforms h USING (hardware_id)",
    "SELECT model_id FROM models UNION ALL SELECT model_id FROM performance_results",
    "SELECT model_id FROM models UNION SELECT hardware_id FROM hardware_platforms "
    "EXCEPT SELECT 'x' INTERSECT SELECT 'y'",
    "SELECT * FROM test_runs WHERE run_id IN (SELECT run_id FROM performance_results)",
    "SELECT (SELECT count(*) FROM hardware_compatibility) AS n",
    "SELECT * FROM (SELECT * FROM models) AS sub WHERE EXISTS (SELECT 1 FROM test_runs)",
    "SELECT model_id, row_number() OVER (PARTITION BY model_family ORDER BY created_at) "
    "FROM models",
    "SELECT CAST(created_at AS DATE), lower(model_name) FROM models WHERE model_name LIKE 'b%'",
    "SELECT * FROM hardware_compatibility WHERE is_compatible AND compatibility_score > 0.5",
]


@pytest.mark.parametrize("sql", ACCEPTED)
def test_accepts_read_only_selects(sql: str) -> None:
    assert isinstance(validate_query(sql), exp.Query)


def test_ctes_may_not_shadow_a_forbidden_source() -> None:
    with pytest.raises(QueryRejected):
        validate_query("WITH x AS (SELECT * FROM read_csv('/etc/passwd')) SELECT * FROM x")


REJECTED = {
    # DDL / DML
    "drop": "DROP TABLE models",
    "delete": "DELETE FROM models",
    "insert": "INSERT INTO models (model_id) VALUES ('x')",
    "insert-select": "INSERT INTO models SELECT * FROM models",
    "update": "UPDATE models SET model_name = 'x'",
    "create-table": "CREATE TABLE x AS SELECT 1",
    "create-view": "CREATE VIEW v AS SELECT * FROM models",
    "create-macro": "CREATE MACRO m() AS 1",
    "create-secret": "CREATE SECRET s (TYPE s3)",
    "alter": "ALTER TABLE models ADD COLUMN x INT",
    "merge": "MERGE INTO models USING models m2 ON true WHEN MATCHED THEN DELETE",
    "select-into": "SELECT 1 INTO x",
    # several statements
    "two-selects": "SELECT 1; SELECT 2",
    "select-then-drop": "SELECT * FROM models; DROP TABLE models",
    # files, extensions, settings
    "copy-to": "COPY models TO '/tmp/x.csv'",
    "copy-query": "COPY (SELECT * FROM models) TO '/tmp/x.parquet' (FORMAT parquet)",
    "copy-from": "COPY models FROM '/tmp/x.csv'",
    "attach": "ATTACH '/tmp/x.db' AS x",
    "detach": "DETACH x",
    "install": "INSTALL httpfs",
    "load": "LOAD httpfs",
    "export": "EXPORT DATABASE '/tmp/x'",
    "import": "IMPORT DATABASE '/tmp/x'",
    "pragma": "PRAGMA database_list",
    "pragma-set": "PRAGMA enable_profiling",
    "set": "SET threads = 1",
    "set-access": "SET enable_external_access = true",
    "reset": "RESET threads",
    "use": "USE store",
    "call": "CALL pragma_version()",
    "explain": "EXPLAIN SELECT 1",
    "describe": "DESCRIBE models",
    "show": "SHOW TABLES",
    "vacuum": "VACUUM",
    "checkpoint": "CHECKPOINT",
    "begin": "BEGIN",
    # table functions
    "read_csv": "SELECT * FROM read_csv('/etc/passwd')",
    "read_csv_auto": "SELECT * FROM read_csv_auto('/etc/passwd')",
    "read_parquet": "SELECT * FROM read_parquet('x.parquet')",
    "read_json": "SELECT * FROM read_json('x.json')",
    "glob": "SELECT * FROM glob('/etc/*')",
    "range": "SELECT * FROM range(10)",
    "range-joined": "SELECT * FROM models, range(5)",
    "generate_series": "SELECT * FROM generate_series(1, 3)",
    "duckdb_tables": "SELECT * FROM duckdb_tables()",
    "duckdb_settings": "SELECT * FROM duckdb_settings()",
    "sqlite_scan": "SELECT * FROM sqlite_scan('x.db', 't')",
    "quoted-table-function": "SELECT * FROM \"read_csv\"('/etc/passwd')",
    "table-function-in-subquery": "SELECT * FROM models WHERE model_id IN (FROM glob('*'))",
    "table-function-in-join": "SELECT * FROM models JOIN read_csv('x') USING (model_id)",
    "table-function-from-first": "SELECT * FROM (FROM read_csv('/etc/passwd'))",
    # paths as tables
    "path": "SELECT * FROM '/etc/passwd'",
    "csv-path": "SELECT * FROM 'data.csv'",
    "quoted-path": 'SELECT * FROM "/etc/passwd"',
    "url": "SELECT * FROM 'https://example.com/x.csv'",
    # other schemas and catalogs
    "store-table": "SELECT * FROM store.models",
    "store-tombstones": "SELECT * FROM store.tombstones",
    "store-changesets": "SELECT * FROM store.changesets",
    "store-quoted": 'SELECT * FROM "store"."models"',
    "store-upper": "SELECT * FROM STORE.models",
    "store-in-join": "SELECT * FROM models JOIN store.heads h ON true",
    "store-in-cte": "WITH t AS (SELECT 1) SELECT * FROM store.t",
    "catalog": "SELECT * FROM memory.main.models",
    "system-catalog": "SELECT * FROM system.main.models",
    "information_schema": "SELECT * FROM information_schema.tables",
    "pg_catalog": "SELECT * FROM pg_catalog.pg_class",
    "unknown-table": "SELECT * FROM secrets",
    "sqlite_master": "SELECT * FROM sqlite_master",
    # forbidden scalar functions
    "read_text": "SELECT read_text('/etc/passwd')",
    "read_blob": "SELECT read_blob('/etc/passwd')",
    "read_text-upper": "SELECT READ_TEXT('x')",
    "getenv": "SELECT getenv('HOME')",
    "getenv-quoted": "SELECT \"getenv\"('HOME')",
    "getenv-in-where": "SELECT * FROM models WHERE model_id = getenv('USER')",
    "query": "SELECT query('SELECT 1')",
    "parquet_metadata": "SELECT parquet_metadata('x')",
    # recursion: its depth and size cannot be bounded
    "recursive-cte": "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 3) "
    "SELECT * FROM r",
    # empty, oversize, unparseable
    "empty": "",
    "blank": "   \n\t ",
    "oversize": "SELECT " + ", ".join(["1"] * (MAX_SQL_LENGTH // 3 + 1)),
    "typo": "SELEKT * FROM models",
    "truncated": "SELECT * FROM",
    "open-parens": "SELECT (((",
    "backticks": "SELECT * FROM `models`",
}


@pytest.mark.parametrize("sql", REJECTED.values(), ids=REJECTED.keys())
def test_rejects(sql: str) -> None:
    with pytest.raises(QueryRejected):
        validate_query(sql)


def test_oversize_boundary() -> None:
    body = "SELECT 1"
    at_limit = body + " " * (MAX_SQL_LENGTH - len(body))
    assert len(at_limit) == MAX_SQL_LENGTH
    validate_query(at_limit)
    with pytest.raises(QueryRejected, match="longer than"):
        validate_query(at_limit + " ")


def test_rejection_messages_are_one_line() -> None:
    for sql in ["SELECT * FROM", "DROP TABLE models", "SELECT * FROM store.models", ""]:
        with pytest.raises(QueryRejected) as info:
            validate_query(sql)
        assert str(info.value) and "\n" not in str(info.value)


def test_custom_allowed_tables() -> None:
    validate_query("SELECT * FROM extra", allowed=frozenset({"extra"}))
    with pytest.raises(QueryRejected, match="unknown table"):
        validate_query("SELECT * FROM models", allowed=frozenset({"extra"}))


def test_deeply_nested_query_is_rejected_not_crashing() -> None:
    deep = "SELECT " + "(" * 5000 + "1" + ")" * 5000
    try:
        validate_query(deep)
    except QueryRejected:
        pass


SQL_TOKENS = st.sampled_from(
    [
        "SELECT", "FROM", "WHERE", "JOIN", "ON", "WITH", "AS", "UNION", "(", ")", ",", "*",
        ";", ".", "'x'", '"y"', "1", "models", "store", "read_csv", "range", "COPY", "TO",
        "ATTACH", "SET", "PRAGMA", "--", "/*", "*/", "$1", "?", "::", "->", "[", "]", "{",
        "}", "CASE", "WHEN", "END", "OVER", "PIVOT", "LATERAL", "VALUES", "EXCLUDE",
        "INTERVAL", "1e999", "\\", "\x00", "é", "$$", "E'", "||", "@", "#1",
    ]
)  # fmt: skip


@settings(max_examples=400, deadline=None)
@given(st.text(max_size=200) | st.lists(SQL_TOKENS, max_size=25).map(" ".join))
def test_arbitrary_text_is_accepted_or_rejected_cleanly(sql: str) -> None:
    try:
        result = validate_query(sql)
    except QueryRejected as exc:
        assert str(exc)
    else:
        assert isinstance(result, exp.Query)
