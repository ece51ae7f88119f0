"""The replicated tables: names, primary keys and column types on the wire.

This is part of the wire contract: a changeset may only touch these tables and
columns. Column types are logical; the store maps them to DuckDB types.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class ColType(Enum):
    """Logical column types; wire values are msgpack natives (or None)."""

    TEXT = "text"  # str
    INT = "int"  # int
    FLOAT = "float"  # float
    BOOL = "bool"  # bool
    JSON = "json"  # str holding JSON
    TIMESTAMP = "timestamp"  # int, microseconds since the Unix epoch (UTC)
    UUID = "uuid"  # str, canonical 8-4-4-4-12 hex form


@dataclass(frozen=True)
class Table:
    """One replicated table; the first column is the primary key."""

    name: str
    columns: tuple[tuple[str, ColType], ...]

    @property
    def key(self) -> str:
        """Name of the primary-key column."""
        return self.columns[0][0]

    @property
    def column_names(self) -> tuple[str, ...]:
        """All column names, primary key first."""
        return tuple(name for name, _ in self.columns)


T, N, F, B, J, TS, U = (
    ColType.TEXT,
    ColType.INT,
    ColType.FLOAT,
    ColType.BOOL,
    ColType.JSON,
    ColType.TIMESTAMP,
    ColType.UUID,
)

HARDWARE = Table(
    "hardware_platforms",
    (
        ("hardware_id", T),
        ("hardware_type", T),
        ("device_name", T),
        ("platform", T),
        ("platform_version", T),
        ("driver_version", T),
        ("memory_gb", F),
        ("compute_units", N),
        ("metadata", J),
        ("created_at", TS),
    ),
)
MODELS = Table(
    "models",
    (
        ("model_id", T),
        ("model_name", T),
        ("model_family", T),
        ("modality", T),
        ("source", T),
        ("version", T),
        ("parameters_million", F),
        ("metadata", J),
        ("created_at", TS),
    ),
)
TEST_RUNS = Table(
    "test_runs",
    (
        ("run_id", U),
        ("test_name", T),
        ("test_type", T),
        ("started_at", TS),
        ("completed_at", TS),
        ("execution_time_seconds", F),
        ("success", B),
        ("git_commit", T),
        ("git_branch", T),
        ("command_line", T),
        ("metadata", J),
        ("created_at", TS),
    ),
)
RESULTS = Table(
    "performance_results",
    (
        ("result_id", U),
        ("run_id", U),
        ("model_id", T),
        ("hardware_id", T),
        ("test_case", T),
        ("batch_size", N),
        ("precision", T),
        ("total_time_seconds", F),
        ("average_latency_ms", F),
        ("throughput_items_per_second", F),
        ("memory_peak_mb", F),
        ("iterations", N),
        ("warmup_iterations", N),
        ("metrics", J),
        ("created_at", TS),
    ),
)
COMPATIBILITY = Table(
    "hardware_compatibility",
    (
        ("compatibility_id", U),
        ("run_id", U),
        ("model_id", T),
        ("hardware_id", T),
        ("is_compatible", B),
        ("detection_success", B),
        ("initialization_success", B),
        ("error_message", T),
        ("error_type", T),
        ("suggested_fix", T),
        ("workaround_available", B),
        ("compatibility_score", F),
        ("metadata", J),
        ("created_at", TS),
    ),
)


def hardware_key(hardware_type: str, device_name: str | None) -> str:
    """Natural key of a hardware platform: ``type`` or ``type:device``."""
    return f"{hardware_type}:{device_name}" if device_name else hardware_type


TABLES: dict[str, Table] = {
    t.name: t for t in (HARDWARE, MODELS, TEST_RUNS, RESULTS, COMPATIBILITY)
}
