"""Raw events as numpy columns with dense user and topic ids.

The common currency of the numpy reference, the synthetic generator, the engine's
bulk loaders and (later) export and the batch engine.
"""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from .. import _core
from .arrays import lex_order
from .model import AccountStatus, kind_of


def _ints(values: object) -> np.ndarray:
    return np.ascontiguousarray(values, dtype=np.int64)


class CompactionError(ValueError):
    """A time the compacted interactions cannot be read at."""


def format_time(seconds: float) -> str:
    """RFC 3339 in UTC, with the unix seconds: what error messages show of a time."""
    moment = datetime.datetime.fromtimestamp(seconds, datetime.timezone.utc)
    return f"{moment.isoformat().replace('+00:00', 'Z')} ({seconds:.6f})"


@dataclass(frozen=True)
class Compaction:
    """Interactions folded into decayed sums (``compacted_interactions``): each one at
    ``at``, weighing the decayed count at ``at`` of events up to ``latest_event``.

    Decay is exponential, so such a sum read at any time ``T`` is exactly the sum of its
    events read at ``T``; it is the sum of the events *up to T* as long as none of them
    is after ``T``: from ``latest_event`` on, even before ``at``. ``latest_event`` is
    None where it was not recorded: then only ``at`` is known to be late enough.
    """

    at: float
    latest_event: float | None = None

    @property
    def exact_from(self) -> float:
        """The earliest time the sums can be read at."""
        return self.at if self.latest_event is None else self.latest_event

    def event_times(self, ts: np.ndarray) -> np.ndarray:
        """The time up to which each interaction's events reach: a compacted one's (at
        ``at``) is ``exact_from``, any other its own."""
        return np.where(ts == self.at, self.exact_from, ts)

    def check(self, as_of: float) -> None:
        """Refuse ``as_of`` earlier than the sums can be read at, naming both times."""
        if as_of >= self.exact_from:
            return
        if self.latest_event is None:
            raise CompactionError(
                f"as-of {format_time(as_of)} is before {format_time(self.at)}, when the"
                " interactions were compacted, and the archive does not record its latest"
                " event: evaluate at or after the compaction time"
            )
        raise CompactionError(
            f"as-of {format_time(as_of)} is before {format_time(self.latest_event)}, the"
            " latest event folded into the interactions compacted at"
            f" {format_time(self.at)}: their sums cannot be split, so evaluate at or after"
            " that event"
        )


@dataclass
class EventLog:
    """Interactions, endorsement events and account statuses of ``n_users`` users.

    User ``i`` is named ``user_ids[i]``; topic ``j`` is ``topics[j]`` (0 is general).
    ``weight[i]``, when given, makes interaction ``i`` count that many times (a
    compacted log's interactions carry fractional weights; raw ones count once);
    ``compaction`` says which interactions are compacted sums and what they hold.
    ``first_seen[i]``, when given, is when user ``i`` was first seen (inf: not yet);
    without it a bulk load dates each user by its earliest event in the log.
    """

    n_users: int
    actor: np.ndarray = field(default_factory=lambda: _ints([]))
    target: np.ndarray = field(default_factory=lambda: _ints([]))
    kind: np.ndarray = field(default_factory=lambda: np.empty(0, np.int8))
    ts: np.ndarray = field(default_factory=lambda: np.empty(0, np.float64))
    endorser: np.ndarray = field(default_factory=lambda: _ints([]))
    endorsee: np.ndarray = field(default_factory=lambda: _ints([]))
    topic: np.ndarray = field(default_factory=lambda: _ints([]))
    endorse_ts: np.ndarray = field(default_factory=lambda: np.empty(0, np.float64))
    retracted: np.ndarray = field(default_factory=lambda: np.empty(0, bool))
    status: np.ndarray | None = None
    user_ids: list[str] | None = None
    topics: list[str] = field(default_factory=lambda: [""])
    weight: np.ndarray | None = None
    compaction: Compaction | None = None
    first_seen: np.ndarray | None = None
    # Distrust events (docs/model.md step 8), resolved like endorsement events.
    distruster: np.ndarray = field(default_factory=lambda: _ints([]))
    distrusted: np.ndarray = field(default_factory=lambda: _ints([]))
    distrust_topic: np.ndarray = field(default_factory=lambda: _ints([]))
    distrust_ts: np.ndarray = field(default_factory=lambda: np.empty(0, np.float64))
    distrust_retracted: np.ndarray = field(default_factory=lambda: np.empty(0, bool))

    def __post_init__(self) -> None:
        self.actor = _ints(self.actor)
        self.target = _ints(self.target)
        self.kind = np.ascontiguousarray(self.kind, dtype=np.int8)
        self.ts = np.ascontiguousarray(self.ts, dtype=np.float64)
        self.endorser = _ints(self.endorser)
        self.endorsee = _ints(self.endorsee)
        self.topic = _ints(self.topic)
        self.endorse_ts = np.ascontiguousarray(self.endorse_ts, dtype=np.float64)
        self.retracted = np.ascontiguousarray(self.retracted, dtype=bool)
        self.distruster = _ints(self.distruster)
        self.distrusted = _ints(self.distrusted)
        self.distrust_topic = _ints(self.distrust_topic)
        self.distrust_ts = np.ascontiguousarray(self.distrust_ts, dtype=np.float64)
        self.distrust_retracted = np.ascontiguousarray(self.distrust_retracted, dtype=bool)
        if self.weight is not None:
            self.weight = np.ascontiguousarray(self.weight, dtype=np.float64)
        if self.first_seen is not None:
            self.first_seen = np.ascontiguousarray(self.first_seen, dtype=np.float64)
        if self.status is None:
            self.status = np.full(self.n_users, AccountStatus.NORMAL, np.uint8)
        if self.user_ids is None:
            self.user_ids = [f"u{i}" for i in range(self.n_users)]

    @property
    def n_interactions(self) -> int:
        return len(self.actor)

    @property
    def n_endorsement_events(self) -> int:
        return len(self.endorser)

    @property
    def n_distrust_events(self) -> int:
        return len(self.distruster)


def latest_events(keys: Sequence[np.ndarray], ts: np.ndarray, retracted: np.ndarray) -> np.ndarray:
    """Indexes of the event that decides each key (the rows of ``keys`` together), in
    key order: the latest by time, a retraction beating an endorsement at the same
    second, the last to arrive of events alike in both. The order of arrival matters
    only between such twins, which decide the same."""
    n = len(ts)
    if n == 0:
        return np.empty(0, np.int64)
    order = lex_order(tuple(reversed(keys)))
    key = np.stack(keys)[:, order]
    first = np.ones(n, bool)
    first[1:] = np.any(key[:, 1:] != key[:, :-1], axis=0)
    group = np.flatnonzero(first)
    size = np.diff(group, append=n)
    # Per group: its latest time, then the retractions among events at it, then the last.
    times = ts[order]
    rank = (times == np.repeat(np.maximum.reduceat(times, group), size)) * (
        1 + np.asarray(retracted, np.int8)[order]
    )
    best = rank == np.repeat(np.maximum.reduceat(rank, group), size)
    return order[np.maximum.reduceat(np.where(best, np.arange(n), -1), group)]


def earliest_events(
    n_users: int,
    actor: np.ndarray,
    target: np.ndarray,
    ts: np.ndarray,
    endorser: np.ndarray,
    endorsee: np.ndarray,
    endorse_ts: np.ndarray,
    distruster: np.ndarray | None = None,
    distrusted: np.ndarray | None = None,
    distrust_ts: np.ndarray | None = None,
    threads: int = 1,
) -> np.ndarray:
    """Per user, the time of the earliest event naming it (inf where none does): how a
    bulk load without first-seen times dates its accounts."""
    out = np.full(n_users, np.inf)
    sides = [(actor, target, ts), (endorser, endorsee, endorse_ts)]
    if distruster is not None and distrusted is not None and distrust_ts is not None:
        sides.append((distruster, distrusted, distrust_ts))
    for one, other, times in sides:
        if len(one):
            keep_earliest(out, one, times, threads, other)
    return out


def keep_earliest(
    earliest: np.ndarray,
    users: np.ndarray,
    times: np.ndarray,
    threads: int = 1,
    others: np.ndarray | None = None,
) -> None:
    """``earliest[u]``, for each ``u`` in ``users`` (and in ``others``, the other users
    of the same events), lowered to its time in ``times`` where that is earlier
    (``np.minimum.at``, compiled)."""
    _core.keep_earliest(
        np.ascontiguousarray(users, np.int64),
        np.ascontiguousarray(times, np.float64),
        earliest,
        threads,
        None if others is None else np.ascontiguousarray(others, np.int64),
    )


def deciding_endorsements(
    endorser: np.ndarray,
    endorsee: np.ndarray,
    topic: np.ndarray,
    ts: np.ndarray,
    retracted: np.ndarray,
) -> np.ndarray:
    """Indexes, ascending, of the event that decides each (endorser, endorsee, topic)."""
    return np.sort(latest_events([endorser, endorsee, topic], ts, retracted))


def compacted_interactions(
    src: np.ndarray, dst: np.ndarray, sums: np.ndarray, kind_weights: np.ndarray, at: float
) -> dict[str, np.ndarray]:
    """Interactions that rebuild decayed pair sums exactly: per pair and kind with a
    positive sum ``sums[p, k]`` (decayed to ``at``), one interaction at ``at`` of
    weight ``sums[p, k] / kind_weights[k]``. EventLog keyword arguments."""
    weight = sums / np.asarray(kind_weights)
    pair, channel = np.nonzero(weight > 0)
    return {
        "actor": np.asarray(src)[pair],
        "target": np.asarray(dst)[pair],
        "kind": kind_of(channel),
        "ts": np.full(len(pair), at),
        "weight": weight[pair, channel],
    }
