"""The per-endorser daily endorsement limit, counted in event time (docs/model.md).

An endorsement at event time ``ts`` is refused when some window of ``window`` seconds
of event time that contains ``ts`` already holds ``limit`` of the endorser's accepted
endorsements. Counting event time, not arrival, lets a backfill of history through
Endorse keep every day that stayed under the limit; checking every window that
contains ``ts`` (not only the one ending at it) keeps the rule independent of the
order events arrive in.

Memory stays bounded: only event times within ``horizon`` of the newest event the
service holds are kept, so an endorser keeps at most about
``limit * (horizon / window + 2)`` times. Endorsements older than that are not counted
(at the default 90 days, they weigh at most an eighth of a fresh one).
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right, insort
from collections.abc import Sequence

import numpy as np


class EndorsementLimit:
    """Per endorser (a dense user id), the sorted event times of its accepted
    endorsements within the horizon."""

    def __init__(self, limit: int, window: float, horizon: float) -> None:
        self.limit = limit
        self.window = window
        self.horizon = horizon
        self._times: dict[int, list[float]] = {}

    def __len__(self) -> int:
        """The number of event times kept, over all endorsers."""
        return sum(len(times) for times in self._times.values())

    def refusal(
        self, endorser: int | None, ts: float, newest: float, in_flight: Sequence[float] = ()
    ) -> float | None:
        """None when an endorsement at ``ts`` fits; otherwise the seconds after which
        one at a correspondingly later time would (the RetryInfo delay).
        ``newest``: the latest event time the service holds; ``in_flight``: the
        endorser's accepted endorsements not yet counted (None: a new endorser)."""
        if self.limit <= 0:
            return None
        times: list[float] = []
        if endorser in self._times:
            times = self._kept(endorser, newest)
            if not times:
                del self._times[endorser]
        if in_flight:
            times = sorted([*times, *in_flight])
        if not times:
            return None
        # Windows (s - window, s] containing ts end at s in [ts, ts + window); the
        # count in them only rises at ts and at each kept time after it.
        lo = bisect_right(times, ts - self.window)
        hi = bisect_left(times, ts + self.window)
        for end in (ts, *(t for t in times[lo:hi] if t > ts)):
            first = bisect_right(times, end - self.window, lo, hi)
            if bisect_right(times, end, lo, hi) - first >= self.limit:
                return max(times[first] + self.window - ts, 1.0)
        return None

    def add(self, endorser: int, ts: float, newest: float) -> None:
        """Count an accepted endorsement (checked by ``refusal``, or replayed)."""
        if self.limit > 0 and ts >= newest - self.horizon:
            insort(self._kept(endorser, newest), ts)

    def renumbered(self, new_ids: np.ndarray, gone: np.ndarray) -> EndorsementLimit:
        """A copy with endorser ``e`` as ``new_ids[e]``, those ``gone`` marks left out."""
        copy = EndorsementLimit(self.limit, self.window, self.horizon)
        copy._times = {
            int(new_ids[e]): list(times) for e, times in self._times.items() if not gone[e]
        }
        return copy

    def arrays(self, newest: float) -> dict[str, np.ndarray]:
        """The kept times as checkpoint columns (sorted per endorser)."""
        for endorser in list(self._times):
            if not self._kept(endorser, newest):
                del self._times[endorser]
        endorsers = list(self._times)
        return {
            "rate_endorser": np.repeat(
                np.asarray(endorsers, np.int64), [len(self._times[e]) for e in endorsers]
            ),
            "rate_time": np.array([t for e in endorsers for t in self._times[e]], np.float64),
        }

    def load(self, endorser: np.ndarray, times: np.ndarray) -> None:
        """Restore ``arrays``' columns (checkpoints written before the limit counted
        event time hold arrival times: the same for live traffic)."""
        for e, ts in zip(endorser.tolist(), times.tolist()):
            self._times.setdefault(e, []).append(ts)
        for kept in self._times.values():
            kept.sort()

    def _kept(self, endorser: int, newest: float) -> list[float]:
        """The endorser's times (a new list for a new endorser), those past the
        horizon dropped."""
        times = self._times.setdefault(endorser, [])
        del times[: bisect_left(times, newest - self.horizon)]
        return times
