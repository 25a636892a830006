"""Charts drawn on the server as inline SVG: no JavaScript library, nothing fetched, readable as
plain markup (each bar and point has a <title> tooltip) and printable."""

from __future__ import annotations

from typing import Any

from markupsafe import Markup, escape

from ...i18n import N_, _
from .formats import duration as human_duration

WIDTH, HEIGHT, LEFT, BOTTOM, TOP = 720, 160, 44, 18, 8
COLOURS = {
    "succeeded": "#2e7d32",
    "failed": "#c62828",
    "cancelled": "#9e9e9e",
    "wait_avg": "#1565c0",
    "run_avg": "#ef6c00",
}


def _frame(top_label: str, minutes: int, body: list[str], label: str) -> Markup:
    plot_h = HEIGHT - BOTTOM - TOP
    start, now = escape(_("-%(minutes)d min", minutes=minutes)), escape(_("now"))
    axis = [
        f'<line x1="{LEFT}" y1="{TOP + plot_h}" x2="{WIDTH}" y2="{TOP + plot_h}" stroke="#888"/>',
        f'<line x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{TOP + plot_h}" stroke="#888"/>',
        f'<text x="{LEFT - 4}" y="{TOP + 8}" text-anchor="end" font-size="10">{escape(top_label)}</text>',
        f'<text x="{LEFT - 4}" y="{TOP + plot_h}" text-anchor="end" font-size="10">0</text>',
        f'<text x="{LEFT}" y="{HEIGHT - 4}" font-size="10">{start}</text>',
        f'<text x="{WIDTH}" y="{HEIGHT - 4}" text-anchor="end" font-size="10">{now}</text>',
    ]
    return Markup(
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" width="100%" role="img" '
        f'aria-label="{escape(label)}" xmlns="http://www.w3.org/2000/svg">' + "".join(axis + body) + "</svg>"
    )


def throughput(series: list[dict[str, Any]]) -> Markup:
    """Jobs finished per minute, stacked by final state."""
    n = max(len(series), 1)
    plot_w, plot_h = WIDTH - LEFT, HEIGHT - BOTTOM - TOP
    top = max((s["succeeded"] + s["failed"] + s["cancelled"] for s in series), default=0) or 1
    slot = plot_w / n
    body = []
    for i, s in enumerate(series):
        y = TOP + plot_h
        total = s["succeeded"] + s["failed"] + s["cancelled"]
        tip = _(
            "%(start)s: %(total)d finished (%(succeeded)d succeeded, %(failed)d failed, %(cancelled)d cancelled)",
            start=s["start"],
            total=total,
            succeeded=s["succeeded"],
            failed=s["failed"],
            cancelled=s["cancelled"],
        )
        for state in ("succeeded", "failed", "cancelled"):
            if not s[state]:
                continue
            h = s[state] / top * plot_h
            y -= h
            body.append(
                f'<rect x="{LEFT + i * slot + 0.5:.1f}" y="{y:.1f}" width="{max(slot - 1, 1):.1f}" '
                f'height="{h:.1f}" fill="{COLOURS[state]}"><title>{escape(tip)}</title></rect>'
            )
    return _frame(_("%(count)s/min", count=top), n, body, _("jobs finished per minute over the last hour"))


def durations(series: list[dict[str, Any]]) -> Markup:
    """Average wait (queued to started) and run time per minute, as two lines."""
    n = max(len(series), 1)
    plot_w, plot_h = WIDTH - LEFT, HEIGHT - BOTTOM - TOP
    top = max((s[k] for s in series for k in ("wait_avg", "run_avg") if s[k] is not None), default=0.0) or 1.0
    slot = plot_w / n
    body = []
    tips = {
        "wait_avg": N_("%(start)s: average wait %(average)s, longest %(longest)s"),
        "run_avg": N_("%(start)s: average run %(average)s, longest %(longest)s"),
    }
    for key in ("wait_avg", "run_avg"):
        points = [
            (LEFT + (i + 0.5) * slot, TOP + plot_h - s[key] / top * plot_h, s)
            for i, s in enumerate(series)
            if s[key] is not None
        ]
        if len(points) > 1:
            path = " ".join(f"{x:.1f},{y:.1f}" for x, y, _s in points)
            body.append(f'<polyline points="{path}" fill="none" stroke="{COLOURS[key]}" stroke-width="1.5"/>')
        for x, y, s in points:
            longest = human_duration(s[key.replace("avg", "max")])
            tip = _(tips[key], start=s["start"], average=human_duration(s[key]), longest=longest)
            body.append(
                f'<circle cx="{x:.1f}" cy="{y:.1f}" r="2.5" fill="{COLOURS[key]}"><title>{escape(tip)}</title></circle>'
            )
    label = _("average wait and run time per minute over the last hour")
    return _frame(human_duration(top), n, body, label)
