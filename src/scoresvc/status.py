"""Domain errors to gRPC status, in one place.

Every RPC runs behind ``ErrorInterceptor``: a ``ScoreError`` becomes its status with
``google.rpc`` details (``BadRequest`` field violations with dotted paths, ``ErrorInfo``
with an UPPER_SNAKE reason in domain ``scoresvc``, ``RetryInfo`` when waiting helps);
anything else becomes ``INTERNAL`` with nothing internal leaked, logged with the
call's request id.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable
from typing import Any

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from .errors import Conflict, InvalidArgument, NotFound, RateLimited, ScoreError, StorageError

DOMAIN = "scoresvc"
REQUEST_ID_HEADER = "x-request-id"
log = logging.getLogger("scoresvc.rpc")


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


def _status(
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
        return _status(error.code, str(error), error.reason, error.violations)
    if isinstance(error, InvalidArgument):
        violations = [(v.field, v.description) for v in error.violations]
        more = error.total - len(error.violations)
        message = f"{len(error.violations) + more} invalid field(s): " + "; ".join(
            f"{f}: {d}" for f, d in violations[:3]
        )
        return _status(
            grpc.StatusCode.INVALID_ARGUMENT,
            message,
            "INVALID_ARGUMENT",
            violations,
            metadata={"violations": str(error.total)},
        )
    if isinstance(error, NotFound):
        return _status(
            grpc.StatusCode.NOT_FOUND, str(error), error.reason, metadata={"field": error.field}
        )
    if isinstance(error, RateLimited):
        return _status(
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            str(error),
            error.reason,
            retry_after=error.retry_after_seconds,
        )
    if isinstance(error, StorageError):
        return _status(grpc.StatusCode.UNAVAILABLE, str(error), error.reason, retry_after=1.0)
    if isinstance(error, Conflict):
        return _status(
            grpc.StatusCode.INVALID_ARGUMENT,
            str(error),
            error.reason,
            [("request_id", "was already used for a different request")],
        )
    return _status(grpc.StatusCode.INTERNAL, "internal error", "INTERNAL")


def request_id_of(context: grpc.ServicerContext) -> str:
    for key, value in context.invocation_metadata():
        if key == REQUEST_ID_HEADER:
            return str(value)[:128]
    return uuid.uuid4().hex


class ErrorInterceptor(grpc.ServerInterceptor):
    """Runs each unary RPC with domain errors mapped to status (see module doc).

    The wrapped handler is built once per method, and the request id is looked up
    only when a call fails: the success path adds one try block to a Score call.
    """

    def __init__(self) -> None:
        self._wrapped: dict[str, grpc.RpcMethodHandler] = {}

    def intercept_service(self, continuation, handler_call_details):  # type: ignore[no-untyped-def]
        method = handler_call_details.method
        wrapped = self._wrapped.get(method)
        if wrapped is not None:
            return wrapped
        handler = continuation(handler_call_details)
        if handler is None or handler.unary_unary is None:
            return handler
        wrapped = grpc.unary_unary_rpc_method_handler(
            _guarded(method, handler.unary_unary),
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )
        self._wrapped[method] = wrapped
        return wrapped


def _guarded(method: str, inner: Any) -> Any:
    def guarded(request: Any, context: grpc.ServicerContext) -> Any:
        try:
            return inner(request, context)
        except ScoreError as error:
            request_id = request_id_of(context)
            log.info("%s request_id=%s %s: %s", method, request_id, type(error).__name__, error)
            context.set_trailing_metadata(((REQUEST_ID_HEADER, request_id),))
            context.abort_with_status(rpc_status.to_status(status_of(error)))
        except Exception:
            if context.code() is not None:  # an abort already in flight
                raise
            request_id = request_id_of(context)
            log.exception("%s request_id=%s failed", method, request_id)
            context.set_trailing_metadata(((REQUEST_ID_HEADER, request_id),))
            context.abort_with_status(
                rpc_status.to_status(
                    _status(
                        grpc.StatusCode.INTERNAL,
                        f"internal error (request id {request_id})",
                        "INTERNAL",
                        metadata={"request_id": request_id},
                    )
                )
            )

    return guarded
