"""daemon.snapshot.ipfs against a small fake of kubo's /api/v0/dag/import (no IPFS node here):
the CAR arrives intact as multipart/form-data, roots are pinned, errors are clear."""

from __future__ import annotations

from pathlib import Path

import pytest
from kubokit import FakeKubo

from daemon.config import ConfigError, load_config
from daemon.snapshot.ipfs import IpfsPushError, push_car


def test_car_arrives_intact_and_roots_are_pinned(fake_kubo: str, tmp_path: Path) -> None:
    car = tmp_path / "snap.car"
    car.write_bytes(bytes(range(256)) * 9000 + b"\r\n--tail")  # > one read chunk, odd bytes
    result = push_car(fake_kubo, car)
    assert result["roots"] == ["bafyroot"]
    (request,) = FakeKubo.received
    assert request["path"] == "/api/v0/dag/import?pin-roots=true"
    assert request["car"] == car.read_bytes()
    assert request["filename"] == "snap.car"


def test_http_error_and_pin_error_are_reported(fake_kubo: str, tmp_path: Path) -> None:
    car = tmp_path / "snap.car"
    car.write_bytes(b"x")
    FakeKubo.pin_error = "not enough space"
    with pytest.raises(IpfsPushError, match="not enough space"):
        push_car(fake_kubo, car)
    FakeKubo.status = 500
    with pytest.raises(IpfsPushError, match="HTTP 500"):
        push_car(fake_kubo, car)


def test_unreachable_node_is_an_ipfs_push_error(tmp_path: Path) -> None:
    car = tmp_path / "snap.car"
    car.write_bytes(b"x")
    with pytest.raises(IpfsPushError):
        push_car("http://127.0.0.1:9", car, timeout=5)


def test_ipfs_api_config_must_be_an_http_url() -> None:
    assert load_config(None, {"DUCKPEER_IPFS_API": "http://127.0.0.1:5001"}, {}).ipfs_api
    with pytest.raises(ConfigError, match="ipfs_api"):
        load_config(None, {"DUCKPEER_IPFS_API": "127.0.0.1:5001"}, {})
    assert load_config(None, {"DUCKPEER_BOOTSTRAP_SNAPSHOT": "true"}, {}).bootstrap_snapshot
