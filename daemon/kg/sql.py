"""SQL of the knowledge graph: derived tables in schema ``kg``, their population and
their incremental refresh from changed keys.

The graph is local derived state. It lives in schema ``kg`` of the same DuckDB file,
is never replicated, never enters a changeset or the database CID, and can always be
rebuilt from the replicated tables (:func:`populate_statements`).

Materialized (maintained incrementally, O(changed rows)):

- ``kg.configs``: one row per configuration (model, hardware, batch size, precision)
  with counts and sums of the natural logs of its results' throughput, latency and
  memory: the geometric means (``kg.config_stats``) follow without rescanning results.
  A batch that only inserted new results adds their contributions; a batch that
  replaced or deleted results (rare: results are append-only in practice) recomputes
  the aggregates from the results, since the replaced rows' old values are gone.
- ``kg.compat_rows`` / ``kg.compat``: the latest ``hardware_compatibility`` verdict per
  (model, hardware) pair, recomputed for the pairs a changeset touched.
- ``kg.similar_edges``: model-to-model ``similar_performance`` edges; their weights depend
  on the normalization over all configurations, so they are recomputed (in numpy) when
  stale rather than per changeset.

Views (cheap: sizes are counts of models, hardware and configurations, never results):
``kg.models``, ``kg.hardware``, ``kg.config_stats``, ``kg.nodes``, ``kg.edges``; and
``kg.result_configs``, each result's configuration, time and logs, computed from
``store.performance_results`` when read. (Layout 1 kept it as a table, a second copy of
every result: 33 MB for 1M results, more than the results themselves.)
"""

from __future__ import annotations

# Family of a model when ``models.model_family`` is empty: the name after any
# ``org/`` prefix, lower-cased, with trailing size/variant/version suffixes removed:
# sizes (7b, 350m, 1.5b), versions (v1, v0.2), resolutions (224), patch sizes, and
# size or variant words (base, large, small, tiny, uncased, instruct, chat, hf ...).
# ``llama-2-7b`` -> ``llama-2``, ``bert-base-uncased`` -> ``bert``, ``t5-small`` -> ``t5``,
# ``meta-llama/Llama-2-13b-chat-hf`` -> ``llama-2``, ``gpt2`` -> ``gpt2``.
FAMILY_SUFFIX = (
    r"([-_.](\d+(\.\d+)?[bmkt]|v\d+(\.\d+)*|\d{3,}|patch\d+|base|large|small|tiny|mini|"
    r"medium|xl|xxl|uncased|cased|instruct|chat|hf|it|distilled|quantized))+$"
)


def family_sql(name: str) -> str:
    """SQL expression deriving a family from the model-name expression ``name``."""
    base = f"lower(regexp_extract({name}, '[^/]*$'))"
    stripped = f"regexp_replace({base}, '{FAMILY_SUFFIX}', '')"
    return f"coalesce(nullif({stripped}, ''), {base})"


# Layout of the kg tables: a graph built by code of another version is rebuilt on open.
KG_VERSION = 2

CONFIG_ID = "model_id || '|' || hardware_id || '|' || batch_size || '|' || precision"
CONFIG_KEY = ("model_id", "hardware_id", "batch_size", "precision")

_RESULT_ROWS = """
    SELECT result_id, model_id, hardware_id, coalesce(batch_size, 1) AS batch_size,
           coalesce(nullif(lower(precision), ''), 'unknown') AS precision, created_at,
           CASE WHEN throughput_items_per_second > 0 THEN ln(throughput_items_per_second) END
               AS lthr,
           CASE WHEN average_latency_ms > 0 THEN ln(average_latency_ms) END AS llat,
           CASE WHEN memory_peak_mb > 0 THEN ln(memory_peak_mb) END AS lmem
    FROM store.performance_results
    WHERE model_id IS NOT NULL AND hardware_id IS NOT NULL {extra}
"""

_CONFIG_AGG = f"""
    SELECT {CONFIG_ID} AS config_id, model_id, hardware_id, batch_size, precision,
           count(*) AS n_results,
           count(lthr) AS n_thr, coalesce(sum(lthr), 0) AS s_thr,
           count(llat) AS n_lat, coalesce(sum(llat), 0) AS s_lat,
           count(lmem) AS n_mem, coalesce(sum(lmem), 0) AS s_mem
    FROM kg.result_configs GROUP BY ALL
"""

_COMPAT_ROWS = """
    SELECT compatibility_id, model_id, hardware_id FROM store.hardware_compatibility
    WHERE model_id IS NOT NULL AND hardware_id IS NOT NULL {extra}
"""

# The latest verdict per pair (by created_at, then key), with why it failed.
_COMPAT_AGG = """
    SELECT model_id, hardware_id, is_compatible,
           coalesce(error_message, error_type,
                    CASE WHEN NOT detection_success THEN 'hardware not detected'
                         WHEN NOT initialization_success THEN 'initialization failed' END)
               AS reason,
           error_type, suggested_fix, workaround_available, compatibility_score AS score,
           count(*) OVER pair AS records, created_at AS checked_at
    FROM store.hardware_compatibility h
    WHERE model_id IS NOT NULL AND hardware_id IS NOT NULL {extra}
    WINDOW pair AS (PARTITION BY model_id, hardware_id)
    QUALIFY row_number() OVER (PARTITION BY model_id, hardware_id
                               ORDER BY created_at DESC NULLS LAST, compatibility_id DESC) = 1
"""

TOUCHED = "(SELECT CAST(k AS UUID) FROM kg_keys)"


def populate_statements() -> list[str]:
    """Statements that (re)build every materialized kg table from the store."""
    return [
        "CREATE SCHEMA IF NOT EXISTS kg",
        RESULT_CONFIGS_VIEW,
        "CREATE OR REPLACE TABLE kg.configs AS " + _CONFIG_AGG,
        "CREATE OR REPLACE TABLE kg.compat_rows AS " + _COMPAT_ROWS.format(extra=""),
        "CREATE OR REPLACE TABLE kg.compat AS " + _COMPAT_AGG.format(extra=""),
        "CREATE OR REPLACE TABLE kg.similar_edges (src VARCHAR, dst VARCHAR, weight DOUBLE)",
        "CREATE OR REPLACE TABLE kg.meta (version INTEGER, applied BIGINT, edges_fresh BOOLEAN)",
        *VIEWS,
    ]


def refresh_results_statements(replaced: bool = False) -> list[str]:
    """Statements that fold the results whose keys are in ``kg_keys`` into the aggregates.

    Without ``replaced`` every such result is new: its contribution is added to its
    configuration. With it (the batch replaced or deleted results) the aggregates are
    recomputed from the results. Either way ``kg_new`` lists the configurations touched.
    """
    if replaced:
        return [
            "CREATE OR REPLACE TABLE kg.configs AS " + _CONFIG_AGG,
            "CREATE OR REPLACE TEMP TABLE kg_new AS SELECT * FROM kg.configs",
        ]
    return [
        "CREATE OR REPLACE TEMP TABLE kg_delta AS "
        + _RESULT_ROWS.format(extra=f"AND result_id IN {TOUCHED}"),
        f"""CREATE OR REPLACE TEMP TABLE kg_new AS
        WITH d AS (SELECT * FROM ({_CONFIG_AGG.replace("kg.result_configs", "kg_delta")})),
        both_ AS (
            SELECT * FROM kg.configs WHERE config_id IN (SELECT config_id FROM d)
            UNION ALL SELECT * FROM d)
        SELECT config_id, any_value(model_id) AS model_id,
               any_value(hardware_id) AS hardware_id, any_value(batch_size) AS batch_size,
               any_value(precision) AS precision,
               sum(n_results)::BIGINT AS n_results,
               sum(n_thr)::BIGINT AS n_thr, sum(s_thr) AS s_thr,
               sum(n_lat)::BIGINT AS n_lat, sum(s_lat) AS s_lat,
               sum(n_mem)::BIGINT AS n_mem, sum(s_mem) AS s_mem
        FROM both_ GROUP BY config_id""",
        "DELETE FROM kg.configs WHERE config_id IN (SELECT config_id FROM kg_new)",
        "INSERT INTO kg.configs SELECT * FROM kg_new WHERE n_results > 0",
    ]


def refresh_compat_statements(replaced: bool = False) -> list[str]:
    """Statements that recompute the verdicts of the pairs whose rows are in ``kg_keys``
    (``kg.compat_rows`` remembers each row's pair, so ``replaced`` needs nothing more)."""
    return [
        "CREATE OR REPLACE TEMP TABLE kg_pairs AS SELECT DISTINCT model_id, hardware_id "
        f"FROM kg.compat_rows WHERE compatibility_id IN {TOUCHED}",
        f"DELETE FROM kg.compat_rows WHERE compatibility_id IN {TOUCHED}",
        "INSERT INTO kg.compat_rows "
        + _COMPAT_ROWS.format(extra=f"AND compatibility_id IN {TOUCHED}"),
        "INSERT INTO kg_pairs SELECT DISTINCT model_id, hardware_id FROM kg.compat_rows "
        f"WHERE compatibility_id IN {TOUCHED}",
        "DELETE FROM kg.compat c USING kg_pairs p "
        "WHERE c.model_id = p.model_id AND c.hardware_id = p.hardware_id",
        "INSERT INTO kg.compat "
        + _COMPAT_AGG.format(
            extra="AND EXISTS (SELECT 1 FROM kg_pairs p "
            "WHERE p.model_id = h.model_id AND p.hardware_id = h.hardware_id)"
        ),
    ]


RESULT_CONFIGS_VIEW = "CREATE OR REPLACE VIEW kg.result_configs AS " + _RESULT_ROWS.format(extra="")

VIEWS = [
    RESULT_CONFIGS_VIEW,
    """CREATE OR REPLACE VIEW kg.config_stats AS
    SELECT config_id, model_id, hardware_id, batch_size, precision, n_results,
           CASE WHEN n_thr > 0 THEN exp(s_thr / n_thr) END AS throughput,
           CASE WHEN n_lat > 0 THEN exp(s_lat / n_lat) END AS latency_ms,
           CASE WHEN n_mem > 0 THEN exp(s_mem / n_mem) END AS memory_mb
    FROM kg.configs""",
    f"""CREATE OR REPLACE VIEW kg.models AS
    WITH ids AS (SELECT model_id FROM store.models
                 UNION SELECT model_id FROM kg.configs
                 UNION SELECT model_id FROM kg.compat)
    SELECT i.model_id,
           coalesce(nullif(lower(trim(m.model_family)), ''),
                    {family_sql("coalesce(m.model_name, i.model_id)")}) AS family,
           nullif(lower(trim(m.modality)), '') AS modality,
           m.parameters_million
    FROM ids i LEFT JOIN store.models m USING (model_id)
    WHERE i.model_id IS NOT NULL""",
    """CREATE OR REPLACE VIEW kg.hardware AS
    WITH ids AS (SELECT hardware_id FROM store.hardware_platforms
                 UNION SELECT hardware_id FROM kg.configs
                 UNION SELECT hardware_id FROM kg.compat)
    SELECT i.hardware_id,
           coalesce(nullif(lower(h.hardware_type), ''), split_part(i.hardware_id, ':', 1))
               AS hardware_type,
           h.device_name, h.memory_gb
    FROM ids i LEFT JOIN store.hardware_platforms h USING (hardware_id)
    WHERE i.hardware_id IS NOT NULL""",
    """CREATE OR REPLACE VIEW kg.nodes AS
    SELECT 'model:' || model_id AS id, 'model' AS kind, model_id AS label, family, modality,
           NULL::VARCHAR AS hardware_type, NULL::BIGINT AS batch_size,
           NULL::VARCHAR AS precision, NULL::BIGINT AS n_results, NULL::DOUBLE AS throughput,
           NULL::DOUBLE AS latency_ms, NULL::DOUBLE AS memory_mb
    FROM kg.models
    UNION ALL
    SELECT DISTINCT 'family:' || family, 'family', family, family, NULL, NULL, NULL, NULL,
           NULL, NULL, NULL, NULL
    FROM kg.models
    UNION ALL
    SELECT 'hw:' || hardware_id, 'hardware', hardware_id, NULL, NULL, hardware_type, NULL,
           NULL, NULL, NULL, NULL, NULL
    FROM kg.hardware
    UNION ALL
    SELECT 'config:' || config_id, 'config', config_id, NULL, NULL, NULL, batch_size,
           precision, n_results, throughput, latency_ms, memory_mb
    FROM kg.config_stats""",
    """CREATE OR REPLACE VIEW kg.edges AS
    SELECT 'model:' || model_id AS src, 'family:' || family AS dst, 'variant_of' AS kind,
           1.0::DOUBLE AS weight, NULL::VARCHAR AS reason
    FROM kg.models
    UNION ALL
    SELECT 'model:' || model_id, 'hw:' || hardware_id, 'runs_on', sum(n_results)::DOUBLE, NULL
    FROM kg.configs GROUP BY ALL
    UNION ALL
    SELECT 'model:' || model_id, 'hw:' || hardware_id, 'incompatible_with', 1.0, reason
    FROM kg.compat WHERE NOT is_compatible
    UNION ALL
    SELECT 'config:' || config_id, 'model:' || model_id, 'config_of', 1.0, NULL FROM kg.configs
    UNION ALL
    SELECT 'config:' || config_id, 'hw:' || hardware_id, 'measured_on', 1.0, NULL
    FROM kg.configs
    UNION ALL
    SELECT 'model:' || src, 'model:' || dst, 'similar_performance', weight, NULL
    FROM kg.similar_edges""",
]
