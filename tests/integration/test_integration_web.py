"""The web dashboard in a real headless browser (Debian's Chromium, driven by
Playwright): charts drawn with a planted regression marked, a result written on another
peer appearing live, the knowledge-graph views filled; screenshots checked by pixels."""

from __future__ import annotations

import json
import shutil
import socket
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from daemon.localcluster import ClusterError, LocalCluster, LocalPeer, wait_until

pytestmark = pytest.mark.slow

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROME_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update",
                "--disable-sync"]  # fmt: skip
REGRESSION_RED = (0xC6, 0x28, 0x28)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def dashboard(tmp_path: Path) -> Iterator[tuple[LocalCluster, str]]:
    port = free_port()
    config = tmp_path / "web.toml"
    config.write_text(f'[web]\nlisten = "127.0.0.1:{port}"\n')
    with LocalCluster(1, base_dir=tmp_path / "c", env={"DUCKPEER_CONFIG": str(config)}) as cl:
        writer = LocalPeer("writer", tmp_path / "c" / "w")
        cl.peers.append(writer)
        writer.start([cl.peers[0].listen_addr])
        yield cl, f"http://127.0.0.1:{port}"


def record(peer: LocalPeer, model: str, throughput: float) -> str:
    with peer.client() as client:
        return client.store_performance_result(
            model_name=model, hardware_type="cuda", device_name="A100", batch_size=8,
            precision="fp16", throughput=throughput, latency=1000 * 8 / throughput,
        )  # fmt: skip


def get(url: str, host: str | None = None) -> tuple[int, object]:
    request = urllib.request.Request(url, headers={"Host": host} if host else {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def pixels(png: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(png) as image:
        return np.asarray(image.convert("RGB"), dtype=np.int16).reshape(-1, 3)


def red_pixels(png: Path) -> int:
    """Pixels of the colour regressions are marked in."""
    return int((np.abs(pixels(png) - REGRESSION_RED).max(axis=1) < 30).sum())


def coloured_pixels(png: Path) -> int:
    """Pixels that are not grey: lines, points, legend marks."""
    p = pixels(png)
    return int(((p.max(axis=1) - p.min(axis=1)) > 60).sum())


@pytest.mark.skipif(CHROMIUM is None, reason="no chromium (Debian package; .ci/run installs it)")
def test_dashboard_shows_charts_regressions_and_live_results(
    dashboard: tuple[LocalCluster, str], tmp_path: Path
) -> None:
    from playwright.sync_api import sync_playwright

    cluster, url = dashboard
    _viewer, writer = cluster.peers
    for i in range(14):  # a stable history, then a 70 % drop: a regression
        record(writer, "reg-model", 100.0 + (i % 3))
    planted = record(writer, "reg-model", 30.0)
    for i in range(5):  # other models, for the similarity view
        record(writer, f"other-model-{i % 2}", 80.0 + i)
    cluster.wait_converged(timeout=30)
    status, series = get(f"{url}/api/series?model=reg-model&hardware=cuda:A100")
    assert status == 200 and planted in series["regressions"]  # type: ignore[index]
    assert get(f"{url}/api/overview", host="evil.example")[0] == 421

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROME_FLAGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto(url)
        page.wait_for_selector("body[data-ready='1']", timeout=30_000)
        page.select_option("#config", label="reg-model on cuda:A100 (15)")  # 14 + the drop
        page.wait_for_function(
            "document.querySelector('#regression-note').textContent.startsWith('1 regression')"
        )
        chart = tmp_path / "throughput.png"
        page.locator("#throughput-chart").screenshot(path=str(chart))
        assert coloured_pixels(chart) > 500  # the line and its points are drawn
        assert red_pixels(chart) > 30  # the planted regression is marked
        assert page.locator("#compat .compatible").count() >= 1
        page.fill("#similar-node", "reg-model")
        page.click("#similar-form button")
        page.wait_for_selector("#similar tbody tr td:has-text('other-model')")
        assert page.locator("#convergence").text_content() == "converged"

        fresh = record(writer, "live-model", 55.0)  # on the other peer
        page.wait_for_selector(f"tr[data-result-id='{fresh}']", timeout=30_000)
        page.screenshot(path=str(tmp_path / "dashboard.png"), full_page=True)
        browser.close()
    assert errors == []


def test_a_remote_dashboard_address_needs_allow_remote(tmp_path: Path) -> None:
    config = tmp_path / "web.toml"
    config.write_text('[web]\nlisten = "0.0.0.0:18099"\n')
    peer = LocalPeer("remote", tmp_path / "p", {"DUCKPEER_CONFIG": str(config)})
    with pytest.raises(ClusterError, match="exited with 2"):
        peer.start(timeout=30)
    wait_until(lambda: "allow_remote" in peer.log_path.read_text(), 10, "the reason logged")
