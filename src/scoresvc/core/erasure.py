"""Erasure: the ingest state of a world where one user never existed.

The compacted log (``IngestState.compacted_log``: per pair and kind one decayed sum,
every trail, statuses, first-seen times) holds everything the writes built; pair sums
are per pair, and reciprocity support, budgets and saturation are recomputed from
them by the next refresh. So the log without the user's rows, loaded into a new state,
is the state of a world without the user, up to rounding. Accounts the erased user
alone brought in (a NORMAL account whose every event was with them) go too: without
the user they would never have been seen. First-seen times of the others are kept (no
record says which write first named an account).

What moderation set aside (invalidations in force) is carried over without the user's
part; the trails keep their order, sequence numbers and marks; the moderation trail
keeps its entries with the user's id taken out of their accounts and reasons.

An erasure's journal record names the user only by a salted digest (``digest``), so
replaying it finds the user without the record holding the id.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import replace

import numpy as np

from .events import EventLog
from .ingest import IngestState, log_record
from .model import AccountStatus
from .moderation import ModerationAction
from .records import WriteRecord
from .results import Erasure
from .users import UserIds

#: What replaces an erased id in moderation reasons.
TOMBSTONE = "[erased]"


def digest(user_id: str, salt: bytes) -> str:
    """A salted digest naming ``user_id`` in an erasure record."""
    return hashlib.blake2b(user_id.encode("utf-8"), key=salt, digest_size=16).hexdigest()


def find(ids: Iterable[str], salt: bytes, wanted: str) -> int | None:
    """The dense id whose digest is ``wanted`` (None: no such user)."""
    for u, user_id in enumerate(ids):
        if digest(user_id, salt) == wanted:
            return u
    return None


def scrub(text: str, user_id: str) -> str:
    """``text`` with every occurrence of ``user_id`` replaced by the tombstone (inside
    longer words too: no byte of the id may stay)."""
    return text.replace(user_id, TOMBSTONE)


def erased(state: IngestState, user: int, sequence: int, now: float) -> tuple[IngestState, Erasure]:
    """A new state: ``state`` as if dense user ``user`` never existed (see the module)."""
    log, at = state.compacted_log(None, now)
    _, _, aside = state.set_aside_log(at)
    e_trail, d_trail = state.book.trail(), state.distrust.trail()  # set-aside events too
    ends = [
        (log.actor, log.target),
        (e_trail["endorser"], e_trail["endorsee"]),
        (d_trail["distruster"], d_trail["distrusted"]),
        (aside["i_actor"], aside["i_target"]),
    ]
    n = len(state.users)
    drop = _dropped(ends, user, n, np.asarray(log.status))
    remap = np.cumsum(~drop) - 1  # old dense id -> new (for those kept)
    keeps = [~(drop[a] | drop[b]) for a, b in ends]
    user_id = state.users.ids[user]
    kept_ids = [u for u, gone in zip(state.users.ids, drop.tolist()) if not gone]
    fresh = IngestState(state.params)
    fresh.apply(log_record(sequence, _kept_log(log, drop, remap, kept_ids)))
    actions = [_scrubbed(a, user_id) for a in state.moderation.actions]
    if actions:
        fresh.apply(_aside_record(sequence, state, actions, aside, keeps, remap, kept_ids, at))
        fresh.moderation.actions = actions  # with their own sequence numbers
    fresh.book.replace_trail(_kept_trail(e_trail, keeps[1], remap, "endorser", "endorsee"))
    fresh.distrust.replace_trail(_kept_trail(d_trail, keeps[2], remap, "distruster", "distrusted"))
    fresh.book.carry_limits(state.book, remap, drop)
    return fresh, Erasure(
        sequence=sequence,
        interaction_links=int((~keeps[0]).sum()),
        endorsement_events=int((~keeps[1]).sum()),
        distrust_events=int((~keeps[2]).sum()),
        accounts=int(drop.sum()),
    )


def _dropped(
    ends: list[tuple[np.ndarray, np.ndarray]], user: int, n: int, status: np.ndarray
) -> np.ndarray:
    """The user, and the NORMAL accounts that had events only with it."""
    involved = np.zeros(n, bool)
    active = np.zeros(n, bool)
    for a, b in ends:
        mine = (a == user) | (b == user)
        involved[a[mine]] = involved[b[mine]] = True
        active[a[~mine]] = active[b[~mine]] = True
    drop = involved & ~active & (status == AccountStatus.NORMAL)
    drop[user] = True
    return drop


def _kept_log(log: EventLog, drop: np.ndarray, remap: np.ndarray, ids: list[str]) -> EventLog:
    """The compacted log without the rows and users ``drop`` marks."""
    assert log.weight is not None and log.status is not None and log.first_seen is not None
    rows = ~(drop[log.actor] | drop[log.target])
    vouches = ~(drop[log.endorser] | drop[log.endorsee])
    distrusts = ~(drop[log.distruster] | drop[log.distrusted])
    return EventLog(
        n_users=len(ids),
        actor=remap[log.actor[rows]],
        target=remap[log.target[rows]],
        kind=log.kind[rows],
        ts=log.ts[rows],
        weight=log.weight[rows],
        endorser=remap[log.endorser[vouches]],
        endorsee=remap[log.endorsee[vouches]],
        topic=log.topic[vouches],
        endorse_ts=log.endorse_ts[vouches],
        retracted=log.retracted[vouches],
        distruster=remap[log.distruster[distrusts]],
        distrusted=remap[log.distrusted[distrusts]],
        distrust_topic=log.distrust_topic[distrusts],
        distrust_ts=log.distrust_ts[distrusts],
        distrust_retracted=log.distrust_retracted[distrusts],
        status=log.status[~drop],
        first_seen=log.first_seen[~drop],
        user_ids=ids,
        topics=log.topics,
        compaction=log.compaction,
    )


def _kept_trail(
    trail: dict[str, np.ndarray], rows: np.ndarray, remap: np.ndarray, giver: str, receiver: str
) -> dict[str, np.ndarray]:
    kept = {name: column[rows] for name, column in trail.items()}
    for name in (giver, receiver):
        kept[name] = remap[kept[name]].astype(trail[name].dtype)
    return kept


def _scrubbed(action: ModerationAction, user_id: str) -> ModerationAction:
    return replace(
        action,
        actor=scrub(action.actor, user_id),
        reason=scrub(action.reason, user_id),
        user_ids=tuple(u for u in action.user_ids if u != user_id),
    )


def _aside_record(
    sequence: int,
    state: IngestState,
    actions: list[ModerationAction],
    aside: dict[str, np.ndarray],
    keeps: list[np.ndarray],
    remap: np.ndarray,
    ids: list[str],
    at: float,
) -> WriteRecord:
    """A ``moderation_import`` record of what the invalidations in force hold (see
    ``IngestState.set_aside_log``), without the user's part."""
    e_held = state.book.trail()["invalidated"] != 0
    d_held = state.distrust.trail()["invalidated"] != 0
    arrays = {}
    for prefix, rows, names in (
        ("i", keeps[3], ("actor", "target")),
        ("e", keeps[1][e_held], ("endorser", "endorsee")),
        ("d", keeps[2][d_held], ("distruster", "distrusted")),
    ):
        for name, column in aside.items():
            if name.startswith(f"{prefix}_"):
                arrays[name] = column[rows]
        for name in names:
            arrays[f"{prefix}_{name}"] = remap[arrays[f"{prefix}_{name}"]]
    fields = {"actions": [a.to_json() for a in actions], "topics": state.book.topics, "at": at}
    return WriteRecord(sequence, "moderation_import", fields, arrays, UserIds.of(ids))
