"""``scoresvc``: serve, demo, export, import, batch, suspects, moderate, history, why,
token.

Every flag can also be set with an environment variable: ``--time-step`` is
``SCORESVC_TIME_STEP`` and so on; a flag on the command line wins.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

from .. import __version__
from ..core.errors import ScoreError
from ..service.auth import ROLES
from ..storage.archive import ArchiveError
from ..storage.store import StoreSettings
from . import logs
from .data import DISTRIBUTED_EXTRA, batch_, export_, import_
from .errors import Failed, UsageError
from .flags import (
    DURABILITY,
    Parser,
    add,
    as_of,
    client_tls_flags,
    from_environment,
    log_flags,
    number,
    offline_flags,
    path,
    server_flags,
    whole,
)
from .history import history, history_flags, why, why_flags
from .logs import log
from .moderate import moderate_flags
from .serving import demo, serve
from .suspects import KINDS, suspects
from .tokens import token


def _parser() -> argparse.ArgumentParser:
    parser = Parser(prog="scoresvc", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"scoresvc {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _serving_commands(commands)
    _data_commands(commands)
    _operator_commands(commands)
    return parser


def _serving_commands(commands: Any) -> None:
    """serve and demo."""
    p_serve = commands.add_parser("serve", help="serve the ScoreService API")
    server_flags(p_serve, "scoresvc-data")
    add(p_serve, "--snapshot", path, "", "serve a batch run's scores.parquet, then new events")
    p_serve.set_defaults(run=serve)
    p_demo = commands.add_parser("demo", help="serve a seeded synthetic community")
    server_flags(p_demo, "")
    add(p_demo, "--users", whole(2), 20_000, "users in the demo community")
    add(p_demo, "--events", whole(0), 400_000, "events in the demo community")
    add(
        p_demo,
        "--seeds",
        whole(0),
        20,
        "seed accounts: the best-connected users of the community's first week",
    )
    add(p_demo, "--seed", whole(0), 7, "random seed of the generator")
    p_demo.set_defaults(run=demo)


def _data_commands(commands: Any) -> None:
    """export, import and batch: archives in and out, and the batch recompute."""
    p_export = commands.add_parser("export", help="export every event as Parquet or CSV")
    add(p_export, "--data-dir", path, "scoresvc-data", "the data directory to export")
    add(p_export, "--out", path, "scoresvc-export", "directory to write the archive to")
    add(p_export, "--format", str, "parquet", "csv is for small data", ("parquet", "csv"))
    offline_flags(p_export)
    p_export.set_defaults(run=export_)
    p_import = commands.add_parser("import", help="import an archive into a new data directory")
    add(p_import, "--data-dir", path, "scoresvc-data", "the data directory to import into")
    add(p_import, "--input", path, "scoresvc-export", "the archive directory to read")
    add(p_import, "--durability", str, StoreSettings().durability, "as for serve", DURABILITY)
    offline_flags(p_import)
    p_import.set_defaults(run=import_)
    p_batch = commands.add_parser(
        "batch",
        help="recompute every score on Dask from an archive (the distributed extra)",
        description="Recompute every score from an archive on Dask distributed. Needs the"
        f" distributed extra: {DISTRIBUTED_EXTRA}.",
    )
    add(p_batch, "--input", path, "scoresvc-export", "the archive directory (scoresvc export)")
    add(p_batch, "--as-of", as_of, None, "evaluation time, RFC 3339 or unix seconds (now)")
    add(p_batch, "--out", path, "scores.parquet", "the scores file to write")
    add(p_batch, "--scheduler", str, "", "a Dask scheduler, tcp://HOST:PORT")
    add(p_batch, "--local-workers", whole(1), 2, "without --scheduler: local worker processes")
    p_batch.add_argument("--topics", action="store_true", help="also write topic scores")
    add(
        p_batch,
        "--tolerance",
        number(0, above=True),
        1e-13,
        "stop iterating when the L1 change is below",
    )
    offline_flags(p_batch)
    p_batch.set_defaults(run=batch_)


def _operator_commands(commands: Any) -> None:
    """suspects, moderate, token, history and why: what an operator asks and does."""
    p_suspects = commands.add_parser(
        "suspects", help="print the suspect report (clusters that look like gaming)"
    )
    add(p_suspects, "--data-dir", path, "", "compute it from this data directory (read-only)")
    add(p_suspects, "--address", str, "", "or ask a running server, HOST:PORT")
    add(p_suspects, "--token", str, "", "with --address: an admin token")
    client_tls_flags(p_suspects)
    add(p_suspects, "--kind", str, "", "only clusters of this kind", KINDS)
    p_suspects.add_argument("--json", action="store_true", help="print JSON, not a table")
    offline_flags(p_suspects, "WARNING")
    p_suspects.set_defaults(run=suspects)
    p_moderate = commands.add_parser(
        "moderate",
        help="suspend a cluster, invalidate or restore what passed between users, or list"
        " the moderation trail (admin, on a running service)",
    )
    moderate_flags(p_moderate)
    p_token = commands.add_parser("token", help="manage bearer tokens")
    p_token.add_argument("action", choices=["create", "list", "revoke"])
    add(p_token, "--data-dir", path, "scoresvc-data", "the data directory the tokens guard")
    add(p_token, "--name", str, "", "who the token is for (needed by create and revoke)")
    p_token.add_argument(
        "--role", choices=ROLES, default="reader", help="create: the role (default reader)"
    )
    log_flags(p_token, "WARNING")
    p_token.set_defaults(run=token)
    p_history = commands.add_parser(
        "history", help="a user's recorded scores, from a running service"
    )
    history_flags(p_history)
    p_history.set_defaults(run=history)
    p_why = commands.add_parser("why", help="why a user's score changed, from a running service")
    why_flags(p_why)
    p_why.set_defaults(run=why)


def main(argv: Sequence[str] | None = None) -> int:
    """Run a command. Ordinary mistakes are one line on stderr naming the flag or
    variable: exit status 2 for usage, 1 for what failed at run time."""
    parser = _parser()
    args = parser.parse_args(argv)
    prog = f"scoresvc {args.command}"
    try:
        from_environment(args)
    except UsageError as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return 2
    logs.setup(args)
    try:
        return int(args.run(args))
    except UsageError as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return 2
    except (Failed, ScoreError, ArchiveError, OSError) as exc:
        log.debug("%s failed", prog, exc_info=True)
        print(f"{prog}: {_one_line(exc)}", file=sys.stderr)
        return 1
    except ValueError as exc:  # a value the engine or token store refused
        print(f"{prog}: {exc}", file=sys.stderr)
        return 2


def _one_line(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.filename is not None:
        return f"{exc.filename}: {exc.strerror}"
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__
