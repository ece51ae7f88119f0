"""``peerctl report``: one self-contained HTML file of charts (PNG, base64-embedded).

Charts: throughput and latency by hardware per model family, batch-size scaling,
throughput over time with regressions marked, cluster convergence (changesets and lag
per peer) and the daemon's own metrics history. Data comes from read-only SQL over
the replicated tables (aggregated in DuckDB, so the report's size does not grow with
the table) and from the monitor's history. matplotlib runs here in peerctl, with the
Agg backend, never in the daemon.
"""

from __future__ import annotations

import base64
import datetime
import html
import io
import itertools
import os
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

FAMILY = "coalesce(m.model_family, m.model_name, r.model_id, '?')"
HARDWARE = "coalesce(r.hardware_id, '?')"
JOINS = (
    "FROM performance_results r LEFT JOIN models m ON r.model_id = m.model_id "
    "LEFT JOIN test_runs t ON r.run_id = t.run_id"
)
WHEN = "coalesce(t.started_at, r.created_at)"
REGRESSION_DROP = 0.10  # a bucket 10 % below the previous one is marked
TOP_SERIES = 8
HISTORY = ("query_ms", "changesets_applied_per_s", "changesets_committed_per_s",
           "sync_bytes_per_s", "replication_lag_changesets", "cpu_percent")  # fmt: skip


@dataclass
class Chart:
    """One chart: its title, a caption and the PNG bytes."""

    slug: str
    title: str
    caption: str
    png: bytes


@dataclass
class ReportData:
    """Everything the charts are drawn from (gathered from a daemon or built in tests)."""

    by_hardware: list[dict[str, Any]] = field(default_factory=list)
    batch_scaling: list[dict[str, Any]] = field(default_factory=list)
    over_time: list[dict[str, Any]] = field(default_factory=list)
    verify: dict[str, Any] | None = None
    history: list[dict[str, Any]] = field(default_factory=list)
    generated_at: str = ""
    peer_id: str = ""
    db_cid: str = ""
    bucket: str = "day"


def gather(client: Any, window: str = "6h") -> ReportData:
    """Query the daemon for the report's data."""
    status = client.status()
    data = ReportData(peer_id=status["peer_id"], db_cid=status["db_cid"])
    data.generated_at = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    data.by_hardware = client.query_dicts(
        f"SELECT {FAMILY} AS family, {HARDWARE} AS hardware, count(*) AS n, "
        "median(r.throughput_items_per_second) AS throughput, "
        f"median(r.average_latency_ms) AS latency {JOINS} GROUP BY 1, 2 ORDER BY 1, 2"
    )
    data.batch_scaling = client.query_dicts(
        f"SELECT {FAMILY} AS family, r.batch_size AS batch, "
        "median(r.throughput_items_per_second) AS throughput, "
        f"median(r.average_latency_ms) AS latency, count(*) AS n {JOINS} "
        "WHERE r.batch_size IS NOT NULL GROUP BY 1, 2 ORDER BY 1, 2"
    )
    data.bucket = _bucket(client)
    data.over_time = client.query_dicts(
        f"SELECT {FAMILY} AS family, {HARDWARE} AS hardware, "
        f"CAST(date_trunc('{data.bucket}', {WHEN}) AS VARCHAR) AS bucket, "
        f"median(r.throughput_items_per_second) AS throughput, count(*) AS n {JOINS} "
        "GROUP BY 1, 2, 3 ORDER BY 1, 2, 3"
    )
    data.verify = client.verify()
    data.history = client.metrics_history(list(HISTORY), window)
    return data


def _bucket(client: Any) -> str:
    """Day buckets for long histories, hours for a day or two, minutes below that."""
    row = client.query_dicts(f"SELECT epoch(max({WHEN})) - epoch(min({WHEN})) AS span {JOINS}")[0]
    span = row["span"] or 0
    return "day" if span > 3 * 86400 else "hour" if span > 3 * 3600 else "minute"


# -- charts ---------------------------------------------------------------------------------


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({"figure.dpi": 100, "axes.grid": True, "grid.alpha": 0.3})
    return plt


def _ticker() -> Any:
    import matplotlib.ticker

    return matplotlib.ticker


def _png(fig: Any) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight")
    _pyplot().close(fig)
    return buf.getvalue()


def _empty(plt: Any, title: str, why: str) -> bytes:
    fig, ax = plt.subplots(figsize=(8, 2.5))
    ax.axis("off")
    ax.text(0.5, 0.5, why, ha="center", va="center", fontsize=12, color="#666")
    ax.set_title(title)
    return _png(fig)


def chart_by_hardware(rows: list[dict[str, Any]], metric: str, label: str) -> bytes:
    """Grouped bars: one group per model family, one bar per hardware."""
    plt = _pyplot()
    if not rows:
        return _empty(plt, label, "no benchmark results yet")
    families = sorted({r["family"] for r in rows})
    hardware = sorted({r["hardware"] for r in rows})
    value = {(r["family"], r["hardware"]): r[metric] for r in rows}
    fig, ax = plt.subplots(figsize=(max(8, len(families) * 1.2), 4.5))
    width = 0.8 / len(hardware)
    for i, hw in enumerate(hardware):
        xs = [f + i * width for f in range(len(families))]
        ys = [value.get((fam, hw)) or 0.0 for fam in families]
        ax.bar(xs, ys, width, label=hw)
    ax.set_xticks([f + 0.4 - width / 2 for f in range(len(families))], families, rotation=20)
    ax.set_ylabel(label)
    ax.set_title(f"{label} by hardware, per model family (median)")
    positive = [v for v in value.values() if v and v > 0]
    if positive and max(positive) > 50 * min(positive):
        ax.set_yscale("log")  # cpu next to a GPU would flatten to nothing
    ax.legend(fontsize=8, ncol=2)
    return _png(fig)


def chart_batch_scaling(rows: list[dict[str, Any]]) -> bytes:
    """Median throughput against batch size, one line per model family."""
    plt = _pyplot()
    if not rows:
        return _empty(plt, "Batch-size scaling", "no results with a batch size")
    lines: dict[str, list[tuple[int, float]]] = defaultdict(list)
    for r in rows:
        lines[r["family"]].append((r["batch"], r["throughput"]))
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for family, pts in sorted(lines.items()):
        pts.sort()
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=family)
    ax.set_xscale("log", base=2)
    ax.xaxis.set_major_formatter(_ticker().FuncFormatter(lambda v, _pos: f"{v:g}"))
    ax.set_xlabel("batch size")
    ax.set_ylabel("median throughput (items/s)")
    ax.set_title("Batch-size scaling")
    ax.legend(fontsize=8)
    return _png(fig)


def find_regressions(
    rows: list[dict[str, Any]], drop: float = REGRESSION_DROP
) -> list[dict[str, Any]]:
    """Buckets whose median throughput fell more than ``drop`` below the previous
    bucket of the same (family, hardware)."""
    out = []
    for (family, hw), pts in _series(rows).items():
        for (b0, v0), (b1, v1) in itertools.pairwise(pts):
            if v0 and v1 < v0 * (1 - drop):
                change = (v1 - v0) / v0 * 100
                out.append({"family": family, "hardware": hw, "from": b0, "to": b1,
                            "before": v0, "after": v1, "change_pct": change})  # fmt: skip
    return sorted(out, key=lambda r: r["change_pct"])


def _series(rows: list[dict[str, Any]]) -> dict[tuple[str, str], list[tuple[str, float]]]:
    series: dict[tuple[str, str], list[tuple[str, float]]] = defaultdict(list)
    for r in rows:
        series[(r["family"], r["hardware"])].append((r["bucket"], r["throughput"]))
    return {k: sorted(v) for k, v in series.items()}


def chart_over_time(rows: list[dict[str, Any]], bucket: str) -> bytes:
    """Median throughput per time bucket for the busiest (family, hardware) pairs,
    regressions circled in red."""
    plt = _pyplot()
    series = _series(rows)
    if not series:
        return _empty(plt, "Throughput over time", "no benchmark results yet")
    counts: dict[tuple[str, str], int] = defaultdict(int)
    for r in rows:
        counts[(r["family"], r["hardware"])] += r["n"]
    top = sorted(series, key=lambda k: -counts[k])[:TOP_SERIES]
    regressions = {(r["family"], r["hardware"], r["to"]) for r in find_regressions(rows)}
    fig, ax = plt.subplots(figsize=(9, 4.5))
    for key in top:
        pts = series[key]
        xs = [_when(b) for b, _ in pts]
        ax.plot(xs, [v for _, v in pts], marker=".", label=f"{key[0]} / {key[1]}")
        bad = [(x, v) for x, (b, v) in zip(xs, pts, strict=True) if (*key, b) in regressions]
        if bad:
            ax.scatter([x for x, _ in bad], [v for _, v in bad], s=120, facecolors="none",
                       edgecolors="red", linewidths=2, zorder=5)  # fmt: skip
    ax.set_ylabel("median throughput (items/s)")
    ax.set_title(f"Throughput over time (per {bucket}); red circles: drops > "
                 f"{REGRESSION_DROP:.0%}")  # fmt: skip
    ax.legend(fontsize=7, ncol=2)
    fig.autofmt_xdate()
    return _png(fig)


def _when(text: str) -> datetime.datetime:
    try:
        return datetime.datetime.fromisoformat(text)
    except ValueError:
        return datetime.datetime.min


def chart_convergence(report: dict[str, Any] | None) -> bytes:
    """Changesets held per peer against the cluster's union, and how far behind each is."""
    plt = _pyplot()
    if not report or not report["peers"]:
        return _empty(plt, "Cluster convergence", "no convergence data")
    peers = [p for p in report["peers"] if p["db_cid"] is not None]
    names = [f"…{p['peer_id'][-8:]}\n({p['source']})" for p in peers]
    held = [p["changesets"] for p in peers]
    behind = [p["behind_total"] or 0 for p in peers]
    fig, ax = plt.subplots(figsize=(max(6, len(peers) * 1.3), 4))
    ax.bar(names, held, color="#4c9f70", label="changesets held")
    ax.bar(names, behind, bottom=held, color="#e07a5f", label="behind the union")
    ax.axhline(report["target_changesets"], color="#333", linestyle="--", linewidth=1,
               label=f"union: {report['target_changesets']}")  # fmt: skip
    verdict = "converged" if report["converged"] else "NOT converged"
    if report["divergent"]:
        verdict += f"; {len(report['divergent'])} DIVERGENT vector(s)"
    ax.set_title(f"Cluster convergence ({verdict})")
    ax.set_ylabel("changesets")
    ax.legend(fontsize=8)
    return _png(fig)


def chart_history(series: list[dict[str, Any]]) -> bytes:
    """The daemon's own figures over the last hours, one panel per metric."""
    plt = _pyplot()
    names = sorted({s["name"] for s in series if s["points"]})
    if not names:
        return _empty(plt, "Daemon metrics", "no metrics history (monitor off or just started)")
    fig, axes = plt.subplots(
        len(names), 1, figsize=(9, 1.9 * len(names)), sharex=True, squeeze=False
    )
    for ax, name in zip(axes[:, 0], names, strict=True):
        for s in series:
            if s["name"] == name and s["points"]:
                xs = [datetime.datetime.fromtimestamp(t, datetime.UTC) for t, _ in s["points"]]
                label = ",".join(f"{k}=…{v[-6:]}" for k, v in s["tags"].items()) or name
                ax.plot(xs, [v for _, v in s["points"]], linewidth=1, label=label)
        ax.set_ylabel(name, fontsize=8)
        if len([s for s in series if s["name"] == name]) > 1:
            ax.legend(fontsize=6, ncol=3)
    axes[0, 0].set_title("Daemon metrics history")
    fig.autofmt_xdate()
    return _png(fig)


def build_charts(data: ReportData) -> list[Chart]:
    """Every chart of the report, in order."""
    regressions = find_regressions(data.over_time)
    return [
        Chart("throughput_by_hardware", "Throughput by hardware",
              "Median items/s of each model family on each hardware platform.",
              chart_by_hardware(data.by_hardware, "throughput", "throughput (items/s)")),
        Chart("latency_by_hardware", "Latency by hardware",
              "Median latency (ms) of each model family on each hardware platform.",
              chart_by_hardware(data.by_hardware, "latency", "latency (ms)")),
        Chart("batch_scaling", "Batch-size scaling",
              "Median throughput against batch size; a flat line stops scaling.",
              chart_batch_scaling(data.batch_scaling)),
        Chart("regressions", "Regressions over time",
              f"{len(regressions)} drop(s) of more than {REGRESSION_DROP:.0%} between "
              f"consecutive {data.bucket}s.", chart_over_time(data.over_time, data.bucket)),
        Chart("convergence", "Cluster convergence",
              "Changesets each peer holds (fresh answers over /duckpeer/status/1; gossip for "
              "unreachable peers) and how many it lacks against the union of all vectors.",
              chart_convergence(data.verify)),
        Chart("daemon_metrics", "Daemon metrics",
              "Query time, replication rates, lag and CPU sampled by the monitor.",
              chart_history(data.history)),
    ]  # fmt: skip


# -- HTML -----------------------------------------------------------------------------------


CSS = """body{font-family:system-ui,sans-serif;max-width:1000px;margin:2em auto;color:#222}
h1{margin-bottom:0}.meta{color:#666;font-size:.9em}figure{margin:2em 0}
img{max-width:100%;border:1px solid #ddd}figcaption{color:#555;font-size:.9em}
table{border-collapse:collapse;font-size:.85em}td,th{border:1px solid #ddd;padding:3px 8px}"""

# Marks the page once loaded with how many charts decoded (checked by the headless
# browser test); the report needs no script to be read.
LOAD_CHECK = (
    "window.addEventListener('load',()=>{const i=[...document.images];"
    "document.body.setAttribute('data-images-loaded',"
    "i.filter(x=>x.complete&&x.naturalWidth>0).length+'/'+i.length)})"
)


def render_html(data: ReportData, charts: list[Chart]) -> str:
    """The report page: every chart as an embedded PNG, plus the regressions table."""
    esc = html.escape
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>duckpeer report</title>",
        f"<style>{CSS}</style></head><body><h1>duckpeer report</h1>",
        f"<p class='meta'>generated {esc(data.generated_at)} by peer {esc(data.peer_id)}"
        f"<br>database CID {esc(data.db_cid)}</p>",
    ]
    for chart in charts:
        b64 = base64.b64encode(chart.png).decode()
        parts.append(
            f"<figure id='{chart.slug}'><h2>{esc(chart.title)}</h2>"
            f"<img alt='{esc(chart.title)}' src='data:image/png;base64,{b64}'>"
            f"<figcaption>{esc(chart.caption)}</figcaption></figure>"
        )
        if chart.slug == "regressions":
            parts.append(_regressions_table(find_regressions(data.over_time)))
    parts.append(f"<script>{LOAD_CHECK}</script></body></html>")
    return "\n".join(parts)


def _regressions_table(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "<p>No regressions found.</p>"
    cells = "".join(
        f"<tr><td>{html.escape(r['family'])}</td><td>{html.escape(r['hardware'])}</td>"
        f"<td>{html.escape(r['from'])}</td><td>{html.escape(r['to'])}</td>"
        f"<td>{r['before']:.1f}</td><td>{r['after']:.1f}</td><td>{r['change_pct']:.1f}%</td></tr>"
        for r in rows[:50]
    )
    return ("<table><tr><th>family</th><th>hardware</th><th>from</th><th>to</th>"
            f"<th>before</th><th>after</th><th>change</th></tr>{cells}</table>")  # fmt: skip


def check_writable(out: Path, png_dir: Path | None = None) -> str | None:
    """Why ``out`` (and ``png_dir``) cannot be written, or None: checked before the
    report is gathered, so a typo costs no queries."""
    if out.is_dir():
        return f"--out {out} is a directory"
    parent = out.parent if str(out.parent) else Path(".")
    if not parent.is_dir():
        return f"--out {out}: directory {parent} does not exist"
    if not os.access(parent, os.W_OK) or (out.exists() and not os.access(out, os.W_OK)):
        return f"--out {out}: not writable"
    if png_dir is not None and png_dir.exists() and not png_dir.is_dir():
        return f"--png-dir {png_dir} is not a directory"
    return None


def write_report(data: ReportData, out: Path, png_dir: Path | None = None) -> list[Chart]:
    """Draw the charts, write the HTML file (and each chart as PNG into ``png_dir``)."""
    charts = build_charts(data)
    out.write_text(render_html(data, charts), encoding="utf-8")
    if png_dir is not None:
        png_dir.mkdir(parents=True, exist_ok=True)
        for chart in charts:
            (png_dir / f"{chart.slug}.png").write_bytes(chart.png)
    return charts
