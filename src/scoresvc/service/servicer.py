"""The ScoreService servicer: wire to domain and back, no maths.

Each method checks what only the wire knows (presence, paging, enum numbers, sizes),
calls the engine, and builds the response. Every method takes the request, the gRPC
context and the ``Caller`` that ``scoresvc.service.interceptor`` admitted; domain errors
propagate back to it. Field violations are renamed here to the request's dotted
paths. Request ids are scoped to the caller, so two callers' ids never collide.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from typing import Any, Protocol, TypeVar, cast

import grpc
import numpy as np
from google.protobuf import timestamp_pb2

from ..core.change import Cause, explain_change, moderated, report_of
from ..core.engine import Engine
from ..core.errors import FieldViolation, InvalidArgument, NotFound
from ..core.results import Erasure, WriteResult
from ..core.scoring import log_scale_one
from ..core.snapshot import Snapshot
from ..core.suspects import SuspectKind, SuspectWatch
from ..core.topics import normalize_topic
from ..core.users import MAX_ID_BYTES
from ..core.validation import TOO_LONG, check_user_id
from ..core.wording import change_summary
from ..storage.history import History
from ..v1 import score_service_pb2 as pb
from . import paging
from .auth import Caller
from .convert import (
    change_to_wire,
    endorsement_to_wire,
    erasure_to_wire,
    explanation_to_wire,
    history_point_to_wire,
    moderation_to_wire,
    ranked_to_wire,
    score_to_wire,
    seconds_of,
    status_from_wire,
    status_to_wire,
    suspect_to_wire,
    timestamp,
    topics_to_wire,
)
from .handlers import ColumnBatch, RowBatch
from .status import RpcError, invalid

MAX_BATCH_USERS = 10_000
MAX_TOP_USERS = 1_000
MAX_CONTRIBUTORS = 100
MAX_PAGE_SIZE = 1_000
DEFAULT_PAGE_SIZE = 50
MAX_HISTORY_PAGE = 10_000
DEFAULT_HISTORY_PAGE = 1_000

# Columnar names of the engine's row fields, for violation paths.
_COLUMN_OF = {
    "actor_id": "actor_index",
    "target_id": "target_index",
    "target_index": "target_index",
    "kind": "kind",
    "event_time": "event_time_seconds",
    "weight": "weight",
    "actor_index": "actor_index",
    "user_ids": "user_ids",
}


def _compute_time(snap: Snapshot) -> timestamp_pb2.Timestamp:
    seconds, nanos = snap.time_parts
    return timestamp_pb2.Timestamp(seconds=seconds, nanos=nanos)


class SnapshotSource(Protocol):
    """What the servicer needs from the server around the engine (``server.Refresher``):
    the snapshot for a read (waiting for ``min_sequence``), whether start-up is done,
    and a nudge after each write."""

    engine: Engine
    ready: threading.Event
    suspects: SuspectWatch

    def snapshot_for(self, min_sequence: int, context: grpc.ServicerContext) -> Snapshot: ...

    def written(self) -> None: ...

    def evaluation_time(self) -> float: ...


# The two users' fields of the endorsement and of the distrust requests.
_ENDORSEMENT_FIELDS = ("endorser_id", "endorsee_id")
_DISTRUST_FIELDS = ("distruster_id", "distrusted_id")

# Ids of at most this many characters are within MAX_ID_BYTES whatever they hold.
_SURELY_SHORT = MAX_ID_BYTES // 4


def _check_id(user_id: str, field: str) -> None:
    """Reads hold ids to the writes' rule, so an id that could never have been written
    is INVALID_ARGUMENT (never echoed back) rather than NOT_FOUND."""
    bad = check_user_id(user_id, field)
    if bad is not None:
        raise invalid(field, bad.description)


def _check_topic(topic: str) -> None:
    if len(topic) > _SURELY_SHORT and len(topic.encode("utf-8")) > MAX_ID_BYTES:
        raise invalid("topic", TOO_LONG)


def _scoped(request_id: str, caller: Caller) -> str:
    """A request id in the caller's own namespace (token names hold no '/')."""
    return f"{caller.name}/{request_id}" if request_id and caller.name else request_id


_Result = TypeVar("_Result")


def _renamed(call: Callable[[], _Result], path: Callable[[FieldViolation], str]) -> _Result:
    try:
        return call()
    except InvalidArgument as error:
        raise error.renamed(path) from None


class ScoreServicer:
    """The methods of scoresvc.v1.ScoreService, by their names in the proto."""

    def __init__(self, source: SnapshotSource, max_batch_rows: int, history: History) -> None:
        """``max_batch_rows``: interactions in one RecordInteractions call (ServerSettings);
        ``history``: where ScoreHistory reads."""
        self.source = source
        self.engine = source.engine
        self.max_batch_rows = max_batch_rows
        self.history = history

    # ------------------------------------------------------------------ reads

    def Score(
        self, request: pb.ScoreRequest, context: grpc.ServicerContext, caller: Caller
    ) -> pb.ScoreResponse:
        _check_id(request.user_id, "user_id")
        _check_topic(request.topic)
        if not 0 <= request.top_contributors <= MAX_CONTRIBUTORS:
            raise invalid("top_contributors", f"must be between 0 and {MAX_CONTRIBUTORS}")
        snap = self.source.snapshot_for(request.min_sequence, context)
        if request.top_contributors:
            snap.user(request.user_id)  # NOT_FOUND before taking the graph lock
            report = self.source.suspects.latest
            cluster = report.cluster_of(request.user_id) if report is not None else frozenset()
            snap, contributions = self.engine.contributions(
                request.user_id, request.top_contributors, cluster
            )
            return score_to_wire(snap.score(request.user_id, request.topic, contributions))
        if request.topic:
            return score_to_wire(snap.score(request.user_id, request.topic))
        # The page-view path: straight from the snapshot's arrays into the message.
        u = snap.user(request.user_id)
        influence = snap.influence_of(u)
        response = pb.ScoreResponse(
            user_id=request.user_id,
            score=log_scale_one(influence, snap.influence_max),
            influence=influence,
            percentile=snap.percentile(u),
            sequence=snap.sequence,
            status=cast(Any, status_to_wire(snap.status[u])),
        )
        explanation_to_wire(snap.explanation(u), response.explanation)
        response.compute_time.seconds, response.compute_time.nanos = snap.time_parts
        return response

    def BatchScore(
        self, request: pb.BatchScoreRequest, context: grpc.ServicerContext, caller: Caller
    ) -> pb.BatchScoreResponse:
        if len(request.user_ids) > MAX_BATCH_USERS:
            raise invalid("user_ids", f"must hold at most {MAX_BATCH_USERS} ids")
        ids = list(request.user_ids)
        for i, user_id in enumerate(ids):
            if not user_id or len(user_id) > _SURELY_SHORT:
                _check_id(user_id, f"user_ids[{i}]")
        _check_topic(request.topic)
        snap = self.source.snapshot_for(request.min_sequence, context)
        found, score, influence, percentile = snap.scores(ids, request.topic)
        entries = [
            pb.BatchScoreEntry(user_id=u, found=f, score=s, influence=i, percentile=p)
            if f
            else pb.BatchScoreEntry(user_id=u, found=False)
            for u, f, s, i, p in zip(
                ids, found.tolist(), score.tolist(), influence.tolist(), percentile.tolist()
            )
        ]
        return pb.BatchScoreResponse(
            entries=entries, sequence=snap.sequence, compute_time=_compute_time(snap)
        )

    def TopUsers(
        self, request: pb.TopUsersRequest, context: grpc.ServicerContext, caller: Caller
    ) -> pb.TopUsersResponse:
        if not 0 <= request.limit <= MAX_TOP_USERS:
            raise invalid("limit", f"must be between 0 and {MAX_TOP_USERS}")
        _check_topic(request.topic)
        snap = self.source.snapshot_for(request.min_sequence, context)
        ranked = snap.top(request.limit or 10, request.topic)
        return pb.TopUsersResponse(
            users=ranked_to_wire(ranked),
            sequence=snap.sequence,
            compute_time=_compute_time(snap),
        )

    def ListEndorsements(
        self, request: pb.ListEndorsementsRequest, context: grpc.ServicerContext, caller: Caller
    ) -> pb.ListEndorsementsResponse:
        _check_id(request.user_id, "user_id")
        if request.direction == pb.ENDORSEMENT_DIRECTION_UNSPECIFIED:
            raise invalid("direction", "must be GIVEN or RECEIVED")
        if request.direction not in (
            pb.ENDORSEMENT_DIRECTION_GIVEN,
            pb.ENDORSEMENT_DIRECTION_RECEIVED,
        ):
            raise invalid("direction", "is not a known direction")
        if not 0 <= request.page_size <= MAX_PAGE_SIZE:
            raise invalid("page_size", f"must be between 0 and {MAX_PAGE_SIZE}")
        offset = paging.offset_of(request.page_token)
        entries, following = self.engine.list_endorsements(
            request.user_id,
            request.direction == pb.ENDORSEMENT_DIRECTION_GIVEN,
            offset,
            request.page_size or DEFAULT_PAGE_SIZE,
        )
        return pb.ListEndorsementsResponse(
            endorsements=[endorsement_to_wire(e) for e in entries],
            next_page_token="" if following is None else paging.offset_token(following),
        )

    def ListTopics(
        self, request: pb.ListTopicsRequest, context: grpc.ServicerContext, caller: Caller
    ) -> pb.ListTopicsResponse:
        if not 0 <= request.page_size <= MAX_PAGE_SIZE:
            raise invalid("page_size", f"must be between 0 and {MAX_PAGE_SIZE}")
        after = paging.topic_after(request.page_token)
        snap = self.source.snapshot_for(0, context)
        page, more = snap.topics_after(after, request.page_size or DEFAULT_PAGE_SIZE)
        return pb.ListTopicsResponse(
            topics=topics_to_wire(page),
            next_page_token=paging.topic_token(page[-1].topic) if more else "",
            sequence=snap.sequence,
        )

    def ListSuspects(
        self, request: pb.ListSuspectsRequest, context: grpc.ServicerContext, caller: Caller
    ) -> pb.ListSuspectsResponse:
        if request.kind not in [k.value for k in SuspectKind] + [0]:
            raise invalid("kind", "is not a known suspect kind")
        if not 0 <= request.limit <= MAX_PAGE_SIZE:
            raise invalid("limit", f"must be between 0 and {MAX_PAGE_SIZE}")
        sequence, offset = paging.suspects_position(request.page_token, request.kind)
        watch = self.source.suspects
        report = watch.latest if sequence is None else watch.report(sequence)
        if report is None and sequence is not None:
            raise invalid(
                "page_token",
                "its report is no longer kept; list again from the first page",
                "PAGE_TOKEN_EXPIRED",
            )
        if report is None:
            raise RpcError(
                grpc.StatusCode.UNAVAILABLE,
                "the suspect report is being computed",
                "SUSPECTS_NOT_READY",
            )
        found = report.of_kind(SuspectKind(request.kind) if request.kind else None)
        end = offset + (request.limit or DEFAULT_PAGE_SIZE)
        token = paging.suspects_token(report.sequence, end, request.kind)
        rank = {id(s): i for i, s in enumerate(report.suspects)}
        return pb.ListSuspectsResponse(
            suspects=[
                suspect_to_wire(s, f"{report.sequence}-{rank[id(s)]}") for s in found[offset:end]
            ],
            next_page_token=token if end < len(found) else "",
            sequence=report.sequence,
            compute_time=timestamp(report.compute_time),
            computation_seconds=report.seconds,
        )

    def ScoreHistory(
        self, request: pb.ScoreHistoryRequest, context: grpc.ServicerContext, caller: Caller
    ) -> pb.ScoreHistoryResponse:
        _check_id(request.user_id, "user_id")
        _check_topic(request.topic)
        if not 0 <= request.page_size <= MAX_HISTORY_PAGE:
            raise invalid("page_size", f"must be between 0 and {MAX_HISTORY_PAGE}")
        start, end = _time_field(request, "start_time"), _time_field(request, "end_time")
        if start is not None and end is not None and start > end:
            raise invalid("start_time", "must not be after end_time")
        resume = paging.history_resume(request.page_token)
        if resume is not None:
            start = resume if start is None else max(start, resume)
        snap = self.source.snapshot_for(0, context)
        if not self.history.knows(request.user_id):
            snap.user(request.user_id)  # NOT_FOUND for a user never seen
        limit = request.page_size or DEFAULT_HISTORY_PAGE
        found = self.history.points(request.user_id, request.topic, start, end, limit + 1)
        return pb.ScoreHistoryResponse(
            user_id=request.user_id,
            topic=normalize_topic(request.topic),
            points=[history_point_to_wire(p) for p in found[:limit]],
            next_page_token=paging.history_token(found[limit].time) if len(found) > limit else "",
        )

    def ExplainChange(
        self, request: pb.ExplainChangeRequest, context: grpc.ServicerContext, caller: Caller
    ) -> pb.ExplainChangeResponse:
        _check_id(request.user_id, "user_id")
        _check_topic(request.topic)
        if normalize_topic(request.topic):
            raise invalid("topic", "only the global score's changes are explained (leave it empty)")
        start, end = _time_field(request, "from_time"), _time_field(request, "to_time")
        if start is None:
            raise invalid("from_time", "is required")
        if end is not None and start > end:
            raise invalid("from_time", "must not be after to_time")
        snap = self.source.snapshot_for(0, context)
        snap.user(request.user_id)  # NOT_FOUND for a user never seen
        before = self.history.standing(request.user_id, start)
        after = (
            self.engine.standing(request.user_id)
            if end is None
            else self.history.standing(request.user_id, end)
        )
        if before is None or after is None:
            raise RpcError(
                grpc.StatusCode.FAILED_PRECONDITION,
                f"no retained history point has {request.user_id!r} at or before that time",
                "NO_HISTORY_POINT",
                [("from_time" if before is None else "to_time", "has no history point before it")],
            )
        change = explain_change(request.user_id, before, after)
        # Up to now, every event the snapshot holds (its time may trail the writes').
        until = math.inf if end is None else after.time
        linked = [p.contributor_id for p in change.parts if p.cause == Cause.CONTRIBUTOR_LINK]
        links, suspensions = self.engine.moderation_between(
            request.user_id, linked, before.time, until
        )
        change = moderated(change, links, suspensions)
        events = {
            contributor: self.engine.events_between(
                request.user_id, contributor, before.time, until
            )
            for contributor in linked
        }
        return change_to_wire(report_of(change, events, change_summary(change)))

    # ------------------------------------------------------------------ writes

    def Endorse(
        self, request: pb.EndorseRequest, context: grpc.ServicerContext, caller: Caller
    ) -> pb.EndorseResponse:
        done = self._endorsement(request, caller, self.engine.endorse)
        return pb.EndorseResponse(
            sequence=done.sequence, endorsement_live=bool(done.endorsement_live)
        )

    def RetractEndorsement(
        self, request: pb.RetractEndorsementRequest, context: grpc.ServicerContext, caller: Caller
    ) -> pb.RetractEndorsementResponse:
        done = self._endorsement(request, caller, self.engine.retract)
        return pb.RetractEndorsementResponse(
            sequence=done.sequence, endorsement_live=bool(done.endorsement_live)
        )

    def Distrust(
        self, request: pb.DistrustRequest, context: grpc.ServicerContext, caller: Caller
    ) -> pb.DistrustResponse:
        done = self._endorsement(request, caller, self.engine.distrust, _DISTRUST_FIELDS)
        return pb.DistrustResponse(
            sequence=done.sequence, distrust_live=bool(done.endorsement_live)
        )

    def RetractDistrust(
        self, request: pb.RetractDistrustRequest, context: grpc.ServicerContext, caller: Caller
    ) -> pb.RetractDistrustResponse:
        done = self._endorsement(request, caller, self.engine.retract_distrust, _DISTRUST_FIELDS)
        return pb.RetractDistrustResponse(
            sequence=done.sequence, distrust_live=bool(done.endorsement_live)
        )

    def RecordInteractions(
        self, request: pb.RecordInteractionsRequest, context: grpc.ServicerContext, caller: Caller
    ) -> pb.RecordInteractionsResponse:
        self._check_ready()
        if isinstance(request, RowBatch):
            if len(request.actor) == 0:
                raise invalid("interactions", "a batch needs interactions or columns")
            self._check_rows("interactions", len(request.actor))
            done = _renamed(
                lambda: self.engine.record_interaction_rows(
                    request.users,
                    request.actor,
                    request.target,
                    request.kind,
                    request.ts,
                    request.weight,
                    request_id=_scoped(request.request_id, caller),
                ),
                lambda v: f"interactions[{v.index}].{v.field}",
            )
            self.source.written()
            return pb.RecordInteractionsResponse(accepted=done.accepted, sequence=done.sequence)
        if isinstance(request, ColumnBatch):
            done = self._record_columns(request, caller)
        elif request.HasField("columns"):
            if len(request.interactions):
                raise invalid("columns", "set interactions or columns, not both")
            done = self._record_columns(ColumnBatch.of(request), caller)
        elif len(request.interactions):
            self._check_rows("interactions", len(request.interactions))
            # Flat comprehensions over materialised messages are the fastest way out
            # of protobuf (each access to the repeated field wraps its elements anew);
            # only a zero time or weight needs asking whether it was set at all.
            rows = list(request.interactions)
            stamps = [m.event_time for m in rows]
            times = np.array([t.seconds for t in stamps], np.float64)
            times += np.array([t.nanos for t in stamps], np.float64) * 1e-9
            for i in np.flatnonzero(times == 0):
                if not rows[int(i)].HasField("event_time"):
                    times[i] = math.nan
            weights = np.array([m.weight for m in rows], np.float64)
            for i in np.flatnonzero(weights == 0):
                if not rows[int(i)].HasField("weight"):
                    weights[i] = 1.0
            done = _renamed(
                lambda: self.engine.record_interaction_lists(
                    [m.actor_id for m in rows],
                    [m.target_id for m in rows],
                    [m.kind for m in rows],
                    times,
                    weights,
                    request_id=_scoped(request.request_id, caller),
                ),
                lambda v: f"interactions[{v.index}].{v.field}",
            )
        else:
            raise invalid("interactions", "a batch needs interactions or columns")
        self.source.written()
        return pb.RecordInteractionsResponse(accepted=done.accepted, sequence=done.sequence)

    def SetAccountStatus(
        self, request: pb.SetAccountStatusRequest, context: grpc.ServicerContext, caller: Caller
    ) -> pb.SetAccountStatusResponse:
        self._check_ready()
        if request.status not in (
            pb.ACCOUNT_STATUS_NORMAL,
            pb.ACCOUNT_STATUS_SEED,
            pb.ACCOUNT_STATUS_SUSPENDED,
        ):
            raise invalid("status", "must be NORMAL, SEED or SUSPENDED")
        done = self.engine.set_status(
            request.user_id,
            status_from_wire(request.status),
            request_id=_scoped(request.request_id, caller),
        )
        self.source.written()
        return pb.SetAccountStatusResponse(sequence=done.sequence)

    # ------------------------------------------------------------------ moderation

    def SuspendCluster(
        self, request: pb.SuspendClusterRequest, context: grpc.ServicerContext, caller: Caller
    ) -> pb.SuspendClusterResponse:
        action = self._cluster_action(request, caller, self.engine.suspend_cluster, False)
        return pb.SuspendClusterResponse(action=action)

    def InvalidateBetween(
        self, request: pb.InvalidateBetweenRequest, context: grpc.ServicerContext, caller: Caller
    ) -> pb.InvalidateBetweenResponse:
        action = self._cluster_action(request, caller, self.engine.invalidate_between, True)
        return pb.InvalidateBetweenResponse(action=action)

    def _cluster_action(
        self, request: Any, caller: Caller, write: Callable[..., Any], beneficiaries: bool
    ) -> pb.ModerationAction:
        """A moderation write over the request's users or cluster (with the users it
        benefits when ``beneficiaries``), recorded with the caller and the reason."""
        self._check_ready()
        users = self._cluster(request, beneficiaries=beneficiaries)
        action = _renamed(
            lambda: write(
                users,
                actor=caller.name,
                reason=request.reason,
                request_id=_scoped(request.request_id, caller),
            ),
            _indexed_path,
        )
        self.source.written()
        return moderation_to_wire(action)

    def RestoreBetween(
        self, request: pb.RestoreBetweenRequest, context: grpc.ServicerContext, caller: Caller
    ) -> pb.RestoreBetweenResponse:
        self._check_ready()
        if request.action_id <= 0:
            raise invalid("action_id", "must name an invalidation (a positive action_id)")
        action = self.engine.restore_between(
            request.action_id,
            actor=caller.name,
            reason=request.reason,
            request_id=_scoped(request.request_id, caller),
        )
        self.source.written()
        return pb.RestoreBetweenResponse(action=moderation_to_wire(action))

    def EraseUser(
        self, request: pb.EraseUserRequest, context: grpc.ServicerContext, caller: Caller
    ) -> pb.EraseUserResponse:
        self._check_ready()
        _check_id(request.user_id, "user_id")
        receipts: list[Erasure] = []

        def erase() -> int:
            receipts.append(
                self.engine.erase_user(
                    request.user_id,
                    reason=request.reason,
                    actor=caller.name,
                    at=self.source.evaluation_time(),
                )
            )
            return receipts[0].sequence

        self.history.erase(request.user_id, erase)
        self.source.written()
        return erasure_to_wire(receipts[0])

    def ListModerationActions(
        self,
        request: pb.ListModerationActionsRequest,
        context: grpc.ServicerContext,
        caller: Caller,
    ) -> pb.ListModerationActionsResponse:
        if not 0 <= request.page_size <= MAX_PAGE_SIZE:
            raise invalid("page_size", f"must be between 0 and {MAX_PAGE_SIZE}")
        offset = paging.offset_of(request.page_token)
        actions, following = self.engine.moderation_actions(
            offset, request.page_size or DEFAULT_PAGE_SIZE
        )
        return pb.ListModerationActionsResponse(
            actions=[moderation_to_wire(a) for a in actions],
            next_page_token="" if following is None else paging.offset_token(following),
        )

    def _cluster(self, request: Any, beneficiaries: bool) -> list[str]:
        """The request's ``user_ids``, or the members (and, when ``beneficiaries``, the
        users it benefits) of the suspect cluster ``cluster_id`` names."""
        if not request.cluster_id:
            return list(request.user_ids)
        if request.user_ids:
            raise invalid("cluster_id", "give user_ids or cluster_id, not both")
        try:
            sequence, rank = (int(part) for part in request.cluster_id.split("-"))
        except ValueError:
            raise invalid("cluster_id", "is not a cluster id ListSuspects gave") from None
        report = self.source.suspects.report(sequence)
        if report is None or not 0 <= rank < len(report.suspects):
            raise NotFound(
                f"cluster {request.cluster_id!r} is not in a kept suspect report;"
                " list the suspects again",
                "cluster_id",
                reason="CLUSTER_NOT_FOUND",
            )
        found = report.suspects[rank]
        named = [*found.member_ids, *(found.beneficiary_ids if beneficiaries else ())]
        return list(dict.fromkeys(named))

    # ------------------------------------------------------------------ helpers

    def _endorsement(
        self,
        request: Any,
        caller: Caller,
        write: Callable[..., WriteResult],
        users: tuple[str, str] = _ENDORSEMENT_FIELDS,
    ) -> WriteResult:
        """Endorse and RetractEndorsement carry the same fields, and Distrust and
        RetractDistrust the same under other names for the two users (``users``)."""
        self._check_ready()
        done = write(
            getattr(request, users[0]),
            getattr(request, users[1]),
            request.topic,
            seconds_of(request),
            request_id=_scoped(request.request_id, caller),
        )
        self.source.written()
        return done

    def _check_rows(self, field: str, rows: int) -> None:
        if rows > self.max_batch_rows:
            raise invalid(
                field, f"holds {rows} interactions; at most {self.max_batch_rows} per call"
            )

    def _check_ready(self) -> None:
        if not self.source.ready.is_set():
            raise RpcError(grpc.StatusCode.UNAVAILABLE, "the service is starting", "NOT_READY")

    def _record_columns(self, columns: ColumnBatch, caller: Caller) -> WriteResult:
        n = len(columns.kind)
        expected = {
            "actor_index": (columns.actor_index, 4),
            "target_index": (columns.target_index, 4),
            "event_time_seconds": (columns.event_time_seconds, 8),
            "weight": (columns.weight, 8),
        }
        for name, (data, width) in expected.items():
            if name in ("event_time_seconds", "weight") and not data:
                continue  # every row at server time, or of weight 1
            if len(data) != n * width:
                raise invalid(
                    f"columns.{name}",
                    f"must hold {width} bytes per interaction ({n} interactions from kind)",
                )
        if n == 0:
            raise invalid("columns.kind", "a batch needs at least one interaction")
        self._check_rows("columns.kind", n)
        kind = np.frombuffer(columns.kind, np.uint8)
        actor = np.frombuffer(columns.actor_index, "<u4").astype(np.int64)
        target = np.frombuffer(columns.target_index, "<u4").astype(np.int64)
        if columns.event_time_seconds:
            ts = np.frombuffer(columns.event_time_seconds, "<f8").astype(np.float64)
        else:
            ts = None
        weight = np.frombuffer(columns.weight, "<f8").astype(np.float64) if columns.weight else None

        def path(v: FieldViolation) -> str:
            column = _COLUMN_OF.get(v.field, v.field)
            return f"columns.{column}" + ("" if v.index is None else f"[{v.index}]")

        return _renamed(
            lambda: self.engine.record_interaction_columns(
                columns.users,
                actor,
                target,
                kind,
                ts,
                weight,
                request_id=_scoped(columns.request_id, caller),
            ),
            path,
        )


def _indexed_path(v: FieldViolation) -> str:
    """A violation's wire path (``user_ids[3]`` for a repeated field's element)."""
    return v.field if v.index is None else f"{v.field}[{v.index}]"


def _time_field(request: Any, field: str) -> float | None:
    """A Timestamp field as unix seconds (None when absent), checked as AIP-142 asks."""
    if not request.HasField(field):
        return None
    stamp = getattr(request, field)
    if not 0 <= stamp.nanos < 1_000_000_000:
        raise invalid(field, "nanos must be from 0 to 999999999")
    return float(stamp.seconds + stamp.nanos * 1e-9)
