"""peerctl report and top: charts from constructed data, a self-contained HTML file,
PNG export, the dashboard frame; the HTML opened in a headless browser when present."""

from __future__ import annotations

import base64
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from peerctl.dashboard import render
from peerctl.report import ReportData, find_regressions, write_report

PNG = b"\x89PNG\r\n\x1a\n"


def sample_data() -> ReportData:
    by_hw = [
        {"family": f, "hardware": h, "n": 10, "throughput": t, "latency": 1000 / t}
        for f, base in (("bert", 100.0), ("llama", 20.0))
        for h, t in (("cpu", base), ("cuda:A100", base * 12))
    ]
    batches = [{"family": f, "batch": b, "throughput": b * 50.0 / (1 + b / 16), "latency": 5.0,
                "n": 3} for f in ("bert", "llama") for b in (1, 2, 4, 8, 16, 32)]  # fmt: skip
    over_time = [
        {"family": "bert", "hardware": "cpu", "bucket": f"2026-01-0{d} 00:00:00",
         "throughput": v, "n": 5}
        for d, v in zip(range(1, 6), (100.0, 101.0, 99.0, 70.0, 72.0), strict=True)
    ]  # fmt: skip
    verify = {
        "target_changesets": 10,
        "converged": False,
        "divergent": [],
        "peers": [
            {"peer_id": "12D3KooAAAAAAAAA", "source": "self", "db_cid": "c1", "changesets": 10,
             "behind_total": 0},
            {"peer_id": "12D3KooBBBBBBBBB", "source": "gossip", "db_cid": "c0", "changesets": 6,
             "behind_total": 4},
        ],
    }  # fmt: skip
    history = [
        {"name": "query_ms", "tags": {}, "points": [(1.7e9 + i, 2.0 + i % 3) for i in range(20)]},
        {"name": "replication_lag_changesets", "tags": {"peer": "12D3KooBBBBBBBBB"},
         "points": [(1.7e9 + i, float(20 - i)) for i in range(20)]},
    ]  # fmt: skip
    return ReportData(by_hw, batches, over_time, verify, history, "2026-01-06T00:00:00+00:00",
                      "12D3KooAAAAAAAAA", "c1", "day")  # fmt: skip


def test_regressions_found_on_a_constructed_series() -> None:
    (reg,) = find_regressions(sample_data().over_time)
    assert (reg["from"], reg["to"]) == ("2026-01-03 00:00:00", "2026-01-04 00:00:00")
    assert reg["change_pct"] == pytest.approx(-29.29, abs=0.01)


def test_report_file_with_embedded_charts_and_png_export(tmp_path: Path) -> None:
    out, png_dir = tmp_path / "report.html", tmp_path / "png"
    charts = write_report(sample_data(), out, png_dir)
    text = out.read_text()
    images = re.findall(r"src='data:image/png;base64,([A-Za-z0-9+/=]+)'", text)
    assert len(images) == len(charts) == 6
    assert all(base64.b64decode(b).startswith(PNG) for b in images)
    assert "http" not in text.replace("http-equiv", "")  # self-contained: nothing fetched
    assert "2026-01-04 00:00:00" in text  # the regressions table
    files = sorted(p.name for p in png_dir.iterdir())
    assert files == sorted(f"{c.slug}.png" for c in charts)
    assert all((png_dir / f).read_bytes().startswith(PNG) for f in files)


def test_report_with_no_data_still_renders(tmp_path: Path) -> None:
    out = tmp_path / "empty.html"
    charts = write_report(ReportData(), out)
    assert len(charts) == 6 and out.read_text().count("data:image/png;base64,") == 6


def browser() -> str | None:
    """A chromium on PATH (Debian's chromium or chromium-headless-shell), if any."""
    names = ("chromium", "chromium-headless-shell", "chromium-browser", "google-chrome")
    return next((found for name in names if (found := shutil.which(name))), None)


def test_report_opens_in_a_headless_browser(tmp_path: Path) -> None:
    exe = browser()
    if exe is None:
        pytest.skip("no chromium on PATH: headless-browser check not run")
    out = tmp_path / "report.html"
    write_report(sample_data(), out)
    dom = subprocess.run(
        [exe, "--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=5000",
         f"--user-data-dir={tmp_path / 'profile'}", "--dump-dom", out.as_uri()],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert 'data-images-loaded="6/6"' in dom.stdout, dom.stderr[-2000:]


def snapshot() -> dict[str, Any]:
    return {
        "peer_id": "12D3KooAAAAAAAAAAAAAAAA",
        "db_cid": "bafyAAAA",
        "changesets": 1234,
        "load": 1.0,
        "uptime_s": 42.0,
        "peers": [
            {"peer_id": "12D3KooBBBBBBBBBBBB", "connected": True, "db_cid": "bafyAAAA",
             "lag": 0, "ahead": 0, "load": 0.0, "age_s": 1.0},
            {"peer_id": "12D3KooCCCCCCCCCCCC", "connected": False, "db_cid": "bafyOLD",
             "lag": 17, "ahead": 0, "load": 2.0, "age_s": 30.0},
        ],
        "figures": {"changesets_applied_per_s": 12.5, "query_ms": 3.25, "cache_hit_rate": None},
        "alerts": [{"name": "replication_lag_changesets > 10", "severity": "warning",
                    "tags": {"peer": "12D3KooCCCCCCCCCCCC"}, "value": 17.0}],
        "health": {"status": "degraded", "reasons": ["warning alert: lag"]},
    }  # fmt: skip


def test_dashboard_frame() -> None:
    console = Console(record=True, width=120, color_system=None)
    console.print(render(snapshot()))
    text = console.export_text()
    assert "DEGRADED" in text and "warning alert: lag" in text
    assert "…CCCCCCCCCCCC" in text and "17" in text
    assert "12.5" in text and "3.25" in text
    assert "alerts (1 firing)" in text and "replication_lag_changesets > 10" in text
