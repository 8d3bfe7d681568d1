"""Moderation actions and their audit trail (docs/model.md, "Moderation").

Three actions, each a journaled write recorded with who made it and why:

* ``SUSPEND_CLUSTER``: suspend every listed account in one write.
* ``INVALIDATE_BETWEEN``: set aside every interaction, endorsement and distrust
  accepted so far from one listed user to another, as if they never happened.
  Interaction sums move to a per-action store (``PairTable.aside``); endorsement and
  distrust events stay on their trails, marked with the action, and their records are
  rebuilt from the events that still count. Events accepted later count normally.
* ``RESTORE_BETWEEN``: reverse an invalidation: its sums and events count again.
* ``ERASE_USER``: an account erased (``core.erasure``); the entry names no account,
  and counts what was removed as an invalidation counts what it set aside.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np


class ModerationKind(enum.IntEnum):
    """What an action did (numbered as the wire's ``ModerationActionKind``)."""

    SUSPEND_CLUSTER = 1
    INVALIDATE_BETWEEN = 2
    RESTORE_BETWEEN = 3
    ERASE_USER = 4


@dataclass(frozen=True)
class ModerationAction:
    """One entry of the audit trail.

    ``action_id`` numbers actions from 1 in the order they were taken; ``sequence`` is
    the write's (0 for actions carried in by an import). ``actor`` is the caller's
    token name (empty when auth is off). For an invalidation, what it set aside
    (``pairs`` with interaction weight, ``endorsement_events``, ``distrust_events``)
    and the restore that reversed it (``restored_by``, 0 while in force); for a
    restore, the invalidation it reversed (``restores``).
    """

    action_id: int
    kind: ModerationKind
    sequence: int
    time: float
    actor: str
    reason: str
    user_ids: tuple[str, ...]
    pairs: int = 0
    endorsement_events: int = 0
    distrust_events: int = 0
    restores: int = 0
    restored_by: int = 0

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["kind"] = self.kind.name
        out["user_ids"] = list(self.user_ids)
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ModerationAction:
        return cls(
            **{
                **data,
                "kind": ModerationKind[data["kind"]],
                "user_ids": tuple(data["user_ids"]),
            }
        )


class ModerationLog:
    """The actions taken, oldest first (the engine's ingest lock held by every caller)."""

    def __init__(self) -> None:
        self.actions: list[ModerationAction] = []

    def next_id(self) -> int:
        return len(self.actions) + 1

    def add(self, action: ModerationAction) -> None:
        self.actions.append(action)

    def get(self, action_id: int) -> ModerationAction | None:
        if 1 <= action_id <= len(self.actions):
            return self.actions[action_id - 1]
        return None

    def mark_restored(self, action_id: int, by: int) -> None:
        self.actions[action_id - 1] = replace(self.actions[action_id - 1], restored_by=by)

    def in_force(self) -> list[ModerationAction]:
        """The invalidations not reversed."""
        return [
            a
            for a in self.actions
            if a.kind == ModerationKind.INVALIDATE_BETWEEN and a.restored_by == 0
        ]

    def covering(
        self, user_id: str, others: Iterable[str], start: float, end: float
    ) -> dict[str, list[int]]:
        """Per user of ``others``, the invalidations and restores taken in ``(start,
        end]`` that cover it and ``user_id`` (both named by the invalidation), oldest
        first; users no such action covers are left out."""
        wanted = set(others)
        out: dict[str, list[int]] = {}
        for a in self.actions:
            if not start < a.time <= end or a.kind == ModerationKind.SUSPEND_CLUSTER:
                continue
            restored = a.kind == ModerationKind.RESTORE_BETWEEN
            invalidation = self.get(a.restores) if restored else a
            named = set(invalidation.user_ids) if invalidation is not None else set()
            if user_id in named:
                for other in sorted((named & wanted) - {user_id}):
                    out.setdefault(other, []).append(a.action_id)
        return out

    def suspensions(self, user_id: str, start: float, end: float) -> list[int]:
        """The SuspendCluster actions taken in ``(start, end]`` naming ``user_id``."""
        return [
            a.action_id
            for a in self.actions
            if a.kind == ModerationKind.SUSPEND_CLUSTER
            and start < a.time <= end
            and user_id in a.user_ids
        ]

    def page(self, offset: int, limit: int) -> tuple[list[ModerationAction], int | None]:
        """A page of the trail, newest first, and the offset of the next (None at the end)."""
        newest = self.actions[::-1]
        following = offset + limit
        return newest[offset:following], (following if following < len(newest) else None)

    def arrays(self) -> dict[str, np.ndarray]:
        """The actions as JSON bytes (for checkpoints)."""
        blob = json.dumps([a.to_json() for a in self.actions]).encode("utf-8")
        return {"moderation_actions": np.frombuffer(blob, np.uint8).copy()}

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> ModerationLog:
        log = cls()
        if "moderation_actions" in arrays:
            raw = json.loads(arrays["moderation_actions"].tobytes().decode("utf-8"))
            log.actions = [ModerationAction.from_json(a) for a in raw]
        return log
