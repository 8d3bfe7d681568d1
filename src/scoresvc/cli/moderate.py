"""``scoresvc moderate``: suspend a cluster, invalidate what passed between users,
restore an invalidation, and read the moderation trail, on a running service (admin)."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Iterable

from ..client import ScoreClient
from ..core.moderation import ModerationAction
from . import flags
from .errors import UsageError
from .history import _utc, client_flags

#: The request's fields as the flags that set them (for errors naming the flag).
_FLAGS = {
    "user_ids": "--users",
    "cluster_id": "--cluster-id",
    "reason": "--reason",
    "action_id": "--action-id",
    "request_id": "--request-id",
    "page_size": "--page-size",
}
_COLUMNS = ("id", "kind", "time (UTC)", "actor", "users", "set aside", "state", "reason")


def moderate_flags(parser: argparse.ArgumentParser) -> None:
    """The subcommands and their flags (none read from the environment: a moderation
    names its users and reason every time)."""
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    suspend = actions.add_parser(
        "suspend-cluster", help="suspend the accounts of a cluster (or listed) in one write"
    )
    _cluster_flags(suspend, "whose members to suspend")
    suspend.set_defaults(run=suspend_cluster)
    invalidate = actions.add_parser(
        "invalidate", help="set aside every event between the users, as if it never happened"
    )
    _cluster_flags(invalidate, "whose members and beneficiaries to cover")
    invalidate.set_defaults(run=invalidate_between)
    restore = actions.add_parser("restore", help="reverse an invalidation")
    restore.add_argument(
        "--action-id", type=int, help="the invalidation's action id (moderate actions)"
    )
    _write_flags(restore)
    restore.set_defaults(run=restore_between)
    trail = actions.add_parser("actions", help="the moderation trail, newest first")
    client_flags(trail, "admin")
    trail.set_defaults(run=list_actions)


def _cluster_flags(parser: argparse.ArgumentParser, whose: str) -> None:
    parser.add_argument("--users", help="comma-separated user ids")
    parser.add_argument(
        "--cluster-id", default="", help=f"or a cluster of the suspect report, {whose}"
    )
    _write_flags(parser)


def _write_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--reason", default="", help="why (required; kept in the trail)")
    parser.add_argument(
        "--request-id", default="", help="makes a retry safe: the same id answers the first"
    )
    client_flags(parser, "admin")


def suspend_cluster(args: argparse.Namespace) -> int:
    users = _users(args)
    return _write(args, lambda c: c.suspend_cluster(users, **_cluster_kwargs(args)))


def invalidate_between(args: argparse.Namespace) -> int:
    users = _users(args)
    return _write(args, lambda c: c.invalidate_between(users, **_cluster_kwargs(args)))


def restore_between(args: argparse.Namespace) -> int:
    if args.action_id is None:
        raise UsageError("--action-id is required: the invalidation to reverse")
    _reason(args)
    return _write(
        args,
        lambda c: c.restore_between(args.action_id, reason=args.reason, request_id=args.request_id),
    )


def list_actions(args: argparse.Namespace) -> int:
    found = flags.calling(args, lambda c: list(c.list_moderation_actions()), "admin")
    if args.json:
        print(json.dumps([a.to_json() for a in found], indent=2))
    else:
        print(table(found))
    return 0


def _users(args: argparse.Namespace) -> list[str]:
    """``--users`` split at commas; exactly one of it and ``--cluster-id``."""
    if (args.users is None) == (not args.cluster_id):
        raise UsageError("give --users or --cluster-id (one of them)")
    _reason(args)
    if args.users is None:
        return []
    users = [u.strip() for u in args.users.split(",")]
    if not all(users):
        raise UsageError(f"--users {args.users!r}: an empty user id between commas")
    return users


def _reason(args: argparse.Namespace) -> None:
    if not args.reason.strip():
        raise UsageError("--reason is required: why, kept in the moderation trail")


def _cluster_kwargs(args: argparse.Namespace) -> dict[str, str]:
    return {"cluster_id": args.cluster_id, "reason": args.reason, "request_id": args.request_id}


def _write(args: argparse.Namespace, call: Callable[[ScoreClient], ModerationAction]) -> int:
    action = flags.calling(args, call, "admin", _FLAGS)
    print(json.dumps(action.to_json(), indent=2) if args.json else table([action]))
    return 0


def table(actions: Iterable[ModerationAction]) -> str:
    """The actions as a table, a row each, or a line saying there are none."""
    rows = [_row(a) for a in actions]
    if not rows:
        return "no moderation actions"
    widths = [max(len(c), *(len(r[i]) for r in rows)) for i, c in enumerate(_COLUMNS)]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(line, widths)).rstrip()
        for line in (_COLUMNS, *rows)
    )


def _row(a: ModerationAction) -> tuple[str, ...]:
    users = ",".join(a.user_ids[:3]) + (f",... ({len(a.user_ids)})" if len(a.user_ids) > 3 else "")
    if a.kind.name == "INVALIDATE_BETWEEN":
        aside = (
            f"{a.pairs} pairs, {a.endorsement_events} endorsements, {a.distrust_events} distrusts"
        )
        state = f"restored by {a.restored_by}" if a.restored_by else "in force"
    elif a.kind.name == "RESTORE_BETWEEN":
        aside, state, users = "", f"restores {a.restores}", ""
    else:
        aside, state = "", ""
    kind = a.kind.name.lower().replace("_", "-")
    return (str(a.action_id), kind, _utc(a.time), a.actor, users, aside, state, a.reason)
