"""``scoresvc token``: the bearer tokens of a data directory."""

from __future__ import annotations

import argparse
import time

from ..service.auth import TokenStore
from .errors import UsageError


def token(args: argparse.Namespace) -> int:
    """Create, list or revoke the bearer tokens of a data directory."""
    tokens = TokenStore(args.data_dir)
    if args.action in ("create", "revoke") and not args.name:
        raise UsageError(f"{args.action} needs --name (who the token is for)")
    if args.action == "create":
        created = tokens.create(args.name, args.role)
        print(f"token for {args.name!r} ({args.role}); shown once, store it now:")
        print(created)
    elif args.action == "list":
        entries = tokens.entries()
        if not entries:
            print(f"no tokens in {args.data_dir}: the server there takes calls without one")
        for entry in entries:
            created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(entry["created"]))
            print(f"{entry['name']}\t{entry['role']}\t{entry['id']}\t{created}")
    elif not tokens.revoke(args.name):
        raise UsageError(f"no token named {args.name!r}")
    else:
        print(f"revoked {args.name!r}")
    return 0
