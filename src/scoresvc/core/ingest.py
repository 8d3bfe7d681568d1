"""The state the writes build, and how a write record changes it: the users, their
statuses and first-seen times, the pair sums (``PairTable``), the endorsement book and
the marks of what changed since the last refresh. Every method runs under the engine's ingest lock.
"""

from __future__ import annotations

import math

import numpy as np

from .arrays import grown
from .distrust import DistrustBook
from .endorsements import EndorsementBook
from .errors import NotFound
from .events import Compaction, EventLog, compacted_interactions, earliest_events
from .graph import Changes
from .model import AccountStatus, ModelParams, channel_of
from .pairs import PairTable
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
            )
        self._note_seen(dense, seen)
        topic_dense = np.array(
            [self.book.topic_id(name) for name in record.fields["topics"]], dtype=np.int64
        )
        compaction = record.fields.get("compaction")
        self._apply_interactions(
            dense,
            a["actor"],
            a["target"],
            channel_of(a["kind"]),
            a["ts"],
            a.get("weight"),
            None if compaction is None else Compaction(*compaction),
        )
        if len(a["endorser"]):
            self._apply_endorsements(
                dense[a["endorser"]],
                dense[a["endorsee"]],
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
        np.minimum.at(self.first_seen, dense, np.asarray(times, np.float64))

    def _apply_interactions(
        self,
        dense: np.ndarray,
        actor: np.ndarray,
        target: np.ndarray,
        channel: np.ndarray,
        ts: np.ndarray,
        weight: np.ndarray | None = None,
        compaction: Compaction | None = None,
    ) -> None:
        if len(actor) == 0:
            return
        if self.pairs.n == 0 and len(actor) < 2**31:
            # Every pair is new (a bulk load into an empty engine): build the table at
            # once, and mark every row and target changed.
            self.pairs.build(dense, actor, target, channel, ts, self.threads, weight, compaction)
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
        self, endorser_id: str, endorsee_id: str, topic: str, retract: bool, ts: float
    ) -> None:
        """What the state decides about an endorsement event at event time ``ts``: a
        retraction needs a live endorsement (``NotFound``), an endorsement room in the
        endorser's daily limit over event time (``RateLimited``)."""
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
            self.book.check_rate(a, endorser_id, ts, self.pairs.latest_event)

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
        trail = self.book.trail()
        distrust = self.distrust.trail()
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

    def trail_page(
        self, user_id: str, given: bool, offset: int, limit: int
    ) -> tuple[list[EndorsementEvent], int | None]:
        """See ``Engine.list_endorsements``."""
        u = self.users.index.get(user_id)
        if u is None:
            raise NotFound(f"user {user_id!r} has never been seen", "user_id")
        sources = [self.book.trail_source(self.pairs), self.distrust.trail_source()]
        return trail_page(sources, u, given, offset, limit, self.users.ids, self.book.topics)
