"""The scoring engine: validated writes in, immutable snapshots out.

The engine sequences writes and orchestrates refreshes over parts that each own their
arrays: the users (``UserTable``), the pairs and their sums (``PairTable``), the
endorsement records, trail and rate windows (``EndorsementBook``), the request ledger
(``RequestLedger``), the trust graph (``TrustGraph``) and the credibility solver
(``Solver``). It knows nothing of gRPC or storage.

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
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import erasure, validation
from .change import Standing
from .errors import InvalidArgument, NotFound
from .events import EventLog
from .graph import TrustGraph
from .ingest import IngestState, log_record
from .ledger import RequestLedger, digest_batch
from .model import AccountStatus, ModelParams
from .moderation import ModerationAction, ModerationKind
from .records import EngineState, Journal, WriteRecord
from .results import Contributions, Contributor, EndorsementEvent, Erasure, WriteResult
from .scoring import Distrust, established, teleport_vector
from .snapshot import Snapshot, build_snapshot
from .solver import Solver, SolverSettings
from .topics import normalize_topic
from .users import UserIds

__all__ = ["Engine", "EngineState", "SolverSettings", "WriteRecord", "WriteResult"]


@dataclass(frozen=True)
class _RowUpdate:
    """What a refresh read and recomputed under the ingest lock."""

    sequence: int
    n: int
    status: np.ndarray
    teleport: np.ndarray
    full: bool
    rows: int
    received: np.ndarray
    topic_records: dict[str, np.ndarray]
    distrust: Distrust
    rebuilt: bool  # the graph was started anew (an erasure): no previous ranking


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
        self._ingest_lock = threading.Lock()
        self._graph_lock = threading.Lock()
        # Ingest side (ingest lock).
        self._ingest = IngestState(self.params, self.threads)
        self._requests = RequestLedger()
        self.events_accepted = 0  # since this process started
        self._sequence = 0  # of the last write applied
        self._assigned = 0  # of the last write given a number (applied or journaling)
        self._journal: Journal | None = None
        # An erasure replaced the ingest state: the next refresh starts the graph and
        # the solver anew (cold). Receipts of erasures, by sequence, until fetched.
        self._rebuilt = False
        self._erasures: dict[int, Erasure] = {}
        # Refresh side (graph lock).
        self._graph = TrustGraph()
        self._credibility = Solver(self.solver, self.params.damping, self.threads)
        self._published_at = time.time()
        self._snapshot = self._empty_snapshot()

    def _empty_snapshot(self) -> Snapshot:
        return Snapshot.empty(
            self._ingest.users.ids, self._ingest.users.index, self._ingest.book.topic_index
        )

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
        return self._ingest.pairs.landmark

    @property
    def snapshot_age_seconds(self) -> float:
        """Wall-clock seconds since the latest snapshot was published."""
        return max(time.time() - self._published_at, 0.0)

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
            snap = self._snapshot
            u = snap.user(user_id)
            if snap.credibility_of(u) <= 0:
                return snap, Contributions()
            pairs, d = self._ingest.pairs, self.params.damping
            top, top_flow = self._graph.top_in_edges(u, pairs, snap.x, d, max(limit, 0))
            sources, flow = self._graph.in_flows(u, pairs, snap.x, d)
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
            snap = self._snapshot
            u = snap.user(user_id)
            sources, flow = self._graph.in_flows(u, self._ingest.pairs, snap.x, self.params.damping)
        unit = snap.members / snap.mass if snap.mass > 0 else 0.0
        ids, influence = snap.user_ids, snap.influence_of
        contributors = {
            ids[a]: (f * unit, influence(a))
            for a, f in zip(sources.tolist(), flow.tolist())
            if f > 0
        }
        kept = snap.distrust_of(u)[1]
        return Standing(
            time=snap.time,
            status=AccountStatus(int(snap.status[u])),
            influence=snap.influence_of(u),
            influence_max=snap.influence_max,
            kept=kept,
            teleport=float(snap.teleport[u]) * unit,
            contributors=contributors,
            complete=True,
            influence_of=lambda user: snap.influence_of(snap.user(user)),
        )

    def top_inflows(self, limit: int) -> tuple[Snapshot, np.ndarray, np.ndarray]:
        """The latest snapshot and, per user, its ``limit`` largest in-flows ``d I_a
        P(a->u)`` in influence units, largest first: sources (``-1`` past the last)
        and flows, shape (users, limit). For the score history: O(pairs log pairs)."""
        with self._graph_lock:
            snap = self._snapshot
            m, n = self._graph.n_pairs, snap.n_users
            pairs = self._ingest.pairs
            src, dst = pairs.src_dst(slice(0, m))
            p = pairs.p[:m].copy()
        keep = (src < n) & (dst < n) & (p > 0)
        src, dst = src[keep], dst[keep]
        flow = self.params.damping * snap.influence[src] * p[keep]
        order = np.lexsort((-flow, dst))
        src, dst, flow = src[order], dst[order], flow[order]
        starts = np.searchsorted(dst, np.arange(n))
        rank = np.arange(len(dst)) - starts[dst]
        take = rank < limit
        sources = np.full((n, limit), -1, np.int64)
        flows = np.zeros((n, limit))
        sources[dst[take], rank[take]] = src[take]
        flows[dst[take], rank[take]] = flow[take]
        return snap, sources, flows

    def edges(self) -> dict[str, np.ndarray]:
        """The trust graph of the latest refresh, one entry per pair, for tests and
        tooling: decayed sums at the refresh's time, ``P(a->b)`` and ``beta`` per user.
        Pair sums include any write accepted since that refresh."""
        with self._graph_lock, self._ingest_lock:
            return self._graph.table(self._ingest.pairs)

    def evidence_arrays(self) -> tuple[Snapshot, dict[str, np.ndarray]]:
        """The latest snapshot with what the suspect report reads beside it, copied as
        of one refresh: its graph (``edges``: pairs among the snapshot's users, sums
        decayed to its time), each user's first-seen time and the endorsement trail."""
        with self._graph_lock, self._ingest_lock:
            snap = self._snapshot
            arrays = self._graph.table(self._ingest.pairs)
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
        snapshot = self._snapshot
        # x is shared between the solver and the published snapshot.
        shared = np.shares_memory(snapshot.x, self._credibility.x)
        ingest = self._ingest.nbytes
        return {
            "pairs": ingest["pairs"],
            "graph": self._graph.edge_nbytes,
            "users": ingest["users"] + self._graph.node_nbytes + self._credibility.nbytes,
            "endorsements": ingest["endorsements"],
            "snapshot": snapshot.nbytes - (snapshot.x.nbytes if shared else 0),
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
        """
        return self._write("", (), lambda sequence: log_record(sequence, log))

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
            self._ingest.check_endorsement(endorser_id, endorsee_id, topic, retract, ts)

        action = "retract" if retract else "endorse"
        fields = ("endorser_id", "endorsee_id")
        users = (endorser_id, endorsee_id)
        return self._vouch(
            "endorsement", action, fields, users, topic, ts, retract, request_id, now, check
        )

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

    # ------------------------------------------------------------------ moderation

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

    # ------------------------------------------------------------------ sequencing

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
            with self._ingest_lock:
                self._requests.forget(record.request_id)

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
            wait = self._requests.answer(request_id, fingerprint) if request_id else None
            if wait is None:
                record = make_record(self._assigned + 1)
                if self._journal is None:
                    return self._apply(record)
                wait = self._journal(record)
                self._assigned = record.sequence
                if request_id:
                    self._requests.queue(request_id, fingerprint, wait)
        return wait()

    def _apply(self, record: WriteRecord) -> WriteResult:
        """Apply a numbered record (ingest lock held)."""
        if record.kind == "erase":
            accepted, live = self._apply_erasure(record), None
        else:
            accepted, live = self._ingest.apply(record)
        self._sequence = record.sequence
        self._assigned = max(self._assigned, record.sequence)
        self.events_accepted += accepted
        result = WriteResult(record.sequence, accepted, live)
        if record.request_id:
            self._requests.remember(record.request_id, record.fingerprint, result)
        return result

    # ------------------------------------------------------------------ checkpoints

    def state(self) -> EngineState:
        """A consistent copy of everything the writes have built, as of one sequence
        number (for checkpoints). The refresh-side graph is not in it: it is rebuilt
        from the pair sums by the first refresh."""
        with self._ingest_lock:
            arrays = self._ingest.arrays()
            arrays.update(self._requests.arrays())
            # The last published credibility: a warm start for the first refresh after
            # a restore (never written again, so no lock is needed to read it).
            # After an erasure, none: the next refresh is a cold one.
            arrays["warm_x"] = np.zeros(0) if self._rebuilt else self._snapshot.x.copy()
            return EngineState(self._sequence, arrays, {})

    def restore(self, state: EngineState, spare_pairs: int = 0) -> None:
        """Load ``state`` (from ``state()``) into this engine, which must be new; the
        writes after it can then be replayed. ``spare_pairs``: room for that many new
        pairs (the events about to be replayed), so the replay never copies the pair
        arrays to grow them.

        Kind and endorsement weights may differ from the state's (the sums scale
        exactly); a different half-life cannot be applied to decayed sums.
        """
        if self._assigned or len(self._ingest.users):
            raise ValueError("restore needs an engine that has seen no writes")
        a = state.arrays
        self._ingest = IngestState.from_arrays(a, self.params, spare_pairs, self.threads)
        n = len(self._ingest.users)
        self._requests.restore(a)
        self._credibility.warm_start(a.get("warm_x", np.zeros(0)), n)
        self._sequence = self._assigned = state.sequence
        self._snapshot = self._empty_snapshot()

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
        self._credibility.detach()
        with self._ingest_lock:
            update = self._update_rows(now)
            # Held through the refresh: an erasure replayed meanwhile replaces it.
            ingest = self._ingest
        self._graph.time = now
        sweeps, pushes, work = self._credibility.solve(
            self._graph, ingest.pairs, update.n, update.teleport, update.full
        )
        x, distrust, second = self._discount(update, ingest)
        snapshot = build_snapshot(
            previous=self._empty_snapshot() if update.rebuilt else self._snapshot,
            time=now,
            sequence=update.sequence,
            user_ids=ingest.users.ids,
            user_index=ingest.users.index,
            topics=ingest.book.topic_index,
            status=update.status,
            x=x,
            teleport=update.teleport,
            received=update.received,
            topic_records=update.topic_records,
            topic_min_endorsers=self.params.topic_min_endorsers,
            distrust=distrust,
            maturity_age_seconds=self.params.maturity_age_seconds,
            stats={
                "full": update.full,
                "rows": update.rows,
                "sweeps": sweeps,
                "pushes": pushes,
                "edge_work": work,
                "distrust_sweeps": second[0],
                "distrust_pushes": second[1],
                "distrust_edge_work": second[2],
                "edges": self._graph.edges(update.n),
                "seconds": time.perf_counter() - started,
            },
        )
        self._snapshot = snapshot
        self._published_at = time.time()
        return snapshot

    def _discount(
        self, update: _RowUpdate, ingest: IngestState
    ) -> tuple[np.ndarray, dict[str, np.ndarray], tuple[int, int, int]]:
        """Step 8: the share of trust each user keeps after credible users' distrust,
        the credibility solved again with what the distrusted pass on discounted, and
        each user's own credibility discounted. Returns the discounted ``x``, the
        distrusted users with their distrust received and share kept, and the second
        solve's (power steps, pushes, edges touched)."""
        n, solver = update.n, self._credibility
        credible = np.where(update.status == AccountStatus.SUSPENDED, 0.0, solver.x[:n])
        kept = update.distrust.kept(credible, self.params.distrust_strength)
        x, work = solver.discounted(self._graph, ingest.pairs, n, kept)
        received = update.distrust.received(n)
        users = np.flatnonzero(received > 0)
        view = {"users": users, "received": received[users], "kept": kept[users]}
        return (x * kept if (kept < 1.0).any() else x), view, work

    def _update_rows(self, now: float) -> _RowUpdate:
        """Bring the graph's rows up to the pair sums at ``now`` and read what the
        snapshot needs of the ingest side (both locks held)."""
        rebuilt = self._rebuilt
        if rebuilt:
            self._graph = TrustGraph()
            self._credibility = Solver(self.solver, self.params.damping, self.threads)
            self._rebuilt = False
        p, ingest, graph, solver = self.params, self._ingest, self._graph, self._credibility
        pairs, n = ingest.pairs, len(ingest.users)
        pairs.keep_landmark_near(now)
        graph.grow(n)
        solver.grow(n)
        status = ingest.status[:n].copy()
        teleport = teleport_vector(status, ingest.first_seen[:n], now, p)
        # A user lost its teleport share (seeds changed, or the first member matured):
        # a warm start would leave traces of trust at users nothing anchored reaches
        # any more, which the model wants at exactly 0. Rare, so solve from scratch.
        lost = (solver.teleport[:n] > 0) & (teleport == 0)
        unanchored = (teleport == 0) & (status != AccountStatus.SUSPENDED)
        cold = bool(lost.any() and unanchored.any())
        if cold:
            solver.restart(n)
        moved = pairs.take_landmark_moved()
        full = cold or graph.time != now or moved or graph.n_users == 0
        graph.insert_new_edges(pairs, self.threads)
        mature = established(ingest.first_seen[:n], now, p.maturity_age_seconds)
        graph.update_support(
            ingest.changes, pairs, mature, moved or graph.time is None, self.threads
        )
        rows = ingest.changes.take_rows(n, full)
        scale = pairs.decay_to(now)
        if not full:
            solver.scatter(rows, graph, pairs, -p.damping)
        beta_changed, received = graph.compute_rows(
            rows, pairs, ingest.status, scale, p, self.threads, with_sums=full
        )
        if not full:
            solver.scatter(rows, graph, pairs, p.damping)
        targets = ingest.changes.take_targets(n)
        if received is None:
            received = graph.received(
                self._snapshot.received,
                targets,
                beta_changed,
                full,
                pairs,
                scale,
                p.reciprocity,
                self.threads,
            )
        return _RowUpdate(
            sequence=self._sequence,
            n=n,
            status=status,
            teleport=teleport,
            full=full,
            rows=len(rows),
            received=received,
            topic_records=ingest.book.topic_records(
                pairs, graph.beta, scale, graph.support, graph.mature, p.reciprocity
            ),
            distrust=Distrust.at(*ingest.distrust.live(), now, p.half_life_seconds),
            rebuilt=rebuilt,
        )
