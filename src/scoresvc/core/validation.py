"""Checks of write requests before they reach the engine's state: each raises
``InvalidArgument`` naming every offending field (the first ``MAX_VIOLATIONS`` of them,
in row order, with the count of all)."""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import numpy as np

from .errors import FieldViolation, InvalidArgument
from .model import InteractionKind
from .moderation import ModerationKind
from .users import MAX_ID_BYTES, UserIds

MAX_VIOLATIONS = 100
TOO_LONG = f"must be at most {MAX_ID_BYTES} bytes of UTF-8"
NOT_FINITE = "must be a finite number of seconds"
#: The largest interaction weight: a batch of a million rows at this weight still sums
#: to 1e12 times a kind's weight, far from overflowing a double.
MAX_WEIGHT = 1e6
BAD_WEIGHT = "must be a finite number above 0"


def id_violations(users: UserIds) -> list[tuple[int, str]]:
    """``(position, description)`` of each invalid id, in position order."""
    bad_length, bad_text = users.invalid()
    if len(bad_length) == 0 and len(bad_text) == 0:
        return []
    lengths = users.lengths()
    found = [
        (int(j), "must be a non-empty string" if lengths[j] == 0 else TOO_LONG) for j in bad_length
    ]
    found += [(int(j), "must be valid UTF-8") for j in bad_text]
    return sorted(found)


def check_user_ids(users: UserIds) -> None:
    """Every id valid: the engine keeps ids as bytes and readers decode them, so even
    trusted input (a bulk load) may not bring one that is empty, too long or not UTF-8."""
    bad = [FieldViolation("user_ids", d, j) for j, d in id_violations(users)]
    if bad:
        raise _invalid(bad, len(bad))


def _invalid(found: list[FieldViolation], total: int) -> InvalidArgument:
    return InvalidArgument(found[:MAX_VIOLATIONS], total=total)


def check_user_id(user_id: str, field: str, index: int | None = None) -> FieldViolation | None:
    if not isinstance(user_id, str) or not user_id:
        return FieldViolation(field, "must be a non-empty string", index)
    try:
        size = len(user_id.encode("utf-8"))
    except UnicodeEncodeError:
        return FieldViolation(field, "must be valid UTF-8", index)
    if size > MAX_ID_BYTES:
        return FieldViolation(field, TOO_LONG, index)
    return None


def column_violations(
    actor: np.ndarray,
    target: np.ndarray,
    kind: np.ndarray,
    ts: np.ndarray,
    now: float,
    skew: float,
    weight: np.ndarray | None = None,
) -> tuple[list[FieldViolation], int]:
    """The first violations of a columnar batch in row order, and the count of all
    (``weight`` None: every row weighs 1)."""
    finite = np.isfinite(ts)  # one message for NaN and infinities, nothing more
    checks = [
        ("target_id", actor == target, "must differ from actor_id"),
        (
            "kind",
            (kind < InteractionKind.LIKE) | (kind > InteractionKind.RESHARE),
            "must be LIKE, MENTION, REPLY or RESHARE",
        ),
        ("event_time", ~finite, NOT_FINITE),
        ("event_time", finite & (ts < 0), "must be a time after 1970"),
        ("event_time", finite & (ts > now + skew), f"is more than {skew:g} s in the future"),
    ]
    if weight is not None:
        # NaN fails every comparison, so "not above 0" catches it with the infinities.
        checks.append(("weight", ~(weight > 0) | (weight == np.inf), BAD_WEIGHT))
        checks.append(
            (
                "weight",
                np.isfinite(weight) & (weight > MAX_WEIGHT),
                f"must be at most {MAX_WEIGHT:.0f}",
            )
        )
    found: list[tuple[int, FieldViolation]] = []
    total = 0
    for field, mask, description in checks:
        bad = np.flatnonzero(mask)
        total += len(bad)
        found.extend(
            (int(i), FieldViolation(field, description, int(i))) for i in bad[:MAX_VIOLATIONS]
        )
    found.sort(key=lambda item: item[0])
    return [v for _, v in found[:MAX_VIOLATIONS]], total


def check_rows(
    users: UserIds,
    actor: np.ndarray,
    target: np.ndarray,
    kind: np.ndarray,
    ts: np.ndarray,
    now: float,
    skew: float,
    weight: np.ndarray | None = None,
) -> None:
    """Rows dictionary-encoded: a bad id is reported on each row that uses it, as
    ``actor_id`` or ``target_id``, with the rows' other violations. Only the ids are
    checked unless one is bad (``check_columns`` checks the rest)."""
    bad = id_violations(users)
    if not bad:
        return
    found: list[tuple[int, FieldViolation]] = []
    for j, description in bad:
        for side, column in (("actor_id", actor), ("target_id", target)):
            found.extend(
                (int(i), FieldViolation(side, description, int(i)))
                for i in np.flatnonzero(column == j)[:MAX_VIOLATIONS]
            )
    more, more_total = column_violations(actor, target, kind, ts, now, skew, weight)
    found.sort(key=lambda item: item[0])
    listed = [v for _, v in found][:MAX_VIOLATIONS]
    raise _invalid(listed + more, len(found) + more_total)


def encode_lists(
    actor_ids: Sequence[str],
    target_ids: Sequence[str],
    kinds: Sequence[int],
    times: Sequence[float] | np.ndarray,
    weights: Sequence[float] | np.ndarray | None = None,
) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
    """Parallel lists of rows, dictionary-encoded: the distinct ids, actor and target
    indexes, kinds, times and weights (None when not given)."""
    n = len(actor_ids)
    lengths = {len(target_ids), len(kinds), len(times), n}
    if weights is not None:
        lengths.add(len(weights))
    if lengths != {n}:
        raise InvalidArgument([FieldViolation("interactions", "lists differ in length")])
    # Ids in order of first use, actor before target row by row (as the wire parser
    # builds them), so both routes fingerprint a batch alike.
    users = list(dict.fromkeys(itertools.chain.from_iterable(zip(actor_ids, target_ids))))
    index = {u: j for j, u in enumerate(users)}
    return (
        users,
        np.fromiter(map(index.__getitem__, actor_ids), np.int64, n),
        np.fromiter(map(index.__getitem__, target_ids), np.int64, n),
        np.fromiter(kinds, np.int64, n),
        np.fromiter(times, np.float64, n),
        None if weights is None else np.fromiter(weights, np.float64, n),
    )


def check_lengths(*columns: np.ndarray) -> None:
    if len({len(c) for c in columns}) > 1:
        raise InvalidArgument([FieldViolation("columns", "all columns must have the same length")])


def check_columns(
    users: UserIds,
    actor_index: np.ndarray,
    target_index: np.ndarray,
    kind: np.ndarray,
    ts: np.ndarray,
    now: float,
    skew: float,
    users_checked: bool = False,
    weight: np.ndarray | None = None,
) -> None:
    """Columns of indexes into ``users``, kinds, resolved times and weights (of one
    length: ``check_lengths``)."""
    violations, total = column_violations(actor_index, target_index, kind, ts, now, skew, weight)
    bad_users = (
        [] if users_checked else [FieldViolation("user_ids", d, j) for j, d in id_violations(users)]
    )
    bad_index, index_total = index_violations(len(users), actor_index, target_index)
    if violations or bad_users or bad_index:
        everything = bad_users + bad_index + violations
        raise _invalid(everything, total + len(bad_users) + index_total)


def index_violations(
    n_users: int, actor: np.ndarray, target: np.ndarray
) -> tuple[list[FieldViolation], int]:
    """The first 100 indexes outside ``user_ids`` in row order, each named by its
    column, and how many there are."""
    found: list[tuple[int, FieldViolation]] = []
    total = 0
    for column, values in (("actor_index", actor), ("target_index", target)):
        bad = np.flatnonzero((values < 0) | (values >= n_users))
        total += len(bad)
        found.extend(
            (int(i), FieldViolation(column, "must index user_ids", int(i)))
            for i in bad[:MAX_VIOLATIONS]
        )
    found.sort(key=lambda item: item[0])
    return [v for _, v in found[:MAX_VIOLATIONS]], total


def check_endorsement(
    endorser_id: str,
    endorsee_id: str,
    topic: str,
    ts: float,
    now: float,
    skew: float,
    fields: tuple[str, str] = ("endorser_id", "endorsee_id"),
) -> None:
    """One endorsement, distrust or retraction at resolved time ``ts``; ``fields``
    names the two users as the caller's request does."""
    giver, receiver = fields
    violations = [
        v
        for v in (
            check_user_id(endorser_id, giver),
            check_user_id(endorsee_id, receiver),
        )
        if v
    ]
    if not violations and endorser_id == endorsee_id:
        violations.append(FieldViolation(receiver, f"must differ from {giver}"))
    if not isinstance(topic, str) or len(topic.encode("utf-8")) > MAX_ID_BYTES:
        violations.append(FieldViolation("topic", TOO_LONG))
    if not math.isfinite(ts):
        violations.append(FieldViolation("event_time", NOT_FINITE))
    elif ts < 0:
        violations.append(FieldViolation("event_time", "must be a time after 1970"))
    elif ts > now + skew:
        violations.append(FieldViolation("event_time", f"is more than {skew:g} s in the future"))
    if violations:
        raise InvalidArgument(violations)


#: At most this many accounts in one moderation action (an invalidation looks at
#: every ordered pair among them).
MAX_MODERATION_USERS = 1000
#: The longest reason a moderation action keeps.
MAX_REASON_BYTES = 4096


def check_moderation(kind: ModerationKind, user_ids: list[str], reason: str) -> None:
    """A moderation action names its accounts (``user_ids``; none for a restore) and
    says why (``reason``); ``InvalidArgument`` naming every bad field otherwise."""
    bad: list[FieldViolation] = []
    if not isinstance(reason, str) or not reason.strip():
        bad.append(FieldViolation("reason", "must say why (a non-empty string)"))
    elif len(reason.encode("utf-8")) > MAX_REASON_BYTES:
        bad.append(FieldViolation("reason", f"must be at most {MAX_REASON_BYTES} bytes"))
    restore = kind == ModerationKind.RESTORE_BETWEEN
    least = 0 if restore else 2 if kind == ModerationKind.INVALIDATE_BETWEEN else 1
    if len(set(user_ids)) < least:
        bad.append(FieldViolation("user_ids", f"must name at least {least} distinct accounts"))
    if len(user_ids) > MAX_MODERATION_USERS:
        bad.append(FieldViolation("user_ids", f"may name at most {MAX_MODERATION_USERS} accounts"))
    if restore and user_ids:
        bad.append(FieldViolation("user_ids", "a restore names the invalidation, not accounts"))
    for i, user_id in enumerate(user_ids[:MAX_MODERATION_USERS]):
        found = check_user_id(user_id, "user_ids", i)
        if found is not None:
            bad.append(found)
    if bad:
        raise InvalidArgument(bad)


def check_erasure(user_id: str, reason: str) -> None:
    """An erasure names its account and says why; ``InvalidArgument`` otherwise."""
    bad = [v for v in (check_user_id(user_id, "user_id"),) if v is not None]
    if not isinstance(reason, str) or not reason.strip():
        bad.append(FieldViolation("reason", "must say why (a non-empty string)"))
    elif len(reason.encode("utf-8")) > MAX_REASON_BYTES:
        bad.append(FieldViolation("reason", f"must be at most {MAX_REASON_BYTES} bytes"))
    if bad:
        raise InvalidArgument(bad)
