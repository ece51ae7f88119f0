"""Patterns in the knowledge graph, computed in SQL over schema ``kg``.

- **Hardware speed-ups per family**: throughput of a configuration on a non-CPU platform
  divided by the same model, batch size and precision on a CPU platform; median per
  (family, hardware).
- **Batch-size scaling**: per (model, hardware, precision), throughput along batch
  sizes; ``saturates_at`` is the smallest batch size from which the next larger one
  gains less than 10 % throughput per doubling of the batch.
- **Precision effects**: throughput and memory of each precision relative to fp32 for
  the same model, hardware and batch size; median per (family, hardware, precision).
- **Outliers**: results whose throughput is far from the other results of their
  configuration: |modified z| > 4 on ln(throughput), with median and MAD over the
  whole configuration (at least 10 results).
- **Regressions**: a result notably worse than the history of the same configuration.
  History: up to the 30 previous results (by ``created_at``, then ``result_id``), at
  least 10. Robust z = (x - median) / max(1.4826 * MAD, 0.01) on ln(throughput) (and
  ln(latency), sign flipped); flagged when z < -4 *and* the drop is at least 5 %.
  1.4826 * MAD estimates the standard deviation of normal noise; the 0.01 floor (1 %
  in log space) keeps a perfectly flat history from flagging noise-free jitter. Under
  Gaussian noise a simulation (400k draws) gives a false-positive rate per result of
  1.1 % with 10 results of history, 0.26 % with 20 and 0.11 % with 30 (the asymptotic
  one-sided rate for z < -4 is 3e-5; short histories estimate median and MAD loosely),
  and flags a 6-sigma drop with probability 0.91-0.94.
"""

from __future__ import annotations

from typing import Any

import duckdb

REGRESSION_Z = 4.0
REGRESSION_MIN_HISTORY = 10
REGRESSION_WINDOW = 30
REGRESSION_MIN_DROP = 0.05
MAD_FLOOR = 0.01
SATURATION_GAIN = 0.10

_CONFIGS = """
    SELECT s.*, m.family, h.hardware_type FROM kg.config_stats s
    LEFT JOIN kg.models m USING (model_id) LEFT JOIN kg.hardware h USING (hardware_id)
    WHERE s.throughput IS NOT NULL
"""

SPEEDUPS = f"""
    WITH c AS ({_CONFIGS}),
    cpu AS (SELECT model_id, batch_size, precision, median(throughput) AS thr
            FROM c WHERE hardware_type = 'cpu' GROUP BY ALL)
    SELECT c.family, c.hardware_id, count(*) AS pairs,
           round(median(c.throughput / cpu.thr), 3) AS speedup_vs_cpu,
           round(min(c.throughput / cpu.thr), 3) AS min,
           round(max(c.throughput / cpu.thr), 3) AS max
    FROM c JOIN cpu USING (model_id, batch_size, precision)
    WHERE c.hardware_type <> 'cpu'
    GROUP BY ALL ORDER BY c.family, speedup_vs_cpu DESC, c.hardware_id LIMIT ?
"""

BATCH_SCALING = f"""
    WITH s AS (
        SELECT model_id, hardware_id, precision, batch_size, throughput,
               lead(batch_size) OVER w AS next_batch, lead(throughput) OVER w AS next_thr
        FROM kg.config_stats WHERE throughput IS NOT NULL
        WINDOW w AS (PARTITION BY model_id, hardware_id, precision ORDER BY batch_size))
    SELECT model_id, hardware_id, precision, count(*) AS batch_sizes,
           list(batch_size ORDER BY batch_size) AS batches,
           list(round(throughput, 3) ORDER BY batch_size) AS throughputs,
           arg_max(batch_size, throughput) AS best_batch,
           min(batch_size) FILTER (WHERE next_batch IS NOT NULL AND next_thr / throughput
               < pow(1 + {SATURATION_GAIN}, log2(next_batch / batch_size))) AS saturates_at
    FROM s GROUP BY ALL HAVING count(*) >= 2
    ORDER BY model_id, hardware_id, precision LIMIT ?
"""

PRECISION = f"""
    WITH c AS ({_CONFIGS}),
    base AS (SELECT model_id, hardware_id, batch_size, throughput AS thr, memory_mb AS mem
             FROM c WHERE precision = 'fp32')
    SELECT c.family, c.hardware_id, c.precision, count(*) AS pairs,
           round(median(c.throughput / base.thr), 3) AS throughput_vs_fp32,
           round(median(c.memory_mb / base.mem), 3) AS memory_vs_fp32
    FROM c JOIN base USING (model_id, hardware_id, batch_size)
    WHERE c.precision <> 'fp32'
    GROUP BY ALL ORDER BY c.family, c.hardware_id, c.precision LIMIT ?
"""

_CONFIG_COLS = "model_id, hardware_id, batch_size, precision"

OUTLIERS = f"""
    WITH r AS (
        SELECT result_id, {_CONFIG_COLS}, created_at, lthr,
               median(lthr) OVER cfg AS med, mad(lthr) OVER cfg AS mad, count(lthr) OVER cfg AS n
        FROM kg.result_configs WHERE lthr IS NOT NULL
        WINDOW cfg AS (PARTITION BY {_CONFIG_COLS}))
    SELECT CAST(result_id AS VARCHAR) AS result_id, {_CONFIG_COLS}, created_at,
           round(exp(lthr), 3) AS throughput, round(exp(med), 3) AS config_median,
           round((lthr - med) / greatest(1.4826 * mad, {MAD_FLOOR}), 2) AS z, n AS results
    FROM r WHERE n >= {REGRESSION_MIN_HISTORY}
      AND abs(lthr - med) / greatest(1.4826 * mad, {MAD_FLOOR}) > {REGRESSION_Z}
    ORDER BY abs(z) DESC, result_id LIMIT ?
"""

REGRESSIONS = f"""
    WITH r AS (
        SELECT result_id, {_CONFIG_COLS}, created_at, lthr, llat,
               median(lthr) OVER hist AS thr_med, mad(lthr) OVER hist AS thr_mad,
               count(lthr) OVER hist AS thr_n,
               median(llat) OVER hist AS lat_med, mad(llat) OVER hist AS lat_mad,
               count(llat) OVER hist AS lat_n
        FROM kg.result_configs
        WINDOW hist AS (PARTITION BY {_CONFIG_COLS} ORDER BY created_at, result_id
                        ROWS BETWEEN {REGRESSION_WINDOW} PRECEDING AND 1 PRECEDING)),
    z AS (
        SELECT *,
               (lthr - thr_med) / greatest(1.4826 * thr_mad, {MAD_FLOOR}) AS thr_z,
               -(llat - lat_med) / greatest(1.4826 * lat_mad, {MAD_FLOOR}) AS lat_z
        FROM r)
    SELECT CAST(result_id AS VARCHAR) AS result_id, {_CONFIG_COLS}, created_at,
           CASE WHEN thr_n >= {REGRESSION_MIN_HISTORY} AND thr_z < -{REGRESSION_Z}
                     AND lthr - thr_med < ln(1 - {REGRESSION_MIN_DROP})
                THEN 'throughput' ELSE 'latency' END AS metric,
           round(exp(lthr), 3) AS throughput, round(exp(thr_med), 3) AS throughput_history,
           round(exp(llat), 3) AS latency_ms, round(exp(lat_med), 3) AS latency_history,
           round(least(coalesce(thr_z, 0), coalesce(lat_z, 0)), 2) AS z,
           greatest(thr_n, lat_n) AS history
    FROM z
    WHERE (thr_n >= {REGRESSION_MIN_HISTORY} AND thr_z < -{REGRESSION_Z}
           AND lthr - thr_med < ln(1 - {REGRESSION_MIN_DROP}))
       OR (lat_n >= {REGRESSION_MIN_HISTORY} AND lat_z < -{REGRESSION_Z}
           AND llat - lat_med > -ln(1 - {REGRESSION_MIN_DROP}))
    ORDER BY z, result_id LIMIT ?
"""

COMPAT = """
    WITH pairs AS (SELECT model_id, hardware_id FROM kg.compat
                   UNION SELECT model_id, hardware_id FROM kg.configs),
    ran AS (SELECT model_id, hardware_id, sum(n_results) AS n FROM kg.configs GROUP BY ALL)
    SELECT p.model_id, p.hardware_id,
           CASE WHEN c.is_compatible THEN 'compatible'
                WHEN NOT c.is_compatible THEN 'incompatible'
                WHEN ran.n > 0 THEN 'compatible' ELSE 'unknown' END AS status,
           CASE WHEN c.is_compatible IS NOT NULL THEN 'compatibility test'
                ELSE 'benchmark results' END AS evidence,
           c.reason, c.error_type, c.suggested_fix, c.workaround_available,
           coalesce(ran.n, 0)::BIGINT AS results, coalesce(c.records, 0)::BIGINT AS tests
    FROM pairs p LEFT JOIN kg.compat c USING (model_id, hardware_id)
    LEFT JOIN ran USING (model_id, hardware_id)
    ORDER BY p.model_id, p.hardware_id
"""


def _dicts(cur: duckdb.DuckDBPyConnection, sql: str, params: list[Any] | None = None) -> list[dict]:
    rel = cur.execute(sql, params or [])
    columns = [d[0] for d in rel.description or []]
    return [dict(zip(columns, row, strict=True)) for row in rel.fetchall()]


def detect_patterns(cur: duckdb.DuckDBPyConnection, limit: int = 50) -> dict[str, list[dict]]:
    """Every pattern kind, each list cut at ``limit`` rows (outliers and regressions
    worst first)."""
    return {
        "hardware_speedups": _dicts(cur, SPEEDUPS, [limit]),
        "batch_scaling": _dicts(cur, BATCH_SCALING, [limit]),
        "precision_effects": _dicts(cur, PRECISION, [limit]),
        "outliers": _dicts(cur, OUTLIERS, [limit]),
        "regressions": _dicts(cur, REGRESSIONS, [limit]),
    }


def compatibility_map(cur: duckdb.DuckDBPyConnection) -> list[dict]:
    """One row per (model, hardware) pair seen in results or compatibility tests."""
    return _dicts(cur, COMPAT)
