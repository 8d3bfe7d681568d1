"""The scoring engine: validated writes in, immutable snapshots out.

The engine owns all state as numpy arrays and hands them to the typed kernels in
``scoresvc._core``. It knows nothing of gRPC or storage.

Concurrency: writes take ``_ingest_lock`` (short: validation happens before it);
``refresh`` takes ``_graph_lock`` for its whole run and ``_ingest_lock`` only while
it reads the pair sums. Readers use ``snapshot`` (an immutable object swapped in
atomically) and never wait, except ``explain`` for top contributors, which reads the
graph under ``_graph_lock``.
"""

from __future__ import annotations

import hashlib
import itertools
import math
import os
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import _core
from .arrays import grown
from .endorsement_limit import EndorsementLimit
from .errors import Conflict, FieldViolation, InvalidArgument, NotFound, RateLimited
from .events import Compaction, EventLog, compacted_interactions
from .model import SECONDS_PER_DAY, AccountStatus, InteractionKind, ModelParams, channel_of
from .results import Contributor, EndorsementEvent, WriteResult
from .scoring import teleport_vector
from .snapshot import Snapshot, build_snapshot
from .users import MAX_ID_BYTES, UserIds, UserTable

MAX_VIOLATIONS = 100
TOO_LONG = f"must be at most {MAX_ID_BYTES} bytes of UTF-8"
NOT_FINITE = "must be a finite number of seconds"
# Keep every forward-decay exponent within +-512 half-lives of the landmark: 2^512
# times any realistic count stays far from the float64 limit (2^1024).
LANDMARK_SPAN_HALF_LIVES = 512.0

# A cap on full-refresh power steps; the push finishes whatever is left.
MAX_POWER_STEPS = 500
# Edge passes an incremental refresh may spend pushing before it switches to
# warm-started power steps (see Engine._solve). Small bursts finish well within it.
PUSH_BUDGET_PASSES = 0.25

# Endorsement record states (the core's REC_LIVE is 1).
REC_RETRACTED = 2
REC_LIVE = 1


@dataclass(frozen=True)
class SolverSettings:
    """How closely the credibility solver converges (docs/model.md, "Tolerance").

    A node stops being pushed once ``|r_u| <= relative * x_u + absolute * |p|``;
    ``relative = 1e-8`` keeps every node within the model's 1e-5 with a margin of
    two orders of magnitude for paths up to thousands of hops deep.
    """

    relative: float = 1e-8
    absolute: float = 1e-18


@dataclass(frozen=True)
class WriteRecord:
    """One accepted write as the engine applies it, with every server-side choice
    (sequence, resolved times, request id) made: what a journal stores and replays.

    ``kind`` is "interactions" (arrays: actor, target, kind, ts; users), "endorsement"
    (fields: endorser, endorsee, topic, ts, retract, received_at), "status" (fields:
    user, status) or "log" (arrays and users of an EventLog bulk load).
    """

    sequence: int
    kind: str
    fields: dict[str, Any]
    arrays: dict[str, np.ndarray]
    users: UserIds
    request_id: str = ""
    fingerprint: tuple[Any, ...] = ()


@dataclass(frozen=True)
class EngineState:
    """What ``Engine.state()`` captures: numpy arrays and JSON-able metadata, as of
    ``sequence``."""

    sequence: int
    arrays: dict[str, np.ndarray]
    meta: dict[str, Any]


#: Queues a record for the journal; the returned wait gives its result (see
#: ``Engine.attach_journal``).
Journal = Callable[[WriteRecord], Callable[[], WriteResult]]


def _digest(users: UserIds, *columns: np.ndarray) -> str:
    """A fingerprint of a batch, so a reused request id with other content is caught."""
    h = hashlib.blake2b(digest_size=16)
    users.digest_into(h)
    for column in columns:
        h.update(np.ascontiguousarray(column).tobytes())
    return h.hexdigest()


def _id_violations(users: UserIds) -> list[tuple[int, str]]:
    """``(position, description)`` of each invalid id, in position order."""
    bad_length, bad_text = users.invalid()
    if len(bad_length) == 0 and len(bad_text) == 0:
        return []
    lengths = users.lengths()
    found = [
        (int(j), "must be a non-empty string" if lengths[j] == 0 else TOO_LONG) for j in bad_length
    ]
    found += [(int(j), "must be valid UTF-8") for j in bad_text]
    return sorted(found)


def _index_violations(
    n_users: int, actor: np.ndarray, target: np.ndarray
) -> tuple[list[FieldViolation], int]:
    """The first 100 indexes outside ``user_ids`` in row order, each named by its
    column, and how many there are."""
    found: list[tuple[int, FieldViolation]] = []
    total = 0
    for column, values in (("actor_index", actor), ("target_index", target)):
        bad = np.flatnonzero((values < 0) | (values >= n_users))
        total += len(bad)
        found.extend(
            (int(i), FieldViolation(column, "must index user_ids", int(i)))
            for i in bad[:MAX_VIOLATIONS]
        )
    found.sort(key=lambda item: item[0])
    return [v for _, v in found[:MAX_VIOLATIONS]], total


def _violation_list(found: list[FieldViolation], total: int) -> InvalidArgument:
    return InvalidArgument(found[:MAX_VIOLATIONS], total=total)


def check_user_id(user_id: str, field: str, index: int | None = None) -> FieldViolation | None:
    if not isinstance(user_id, str) or not user_id:
        return FieldViolation(field, "must be a non-empty string", index)
    try:
        size = len(user_id.encode("utf-8"))
    except UnicodeEncodeError:
        return FieldViolation(field, "must be valid UTF-8", index)
    if size > MAX_ID_BYTES:
        return FieldViolation(field, TOO_LONG, index)
    return None


class Engine:
    """Influence scores per docs/model.md over a stream of events.

    Parameters
    ----------
    params : the model's parameters.
    threads : OpenMP threads for the parallel kernels (default: ``SCORESVC_THREADS``
        or the number of CPUs; 1 turns parallelism off).
    solver : convergence settings of the credibility solver.
    """

    def __init__(
        self,
        params: ModelParams | None = None,
        *,
        threads: int | None = None,
        solver: SolverSettings | None = None,
    ) -> None:
        self.params = params or ModelParams()
        self.solver = solver or SolverSettings()
        env_threads = os.environ.get("SCORESVC_THREADS")
        self.threads = int(threads or env_threads or os.cpu_count() or 1)
        self._kind_weights = self.params.channel_weights()[:4].copy()
        self._channel_rho = self.params.channel_reciprocity()
        self._ingest_lock = threading.Lock()
        self._graph_lock = threading.Lock()

        # Ingest side: users, topics, pair sums, endorsement records, dirty flags.
        self._users = UserTable()
        self._topic_index: dict[str, int] = {"": 0}
        self._topics: list[str] = [""]
        self._status = np.zeros(0, np.uint8)
        self._row_dirty = np.zeros(0, np.uint8)
        self._target_dirty = np.zeros(0, np.uint8)
        self._teleport_dirty = False
        self._pair_index = _core.U64Index()
        self._pair_key = np.zeros(0, np.uint64)
        self._pair_fd = np.zeros((0, 4), np.float64)
        # Endorsement sums are sparse: a pair's eslot indexes _e_sum, or is -1.
        self._pair_eslot = np.zeros(0, np.int32)
        self._e_sum = np.zeros(0, np.float64)
        # Each endorsed pair's records, linked: _eslot_head[eslot] -> _rec_next -> -1.
        self._eslot_head = np.zeros(0, np.int32)
        self._n_eslots = 0
        self._pair_rev = np.zeros(0, np.int32)
        # P(src -> dst) as of the last refresh (written by refresh only).
        self._pair_p = np.zeros(0, np.float64)
        self._n_pairs = 0
        self._rec_index = _core.U64Index()
        self._rec_key = np.zeros(0, np.uint64)
        self._rec_pair = np.zeros(0, np.int32)
        self._rec_topic = np.zeros(0, np.int32)
        self._rec_ts = np.zeros(0, np.float64)
        self._rec_state = np.zeros(0, np.uint8)
        self._rec_next = np.zeros(0, np.int32)
        self._n_rec = 0
        # The endorsement audit trail: every endorse and retract, in acceptance order.
        self._trail: dict[str, np.ndarray] = {
            "endorser": np.zeros(0, np.int32),
            "endorsee": np.zeros(0, np.int32),
            "topic": np.zeros(0, np.int32),
            "ts": np.zeros(0, np.float64),
            "retracted": np.zeros(0, bool),
            "sequence": np.zeros(0, np.int64),
        }
        self._n_trail = 0
        self._landmark: float | None = None
        self._latest_event = -math.inf  # the latest event time applied
        # The latest event the pair sums hold (a compacted interaction's reach their
        # Compaction.exact_from, not its own time): how early an export can be read.
        self._latest_interaction = -math.inf
        self._landmark_moved = False
        self.events_accepted = 0  # since this process started
        self._published_at = time.time()
        self._sequence = 0  # of the last write applied
        self._assigned = 0  # of the last write given a number (applied or journaling)
        self._requests: dict[str, tuple[tuple[Any, ...], WriteResult]] = {}
        self._pending: dict[str, tuple[tuple[Any, ...], Callable[[], WriteResult]]] = {}
        self._journal: Journal | None = None
        self._endorse_limit = EndorsementLimit(
            self.params.daily_endorsement_limit,
            SECONDS_PER_DAY,
            self.params.endorsement_limit_horizon_seconds,
        )

        # Graph side (refresh only): slack CSR out and in, credibility state.
        self._graph_users = 0
        self._graph_pairs = 0
        self._graph_time: float | None = None
        self._graph_version = 0
        self._out_start = np.zeros(0, np.int32)
        self._out_len = np.zeros(0, np.int32)
        self._out_cap = np.zeros(0, np.int32)
        self._out_pair = np.zeros(0, np.int32)
        self._out_used = 0
        self._in_start = np.zeros(0, np.int32)
        self._in_len = np.zeros(0, np.int32)
        self._in_cap = np.zeros(0, np.int32)
        self._in_pair = np.zeros(0, np.int32)
        self._in_used = 0
        self._beta = np.zeros(0, np.float64)
        self._x = np.zeros(0, np.float64)
        self._r = np.zeros(0, np.float64)
        self._teleport = np.zeros(0, np.uint8)
        self._snapshot = Snapshot.empty(self._users.ids, self._users.index, self._topic_index)

    # ------------------------------------------------------------------ reading

    @property
    def snapshot(self) -> Snapshot:
        """The latest published snapshot (never half-built)."""
        return self._snapshot

    @property
    def sequence(self) -> int:
        """The sequence number of the last accepted write."""
        return self._sequence

    @property
    def landmark(self) -> float | None:
        """The forward-decay landmark L (moves forward as time does)."""
        return self._landmark

    @property
    def snapshot_age_seconds(self) -> float:
        """Wall-clock seconds since the latest snapshot was published."""
        return max(time.time() - self._published_at, 0.0)

    @property
    def n_users(self) -> int:
        return len(self._users.ids)

    @property
    def n_pairs(self) -> int:
        return self._n_pairs

    @property
    def pending(self) -> bool:
        """True when writes were accepted after the latest snapshot."""
        return self._sequence > self._snapshot.sequence

    def has_user(self, user_id: str) -> bool:
        return user_id in self._users.index

    def explain(self, user_id: str, limit: int) -> tuple[Snapshot, list[Contributor]]:
        """The latest snapshot and the ``limit`` users contributing most to the user's
        credibility, with their shares of it."""
        with self._graph_lock:
            snap = self._snapshot
            u = snap.user(user_id)
            if limit <= 0 or snap.credibility_of(u) <= 0:
                return snap, []
            sources, contribution = _core.top_in_edges(
                u,
                self._in_start,
                self._in_len,
                self._in_pair,
                self._pair_key,
                self._pair_p,
                snap.x,
                self.params.damping,
                limit,
            )
        share = contribution / snap.x[u]
        return snap, [Contributor(self._users.ids[a], float(s)) for a, s in zip(sources, share)]

    def edges(self) -> dict[str, np.ndarray]:
        """The trust graph of the latest refresh, one entry per pair, for tests and
        tooling: decayed sums at the refresh's time, ``P(a->b)`` and ``beta`` per user.
        Pair sums include any write accepted since that refresh."""
        with self._graph_lock, self._ingest_lock:
            m, n = self._graph_pairs, self._graph_users
            if self._graph_time is None or self._landmark is None:
                return {"src": np.zeros(0, np.int64), "dst": np.zeros(0, np.int64)}
            keys = self._pair_key[:m]
            scale = math.exp2((self._landmark - self._graph_time) / self.params.half_life_seconds)
            return {
                "src": (keys >> np.uint64(32)).astype(np.int64),
                "dst": (keys & np.uint64(0xFFFFFFFF)).astype(np.int64),
                "interaction_sums": self._pair_fd[:m] * scale,
                "endorsement_sums": self._endorsement_sums(np.arange(m)) * scale,
                "transition": self._pair_p[:m].copy(),
                "budget_factor": self._beta[:n].copy(),
            }

    def memory_bytes(self) -> dict[str, int]:
        """Resident bytes by part (arrays at their capacity, and the latest snapshot)."""
        pair_arrays = (
            self._pair_key,
            self._pair_fd,
            self._pair_rev,
            self._pair_p,
            self._pair_eslot,
            self._e_sum,
        )
        graph_pair = (self._out_pair, self._in_pair)
        node_arrays = (
            self._status,
            self._row_dirty,
            self._target_dirty,
            self._out_start,
            self._out_len,
            self._out_cap,
            self._in_start,
            self._in_len,
            self._in_cap,
            self._beta,
            self._x,
            self._r,
            self._teleport,
        )
        records = (
            self._rec_key,
            self._rec_pair,
            self._rec_topic,
            self._rec_ts,
            self._rec_state,
            self._rec_next,
            self._eslot_head,
        )
        return {
            "pairs": sum(a.nbytes for a in pair_arrays) + self._pair_index.nbytes,
            "graph": sum(a.nbytes for a in graph_pair),
            "users": sum(a.nbytes for a in node_arrays),
            "endorsements": sum(a.nbytes for a in records)
            + self._rec_index.nbytes
            + sum(a.nbytes for a in self._trail.values()),
            # x is shared between the solver and the published snapshot.
            "snapshot": self._snapshot.nbytes
            - (self._snapshot.x.nbytes if np.shares_memory(self._snapshot.x, self._x) else 0),
        }

    # ------------------------------------------------------------------ writing

    def record_interactions(
        self,
        rows: Iterable[Sequence[Any]],
        *,
        request_id: str = "",
        now: float | None = None,
    ) -> WriteResult:
        """Add interactions given as rows ``(actor_id, target_id, kind, ts)``.

        ``ts`` may be None (server time). A batch with any bad row is rejected whole.
        """
        rows = list(rows)
        return self.record_interaction_lists(
            [r[0] for r in rows],
            [r[1] for r in rows],
            [r[2] for r in rows],
            [math.nan if r[3] is None else r[3] for r in rows],
            request_id=request_id,
            now=now,
        )

    def record_interaction_lists(
        self,
        actor_ids: Sequence[str],
        target_ids: Sequence[str],
        kinds: Sequence[int],
        times: Sequence[float] | np.ndarray,
        *,
        request_id: str = "",
        now: float | None = None,
    ) -> WriteResult:
        """The row form as parallel lists (what a servicer builds fastest); a time of
        NaN means server time. Ids are checked once per distinct id, not per row."""
        n = len(actor_ids)
        if not (len(target_ids) == len(kinds) == len(times) == n):
            raise InvalidArgument([FieldViolation("interactions", "lists differ in length")])
        # Ids in order of first use, actor before target row by row (as the wire parser
        # builds them), so both routes fingerprint a batch alike.
        users = list(dict.fromkeys(itertools.chain.from_iterable(zip(actor_ids, target_ids))))
        index = {u: j for j, u in enumerate(users)}
        return self.record_interaction_rows(
            users,
            np.fromiter(map(index.__getitem__, actor_ids), np.int64, n),
            np.fromiter(map(index.__getitem__, target_ids), np.int64, n),
            np.fromiter(kinds, np.int64, n),
            np.fromiter(times, np.float64, n),
            request_id=request_id,
            now=now,
        )

    def record_interaction_rows(
        self,
        users: Sequence[str] | UserIds,
        actor: np.ndarray,
        target: np.ndarray,
        kind: np.ndarray,
        given: np.ndarray,
        *,
        request_id: str = "",
        now: float | None = None,
    ) -> WriteResult:
        """Rows already dictionary-encoded (``users`` distinct, in order of first use);
        unlike the columnar form, a bad id is reported on each row that uses it, as
        ``actor_id`` or ``target_id``. A time of NaN means server time."""
        now = time.time() if now is None else now
        users = users if isinstance(users, UserIds) else UserIds.of(users)
        ts = np.where(np.isnan(given), now, given)
        bad = _id_violations(users)
        if bad:
            found: list[tuple[int, FieldViolation]] = []
            for j, description in bad:
                for side, column in (("actor_id", actor), ("target_id", target)):
                    found.extend(
                        (int(i), FieldViolation(side, description, int(i)))
                        for i in np.flatnonzero(column == j)[:MAX_VIOLATIONS]
                    )
            more, more_total = self._check_columns(actor, target, kind, ts, now)
            found.sort(key=lambda item: item[0])
            listed = [v for _, v in found][:MAX_VIOLATIONS]
            raise _violation_list(listed + more, len(found) + more_total)
        return self._record_columns(
            users, actor, target, kind, ts, given, request_id, now, users_checked=True
        )

    def record_interaction_columns(
        self,
        user_ids: Sequence[str] | UserIds,
        actor_index: np.ndarray,
        target_index: np.ndarray,
        kind: np.ndarray,
        ts: np.ndarray | None,
        *,
        request_id: str = "",
        now: float | None = None,
    ) -> WriteResult:
        """Add interactions as columns: indexes into ``user_ids``, kinds (1-4), unix
        seconds (None: all at server time). The batch gets one sequence number; any
        bad row rejects it whole."""
        now = time.time() if now is None else now
        users = user_ids if isinstance(user_ids, UserIds) else UserIds.of(user_ids)
        given = None if ts is None else np.asarray(ts, np.float64)
        resolved = np.full(len(actor_index), now) if given is None else given
        return self._record_columns(
            users, actor_index, target_index, kind, resolved, given, request_id, now
        )

    def _record_columns(
        self,
        users: UserIds,
        actor_index: np.ndarray,
        target_index: np.ndarray,
        kind: np.ndarray,
        ts: np.ndarray,
        given_ts: np.ndarray | None,
        request_id: str,
        now: float,
        users_checked: bool = False,
    ) -> WriteResult:
        """``ts`` resolved to server time where the caller gave none; ``given_ts`` is
        what the caller sent, so a retry with the same request id matches."""
        actor_index = np.asarray(actor_index, np.int64)
        target_index = np.asarray(target_index, np.int64)
        kind = np.asarray(kind)
        n = len(actor_index)
        if not (len(target_index) == len(kind) == len(ts) == n):
            raise InvalidArgument(
                [FieldViolation("columns", "all columns must have the same length")]
            )
        fingerprint: tuple[Any, ...] = ()
        if request_id:
            sent = np.empty(0) if given_ts is None else given_ts
            # kinds as int64 whatever the route (columns carry bytes): one batch, one print
            kinds = kind.astype(np.int64, copy=False)
            fingerprint = ("interactions", _digest(users, actor_index, target_index, kinds, sent))
            if done := self._replayed(request_id, fingerprint):
                return done()
        violations, total = self._check_columns(actor_index, target_index, kind, ts, now)
        bad_users = (
            []
            if users_checked
            else [FieldViolation("user_ids", d, j) for j, d in _id_violations(users)]
        )
        bad_index, index_total = _index_violations(len(users), actor_index, target_index)
        if violations or bad_users or bad_index:
            everything = bad_users + bad_index + violations
            raise _violation_list(everything, total + len(bad_users) + index_total)
        arrays: dict[str, np.ndarray] = {
            "actor": actor_index.astype(np.int64),
            "target": target_index.astype(np.int64),
            "kind": kind.astype(np.int8),
            "ts": ts,
        }
        return self._write(
            request_id,
            fingerprint,
            lambda sequence: WriteRecord(
                sequence, "interactions", {}, arrays, users, request_id, fingerprint
            ),
        )

    def load_events(self, log: EventLog) -> WriteResult:
        """Bulk-load an ``EventLog`` (trusted input: an import, a replay, a benchmark).

        Interactions and endorsement events are applied without the per-endorser
        rate limit; statuses other than NORMAL are applied too. One sequence number.
        """
        arrays = {
            name: getattr(log, name)
            for name in (
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
        }
        if log.weight is not None:
            arrays["weight"] = log.weight
        users = UserIds.of(log.user_ids or [])
        fields: dict[str, Any] = {"topics": list(log.topics)}
        if log.compaction is not None:
            fields["compaction"] = [log.compaction.at, log.compaction.latest_event]
        return self._write(
            "",
            (),
            lambda sequence: WriteRecord(
                sequence,
                "log",
                fields,
                {k: np.asarray(v) for k, v in arrays.items()},
                users,
            ),
        )

    def endorse(
        self,
        endorser_id: str,
        endorsee_id: str,
        topic: str = "",
        ts: float | None = None,
        *,
        request_id: str = "",
        now: float | None = None,
    ) -> WriteResult:
        """Endorse (or refresh an endorsement); rate-limited per endorser."""
        return self._endorsement_event(endorser_id, endorsee_id, topic, ts, False, request_id, now)

    def retract(
        self,
        endorser_id: str,
        endorsee_id: str,
        topic: str = "",
        ts: float | None = None,
        *,
        request_id: str = "",
        now: float | None = None,
    ) -> WriteResult:
        """Retract a live endorsement (``NotFound`` when there is none)."""
        return self._endorsement_event(endorser_id, endorsee_id, topic, ts, True, request_id, now)

    def set_status(
        self, user_id: str, status: AccountStatus, *, request_id: str = ""
    ) -> WriteResult:
        """Make an account NORMAL, SEED or SUSPENDED (a new id is registered)."""
        bad = check_user_id(user_id, "user_id")
        if bad:
            raise InvalidArgument([bad])
        status = AccountStatus(status)
        fingerprint = ("status", user_id, int(status))
        users = UserIds.of([user_id])
        return self._write(
            request_id,
            fingerprint,
            lambda sequence: WriteRecord(
                sequence, "status", {"status": int(status)}, {}, users, request_id, fingerprint
            ),
        )

    def list_endorsements(
        self, user_id: str, given: bool, offset: int, limit: int
    ) -> tuple[list[EndorsementEvent], int | None]:
        """A page of the audit trail given or received by a user, newest first.

        Returns the entries and the offset of the next page (None at the end). Each
        entry says whether it ``decides_current_state`` of its endorsement.
        """
        u = self._users.index.get(user_id)
        if u is None:
            raise NotFound(f"user {user_id!r} has never been seen", "user_id")
        with self._ingest_lock:
            n = self._n_trail
            side = self._trail["endorser" if given else "endorsee"][:n]
            hits = np.flatnonzero(side == u)[::-1]
            page = hits[offset : offset + limit]
            deciding = self._deciding_events(hits)
            entries = [
                EndorsementEvent(
                    endorser_id=self._users.ids[self._trail["endorser"][i]],
                    endorsee_id=self._users.ids[self._trail["endorsee"][i]],
                    topic=self._topics[self._trail["topic"][i]],
                    event_time=float(self._trail["ts"][i]),
                    retracted=bool(self._trail["retracted"][i]),
                    sequence=int(self._trail["sequence"][i]),
                    decides_current_state=int(i) in deciding,
                )
                for i in page
            ]
        following = offset + limit
        return entries, (following if following < len(hits) else None)

    # ------------------------------------------------------------------ checkpoints

    def state(self) -> EngineState:
        """A consistent copy of everything the writes have built, as of one sequence
        number (for checkpoints). The refresh-side graph is not in it: it is rebuilt
        from the pair sums by the first refresh."""
        with self._ingest_lock:
            n_pairs, n_eslots, n_rec, n_trail = (
                self._n_pairs,
                self._n_eslots,
                self._n_rec,
                self._n_trail,
            )
            arrays = self._users.arrays()
            arrays.update(
                status=self._status[: len(self._users)].copy(),
                pair_key=self._pair_key[:n_pairs].copy(),
                pair_fd=self._pair_fd[:n_pairs].copy(),
                pair_eslot=self._pair_eslot[:n_pairs].copy(),
                e_sum=self._e_sum[:n_eslots].copy(),
                eslot_head=self._eslot_head[:n_eslots].copy(),
                rec_key=self._rec_key[:n_rec].copy(),
                rec_ts=self._rec_ts[:n_rec].copy(),
                rec_state=self._rec_state[:n_rec].copy(),
                rec_next=self._rec_next[:n_rec].copy(),
            )
            arrays.update({f"trail_{k}": v[:n_trail].copy() for k, v in self._trail.items()})
            # The last published credibility: a warm start for the first refresh after
            # a restore (never written again, so no lock is needed to read it).
            arrays["warm_x"] = self._snapshot.x.copy()
            arrays.update(self._endorse_limit.arrays(self._latest_event))
            meta = {
                "landmark": self._landmark,
                "latest_event": self._latest_event if math.isfinite(self._latest_event) else None,
                "latest_interaction": (
                    self._latest_interaction if math.isfinite(self._latest_interaction) else None
                ),
                "topics": list(self._topics),
                "aggregation": self._aggregation_params(),
                "requests": [
                    [rid, list(fp), result.sequence, result.accepted]
                    for rid, (fp, result) in self._requests.items()
                ],
            }
            return EngineState(self._sequence, arrays, meta)

    def restore(self, state: EngineState, spare_pairs: int = 0) -> None:
        """Load ``state`` (from ``state()``) into this engine, which must be new; the
        writes after it can then be replayed. ``spare_pairs``: room for that many new
        pairs (the events about to be replayed), so the replay never copies the pair
        arrays to grow them (the room is zeroed lazily by the OS: it costs no memory
        until used).

        Kind and endorsement weights may differ from the state's (the sums scale
        exactly); a different half-life cannot be applied to decayed sums.
        """
        if self._assigned or len(self._users):
            raise ValueError("restore needs an engine that has seen no writes")
        engine = self
        a, meta = state.arrays, state.meta
        was = meta["aggregation"]
        if was["half_life_seconds"] != engine.params.half_life_seconds:
            raise ValueError(
                f"the state was aggregated with a half-life of {was['half_life_seconds']} s,"
                f" not {engine.params.half_life_seconds} s: rebuild it from an export"
            )
        engine._users = UserTable.from_arrays(a)
        n = len(engine._users)
        engine._status = a["status"].copy()
        engine._row_dirty = np.ones(n, np.uint8)
        engine._target_dirty = np.ones(n, np.uint8)
        engine._teleport_dirty = True
        engine._topics = list(meta["topics"])
        engine._topic_index = {t: i for i, t in enumerate(engine._topics)}
        n_pairs = len(a["pair_key"])
        # Headroom for the writes replayed next, so they do not copy every pair array.
        room = n_pairs + max(spare_pairs, n_pairs // 4) + 1024
        engine._pair_key = grown(a["pair_key"], room)
        engine._pair_fd = grown(a["pair_fd"], room, 0.0)
        rescale = engine._kind_weights / np.asarray(was["kind_weights"])
        if (rescale != 1.0).any():
            engine._pair_fd *= rescale
        engine._pair_eslot = grown(a["pair_eslot"], room, -1)
        engine._pair_p = np.zeros(len(engine._pair_key))
        engine._pair_rev = np.full(len(engine._pair_key), -1, np.int32)
        slots = np.empty(n_pairs, np.int32)
        engine._pair_index.get_or_insert(engine._pair_key[:n_pairs], engine._pair_key, slots)
        _core.link_reverse(engine._pair_index, engine._pair_key, 0, n_pairs, engine._pair_rev)
        engine._n_pairs = n_pairs
        engine._e_sum = a["e_sum"] * (engine.params.endorsement_weight / was["endorsement_weight"])
        engine._eslot_head = a["eslot_head"].copy()
        engine._n_eslots = len(engine._e_sum)
        n_rec = len(a["rec_key"])
        engine._rec_key = a["rec_key"].copy()
        engine._rec_index.get_or_insert(engine._rec_key, engine._rec_key, np.empty(n_rec, np.int32))
        engine._rec_pair = (engine._rec_key >> np.uint64(32)).astype(np.int32)
        engine._rec_topic = (engine._rec_key & np.uint64(0xFFFFFFFF)).astype(np.int32)
        engine._rec_ts = a["rec_ts"].copy()
        engine._rec_state = a["rec_state"].copy()
        engine._rec_next = a["rec_next"].copy()
        engine._n_rec = n_rec
        engine._trail = {k: a[f"trail_{k}"].copy() for k in engine._trail}
        engine._n_trail = len(engine._trail["endorser"])
        engine._endorse_limit.load(a["rate_endorser"], a["rate_time"])
        warm = a.get("warm_x")
        if warm is not None and len(warm):
            engine._x = grown(warm, n, 0.0).copy()
        engine._landmark = meta["landmark"]
        latest = meta.get("latest_event")
        engine._latest_event = -math.inf if latest is None else float(latest)
        # Checkpoints from before it was kept: the latest event of any kind is as late.
        latest = meta.get("latest_interaction", latest)
        engine._latest_interaction = -math.inf if latest is None else float(latest)
        engine._sequence = engine._assigned = state.sequence
        engine._requests = {
            rid: (tuple(fp), WriteResult(sequence, accepted))
            for rid, fp, sequence, accepted in meta["requests"]
        }
        engine._snapshot = Snapshot.empty(
            engine._users.ids, engine._users.index, engine._topic_index
        )

    def compacted_log(self, at: float | None = None) -> tuple[EventLog, float]:
        """Everything applied, as the shortest event log that rebuilds the same state:
        per (actor, target, kind) one interaction at time ``at`` whose ``weight`` is the
        decayed count (the pair's sum at ``at`` over the kind's weight), the whole
        endorsement trail, every user with their status. ``at`` defaults to the later of
        now and the latest event; returns the log and ``at``.

        Replaying it gives the same pair sums (to rounding) whatever the landmark, and
        the same scores at any time from the latest event folded in (``log.compaction``)
        on: decay is exponential, so a sum of decayed events is one event of that weight.
        """
        with self._ingest_lock:
            latest = self._latest_event if math.isfinite(self._latest_event) else 0.0
            at = max(time.time(), latest) if at is None else float(at)
            n_pairs, n_trail = self._n_pairs, self._n_trail
            keys = self._pair_key[:n_pairs]
            scale = 1.0
            if self._landmark is not None:
                scale = math.exp2((self._landmark - at) / self.params.half_life_seconds)
            interactions = compacted_interactions(
                (keys >> np.uint64(32)).astype(np.int64),
                (keys & np.uint64(0xFFFFFFFF)).astype(np.int64),
                self._pair_fd[:n_pairs] * scale,
                self._kind_weights,
                at,
            )
            trail = {k: v[:n_trail].copy() for k, v in self._trail.items()}
            latest_interaction = self._latest_interaction
            log = EventLog(
                n_users=len(self._users),
                **interactions,
                endorser=trail["endorser"],
                endorsee=trail["endorsee"],
                topic=trail["topic"],
                endorse_ts=trail["ts"],
                retracted=trail["retracted"],
                status=self._status[: len(self._users)].copy(),
                user_ids=list(self._users.ids),
                topics=list(self._topics),
                compaction=Compaction(
                    at, latest_interaction if math.isfinite(latest_interaction) else None
                ),
            )
        return log, at

    def _aggregation_params(self) -> dict[str, Any]:
        """The parameters baked into the stored sums."""
        return {
            "half_life_seconds": self.params.half_life_seconds,
            "kind_weights": list(self.params.kind_weights),
            "endorsement_weight": self.params.endorsement_weight,
        }

    # ------------------------------------------------------------------ refresh

    def refresh(self, now: float | None = None) -> Snapshot:
        """Bring the credibility up to date at ``now`` and publish a snapshot.

        When ``now`` equals the previous refresh's time, only rows touched by new
        events are recomputed and the solver pushes from where it stopped. When time
        moved, every edge's weight changed (saturation is not linear in the decay), so
        all rows are recomputed in parallel and the solver restarts from the previous
        credibility (a warm start).
        """
        now = time.time() if now is None else float(now)
        p = self.params
        started = time.perf_counter()
        with self._graph_lock:
            # The published snapshot shares x; work on a copy so it never changes.
            self._x = self._x.copy()
            with self._ingest_lock:
                sequence = self._sequence
                n = len(self._users.ids)
                if self._landmark is None:
                    self._landmark = now
                self._keep_landmark_near(now)
                self._grow_graph(n)
                status = self._status[:n].copy()
                old_teleport = self._teleport[:n].astype(np.float64)
                teleport = teleport_vector(status)
                # Seeds changed: a warm start would leave traces of trust at users no
                # seed reaches any more, which the model wants at exactly 0. Rare
                # (operator actions), so solve from scratch.
                cold = bool(
                    (status == AccountStatus.SEED).any()
                    and ((old_teleport > 0) & (teleport == 0)).any()
                )
                if cold:
                    self._x[:n] = 0.0
                    self._r[:n] = 0.0
                full = (
                    cold
                    or self._graph_time != now
                    or self._landmark_moved
                    or self._graph_users == 0
                )
                self._landmark_moved = False
                self._insert_new_edges()
                if full:
                    rows = np.arange(n, dtype=np.int32)
                    self._row_dirty[:n] = 0
                else:
                    rows = np.flatnonzero(self._row_dirty[:n]).astype(np.int32)
                    self._row_dirty[rows] = 0
                scale = math.exp2((self._landmark - now) / p.half_life_seconds)
                self._teleport_dirty = False
                if not full:
                    self._scatter_rows(rows, -p.damping)
                beta_changed = np.zeros(n, np.uint8)
                _core.compute_rows(
                    rows,
                    self._out_start,
                    self._out_len,
                    self._out_pair,
                    self._pair_fd,
                    self._pair_rev,
                    self._pair_eslot,
                    self._e_sum,
                    self._status,
                    scale,
                    self._channel_rho,
                    p.endorsement_budget,
                    self._pair_p,
                    self._beta,
                    np.empty(n),
                    beta_changed,
                    self.threads,
                )
                if not full:
                    self._scatter_rows(rows, p.damping)
                received = self._received(n, full, beta_changed, scale)
                topic_records = self._topic_records(scale)
            self._graph_time = now
            self._graph_version += 1
            self._teleport[:n] = teleport.astype(np.uint8)
            sweeps, pushes, work = self._solve(n, teleport, old_teleport, full)
            snapshot = build_snapshot(
                previous=self._snapshot,
                time=now,
                sequence=sequence,
                user_ids=self._users.ids,
                user_index=self._users.index,
                topics=self._topic_index,
                topic_names=self._topics,
                status=status,
                x=self._x[:n],
                teleport=teleport,
                received=received,
                topic_records=topic_records,
                graph_version=self._graph_version,
                stats={
                    "full": full,
                    "rows": len(rows),
                    "sweeps": sweeps,
                    "pushes": pushes,
                    "edge_work": work,
                    "edges": int(self._out_len[:n].sum()),
                    "seconds": time.perf_counter() - started,
                },
            )
            self._snapshot = snapshot
            self._published_at = time.time()
        return snapshot

    # ------------------------------------------------------------------ internals

    def attach_journal(self, journal: Journal | None) -> None:
        """Have ``journal`` persist every write before it is applied (write-ahead).

        ``journal(record)`` queues the record and returns a wait: the journal commits
        records in sequence order (in groups), then applies each with ``replay`` or,
        when it could not store it, drops it with ``discard``; the wait returns
        ``replay``'s result or raises the storage error. Writers wait without the
        ingest lock, so concurrent writes share a commit.
        """
        self._journal = journal

    def replay(self, record: WriteRecord) -> WriteResult:
        """Apply a journaled write: at start-up, and as the journal commits each one."""
        with self._ingest_lock:
            if record.sequence <= self._sequence:
                raise ValueError(f"record {record.sequence} is not after sequence {self._sequence}")
            return self._apply(record)

    def discard(self, record: WriteRecord) -> None:
        """Forget a queued write the journal could not store (it is never applied)."""
        if record.request_id:
            self._pending.pop(record.request_id, None)

    def _write(
        self,
        request_id: str,
        fingerprint: tuple[Any, ...],
        make_record: Callable[[int], WriteRecord],
    ) -> WriteResult:
        """Give ``make_record`` the next sequence number (under the ingest lock, where
        it may check the state and raise), journal and apply the record, and wait for
        it outside the lock; a repeated request id gets the first answer."""
        with self._ingest_lock:
            wait = self._replayed(request_id, fingerprint) if request_id else None
            if wait is None:
                record = make_record(self._assigned + 1)
                if self._journal is None:
                    return self._apply(record)
                wait = self._journal(record)
                self._assigned = record.sequence
                if request_id:
                    self._pending[request_id] = (fingerprint, wait)
        return wait()

    def _apply(self, record: WriteRecord) -> WriteResult:
        a = record.arrays
        live = None
        if record.kind == "interactions":
            dense = self._register_users(record.users)
            channel = channel_of(a["kind"])
            self._apply_interactions(dense, a["actor"], a["target"], channel, a["ts"])
            accepted = len(a["actor"])
        elif record.kind == "endorsement":
            f = record.fields
            dense = self._register_users(record.users)
            self._apply_endorsements(
                dense[:1],
                dense[1:],
                np.array([self._topic_id(f["topic"])]),
                np.array([float(f["ts"])]),
                np.array([bool(f["retract"])]),
                record.sequence,
            )
            if not f["retract"]:
                self._endorse_limit.add(int(dense[0]), float(f["ts"]), self._latest_event)
            live = self._is_live(int(dense[0]), int(dense[1]), self._topic_index[f["topic"]])
            accepted = 1
        elif record.kind == "status":
            u = int(self._register_users(record.users)[0])
            self._apply_status(u, AccountStatus(int(record.fields["status"])))
            accepted = 1
        elif record.kind == "log":
            accepted = self._apply_log(record)
        else:
            raise ValueError(f"unknown write record kind {record.kind!r}")
        self._sequence = record.sequence
        self._assigned = max(self._assigned, record.sequence)
        self.events_accepted += accepted
        if record.request_id:
            self._pending.pop(record.request_id, None)
        return self._acknowledge(
            record.request_id, record.fingerprint, WriteResult(record.sequence, accepted, live)
        )

    def _apply_log(self, record: WriteRecord) -> int:
        a = record.arrays
        dense = self._register_users(record.users)
        topic_dense = np.array(
            [self._topic_id(name) for name in record.fields["topics"]], dtype=np.int64
        )
        if len(a["actor"]):
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
        status = np.asarray(a["status"])
        for i in np.flatnonzero(status != AccountStatus.NORMAL):
            self._apply_status(int(dense[i]), AccountStatus(int(status[i])))
        self._trim_pair_arrays()
        return len(a["actor"]) + len(a["endorser"])

    def _replayed(
        self, request_id: str, fingerprint: tuple[Any, ...]
    ) -> Callable[[], WriteResult] | None:
        """How to answer a request id seen before (applied, or queued in the journal)."""
        seen = self._requests.get(request_id)
        if seen is not None:
            if seen[0] != fingerprint:
                raise Conflict(f"request_id {request_id!r} was used for a different request")
            result = seen[1]
            return lambda: result
        queued = self._pending.get(request_id)
        if queued is None:
            return None
        if queued[0] != fingerprint:
            raise Conflict(f"request_id {request_id!r} was used for a different request")
        return queued[1]

    def _acknowledge(
        self, request_id: str, fingerprint: tuple[Any, ...], result: WriteResult
    ) -> WriteResult:
        if request_id:
            self._requests[request_id] = (fingerprint, result)
        return result

    def _check_columns(
        self,
        actor: np.ndarray,
        target: np.ndarray,
        kind: np.ndarray,
        ts: np.ndarray,
        now: float,
    ) -> tuple[list[FieldViolation], int]:
        """The first 100 violations of a columnar batch in row order, and the count
        of all of them."""
        skew = self.params.max_future_skew_seconds
        finite = np.isfinite(ts)  # one message for NaN and infinities, nothing more
        checks = [
            ("target_id", actor == target, "must differ from actor_id"),
            (
                "kind",
                (kind < InteractionKind.LIKE) | (kind > InteractionKind.RESHARE),
                "must be LIKE, MENTION, REPLY or RESHARE",
            ),
            ("event_time", ~finite, NOT_FINITE),
            ("event_time", finite & (ts < 0), "must be a time after 1970"),
            ("event_time", finite & (ts > now + skew), f"is more than {skew:g} s in the future"),
        ]
        found: list[tuple[int, FieldViolation]] = []
        total = 0
        for field, mask, description in checks:
            bad = np.flatnonzero(mask)
            total += len(bad)
            found.extend(
                (int(i), FieldViolation(field, description, int(i))) for i in bad[:MAX_VIOLATIONS]
            )
        found.sort(key=lambda item: item[0])
        return [v for _, v in found[:MAX_VIOLATIONS]], total

    def _register_users(self, users: UserIds) -> np.ndarray:
        """Dense ids of ``users``, registering new ones (ingest lock held)."""
        known = len(self._users)
        dense = self._users.register(users)
        n = len(self._users)
        if n > known:
            self._status = grown(self._status, n)
            self._row_dirty = grown(self._row_dirty, n)
            self._target_dirty = grown(self._target_dirty, n)
            self._teleport_dirty = True
        return dense

    def _topic_id(self, topic: str) -> int:
        t = self._topic_index.get(topic)
        if t is None:
            t = len(self._topics)
            self._topic_index[topic] = t
            self._topics.append(topic)
        return t

    def _note_time(self, ts_max: float) -> None:
        """Track the latest event time, and keep the landmark near it."""
        self._latest_event = max(self._latest_event, ts_max)
        self._keep_landmark_near(ts_max)

    def _keep_landmark_near(self, ts_max: float) -> None:
        """Move the landmark forward when an exponent could overflow (lock held)."""
        h = self.params.half_life_seconds
        assert self._landmark is not None
        if (ts_max - self._landmark) / h <= LANDMARK_SPAN_HALF_LIVES:
            return
        factor = math.exp2((self._landmark - ts_max) / h)
        self._pair_fd[: self._n_pairs] *= factor
        self._e_sum[: self._n_eslots] *= factor
        self._landmark = ts_max
        self._landmark_moved = True

    def _pair_slots(self, keys: np.ndarray) -> np.ndarray:
        """Slots of the pairs ``src << 32 | dst``, creating new ones (ingest lock held)."""
        slots = np.empty(len(keys), np.int32)
        first_new = self._n_pairs
        position = 0
        while True:
            position = self._pair_index.get_or_insert(keys, self._pair_key, slots, position)
            if position == len(keys):
                break
            # The key store is full: double it (a bulk load trims it afterwards).
            need = len(self._pair_index) + min(
                len(keys) - position, max(2 * len(self._pair_key), 1024)
            )
            self._pair_key = grown(self._pair_key, need)
        n_pairs = len(self._pair_index)
        if n_pairs > first_new:
            self._pair_key = grown(self._pair_key, n_pairs)
            self._pair_fd = grown(self._pair_fd, len(self._pair_key), 0.0)
            self._pair_rev = grown(self._pair_rev, len(self._pair_key), -1)
            self._pair_p = grown(self._pair_p, len(self._pair_key), 0.0)
            self._pair_eslot = grown(self._pair_eslot, len(self._pair_key), -1)
            _core.link_reverse(self._pair_index, self._pair_key, first_new, n_pairs, self._pair_rev)
            self._n_pairs = n_pairs
        return slots

    def _trim_pair_arrays(self) -> None:
        """Give back the growth headroom of the per-pair arrays after a bulk load
        (they grow by a quarter at a time; at millions of pairs that is megabytes)."""
        keep = self._n_pairs + self._n_pairs // 32 + 1024
        if len(self._pair_key) <= keep:
            return
        self._pair_key = self._pair_key[:keep].copy()
        self._pair_fd = self._pair_fd[:keep].copy()
        self._pair_rev = self._pair_rev[:keep].copy()
        self._pair_p = self._pair_p[:keep].copy()
        self._pair_eslot = self._pair_eslot[:keep].copy()

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
        """Add interactions between ``dense[actor[i]]`` and ``dense[target[i]]``, each
        counting ``weight[i]`` times (once when None); ``compaction`` says which are
        compacted sums (and what time their events reach)."""
        if len(actor) == 0:
            return
        if self._landmark is None:
            self._landmark = float(ts.min())
        self._note_time(float(ts.max()))
        reach = ts if compaction is None else compaction.event_times(np.asarray(ts))
        self._latest_interaction = max(self._latest_interaction, float(np.max(reach)))
        keys = np.empty(len(actor), np.uint64)
        _core.pack_pair_keys(
            np.ascontiguousarray(dense, np.int64),
            np.ascontiguousarray(actor, np.int64),
            np.ascontiguousarray(target, np.int64),
            keys,
        )
        slots = self._pair_slots(keys)
        _core.accumulate(
            slots,
            channel,
            np.ascontiguousarray(ts),
            np.empty(0) if weight is None else np.ascontiguousarray(weight, np.float64),
            self._kind_weights,
            self._landmark,
            self.params.half_life_seconds,
            self._pair_fd,
        )
        _core.mark_dirty(slots, self._pair_key, self._pair_rev, self._row_dirty, self._target_dirty)

    def _apply_endorsements(
        self,
        src: np.ndarray,
        dst: np.ndarray,
        topic: np.ndarray,
        ts: np.ndarray,
        retracted: np.ndarray,
        sequence: int,
    ) -> None:
        """Apply endorsement events: per (endorser, endorsee, topic) the latest event
        by time wins, a retraction beating an endorsement at the same second."""
        if self._landmark is None:
            self._landmark = float(ts.min())
        self._note_time(float(ts.max()))
        self._append_trail(src, dst, topic, ts, retracted, sequence)
        slots = self._pair_slots((src.astype(np.uint64) << np.uint64(32)) | dst.astype(np.uint64))
        keys = (slots.astype(np.uint64) << np.uint64(32)) | topic.astype(np.uint64)
        recs = np.empty(len(keys), np.int32)
        first_new = self._n_rec
        position = 0
        while True:
            position = self._rec_index.get_or_insert(keys, self._rec_key, recs, position)
            if position == len(keys):
                break
            self._rec_key = grown(self._rec_key, len(self._rec_index) + len(keys) - position)
        n_rec = len(self._rec_index)
        if n_rec > first_new:
            cap = len(self._rec_key)
            self._rec_pair = grown(self._rec_pair, cap)
            self._rec_topic = grown(self._rec_topic, cap)
            self._rec_ts = grown(self._rec_ts, cap, -np.inf)
            self._rec_state = grown(self._rec_state, cap)
            self._rec_next = grown(self._rec_next, cap, -1)
            fresh = slice(first_new, n_rec)
            self._rec_pair[fresh] = (self._rec_key[fresh] >> np.uint64(32)).astype(np.int32)
            self._rec_topic[fresh] = (self._rec_key[fresh] & np.uint64(0xFFFFFFFF)).astype(np.int32)
            self._n_rec = n_rec
            self._link_records(np.arange(first_new, n_rec, dtype=np.int32))
        # Latest (ts, retracted) per record wins; sort so the winner comes last.
        order = np.lexsort((retracted, ts, recs))
        last = np.ones(len(order), bool)
        last[:-1] = recs[order][1:] != recs[order][:-1]
        win = order[last]
        rec_w, ts_w, retract_w = recs[win], ts[win], retracted[win]
        newer = (ts_w > self._rec_ts[rec_w]) | (
            (ts_w == self._rec_ts[rec_w]) & retract_w & (self._rec_state[rec_w] != REC_RETRACTED)
        )
        rec_w, ts_w, retract_w = rec_w[newer], ts_w[newer], retract_w[newer]
        self._rec_ts[rec_w] = ts_w
        self._rec_state[rec_w] = np.where(retract_w, REC_RETRACTED, REC_LIVE)
        touched = np.unique(self._rec_pair[rec_w])
        if touched.size == 0:
            return
        _core.endorsement_sums(
            touched,
            self._pair_eslot,
            self._eslot_head,
            self._rec_next,
            self._rec_ts,
            self._rec_state,
            self.params.endorsement_weight,
            self._landmark,
            self.params.half_life_seconds,
            self._e_sum,
        )
        _core.mark_dirty(
            touched.astype(np.int32),
            self._pair_key,
            self._pair_rev,
            self._row_dirty,
            self._target_dirty,
        )

    def _link_records(self, records: np.ndarray) -> None:
        """Give new records' pairs an endorsement slot and link each record into its
        pair's list (vectorised: records of one pair chain to each other, the last to
        the old head)."""
        pairs = self._rec_pair[records]
        new_pairs = np.unique(pairs[self._pair_eslot[pairs] < 0])
        if new_pairs.size:
            n_eslots = self._n_eslots + new_pairs.size
            self._e_sum = grown(self._e_sum, n_eslots, 0.0)
            self._eslot_head = grown(self._eslot_head, n_eslots, -1)
            self._pair_eslot[new_pairs] = np.arange(self._n_eslots, n_eslots, dtype=np.int32)
            self._n_eslots = n_eslots
        slots = self._pair_eslot[pairs]
        order = np.argsort(slots, kind="stable")
        records, slots = records[order], slots[order]
        same = slots[1:] == slots[:-1]
        following = np.full(len(records), -2, np.int32)
        following[:-1] = np.where(same, records[1:], -2)
        self._rec_next[records] = np.where(following == -2, self._eslot_head[slots], following)
        first = np.ones(len(records), bool)
        first[1:] = ~same
        self._eslot_head[slots[first]] = records[first]

    def _append_trail(self, src, dst, topic, ts, retracted, sequence: int) -> None:  # type: ignore[no-untyped-def]
        n0, n1 = self._n_trail, self._n_trail + len(src)
        for name, values in (
            ("endorser", src),
            ("endorsee", dst),
            ("topic", topic),
            ("ts", ts),
            ("retracted", retracted),
            ("sequence", np.full(len(src), sequence)),
        ):
            column = grown(self._trail[name], n1)
            column[n0:n1] = values
            self._trail[name] = column
        self._n_trail = n1

    def _endorsement_event(
        self,
        endorser_id: str,
        endorsee_id: str,
        topic: str,
        ts: float | None,
        retract: bool,
        request_id: str,
        now: float | None,
    ) -> WriteResult:
        now = time.time() if now is None else now
        requested = ts
        ts = now if ts is None else float(ts)
        violations = [
            v
            for v in (
                check_user_id(endorser_id, "endorser_id"),
                check_user_id(endorsee_id, "endorsee_id"),
            )
            if v
        ]
        if not violations and endorser_id == endorsee_id:
            violations.append(FieldViolation("endorsee_id", "must differ from endorser_id"))
        if not isinstance(topic, str) or len(topic.encode("utf-8")) > MAX_ID_BYTES:
            violations.append(
                FieldViolation("topic", f"must be at most {MAX_ID_BYTES} bytes of UTF-8")
            )
        if not math.isfinite(ts):
            violations.append(FieldViolation("event_time", NOT_FINITE))
        elif ts < 0:
            violations.append(FieldViolation("event_time", "must be a time after 1970"))
        elif ts > now + self.params.max_future_skew_seconds:
            violations.append(
                FieldViolation(
                    "event_time",
                    f"is more than {self.params.max_future_skew_seconds:g} s in the future",
                )
            )
        if violations:
            raise InvalidArgument(violations)
        fingerprint = (
            "retract" if retract else "endorse",
            endorser_id,
            endorsee_id,
            topic,
            requested,
        )
        users = UserIds.of([endorser_id, endorsee_id])

        def make_record(sequence: int) -> WriteRecord:
            """Checks against the state, then the record (ingest lock held)."""
            a = self._users.index.get(endorser_id)
            b = self._users.index.get(endorsee_id)
            t = self._topic_index.get(topic)
            if retract and not self._is_live(a, b, t):
                raise NotFound(
                    f"{endorser_id!r} has no live endorsement of {endorsee_id!r}"
                    f" for topic {topic!r}",
                    "endorsee_id",
                    reason="ENDORSEMENT_NOT_FOUND",
                )
            if not retract:
                self._check_rate(a, endorser_id, ts)
            return WriteRecord(
                sequence,
                "endorsement",
                {"topic": topic, "ts": ts, "retract": retract},
                {},
                users,
                request_id,
                fingerprint,
            )

        return self._write(request_id, fingerprint, make_record)

    def _deciding_events(self, events: np.ndarray) -> set[int]:
        """Of these trail positions (all of each endorsement's events among them),
        those that decide their endorsement's state: the first event whose time and
        kind are the ones its record holds (later equal events changed nothing)."""
        if events.size == 0:
            return set()
        events = np.sort(events)
        trail = self._trail
        records = np.empty(len(events), np.int32)
        pair_keys = (trail["endorser"][events].astype(np.uint64) << np.uint64(32)) | trail[
            "endorsee"
        ][events].astype(np.uint64)
        self._pair_index.lookup(pair_keys, self._pair_key, records)
        rec_keys = (records.astype(np.uint64) << np.uint64(32)) | trail["topic"][events].astype(
            np.uint64
        )
        self._rec_index.lookup(rec_keys, self._rec_key, records)
        known = records >= 0
        events, records = events[known], records[known]
        matches = (trail["ts"][events] == self._rec_ts[records]) & (
            trail["retracted"][events] == (self._rec_state[records] == REC_RETRACTED)
        )
        _, first = np.unique(records[matches], return_index=True)
        return set(events[matches][first].tolist())

    def _is_live(self, a: int | None, b: int | None, t: int | None) -> bool:
        if a is None or b is None or t is None:
            return False
        out = np.empty(1, np.int32)
        self._pair_index.lookup(np.array([(a << 32) | b], np.uint64), self._pair_key, out)
        if out[0] < 0:
            return False
        self._rec_index.lookup(np.array([(int(out[0]) << 32) | t], np.uint64), self._rec_key, out)
        return bool(out[0] >= 0 and self._rec_state[out[0]] == REC_LIVE)

    def _check_rate(self, endorser: int | None, endorser_id: str, ts: float) -> None:
        """The per-endorser limit, over 24 hours of event time around ``ts``."""
        if endorser is None:
            return
        retry = self._endorse_limit.refusal(endorser, ts, self._latest_event)
        if retry is not None:
            raise RateLimited(
                f"{endorser_id!r} has made {self.params.daily_endorsement_limit}"
                " endorsements within 24 hours of this event_time",
                retry_after_seconds=retry,
            )

    def _apply_status(self, u: int, status: AccountStatus) -> None:
        if self._status[u] != status:
            self._status[u] = status
            self._row_dirty[u] = 1
            self._teleport_dirty = True

    # -- graph side (graph lock held; ingest lock too where pair sums are read)

    def _scatter_rows(self, rows: np.ndarray, factor: float) -> None:
        """``r += factor x_a P(a -> .)`` over ``rows``: -d before rows change, +d after,
        which keeps the push invariant exact for the new graph (docs/model.md)."""
        _core.scatter_rows(
            rows,
            self._out_start,
            self._out_len,
            self._out_pair,
            self._pair_key,
            self._pair_p,
            self._x,
            factor,
            self._r,
        )

    def _grow_graph(self, n: int) -> None:
        if n == self._graph_users:
            return
        for name, fill in (
            ("_out_start", 0),
            ("_out_len", 0),
            ("_out_cap", 0),
            ("_in_start", 0),
            ("_in_len", 0),
            ("_in_cap", 0),
            ("_beta", 1.0),
            ("_x", 0.0),
            ("_r", 0.0),
            ("_teleport", 0),
        ):
            setattr(self, name, grown(getattr(self, name), n, fill))
        self._graph_users = n

    def _insert_new_edges(self) -> None:
        """Add pairs created since the last refresh to the out- and in-CSR."""
        first, last = self._graph_pairs, self._n_pairs
        if last == first:
            return
        n = self._graph_users
        keys = self._pair_key[first:last]
        src = (keys >> np.uint64(32)).astype(np.int32)
        dst = (keys & np.uint64(0xFFFFFFFF)).astype(np.int32)
        pairs = np.arange(first, last, dtype=np.int32)
        for rows, side in ((src, "out"), (dst, "in")):
            per_row = np.bincount(rows, minlength=n).astype(np.int64)
            start = getattr(self, f"_{side}_start")
            length = getattr(self, f"_{side}_len")
            cap = getattr(self, f"_{side}_cap")
            while True:
                used = _core.csr_reserve(
                    per_row,
                    start,
                    length,
                    cap,
                    getattr(self, f"_{side}_pair"),
                    getattr(self, f"_{side}_used"),
                )
                if used >= 0:
                    break
                setattr(self, f"_{side}_pair", grown(getattr(self, f"_{side}_pair"), -used))
            setattr(self, f"_{side}_used", used)
            _core.csr_insert(rows, pairs, start, length, getattr(self, f"_{side}_pair"))
            self._compact_if_sparse(side)
        self._graph_pairs = last

    def _compact_if_sparse(self, side: str) -> None:
        """Rewrite the CSR without holes once moved rows left half of it empty."""
        used = getattr(self, f"_{side}_used")
        length = getattr(self, f"_{side}_len")[: self._graph_users]
        live = int(length.sum())
        if used < 1024 or live * 2 > used:
            return
        start = getattr(self, f"_{side}_start")[: self._graph_users]
        new_start = np.zeros_like(start)
        np.cumsum(length[:-1], out=new_start[1:])
        take = np.repeat(start - new_start, length) + np.arange(live)
        setattr(self, f"_{side}_pair", getattr(self, f"_{side}_pair")[take].copy())
        start[:] = new_start
        getattr(self, f"_{side}_cap")[: self._graph_users] = length
        setattr(self, f"_{side}_used", live)

    def _solve(
        self, n: int, teleport: np.ndarray, old_teleport: np.ndarray, full: bool
    ) -> tuple[int, int, int]:
        """Bring ``x`` within tolerance of ``x = p + d P^T x`` (docs/model.md).

        After a few changed rows, residual push touches only what moved. Yet a burst
        can shift credibility everywhere by more than the tolerance, and push work
        grows like 1/tolerance where power steps grow like log(1/tolerance): so the
        push gets a budget of one pass over the edges, and past it the refresh takes
        warm-started parallel power steps. A final push certifies every node.

        Returns (power steps, pushes, edges touched by pushes).
        """
        tol_abs = self.solver.absolute * max(float(teleport.sum()), 1.0)
        queue, in_queue = np.empty(n, np.int32), np.zeros(n, np.uint8)
        x, r = self._x[:n], self._r[:n]
        args = (self._out_start, self._out_len, self._out_pair, self._pair_key, self._pair_p)
        pushes = work = 0
        if not full:
            r += teleport - old_teleport
            budget = int(max(int(self._out_len[:n].sum()), n) * PUSH_BUDGET_PASSES)
            pushes, work, done = _core.ppr_push(
                *args,
                self.params.damping,
                self.solver.relative,
                tol_abs,
                x,
                r,
                queue,
                in_queue,
                budget,
            )
            if done:
                return 0, pushes, work
        steps = self._power_iterate(n, teleport, tol_abs)
        more_pushes, more_work, _ = _core.ppr_push(
            *args, self.params.damping, self.solver.relative, tol_abs, x, r, queue, in_queue
        )
        return steps, pushes + more_pushes, work + more_work

    def _power_iterate(self, n: int, teleport: np.ndarray, tol_abs: float) -> int:
        """Warm-started parallel power iteration for a full refresh; leaves ``x`` and
        its exact residual ``r`` for the push, which enforces the per-node bound.

        A full refresh changes every edge, so most residuals start above tolerance and
        a sweep over all edges on both cores beats pushing node by node. Once fewer
        than ``n / 64`` nodes still move, pushing only those is cheaper.
        """
        pull_start = np.zeros(n + 1, np.int64)
        np.cumsum(self._in_len[:n], out=pull_start[1:])
        m = int(pull_start[-1])
        pull_src = np.empty(m, np.int32)
        pull_w = np.empty(m, np.float64)
        _core.gather_pull(
            pull_start,
            self._in_start,
            self._in_pair,
            self._pair_key,
            self._pair_p,
            pull_src,
            pull_w,
            self.threads,
        )
        x, r = self._x[:n], self._r[:n]
        mass = float(teleport.sum())
        if mass == 0:
            x[:] = 0.0
            r[:] = 0.0
            return 0
        p_norm = teleport / mass
        total = float(x.sum())
        c = x / total if total > 0 else p_norm.copy()
        c_next = np.empty(n)
        flow = 0.0
        steps = 0
        for steps in range(1, MAX_POWER_STEPS + 1):  # noqa: B007
            active, flow = _core.ppr_power_step(
                pull_start,
                pull_src,
                pull_w,
                p_norm,
                self.params.damping,
                c,
                c_next,
                self.solver.relative,
                tol_abs / mass,
                self.threads,
            )
            c, c_next = c_next, c
            if active * 64 <= n:
                break
        # Back to the push's units: l^T x = |p| with l^T c = 1 - flow for sum(c) = 1.
        x[:] = c * (mass / max(1.0 - flow, 1e-300))
        _core.ppr_residual_pull(
            pull_start, pull_src, pull_w, teleport, self.params.damping, x, r, self.threads
        )
        return steps

    def _received(self, n: int, full: bool, beta_changed: np.ndarray, scale: float) -> np.ndarray:
        """The explanation sums, recomputed for the targets whose inputs changed."""
        previous = self._snapshot.received
        received = np.zeros((n, 5))
        if not full:
            received[: len(previous)] = previous
            targets = self._target_dirty[:n].copy()
            for a in np.flatnonzero(beta_changed):
                s = self._out_start[a]
                row = self._out_pair[s : s + self._out_len[a]]
                targets[(self._pair_key[row] & np.uint64(0xFFFFFFFF)).astype(np.int64)] = 1
            target_ids = np.flatnonzero(targets).astype(np.int32)
        else:
            target_ids = np.arange(n, dtype=np.int32)
        self._target_dirty[:n] = 0
        _core.received_sums(
            target_ids,
            self._in_start,
            self._in_len,
            self._in_pair,
            self._pair_key,
            self._pair_fd,
            self._pair_rev,
            self._pair_eslot,
            self._e_sum,
            self._beta,
            scale,
            self._channel_rho,
            received,
            self.threads,
        )
        return received

    def _endorsement_sums(self, pairs: np.ndarray) -> np.ndarray:
        """The forward-decayed endorsement sum of each pair (0 where none)."""
        slot = self._pair_eslot[pairs]
        if self._n_eslots == 0:
            return np.zeros(len(slot))
        return np.where(slot >= 0, self._e_sum[np.maximum(slot, 0)], 0.0)

    def _topic_records(self, scale: float) -> dict[str, np.ndarray]:
        """Each live endorsement's effective weight ``beta_a E_T (E'/E)`` per topic."""
        live = np.flatnonzero(self._rec_state[: self._n_rec] == REC_LIVE)
        pair = self._rec_pair[live]
        keys = self._pair_key[pair]
        src = (keys >> np.uint64(32)).astype(np.int64)
        dst = (keys & np.uint64(0xFFFFFFFF)).astype(np.int64)
        e_pair = self._endorsement_sums(pair) * scale
        rev = self._pair_rev[pair]
        e_rev = np.where(rev >= 0, self._endorsement_sums(np.maximum(rev, 0)) * scale, 0.0)
        discount = np.where(
            e_pair > 0,
            (e_pair - self.params.endorsement_reciprocity * np.minimum(e_pair, e_rev))
            / np.where(e_pair > 0, e_pair, 1.0),
            0.0,
        )
        assert self._landmark is not None
        value = (
            self.params.endorsement_weight
            * np.exp2((self._rec_ts[live] - self._landmark) / self.params.half_life_seconds)
            * scale
        )
        return {
            "topic": self._rec_topic[live].astype(np.int64),
            "src": src,
            "dst": dst,
            "weight": self._beta[src] * value * discount,
        }
