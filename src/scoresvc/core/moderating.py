"""What moderators write: suspending a cluster, setting aside and restoring what
passed between users (docs/model.md, "Moderation"), and erasing a user as if it never
existed (``core.erasure``). A part of the ``Engine``, kept in a room of its own: these
writes go through the engine's sequencing like any other.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from . import erasure, validation
from .errors import NotFound
from .ingest import IngestState
from .ledger import RequestLedger
from .moderation import ModerationAction, ModerationKind
from .records import WriteRecord
from .results import Erasure, WriteResult
from .snapshot import Snapshot
from .users import UserIds


class ModerationWrites:
    """The engine's moderation writes (the engine supplies the parts below)."""

    _ingest: IngestState
    _ingest_lock: threading.Lock
    _graph_lock: threading.Lock
    _requests: RequestLedger
    _rebuilt: bool
    _erasures: dict[int, Erasure]

    def _write(
        self,
        request_id: str,
        fingerprint: tuple[Any, ...],
        make_record: Callable[[int], WriteRecord],
    ) -> WriteResult:
        raise AssertionError("the engine sequences writes")

    def _refresh(self, now: float) -> Snapshot:
        raise AssertionError("the engine refreshes")

    def suspend_cluster(
        self,
        user_ids: Sequence[str],
        *,
        actor: str = "",
        reason: str,
        request_id: str = "",
        now: float | None = None,
    ) -> ModerationAction:
        """Suspend every account of ``user_ids`` in one write, recorded in the
        moderation trail with ``actor`` and ``reason`` (new ids are registered)."""
        return self._moderate(
            ModerationKind.SUSPEND_CLUSTER, user_ids, actor, reason, 0, request_id, now
        )

    def invalidate_between(
        self,
        user_ids: Sequence[str],
        *,
        actor: str = "",
        reason: str,
        request_id: str = "",
        now: float | None = None,
    ) -> ModerationAction:
        """Set aside every interaction, endorsement and distrust accepted so far from
        one of ``user_ids`` to another, as if they never happened (docs/model.md,
        "Moderation"); events accepted later count. Ids never seen are ignored."""
        return self._moderate(
            ModerationKind.INVALIDATE_BETWEEN, user_ids, actor, reason, 0, request_id, now
        )

    def restore_between(
        self,
        action_id: int,
        *,
        actor: str = "",
        reason: str,
        request_id: str = "",
        now: float | None = None,
    ) -> ModerationAction:
        """Reverse invalidation ``action_id``: what it set aside counts again
        (``NotFound`` unless it is an invalidation in force)."""
        return self._moderate(
            ModerationKind.RESTORE_BETWEEN, (), actor, reason, int(action_id), request_id, now
        )

    def moderation_actions(
        self, offset: int, limit: int
    ) -> tuple[list[ModerationAction], int | None]:
        """A page of the moderation trail, newest first, and the next page's offset."""
        with self._ingest_lock:
            return self._ingest.moderation.page(offset, limit)

    def moderation_export(
        self, at: float
    ) -> tuple[list[ModerationAction], list[str], list[str], dict[str, np.ndarray]]:
        """The moderation trail and what its invalidations in force set aside (user
        ids, topics and columns indexing them; interactions compacted at ``at``), for
        an archive: ``import_moderation`` takes them back."""
        with self._ingest_lock:
            ids, topics, arrays = self._ingest.set_aside_log(at)
            return list(self._ingest.moderation.actions), ids, topics, arrays

    def import_moderation(
        self,
        actions: Sequence[ModerationAction],
        user_ids: Sequence[str],
        topics: Sequence[str],
        arrays: dict[str, np.ndarray],
        at: float,
    ) -> WriteResult:
        """Add an archive's moderation trail and what its invalidations in force hold
        (see ``moderation_export``; trusted input, one write)."""
        fields = {
            "actions": [a.to_json() for a in actions],
            "topics": list(topics),
            "at": float(at),
        }
        users = UserIds.of(user_ids)
        return self._write(
            "",
            (),
            lambda sequence: WriteRecord(sequence, "moderation_import", fields, arrays, users),
        )

    def _moderate(
        self,
        kind: ModerationKind,
        user_ids: Sequence[str],
        actor: str,
        reason: str,
        restores: int,
        request_id: str,
        now: float | None,
    ) -> ModerationAction:
        now = time.time() if now is None else now
        ids = list(dict.fromkeys(user_ids))
        validation.check_moderation(kind, list(user_ids), reason)
        fingerprint = ("moderation", kind.name, tuple(ids), reason, restores)
        users = UserIds.of(ids)
        fields = {
            "action": kind.name,
            "actor": actor,
            "reason": reason,
            "now": now,
            "restores": restores,
        }

        def make_record(sequence: int) -> WriteRecord:
            if kind == ModerationKind.RESTORE_BETWEEN:
                self._check_in_force(restores)
            return WriteRecord(sequence, "moderation", fields, {}, users, request_id, fingerprint)

        done = self._write(request_id, fingerprint, make_record)
        with self._ingest_lock:
            found = [a for a in self._ingest.moderation.actions if a.sequence == done.sequence]
        return found[-1]

    # ------------------------------------------------------------------ erasure

    def erase_user(
        self,
        user_id: str,
        *,
        reason: str,
        actor: str = "",
        now: float | None = None,
        at: float | None = None,
    ) -> Erasure:
        """Remove everything ``user_id`` did and received, as if it never existed
        (``core.erasure``; ``NotFound`` for a user never seen), recorded in the
        moderation trail without the id, then publish a snapshot at ``at`` (default
        ``now``) that no longer has it. A rebuild of the ingest state: O(pairs + trail
        events); the refresh after it is a cold one. Returns the receipt."""
        now = time.time() if now is None else now
        validation.check_erasure(user_id, reason)
        salt = os.urandom(16)
        fields = {
            "salt": salt.hex(),
            "digest": erasure.digest(user_id, salt),
            "actor": erasure.scrub(actor, user_id),
            "reason": erasure.scrub(reason, user_id),
            "now": now,
        }

        def make_record(sequence: int) -> WriteRecord:
            if user_id not in self._ingest.users.index:
                raise NotFound(f"user {user_id!r} has never been seen", "user_id")
            return WriteRecord(sequence, "erase", fields, {}, UserIds.of([]))

        # The graph lock keeps readers off the old graph over the new pair table.
        with self._graph_lock:
            done = self._write("", (), make_record)
            self._refresh(now if at is None else at)
        with self._ingest_lock:
            return self._erasures.pop(done.sequence)

    def _apply_erasure(self, record: WriteRecord) -> int:
        """Apply an erasure record (ingest lock held); a user its digest finds no more
        (already erased) leaves the state as it is. Returns the events removed."""
        f = record.fields
        ingest = self._ingest
        user = erasure.find(ingest.users.ids, bytes.fromhex(f["salt"]), f["digest"])
        receipt = Erasure(record.sequence, 0, 0, 0, 0)
        if user is not None:
            user_id = ingest.users.ids[user]
            self._ingest, receipt = erasure.erased(ingest, user, record.sequence, f["now"])
            self._requests.forget_naming(lambda request: user_id in request)
            self._rebuilt = True
        self._ingest.moderation.add(
            ModerationAction(
                action_id=self._ingest.moderation.next_id(),
                kind=ModerationKind.ERASE_USER,
                sequence=record.sequence,
                time=float(f["now"]),
                actor=str(f["actor"]),
                reason=str(f["reason"]),
                user_ids=(),
                pairs=receipt.interaction_links,
                endorsement_events=receipt.endorsement_events,
                distrust_events=receipt.distrust_events,
            )
        )
        self._erasures[record.sequence] = receipt
        return receipt.events

    def _check_in_force(self, action_id: int) -> None:
        """``NotFound`` unless ``action_id`` is an invalidation in force (ingest lock)."""
        action = self._ingest.moderation.get(action_id)
        if action is None or action not in self._ingest.moderation.in_force():
            raise NotFound(
                f"moderation action {action_id} is not an invalidation in force",
                "action_id",
                reason="INVALIDATION_NOT_FOUND",
            )
