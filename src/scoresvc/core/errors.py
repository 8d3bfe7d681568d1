"""Domain errors. The service maps each to one gRPC status in one place."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class FieldViolation:
    """One bad field: ``field`` in domain terms, ``index`` the row in a batch."""

    field: str
    description: str
    index: int | None = None


class ScoreError(Exception):
    """Base of the errors a caller can act on."""

    reason = "SCORESVC_ERROR"


class InvalidArgument(ScoreError):
    reason = "INVALID_ARGUMENT"

    def __init__(self, violations: list[FieldViolation], total: int | None = None):
        self.violations = violations
        self.total = len(violations) if total is None else total
        first = violations[0]
        where = first.field if first.index is None else f"{first.field} (row {first.index})"
        more = f" (and {self.total - 1} more)" if self.total > 1 else ""
        super().__init__(f"{where}: {first.description}{more}")

    def renamed(self, path: Callable[[FieldViolation], str]) -> InvalidArgument:
        """The same violations with fields named by ``path`` (the wire's dotted paths)."""
        return InvalidArgument(
            [FieldViolation(path(v), v.description) for v in self.violations], self.total
        )


class NotFound(ScoreError):
    def __init__(self, what: str, field: str, reason: str = "USER_NOT_FOUND"):
        self.field = field
        self.reason = reason
        super().__init__(what)


class RateLimited(ScoreError):
    reason = "ENDORSEMENT_LIMIT_EXCEEDED"

    def __init__(self, message: str, retry_after_seconds: float, reason: str | None = None):
        self.retry_after_seconds = retry_after_seconds
        if reason is not None:
            self.reason = reason
        super().__init__(message)


class Conflict(ScoreError):
    """A request id reused for a different request."""

    reason = "REQUEST_ID_REUSED"


class StorageError(ScoreError):
    """The store could not take a write (full disk, read-only directory, ...): the
    write was not applied."""

    reason = "STORAGE_UNAVAILABLE"
