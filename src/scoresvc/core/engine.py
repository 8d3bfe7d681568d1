"""The scoring engine: validated writes in, immutable snapshots out.

The engine sequences writes and orchestrates refreshes over parts that each own their
arrays: the users (``UserTable``), the pairs and their sums (``PairTable``), the
endorsement records, trail and rate windows (``EndorsementBook``), the request ledger
(``RequestLedger``), and on the refresh side the trust graph, the credibility solver
and the published snapshot (``Scorer``). It knows nothing of gRPC or storage.

Concurrency: writes take ``_ingest_lock`` (short: validation happens before it);
``refresh`` takes ``_graph_lock`` for its whole run and ``_ingest_lock`` only while
it reads the pair sums. Readers use ``snapshot`` (an immutable object swapped in
atomically) and never wait, except ``contributions`` (and ``explain``), which read
the graph under ``_graph_lock``.
"""

from __future__ import annotations

import math
import os
import threading
import time
from collections.abc import Callable, Collection, Iterable, Sequence
from typing import Any

import numpy as np

from . import validation
from .change import Standing
from .errors import InvalidArgument
from .events import EventLog
from .ingest import IngestState, log_record
from .ledger import digest_batch
from .model import AccountStatus, ModelParams
from .moderating import ModerationWrites
from .records import EngineState, Journal, WriteRecord
from .results import Contributions, Contributor, EndorsementEvent, Erasure, WriteResult
from .scorer import Scorer, largest_inflows
from .sequencer import Sequencer
from .snapshot import Snapshot
from .solver import SolverSettings
from .topics import normalize_topic
from .users import UserIds

__all__ = ["Engine", "EngineState", "SolverSettings", "WriteRecord", "WriteResult"]

_FIRST = np.zeros(1, np.int64)  # the endorser's position in an endorsement's ids


class Engine(ModerationWrites):
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
        self._graph_lock = threading.Lock()
        # Ingest side (ingest lock).
        self._ingest = IngestState(self.params, self.threads)
        self._writes = Sequencer(self._apply)
        self._ingest_lock = self._writes.lock
        self._requests = self._writes.requests
        # An erasure replaced the ingest state: the next refresh starts the graph and
        # the solver anew (cold). Receipts of erasures, by sequence, until fetched.
        self._rebuilt = False
        self._erasures: dict[int, Erasure] = {}
        # The credibility a restore started from, handed on by checkpoints taken
        # before the first refresh publishes one.
        self._restored_x = np.zeros(0)
        # Refresh side (graph lock).
        self._scorer = Scorer(self.params, self.solver, self.threads, self._empty_snapshot())

    def _empty_snapshot(self) -> Snapshot:
        return Snapshot.empty(
            self._ingest.users.ids, self._ingest.users.index, self._ingest.book.topic_index
        )

    # ------------------------------------------------------------------ reading

    @property
    def snapshot(self) -> Snapshot:
        """The latest published snapshot (never half-built)."""
        return self._scorer.snapshot

    @property
    def events_accepted(self) -> int:
        """Events accepted since this process started."""
        return self._writes.events_accepted

    @property
    def sequence(self) -> int:
        """The sequence number of the last accepted write."""
        return self._writes.sequence

    @property
    def landmark(self) -> float | None:
        """The forward-decay landmark L (moves forward as time does)."""
        return self._ingest.pairs.landmark

    @property
    def snapshot_age_seconds(self) -> float:
        """Wall-clock seconds since the latest snapshot was published."""
        return max(time.time() - self._scorer.published_at, 0.0)

    @property
    def n_users(self) -> int:
        return len(self._ingest.users.ids)

    @property
    def n_pairs(self) -> int:
        return self._ingest.pairs.n

    @property
    def n_seeds(self) -> int:
        """Seed accounts (a suspended one is not a seed): the strongest anchors."""
        with self._ingest_lock:
            return int((self._ingest.status[: self.n_users] == AccountStatus.SEED).sum())

    def has_user(self, user_id: str) -> bool:
        return user_id in self._ingest.users.index

    def explain(self, user_id: str, limit: int) -> tuple[Snapshot, list[Contributor]]:
        """The latest snapshot and the ``limit`` users contributing most to the user's
        credibility, with their shares of it."""
        snap, contributions = self.contributions(user_id, limit)
        return snap, list(contributions.top)

    def contributions(
        self, user_id: str, limit: int, cluster: Collection[str] = ()
    ) -> tuple[Snapshot, Contributions]:
        """The latest snapshot and where the user's credibility came from in it: the
        ``limit`` largest contributors, and the shares from accounts younger than the
        maturity age and from the ``cluster`` (ids) it belongs to, each the sum of
        ``d c_a P(a->u)`` over those in-neighbours ``a`` over ``c_u``. O(in-degree)."""
        with self._graph_lock:
            snap = self._scorer.snapshot
            u = snap.user(user_id)
            if snap.credibility_of(u) <= 0:
                return snap, Contributions()
            pairs, d = self._ingest.pairs, self.params.damping
            top, top_flow = self._scorer.graph.top_in_edges(u, pairs, snap.x, d, max(limit, 0))
            sources, flow = self._scorer.graph.in_flows(u, pairs, snap.x, d)
            with self._ingest_lock:
                seen = self._ingest.first_seen[sources]
        whole = snap.received_x(u)
        young = seen > snap.time - self.params.maturity_age_seconds
        index = snap.user_index
        members = np.fromiter((index.get(c, -1) for c in cluster), np.int64, len(cluster))
        inside = np.isin(sources, members[members >= 0])
        ids = self._ingest.users.ids
        shares = (top_flow / whole).tolist()
        return snap, Contributions(
            top=tuple(Contributor(ids[a], s) for a, s in zip(top.tolist(), shares)),
            from_young_accounts=float(flow[young].sum() / whole),
            from_own_cluster=float(flow[inside].sum() / whole),
        )

    def events_between(
        self, a_id: str, b_id: str, start: float, end: float
    ) -> list[EndorsementEvent]:
        """The endorsements, distrusts and retractions between two users (either way)
        with an event time in ``(start, end]``, oldest first."""
        with self._ingest_lock:
            return self._ingest.events_between(a_id, b_id, start, end)

    def moderation_between(
        self, user_id: str, others: Iterable[str], start: float, end: float
    ) -> tuple[dict[str, list[int]], list[int]]:
        """The moderation a change of ``user_id`` over ``(start, end]`` went through:
        per user of ``others``, the invalidations and restores covering the two; and
        the SuspendCluster actions naming ``user_id``."""
        with self._ingest_lock:
            log = self._ingest.moderation
            return log.covering(user_id, others, start, end), log.suspensions(user_id, start, end)

    def standing(self, user_id: str) -> Standing:
        """The user's numbers in the latest snapshot as a change reads them
        (``change.Standing``), with every in-neighbour's flow: O(in-degree)."""
        with self._graph_lock:
            return self._scorer.standing(user_id, self._ingest.pairs)

    def top_inflows(self, limit: int) -> tuple[Snapshot, np.ndarray, np.ndarray]:
        """The latest snapshot and, per user, its ``limit`` largest in-flows ``d I_a
        P(a->u)`` in influence units, largest first: sources (``-1`` past the last)
        and flows, shape (users, limit). For the score history: O(pairs log pairs),
        the graph lock held only to copy the transitions."""
        with self._graph_lock:
            snap, src, dst, p = self._scorer.transitions(self._ingest.pairs)
        return snap, *largest_inflows(snap, src, dst, p, limit, self.params.damping)

    def edges(self) -> dict[str, np.ndarray]:
        """The trust graph of the latest refresh, one entry per pair, for tests and
        tooling: decayed sums at the refresh's time, ``P(a->b)`` and ``beta`` per user.
        Pair sums include any write accepted since that refresh."""
        with self._graph_lock, self._ingest_lock:
            return self._scorer.graph.table(self._ingest.pairs)

    def evidence_arrays(self) -> tuple[Snapshot, dict[str, np.ndarray]]:
        """The latest snapshot with what the suspect report reads beside it, copied as
        of one refresh: its graph (``edges``: pairs among the snapshot's users, sums
        decayed to its time), each user's first-seen time and the endorsement trail."""
        with self._graph_lock, self._ingest_lock:
            snap = self._scorer.snapshot
            arrays = self._scorer.graph.table(self._ingest.pairs)
            arrays["first_seen"] = self._ingest.first_seen[: snap.n_users].copy()
            trail = self._ingest.book.trail()
        # The trail runs ahead of the snapshot: keep what its users made; what
        # moderation set aside is no evidence.
        known = (trail["endorser"] < snap.n_users) & (trail["endorsee"] < snap.n_users)
        counting = known & (trail["invalidated"] == 0)
        arrays.update({f"trail_{k}": v[counting] for k, v in trail.items()})
        return snap, arrays

    def memory_bytes(self) -> dict[str, int]:
        """Resident bytes by part (arrays at their capacity, and the latest snapshot)."""
        snapshot = self._scorer.snapshot
        # x and the teleport vector are shared between the solver and the snapshot.
        solver = self._scorer.solver
        shared = sum(
            mine.nbytes
            for mine, theirs in ((snapshot.x, solver.x), (snapshot.teleport, solver.teleport))
            if np.shares_memory(mine, theirs)
        )
        ingest = self._ingest.nbytes
        return {
            "pairs": ingest["pairs"],
            "graph": self._scorer.graph.edge_nbytes,
            "users": ingest["users"] + self._scorer.graph.node_nbytes + solver.nbytes,
            "endorsements": ingest["endorsements"],
            "snapshot": snapshot.nbytes - shared,
        }

    def list_endorsements(
        self, user_id: str, given: bool, offset: int, limit: int
    ) -> tuple[list[EndorsementEvent], int | None]:
        """A page of the audit trail given or received by a user, newest first.

        Returns the entries and the offset of the next page (None at the end). Each
        entry says whether it ``decides_current_state`` of its endorsement.
        """
        with self._ingest_lock:
            return self._ingest.trail_page(user_id, given, offset, limit)

    # ------------------------------------------------------------------ writing

    def record_interactions(
        self,
        rows: Iterable[Sequence[Any]],
        *,
        request_id: str = "",
        now: float | None = None,
    ) -> WriteResult:
        """Add interactions given as rows ``(actor_id, target_id, kind, ts)`` or
        ``(actor_id, target_id, kind, ts, weight)``.

        ``ts`` may be None (server time), ``weight`` None or absent (1). A batch with
        any bad row is rejected whole.
        """
        rows = list(rows)
        weighted = any(len(r) > 4 and r[4] is not None for r in rows)
        return self.record_interaction_lists(
            [r[0] for r in rows],
            [r[1] for r in rows],
            [r[2] for r in rows],
            [math.nan if r[3] is None else r[3] for r in rows],
            [1.0 if len(r) < 5 or r[4] is None else r[4] for r in rows] if weighted else None,
            request_id=request_id,
            now=now,
        )

    def record_interaction_lists(
        self,
        actor_ids: Sequence[str],
        target_ids: Sequence[str],
        kinds: Sequence[int],
        times: Sequence[float] | np.ndarray,
        weights: Sequence[float] | np.ndarray | None = None,
        *,
        request_id: str = "",
        now: float | None = None,
    ) -> WriteResult:
        """The row form as parallel lists (what a servicer builds fastest); a time of
        NaN means server time, ``weights`` None that every row weighs 1. Ids are
        checked once per distinct id, not per row."""
        users, actor, target, kind, given, weight = validation.encode_lists(
            actor_ids, target_ids, kinds, times, weights
        )
        return self.record_interaction_rows(
            users, actor, target, kind, given, weight, request_id=request_id, now=now
        )

    def record_interaction_rows(
        self,
        users: Sequence[str] | UserIds,
        actor: np.ndarray,
        target: np.ndarray,
        kind: np.ndarray,
        given: np.ndarray,
        weight: np.ndarray | None = None,
        *,
        request_id: str = "",
        now: float | None = None,
    ) -> WriteResult:
        """Rows already dictionary-encoded (``users`` distinct, in order of first use);
        unlike the columnar form, a bad id is reported on each row that uses it, as
        ``actor_id`` or ``target_id``. A time of NaN means server time; ``weight``
        None, that every row weighs 1."""
        now = time.time() if now is None else now
        users = users if isinstance(users, UserIds) else UserIds.of(users)
        ts = np.where(np.isnan(given), now, given)
        skew = self.params.max_future_skew_seconds
        validation.check_rows(users, actor, target, kind, ts, now, skew, weight)
        return self._record_columns(
            users, actor, target, kind, ts, given, weight, request_id, now, users_checked=True
        )

    def record_interaction_columns(
        self,
        user_ids: Sequence[str] | UserIds,
        actor_index: np.ndarray,
        target_index: np.ndarray,
        kind: np.ndarray,
        ts: np.ndarray | None,
        weight: np.ndarray | None = None,
        *,
        request_id: str = "",
        now: float | None = None,
    ) -> WriteResult:
        """Add interactions as columns: indexes into ``user_ids``, kinds (1-4), unix
        seconds (None: all at server time), weights (None: all 1). The batch gets one
        sequence number; any bad row rejects it whole."""
        now = time.time() if now is None else now
        users = user_ids if isinstance(user_ids, UserIds) else UserIds.of(user_ids)
        given = None if ts is None else np.asarray(ts, np.float64)
        resolved = np.full(len(actor_index), now) if given is None else given
        return self._record_columns(
            users, actor_index, target_index, kind, resolved, given, weight, request_id, now
        )

    def _record_columns(
        self,
        users: UserIds,
        actor_index: np.ndarray,
        target_index: np.ndarray,
        kind: np.ndarray,
        ts: np.ndarray,
        given_ts: np.ndarray | None,
        weight: np.ndarray | None,
        request_id: str,
        now: float,
        users_checked: bool = False,
    ) -> WriteResult:
        """``ts`` resolved to server time where the caller gave none; ``given_ts`` is
        what the caller sent, so a retry with the same request id matches. ``weight``
        None (or all 1: the same batch) is one per row."""
        actor_index = np.asarray(actor_index, np.int64)
        target_index = np.asarray(target_index, np.int64)
        kind = np.asarray(kind)
        if weight is not None:
            weight = np.asarray(weight, np.float64)
            validation.check_lengths(actor_index, weight)
            if np.all(weight == 1.0):
                weight = None
        validation.check_lengths(actor_index, target_index, kind, ts)
        fingerprint: tuple[Any, ...] = ()
        if request_id:
            sent = np.empty(0) if given_ts is None else given_ts
            # kinds as int64 whatever the route (columns carry bytes): one batch, one print
            kinds = kind.astype(np.int64, copy=False)
            fingerprint = (
                "interactions",
                digest_batch(users, actor_index, target_index, kinds, sent),
            )
            if weight is not None:
                # Its own element: an unweighted batch keeps the fingerprint it had.
                fingerprint += (digest_batch(UserIds.of([]), weight),)
            with self._ingest_lock:
                done = self._requests.answer(request_id, fingerprint)
            if done:
                return done()
        validation.check_columns(
            users,
            actor_index,
            target_index,
            kind,
            ts,
            now,
            self.params.max_future_skew_seconds,
            users_checked,
            weight,
        )
        arrays: dict[str, np.ndarray] = {
            "actor": actor_index.astype(np.int64),
            "target": target_index.astype(np.int64),
            "kind": kind.astype(np.int8),
            "ts": ts,
        }
        if weight is not None:
            arrays["weight"] = weight
        return self._write(
            request_id,
            fingerprint,
            lambda sequence: WriteRecord(
                sequence, "interactions", {"now": now}, arrays, users, request_id, fingerprint
            ),
        )

    def load_events(self, log: EventLog) -> WriteResult:
        """Bulk-load an ``EventLog`` (trusted input: an import, a replay, a benchmark).

        Interactions and endorsement events are applied without the per-endorser
        rate limit; statuses other than NORMAL are applied too. One sequence number.
        Invalid user ids are refused (``InvalidArgument``), with nothing applied.
        """

        def record(sequence: int) -> WriteRecord:
            made = log_record(sequence, log)
            validation.check_user_ids(made.users)
            return made

        return self._write("", (), record)

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

    def distrust(
        self,
        distruster_id: str,
        distrusted_id: str,
        topic: str = "",
        ts: float | None = None,
        *,
        request_id: str = "",
        now: float | None = None,
    ) -> WriteResult:
        """Say that ``distruster_id`` distrusts ``distrusted_id`` (or refresh it): it
        weighs as much as the distruster's credibility (docs/model.md, step 8)."""
        return self._distrust_event(distruster_id, distrusted_id, topic, ts, False, request_id, now)

    def retract_distrust(
        self,
        distruster_id: str,
        distrusted_id: str,
        topic: str = "",
        ts: float | None = None,
        *,
        request_id: str = "",
        now: float | None = None,
    ) -> WriteResult:
        """Retract a live distrust (``NotFound`` when there is none)."""
        return self._distrust_event(distruster_id, distrusted_id, topic, ts, True, request_id, now)

    def _distrust_event(
        self,
        distruster_id: str,
        distrusted_id: str,
        topic: str,
        ts: float | None,
        retract: bool,
        request_id: str,
        now: float | None,
    ) -> WriteResult:
        def check(topic: str, ts: float) -> None:
            if retract:
                self._ingest.check_distrust_retraction(distruster_id, distrusted_id, topic)

        action = "retract distrust" if retract else "distrust"
        fields = ("distruster_id", "distrusted_id")
        users = (distruster_id, distrusted_id)
        return self._vouch(
            "distrust", action, fields, users, topic, ts, retract, request_id, now, check
        )

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
        def check(topic: str, ts: float) -> None:
            in_flight = () if retract else self._endorsed_in_flight(endorser_id)
            self._ingest.check_endorsement(endorser_id, endorsee_id, topic, retract, ts, in_flight)

        action = "retract" if retract else "endorse"
        fields = ("endorser_id", "endorsee_id")
        users = (endorser_id, endorsee_id)
        return self._vouch(
            "endorsement", action, fields, users, topic, ts, retract, request_id, now, check
        )

    def _endorsed_in_flight(self, endorser_id: str) -> list[float]:
        """Event times of ``endorser_id``'s endorsements handed to the journal and not
        yet applied (ingest lock held): the daily limit counts them, or writes in flight
        together could pass it."""
        return [
            float(r.fields["ts"])
            for r in self._writes.in_flight.values()
            if r.kind == "endorsement"
            and not r.fields["retract"]
            and r.users.decoded(_FIRST)[0] == endorser_id
        ]

    def _vouch(
        self,
        kind: str,
        action: str,
        fields: tuple[str, str],
        users: tuple[str, str],
        topic: str,
        ts: float | None,
        retract: bool,
        request_id: str,
        now: float | None,
        check: Callable[[str, float], None],
    ) -> WriteResult:
        """One endorsement or distrust event (or its retraction) by ``users[0]`` about
        ``users[1]``: validated (``fields`` name the users as the request does), then
        ``check``-ed against the state and recorded as a write of ``kind``."""
        now = time.time() if now is None else now
        if isinstance(topic, str):  # anything else, validation names
            topic = normalize_topic(topic)
        requested = ts
        ts = now if ts is None else float(ts)
        skew = self.params.max_future_skew_seconds
        validation.check_endorsement(*users, topic, ts, now, skew, fields)
        fingerprint = (action, *users, topic, requested)
        ids = UserIds.of(list(users))

        def make_record(sequence: int) -> WriteRecord:
            """Checks against the state, then the record (ingest lock held)."""
            check(topic, ts)
            record = {"topic": topic, "ts": ts, "retract": retract, "now": now}
            return WriteRecord(sequence, kind, record, {}, ids, request_id, fingerprint)

        return self._write(request_id, fingerprint, make_record)

    def set_status(
        self,
        user_id: str,
        status: AccountStatus,
        *,
        request_id: str = "",
        now: float | None = None,
    ) -> WriteResult:
        """Make an account NORMAL, SEED or SUSPENDED (a new id is registered, first
        seen ``now``)."""
        now = time.time() if now is None else now
        bad = validation.check_user_id(user_id, "user_id")
        if bad:
            raise InvalidArgument([bad])
        status = AccountStatus(status)
        fingerprint = ("status", user_id, int(status))
        users = UserIds.of([user_id])
        return self._write(
            request_id,
            fingerprint,
            lambda sequence: WriteRecord(
                sequence,
                "status",
                {"status": int(status), "now": now},
                {},
                users,
                request_id,
                fingerprint,
            ),
        )

    # ------------------------------------------------------------------ sequencing

    def attach_journal(self, journal: Journal | None) -> None:
        """Have ``journal`` persist every write before it is applied (write-ahead).

        ``journal(record)`` queues the record and returns a wait: the journal commits
        records in sequence order (in groups), then applies each with ``replay`` or,
        when it could not store it, drops it with ``discard``; the wait returns
        ``replay``'s result or raises the storage error. Writers wait without the
        ingest lock, so concurrent writes share a commit.
        """
        self._writes.journal = journal

    def replay(self, record: WriteRecord) -> WriteResult:
        """Apply a journaled write: at start-up, and as the journal commits each one."""
        return self._writes.replay(record)

    def discard(self, record: WriteRecord) -> None:
        """Forget a queued write the journal could not store (it is never applied)."""
        self._writes.discard(record)

    def _write(
        self,
        request_id: str,
        fingerprint: tuple[Any, ...],
        make_record: Callable[[int], WriteRecord],
    ) -> WriteResult:
        return self._writes.write(request_id, fingerprint, make_record)

    def _apply(self, record: WriteRecord) -> tuple[int, bool | None]:
        """Apply a numbered record to the state (ingest lock held)."""
        if record.kind == "erase":
            return self._apply_erasure(record), None
        return self._ingest.apply(record)

    # ------------------------------------------------------------------ checkpoints

    def state(self) -> EngineState:
        """A consistent copy of everything the writes have built, as of one sequence
        number (for checkpoints). The refresh-side graph is not in it: it is rebuilt
        from the pair sums by the first refresh."""
        with self._ingest_lock:
            arrays = self._ingest.arrays()
            arrays.update(self._requests.arrays())
            # The last published credibility (never written again, so no lock is
            # needed to read it), or before the first the one restored: a warm start
            # for the first refresh after a restore. After an erasure, none: the next
            # refresh is a cold one.
            # Read before the snapshot: the first publish replaces the snapshot, then
            # drops the restored one, so one of the two is always seen.
            restored = self._restored_x
            published = self._scorer.snapshot
            warm = published.x if published.n_users else restored
            arrays["warm_x"] = np.zeros(0) if self._rebuilt else warm.copy()
            return EngineState(self._writes.sequence, arrays, {})

    def restore(self, state: EngineState, spare_pairs: int = 0) -> None:
        """Load ``state`` (from ``state()``) into this engine, which must be new; the
        writes after it can then be replayed. ``spare_pairs``: room for that many new
        pairs (the events about to be replayed), so the replay never copies the pair
        arrays to grow them.

        Kind and endorsement weights may differ from the state's (the sums scale
        exactly); a different half-life cannot be applied to decayed sums.
        """
        if self._writes.assigned or len(self._ingest.users):
            raise ValueError("restore needs an engine that has seen no writes")
        a = state.arrays
        self._ingest = IngestState.from_arrays(a, self.params, spare_pairs, self.threads)
        n = len(self._ingest.users)
        self._requests.restore(a)
        # A copy: the state's arrays may be views of a checkpoint file, which a view
        # kept here would keep open (and on disk) after it is pruned or erased.
        self._restored_x = np.array(a.get("warm_x", np.zeros(0)))
        self._scorer.solver.warm_start(self._restored_x, n)
        self._writes.restart_at(state.sequence)
        self._scorer.snapshot = self._empty_snapshot()

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
            return self._ingest.compacted_log(at, time.time())

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
        with self._graph_lock:
            return self._refresh(now)

    def _refresh(self, now: float) -> Snapshot:
        """``refresh`` with the graph lock held."""
        started = time.perf_counter()
        scorer = self._scorer
        scorer.solver.detach()
        with self._ingest_lock:
            rebuilt, self._rebuilt = self._rebuilt, False
            if rebuilt:  # an erasure replaced the ingest state: start the graph anew
                scorer.restart()
            update = scorer.update_rows(self._ingest, now, self._writes.sequence)
            # Held through the refresh: an erasure replayed meanwhile replaces it.
            ingest = self._ingest
        previous = self._empty_snapshot() if rebuilt else scorer.snapshot
        published = scorer.publish(update, ingest, now, previous, started)
        self._restored_x = np.zeros(0)  # checkpoints hand on the published one now
        return published
