"""The console's views: what each page shows, read from the server's snapshot, score
history and suspect report (``scoresvc.service.console`` serves them)."""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from datetime import datetime, timezone
from typing import TYPE_CHECKING

from ..core.history import HistoryPoint
from ..core.results import UserScore
from ..core.snapshot import Snapshot
from ..core.suspects import Suspect, SuspectReport
from ..storage.history import History
from .auth import Caller
from .console_html import chart, href, number, page, table, text, user_link, when

if TYPE_CHECKING:
    from .console import ConsoleSource

TOP_USERS = 50
TOP_CONTRIBUTORS = 10
TOPICS_LISTED = 50
#: Topic charts on a user's page: the topics that rank the user now, by name.
TOPIC_CHARTS = 6
#: The most recent points a chart draws (the retention at a short interval holds more).
CHART_POINTS = 1_000
SUSPECTS_LISTED = 100
MEMBERS_LISTED = 12

#: The explanation's recorded sums, as a person reads them.
SUMS = (
    ("engagement_received", "Engagement received"),
    ("engagement_saturated", "Engagement counted (after saturation)"),
    ("endorsements_received", "Endorsements received"),
    ("endorsements_effective", "Endorsements counted"),
    ("reciprocity_removed", "Not counted: favours returned"),
    ("teleport_share", "Share from the user's own account"),
)


class BadRequest(ValueError):
    """A query a page cannot answer (the message names the parameter)."""


def day_start(day: str) -> float:
    """A ``YYYY-MM-DD`` day's first second in UTC, as unix seconds."""
    try:
        parsed = datetime.strptime(day, "%Y-%m-%d").replace(tzinfo=timezone.utc)
    except ValueError:
        raise BadRequest(f"since: {day!r} is not a day as YYYY-MM-DD") from None
    return parsed.timestamp()


def starting() -> str:
    return page("Starting", "<h1>Starting</h1><p>The service is loading its data.</p>")


def refused(reason: str, ask_token: bool) -> str:
    form = (
        '<form method="get" action=""><label>Token <input type="password" name="token" '
        'autocomplete="off" required></label><button>Sign in</button></form>'
        if ask_token
        else ""
    )
    return page(
        "Not allowed",
        f"<h1>Not allowed</h1><p>{text(reason)}</p>{form}"
        '<p class="note">The console takes the API\'s tokens: '
        "<code>Authorization: Bearer &lt;token&gt;</code>, or once as "
        "<code>?token=</code> in the address (kept in a cookie afterwards).</p>",
    )


def _status_line(snap: Snapshot) -> str:
    return f"as of {when(snap.time)}, write {snap.sequence:,}"


class Views:
    """The pages, each a function of the query and what the server holds now."""

    def __init__(self, source: ConsoleSource, history: History) -> None:
        self.source = source
        self.history = history

    # ------------------------------------------------------------------ top users

    def top(self, topic: str) -> str:
        snap = self.source.engine.snapshot
        ranked = snap.top(TOP_USERS, topic)
        rows = [
            [str(i), user_link(r.user_id), f"{r.score:.1f}", number(r.influence)]
            for i, r in enumerate(ranked, 1)
        ]
        where = f"in {topic}" if topic else "overall"
        body = [f"<h1>Top users {text(where)}</h1>"]
        if rows:
            body.append(table(["#", "User", "Score", "Influence"], rows, {0, 2, 3}))
        else:
            body.append("<p>No user is ranked here yet.</p>")
        names = snap.ranked_topics[0][:TOPICS_LISTED]
        if names:
            links = [f'<a href="{href("/")}">overall</a>']
            links += [f'<a class="topic" href="{href("/", topic=n)}">{text(n)}</a>' for n in names]
            body.append("<h2>Topics</h2><p>" + " · ".join(links) + "</p>")
        if self.source.suspects.latest is not None:
            body.append(f'<p><a href="{href("/suspects")}">Moderation report</a> (admins)</p>')
        return page(f"Top users {where}", "".join(body), status_line=_status_line(snap))

    # ------------------------------------------------------------------ a user

    def user(self, user_id: str, since: str, caller: Caller) -> str:
        if not user_id:
            raise BadRequest("id: name a user (/user?id=...)")
        engine = self.source.engine
        engine.snapshot.user(user_id)  # NotFound first
        report = self.source.suspects.latest
        cluster = report.cluster_of(user_id) if report is not None else frozenset()
        snap, contributions = engine.contributions(user_id, TOP_CONTRIBUTORS, cluster)
        now = snap.score(user_id, "", contributions)
        body = [
            f"<h1>{text(user_id)}</h1>",
            _figures(now),
            "<h2>Why this score</h2>",
            _sentences(now.explanation.summary),
            "<h2>Score history</h2>",
            self._charts(user_id, _topics_of(snap, user_id)),
            "<h2>Top contributors</h2>",
            _contributors(now),
            "<h2>What changed</h2>",
            self._since(user_id, since, now),
            "<h2>Moderation report</h2>",
            _moderation(user_id, report, caller),
        ]
        return page(user_id, "".join(body), status_line=_status_line(snap))

    def _charts(self, user_id: str, topics: Sequence[str]) -> str:
        out = []
        for topic in ["", *topics]:
            points, dropped = self._chart_points(user_id, topic)
            name = f"In {topic}" if topic else "Overall"
            note = f" (the latest {len(points):,}; {dropped:,} older not drawn)" if dropped else ""
            out.append(
                f'<section class="history" data-topic="{text(topic)}"><h3>{text(name)}</h3>'
                f'<p class="muted">{len(points):,} recorded points{note}; times in UTC</p>'
                + chart(points, f"score of {user_id} {name.lower()} over time")
                + "</section>"
            )
        return "".join(out)

    def _chart_points(self, user_id: str, topic: str) -> tuple[list[HistoryPoint], int]:
        times = self.history.times()
        start = times[-CHART_POINTS] if len(times) > CHART_POINTS else None
        points = self.history.points(user_id, topic, start=start)
        # Points are a microsecond apart at least: the one before ``start`` ends there.
        dropped = len(self.history.points(user_id, topic, end=start - 1e-6)) if start else 0
        return points, dropped

    def _since(self, user_id: str, since: str, now: UserScore) -> str:
        form = (
            '<form method="get" action="/user">'
            f'<input type="hidden" name="id" value="{text(user_id)}">'
            f'<label>Since <input type="date" name="since" value="{text(since)}" required>'
            "</label><button>Compare</button></form>"
        )
        if not since:
            return form + '<p class="note">Pick a day (UTC) to compare with now.</p>'
        then, label = self._point_before(user_id, day_start(since))
        if then is None:
            return form + "<p>No score of this user is recorded yet.</p>"
        e = now.explanation
        rows = [
            ("Score", then.score, now.score),
            ("Influence", then.influence, now.influence),
            ("Percentile", then.percentile, now.percentile),
            *((name, getattr(then, f), getattr(e, f)) for f, name in SUMS),
        ]
        cells = [[text(n), number(a), number(b), number(b - a, signed=True)] for n, a, b in rows]
        return (
            form
            + f'<p class="compared">Compared: {text(label)} ({text(when(then.time))}) and now.</p>'
            + table(["", "Then", "Now", "Change"], cells, {1, 2, 3})
            + '<p class="note">The differences of the recorded numbers; which contributors '
            "and events caused them is not broken down here.</p>"
        )

    def _point_before(self, user_id: str, at: float) -> tuple[HistoryPoint | None, str]:
        """The user's last point at or before ``at``, else its first point."""
        times = self.history.times()
        for t in reversed(times[: bisect.bisect_right(times, at)]):
            found = self.history.points(user_id, "", start=t, end=t)
            if found:
                return found[0], "the last point recorded before that day began"
        first = self.history.points(user_id, "", limit=1)
        label = "the oldest recorded point (none is recorded before that day)"
        return (first[0], label) if first else (None, "")

    # ------------------------------------------------------------------ the report

    def suspects(self) -> str:
        report = self.source.suspects.latest
        if report is None:
            return page("Moderation report", "<h1>Moderation report</h1><p>Not computed yet.</p>")
        rows = [_suspect_row(s) for s in report.suspects[:SUSPECTS_LISTED]]
        body = (
            "<h1>Moderation report</h1>"
            f'<p class="muted">{len(report.suspects):,} suspect clusters at write '
            f"{report.sequence:,} ({text(when(report.compute_time))}).</p>"
        )
        if rows:
            headers = ["Kind", "Suspicion", "Members", "Benefits", "From the cluster"]
            body += table(headers, rows, {1, 4})
        return page("Moderation report", body)


def _topics_of(snap: Snapshot, user_id: str) -> list[str]:
    """The topics that rank the user now (the first ``TOPIC_CHARTS`` by name)."""
    out = []
    for name in snap.ranked_topics[0]:
        influence = snap.scores([user_id], name)[2]
        if influence[0] > 0:
            out.append(name)
            if len(out) == TOPIC_CHARTS:
                break
    return out


def _figures(now: UserScore) -> str:
    figures = [
        ("Score", f"{now.score:.1f}"),
        ("Percentile", f"{now.percentile:.1f}"),
        ("Influence", number(now.influence)),
        ("Status", now.status.name.lower()),
    ]
    return (
        '<div class="figures">'
        + "".join(f"<div>{text(k)}<b>{text(v)}</b></div>" for k, v in figures)
        + "</div>"
    )


def _sentences(summary: Sequence[str]) -> str:
    if not summary:
        return "<p>Nothing stands out in this score.</p>"
    return '<ul class="sentences">' + "".join(f"<li>{text(s)}</li>" for s in summary) + "</ul>"


def _contributors(now: UserScore) -> str:
    top = now.explanation.top_contributors
    if not top:
        return "<p>No account passes trust to this user.</p>"
    rows = [[user_link(c.user_id), f"{100 * c.share:.1f}%"] for c in top]
    return table(["Account", "Share of the standing"], rows, {1})


def _links(user_ids: Sequence[str]) -> str:
    shown = ", ".join(user_link(u) for u in user_ids[:MEMBERS_LISTED])
    more = len(user_ids) - MEMBERS_LISTED
    return shown + (f" and {more:,} more" if more > 0 else "")


def _suspect_row(s: Suspect) -> list[str]:
    return [
        text(s.kind.name.lower().replace("_", " ")),
        f"{s.score:.2f}",
        _links(s.member_ids),
        _links(s.beneficiary_ids),
        f"{100 * s.evidence.credibility_from_cluster:.0f}%",
    ]


def _moderation(user_id: str, report: SuspectReport | None, caller: Caller) -> str:
    if not caller.may("admin"):
        return '<p class="note">The moderation report needs an admin token.</p>'
    if report is None:
        return "<p>No suspect report is computed yet.</p>"
    listed = [s for s in report.suspects if user_id in s.member_ids or user_id in s.beneficiary_ids]
    seen = f"The latest report (write {report.sequence:,}, {when(report.compute_time)})"
    if not listed:
        return f"<p>{text(seen)} lists no cluster this user is in or benefits from.</p>"
    rows = [_suspect_row(s) for s in listed]
    return (
        f'<p class="suspected">{text(seen)} lists this user in {len(listed)} '
        "cluster(s):</p>"
        + table(["Kind", "Suspicion", "Members", "Benefits", "From the cluster"], rows, {1, 4})
    )
