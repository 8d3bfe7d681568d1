"""The asyncio client: the blocking client's calls, awaited."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Sequence
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
        self.metadata = call_metadata(metadata, token)

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
        request = score_request(user_id, topic, min_sequence, top_contributors)
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
            request = page_request(user_id, given, page_size, token)
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
            request = suspects_request(kind, page_size, token)
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
            request = history_request(user_id, topic, start_time, end_time, token)
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
        request = change_request(user_id, from_time, to_time)
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
        request = endorsement_request(
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
        request = endorsement_request(
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
        request = endorsement_request(
            pb.DistrustRequest,
            distruster_id,
            distrusted_id,
            topic,
            event_time,
            request_id,
            DISTRUST_FIELDS,
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
        request = endorsement_request(
            pb.RetractDistrustRequest,
            distruster_id,
            distrusted_id,
            topic,
            event_time,
            request_id,
            DISTRUST_FIELDS,
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
        request = rows_request(rows, request_id)
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
        request = columns_request(
            user_ids, actor_index, target_index, kind, event_time_seconds, weight, request_id
        )
        return write_result_of(await self._call(self.stub.RecordInteractions, request, timeout))

    async def set_account_status(
        self, user_id: str, status: AccountStatus, *, request_id: str = ""
    ) -> WriteResult:
        """Make an account NORMAL, SEED or SUSPENDED; as ``ScoreClient.set_account_status``."""
        request = status_request(user_id, status, request_id)
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
        request = cluster_request(
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
        request = cluster_request(
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
