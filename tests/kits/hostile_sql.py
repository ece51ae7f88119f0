"""A corpus of hostile queries: each reaches past the five tables, reads settings or the
catalog, has a side effect, or builds unbounded values. The sandbox must refuse every
one, locally and as a distributed fragment (shared by unit and integration tests).
"""

from __future__ import annotations

PR = "performance_results"
BIG = "z" * 5000

# name -> SQL. Every query reads performance_results, so that each is also a
# well-formed map fragment (a fragment must read it exactly once).
HOSTILE: dict[str, str] = {
    # CTE scope: the name is a CTE inside the subquery only, the catalog outside it
    "scoped-cte-databases": "SELECT * FROM (WITH duckdb_databases AS (SELECT 1 AS x) "
    "SELECT * FROM duckdb_databases), duckdb_databases, performance_results",
    "scoped-cte-tables": "SELECT sql FROM (WITH duckdb_tables AS (SELECT 1) SELECT * FROM "
    f"duckdb_tables) t, duckdb_tables, {PR}",
    "scoped-cte-columns": f"SELECT * FROM {PR} WHERE model_id IN (SELECT column_name FROM "
    "(WITH duckdb_columns AS (SELECT 1) SELECT * FROM duckdb_columns), duckdb_columns)",
    "scoped-cte-pg_settings": "SELECT * FROM (WITH pg_settings AS (SELECT 1) SELECT * FROM "
    f"pg_settings), pg_settings, {PR}",
    "scoped-cte-settings-in-join": f"SELECT p.* FROM {PR} p JOIN (WITH duckdb_settings AS "
    "(SELECT 1 AS name) SELECT * FROM duckdb_settings) s ON true JOIN duckdb_settings d "
    "ON true",
    "scoped-cte-information_schema": "SELECT * FROM (WITH tables AS (SELECT 1) SELECT * FROM "
    f"tables), tables, {PR}",
    # functions that read settings, variables, the catalog or the environment
    "current_setting": f"SELECT current_setting('memory_limit') FROM {PR}",
    "current_setting-where": f"SELECT * FROM {PR} WHERE current_setting('threads') = '2'",
    "getvariable": f"SELECT getvariable('x') FROM {PR}",
    "version": f"SELECT version() FROM {PR}",
    "system-version": f"SELECT system.main.version() FROM {PR}",
    "current_database": f"SELECT current_database() FROM {PR}",
    "current_schemas": f"SELECT current_schemas(true) FROM {PR}",
    "current_query": f"SELECT current_query() FROM {PR}",
    "txid": f"SELECT txid_current() FROM {PR}",
    "nextval": f"SELECT nextval('s') FROM {PR}",
    "json_execute": f"SELECT json_execute_serialized_sql('x') FROM {PR}",
    "json_serialize_plan": f"SELECT json_serialize_plan('SELECT 1') FROM {PR}",
    "pg_get_viewdef": f"SELECT pg_get_viewdef('models') FROM {PR}",
    "has_table_privilege": f"SELECT has_table_privilege('models', 'select') FROM {PR}",
    "read_text": f"SELECT read_text('/etc/passwd') FROM {PR}",
    "getenv": f"SELECT getenv('HOME') FROM {PR}",
    "sleep": f"SELECT sleep_ms(100000) FROM {PR}",
    "write_log": f"SELECT write_log('x') FROM {PR}",
    "setseed": f"SELECT setseed(0.5) FROM {PR}",
    "stats": f"SELECT stats(model_id) FROM {PR}",
    "in-lambda": f"SELECT list_transform([1], lambda x: current_setting('threads')) FROM {PR}",
    "in-window": f"SELECT sum(length(version())) OVER () FROM {PR}",
    "in-order-by": f"SELECT * FROM {PR} ORDER BY current_setting('memory_limit')",
    # table functions and catalog views, however spelled
    "duckdb_databases()": f"SELECT * FROM {PR}, duckdb_databases()",
    "pragma_table_info": f"SELECT * FROM {PR}, pragma_table_info('models')",
    "range": f"SELECT * FROM {PR}, range(3)",
    "unnest-table-function": f"SELECT * FROM {PR}, unnest([1, 2])",
    "store-schema": f"SELECT * FROM {PR}, store.changesets",
    "kg-schema": f"SELECT * FROM {PR}, kg.configs",
    "system-catalog": f"SELECT * FROM {PR}, system.main.duckdb_settings",
    # unbounded memory or time in one call: refused before anything runs
    "repeat": f"SELECT repeat('x', 2000000000) FROM {PR}",
    "lpad": f"SELECT lpad('x', 2000000000, 'y') FROM {PR}",
    "printf-width": f"SELECT printf('%2000000000d', 1) FROM {PR}",
    "format-width": f"SELECT format('{{:>2000000000}}', 'x') FROM {PR}",
    "range-list": f"SELECT len(range(1000000000)) FROM {PR}",
    "generate_series-list": f"SELECT generate_series(1, 1000000000) FROM {PR}",
    "list_resize": f"SELECT list_resize([1], 1000000000) FROM {PR}",
    "levenshtein": f"SELECT levenshtein(model_id, model_id) FROM {PR}",
    "recursive-cte": "WITH RECURSIVE r(n, s) AS (SELECT 1, model_id FROM performance_results "
    "UNION ALL SELECT n + 1, s FROM r, performance_results WHERE n < 3) SELECT count(*) FROM r",
    "lateral-alias-doubling": "SELECT 'x' AS c0, "
    + ", ".join(f"c{i} || c{i} AS c{i + 1}" for i in range(27))
    + f" FROM {PR}",
    "cte-doubling": "WITH "
    + ", ".join(
        [f"c0 AS (SELECT model_id AS s FROM {PR})"]
        + [f"c{i + 1} AS (SELECT s || s AS s FROM c{i})" for i in range(12)]
    )
    + " SELECT length(s) FROM c12",
    "subquery-doubling": "SELECT length(s) FROM "
    + "(SELECT s || s AS s FROM " * 10
    + f"(SELECT model_id AS s FROM {PR})"
    + ")" * 10,
    "constant-fanout": f"WITH c AS (SELECT '{BIG}' AS z) SELECT concat(model_id, "
    + ", ".join(["z"] * 20)
    + f") FROM {PR}, c",
    "nested-replace": f"SELECT replace(replace(model_id, 'm', '{'m' * 3000}'), 'm', "
    f"'{'m' * 3000}') FROM {PR}",
    "replace-column": f"SELECT replace(model_id, 'm', model_id) FROM {PR}",
    "regexp-replace-everywhere": f"SELECT regexp_replace(model_id, '', '{'x' * 300}', 'g') "
    f"FROM {PR}",
    "list-window": f"SELECT list(model_id) OVER (ORDER BY result_id) FROM {PR}",
    "string_agg-window": f"SELECT string_agg(model_id, ',') OVER (ORDER BY result_id) FROM {PR}",
    "reduce-doubling": f"SELECT list_reduce(string_split(model_id, '-'), lambda a, b: a || a) "
    f"FROM {PR}",
    "lambda-capture": f"SELECT list_transform(string_split(model_id, ''), lambda x: model_id) "
    f"FROM {PR}",
    "aggregate-fanout": "SELECT s || s || s || s || s FROM (SELECT string_agg(model_id, ',') "
    f"AS s FROM {PR})",
    "array_to_string-separator": f"SELECT array_to_string(list(model_id), '{BIG}') FROM {PR}",
    # statements that are not one plain SELECT
    "pivot": f"PIVOT {PR} ON precision USING count(*)",
    "two-statements": f"SELECT 1 FROM {PR}; SELECT 2",
}

# Queries a dashboard sends: the sandbox must let them through.
BENIGN: list[str] = [
    f"SELECT model_id, count(*), avg(throughput_items_per_second) FROM {PR} GROUP BY 1",
    f"SELECT replace(model_id, '-', '_'), upper(precision) FROM {PR}",
    f"SELECT regexp_replace(model_id, '[0-9]+', '', 'g') FROM {PR}",
    f"SELECT model_id || ' on ' || hardware_id || ' (' || precision || ')' FROM {PR}",
    f"SELECT string_agg(DISTINCT model_id, ', ') FROM {PR}",
    f"SELECT list_transform(string_split(model_id, '-'), lambda x: upper(x)) FROM {PR}",
    f"SELECT to_json({{'m': model_id, 'b': batch_size}}) FROM {PR}",
    f"SELECT * FROM {PR} WHERE model_id IN (SELECT model_id FROM models)",
    f"SELECT row_number() OVER (PARTITION BY model_id ORDER BY result_id) FROM {PR}",
    f"WITH t AS (SELECT model_id, max(throughput_items_per_second) m FROM {PR} GROUP BY 1) "
    "SELECT * FROM t JOIN models USING (model_id)",
    f"SELECT strftime(created_at, '%Y-%m-%d'), count(*) FROM {PR} GROUP BY 1",
    f"SELECT * FROM {PR} WHERE created_at > now() - INTERVAL 7 DAY",
]
