"""The state the writes build, and how a write record changes it: the users, their
statuses and first-seen times, the pair sums (``PairTable``), the endorsement book and
the marks of what changed since the last refresh. Every method runs under the engine's ingest lock.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace

import numpy as np

from .arrays import grown
from .distrust import DistrustBook
from .endorsements import EndorsementBook
from .errors import NotFound
from .events import (
    Compaction,
    EventLog,
    compacted_interactions,
    earliest_events,
    keep_earliest,
)
from .graph import Changes
from .model import AccountStatus, ModelParams, channel_of
from .moderation import ModerationAction, ModerationKind, ModerationLog
from .pairs import PairTable, pack_pairs, unpack_pairs
from .records import WriteRecord
from .results import EndorsementEvent
from .trail import trail_page
from .users import UserIds, UserTable

#: The EventLog columns a bulk load's record carries (and ``weight`` when given).
_LOG_COLUMNS = (
    "actor",
    "target",
    "kind",
    "ts",
    "endorser",
    "endorsee",
    "topic",
    "endorse_ts",
    "retracted",
    "status",
)
#: Distrust columns, carried only by logs that have distrust events.
_DISTRUST_COLUMNS = (
    "distruster",
    "distrusted",
    "distrust_topic",
    "distrust_ts",
    "distrust_retracted",
)


def log_record(sequence: int, log: EventLog) -> WriteRecord:
    """The write record of a bulk load of ``log``."""
    arrays = {name: np.asarray(getattr(log, name)) for name in _LOG_COLUMNS}
    if log.n_distrust_events:
        arrays.update({name: np.asarray(getattr(log, name)) for name in _DISTRUST_COLUMNS})
    for optional in ("weight", "first_seen"):
        if getattr(log, optional) is not None:
            arrays[optional] = np.asarray(getattr(log, optional))
    users = UserIds.of(log.user_ids or [])
    fields: dict[str, object] = {"topics": list(log.topics)}
    if log.compaction is not None:
        fields["compaction"] = [log.compaction.at, log.compaction.latest_event]
    return WriteRecord(sequence, "log", fields, arrays, users)


#: Interaction columns of what invalidations set aside, in an import record.
_ASIDE_COLUMNS = {
    "action": np.int64,
    "actor": np.int64,
    "target": np.int64,
    "kind": np.int8,
    "weight": np.float64,
}


class IngestState:
    """Users, statuses, first-seen times, pair sums, endorsements and change marks.

    A user's first-seen time (docs/model.md, "Accounts and their age") is the arrival
    time (the write's ``now``) of the first API write naming it, or for bulk loads the
    log's ``first_seen`` or else the user's earliest event in it; the earliest wins,
    so the order writes are applied in does not matter.
    """

    def __init__(self, params: ModelParams, threads: int = 1) -> None:
        self.params = params
        self.threads = threads  # for the parallel build of an empty pair table
        self.users = UserTable()
        self.status = np.zeros(0, np.uint8)
        self.first_seen = np.zeros(0, np.float64)
        self.pairs = PairTable(params)
        self.book = EndorsementBook(params)
        self.distrust = DistrustBook()
        self.moderation = ModerationLog()
        self.changes = Changes()

    @property
    def nbytes(self) -> dict[str, int]:
        """Resident bytes of the pair table, the endorsements and the per-user arrays."""
        return {
            "pairs": self.pairs.nbytes,
            "endorsements": self.book.nbytes + self.distrust.nbytes,
            "users": self.status.nbytes + self.first_seen.nbytes + self.changes.nbytes,
        }

    # ------------------------------------------------------------------ applying

    def apply(self, record: WriteRecord) -> tuple[int, bool | None]:
        """Apply a numbered write record; returns how many events it carried and, for
        an endorsement or retraction, whether the endorsement is live after it."""
        a = record.arrays
        if record.kind == "interactions":
            # Journals from before arrival times were kept: the events' own times.
            arrived = record.fields.get("now")
            dense = self._register_users(record.users, arrived)
            if arrived is None:
                self._note_seen(dense[a["actor"]], a["ts"])
                self._note_seen(dense[a["target"]], a["ts"])
            channel = channel_of(a["kind"])
            self._apply_interactions(
                dense, a["actor"], a["target"], channel, a["ts"], a.get("weight")
            )
            return len(a["actor"]), None
        if record.kind == "endorsement":
            return 1, self._apply_endorsement(record)
        if record.kind == "distrust":
            return 1, self._apply_distrust(record)
        if record.kind == "status":
            u = int(self._register_users(record.users, record.fields.get("now"))[0])
            self._apply_status(u, AccountStatus(int(record.fields["status"])))
            return 1, None
        if record.kind == "log":
            return self._apply_log(record), None
        if record.kind == "moderation":
            return self._apply_moderation(record), None
        if record.kind == "moderation_import":
            return self._apply_moderation_import(record), None
        raise ValueError(f"unknown write record kind {record.kind!r}")

    def _apply_endorsement(self, record: WriteRecord) -> bool:
        """Apply one endorsement or retraction; returns whether the endorsement is live
        after it (events resolve by event time: a back-dated retraction leaves it so)."""
        f = record.fields
        dense = self._register_users(record.users, f.get("now", f["ts"]))
        a, b, t = int(dense[0]), int(dense[1]), self.book.topic_id(f["topic"])
        ts = float(f["ts"])
        self._apply_endorsements(
            dense[:1],
            dense[1:],
            np.array([t]),
            np.array([ts]),
            np.array([bool(f["retract"])]),
            record.sequence,
        )
        if not f["retract"]:
            self.book.note_endorsement(a, ts, self.pairs.latest_event)
        return self.book.is_live(self.pairs, a, b, t)

    def _apply_distrust(self, record: WriteRecord) -> bool:
        """Apply one distrust or its retraction; returns whether the distrust is live
        after it."""
        f = record.fields
        dense = self._register_users(record.users, f["now"])
        a, b, t = int(dense[0]), int(dense[1]), self.book.topic_id(f["topic"])
        self.distrust.apply(
            dense[:1],
            dense[1:],
            np.array([t]),
            np.array([float(f["ts"])]),
            np.array([bool(f["retract"])]),
            record.sequence,
        )
        return self.distrust.is_live(a, b, t)

    def _apply_log(self, record: WriteRecord) -> int:
        a = record.arrays
        dense = self._register_users(record.users)
        seen = a.get("first_seen")
        if seen is None:
            seen = earliest_events(
                len(dense),
                a["actor"],
                a["target"],
                a["ts"],
                a["endorser"],
                a["endorsee"],
                a["endorse_ts"],
                a.get("distruster"),
                a.get("distrusted"),
                a.get("distrust_ts"),
                self.threads,
            )
        self._note_seen(dense, seen)
        topic_dense = np.array(
            [self.book.topic_id(name) for name in record.fields["topics"]], dtype=np.int64
        )
        compaction = record.fields.get("compaction")
        endorser, endorsee = dense[a["endorser"]], dense[a["endorsee"]]
        self._apply_interactions(
            dense,
            a["actor"],
            a["target"],
            channel_of(a["kind"]),
            a["ts"],
            a.get("weight"),
            None if compaction is None else Compaction(*compaction),
            also=(endorser, endorsee),
        )
        if len(endorser):
            self._apply_endorsements(
                endorser,
                endorsee,
                topic_dense[a["topic"]],
                a["endorse_ts"],
                np.asarray(a["retracted"], bool),
                record.sequence,
            )
        distrusts = len(a.get("distruster", ()))
        if distrusts:
            self.distrust.apply(
                dense[a["distruster"]],
                dense[a["distrusted"]],
                topic_dense[a["distrust_topic"]],
                a["distrust_ts"],
                np.asarray(a["distrust_retracted"], bool),
                record.sequence,
            )
        status = np.asarray(a["status"])
        for i in np.flatnonzero(status != AccountStatus.NORMAL):
            self._apply_status(int(dense[i]), AccountStatus(int(status[i])))
        self.pairs.trim()
        return len(a["actor"]) + len(a["endorser"]) + distrusts

    def _apply_moderation(self, record: WriteRecord) -> int:
        """Apply a moderation action; returns how many accounts it names."""
        f = record.fields
        kind = ModerationKind[f["action"]]
        action = ModerationAction(
            action_id=self.moderation.next_id(),
            kind=kind,
            sequence=record.sequence,
            time=float(f["now"]),
            actor=str(f["actor"]),
            reason=str(f["reason"]),
            user_ids=tuple(record.users.decoded()),
            restores=int(f.get("restores", 0)),
        )
        if kind == ModerationKind.SUSPEND_CLUSTER:
            for u in self._register_users(record.users, f["now"]).tolist():
                self._apply_status(int(u), AccountStatus.SUSPENDED)
        elif kind == ModerationKind.INVALIDATE_BETWEEN:
            members = self._known(record.users)
            action = self._invalidate(action, members, record.sequence)
        else:
            target = self.moderation.get(action.restores)
            assert target is not None
            self._reinstate(target.action_id, self._known(UserIds.of(target.user_ids)))
            self.moderation.mark_restored(target.action_id, action.action_id)
        self.moderation.add(action)
        return len(record.users)

    def _known(self, users: UserIds) -> np.ndarray:
        """Dense ids of the known ``users`` (the others hold nothing to act on)."""
        found = [self.users.index.get(u) for u in users.decoded()]
        return np.array([u for u in found if u is not None], np.int64)

    def _pair_slots_between(self, members: np.ndarray) -> np.ndarray:
        """Slots of the known pairs from one of ``members`` to another."""
        src, dst = np.meshgrid(members, members, indexing="ij")
        off = src != dst
        slots = self.pairs.lookup(pack_pairs(src[off], dst[off]))
        return slots[slots >= 0]

    def _invalidate(
        self, action: ModerationAction, members: np.ndarray, sequence: int
    ) -> ModerationAction:
        """Set aside what counts between ``members`` for ``action``."""
        held = self.pairs.set_aside(action.action_id, self._pair_slots_between(members))
        endorsements, touched = self.book.invalidate_between(
            self.pairs, members, action.action_id, 0
        )
        distrusts = self.distrust.invalidate_between(members, action.action_id, 0)
        self.changes.mark_pairs(np.concatenate([held, touched]).astype(np.int32), self.pairs)
        return replace(
            action,
            pairs=len(held),
            endorsement_events=endorsements,
            distrust_events=distrusts,
        )

    def _reinstate(self, action_id: int, members: np.ndarray) -> None:
        """Count again what invalidation ``action_id`` set aside."""
        slots = self.pairs.put_back(action_id)
        _, touched = self.book.invalidate_between(self.pairs, members, 0, action_id)
        self.distrust.invalidate_between(members, 0, action_id)
        self.changes.mark_pairs(np.concatenate([slots, touched]).astype(np.int32), self.pairs)

    def _apply_moderation_import(self, record: WriteRecord) -> int:
        """Add the audit trail of an archive and what its invalidations in force hold
        (set aside on arrival: they count only if restored). Action ids follow the
        ones already held."""
        f, a = record.fields, record.arrays
        dense = self._register_users(record.users)
        base = self.moderation.next_id() - 1
        for raw in f["actions"]:
            action = ModerationAction.from_json(raw)
            self.moderation.add(
                replace(
                    action,
                    action_id=action.action_id + base,
                    sequence=0,
                    restores=action.restores + base if action.restores else 0,
                    restored_by=action.restored_by + base if action.restored_by else 0,
                )
            )
        topics = np.array([self.book.topic_id(t) for t in f["topics"]], np.int64)
        self._import_aside_interactions(dense, a, float(f["at"]), base)
        for owner in np.unique(a["e_action"]).tolist():
            rows = a["e_action"] == owner
            self.book.set_aside_events(
                self.pairs,
                dense[a["e_endorser"][rows]],
                dense[a["e_endorsee"][rows]],
                topics[a["e_topic"][rows]],
                a["e_ts"][rows],
                a["e_retracted"][rows].astype(bool),
                record.sequence,
                int(owner) + base,
            )
        for owner in np.unique(a["d_action"]).tolist():
            rows = a["d_action"] == owner
            self.distrust.set_aside_events(
                dense[a["d_distruster"][rows]],
                dense[a["d_distrusted"][rows]],
                topics[a["d_topic"][rows]],
                a["d_ts"][rows],
                a["d_retracted"][rows].astype(bool),
                record.sequence,
                int(owner) + base,
            )
        return len(f["actions"])

    def _import_aside_interactions(
        self, dense: np.ndarray, a: dict[str, np.ndarray], at: float, base: int
    ) -> None:
        """Interaction weight set aside, as compacted rows at ``at``: forward-decayed
        to the landmark into each action's store."""
        if len(a["i_action"]) == 0:
            return
        self.pairs.note_times(np.array([at]))
        channel = channel_of(a["i_kind"])
        keys = pack_pairs(dense[a["i_actor"]], dense[a["i_target"]])
        factor = 1.0 / self.pairs.decay_to(at)
        sums = np.zeros((len(keys), 4))
        sums[np.arange(len(keys)), channel] = (
            a["i_weight"] * self.pairs.kind_weights[channel] * factor
        )
        for owner in np.unique(a["i_action"]).tolist():
            rows = a["i_action"] == owner
            slots = self.pairs.slots(keys[rows])
            held = self.pairs.aside.get(int(owner) + base)
            new = (self.pairs.key[slots], sums[rows])
            if held is not None:
                new = (np.concatenate([held[0], new[0]]), np.concatenate([held[1], new[1]]))
            self.pairs.aside[int(owner) + base] = new

    def set_aside_log(self, at: float) -> tuple[list[str], list[str], dict[str, np.ndarray]]:
        """What the invalidations in force hold, for an archive: user ids, topics and
        the ``moderation_import`` arrays indexing them (interactions compacted at ``at``)."""
        parts: list[dict[str, np.ndarray]] = []
        for action in self.moderation.in_force():
            keys, sums = self.pairs.aside_at(action.action_id, at)
            src, dst = unpack_pairs(keys)
            rows = compacted_interactions(src, dst, sums, self.pairs.kind_weights, at)
            rows["action"] = np.full(len(rows["actor"]), action.action_id, np.int64)
            parts.append(rows)
        arrays = {
            f"i_{name}": np.concatenate([np.zeros(0, dtype), *(p[name] for p in parts)])
            for name, dtype in _ASIDE_COLUMNS.items()
        }
        for prefix, trail, names in (
            ("e", self.book.trail(), ("endorser", "endorsee")),
            ("d", self.distrust.trail(), ("distruster", "distrusted")),
        ):
            held = trail["invalidated"] != 0
            arrays[f"{prefix}_action"] = trail["invalidated"][held]
            for name in (*names, "topic", "ts"):
                arrays[f"{prefix}_{name}"] = trail[name][held]
            arrays[f"{prefix}_retracted"] = trail["retracted"][held].astype(np.uint8)
        return list(self.users.ids), list(self.book.topics), arrays

    def _register_users(self, users: UserIds, seen: float | None = None) -> np.ndarray:
        """Dense ids of ``users``, registering new ones; all seen at ``seen`` if given."""
        known = len(self.users)
        dense = self.users.register(users)
        n = len(self.users)
        if n > known:
            self.status = grown(self.status, n)
            self.first_seen = grown(self.first_seen, n, np.inf)
            self.changes.grow(n)
        if seen is not None:
            self._note_seen(dense, np.full(len(dense), float(seen)))
        return dense

    def _note_seen(self, dense: np.ndarray, times: np.ndarray) -> None:
        """Users ``dense`` seen at ``times``: each keeps its earliest."""
        keep_earliest(self.first_seen, dense, times)

    def _apply_interactions(
        self,
        dense: np.ndarray,
        actor: np.ndarray,
        target: np.ndarray,
        channel: np.ndarray,
        ts: np.ndarray,
        weight: np.ndarray | None = None,
        compaction: Compaction | None = None,
        also: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> None:
        """``also``: pairs (dense users) endorsements are about to reach, which a
        bulk build creates with the rest."""
        if len(actor) == 0:
            return
        if self.pairs.n == 0 and len(actor) + (0 if also is None else len(also[0])) < 2**31:
            # Every pair is new (a bulk load into an empty engine): build the table at
            # once, and mark every row and target changed.
            self.pairs.build(
                dense, actor, target, channel, ts, self.threads, weight, compaction, also
            )
            self.changes.mark_all(len(self.users))
            return
        slots = self.pairs.add_interactions(dense, actor, target, channel, ts, weight, compaction)
        self.changes.mark_pairs(slots, self.pairs)

    def _apply_endorsements(
        self,
        src: np.ndarray,
        dst: np.ndarray,
        topic: np.ndarray,
        ts: np.ndarray,
        retracted: np.ndarray,
        sequence: int,
    ) -> None:
        touched = self.book.apply(self.pairs, src, dst, topic, ts, retracted, sequence)
        if touched.size:
            self.changes.mark_pairs(touched, self.pairs)

    def _apply_status(self, u: int, status: AccountStatus) -> None:
        if self.status[u] != status:
            self.status[u] = status
            self.changes.rows[u] = 1

    # ------------------------------------------------------------------ checks

    def check_endorsement(
        self,
        endorser_id: str,
        endorsee_id: str,
        topic: str,
        retract: bool,
        ts: float,
        in_flight: Sequence[float] = (),
    ) -> None:
        """What the state decides about an endorsement event at event time ``ts``: a
        retraction needs a live endorsement (``NotFound``), an endorsement room in the
        endorser's daily limit over event time (``RateLimited``), counting its
        endorsements accepted but not yet applied at the times ``in_flight``."""
        a = self.users.index.get(endorser_id)
        if retract:
            b = self.users.index.get(endorsee_id)
            t = self.book.topic_index.get(topic)
            if not self.book.is_live(self.pairs, a, b, t):
                raise NotFound(
                    f"{endorser_id!r} has no live endorsement of {endorsee_id!r}"
                    f" for topic {topic!r}",
                    "endorsee_id",
                    reason="ENDORSEMENT_NOT_FOUND",
                )
        else:
            self.book.check_rate(a, endorser_id, ts, self.pairs.latest_event, in_flight)

    def check_distrust_retraction(self, distruster_id: str, distrusted_id: str, topic: str) -> None:
        """A retraction of a distrust needs a live one (``NotFound``)."""
        a = self.users.index.get(distruster_id)
        b = self.users.index.get(distrusted_id)
        if not self.distrust.is_live(a, b, self.book.topic_index.get(topic)):
            raise NotFound(
                f"{distruster_id!r} has no live distrust of {distrusted_id!r} for topic {topic!r}",
                "distrusted_id",
                reason="DISTRUST_NOT_FOUND",
            )

    # ------------------------------------------------------------------ state

    def arrays(self) -> dict[str, np.ndarray]:
        """Copies of everything (for checkpoints)."""
        arrays = self.users.arrays()
        arrays["status"] = self.status[: len(self.users)].copy()
        arrays["user_first_seen"] = self.first_seen[: len(self.users)].copy()
        arrays.update(self.pairs.arrays())
        arrays.update(self.book.arrays(self.pairs.latest_event))
        arrays.update(self.distrust.arrays())
        arrays.update(self.moderation.arrays())
        return arrays

    @classmethod
    def from_arrays(
        cls,
        arrays: dict[str, np.ndarray],
        params: ModelParams,
        spare_pairs: int = 0,
        threads: int = 1,
    ) -> IngestState:
        """The state in ``arrays``, every row marked changed; room for ``spare_pairs``
        more pairs (see ``PairTable.from_arrays``)."""
        state = cls(params, threads)
        state.pairs = PairTable.from_arrays(arrays, params, spare_pairs)
        state.users = UserTable.from_arrays(arrays)
        state.status = arrays["status"].copy()
        state.first_seen = state._first_seen_of(arrays, len(state.users))
        state.changes.mark_all(len(state.users))
        state.book = EndorsementBook.from_arrays(arrays, params)
        state.distrust = DistrustBook.from_arrays(arrays)
        state.moderation = ModerationLog.from_arrays(arrays)
        return state

    def _first_seen_of(self, arrays: dict[str, np.ndarray], n: int) -> np.ndarray:
        """A state's first-seen times; a state from before they were kept dates every
        user at its latest event (the earliest time the state proves it existed by)."""
        if "user_first_seen" in arrays:
            return arrays["user_first_seen"].astype(np.float64)
        latest = self.pairs.latest_event
        return np.full(n, latest if math.isfinite(latest) else np.inf)

    def compacted_log(self, at: float | None, now: float) -> tuple[EventLog, float]:
        """See ``Engine.compacted_log`` (``now``: the wall clock)."""
        pairs = self.pairs
        latest = pairs.latest_event if math.isfinite(pairs.latest_event) else 0.0
        at = max(now, latest) if at is None else float(at)
        scale = 1.0 if pairs.landmark is None else pairs.decay_to(at)
        src, dst = pairs.src_dst()
        interactions = compacted_interactions(
            src, dst, pairs.fd[: pairs.n] * scale, pairs.kind_weights, at
        )
        # What moderation set aside is left out (the archive carries it beside).
        trail = _counting(self.book.trail())
        distrust = _counting(self.distrust.trail())
        log = EventLog(
            n_users=len(self.users),
            **interactions,
            endorser=trail["endorser"],
            endorsee=trail["endorsee"],
            topic=trail["topic"],
            endorse_ts=trail["ts"],
            retracted=trail["retracted"],
            distruster=distrust["distruster"],
            distrusted=distrust["distrusted"],
            distrust_topic=distrust["topic"],
            distrust_ts=distrust["ts"],
            distrust_retracted=distrust["retracted"],
            status=self.status[: len(self.users)].copy(),
            first_seen=self.first_seen[: len(self.users)].copy(),
            user_ids=list(self.users.ids),
            topics=list(self.book.topics),
            compaction=Compaction(
                at, pairs.latest_interaction if math.isfinite(pairs.latest_interaction) else None
            ),
        )
        return log, at

    def events_between(
        self, a_id: str, b_id: str, start: float, end: float
    ) -> list[EndorsementEvent]:
        """See ``Engine.events_between``."""
        a, b = self.users.index.get(a_id), self.users.index.get(b_id)
        if a is None or b is None:
            return []
        out = []
        for trail, decide, distrust in (
            self.book.trail_source(self.pairs),
            self.distrust.trail_source(),
        ):
            found = trail.of_pair(a, b, start, end)
            deciding = decide(found)
            ids, topics = self.users.ids, self.book.topics
            out += [trail.entry(int(i), ids, topics, int(i) in deciding, distrust) for i in found]
        return sorted(out, key=lambda e: (e.event_time, e.sequence))

    def trail_page(
        self, user_id: str, given: bool, offset: int, limit: int
    ) -> tuple[list[EndorsementEvent], int | None]:
        """See ``Engine.list_endorsements``."""
        u = self.users.index.get(user_id)
        if u is None:
            raise NotFound(f"user {user_id!r} has never been seen", "user_id")
        sources = [self.book.trail_source(self.pairs), self.distrust.trail_source()]
        return trail_page(sources, u, given, offset, limit, self.users.ids, self.book.topics)


def _counting(trail: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """A trail's columns without the events moderation set aside."""
    keep = trail["invalidated"] == 0
    return {k: v[keep] for k, v in trail.items()}
