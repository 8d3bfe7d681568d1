"""The requests both clients build, so the blocking and the asyncio client cannot
drift apart.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, cast

import numpy as np

from ..core.model import AccountStatus, InteractionKind
from ..core.suspects import SuspectKind
from ..service.convert import (
    status_to_wire,
    timestamp,
)
from ..v1 import score_service_pb2 as pb

#: An interaction row: (actor_id, target_id, kind, unix seconds or None for server time),
#: optionally followed by a weight (how many interactions it counts as; None or absent: 1).
InteractionRow = (
    tuple[str, str, InteractionKind | int, float | None]
    | tuple[str, str, InteractionKind | int, float | None, float | None]
)


def score_request(
    user_id: str, topic: str, min_sequence: int, top_contributors: int
) -> pb.ScoreRequest:
    return pb.ScoreRequest(
        user_id=user_id, topic=topic, min_sequence=min_sequence, top_contributors=top_contributors
    )


DISTRUST_FIELDS = ("distruster_id", "distrusted_id")


def endorsement_request(
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


def rows_request(rows: Iterable[InteractionRow], request_id: str) -> pb.RecordInteractionsRequest:
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


def columns_request(
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


def status_request(
    user_id: str, status: AccountStatus, request_id: str
) -> pb.SetAccountStatusRequest:
    return pb.SetAccountStatusRequest(
        user_id=user_id,
        status=cast(Any, status_to_wire(AccountStatus(status))),
        request_id=request_id,
    )


def page_request(user_id: str, given: bool, page_size: int, token: str) -> Any:
    direction = pb.ENDORSEMENT_DIRECTION_GIVEN if given else pb.ENDORSEMENT_DIRECTION_RECEIVED
    return pb.ListEndorsementsRequest(
        user_id=user_id, direction=direction, page_size=page_size, page_token=token
    )


def suspects_request(
    kind: SuspectKind | int | None, page_size: int, token: str
) -> pb.ListSuspectsRequest:
    return pb.ListSuspectsRequest(kind=cast(Any, int(kind or 0)), limit=page_size, page_token=token)


def cluster_request(
    message: Any, user_ids: Iterable[str], cluster_id: str, reason: str, request_id: str
) -> Any:
    """A SuspendCluster or InvalidateBetween request: ``user_ids`` or ``cluster_id``."""
    return message(
        user_ids=list(user_ids), cluster_id=cluster_id, reason=reason, request_id=request_id
    )


def change_request(
    user_id: str, from_time: float, to_time: float | None
) -> pb.ExplainChangeRequest:
    request = pb.ExplainChangeRequest(user_id=user_id)
    request.from_time.CopyFrom(timestamp(from_time))
    if to_time is not None:
        request.to_time.CopyFrom(timestamp(to_time))
    return request


def history_request(
    user_id: str, topic: str, start_time: float | None, end_time: float | None, token: str
) -> pb.ScoreHistoryRequest:
    request = pb.ScoreHistoryRequest(user_id=user_id, topic=topic, page_token=token)
    if start_time is not None:
        request.start_time.CopyFrom(timestamp(start_time))
    if end_time is not None:
        request.end_time.CopyFrom(timestamp(end_time))
    return request


def call_metadata(metadata: Sequence[tuple[str, str]], token: str | None) -> list[tuple[str, str]]:
    if token:
        return [*metadata, ("authorization", f"Bearer {token}")]
    return list(metadata)


# ------------------------------------------------------------------ blocking
