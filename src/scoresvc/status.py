"""Domain errors to gRPC status, in one place.

A ``ScoreError`` becomes its status with ``google.rpc`` details (``BadRequest`` field
violations with dotted paths, ``ErrorInfo`` with an UPPER_SNAKE reason in domain
``scoresvc``, ``RetryInfo`` when waiting helps). ``scoresvc.interceptor`` applies it to
every call; anything else becomes ``INTERNAL`` with nothing internal leaked.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2

from .errors import Conflict, InvalidArgument, NotFound, RateLimited, ScoreError, StorageError

DOMAIN = "scoresvc"


class RpcError(ScoreError):
    """An error raised by the service layer itself, with its own code and details."""

    def __init__(
        self,
        code: grpc.StatusCode,
        message: str,
        reason: str,
        violations: Iterable[tuple[str, str]] = (),
    ):
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.violations = list(violations)


def invalid(field: str, description: str, reason: str = "INVALID_ARGUMENT") -> RpcError:
    """An INVALID_ARGUMENT naming one field."""
    return RpcError(
        grpc.StatusCode.INVALID_ARGUMENT, f"{field}: {description}", reason, [(field, description)]
    )


def _pack(message: Any) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)
    return packed


def status(
    code: grpc.StatusCode,
    message: str,
    reason: str,
    violations: Iterable[tuple[str, str]] = (),
    retry_after: float | None = None,
    metadata: dict[str, str] | None = None,
) -> status_pb2.Status:
    details = []
    found = list(violations)
    if found:
        details.append(
            _pack(
                error_details_pb2.BadRequest(
                    field_violations=[
                        error_details_pb2.BadRequest.FieldViolation(field=f, description=d)
                        for f, d in found
                    ]
                )
            )
        )
    details.append(
        _pack(error_details_pb2.ErrorInfo(reason=reason, domain=DOMAIN, metadata=metadata or {}))
    )
    if retry_after is not None:
        delay = duration_pb2.Duration()
        delay.FromMilliseconds(int(retry_after * 1000))
        details.append(_pack(error_details_pb2.RetryInfo(retry_delay=delay)))
    return status_pb2.Status(code=getattr(code_pb2, code.name), message=message, details=details)


def status_of(error: ScoreError) -> status_pb2.Status:
    """The status for a domain error. The servicer has already put field violations
    in the request's terms (``interactions[3].target_id``)."""
    if isinstance(error, RpcError):
        return status(error.code, str(error), error.reason, error.violations)
    if isinstance(error, InvalidArgument):
        violations = [(v.field, v.description) for v in error.violations]
        return status(
            grpc.StatusCode.INVALID_ARGUMENT,
            str(error),  # "field: description (and N more)", as the service's own checks
            "INVALID_ARGUMENT",
            violations,
            metadata={"violations": str(error.total)},
        )
    if isinstance(error, NotFound):
        return status(
            grpc.StatusCode.NOT_FOUND, str(error), error.reason, metadata={"field": error.field}
        )
    if isinstance(error, RateLimited):
        return status(
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            str(error),
            error.reason,
            retry_after=error.retry_after_seconds,
        )
    if isinstance(error, StorageError):
        return status(grpc.StatusCode.UNAVAILABLE, str(error), error.reason, retry_after=1.0)
    if isinstance(error, Conflict):
        return status(
            grpc.StatusCode.INVALID_ARGUMENT,
            str(error),
            error.reason,
            [("request_id", "was already used for a different request")],
        )
    return status(grpc.StatusCode.INTERNAL, "internal error", "INTERNAL")
