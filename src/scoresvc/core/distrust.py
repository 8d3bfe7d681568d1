"""The distrust book: one record per (distruster, distrusted, topic) with its deciding
event, and the audit trail of every distrust and retraction (docs/model.md, step 8).

Distrusts are few beside interactions and endorsements (they are judged, not
engaged), so records live in a dict keyed by the triple; the live set is listed as
arrays once per refresh that follows a change.
"""

from __future__ import annotations

import numpy as np

from .events import latest_events
from .trail import Trail, TrailSource

#: (ts, retracted) of each record's deciding event.
_Record = tuple[float, bool]


class DistrustBook:
    """Distrust records and their trail (the engine's ingest lock held by every caller)."""

    def __init__(self) -> None:
        self._records: dict[tuple[int, int, int], _Record] = {}
        self._trail = Trail("distruster", "distrusted")
        self._live: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None

    @property
    def nbytes(self) -> int:
        # A dict entry with its key and value tuples is about 250 bytes.
        return self._trail.nbytes + 250 * len(self._records)

    def apply(
        self,
        src: np.ndarray,
        dst: np.ndarray,
        topic: np.ndarray,
        ts: np.ndarray,
        retracted: np.ndarray,
        sequence: int,
    ) -> bool:
        """Apply distrust events: per (distruster, distrusted, topic) the latest event
        by time wins, a retraction beating a distrust at the same second. Returns
        whether any record changed."""
        self._trail.append(src, dst, topic, ts, retracted, sequence)
        return self._resolve(src, dst, topic, ts, retracted)

    def _resolve(
        self,
        src: np.ndarray,
        dst: np.ndarray,
        topic: np.ndarray,
        ts: np.ndarray,
        retracted: np.ndarray,
    ) -> bool:
        """Fold events into the records (in any order: the latest wins)."""
        src, dst, topic = (np.asarray(a, np.int64) for a in (src, dst, topic))
        ts, retracted = np.asarray(ts, np.float64), np.asarray(retracted, bool)
        changed = False
        for i in latest_events([src, dst, topic], ts, retracted):
            key = (int(src[i]), int(dst[i]), int(topic[i]))
            new = (float(ts[i]), bool(retracted[i]))
            old = self._records.get(key)
            if old is None or new[0] > old[0] or (new[0] == old[0] and new[1] and not old[1]):
                self._records[key] = new
                changed = True
        if changed:
            self._live = None
        return changed

    def invalidate_between(self, members: np.ndarray, action: int, was: int) -> int:
        """Mark the trail's events between ``members`` held by action ``was`` (0: those
        that count) as held by ``action`` (0: counting again) and rebuild their records
        from the events that count. Returns how many events moved."""
        trail = self._trail
        between = trail.between(members)
        moved = between[trail["invalidated"][between] == was]
        if moved.size == 0:
            return 0
        trail.invalidate(moved, action)
        giver, receiver, topic = trail["distruster"], trail["distrusted"], trail["topic"]
        affected = {(int(giver[i]), int(receiver[i]), int(topic[i])) for i in moved.tolist()}
        for key in affected:
            self._records.pop(key, None)
        counting = [
            i
            for i in between.tolist()
            if trail["invalidated"][i] == 0
            and (int(giver[i]), int(receiver[i]), int(topic[i])) in affected
        ]
        rows = np.asarray(counting, np.int64)
        self._resolve(
            giver[rows], receiver[rows], topic[rows], trail["ts"][rows], trail["retracted"][rows]
        )
        self._live = None
        return len(moved)

    def set_aside_events(
        self,
        src: np.ndarray,
        dst: np.ndarray,
        topic: np.ndarray,
        ts: np.ndarray,
        retracted: np.ndarray,
        sequence: int,
        action: int,
    ) -> None:
        """Add events already set aside by ``action`` (an import): on the trail only."""
        self._trail.append(src, dst, topic, ts, retracted, sequence, action)

    def is_live(self, a: int | None, b: int | None, t: int | None) -> bool:
        """Whether user ``a`` distrusts user ``b`` for topic ``t`` now."""
        if a is None or b is None or t is None:
            return False
        record = self._records.get((a, b, t))
        return record is not None and not record[1]

    def live(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The live distrusts as (distruster, distrusted, ts) arrays."""
        if self._live is None:
            rows = [(a, b, ts) for (a, b, _), (ts, gone) in self._records.items() if not gone]
            table = np.array(rows, np.float64).reshape(-1, 3)
            self._live = (table[:, 0].astype(np.int64), table[:, 1].astype(np.int64), table[:, 2])
        return self._live

    def trail(self) -> dict[str, np.ndarray]:
        """A copy of the audit trail's columns."""
        return self._trail.copy()

    def replace_trail(self, columns: dict[str, np.ndarray]) -> None:
        """Take ``columns`` (``trail()``'s) as the trail (see ``EndorsementBook``)."""
        self._trail.load(columns, "")

    def trail_source(self) -> TrailSource:
        """The trail for ``trail.trail_page``."""
        return self._trail, self._deciding_events, True

    def _deciding_events(self, events: np.ndarray) -> set[int]:
        """Of these trail positions, those that decide their record's state: the first
        event whose time and kind are the ones its record holds."""
        trail, out = self._trail, set()
        seen: set[tuple[int, int, int]] = set()
        for i in np.sort(events).tolist():
            key = (int(trail["distruster"][i]), int(trail["distrusted"][i]), int(trail["topic"][i]))
            event = (float(trail["ts"][i]), bool(trail["retracted"][i]))
            counts = trail["invalidated"][i] == 0
            if counts and key not in seen and self._records.get(key) == event:
                seen.add(key)
                out.add(i)
        return out

    def arrays(self) -> dict[str, np.ndarray]:
        """The trail, for checkpoints (the records are rebuilt from it)."""
        return self._trail.arrays("distrust_trail_")

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> DistrustBook:
        """The book in ``arrays`` (from ``arrays``; empty for a state without any)."""
        book = cls()
        if "distrust_trail_distruster" in arrays:
            trail = book._trail
            trail.load(arrays, "distrust_trail_")
            counting = trail["invalidated"] == 0
            book._resolve(
                trail["distruster"][counting],
                trail["distrusted"][counting],
                trail["topic"][counting],
                trail["ts"][counting],
                trail["retracted"][counting],
            )
        return book
