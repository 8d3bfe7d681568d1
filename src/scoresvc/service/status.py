"""Domain errors to gRPC status, in one place.

A ``ScoreError`` (or an ``AuthError``) becomes the status its class has in one table,
with ``google.rpc`` details (``BadRequest`` field violations with dotted paths,
``ErrorInfo`` with an UPPER_SNAKE reason in domain ``scoresvc``, ``RetryInfo`` when
waiting helps). ``scoresvc.service.interceptor`` applies it to every call; anything else
becomes ``INTERNAL`` with nothing internal leaked.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2

from ..core.errors import Conflict, InvalidArgument, NotFound, RateLimited, ScoreError, StorageError
from .auth import AuthError

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


def _auth(error: AuthError) -> status_pb2.Status:
    code = grpc.StatusCode.UNAUTHENTICATED
    if error.permission:
        code = grpc.StatusCode.PERMISSION_DENIED
    return status(code, str(error), code.name)


def _rpc(error: RpcError) -> status_pb2.Status:
    return status(error.code, str(error), error.reason, error.violations)


def _invalid(error: InvalidArgument) -> status_pb2.Status:
    return status(
        grpc.StatusCode.INVALID_ARGUMENT,
        str(error),  # "field: description (and N more)", as the service's own checks
        "INVALID_ARGUMENT",
        [(v.field, v.description) for v in error.violations],
        metadata={"violations": str(error.total)},
    )


def _not_found(error: NotFound) -> status_pb2.Status:
    return status(
        grpc.StatusCode.NOT_FOUND, str(error), error.reason, metadata={"field": error.field}
    )


def _rate_limited(error: RateLimited) -> status_pb2.Status:
    return status(
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        str(error),
        error.reason,
        retry_after=error.retry_after_seconds,
    )


def _storage(error: StorageError) -> status_pb2.Status:
    return status(grpc.StatusCode.UNAVAILABLE, str(error), error.reason, retry_after=1.0)


def _conflict(error: Conflict) -> status_pb2.Status:
    return status(
        grpc.StatusCode.INVALID_ARGUMENT,
        str(error),
        error.reason,
        [("request_id", "was already used for a different request")],
    )


#: Each domain error's status; an error's nearest class in the table decides.
_STATUS_BY_ERROR: dict[type[Exception], Callable[[Any], status_pb2.Status]] = {
    AuthError: _auth,
    RpcError: _rpc,
    InvalidArgument: _invalid,
    NotFound: _not_found,
    RateLimited: _rate_limited,
    StorageError: _storage,
    Conflict: _conflict,
}


def status_of(error: ScoreError | AuthError) -> status_pb2.Status:
    """The status for a domain or authentication error. The servicer has already put
    field violations in the request's terms (``interactions[3].target_id``)."""
    for kind in type(error).__mro__:
        found = _STATUS_BY_ERROR.get(kind)
        if found is not None:
            return found(error)
    return status(grpc.StatusCode.INTERNAL, "internal error", "INTERNAL")
