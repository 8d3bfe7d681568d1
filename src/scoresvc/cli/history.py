"""``scoresvc history``: a user's recorded scores, from a running service, for an
operator answering "why did my score change"."""

from __future__ import annotations

import argparse
import datetime
import json
from dataclasses import asdict

from ..client import ScoreClient, ScoreServiceError
from ..core.history import HistoryPoint
from .errors import Failed
from .flags import add, as_of, log_flags

DEFAULT_ADDRESS = "127.0.0.1:50051"
_COLUMNS = ("time (UTC)", "score", "influence", "percentile", "status", "sequence")


def client_flags(parser: argparse.ArgumentParser) -> None:
    """The flags of the commands that call a running service."""
    add(parser, "--address", str, DEFAULT_ADDRESS, "the service's HOST:PORT")
    add(parser, "--token", str, "", "a bearer token with the reader role (scoresvc token)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    log_flags(parser, "WARNING")


def history_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("user", help="the user id")
    add(parser, "--topic", str, "", "a topic (default: the global score)")
    add(parser, "--since", as_of, None, "from this day or time (2026-01-02, RFC 3339, unix s)")
    client_flags(parser)


def history(args: argparse.Namespace) -> int:
    """Print the user's recorded points, oldest first."""
    with ScoreClient(args.address, token=args.token or None) as client:
        try:
            points = client.score_history(args.user, args.topic, start_time=args.since)
        except ScoreServiceError as error:
            raise Failed(_refusal(error, args.address)) from None
    if args.json:
        print(json.dumps([_json_of(p) for p in points], indent=2))
    else:
        print(table(points))
    return 0


def _refusal(error: ScoreServiceError, address: str) -> str:
    if error.code.name == "UNAVAILABLE" and not error.reason:
        return f"cannot reach a scoresvc service at {address} (--address): {error.message}"
    named = ", ".join(field for field, _ in error.field_violations)
    return f"{error.code.name}: {error.message}" + (f" ({named})" if named else "")


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
