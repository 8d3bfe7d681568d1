"""A typed Python client for scoresvc.v1.ScoreService.

    with ScoreClient("127.0.0.1:50051") as client:
        seq = client.endorse("ana", "bo", "python")
        print(client.score("bo", "python", min_sequence=seq).score)

Errors are ``grpc.RpcError``; ``error_details(error)`` decodes the status details.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import grpc
import numpy as np
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from .convert import status_to_wire, timestamp
from .model import AccountStatus, InteractionKind
from .v1 import score_service_pb2 as pb
from .v1 import score_service_pb2_grpc as pb_grpc


@dataclass(frozen=True)
class ErrorDetails:
    """The decoded ``google.rpc.Status`` of a failed call."""

    code: grpc.StatusCode
    message: str
    reason: str = ""
    metadata: dict[str, str] = field(default_factory=dict)
    field_violations: list[tuple[str, str]] = field(default_factory=list)
    retry_after_seconds: float | None = None


def error_details(error: grpc.RpcError) -> ErrorDetails:
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    code = error.code()  # type: ignore[attr-defined]
    if status is None:
        return ErrorDetails(code, error.details() or "")  # type: ignore[attr-defined]
    out: dict[str, Any] = {"reason": "", "metadata": {}, "field_violations": []}
    for detail in status.details:
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
            out["retry_after_seconds"] = retry.retry_delay.ToMilliseconds() / 1000.0
    return ErrorDetails(code, status.message, **out)


class ScoreClient:
    """Blocking client; one channel, safe to share between threads."""

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
        """``credentials``: TLS (``grpc.ssl_channel_credentials``), else plaintext;
        ``token``: sent as ``authorization: Bearer <token>`` on every call."""
        if token:
            metadata = [*metadata, ("authorization", f"Bearer {token}")]
        if credentials is None:
            self.channel = grpc.insecure_channel(target, options=list(options))
        else:
            self.channel = grpc.secure_channel(target, credentials, options=list(options))
        self.stub = pb_grpc.ScoreServiceStub(self.channel)
        self.timeout = timeout
        self.metadata = list(metadata)

    def close(self) -> None:
        self.channel.close()

    def __enter__(self) -> ScoreClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(self, method: Any, request: Any, timeout: float | None) -> Any:
        return method(
            request, timeout=self.timeout if timeout is None else timeout, metadata=self.metadata
        )

    # ------------------------------------------------------------------ reads

    def score(
        self,
        user_id: str,
        topic: str = "",
        *,
        min_sequence: int = 0,
        top_contributors: int = 0,
        timeout: float | None = None,
    ) -> pb.ScoreResponse:
        request = pb.ScoreRequest(
            user_id=user_id,
            topic=topic,
            min_sequence=min_sequence,
            top_contributors=top_contributors,
        )
        return self._call(self.stub.Score, request, timeout)

    def batch_score(
        self,
        user_ids: Iterable[str],
        topic: str = "",
        *,
        min_sequence: int = 0,
        timeout: float | None = None,
    ) -> pb.BatchScoreResponse:
        request = pb.BatchScoreRequest(
            user_ids=list(user_ids), topic=topic, min_sequence=min_sequence
        )
        return self._call(self.stub.BatchScore, request, timeout)

    def top_users(
        self,
        limit: int = 10,
        topic: str = "",
        *,
        min_sequence: int = 0,
        timeout: float | None = None,
    ) -> pb.TopUsersResponse:
        request = pb.TopUsersRequest(limit=limit, topic=topic, min_sequence=min_sequence)
        return self._call(self.stub.TopUsers, request, timeout)

    def list_endorsements(
        self, user_id: str, *, given: bool = True, page_size: int = 100
    ) -> Iterator[pb.EndorsementEvent]:
        """Every entry of the user's audit trail, newest first, fetched page by page."""
        direction = pb.ENDORSEMENT_DIRECTION_GIVEN if given else pb.ENDORSEMENT_DIRECTION_RECEIVED
        token = ""
        while True:
            page = self._call(
                self.stub.ListEndorsements,
                pb.ListEndorsementsRequest(
                    user_id=user_id, direction=direction, page_size=page_size, page_token=token
                ),
                None,
            )
            yield from page.endorsements
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
    ) -> int:
        """Endorse (or refresh an endorsement); returns the write's sequence number."""
        request = pb.EndorseRequest(
            endorser_id=endorser_id, endorsee_id=endorsee_id, topic=topic, request_id=request_id
        )
        return self._endorsement(self.stub.Endorse, request, event_time)

    def retract(
        self,
        endorser_id: str,
        endorsee_id: str,
        topic: str = "",
        *,
        event_time: float | None = None,
        request_id: str = "",
    ) -> int:
        """Retract a live endorsement; returns the write's sequence number."""
        request = pb.RetractEndorsementRequest(
            endorser_id=endorser_id, endorsee_id=endorsee_id, topic=topic, request_id=request_id
        )
        return self._endorsement(self.stub.RetractEndorsement, request, event_time)

    def _endorsement(self, method: Any, request: Any, event_time: float | None) -> int:
        if event_time is not None:
            request.event_time.CopyFrom(timestamp(event_time))
        return int(self._call(method, request, None).sequence)

    def record_interactions(
        self,
        rows: Iterable[tuple[str, str, InteractionKind | int, float | None]],
        *,
        request_id: str = "",
        timeout: float | None = None,
    ) -> pb.RecordInteractionsResponse:
        """Rows of (actor_id, target_id, kind, unix seconds or None for server time)."""
        interactions = []
        for actor, target, kind, when in rows:
            m = pb.Interaction(actor_id=actor, target_id=target, kind=cast(Any, int(kind)))
            if when is not None:
                m.event_time.CopyFrom(timestamp(when))
            interactions.append(m)
        request = pb.RecordInteractionsRequest(interactions=interactions, request_id=request_id)
        return self._call(self.stub.RecordInteractions, request, timeout)

    def record_interaction_columns(
        self,
        user_ids: Sequence[str],
        actor_index: np.ndarray,
        target_index: np.ndarray,
        kind: np.ndarray,
        event_time_seconds: np.ndarray | None = None,
        *,
        request_id: str = "",
        timeout: float | None = None,
    ) -> pb.RecordInteractionsResponse:
        """A columnar batch: indexes into ``user_ids``, kinds 1-4, unix seconds."""
        columns = pb.InteractionColumns(
            user_ids=list(user_ids),
            actor_index=np.asarray(actor_index, "<u4").tobytes(),
            target_index=np.asarray(target_index, "<u4").tobytes(),
            kind=np.asarray(kind, np.uint8).tobytes(),
            event_time_seconds=b""
            if event_time_seconds is None
            else np.asarray(event_time_seconds, "<f8").tobytes(),
        )
        request = pb.RecordInteractionsRequest(columns=columns, request_id=request_id)
        return self._call(self.stub.RecordInteractions, request, timeout)

    def set_account_status(
        self, user_id: str, status: AccountStatus, *, request_id: str = ""
    ) -> int:
        request = pb.SetAccountStatusRequest(
            user_id=user_id, status=cast(Any, status_to_wire(status)), request_id=request_id
        )
        return int(self._call(self.stub.SetAccountStatus, request, None).sequence)
