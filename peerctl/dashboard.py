"""``peerctl top``: one frame of the live dashboard, drawn with rich from
``monitor_snapshot``."""

from __future__ import annotations

from typing import Any

from rich.console import Group
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

HEALTH_STYLE = {"healthy": "green", "degraded": "yellow", "unhealthy": "bold red"}
SEVERITY_STYLE = {"critical": "bold red", "warning": "yellow", "info": "cyan"}
RATE_ROWS = (
    ("changesets applied/s", "changesets_applied_per_s", "{:.1f}"),
    ("changesets committed/s", "changesets_committed_per_s", "{:.1f}"),
    ("rows written/s", "rows_written_per_s", "{:.0f}"),
    ("sync bytes/s", "sync_bytes_per_s", "{:,.0f}"),
    ("control requests/s", "control_requests_per_s", "{:.1f}"),
    ("queries/s", "queries_per_s", "{:.1f}"),
    ("last query ms", "query_ms", "{:.2f}"),
    ("cache hit rate", "cache_hit_rate", "{:.0%}"),
    ("malformed msgs/s", "malformed_messages_per_s", "{:.2f}"),
    ("we lack (changesets)", "replication_behind_changesets", "{:.0f}"),
    ("conflicts open", "conflicts_open", "{:.0f}"),
    ("daemon CPU %", "cpu_percent", "{:.1f}"),
    ("database bytes", "duckdb_size_bytes", "{:,.0f}"),
)


def short(text: str | None, keep: int = 12) -> str:
    """The tail of a long id (peer ids and CIDs differ at the end)."""
    if not text:
        return "-"
    return text if len(text) <= keep + 1 else "…" + text[-keep:]


def render(snap: dict[str, Any]) -> Group:
    """The whole frame: header, peers, rates, alerts."""
    health = snap["health"]
    head = Text.assemble(
        ("duckpeer ", "bold"),
        (short(snap["peer_id"], 16), "cyan"),
        f"  cid {short(snap['db_cid'], 16)}  changesets {snap['changesets']:,}"
        f"  load {snap['load']:g}  up {snap['uptime_s']:.0f}s  ",
        (health["status"].upper(), HEALTH_STYLE.get(health["status"], "")),
    )
    parts: list[Any] = [head]
    parts += [Text(f"  - {reason}", style="yellow") for reason in health["reasons"]]
    parts += [_peers(snap), _rates(snap["figures"]), _alerts(snap["alerts"])]
    return Group(*parts)


def _peers(snap: dict[str, Any]) -> Panel:
    table = Table(expand=True, show_edge=False)
    for col in ("peer", "conn", "cid", "same cid", "lags us by", "ahead by", "load", "seen"):
        table.add_column(col, justify="right" if col not in ("peer", "cid") else "left")
    for p in snap["peers"]:
        same = "-" if p["db_cid"] is None else ("yes" if p["db_cid"] == snap["db_cid"] else "no")
        table.add_row(
            short(p["peer_id"], 16),
            "yes" if p["connected"] else "[red]no[/]",
            short(p["db_cid"], 16),
            same,
            _num(p["lag"]),
            _num(p["ahead"]),
            _num(p["load"]),
            "-" if p["age_s"] is None else f"{p['age_s']:.0f}s ago",
        )
    if not snap["peers"]:
        table.add_row("(no peers)", "", "", "", "", "", "", "")
    return Panel(table, title=f"peers ({len(snap['peers'])})", title_align="left")


def _rates(figures: dict[str, Any]) -> Panel:
    table = Table(show_header=False, show_edge=False, box=None, expand=True)
    table.add_column("figure")
    table.add_column("value", justify="right")
    table.add_column("figure")
    table.add_column("value", justify="right")
    cells = []
    for label, key, fmt in RATE_ROWS:
        value = figures.get(key)
        cells.append((label, "-" if value is None else fmt.format(value)))
    for i in range(0, len(cells), 2):
        left, right = cells[i], cells[i + 1] if i + 1 < len(cells) else ("", "")
        table.add_row(left[0], left[1], right[0], right[1])
    return Panel(table, title="rates", title_align="left")


def _alerts(alerts: list[dict[str, Any]]) -> Panel:
    if not alerts:
        return Panel(Text("no alerts firing", style="green"), title="alerts", title_align="left")
    table = Table(show_edge=False, expand=True)
    for col in ("severity", "alert", "tags", "value"):
        table.add_column(col)
    for a in alerts:
        tags = ", ".join(f"{k}={short(v)}" for k, v in a["tags"].items())
        sev = a["severity"]
        table.add_row(
            f"[{SEVERITY_STYLE.get(sev, '')}]{sev}[/]", a["name"], tags, f"{a['value']:g}"
        )
    return Panel(table, title=f"alerts ({len(alerts)} firing)", title_align="left")


def _num(value: Any) -> str:
    if value is None:
        return "-"
    return f"{value:g}" if isinstance(value, float) else str(value)
