"""``scoresvc history`` and ``scoresvc why``: a user's recorded scores and why its score
changed, from a running service, for an operator answering "why did my score change"."""

from __future__ import annotations

import argparse
import datetime
import json
from dataclasses import asdict

from ..core.change import ChangeReport
from ..core.history import HistoryPoint
from .errors import Failed
from .flags import add, as_of, calling, client_tls_flags, log_flags

DEFAULT_ADDRESS = "127.0.0.1:50051"
_COLUMNS = ("time (UTC)", "score", "influence", "percentile", "status", "sequence")


def client_flags(parser: argparse.ArgumentParser, role: str = "reader") -> None:
    """The flags of the commands that call a running service (as ``role`` at least)."""
    add(parser, "--address", str, DEFAULT_ADDRESS, "the service's HOST:PORT")
    add(parser, "--token", str, "", f"a bearer token with the {role} role (scoresvc token)")
    client_tls_flags(parser)
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    log_flags(parser, "WARNING")


def history_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("user", help="the user id")
    add(parser, "--topic", str, "", "a topic (default: the global score)")
    add(parser, "--since", as_of, None, "from this day or time (2026-01-02, RFC 3339, unix s)")
    client_flags(parser)


def history(args: argparse.Namespace) -> int:
    """Print the user's recorded points, oldest first."""
    points = calling(
        args, lambda c: c.score_history(args.user, args.topic, start_time=args.since), "reader"
    )
    if args.json:
        print(json.dumps([_json_of(p) for p in points], indent=2))
    else:
        print(table(points))
    return 0


def _utc(seconds: float) -> str:
    moment = datetime.datetime.fromtimestamp(seconds, datetime.timezone.utc)
    return moment.strftime("%Y-%m-%d %H:%M:%S")


def _json_of(p: HistoryPoint) -> dict[str, object]:
    out = asdict(p)
    out["status"] = p.status.name
    out["time_utc"] = _utc(p.time)
    return out


def table(points: list[HistoryPoint]) -> str:
    """The points as a table, a row each, or a line saying there are none."""
    if not points:
        return "no points recorded in that range"
    rows = [
        (
            _utc(p.time),
            f"{p.score:.2f}",
            f"{p.influence:.4g}",
            f"{p.percentile:.2f}",
            p.status.name,
            str(p.sequence),
        )
        for p in points
    ]
    widths = [max(len(c), *(len(r[i]) for r in rows)) for i, c in enumerate(_COLUMNS)]
    lines = [_COLUMNS, *rows]
    return "\n".join(
        "  ".join(
            cell.ljust(w) if i in (0, 4) else cell.rjust(w)
            for i, (cell, w) in enumerate(zip(line, widths))
        ).rstrip()
        for line in lines
    )


def why_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("user", help="the user id")
    add(parser, "--since", as_of, None, "from this day or time (2026-01-02, RFC 3339, unix s)")
    add(parser, "--until", as_of, None, "to this day or time (default: now)")
    client_flags(parser)


def why(args: argparse.Namespace) -> int:
    """Print why the user's score changed since ``--since``: its parts, largest first."""
    if args.since is None:
        raise Failed("--since is required: the day or time to explain the change from")
    change = calling(args, lambda c: c.explain_change(args.user, args.since, args.until), "reader")
    if args.json:
        out = asdict(change)
        for part in out["parts"]:
            part["cause"] = part["cause"].name
        print(json.dumps(out, indent=2, default=str))
    else:
        print(change_table(change))
    return 0


def change_table(change: ChangeReport) -> str:
    """The summary sentences, then the parts as a table."""
    lines = [
        *change.summary,
        "",
        f"from {_utc(change.from_time)} to {_utc(change.to_time)} (UTC)",
        f"{'cause':28} {'contributor':20} {'score':>8} {'influence':>11}",
    ]
    for p in change.parts:
        lines.append(
            f"{p.cause.name.lower():28} {p.contributor_id:20} "
            f"{p.score_change:+8.2f} {p.influence_change:+11.4g}"
        )
    return "\n".join(lines)
