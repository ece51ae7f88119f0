"""The append-only block log: what is appended reads back, across segments and reopen."""

from __future__ import annotations

from pathlib import Path

import pytest

from daemon.store.blocklog import BlockLog, BlockLogError


def test_blocks_read_back_in_any_order(tmp_path: Path) -> None:
    log = BlockLog(tmp_path / "blocks")
    places = log.append([b"alpha", b"", b"gamma" * 100]) + log.append([b"delta"])
    assert log.read(places[::-1]) == [b"delta", b"gamma" * 100, b"", b"alpha"]
    assert log.size_bytes() == 5 + 500 + 5
    log.close()


def test_segments_roll_over_and_survive_reopen(tmp_path: Path) -> None:
    log = BlockLog(tmp_path / "blocks", segment_bytes=10)
    places = [log.append([bytes([i]) * 8])[0] for i in range(4)]
    assert [seg for seg, _, _ in places] == [1, 1, 2, 2]  # a segment fills past the limit once
    log.close()
    again = BlockLog(tmp_path / "blocks", segment_bytes=10)
    assert again.read(places) == [bytes([i]) * 8 for i in range(4)]
    later = again.append([b"after reopen"])
    assert later[0][0] == places[-1][0] + 1 and again.read(later) == [b"after reopen"]
    again.close()


def test_missing_or_truncated_segments_are_errors(tmp_path: Path) -> None:
    log = BlockLog(tmp_path / "blocks")
    (place,) = log.append([b"0123456789"])
    log.close()
    segment = next((tmp_path / "blocks").glob("*.log"))
    segment.write_bytes(b"01234")
    with pytest.raises(BlockLogError, match="truncated"):
        log.read([place])
    segment.unlink()
    with pytest.raises(BlockLogError, match="missing"):
        log.read([place])
