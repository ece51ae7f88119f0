"""daemon.writes.changes: validation of user records, natural keys, family guesses, coercion."""

from __future__ import annotations

import math
from typing import Any

import pytest

from daemon.writes.changes import (
    MAX_ROWS_PER_WRITE,
    RESULT_FIELDS,
    WriteError,
    check_records,
    coerce,
    guess_family,
)
from protocol.schema import ColType, hardware_key

UUID = "01890a5d-ac96-774b-bcce-b302099a8057"


def records(n: int = 2, **extra: list[Any]) -> dict[str, list[Any]]:
    base: dict[str, list[Any]] = {
        "model_name": [f"model-{i}" for i in range(n)],
        "hardware_type": ["cuda"] * n,
        "throughput": [100.0 + i for i in range(n)],
        "latency": [5] * n,
    }
    base.update(extra)
    return base


def rejected(value: Any) -> str:
    with pytest.raises(WriteError) as info:
        check_records(value)
    return str(info.value)


def test_valid_records_return_row_count() -> None:
    assert check_records(records(1)) == 1
    assert check_records(records(3)) == 3
    full = records(
        2,
        batch_size=[1, None],
        precision=["fp16", None],
        memory_mb=[1024, 2.5],
        test_case=["a", "b"],
        device_name=["A100", None],
        model_family=[None, "bert"],
        run_id=[None, UUID],
        metrics=['{"p99": 3}', None],
    )
    assert set(full) == set(RESULT_FIELDS)
    assert check_records(full) == 2


def test_not_a_mapping() -> None:
    rejected([("model_name", ["x"])])  # type: ignore[arg-type]


def test_unknown_fields() -> None:
    message = rejected(records(1, gpu=["x"], Model=["y"]))
    assert "unknown fields" in message and "gpu" in message and "Model" in message


@pytest.mark.parametrize(
    "bad",
    [
        records(2, batch_size=[1]),  # shorter
        records(2, precision=["a", "b", "c"]),  # longer
        {**records(2), "latency": 5},  # not a list
        {**records(2), "latency": (5, 5)},  # a tuple is not a list
        {},
    ],
)
def test_length_mismatch_or_not_lists(bad: dict[str, Any]) -> None:
    assert "list" in rejected(bad) or "length" in rejected(bad)


@pytest.mark.parametrize("field", ["model_name", "hardware_type", "throughput", "latency"])
def test_missing_required_field(field: str) -> None:
    data = records(2)
    del data[field]
    assert field in rejected(data)


@pytest.mark.parametrize("field", ["model_name", "hardware_type", "throughput", "latency"])
def test_required_value_none(field: str) -> None:
    data = records(2)
    data[field][1] = None
    message = rejected(data)
    assert "row 1" in message and field in message


def test_optional_none_is_fine() -> None:
    assert check_records(records(2, batch_size=[None, None], memory_mb=[None, 1.0])) == 2


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("throughput", True),
        ("latency", False),
        ("memory_mb", True),
        ("batch_size", True),
        ("throughput", "812.5"),
        ("batch_size", 1.0),
        ("batch_size", "8"),
        ("model_name", 5),
        ("precision", 16),
        ("metrics", {"p99": 1}),
        ("throughput", [1.0]),
    ],
)
def test_wrong_types(field: str, value: Any) -> None:
    data = records(2)
    data.setdefault(field, [None, None])
    data[field][1] = value
    message = rejected(data)
    assert "row 1" in message and field in message


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
@pytest.mark.parametrize("field", ["throughput", "latency", "memory_mb"])
def test_non_finite_numbers(field: str, value: float) -> None:
    data = records(2)
    data.setdefault(field, [None, None])
    data[field][0] = value
    assert "not finite" in rejected(data)


@pytest.mark.parametrize("name", ["", "   ", "\t\n"])
@pytest.mark.parametrize("field", ["model_name", "hardware_type"])
def test_empty_names(field: str, name: str) -> None:
    data = records(2)
    data[field][0] = name
    assert "empty" in rejected(data)


def test_too_long_strings() -> None:
    assert "too long" in rejected(records(1, precision=["x" * 4097]))
    assert check_records(records(1, precision=["x" * 4096])) == 1


def test_empty_optional_string_is_allowed() -> None:
    assert check_records(records(1, precision=[""])) == 1


def test_row_limits() -> None:
    assert "between 1 and" in rejected(records(0))
    assert check_records(records(MAX_ROWS_PER_WRITE)) == MAX_ROWS_PER_WRITE
    assert "between 1 and" in rejected(records(MAX_ROWS_PER_WRITE + 1))


@pytest.mark.parametrize(
    ("name", "family"),
    [
        ("bert-base-uncased", "bert"),
        ("BERT-Large", "bert"),
        ("meta-llama/Llama-2-7b-hf", "llama"),
        ("openai/whisper-tiny.en", "whisper"),
        ("gpt2", "gpt2"),
        ("t5_small", "t5"),
        ("resnet50.a1_in1k", "resnet50"),
        ("mistral:7b", "mistral"),
        ("org/sub/vit-base-patch16", "vit"),
    ],
)
def test_guess_family(name: str, family: str) -> None:
    assert guess_family(name) == family


def test_hardware_key() -> None:
    assert hardware_key("cuda", "A100") == "cuda:A100"
    assert hardware_key("cpu", None) == "cpu"
    assert hardware_key("cpu", "") == "cpu"
    assert hardware_key("rocm", "MI300X") != hardware_key("rocm", None)


@pytest.mark.parametrize(
    ("kind", "value", "expected"),
    [
        (ColType.INT, "42", 42),
        (ColType.INT, 7, 7),
        (ColType.FLOAT, "1.5", 1.5),
        (ColType.FLOAT, 2, 2.0),
        (ColType.BOOL, True, True),
        (ColType.BOOL, "yes", True),
        (ColType.BOOL, "FALSE", False),
        (ColType.TIMESTAMP, "1700000000000000", 1_700_000_000_000_000),
        (ColType.TEXT, 12, "12"),
        (ColType.JSON, '{"a": 1}', '{"a": 1}'),
        (
            ColType.UUID,
            "01890a5d-ac96-774b-bcce-b302099a8057",
            "01890a5d-ac96-774b-bcce-b302099a8057",
        ),
        (ColType.INT, None, None),
    ],
)
def test_coerce(kind: ColType, value: Any, expected: Any) -> None:
    result = coerce(kind, value, "col")
    assert result == expected and type(result) is type(expected)


@pytest.mark.parametrize(
    ("kind", "value"),
    [(ColType.INT, "4.5x"), (ColType.FLOAT, "fast"), (ColType.TIMESTAMP, "yesterday")],
)
def test_coerce_errors_name_the_column(kind: ColType, value: Any) -> None:
    with pytest.raises(WriteError, match="col"):
        coerce(kind, value, "col")
