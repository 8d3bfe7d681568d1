"""What every ScoreService call goes through, in one wrapper per method.

In order: authentication and the method's role (when auth is on), the caller's request
rate (keyed by token name, or by IP address for anonymous callers, so new connections
share a bucket), then the handler, which is given the caller; domain errors become
their status (``scoresvc.service.status``), anything else ``INTERNAL`` with nothing internal
leaked. Each call carries a request id (``x-request-id`` metadata, or one made up) back
in its trailers, success or error; it is counted and timed for the metrics and logged
with that id: writes and failures at INFO, reads at DEBUG (page-view traffic).

The server wraps the servicer's methods with ``CallGuard.admit`` when it builds the
service's handlers (``scoresvc.service.handlers.generic_handler``); health and reflection are
not wrapped.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import grpc
from grpc_status import rpc_status

from ..core.errors import RateLimited, ScoreError
from .auth import ANONYMOUS, WRITE_METHODS, Authenticator, AuthError, Caller
from .status import status, status_of

REQUEST_ID_HEADER = "x-request-id"

access_log = logging.getLogger("scoresvc.access")

#: Called with (method, status code name, seconds) after every call.
CallObserver = Callable[[str, str, float], None]
#: A servicer method: the request, the call's context and the admitted caller.
Handler = Callable[[Any, grpc.ServicerContext, Caller], Any]


@dataclass
class CallPolicy:
    """How calls are admitted: ``authenticator`` None turns auth off;
    ``rate_per_caller`` requests per second per caller (0: no limit), with bursts of
    twice that."""

    authenticator: Authenticator | None = None
    rate_per_caller: float = 0.0
    observer: CallObserver | None = None


class CallGuard:
    """Admits each call by ``policy``: ``admit`` wraps one method's handler."""

    def __init__(self, policy: CallPolicy | None = None) -> None:
        self.policy = policy or CallPolicy()
        self._limiter = (
            _RateLimiter(self.policy.rate_per_caller) if self.policy.rate_per_caller > 0 else None
        )

    def admit(self, name: str, handler: Handler) -> Callable[[Any, grpc.ServicerContext], Any]:
        """The gRPC behaviour of method ``name``: ``handler`` called with the caller."""
        authenticator = self.policy.authenticator
        limiter = self._limiter
        observer = self.policy.observer
        write = name in WRITE_METHODS

        def call(request: Any, context: grpc.ServicerContext) -> Any:
            started = time.perf_counter()
            code = "OK"
            caller = ANONYMOUS
            request_id = _request_id(context)
            context.set_trailing_metadata(((REQUEST_ID_HEADER, request_id),))
            try:
                if authenticator is not None and authenticator.enforcing():
                    caller = authenticator.caller(_metadata(context, "authorization"))
                    authenticator.authorize(caller, name)
                if limiter is not None:
                    limiter.take(_rate_key(caller, context))
                return handler(request, context, caller)
            except (AuthError, ScoreError) as error:
                found = status_of(error)
                code = _CODE_BY_NUMBER[found.code].name
                _abort(context, found, request_id)
            except Exception:
                if context.code() is not None:  # an abort already in flight
                    raise
                code = "INTERNAL"
                access_log.exception("%s request_id=%s failed", name, request_id)
                _abort(
                    context,
                    status(
                        grpc.StatusCode.INTERNAL,
                        f"internal error (request id {request_id})",
                        "INTERNAL",
                        metadata={"request_id": request_id},
                    ),
                    request_id,
                )
            finally:
                seconds = time.perf_counter() - started
                if observer is not None:
                    observer(name, code, seconds)
                level = logging.INFO if (write or code != "OK") else logging.DEBUG
                if access_log.isEnabledFor(level):
                    access_log.log(
                        level,
                        "%s %s caller=%s %.2f ms request_id=%s",
                        name,
                        code,
                        caller.name or "-",
                        seconds * 1e3,
                        request_id,
                        extra={
                            "method": name,
                            "code": code,
                            "caller": caller.name,
                            "ms": round(seconds * 1e3, 3),
                            "request_id": request_id,
                        },
                    )

        return call


_CODE_BY_NUMBER = {c.value[0]: c for c in grpc.StatusCode}


def _metadata(context: grpc.ServicerContext, key: str) -> str | None:
    for k, v in context.invocation_metadata():
        if k == key:
            return str(v)
    return None


def _request_id(context: grpc.ServicerContext) -> str:
    """The caller's ``x-request-id`` (its first 128 characters), or a new one."""
    return (_metadata(context, REQUEST_ID_HEADER) or uuid.uuid4().hex)[:128]


class _Status(
    collections.namedtuple("_Status", ("code", "details", "trailing_metadata")), grpc.Status
):
    pass


def _abort(context: grpc.ServicerContext, found: Any, request_id: str) -> None:
    """End the call with ``found`` (a ``google.rpc.Status``). Aborting replaces the
    trailers set so far, so the request id goes in with the status details."""
    details = rpc_status.to_status(found)
    trailers = (*details.trailing_metadata, (REQUEST_ID_HEADER, request_id))
    context.abort_with_status(_Status(details.code, details.details, trailers))


def _rate_key(caller: Caller, context: grpc.ServicerContext) -> str:
    """Whom the rate limit counts: the token, else the peer's IP address (its port
    changes with every connection). Peers read ``ipv4:10.0.0.7:52114``,
    ``ipv6:[::1]:52114`` or ``unix:/path``."""
    if caller.name:
        return f"caller {caller.name!r}"
    family, _, address = context.peer().partition(":")
    if family in ("ipv4", "ipv6"):
        address = address.rsplit(":", 1)[0].strip("[]")
    return f"address {address or family}"


class _RateLimiter:
    """A token bucket per caller: ``rate`` a second, bursts of ``2 * rate``."""

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self.burst = 2.0 * rate
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def take(self, key: str) -> None:
        now = time.monotonic()
        with self._lock:
            tokens, last = self._buckets.get(key, (self.burst, now))
            tokens = min(self.burst, tokens + (now - last) * self.rate)
            if tokens < 1.0:
                self._buckets[key] = (tokens, now)
                raise RateLimited(
                    f"{key} is over its {self.rate:g} requests per second",
                    retry_after_seconds=(1.0 - tokens) / self.rate,
                    reason="CALLER_RATE_LIMITED",
                )
            self._buckets[key] = (tokens - 1.0, now)
            if len(self._buckets) > 100_000:  # forget idle callers (full buckets)
                self._buckets = {
                    k: (t, at)
                    for k, (t, at) in self._buckets.items()
                    if t + (now - at) * self.rate < self.burst
                }
