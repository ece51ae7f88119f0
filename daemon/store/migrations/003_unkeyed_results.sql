-- duckpeer store v3: the three tables keyed by UUIDv7 lose their PRIMARY KEY index.
-- The ART index of a UUID key cost 29 bytes per row on disk (70 MB instead of 41 MB for
-- 1M results) and stayed in memory. Keys stay unique: every statement that writes these
-- tables checks the key against the stored rows (daemon/store/rowsql.py), and UUIDv7
-- keys are time-ordered, so those checks skip row groups by their min/max.
-- Runs once (store.meta records the version).

CREATE TABLE store.test_runs_v3 (
    run_id UUID NOT NULL,
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
INSERT INTO store.test_runs_v3 SELECT * FROM store.test_runs ORDER BY run_id;
DROP TABLE store.test_runs;
ALTER TABLE store.test_runs_v3 RENAME TO test_runs;

CREATE TABLE store.performance_results_v3 (
    result_id UUID NOT NULL,
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
INSERT INTO store.performance_results_v3 SELECT * FROM store.performance_results
    ORDER BY result_id;
DROP TABLE store.performance_results;
ALTER TABLE store.performance_results_v3 RENAME TO performance_results;

CREATE TABLE store.hardware_compatibility_v3 (
    compatibility_id UUID NOT NULL,
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
INSERT INTO store.hardware_compatibility_v3 SELECT * FROM store.hardware_compatibility
    ORDER BY compatibility_id;
DROP TABLE store.hardware_compatibility;
ALTER TABLE store.hardware_compatibility_v3 RENAME TO hardware_compatibility;

CREATE OR REPLACE VIEW main.test_runs AS
    SELECT * EXCLUDE (_hlc, _origin) FROM store.test_runs;
CREATE OR REPLACE VIEW main.performance_results AS
    SELECT * EXCLUDE (_hlc, _origin) FROM store.performance_results;
CREATE OR REPLACE VIEW main.hardware_compatibility AS
    SELECT * EXCLUDE (_hlc, _origin) FROM store.hardware_compatibility;
