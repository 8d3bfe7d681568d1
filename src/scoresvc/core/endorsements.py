"""The endorsement book: the topics, one record per (endorser, endorsee, topic) with
its deciding event, the audit trail of every event, and each endorser's daily limit
(``EndorsementLimit``, over event time).

Records are numbered in a hash index by the key ``pair << 32 | topic``; each endorsed
pair's records are linked (``eslot_head[eslot] -> next -> -1``) so the kernel can
re-sum a pair's endorsements into the pair table.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .. import _core
from .arrays import distinct, get_or_insert, grown, sorted_order
from .endorsement_limit import EndorsementLimit
from .errors import RateLimited
from .events import latest_events
from .model import SECONDS_PER_DAY, ModelParams
from .pairs import PairTable, pack_pairs, unpack_pairs
from .trail import Trail, TrailSource
from .users import UserIds

# Record states (the core's REC_LIVE is 1).
REC_LIVE = 1
REC_RETRACTED = 2


class EndorsementBook:
    """Endorsement records, the trail and the daily limit (the engine's ingest lock
    held by every caller)."""

    def __init__(self, params: ModelParams) -> None:
        self.topic_index: dict[str, int] = {"": 0}
        self.topics: list[str] = [""]
        self._index = _core.U64Index()
        self._key = np.zeros(0, np.uint64)
        self._pair = np.zeros(0, np.int32)
        self._topic = np.zeros(0, np.int32)
        self._ts = np.zeros(0, np.float64)
        self._state = np.zeros(0, np.uint8)
        self._next = np.zeros(0, np.int32)
        self._n = 0
        self._eslot_head = np.zeros(0, np.int32)
        self._n_slots = 0  # endorsed pairs (the pair table's endorsement slots)
        # Every endorse and retract, in acceptance order.
        self._trail = Trail("endorser", "endorsee")
        self._limit = EndorsementLimit(
            params.daily_endorsement_limit,
            SECONDS_PER_DAY,
            params.endorsement_limit_horizon_seconds,
        )

    @property
    def nbytes(self) -> int:
        arrays = (self._key, self._pair, self._topic, self._ts, self._state, self._next)
        return (
            sum(a.nbytes for a in arrays)
            + self._eslot_head.nbytes
            + self._index.nbytes
            + self._trail.nbytes
        )

    def topic_id(self, topic: str) -> int:
        """The topic's number, registering a new one."""
        t = self.topic_index.get(topic)
        if t is None:
            t = len(self.topics)
            self.topic_index[topic] = t
            self.topics.append(topic)
        return t

    # ------------------------------------------------------------------ events

    def apply(
        self,
        pairs: PairTable,
        src: np.ndarray,
        dst: np.ndarray,
        topic: np.ndarray,
        ts: np.ndarray,
        retracted: np.ndarray,
        sequence: int,
    ) -> np.ndarray:
        """Apply endorsement events: per (endorser, endorsee, topic) the latest event
        by time wins, a retraction beating an endorsement at the same second. Returns
        the pairs whose endorsement sums changed (re-summed into ``pairs``)."""
        pairs.note_times(ts)
        self._trail.append(src, dst, topic, ts, retracted, sequence)
        recs = self._records(pairs, pack_pairs(pairs.slots(pack_pairs(src, dst)), topic))
        touched = self._fold(recs, ts, retracted)
        self._resum(pairs, touched)
        return touched

    def _fold(self, recs: np.ndarray, ts: np.ndarray, retracted: np.ndarray) -> np.ndarray:
        """Fold events of records ``recs`` into them; returns the pairs that changed."""
        win = latest_events([recs], ts, retracted)
        rec_w, ts_w, retract_w = recs[win], ts[win], retracted[win]
        newer = (ts_w > self._ts[rec_w]) | (
            (ts_w == self._ts[rec_w]) & retract_w & (self._state[rec_w] != REC_RETRACTED)
        )
        rec_w, ts_w, retract_w = rec_w[newer], ts_w[newer], retract_w[newer]
        self._ts[rec_w] = ts_w
        self._state[rec_w] = np.where(retract_w, REC_RETRACTED, REC_LIVE)
        return distinct(self._pair[rec_w]).astype(np.int32)

    def _resum(self, pairs: PairTable, touched: np.ndarray) -> None:
        """Re-sum the live records of pairs ``touched`` into the pair table."""
        if touched.size:
            assert pairs.landmark is not None
            _core.endorsement_sums(
                slots=pairs.eslots(touched),
                eslot_head=self._eslot_head,
                rec_next=self._next,
                rec_ts=self._ts,
                rec_state=self._state,
                weight=pairs.endorsement_weight,
                landmark=pairs.landmark,
                half_life=pairs.half_life,
                e_sum=pairs.e_sum,
            )

    def invalidate_between(
        self, pairs: PairTable, members: np.ndarray, action: int, was: int
    ) -> tuple[int, np.ndarray]:
        """Mark the trail's events between ``members`` held by action ``was`` (0: those
        that count) as held by ``action`` (0: counting again) and rebuild their records
        from the events that count, as if the others never happened. Returns how many
        events moved and the pairs whose sums changed."""
        between = self._trail.between(members)
        held = self._trail["invalidated"][between]
        moved = between[held == was]
        if moved.size == 0:
            return 0, np.zeros(0, np.int32)
        self._trail.invalidate(moved, action)
        trail = self._trail
        keys = pack_pairs(
            pairs.slots(pack_pairs(trail["endorser"][between], trail["endorsee"][between])),
            trail["topic"][between],
        )
        recs = self._records(pairs, keys)
        affected = distinct(recs[np.isin(between, moved)])
        self._ts[affected] = -np.inf
        self._state[affected] = 0
        counting = np.isin(recs, affected) & (trail["invalidated"][between] == 0)
        positions = between[counting]
        self._fold(recs[counting], trail["ts"][positions], trail["retracted"][positions])
        touched = distinct(self._pair[affected]).astype(np.int32)
        self._resum(pairs, touched)
        return len(moved), touched

    def set_aside_events(
        self,
        pairs: PairTable,
        src: np.ndarray,
        dst: np.ndarray,
        topic: np.ndarray,
        ts: np.ndarray,
        retracted: np.ndarray,
        sequence: int,
        action: int,
    ) -> None:
        """Add events already set aside by ``action`` (an import): on the trail only."""
        pairs.note_times(ts)
        self._trail.append(src, dst, topic, ts, retracted, sequence, action)
        self._records(pairs, pack_pairs(pairs.slots(pack_pairs(src, dst)), topic))

    def _records(self, pairs: PairTable, keys: np.ndarray) -> np.ndarray:
        """Record numbers of ``keys``, creating (and linking) new records."""
        first_new = self._n
        recs, self._key = get_or_insert(self._index, keys, self._key)
        n_rec = len(self._index)
        if n_rec > first_new:
            cap = len(self._key)
            self._pair = grown(self._pair, cap)
            self._topic = grown(self._topic, cap)
            self._ts = grown(self._ts, cap, -np.inf)
            self._state = grown(self._state, cap)
            self._next = grown(self._next, cap, -1)
            fresh = slice(first_new, n_rec)
            self._pair[fresh], self._topic[fresh] = unpack_pairs(self._key[fresh], np.int32)
            self._n = n_rec
            self._link(pairs, np.arange(first_new, n_rec, dtype=np.int32))
        return recs

    def _link(self, pairs: PairTable, records: np.ndarray) -> None:
        """Give new records' pairs an endorsement slot and link each record into its
        pair's list (vectorised: records of one pair chain to each other, the last to
        the old head)."""
        pair = self._pair[records]
        self._n_slots = pairs.give_endorsement_slots(pair)
        self._eslot_head = grown(self._eslot_head, self._n_slots, -1)
        slots = pairs.eslots(pair)
        order = sorted_order(slots)
        records, slots = records[order], slots[order]
        same = slots[1:] == slots[:-1]
        following = np.full(len(records), -2, np.int32)
        following[:-1] = np.where(same, records[1:], -2)
        self._next[records] = np.where(following == -2, self._eslot_head[slots], following)
        first = np.ones(len(records), bool)
        first[1:] = ~same
        self._eslot_head[slots[first]] = records[first]

    def is_live(self, pairs: PairTable, a: int | None, b: int | None, t: int | None) -> bool:
        """Whether user ``a`` endorses user ``b`` for topic ``t`` now."""
        if a is None or b is None or t is None:
            return False
        pair = pairs.lookup(pack_pairs([a], [b]))
        if pair[0] < 0:
            return False
        out = np.empty(1, np.int32)
        self._index.lookup(pack_pairs(pair, [t]), self._key, out)
        return bool(out[0] >= 0 and self._state[out[0]] == REC_LIVE)

    def _deciding_events(self, pairs: PairTable, events: np.ndarray) -> set[int]:
        """Of these trail positions (all of each endorsement's events among them),
        those that decide their endorsement's state: the first event whose time and
        kind are the ones its record holds (later equal events changed nothing)."""
        if events.size == 0:
            return set()
        events = np.sort(events)
        trail = self._trail
        pair = pairs.lookup(pack_pairs(trail["endorser"][events], trail["endorsee"][events]))
        records = np.empty(len(events), np.int32)
        self._index.lookup(pack_pairs(pair, trail["topic"][events]), self._key, records)
        known = (pair >= 0) & (records >= 0)
        events, records = events[known], records[known]
        matches = (
            (trail["ts"][events] == self._ts[records])
            & (trail["retracted"][events] == (self._state[records] == REC_RETRACTED))
            & (trail["invalidated"][events] == 0)
        )
        _, first = np.unique(records[matches], return_index=True)
        return set(events[matches][first].tolist())

    # ------------------------------------------------------------------ daily limit

    def note_endorsement(self, endorser: int, ts: float, newest: float) -> None:
        """Count an accepted endorsement at event time ``ts`` in its endorser's daily
        limit (``newest``: the latest event time held)."""
        self._limit.add(endorser, ts, newest)

    def check_rate(
        self,
        endorser: int | None,
        endorser_id: str,
        ts: float,
        newest: float,
        in_flight: Sequence[float] = (),
    ) -> None:
        """``RateLimited`` when an endorsement at event time ``ts`` would exceed the
        endorser's limit within some 24 hours of event time around it (``endorser``:
        None for a new user; ``in_flight``: its accepted endorsements not yet counted)."""
        retry = self._limit.refusal(endorser, ts, newest, in_flight)
        if retry is not None:
            raise RateLimited(
                f"{endorser_id!r} has made {self._limit.limit}"
                " endorsements within 24 hours of this event_time",
                retry_after_seconds=retry,
            )

    def carry_limits(self, other: EndorsementBook, new_ids: np.ndarray, gone: np.ndarray) -> None:
        """Take ``other``'s daily-limit counts, endorser ``e`` as ``new_ids[e]`` and
        those ``gone`` marks left out (an erasure)."""
        self._limit = other._limit.renumbered(new_ids, gone)

    # ------------------------------------------------------------------ reading

    def trail(self) -> dict[str, np.ndarray]:
        """A copy of the audit trail's columns."""
        return self._trail.copy()

    def replace_trail(self, columns: dict[str, np.ndarray]) -> None:
        """Take ``columns`` (``trail()``'s) as the trail: the same events the records
        were built from, in their order, with their sequence numbers (an erasure)."""
        self._trail.load(columns, "")

    def trail_source(self, pairs: PairTable) -> TrailSource:
        """The trail for ``trail.trail_page``."""
        return self._trail, lambda events: self._deciding_events(pairs, events), False

    def topic_records(
        self,
        pairs: PairTable,
        beta: np.ndarray,
        scale: float,
        support: np.ndarray,
        mature: np.ndarray,
        rho: float,
    ) -> dict[str, np.ndarray]:
        """Each live endorsement's effective weight ``beta_a E_T (E'/E)`` per topic, at
        the time where the stored sums times ``scale`` apply; ``support``, ``mature``
        and ``rho`` are the reciprocity gate's (``TrustGraph.support``,
        ``TrustGraph.mature``, ``ModelParams.reciprocity``)."""
        live = np.flatnonzero(self._state[: self._n] == REC_LIVE)
        pair = self._pair[live]
        src, dst = pairs.src_dst(pair)
        discount = np.empty(len(pair))
        _core.kept_shares(
            pairs=np.ascontiguousarray(pair, dtype=np.int32),
            pair_key=pairs.key,
            pair_fd=pairs.fd,
            pair_rev=pairs.rev,
            **pairs.endorsements(),
            support=support,
            mature=mature,
            rho=rho,
            out=discount,
        )
        assert pairs.landmark is not None
        value = (
            pairs.endorsement_weight
            * np.exp2((self._ts[live] - pairs.landmark) / pairs.half_life)
            * scale
        )
        return {
            "topic": self._topic[live].astype(np.int64),
            "src": src,
            "dst": dst,
            "weight": beta[src] * value * discount,
        }

    # ------------------------------------------------------------------ state

    def arrays(self, newest: float) -> dict[str, np.ndarray]:
        """Copies of everything (for checkpoints); the daily limit keeps the times
        within its horizon of ``newest``, the latest event time held."""
        n = self._n
        topics = UserIds.of(self.topics)
        arrays = {
            "topic_blob": topics.blob.copy(),
            "topic_offsets": topics.offsets,
            "eslot_head": self._eslot_head[: self._n_slots].copy(),
            "rec_key": self._key[:n].copy(),
            "rec_ts": self._ts[:n].copy(),
            "rec_state": self._state[:n].copy(),
            "rec_next": self._next[:n].copy(),
        }
        arrays.update(self._trail.arrays("trail_"))
        arrays.update(self._limit.arrays(newest))
        return arrays

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray], params: ModelParams) -> EndorsementBook:
        book = cls(params)
        book.topics = UserIds(arrays["topic_blob"], arrays["topic_offsets"]).decoded()
        book.topic_index = {t: i for i, t in enumerate(book.topics)}
        book._eslot_head = arrays["eslot_head"].copy()
        book._n_slots = len(book._eslot_head)
        book._key = arrays["rec_key"].copy()
        n = len(book._key)
        book._index.get_or_insert(book._key, book._key, np.empty(n, np.int32))
        book._pair, book._topic = unpack_pairs(book._key, np.int32)
        book._ts = arrays["rec_ts"].copy()
        book._state = arrays["rec_state"].copy()
        book._next = arrays["rec_next"].copy()
        book._n = n
        book._trail.load(arrays, "trail_")
        book._limit.load(arrays["rate_endorser"], arrays["rate_time"])
        return book
