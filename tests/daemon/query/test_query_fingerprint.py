"""daemon.query.fingerprint: equivalent spellings share a fingerprint, different queries
never do."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from daemon.query.fingerprint import fingerprint
from daemon.query.sandbox import QueryRejected

BASE = (
    "SELECT model_id, avg(average_latency_ms) FROM performance_results "
    "WHERE batch_size = 8 AND precision = 'fp16' GROUP BY model_id ORDER BY model_id"
)

SAME = [
    BASE,
    BASE.lower(),
    BASE.upper().replace("'FP16'", "'fp16'"),
    "select   model_id ,AVG( average_latency_ms )\n  from PERFORMANCE_RESULTS\n"
    "where batch_size=8 and precision='fp16'\tgroup by model_id order by model_id",
    "SELECT model_id, avg(average_latency_ms) FROM performance_results "
    "WHERE batch_size = 4 + 4 AND precision = 'fp16' GROUP BY model_id ORDER BY model_id",
    "SELECT model_id, avg(average_latency_ms) FROM performance_results "
    "WHERE precision = 'fp16' AND 8 = batch_size GROUP BY model_id ORDER BY model_id",
    "SELECT model_id, avg(average_latency_ms) FROM performance_results "
    "WHERE batch_size = 8 AND precision = 'fp16' AND 1 = 1 GROUP BY model_id ORDER BY model_id",
    'SELECT "model_id", avg("average_latency_ms") FROM "performance_results" '
    "WHERE batch_size = 8 AND precision = 'fp16' GROUP BY model_id ORDER BY model_id",
]

DIFFERENT = [
    BASE.replace("= 8", "= 9"),
    BASE.replace("'fp16'", "'FP16'"),  # string literals are case-sensitive
    BASE.replace("'fp16'", "'fp16 '"),
    BASE.replace("avg(", "sum("),
    BASE.replace("ORDER BY model_id", "ORDER BY model_id DESC"),
    BASE + " LIMIT 3",
    BASE.replace("batch_size = 8", "batch_size > 8"),
    BASE.replace("AND", "OR"),
    BASE.replace("performance_results", "(SELECT * FROM performance_results LIMIT 10)"),
    BASE.replace("model_id", "hardware_id"),
]


@pytest.mark.parametrize("sql", SAME)
def test_equivalent_spellings_share_a_fingerprint(sql: str) -> None:
    assert fingerprint(sql).digest == fingerprint(BASE).digest


@pytest.mark.parametrize("sql", DIFFERENT)
def test_different_queries_have_different_fingerprints(sql: str) -> None:
    assert fingerprint(sql).digest != fingerprint(BASE).digest


def test_normalized_text_is_what_is_hashed() -> None:
    fp = fingerprint("select  MODEL_ID from models where 2 > 1")
    assert fp.normalized == 'SELECT "model_id" FROM "models"'
    assert len(fp.digest) == 64


TEXT = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=12)


@settings(max_examples=100, deadline=None)
@given(st.integers(-(10**12), 10**12), st.integers(-(10**12), 10**12))
def test_different_integer_literals_never_collide(a: int, b: int) -> None:
    sql = "SELECT count(*) FROM performance_results WHERE batch_size = {}"
    same = fingerprint(sql.format(a)).digest == fingerprint(sql.format(b)).digest
    assert same == (a == b)


@settings(max_examples=100, deadline=None)
@given(TEXT, TEXT)
def test_different_string_literals_never_collide(a: str, b: str) -> None:
    sql = "SELECT count(*) FROM models WHERE model_name = '{}'"
    fa = fingerprint(sql.format(a.replace("'", "''")))
    fb = fingerprint(sql.format(b.replace("'", "''")))
    assert (fa.digest == fb.digest) == (a == b)


@pytest.mark.parametrize(
    "sql", ["", "DELETE FROM models", "SELECT * FROM secrets", "SELECT read_csv('x')", "SELEC"]
)
def test_rejected_queries_raise(sql: str) -> None:
    with pytest.raises(QueryRejected):
        fingerprint(sql)
