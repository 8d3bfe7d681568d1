"""Typed Python clients for scoresvc.v1.ScoreService, blocking and asyncio.

    with ScoreClient("127.0.0.1:50051") as client:
        done = client.endorse("ana", "bo", "python")
        print(client.score("bo", "python", min_sequence=done.sequence).score)

Results are the domain's own types (``scoresvc.core.results``, with ``scoresvc.core.model``'s
enums), the ones the in-process engine returns. Every failed call raises
``ScoreServiceError``. This module loads the generated stubs and the domain's
vocabulary only, never the engine.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Iterator, Sequence
from typing import Any, cast

import grpc
import grpc.aio
import numpy as np
from google.rpc import error_details_pb2, status_pb2

from .core.change import ChangeReport
from .core.history import HistoryPoint
from .core.model import AccountStatus, InteractionKind
from .core.moderation import ModerationAction
from .core.results import (
    BatchScores,
    EndorsementEvent,
    Erasure,
    Ranking,
    TopicSummary,
    UserScore,
    WriteResult,
)
from .core.suspects import SuspectKind, SuspectReport
from .service.convert import (
    batch_scores_of,
    change_of,
    endorsement_of,
    erasure_of,
    history_point_of,
    moderation_of,
    ranking_of,
    score_of,
    status_to_wire,
    suspect_report_of,
    timestamp,
    topic_of,
    write_result_of,
)
from .v1 import score_service_pb2 as pb
from .v1 import score_service_pb2_grpc as pb_grpc

#: An interaction row: (actor_id, target_id, kind, unix seconds or None for server time),
#: optionally followed by a weight (how many interactions it counts as; None or absent: 1).
InteractionRow = (
    tuple[str, str, InteractionKind | int, float | None]
    | tuple[str, str, InteractionKind | int, float | None, float | None]
)

_STATUS_DETAILS_KEY = "grpc-status-details-bin"


class ScoreServiceError(Exception):
    """A call the service refused or could not answer, with its ``google.rpc.Status``
    details decoded.

    ``code`` is the ``grpc.StatusCode``; ``reason`` the UPPER_SNAKE ``ErrorInfo`` reason
    (``USER_NOT_FOUND``, ``ENDORSEMENT_LIMIT_EXCEEDED``, ...; empty when the call never
    reached the service); ``field_violations`` the (dotted field path, description)
    pairs of a ``BadRequest``; ``retry_delay_seconds`` the ``RetryInfo`` delay when
    waiting helps, else None; ``metadata`` the ``ErrorInfo`` metadata (``request_id``
    of an INTERNAL error, ``violations`` when more were found than listed).
    """

    def __init__(
        self,
        code: grpc.StatusCode,
        message: str,
        *,
        reason: str = "",
        field_violations: Sequence[tuple[str, str]] = (),
        retry_delay_seconds: float | None = None,
        metadata: dict[str, str] | None = None,
    ) -> None:
        super().__init__(f"{code.name}: {message}")
        self.code = code
        self.message = message
        self.reason = reason
        self.field_violations = list(field_violations)
        self.retry_delay_seconds = retry_delay_seconds
        self.metadata = dict(metadata or {})

    @classmethod
    def of(cls, error: grpc.RpcError) -> ScoreServiceError:
        """The error of a failed call (blocking or asyncio), for code that calls the
        generated stubs directly."""
        call = cast(Any, error)
        code, message = call.code(), call.details() or ""
        details = status_pb2.Status()
        for key, value in call.trailing_metadata() or ():
            if key == _STATUS_DETAILS_KEY:
                details.ParseFromString(value)
        out: dict[str, Any] = {}
        for detail in details.details:
            if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
                bad = error_details_pb2.BadRequest()
                detail.Unpack(bad)
                out["field_violations"] = [(v.field, v.description) for v in bad.field_violations]
            elif detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
                info = error_details_pb2.ErrorInfo()
                detail.Unpack(info)
                out["reason"], out["metadata"] = info.reason, dict(info.metadata)
            elif detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
                retry = error_details_pb2.RetryInfo()
                detail.Unpack(retry)
                out["retry_delay_seconds"] = retry.retry_delay.ToMilliseconds() / 1000.0
        return cls(code, message, **out)


# ------------------------------------------------------------------ requests
# Both clients build their requests here, so the two cannot drift apart.


def _score_request(
    user_id: str, topic: str, min_sequence: int, top_contributors: int
) -> pb.ScoreRequest:
    return pb.ScoreRequest(
        user_id=user_id, topic=topic, min_sequence=min_sequence, top_contributors=top_contributors
    )


_DISTRUST_FIELDS = ("distruster_id", "distrusted_id")


def _endorsement_request(
    message: Any,
    endorser_id: str,
    endorsee_id: str,
    topic: str,
    event_time: float | None,
    request_id: str,
    users: tuple[str, str] = ("endorser_id", "endorsee_id"),
) -> Any:
    """An endorsement's (or, with ``users`` naming the distrust's fields, a distrust's)
    request."""
    request = message(
        **{users[0]: endorser_id, users[1]: endorsee_id}, topic=topic, request_id=request_id
    )
    if event_time is not None:
        request.event_time.CopyFrom(timestamp(event_time))
    return request


def _rows_request(rows: Iterable[InteractionRow], request_id: str) -> pb.RecordInteractionsRequest:
    interactions = []
    for row in rows:
        actor, target, kind, when = row[:4]
        m = pb.Interaction(actor_id=actor, target_id=target, kind=cast(Any, int(kind)))
        if when is not None:
            m.event_time.CopyFrom(timestamp(when))
        weight = row[4] if len(row) > 4 else None
        if weight is not None:
            m.weight = weight
        interactions.append(m)
    return pb.RecordInteractionsRequest(interactions=interactions, request_id=request_id)


def _columns_request(
    user_ids: Sequence[str],
    actor_index: np.ndarray | Sequence[int],
    target_index: np.ndarray | Sequence[int],
    kind: np.ndarray | Sequence[int],
    event_time_seconds: np.ndarray | Sequence[float] | None,
    weight: np.ndarray | Sequence[float] | None,
    request_id: str,
) -> pb.RecordInteractionsRequest:
    columns = pb.InteractionColumns(
        user_ids=list(user_ids),
        actor_index=np.asarray(actor_index, "<u4").tobytes(),
        target_index=np.asarray(target_index, "<u4").tobytes(),
        kind=np.asarray(kind, np.uint8).tobytes(),
        event_time_seconds=b""
        if event_time_seconds is None
        else np.asarray(event_time_seconds, "<f8").tobytes(),
        weight=b"" if weight is None else np.asarray(weight, "<f8").tobytes(),
    )
    return pb.RecordInteractionsRequest(columns=columns, request_id=request_id)


def _status_request(
    user_id: str, status: AccountStatus, request_id: str
) -> pb.SetAccountStatusRequest:
    return pb.SetAccountStatusRequest(
        user_id=user_id,
        status=cast(Any, status_to_wire(AccountStatus(status))),
        request_id=request_id,
    )


def _page_request(user_id: str, given: bool, page_size: int, token: str) -> Any:
    direction = pb.ENDORSEMENT_DIRECTION_GIVEN if given else pb.ENDORSEMENT_DIRECTION_RECEIVED
    return pb.ListEndorsementsRequest(
        user_id=user_id, direction=direction, page_size=page_size, page_token=token
    )


def _suspects_request(
    kind: SuspectKind | int | None, page_size: int, token: str
) -> pb.ListSuspectsRequest:
    return pb.ListSuspectsRequest(kind=cast(Any, int(kind or 0)), limit=page_size, page_token=token)


def _cluster_request(
    message: Any, user_ids: Iterable[str], cluster_id: str, reason: str, request_id: str
) -> Any:
    """A SuspendCluster or InvalidateBetween request: ``user_ids`` or ``cluster_id``."""
    return message(
        user_ids=list(user_ids), cluster_id=cluster_id, reason=reason, request_id=request_id
    )


def _change_request(
    user_id: str, from_time: float, to_time: float | None
) -> pb.ExplainChangeRequest:
    request = pb.ExplainChangeRequest(user_id=user_id)
    request.from_time.CopyFrom(timestamp(from_time))
    if to_time is not None:
        request.to_time.CopyFrom(timestamp(to_time))
    return request


def _history_request(
    user_id: str, topic: str, start_time: float | None, end_time: float | None, token: str
) -> pb.ScoreHistoryRequest:
    request = pb.ScoreHistoryRequest(user_id=user_id, topic=topic, page_token=token)
    if start_time is not None:
        request.start_time.CopyFrom(timestamp(start_time))
    if end_time is not None:
        request.end_time.CopyFrom(timestamp(end_time))
    return request


def _call_metadata(metadata: Sequence[tuple[str, str]], token: str | None) -> list[tuple[str, str]]:
    if token:
        return [*metadata, ("authorization", f"Bearer {token}")]
    return list(metadata)


# ------------------------------------------------------------------ blocking


class ScoreClient:
    """Blocking client; one channel, safe to share between threads.

    ``timeout`` is every call's deadline in seconds unless the call gives its own
    (None: no deadline). ``credentials``: TLS (``grpc.ssl_channel_credentials``), else
    plaintext. ``token`` is sent as ``authorization: Bearer <token>`` on every call,
    ``metadata`` as well (``x-request-id`` names a call in the service's logs).
    """

    def __init__(
        self,
        target: str,
        *,
        timeout: float | None = 10.0,
        credentials: grpc.ChannelCredentials | None = None,
        options: Sequence[tuple[str, Any]] = (),
        metadata: Sequence[tuple[str, str]] = (),
        token: str | None = None,
    ) -> None:
        if credentials is None:
            self.channel = grpc.insecure_channel(target, options=list(options))
        else:
            self.channel = grpc.secure_channel(target, credentials, options=list(options))
        #: The generated stub, for calls this client does not wrap.
        self.stub = pb_grpc.ScoreServiceStub(self.channel)
        self.timeout = timeout
        self.metadata = _call_metadata(metadata, token)

    def close(self) -> None:
        """Close the channel; calls in flight are cancelled."""
        self.channel.close()

    def __enter__(self) -> ScoreClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(self, method: Any, request: Any, timeout: float | None) -> Any:
        try:
            return method(
                request,
                timeout=self.timeout if timeout is None else timeout,
                metadata=self.metadata,
            )
        except grpc.RpcError as error:
            raise ScoreServiceError.of(error) from None

    # ------------------------------------------------------------------ reads

    def score(
        self,
        user_id: str,
        topic: str = "",
        *,
        min_sequence: int = 0,
        top_contributors: int = 0,
        timeout: float | None = None,
    ) -> UserScore:
        """One user's score, global or within ``topic``, with its explanation.

        ``min_sequence``: answer from a snapshot that includes this write's sequence
        (read your own writes), waiting within the deadline. ``top_contributors``: how
        many of the users whose trust contributed most to list (0 to 100).
        NOT_FOUND (reason USER_NOT_FOUND) for a user never seen.
        """
        request = _score_request(user_id, topic, min_sequence, top_contributors)
        return score_of(self._call(self.stub.Score, request, timeout))

    def batch_score(
        self,
        user_ids: Iterable[str],
        topic: str = "",
        *,
        min_sequence: int = 0,
        timeout: float | None = None,
    ) -> BatchScores:
        """Many users' scores (at most 10000) in request order; a user never seen is an
        entry with ``found`` False rather than an error."""
        request = pb.BatchScoreRequest(
            user_ids=list(user_ids), topic=topic, min_sequence=min_sequence
        )
        return batch_scores_of(self._call(self.stub.BatchScore, request, timeout))

    def top_users(
        self,
        limit: int = 10,
        topic: str = "",
        *,
        min_sequence: int = 0,
        timeout: float | None = None,
    ) -> Ranking:
        """The ``limit`` (at most 1000) highest-scoring users, globally or within
        ``topic``, highest first."""
        request = pb.TopUsersRequest(limit=limit, topic=topic, min_sequence=min_sequence)
        return ranking_of(self._call(self.stub.TopUsers, request, timeout))

    def list_endorsements(
        self, user_id: str, *, given: bool = True, page_size: int = 100
    ) -> Iterator[EndorsementEvent]:
        """Every entry of the audit trail the user gave (or, ``given=False``, received),
        retractions included, newest first; fetched page by page as it is iterated."""
        token = ""
        while True:
            request = _page_request(user_id, given, page_size, token)
            page = self._call(self.stub.ListEndorsements, request, None)
            for m in page.endorsements:
                yield endorsement_of(m)
            token = page.next_page_token
            if not token:
                return

    def list_topics(self, *, page_size: int = 100) -> Iterator[TopicSummary]:
        """Every topic that ranks at least one user, by name, with how many it ranks;
        fetched page by page as it is iterated."""
        token = ""
        while True:
            request = pb.ListTopicsRequest(page_size=page_size, page_token=token)
            page = self._call(self.stub.ListTopics, request, None)
            for m in page.topics:
                yield topic_of(m)
            token = page.next_page_token
            if not token:
                return

    def list_suspects(
        self, kind: SuspectKind | int | None = None, *, page_size: int = 100
    ) -> SuspectReport:
        """The latest suspect report (admin), most suspicious first, only clusters of
        ``kind`` if given; every page of it, fetched in turn. UNAVAILABLE (reason
        SUSPECTS_NOT_READY) until the server has computed its first report."""
        pages, token = [], ""
        while True:
            request = _suspects_request(kind, page_size, token)
            pages.append(self._call(self.stub.ListSuspects, request, None))
            token = pages[-1].next_page_token
            if not token:
                return suspect_report_of(pages)

    def score_history(
        self,
        user_id: str,
        topic: str = "",
        *,
        start_time: float | None = None,
        end_time: float | None = None,
        timeout: float | None = None,
    ) -> list[HistoryPoint]:
        """The user's recorded points (globally, or within ``topic``) from
        ``start_time`` to ``end_time`` (unix seconds, inclusive; None: unbounded),
        oldest first, every page fetched. NOT_FOUND for a user never seen."""
        points: list[HistoryPoint] = []
        token = ""
        while True:
            request = _history_request(user_id, topic, start_time, end_time, token)
            page = self._call(self.stub.ScoreHistory, request, timeout)
            points.extend(history_point_of(m, page.topic) for m in page.points)
            token = page.next_page_token
            if not token:
                return points

    def explain_change(
        self,
        user_id: str,
        from_time: float,
        to_time: float | None = None,
        *,
        timeout: float | None = None,
    ) -> ChangeReport:
        """Why the user's global score changed from the history point at or before
        ``from_time`` to now (or to the point at or before ``to_time``): the change
        split into its causes, largest first, summing to the whole."""
        request = _change_request(user_id, from_time, to_time)
        return change_of(self._call(self.stub.ExplainChange, request, timeout))

    def list_moderation_actions(self, *, page_size: int = 100) -> Iterator[ModerationAction]:
        """The moderation trail (admin), newest first; fetched page by page as it is
        iterated."""
        token = ""
        while True:
            request = pb.ListModerationActionsRequest(page_size=page_size, page_token=token)
            page = self._call(self.stub.ListModerationActions, request, None)
            for m in page.actions:
                yield moderation_of(m)
            token = page.next_page_token
            if not token:
                return

    # ------------------------------------------------------------------ writes

    def endorse(
        self,
        endorser_id: str,
        endorsee_id: str,
        topic: str = "",
        *,
        event_time: float | None = None,
        request_id: str = "",
    ) -> WriteResult:
        """Endorse ``endorsee_id`` (or refresh an endorsement) for ``topic`` (empty:
        general). ``event_time``: unix seconds, None for server time. ``request_id``
        makes a retry safe: the same id and content answers the first write's result.
        RESOURCE_EXHAUSTED past the endorser's daily limit, with a retry delay."""
        request = _endorsement_request(
            pb.EndorseRequest, endorser_id, endorsee_id, topic, event_time, request_id
        )
        return write_result_of(self._call(self.stub.Endorse, request, None))

    def retract(
        self,
        endorser_id: str,
        endorsee_id: str,
        topic: str = "",
        *,
        event_time: float | None = None,
        request_id: str = "",
    ) -> WriteResult:
        """Retract a live endorsement; NOT_FOUND (reason ENDORSEMENT_NOT_FOUND) when
        there is none. Arguments as for ``endorse``. The result's ``endorsement_live``
        is True when the retraction is older than the endorsement it meets (events
        resolve by event time), so the endorsement still counts."""
        request = _endorsement_request(
            pb.RetractEndorsementRequest, endorser_id, endorsee_id, topic, event_time, request_id
        )
        return write_result_of(self._call(self.stub.RetractEndorsement, request, None))

    def distrust(
        self,
        distruster_id: str,
        distrusted_id: str,
        topic: str = "",
        *,
        event_time: float | None = None,
        request_id: str = "",
    ) -> WriteResult:
        """Say that ``distruster_id`` distrusts ``distrusted_id`` (or refresh it) for
        ``topic`` (empty: general); arguments as for ``endorse``. The result's
        ``endorsement_live`` says whether the distrust is live after the write."""
        request = _endorsement_request(
            pb.DistrustRequest,
            distruster_id,
            distrusted_id,
            topic,
            event_time,
            request_id,
            _DISTRUST_FIELDS,
        )
        return write_result_of(self._call(self.stub.Distrust, request, None))

    def retract_distrust(
        self,
        distruster_id: str,
        distrusted_id: str,
        topic: str = "",
        *,
        event_time: float | None = None,
        request_id: str = "",
    ) -> WriteResult:
        """Retract a live distrust; NOT_FOUND (reason DISTRUST_NOT_FOUND) when there is
        none. Arguments and result as for ``distrust``."""
        request = _endorsement_request(
            pb.RetractDistrustRequest,
            distruster_id,
            distrusted_id,
            topic,
            event_time,
            request_id,
            _DISTRUST_FIELDS,
        )
        return write_result_of(self._call(self.stub.RetractDistrust, request, None))

    def record_interactions(
        self,
        rows: Iterable[InteractionRow],
        *,
        request_id: str = "",
        timeout: float | None = None,
    ) -> WriteResult:
        """Rows of (actor_id, target_id, kind, unix seconds or None for server time),
        each optionally with a fifth item, its weight (how many interactions it counts
        as, above 0 and at most 1e6; None: 1). A batch with any invalid row is rejected
        whole, every bad row named."""
        request = _rows_request(rows, request_id)
        return write_result_of(self._call(self.stub.RecordInteractions, request, timeout))

    def record_interaction_columns(
        self,
        user_ids: Sequence[str],
        actor_index: np.ndarray | Sequence[int],
        target_index: np.ndarray | Sequence[int],
        kind: np.ndarray | Sequence[int],
        event_time_seconds: np.ndarray | Sequence[float] | None = None,
        weight: np.ndarray | Sequence[float] | None = None,
        *,
        request_id: str = "",
        timeout: float | None = None,
    ) -> WriteResult:
        """A columnar batch for bulk loads: indexes into ``user_ids``, kinds 1-4
        (``InteractionKind``), unix seconds (None: every row at server time), weights
        (None: every row weighs 1)."""
        request = _columns_request(
            user_ids, actor_index, target_index, kind, event_time_seconds, weight, request_id
        )
        return write_result_of(self._call(self.stub.RecordInteractions, request, timeout))

    def set_account_status(
        self, user_id: str, status: AccountStatus, *, request_id: str = ""
    ) -> WriteResult:
        """Make an account NORMAL, a trusted SEED, or SUSPENDED (admin role)."""
        request = _status_request(user_id, status, request_id)
        return write_result_of(self._call(self.stub.SetAccountStatus, request, None))

    # ------------------------------------------------------------------ moderation

    def suspend_cluster(
        self,
        user_ids: Iterable[str] = (),
        *,
        cluster_id: str = "",
        reason: str,
        request_id: str = "",
    ) -> ModerationAction:
        """Suspend every listed account, or the members of the suspect cluster
        ``cluster_id`` names (``Suspect.cluster_id``; not both), in one write (admin).
        ``reason`` is required and kept in the trail with the caller's token name."""
        request = _cluster_request(
            pb.SuspendClusterRequest, user_ids, cluster_id, reason, request_id
        )
        return moderation_of(self._call(self.stub.SuspendCluster, request, None).action)

    def invalidate_between(
        self,
        user_ids: Iterable[str] = (),
        *,
        cluster_id: str = "",
        reason: str,
        request_id: str = "",
    ) -> ModerationAction:
        """Set aside every interaction, endorsement and distrust accepted so far
        between any two of the listed users (or of the members and beneficiaries of
        the cluster ``cluster_id`` names), as if they never happened (admin). The
        action says what it set aside; ``restore_between`` reverses it."""
        request = _cluster_request(
            pb.InvalidateBetweenRequest, user_ids, cluster_id, reason, request_id
        )
        return moderation_of(self._call(self.stub.InvalidateBetween, request, None).action)

    def restore_between(
        self, action_id: int, *, reason: str, request_id: str = ""
    ) -> ModerationAction:
        """Reverse the invalidation ``action_id`` (admin); NOT_FOUND (reason
        INVALIDATION_NOT_FOUND) unless it is an invalidation in force."""
        request = pb.RestoreBetweenRequest(
            action_id=action_id, reason=reason, request_id=request_id
        )
        return moderation_of(self._call(self.stub.RestoreBetween, request, None).action)

    def erase_user(self, user_id: str, *, reason: str, timeout: float | None = None) -> Erasure:
        """Erase a user as if it never existed (admin role); returns the receipt. A
        rebuild of the server's state: give a large service a longer ``timeout``."""
        request = pb.EraseUserRequest(user_id=user_id, reason=reason)
        return erasure_of(self._call(self.stub.EraseUser, request, timeout))


# ------------------------------------------------------------------ asyncio


class AsyncScoreClient:
    """The asyncio client (``grpc.aio``): ``ScoreClient``'s methods and results, awaited.

        async with AsyncScoreClient("127.0.0.1:50051") as client:
            done = await client.endorse("ana", "bo", "python")
            print((await client.score("bo", "python", min_sequence=done.sequence)).score)

    Create it inside the event loop that uses it. Arguments as for ``ScoreClient``.
    """

    def __init__(
        self,
        target: str,
        *,
        timeout: float | None = 10.0,
        credentials: grpc.ChannelCredentials | None = None,
        options: Sequence[tuple[str, Any]] = (),
        metadata: Sequence[tuple[str, str]] = (),
        token: str | None = None,
    ) -> None:
        if credentials is None:
            self.channel = grpc.aio.insecure_channel(target, options=list(options))
        else:
            self.channel = grpc.aio.secure_channel(target, credentials, options=list(options))
        #: The generated stub, for calls this client does not wrap.
        self.stub = pb_grpc.ScoreServiceStub(self.channel)
        self.timeout = timeout
        self.metadata = _call_metadata(metadata, token)

    async def close(self) -> None:
        """Close the channel; calls in flight are cancelled."""
        await self.channel.close()

    async def __aenter__(self) -> AsyncScoreClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _call(self, method: Any, request: Any, timeout: float | None) -> Any:
        try:
            return await method(
                request,
                timeout=self.timeout if timeout is None else timeout,
                metadata=self.metadata,
            )
        except grpc.RpcError as error:
            raise ScoreServiceError.of(error) from None

    # ------------------------------------------------------------------ reads

    async def score(
        self,
        user_id: str,
        topic: str = "",
        *,
        min_sequence: int = 0,
        top_contributors: int = 0,
        timeout: float | None = None,
    ) -> UserScore:
        """One user's score, global or within ``topic``; as ``ScoreClient.score``."""
        request = _score_request(user_id, topic, min_sequence, top_contributors)
        return score_of(await self._call(self.stub.Score, request, timeout))

    async def batch_score(
        self,
        user_ids: Iterable[str],
        topic: str = "",
        *,
        min_sequence: int = 0,
        timeout: float | None = None,
    ) -> BatchScores:
        """Many users' scores in request order; as ``ScoreClient.batch_score``."""
        request = pb.BatchScoreRequest(
            user_ids=list(user_ids), topic=topic, min_sequence=min_sequence
        )
        return batch_scores_of(await self._call(self.stub.BatchScore, request, timeout))

    async def top_users(
        self,
        limit: int = 10,
        topic: str = "",
        *,
        min_sequence: int = 0,
        timeout: float | None = None,
    ) -> Ranking:
        """The highest-scoring users, highest first; as ``ScoreClient.top_users``."""
        request = pb.TopUsersRequest(limit=limit, topic=topic, min_sequence=min_sequence)
        return ranking_of(await self._call(self.stub.TopUsers, request, timeout))

    async def list_endorsements(
        self, user_id: str, *, given: bool = True, page_size: int = 100
    ) -> AsyncIterator[EndorsementEvent]:
        """The user's audit trail, newest first, page by page (``async for``); as
        ``ScoreClient.list_endorsements``."""
        token = ""
        while True:
            request = _page_request(user_id, given, page_size, token)
            page = await self._call(self.stub.ListEndorsements, request, None)
            for m in page.endorsements:
                yield endorsement_of(m)
            token = page.next_page_token
            if not token:
                return

    async def list_topics(self, *, page_size: int = 100) -> AsyncIterator[TopicSummary]:
        """The ranked topics, by name, page by page (``async for``); as
        ``ScoreClient.list_topics``."""
        token = ""
        while True:
            request = pb.ListTopicsRequest(page_size=page_size, page_token=token)
            page = await self._call(self.stub.ListTopics, request, None)
            for m in page.topics:
                yield topic_of(m)
            token = page.next_page_token
            if not token:
                return

    async def list_suspects(
        self, kind: SuspectKind | int | None = None, *, page_size: int = 100
    ) -> SuspectReport:
        """The latest suspect report, every page of it; as ``ScoreClient.list_suspects``."""
        pages, token = [], ""
        while True:
            request = _suspects_request(kind, page_size, token)
            pages.append(await self._call(self.stub.ListSuspects, request, None))
            token = pages[-1].next_page_token
            if not token:
                return suspect_report_of(pages)

    async def score_history(
        self,
        user_id: str,
        topic: str = "",
        *,
        start_time: float | None = None,
        end_time: float | None = None,
        timeout: float | None = None,
    ) -> list[HistoryPoint]:
        """The user's recorded points, oldest first; as ``ScoreClient.score_history``."""
        points: list[HistoryPoint] = []
        token = ""
        while True:
            request = _history_request(user_id, topic, start_time, end_time, token)
            page = await self._call(self.stub.ScoreHistory, request, timeout)
            points.extend(history_point_of(m, page.topic) for m in page.points)
            token = page.next_page_token
            if not token:
                return points

    async def explain_change(
        self,
        user_id: str,
        from_time: float,
        to_time: float | None = None,
        *,
        timeout: float | None = None,
    ) -> ChangeReport:
        """Why the user's score changed; as ``ScoreClient.explain_change``."""
        request = _change_request(user_id, from_time, to_time)
        return change_of(await self._call(self.stub.ExplainChange, request, timeout))

    async def list_moderation_actions(
        self, *, page_size: int = 100
    ) -> AsyncIterator[ModerationAction]:
        """The moderation trail, newest first, page by page (``async for``); as
        ``ScoreClient.list_moderation_actions``."""
        token = ""
        while True:
            request = pb.ListModerationActionsRequest(page_size=page_size, page_token=token)
            page = await self._call(self.stub.ListModerationActions, request, None)
            for m in page.actions:
                yield moderation_of(m)
            token = page.next_page_token
            if not token:
                return

    # ------------------------------------------------------------------ writes

    async def endorse(
        self,
        endorser_id: str,
        endorsee_id: str,
        topic: str = "",
        *,
        event_time: float | None = None,
        request_id: str = "",
    ) -> WriteResult:
        """Endorse (or refresh an endorsement); as ``ScoreClient.endorse``."""
        request = _endorsement_request(
            pb.EndorseRequest, endorser_id, endorsee_id, topic, event_time, request_id
        )
        return write_result_of(await self._call(self.stub.Endorse, request, None))

    async def retract(
        self,
        endorser_id: str,
        endorsee_id: str,
        topic: str = "",
        *,
        event_time: float | None = None,
        request_id: str = "",
    ) -> WriteResult:
        """Retract a live endorsement; as ``ScoreClient.retract``."""
        request = _endorsement_request(
            pb.RetractEndorsementRequest, endorser_id, endorsee_id, topic, event_time, request_id
        )
        return write_result_of(await self._call(self.stub.RetractEndorsement, request, None))

    async def distrust(
        self,
        distruster_id: str,
        distrusted_id: str,
        topic: str = "",
        *,
        event_time: float | None = None,
        request_id: str = "",
    ) -> WriteResult:
        """Distrust a user (or refresh it); as ``ScoreClient.distrust``."""
        request = _endorsement_request(
            pb.DistrustRequest,
            distruster_id,
            distrusted_id,
            topic,
            event_time,
            request_id,
            _DISTRUST_FIELDS,
        )
        return write_result_of(await self._call(self.stub.Distrust, request, None))

    async def retract_distrust(
        self,
        distruster_id: str,
        distrusted_id: str,
        topic: str = "",
        *,
        event_time: float | None = None,
        request_id: str = "",
    ) -> WriteResult:
        """Retract a live distrust; as ``ScoreClient.retract_distrust``."""
        request = _endorsement_request(
            pb.RetractDistrustRequest,
            distruster_id,
            distrusted_id,
            topic,
            event_time,
            request_id,
            _DISTRUST_FIELDS,
        )
        return write_result_of(await self._call(self.stub.RetractDistrust, request, None))

    async def record_interactions(
        self,
        rows: Iterable[InteractionRow],
        *,
        request_id: str = "",
        timeout: float | None = None,
    ) -> WriteResult:
        """A batch of interaction rows; as ``ScoreClient.record_interactions``."""
        request = _rows_request(rows, request_id)
        return write_result_of(await self._call(self.stub.RecordInteractions, request, timeout))

    async def record_interaction_columns(
        self,
        user_ids: Sequence[str],
        actor_index: np.ndarray | Sequence[int],
        target_index: np.ndarray | Sequence[int],
        kind: np.ndarray | Sequence[int],
        event_time_seconds: np.ndarray | Sequence[float] | None = None,
        weight: np.ndarray | Sequence[float] | None = None,
        *,
        request_id: str = "",
        timeout: float | None = None,
    ) -> WriteResult:
        """A columnar batch; as ``ScoreClient.record_interaction_columns``."""
        request = _columns_request(
            user_ids, actor_index, target_index, kind, event_time_seconds, weight, request_id
        )
        return write_result_of(await self._call(self.stub.RecordInteractions, request, timeout))

    async def set_account_status(
        self, user_id: str, status: AccountStatus, *, request_id: str = ""
    ) -> WriteResult:
        """Make an account NORMAL, SEED or SUSPENDED; as ``ScoreClient.set_account_status``."""
        request = _status_request(user_id, status, request_id)
        return write_result_of(await self._call(self.stub.SetAccountStatus, request, None))

    # ------------------------------------------------------------------ moderation

    async def suspend_cluster(
        self,
        user_ids: Iterable[str] = (),
        *,
        cluster_id: str = "",
        reason: str,
        request_id: str = "",
    ) -> ModerationAction:
        """Suspend accounts in one write; as ``ScoreClient.suspend_cluster``."""
        request = _cluster_request(
            pb.SuspendClusterRequest, user_ids, cluster_id, reason, request_id
        )
        return moderation_of((await self._call(self.stub.SuspendCluster, request, None)).action)

    async def invalidate_between(
        self,
        user_ids: Iterable[str] = (),
        *,
        cluster_id: str = "",
        reason: str,
        request_id: str = "",
    ) -> ModerationAction:
        """Set aside what passed between users; as ``ScoreClient.invalidate_between``."""
        request = _cluster_request(
            pb.InvalidateBetweenRequest, user_ids, cluster_id, reason, request_id
        )
        response = await self._call(self.stub.InvalidateBetween, request, None)
        return moderation_of(response.action)

    async def restore_between(
        self, action_id: int, *, reason: str, request_id: str = ""
    ) -> ModerationAction:
        """Reverse an invalidation; as ``ScoreClient.restore_between``."""
        request = pb.RestoreBetweenRequest(
            action_id=action_id, reason=reason, request_id=request_id
        )
        return moderation_of((await self._call(self.stub.RestoreBetween, request, None)).action)

    async def erase_user(
        self, user_id: str, *, reason: str, timeout: float | None = None
    ) -> Erasure:
        """Erase a user; as ``ScoreClient.erase_user``."""
        request = pb.EraseUserRequest(user_id=user_id, reason=reason)
        return erasure_of(await self._call(self.stub.EraseUser, request, timeout))
