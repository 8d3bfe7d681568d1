"""Bearer tokens and roles.

A token is ``sv1.<id>.<secret>``: the id finds its entry, the secret is checked against
the SHA-256 stored there (secrets are 256 random bits, so a fast hash is enough; only
the hash is ever stored) with a constant-time comparison. Entries live in
``<data-dir>/tokens.json`` (mode 0600, replaced atomically), managed by
``scoresvc token create|list|revoke``; a running server picks up changes within a
second.

Roles nest: ``reader`` < ``writer`` < ``admin``.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import os
import secrets
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROLES = ("reader", "writer", "admin")
#: The weakest role that may call each method of scoresvc.v1.ScoreService.
METHOD_ROLES = {
    "Score": "reader",
    "BatchScore": "reader",
    "TopUsers": "reader",
    "ListEndorsements": "reader",
    "ListTopics": "reader",
    "ScoreHistory": "reader",
    "ExplainChange": "reader",
    "Endorse": "writer",
    "RetractEndorsement": "writer",
    "Distrust": "writer",
    "RetractDistrust": "writer",
    "RecordInteractions": "writer",
    "SetAccountStatus": "admin",
    "ListSuspects": "admin",
    "SuspendCluster": "admin",
    "InvalidateBetween": "admin",
    "RestoreBetween": "admin",
    "ListModerationActions": "admin",
    "EraseUser": "admin",
}
#: The methods that change state: those a reader may not call, but admins' reads.
WRITE_METHODS = frozenset(m for m, role in METHOD_ROLES.items() if role != "reader") - {
    "ListSuspects",
    "ListModerationActions",
}
TOKEN_FILE = "tokens.json"
_PREFIX = "sv1"
_RELOAD_SECONDS = 1.0


class AuthError(Exception):
    """Missing or bad credentials (``permission`` False) or a role too weak (True)."""

    def __init__(self, message: str, permission: bool = False) -> None:
        super().__init__(message)
        self.permission = permission


@dataclass(frozen=True)
class Caller:
    """Who is calling: the token's name and role (anonymous when auth is off)."""

    name: str
    role: str

    def may(self, role: str) -> bool:
        return ROLES.index(self.role) >= ROLES.index(role)


ANONYMOUS = Caller("", "admin")


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


class TokenStore:
    """The token entries of a data directory."""

    def __init__(self, data_dir: str | Path) -> None:
        self.path = Path(data_dir) / TOKEN_FILE

    def entries(self) -> list[dict[str, Any]]:
        try:
            data = json.loads(self.path.read_text())
        except FileNotFoundError:
            return []
        return list(data.get("tokens", []))

    def create(self, name: str, role: str) -> str:
        """A new token for ``name`` (which must be new) with ``role``; returns it."""
        if role not in ROLES:
            raise ValueError(f"role must be one of {', '.join(ROLES)}")
        if not name or len(name) > 64 or "/" in name:
            raise ValueError("name must be 1-64 characters without '/'")
        entries = self.entries()
        if any(e["name"] == name for e in entries):
            raise ValueError(f"a token named {name!r} exists: revoke it first")
        token_id = secrets.token_hex(4)
        secret = secrets.token_urlsafe(32)
        entries.append(
            {
                "id": token_id,
                "name": name,
                "role": role,
                "sha256": _digest(secret),
                "created": time.time(),
            }
        )
        self._save(entries)
        return f"{_PREFIX}.{token_id}.{secret}"

    def revoke(self, name: str) -> bool:
        entries = self.entries()
        kept = [e for e in entries if e["name"] != name]
        if len(kept) == len(entries):
            return False
        self._save(kept)
        return True

    def _save(self, entries: list[dict[str, Any]]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.path.with_suffix(".tmp")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump({"tokens": entries}, f, indent=2)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temporary, self.path)


class Authenticator:
    """Checks ``authorization: Bearer <token>`` against a ``TokenStore``, reloading
    the file when it changes. It enforces while the store holds a token, or always
    with ``required`` (a server on a non-loopback address)."""

    def __init__(self, tokens: TokenStore, required: bool = False) -> None:
        self.tokens = tokens
        self.required = required
        self._lock = threading.Lock()
        self._by_id: dict[str, tuple[str, Caller]] = {}
        self._stamp: tuple[int, int] | None = None
        self._checked = 0.0
        self._reload()

    def __len__(self) -> int:
        return len(self._by_id)

    def enforcing(self) -> bool:
        self._maybe_reload()
        return self.required or bool(self._by_id)

    def caller(self, authorization: str | None) -> Caller:
        """The caller a header names; ``AuthError`` when it names none."""
        if not authorization:
            raise AuthError("missing authorization metadata: send 'Bearer <token>'")
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise AuthError("authorization must be 'Bearer <token>'")
        self._maybe_reload()
        prefix, _, rest = token.strip().partition(".")
        token_id, _, secret = rest.partition(".")
        found = self._by_id.get(token_id) if prefix == _PREFIX else None
        if found is None and prefix == _PREFIX:
            self._reload()  # a token made a moment ago (a stat() unless the file changed)
            found = self._by_id.get(token_id)
        # Compare against something even for an unknown id, so timing tells nothing.
        expected, caller = found or ("0" * 64, None)
        if not hmac.compare_digest(_digest(secret), expected) or caller is None:
            raise AuthError("the token is not valid (revoked, mistyped or from elsewhere)")
        return caller

    @staticmethod
    def authorize(caller: Caller, method: str) -> None:
        needed = METHOD_ROLES.get(method, "admin")
        if not caller.may(needed):
            raise AuthError(
                f"{caller.name!r} has role {caller.role}; {method} needs {needed}", permission=True
            )

    def _maybe_reload(self) -> None:
        now = time.monotonic()
        if now - self._checked >= _RELOAD_SECONDS:
            self._reload()

    def _reload(self) -> None:
        with self._lock:
            self._checked = time.monotonic()
            stamp = None
            with contextlib.suppress(FileNotFoundError):
                st = self.tokens.path.stat()
                stamp = (st.st_mtime_ns, st.st_size)
            if stamp == self._stamp:
                return
            self._by_id = {
                e["id"]: (e["sha256"], Caller(e["name"], e["role"])) for e in self.tokens.entries()
            }
            self._stamp = stamp
