"""The blocking client."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import grpc
import grpc.aio
import numpy as np

from ..core.change import ChangeReport
from ..core.history import HistoryPoint
from ..core.model import AccountStatus
from ..core.moderation import ModerationAction
from ..core.results import (
    BatchScores,
    EndorsementEvent,
    Erasure,
    Ranking,
    TopicSummary,
    UserScore,
    WriteResult,
)
from ..core.suspects import SuspectKind, SuspectReport
from ..service.convert import (
    batch_scores_of,
    change_of,
    endorsement_of,
    erasure_of,
    history_point_of,
    moderation_of,
    ranking_of,
    score_of,
    suspect_report_of,
    topic_of,
    write_result_of,
)
from ..v1 import score_service_pb2 as pb
from ..v1 import score_service_pb2_grpc as pb_grpc
from .errors import ScoreServiceError
from .requests import (
    DISTRUST_FIELDS,
    InteractionRow,
    call_metadata,
    change_request,
    cluster_request,
    columns_request,
    endorsement_request,
    history_request,
    page_request,
    rows_request,
    score_request,
    status_request,
    suspects_request,
)


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
        self.metadata = call_metadata(metadata, token)

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
        request = score_request(user_id, topic, min_sequence, top_contributors)
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
            request = page_request(user_id, given, page_size, token)
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
            request = suspects_request(kind, page_size, token)
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
            request = history_request(user_id, topic, start_time, end_time, token)
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
        request = change_request(user_id, from_time, to_time)
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
        request = endorsement_request(
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
        request = endorsement_request(
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
        request = endorsement_request(
            pb.DistrustRequest,
            distruster_id,
            distrusted_id,
            topic,
            event_time,
            request_id,
            DISTRUST_FIELDS,
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
        request = endorsement_request(
            pb.RetractDistrustRequest,
            distruster_id,
            distrusted_id,
            topic,
            event_time,
            request_id,
            DISTRUST_FIELDS,
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
        request = rows_request(rows, request_id)
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
        request = columns_request(
            user_ids, actor_index, target_index, kind, event_time_seconds, weight, request_id
        )
        return write_result_of(self._call(self.stub.RecordInteractions, request, timeout))

    def set_account_status(
        self, user_id: str, status: AccountStatus, *, request_id: str = ""
    ) -> WriteResult:
        """Make an account NORMAL, a trusted SEED, or SUSPENDED (admin role)."""
        request = status_request(user_id, status, request_id)
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
        request = cluster_request(
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
        request = cluster_request(
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
