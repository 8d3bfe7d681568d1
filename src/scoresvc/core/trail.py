"""An audit trail: every event of one kind of vouch (endorsements, distrusts) in the
order it was accepted, as growable columns."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from .arrays import grown
from .results import EndorsementEvent


class Trail:
    """Columns ``giver`` and ``receiver`` (named by the owner, e.g. ``endorser`` and
    ``endorsee``), ``topic``, ``ts``, ``retracted``, ``sequence`` and ``invalidated``
    (the moderation action that set the event aside, 0 while it counts)."""

    def __init__(self, giver: str, receiver: str) -> None:
        self.giver, self.receiver = giver, receiver
        self._columns: dict[str, np.ndarray] = {
            giver: np.zeros(0, np.int32),
            receiver: np.zeros(0, np.int32),
            "topic": np.zeros(0, np.int32),
            "ts": np.zeros(0, np.float64),
            "retracted": np.zeros(0, bool),
            "sequence": np.zeros(0, np.int64),
            "invalidated": np.zeros(0, np.int64),
        }
        self.n = 0

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in self._columns.values())

    def __getitem__(self, name: str) -> np.ndarray:
        """A column's filled part (a view)."""
        return self._columns[name][: self.n]

    def append(
        self,
        src: np.ndarray,
        dst: np.ndarray,
        topic: np.ndarray,
        ts: np.ndarray,
        retracted: np.ndarray,
        sequence: int,
        invalidated: int = 0,
    ) -> None:
        n0, n1 = self.n, self.n + len(src)
        for name, values in (
            (self.giver, src),
            (self.receiver, dst),
            ("topic", topic),
            ("ts", ts),
            ("retracted", retracted),
            ("sequence", np.full(len(src), sequence)),
            ("invalidated", np.full(len(src), invalidated)),
        ):
            column = grown(self._columns[name], n1)
            column[n0:n1] = values
            self._columns[name] = column
        self.n = n1

    def copy(self) -> dict[str, np.ndarray]:
        """A copy of the columns."""
        return {k: v[: self.n].copy() for k, v in self._columns.items()}

    def arrays(self, prefix: str) -> dict[str, np.ndarray]:
        """The columns for a checkpoint, each named ``prefix + column``."""
        return {prefix + k: v for k, v in self.copy().items()}

    def load(self, arrays: dict[str, np.ndarray], prefix: str) -> None:
        """Columns from ``arrays`` (see ``arrays``)."""
        n = len(arrays[prefix + self.giver])
        # States from before moderation have no invalidated column: every event counts.
        self._columns = {
            k: arrays[prefix + k].copy() if prefix + k in arrays else np.zeros(n, v.dtype)
            for k, v in self._columns.items()
        }
        self.n = n

    def invalidate(self, positions: np.ndarray, action: int) -> None:
        """Mark the events at ``positions`` set aside by ``action`` (0: counting again)."""
        self._columns["invalidated"][positions] = action

    def between(self, members: np.ndarray) -> np.ndarray:
        """Positions of the events from one of ``members`` to another, oldest first."""
        giver, receiver = self[self.giver], self[self.receiver]
        return np.flatnonzero(
            np.isin(giver, members) & np.isin(receiver, members) & (giver != receiver)
        )

    def of_pair(self, a: int, b: int, start: float, end: float) -> np.ndarray:
        """Positions of the events between users ``a`` and ``b`` (either way) with an
        event time in ``(start, end]``, oldest first."""
        giver, receiver, ts = self[self.giver], self[self.receiver], self["ts"]
        pair = ((giver == a) & (receiver == b)) | ((giver == b) & (receiver == a))
        return np.flatnonzero(pair & (ts > start) & (ts <= end))

    def hits(self, u: int, given: bool) -> np.ndarray:
        """Positions of the events given (or received) by user ``u``, oldest first."""
        return np.flatnonzero(self[self.giver if given else self.receiver] == u)

    def entry(
        self, i: int, user_ids: Sequence[str], topics: list[str], decides: bool, distrust: bool
    ) -> EndorsementEvent:
        """The event at position ``i``, for readers."""
        return EndorsementEvent(
            endorser_id=user_ids[self._columns[self.giver][i]],
            endorsee_id=user_ids[self._columns[self.receiver][i]],
            topic=topics[self._columns["topic"][i]],
            event_time=float(self._columns["ts"][i]),
            retracted=bool(self._columns["retracted"][i]),
            sequence=int(self._columns["sequence"][i]),
            decides_current_state=decides,
            distrust=distrust,
        )


#: A trail, the function telling which of a set of its positions decide their
#: record's current state, and whether its events are distrusts.
TrailSource = tuple[Trail, Callable[[np.ndarray], set[int]], bool]


def trail_page(
    sources: Sequence[TrailSource],
    u: int,
    given: bool,
    offset: int,
    limit: int,
    user_ids: Sequence[str],
    topics: list[str],
) -> tuple[list[EndorsementEvent], int | None]:
    """A page of the events given (or received) by user ``u`` in all ``sources``,
    newest first (by sequence), and the offset of the next page (None at the end)."""
    hits = [trail.hits(u, given) for trail, _, _ in sources]
    sequence = np.concatenate([s[0]["sequence"][h] for s, h in zip(sources, hits)])
    source = np.concatenate([np.full(len(h), k) for k, h in enumerate(hits)])
    position = np.concatenate(hits)
    order = np.lexsort((position, source, sequence))[::-1]
    page = order[offset : offset + limit]
    deciding = [decide(h) for (_, decide, _), h in zip(sources, hits)]
    entries = []
    for k in page:
        trail, _, distrust = sources[source[k]]
        i = int(position[k])
        entries.append(trail.entry(i, user_ids, topics, i in deciding[source[k]], distrust))
    following = offset + limit
    return entries, (following if following < len(order) else None)
