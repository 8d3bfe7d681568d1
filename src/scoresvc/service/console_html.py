"""The console's HTML: pages, tables and the score-history chart as inline SVG.

Everything here returns markup; every piece of text that came from outside (user ids,
topics, sentences that quote user ids) goes through ``text`` on its way in. Times are
shown in UTC. No script: the pages work in any browser, and the chart's points carry
their numbers in ``<title>`` (shown on hover or long press) and in ``data-``
attributes.
"""

from __future__ import annotations

import html
import math
from collections.abc import Iterable, Sequence
from datetime import datetime, timezone
from urllib.parse import urlencode

from ..core.history import HistoryPoint

#: The chart's drawing box (the SVG scales to the width it is given).
WIDTH, HEIGHT = 480, 210
_LEFT, _RIGHT, _TOP, _BOTTOM = 40, 12, 12, 34

_STYLE = """
:root { color-scheme: light dark; --line: #2563eb; --muted: #6b7280; --rule: #d1d5db; }
* { box-sizing: border-box; }
body { font: 1rem/1.5 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
  margin: 0 auto; padding: 1rem; max-width: 64rem; overflow-wrap: break-word; }
header { display: flex; flex-wrap: wrap; gap: .25rem 1rem; align-items: baseline;
  border-bottom: 1px solid var(--rule); margin-bottom: 1rem; }
header a { font-weight: 600; text-decoration: none; }
h1 { font-size: 1.5rem; margin: .5rem 0; }
h2 { font-size: 1.2rem; margin: 1.5rem 0 .5rem; }
h3 { font-size: 1rem; margin: 1rem 0 .25rem; }
a { color: var(--line); }
.muted, .note { color: var(--muted); font-size: .9rem; }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; padding: .35rem .5rem; border-bottom: 1px solid var(--rule);
  vertical-align: top; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
.figures { display: grid; grid-template-columns: repeat(auto-fit, minmax(9rem, 1fr));
  gap: .5rem; margin: .5rem 0; }
.figures div { border: 1px solid var(--rule); border-radius: .5rem; padding: .5rem .75rem; }
.figures b { display: block; font-size: 1.4rem; }
svg.chart { width: 100%; max-width: 40rem; height: auto; display: block; }
svg.chart .axis { stroke: var(--rule); stroke-width: 1; }
svg.chart .line { fill: none; stroke: var(--line); stroke-width: 2; }
svg.chart .point { fill: var(--line); }
svg.chart text { fill: var(--muted); font-size: 14px; }
form { display: flex; flex-wrap: wrap; gap: .5rem; align-items: center; }
input, button { font: inherit; padding: .3rem .5rem; }
ul.sentences li { margin-bottom: .25rem; }
"""


def text(value: object) -> str:
    """``value`` safe as element content or a quoted attribute's value."""
    return html.escape(str(value), quote=True)


def href(path: str, **query: str) -> str:
    """A link to ``path`` with ``query`` (empty values left out), escaped for an
    attribute."""
    kept = {k: v for k, v in query.items() if v}
    return text(path + ("?" + urlencode(kept) if kept else ""))


def user_link(user_id: str) -> str:
    return f'<a class="user" href="{href("/user", id=user_id)}">{text(user_id)}</a>'


def when(seconds: float) -> str:
    """A unix time as "2026-11-30 08:52 UTC"."""
    return datetime.fromtimestamp(seconds, timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def number(value: float, signed: bool = False) -> str:
    """A figure to four significant digits (signed: with its sign, for differences)."""
    return f"{value:+.4g}" if signed else f"{value:.4g}"


def page(title: str, body: str, *, status_line: str = "") -> str:
    """A whole page: ``title`` (plain text) and ``body`` (markup)."""
    return (
        "<!doctype html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{text(title)} · scoresvc console</title><style>{_STYLE}</style></head>"
        '<body><header><a href="/">scoresvc console</a>'
        f'<span class="muted">{text(status_line)}</span></header>'
        f"<main>{body}</main></body></html>\n"
    )


def table(headers: Sequence[str], rows: Iterable[Sequence[str]], numeric: set[int]) -> str:
    """A table of markup cells; ``numeric``: the columns aligned right."""

    def cell(tag: str, i: int, content: str) -> str:
        kind = ' class="num"' if i in numeric else ""
        return f"<{tag}{kind}>{content}</{tag}>"

    head = "".join(cell("th", i, text(h)) for i, h in enumerate(headers))
    body = "".join(
        "<tr>" + "".join(cell("td", i, c) for i, c in enumerate(row)) + "</tr>" for row in rows
    )
    return (
        f'<div class="scroll"><table><thead><tr>{head}</tr></thead>'
        f"<tbody>{body}</tbody></table></div>"
    )


def chart(points: Sequence[HistoryPoint], label: str) -> str:
    """The scores of ``points`` (oldest first) over time as an SVG line with one
    circle per point; scores run from 1 to 100, so the axis does too."""
    inner_w, inner_h = WIDTH - _LEFT - _RIGHT, HEIGHT - _TOP - _BOTTOM
    first, last = (points[0].time, points[-1].time) if points else (0.0, 0.0)
    span = last - first

    def x(t: float) -> float:
        return _LEFT + (inner_w * (t - first) / span if span > 0 else inner_w / 2)

    def y(score: float) -> float:
        return _TOP + inner_h * (1 - min(max(score, 0.0), 100.0) / 100.0)

    parts = [
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
        f'aria-label="{text(label)}" data-points="{len(points)}">'
    ]
    for level in (0, 50, 100):
        parts.append(
            f'<line class="axis" x1="{_LEFT}" x2="{WIDTH - _RIGHT}" y1="{y(level):.1f}" '
            f'y2="{y(level):.1f}"/><text x="{_LEFT - 6}" y="{y(level) + 4:.1f}" '
            f'text-anchor="end">{level}</text>'
        )
    if points:
        parts.append(
            f'<text x="{_LEFT}" y="{HEIGHT - 10}">{text(when(first)[:16])}</text>'
            f'<text x="{WIDTH - _RIGHT}" y="{HEIGHT - 10}" text-anchor="end">'
            f"{text(when(last)[:16])}</text>"
        )
        line = " ".join(f"{x(p.time):.1f},{y(p.score):.1f}" for p in points)
        parts.append(f'<polyline class="line" points="{line}"/>')
    for p in points:
        if not math.isfinite(p.score):
            continue
        parts.append(
            f'<circle class="point" cx="{x(p.time):.1f}" cy="{y(p.score):.1f}" r="3.5" '
            f'data-time="{p.time!r}" data-score="{p.score!r}" '
            f'data-percentile="{p.percentile!r}"><title>{text(when(p.time))}: score '
            f"{p.score:.1f}, percentile {p.percentile:.1f}</title></circle>"
        )
    parts.append("</svg>")
    return "".join(parts)
