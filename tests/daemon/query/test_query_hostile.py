"""The sandbox decides on what DuckDB binds: a corpus of hostile queries is refused with
one line, locally (the ``query`` method) and as fragments from peers; dashboard
queries pass; any text gives a result or QueryRejected, nothing else."""

from __future__ import annotations

import logging
from pathlib import Path

import duckdb
import pytest
from cachekit import call, open_node
from hostile_sql import BENIGN, HOSTILE
from hypothesis import given, settings
from hypothesis import strategies as st

from daemon.distq.worker import FragmentRefused, check_fragment
from daemon.query import functions
from daemon.query.sandbox import QueryRejected, check_query, validate_query
from protocol.control import ControlError
from protocol.messages import QueryFragment


@pytest.fixture(autouse=True)
def _quiet_sqlglot(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR, logger="sqlglot")


@pytest.mark.parametrize("sql", HOSTILE.values(), ids=HOSTILE.keys())
def test_hostile_query_is_refused_in_one_line(sql: str) -> None:
    with pytest.raises(QueryRejected) as info:
        check_query(sql)
    message = str(info.value)
    assert message and "\n" not in message


@pytest.mark.parametrize("sql", BENIGN)
def test_dashboard_queries_pass(sql: str) -> None:
    check_query(sql)


def test_binding_catches_what_names_miss() -> None:
    """sqlglot sees a CTE named duckdb_tables and lets the name through everywhere;
    DuckDB binds the outer reference to its catalog, and that is what is refused."""
    sql = HOSTILE["scoped-cte-tables"]
    validate_query(sql)  # the first filter passes it
    with pytest.raises(QueryRejected, match="duckdb_tables"):
        check_query(sql)


async def test_hostile_queries_fail_through_the_query_method(tmp_path: Path) -> None:
    async with open_node(tmp_path, rows=50) as node:
        for name, sql in HOSTILE.items():
            with pytest.raises(ControlError) as info:
                await call(node, "query", sql=sql, cache=False)
            assert info.value.code == "bad_request", name
        assert node.metrics.get("queries_rejected") == len(HOSTILE)
        for sql in BENIGN:  # the daemon serves on, and benign queries run
            result = await call(node, "query", sql=sql)
            assert isinstance(result["rows"], list)
        count = await call(node, "query", sql="SELECT count(*) FROM performance_results")
        assert count["rows"] == [[50]]


async def test_analyze_and_explain_use_the_same_sandbox(tmp_path: Path) -> None:
    async with open_node(tmp_path, rows=10) as node:
        for method in ("query_analyze", "query_explain_cache"):
            with pytest.raises(ControlError, match="current_setting is not allowed"):
                await call(node, method, sql=HOSTILE["current_setting"])
        with pytest.raises(ControlError, match="duckdb_databases"):
            await call(node, "query_analyze", sql=HOSTILE["scoped-cte-databases"])


def fragment(sql: str) -> QueryFragment:
    return QueryFragment("q1", "12D3KooWCoordinator", "bafy", sql, "hash", 3,
                         {"12D3KooWMe": (0, 1)})  # fmt: skip


@pytest.mark.parametrize("sql", HOSTILE.values(), ids=HOSTILE.keys())
def test_hostile_fragment_from_a_peer_is_refused(sql: str) -> None:
    with pytest.raises(FragmentRefused):
        check_fragment(fragment(sql), (0, 1))


def test_a_planned_fragment_passes() -> None:
    from daemon.distq.plan import plan_query

    plan = plan_query(BENIGN[0])
    assert plan.distributed
    assert len(check_fragment(fragment(plan.map_sql), (0, 1, 2))) == 3


def test_allow_list_names_real_functions_and_excludes_dangerous_ones() -> None:
    con = duckdb.connect()
    known = {
        name for (name,) in con.execute("SELECT function_name FROM duckdb_functions()").fetchall()
    }
    stale = sorted(functions.PURE_FUNCTIONS - known - {"IS DISTINCT FROM", "IS NOT DISTINCT FROM"})
    assert stale == []  # every allowed name exists in this DuckDB
    assert not (functions.AMPLIFIERS | functions.STATEFUL) & functions.PURE_FUNCTIONS
    assert not any(functions.is_allowed(n) for n in functions.AMPLIFIERS | functions.STATEFUL)
    assert not any(functions.is_allowed(n) for n in known if n.startswith(("duckdb_", "read_")))


SQL_TOKENS = st.sampled_from(
    [
        "SELECT", "FROM", "WHERE", "WITH", "AS", "(", ")", ",", "*", "||", "models",
        "performance_results", "model_id", "'x'", "1", "duckdb_tables", "pg_settings",
        "current_setting('threads')", "repeat('x', 9)", "concat(model_id, model_id)",
        "string_agg(model_id, ',')", "OVER ()", "lambda x: x", "list_transform(", "UNION",
        "JOIN", "ON", "true", "replace(", "RECURSIVE", "LIMIT", "GROUP BY", "1e999",
    ]
)  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(st.lists(SQL_TOKENS, max_size=20).map(" ".join) | st.text(max_size=120))
def test_any_text_is_checked_cleanly(sql: str) -> None:
    try:
        check_query(sql)
    except QueryRejected as exc:
        assert str(exc) and "\n" not in str(exc)
