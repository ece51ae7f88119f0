-- duckpeer schema v1.
-- Replicated rows live in schema `store` with their version (_hlc, _origin);
-- user-facing views of the same names in `main` hide the bookkeeping columns, so
-- existing lab queries (SELECT ... FROM performance_results JOIN models ...) keep working.
-- Keys are global: natural keys for hardware and models, UUIDv7 for runs and results.

CREATE SCHEMA IF NOT EXISTS store;

CREATE TABLE store.hardware_platforms (
    hardware_id VARCHAR PRIMARY KEY,      -- natural key: hardware_type[:device_name]
    hardware_type VARCHAR,
    device_name VARCHAR,
    platform VARCHAR,
    platform_version VARCHAR,
    driver_version VARCHAR,
    memory_gb DOUBLE,
    compute_units BIGINT,
    metadata JSON,
    created_at TIMESTAMP,
    _hlc BIGINT NOT NULL,
    _origin VARCHAR NOT NULL
);

CREATE TABLE store.models (
    model_id VARCHAR PRIMARY KEY,         -- natural key: the model name
    model_name VARCHAR,
    model_family VARCHAR,
    modality VARCHAR,
    source VARCHAR,
    version VARCHAR,
    parameters_million DOUBLE,
    metadata JSON,
    created_at TIMESTAMP,
    _hlc BIGINT NOT NULL,
    _origin VARCHAR NOT NULL
);

CREATE TABLE store.test_runs (
    run_id UUID PRIMARY KEY,
    test_name VARCHAR,
    test_type VARCHAR,
    started_at TIMESTAMP,
    completed_at TIMESTAMP,
    execution_time_seconds DOUBLE,
    success BOOLEAN,
    git_commit VARCHAR,
    git_branch VARCHAR,
    command_line VARCHAR,
    metadata JSON,
    created_at TIMESTAMP,
    _hlc BIGINT NOT NULL,
    _origin VARCHAR NOT NULL
);

CREATE TABLE store.performance_results (
    result_id UUID PRIMARY KEY,
    run_id UUID,
    model_id VARCHAR,
    hardware_id VARCHAR,
    test_case VARCHAR,
    batch_size BIGINT,
    precision VARCHAR,
    total_time_seconds DOUBLE,
    average_latency_ms DOUBLE,
    throughput_items_per_second DOUBLE,
    memory_peak_mb DOUBLE,
    iterations BIGINT,
    warmup_iterations BIGINT,
    metrics JSON,
    created_at TIMESTAMP,
    _hlc BIGINT NOT NULL,
    _origin VARCHAR NOT NULL
);

CREATE TABLE store.hardware_compatibility (
    compatibility_id UUID PRIMARY KEY,
    run_id UUID,
    model_id VARCHAR,
    hardware_id VARCHAR,
    is_compatible BOOLEAN,
    detection_success BOOLEAN,
    initialization_success BOOLEAN,
    error_message VARCHAR,
    error_type VARCHAR,
    suggested_fix VARCHAR,
    workaround_available BOOLEAN,
    compatibility_score DOUBLE,
    metadata JSON,
    created_at TIMESTAMP,
    _hlc BIGINT NOT NULL,
    _origin VARCHAR NOT NULL
);

-- Deleted rows: the delete's version, so a late, older upsert cannot resurrect them.
CREATE TABLE store.tombstones (
    tbl VARCHAR NOT NULL,
    pk VARCHAR NOT NULL,
    _hlc BIGINT NOT NULL,
    _origin VARCHAR NOT NULL,
    PRIMARY KEY (tbl, pk)
);

-- Every changeset ever applied, in apply order (causal): served to peers on sync.
-- The block bytes live in the append-only block log (daemon/blocklog.py) at
-- (seg, pos, size); keeping them out of DuckDB spares every checkpoint a rewrite.
CREATE TABLE store.changesets (
    origin VARCHAR NOT NULL,
    seq BIGINT NOT NULL,
    hlc BIGINT NOT NULL,
    cid VARCHAR NOT NULL,
    prev VARCHAR,
    row_count BIGINT NOT NULL,
    applied BIGINT NOT NULL,
    seg INTEGER NOT NULL,
    pos BIGINT NOT NULL,
    size BIGINT NOT NULL,
    PRIMARY KEY (origin, seq)
);

-- Chain heads: one row per origin; the version vector and the database CID derive from it.
CREATE TABLE store.heads (
    origin VARCHAR PRIMARY KEY,
    seq BIGINT NOT NULL,
    cid VARCHAR NOT NULL,
    hlc BIGINT NOT NULL
);

CREATE VIEW main.hardware_platforms AS
    SELECT * EXCLUDE (_hlc, _origin) FROM store.hardware_platforms;
CREATE VIEW main.models AS
    SELECT * EXCLUDE (_hlc, _origin) FROM store.models;
CREATE VIEW main.test_runs AS
    SELECT * EXCLUDE (_hlc, _origin) FROM store.test_runs;
CREATE VIEW main.performance_results AS
    SELECT * EXCLUDE (_hlc, _origin) FROM store.performance_results;
CREATE VIEW main.hardware_compatibility AS
    SELECT * EXCLUDE (_hlc, _origin) FROM store.hardware_compatibility;
