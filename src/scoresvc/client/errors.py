"""Every failed call of either client raises ``ScoreServiceError``, with the
``google.rpc.Status`` details decoded.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

import grpc
import grpc.aio
from google.rpc import error_details_pb2, status_pb2

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
