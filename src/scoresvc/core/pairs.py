"""Pair keys and the pair table: every ordered pair of users that ever interacted or
endorsed, with its forward-decayed sums.

A pair ``(src, dst)`` is the key ``src << 32 | dst`` (``pack_pairs``); the same
packing numbers endorsement records ``(pair, topic)``. Sums are forward-decayed to the
table's landmark ``L`` (an event at ``t`` adds ``w 2^((t - L) / h)``), so ``decay_to``
turns them into sums at any time by one factor.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .. import _core
from .arrays import distinct, get_or_insert, grown
from .events import Compaction
from .model import ModelParams

_SHIFT = np.uint64(32)
_LOW = np.uint64(0xFFFFFFFF)

# Keep every forward-decay exponent within +-512 half-lives of the landmark: 2^512
# times any realistic count stays far from the float64 limit (2^1024).
LANDMARK_SPAN_HALF_LIVES = 512.0

#: The most threads ``PairTable.build`` runs on.
_MAX_BUILD_THREADS = 8


def room_after_load(n: int) -> int:
    """Slots for ``n`` pairs after a bulk load: a little room for the pairs that
    follow (under 1%: each slot costs ~52 bytes in every per-pair array), after which
    the arrays grow by a quarter at a time."""
    return n + n // 128 + 1024


def pack_pairs(high: Any, low: Any) -> np.ndarray:
    """Keys ``high << 32 | low`` (uint64) of two columns of 32-bit ids."""
    return (np.asarray(high).astype(np.uint64) << _SHIFT) | np.asarray(low).astype(np.uint64)


def unpack_pairs(keys: np.ndarray, dtype: Any = np.int64) -> tuple[np.ndarray, np.ndarray]:
    """``(high, low)`` of each key, as ``dtype``."""
    return (keys >> _SHIFT).astype(dtype), (keys & _LOW).astype(dtype)


def bit_words(n: int) -> int:
    """How many uint64 words hold a bit for each of ``n`` slots."""
    return (n + 63) // 64


def dense_endorsements(e_sum: np.ndarray) -> dict[str, Any]:
    """The kernels' endorsement arguments when every pair ``p`` has its own sum
    ``e_sum[p]`` (the batch's per-partition tables)."""
    empty = np.zeros(0, np.uint64)
    return {"eslot_bits": empty, "eslot_index": None, "eslot_pair": empty, "e_sum": e_sum}


def reversed_pairs(keys: np.ndarray) -> np.ndarray:
    """The key of each pair's reverse (``dst << 32 | src``)."""
    return (keys << _SHIFT) | (keys >> _SHIFT)


class PairTable:
    """Per pair: its key (hash-indexed), interaction sums per channel (``fd``), the
    slot of its reverse (``rev``, -1 when none) and ``P(src -> dst)`` as of the last
    refresh (``p``). Endorsement sums are sparse (a few percent of pairs carry one):
    ``e_sum`` per endorsement slot, the pair of each slot in ``eslot_pair`` (indexed
    by ``eslot_index``), and a bit per pair in ``eslot_bits`` saying whether it has
    one, so the kernels probe the index only for those. Writers hold the engine's
    ingest lock; ``p`` is written by the refresh only. Kernels handed ``endorsements()``
    keep pointers into the index, which a new slot may move: they run under that lock.
    """

    def __init__(self, params: ModelParams) -> None:
        self.half_life = params.half_life_seconds
        self.kind_weights = params.channel_weights()[:4].copy()
        self.endorsement_weight = params.endorsement_weight
        self.index = _core.U64Index()
        self.key = np.zeros(0, np.uint64)
        self.fd = np.zeros((0, 4), np.float64)
        self.rev = np.zeros(0, np.int32)
        self.p = np.zeros(0, np.float64)
        self.eslot_bits = np.zeros(0, np.uint64)
        self.eslot_index = _core.U64Index()
        self.eslot_pair = np.zeros(0, np.uint64)
        self.e_sum = np.zeros(0, np.float64)
        self.n = 0
        self.n_eslots = 0
        self.landmark: float | None = None
        self.latest_event = -math.inf  # the latest event time applied
        # The latest event the interaction sums hold (a compacted interaction's reach
        # its Compaction.exact_from, not its own time): how early an export can be read.
        self.latest_interaction = -math.inf
        self._landmark_moved = False
        # Interaction sums set aside by moderation (action -> pair keys and their
        # forward-decayed sums, to the same landmark), put back when it is reversed.
        self.aside: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def __len__(self) -> int:
        return self.n

    @property
    def nbytes(self) -> int:
        arrays = (self.key, self.fd, self.rev, self.p, self.eslot_bits, self.eslot_pair, self.e_sum)
        return sum(a.nbytes for a in arrays) + self.index.nbytes + self.eslot_index.nbytes

    def endorsements(self) -> dict[str, Any]:
        """The kernels' arguments for the pairs' endorsement sums."""
        return {
            "eslot_bits": self.eslot_bits,
            "eslot_index": self.eslot_index,
            "eslot_pair": self.eslot_pair,
            "e_sum": self.e_sum,
        }

    # ------------------------------------------------------------------ time

    def note_times(self, ts: np.ndarray) -> None:
        """Events at ``ts`` are about to be added: start the clock at the first of
        them, track the latest, keep the landmark near it."""
        if self.landmark is None:
            self.landmark = float(ts.min())
        latest = float(ts.max())
        self.latest_event = max(self.latest_event, latest)
        self.keep_landmark_near(latest)

    def keep_landmark_near(self, t: float) -> None:
        """Move the landmark forward to ``t`` when an exponent could overflow,
        rescaling every sum (starts the clock at ``t`` when it has not started)."""
        if self.landmark is None:
            self.landmark = t
        if (t - self.landmark) / self.half_life <= LANDMARK_SPAN_HALF_LIVES:
            return
        factor = math.exp2((self.landmark - t) / self.half_life)
        self.fd[: self.n] *= factor
        self.e_sum[: self.n_eslots] *= factor
        for _, sums in self.aside.values():
            sums *= factor
        self.landmark = t
        self._landmark_moved = True

    def take_landmark_moved(self) -> bool:
        """Whether the landmark moved since the last call (every weight changed)."""
        moved, self._landmark_moved = self._landmark_moved, False
        return moved

    def decay_to(self, t: float) -> float:
        """The factor that turns the stored sums into sums at time ``t``."""
        assert self.landmark is not None
        return math.exp2((self.landmark - t) / self.half_life)

    # ------------------------------------------------------------------ pairs

    def src_dst(
        self, slots: Any = slice(None), dtype: Any = np.int64
    ) -> tuple[np.ndarray, np.ndarray]:
        """Source and destination users of the pairs at ``slots``."""
        return unpack_pairs(self.key[: self.n][slots], dtype)

    def lookup(self, keys: np.ndarray) -> np.ndarray:
        """Slots of the pairs ``keys`` (-1 where unknown)."""
        out = np.empty(len(keys), np.int32)
        self.index.lookup(keys, self.key, out)
        return out

    def slots(self, keys: np.ndarray) -> np.ndarray:
        """Slots of the pairs ``keys``, creating new ones."""
        first_new = self.n
        # A full key store doubles (a bulk load trims it afterwards).
        slots, self.key = get_or_insert(self.index, keys, self.key)
        n_pairs = len(self.index)
        if n_pairs > first_new:
            self.key = grown(self.key, n_pairs)
            self.fd = grown(self.fd, len(self.key), 0.0)
            self.rev = grown(self.rev, len(self.key), -1)
            self.p = grown(self.p, len(self.key), 0.0)
            self.eslot_bits = grown(self.eslot_bits, bit_words(len(self.key)))
            _core.link_reverse(self.index, self.key, first_new, n_pairs, self.rev)
            self.n = n_pairs
        return slots

    def add_interactions(
        self,
        dense: np.ndarray,
        actor: np.ndarray,
        target: np.ndarray,
        channel: np.ndarray,
        ts: np.ndarray,
        weight: np.ndarray | None = None,
        compaction: Compaction | None = None,
    ) -> np.ndarray:
        """Add interactions between ``dense[actor[i]]`` and ``dense[target[i]]``, each
        counting ``weight[i]`` times (once when None); ``compaction`` says which are
        compacted sums (and what time their events reach). Returns their pairs' slots."""
        self._note_interactions(ts, compaction)
        keys = np.empty(len(actor), np.uint64)
        _core.pack_pair_keys(
            np.ascontiguousarray(dense, np.int64),
            np.ascontiguousarray(actor, np.int64),
            np.ascontiguousarray(target, np.int64),
            keys,
        )
        slots = self.slots(keys)
        assert self.landmark is not None
        _core.accumulate(
            pair=slots,
            channel=channel,
            ts=np.ascontiguousarray(ts),
            count=np.empty(0) if weight is None else np.ascontiguousarray(weight, np.float64),
            channel_weight=self.kind_weights,
            landmark=self.landmark,
            half_life=self.half_life,
            pair_fd=self.fd,
        )
        return slots

    def set_aside(self, action: int, slots: np.ndarray) -> np.ndarray:
        """Move the interaction sums of the pairs at ``slots`` aside for ``action``
        (added to what it holds); returns the slots that held any."""
        held = slots[(self.fd[slots] != 0).any(axis=1)]
        keys, sums = self.key[held], self.fd[held].copy()
        self.fd[held] = 0.0
        if action in self.aside:
            old_keys, old_sums = self.aside[action]
            keys, sums = np.concatenate([old_keys, keys]), np.concatenate([old_sums, sums])
        self.aside[action] = (keys, sums)
        return held

    def put_back(self, action: int) -> np.ndarray:
        """Add the sums ``action`` set aside back to their pairs; returns their slots."""
        keys, sums = self.aside.pop(action, (np.zeros(0, np.uint64), np.zeros((0, 4))))
        slots = self.slots(keys)
        np.add.at(self.fd, slots, sums)
        return slots

    def aside_at(self, action: int, at: float) -> tuple[np.ndarray, np.ndarray]:
        """The pair keys ``action`` holds and their sums decayed to ``at``."""
        keys, sums = self.aside.get(action, (np.zeros(0, np.uint64), np.zeros((0, 4))))
        return keys, sums * (1.0 if self.landmark is None else self.decay_to(at))

    def build(
        self,
        dense: np.ndarray,
        actor: np.ndarray,
        target: np.ndarray,
        channel: np.ndarray,
        ts: np.ndarray,
        threads: int,
        weight: np.ndarray | None = None,
        compaction: Compaction | None = None,
        also: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> None:
        """``add_interactions`` into an empty table, in parallel and without a hash
        insert per event (see ``_core.group_events``); the same sums, event by event.
        ``also``: dense (source, destination) users of pairs about to be given
        endorsements, created here with no sums so that the table needs no growth
        after. Leaves the growth headroom ``trim`` would."""
        assert self.n == 0, "build needs an empty table"
        # Each thread has scratch of ~22 bytes a user: past a few threads the passes
        # are bound by memory anyway.
        threads = min(threads, _MAX_BUILD_THREADS)
        self._note_interactions(ts, compaction)
        assert self.landmark is not None
        dense = np.ascontiguousarray(dense, np.int64)
        users = int(dense.max()) + 1
        # A load into an empty engine numbers its users in order: no lookup per event.
        identity = users == len(dense) and np.array_equal(dense, np.arange(users))
        none = np.zeros(0, np.int64)
        also_a, also_b = (none, none) if also is None else also
        m = len(actor) + len(also_a)
        group_start = np.empty(users + 1, np.int64)
        partner, kind, value = np.empty(m, np.uint32), np.empty(m, np.int8), np.empty(m)
        _core.group_events(
            none if identity else dense,
            np.ascontiguousarray(actor, np.int64),
            np.ascontiguousarray(target, np.int64),
            np.ascontiguousarray(channel, np.int8),
            np.ascontiguousarray(ts, np.float64),
            np.empty(0) if weight is None else np.ascontiguousarray(weight, np.float64),
            self.kind_weights,
            self.landmark,
            self.half_life,
            np.ascontiguousarray(also_a, np.int64),
            np.ascontiguousarray(also_b, np.int64),
            group_start,
            partner,
            kind,
            value,
            threads,
        )
        pair_start = np.zeros(users + 1, np.int64)
        _core.count_group_pairs(group_start, partner, pair_start[1:], threads)
        np.cumsum(pair_start, out=pair_start)
        n = int(pair_start[-1])
        room = room_after_load(n)
        # Zeroed lazily by the OS (calloc) or written by the threads: the first touch
        # of fresh memory is slow, so it is not done twice nor on one thread.
        self.key = np.zeros(room, np.uint64)
        self.fd = np.zeros((room, 4), np.float64)
        self.rev = np.empty(room, np.int32)
        self.rev[n:] = -1
        _core.build_pairs(
            group_start, partner, kind, value, pair_start, self.key, self.fd, self.rev, threads
        )
        self.p = np.zeros(room, np.float64)
        self.eslot_bits = np.zeros(bit_words(room), np.uint64)
        self.index.add_ids(self.key, 0, n)
        self.n = n

    def _note_interactions(self, ts: np.ndarray, compaction: Compaction | None) -> None:
        """Interactions at ``ts`` are about to be added (``compaction``: see
        ``add_interactions``): move the clocks."""
        self.note_times(ts)
        reach = ts if compaction is None else compaction.event_times(np.asarray(ts))
        self.latest_interaction = max(self.latest_interaction, float(np.max(reach)))

    def give_endorsement_slots(self, pairs: np.ndarray) -> int:
        """Give ``pairs`` that have none an endorsement slot; returns how many slots
        there are now."""
        keys = distinct(np.asarray(pairs)).astype(np.uint64)
        _, self.eslot_pair = get_or_insert(self.eslot_index, keys, self.eslot_pair)
        if len(self.eslot_index) > self.n_eslots:
            self.n_eslots = len(self.eslot_index)
            self.e_sum = grown(self.e_sum, self.n_eslots, 0.0)
            self._mark_endorsed(keys)
        return self.n_eslots

    def _mark_endorsed(self, pairs: np.ndarray) -> None:
        """Set the bits of ``pairs`` (sorted, distinct uint64 slots)."""
        words = (pairs >> np.uint64(6)).astype(np.int64)
        bits = np.left_shift(np.uint64(1), pairs & np.uint64(63))
        starts = np.flatnonzero(np.r_[True, words[1:] != words[:-1]])
        self.eslot_bits[words[starts]] |= np.bitwise_or.reduceat(bits, starts)

    def eslots(self, pairs: np.ndarray) -> np.ndarray:
        """The endorsement slot of each pair (-1 where none)."""
        out = np.empty(len(pairs), np.int32)
        keys = np.ascontiguousarray(np.asarray(pairs).astype(np.uint64))
        self.eslot_index.lookup(keys, self.eslot_pair, out)
        return out

    def endorsement_sums(self, pairs: np.ndarray) -> np.ndarray:
        """The forward-decayed endorsement sum of each pair (0 where none)."""
        pairs = np.asarray(pairs, np.int64)
        sums = np.zeros(len(pairs))
        words = self.eslot_bits[pairs >> 6]
        held = np.flatnonzero((words >> (pairs & 63).astype(np.uint64)) & np.uint64(1))
        if held.size:  # only the few endorsed pairs probe the index
            sums[held] = self.e_sum[self.eslots(pairs[held])]
        return sums

    def trim(self) -> None:
        """Give back the growth headroom of the per-pair arrays after a bulk load
        (they grow by a quarter at a time; at millions of pairs that is megabytes)."""
        keep = room_after_load(self.n)
        if len(self.key) <= keep:
            return
        self.key = self.key[:keep].copy()
        self.fd = self.fd[:keep].copy()
        self.rev = self.rev[:keep].copy()
        self.p = self.p[:keep].copy()
        self.eslot_bits = self.eslot_bits[: bit_words(keep)].copy()

    # ------------------------------------------------------------------ state

    def aggregation(self) -> np.ndarray:
        """The parameters baked into the sums: half-life, kind and endorsement weights."""
        return np.array([self.half_life, *self.kind_weights, self.endorsement_weight])

    def arrays(self) -> dict[str, np.ndarray]:
        """Copies of the keys, sums, reverse slots and clock (for checkpoints); ``p`` is
        derived (the refresh rebuilds it). ``rev`` is derived too, but kept: finding
        every pair's reverse by hash costs a restart far more than reading it."""
        landmark = math.nan if self.landmark is None else self.landmark
        actions = sorted(self.aside)
        aside_keys = [self.aside[a][0] for a in actions]
        return {
            "aside_action": np.repeat(
                np.array(actions, np.int64), [len(k) for k in aside_keys]
            ).astype(np.int64),
            "aside_key": np.concatenate([np.zeros(0, np.uint64), *aside_keys]),
            "aside_fd": np.concatenate([np.zeros((0, 4)), *(self.aside[a][1] for a in actions)]),
            "pair_key": self.key[: self.n].copy(),
            "pair_fd": self.fd[: self.n].copy(),
            "eslot_pair": self.eslot_pair[: self.n_eslots].copy(),
            "pair_rev": self.rev[: self.n].copy(),
            "e_sum": self.e_sum[: self.n_eslots].copy(),
            "pair_clock": np.array([landmark, self.latest_event, self.latest_interaction]),
            "pair_aggregation": self.aggregation(),
        }

    @classmethod
    def from_arrays(
        cls, arrays: dict[str, np.ndarray], params: ModelParams, spare_pairs: int = 0
    ) -> PairTable:
        """The table in ``arrays`` under ``params``, with room for ``spare_pairs`` more
        pairs (zeroed lazily by the OS: it costs no memory until used).

        Kind and endorsement weights may differ from the stored ones (the sums scale
        exactly); a different half-life cannot be applied to decayed sums.
        """
        table = cls(params)
        was = arrays["pair_aggregation"]
        if was[0] != table.half_life:
            raise ValueError(
                f"the state was aggregated with a half-life of {was[0]:g} s,"
                f" not {table.half_life:g} s: rebuild it from an export"
            )
        n = len(arrays["pair_key"])
        room = n + max(spare_pairs, n // 4) + 1024
        table.key = grown(arrays["pair_key"], room)
        table.fd = grown(arrays["pair_fd"], room, 0.0)
        rescale = table.kind_weights / was[1:5]
        if (rescale != 1.0).any():
            table.fd *= rescale
        table.p = np.zeros(len(table.key))
        # Buckets for the pairs to come too: growing them on the way rehashes them all.
        # (``spare_pairs`` counts events, most of which may repeat pairs: at most
        # doubled here, so a tail of repeats does not leave a large index resident.)
        _core.reserve_index(table.index, table.key, n + min(spare_pairs, max(n, 1024)))
        table.index.add_ids(table.key, 0, n)  # a state's keys are distinct
        if "pair_rev" in arrays:
            table.rev = grown(arrays["pair_rev"], room, -1)
        else:  # a state from before the reverse slots were kept
            table.rev = np.full(len(table.key), -1, np.int32)
            _core.link_reverse(table.index, table.key, 0, n, table.rev)
        table.n = n
        table.e_sum = arrays["e_sum"] * (table.endorsement_weight / was[5])
        table.n_eslots = len(table.e_sum)
        table._restore_eslots(arrays, len(table.key))
        clock = arrays["pair_clock"].tolist()
        table.landmark = None if math.isnan(clock[0]) else clock[0]
        table.latest_event = clock[1]
        # Clocks from before it was kept: the latest event of any kind is as late.
        table.latest_interaction = clock[2] if len(clock) > 2 else clock[1]
        if "aside_action" in arrays:
            action, keys = arrays["aside_action"], arrays["aside_key"]
            sums = arrays["aside_fd"] * rescale
            for a in np.unique(action).tolist():
                table.aside[a] = (keys[action == a].copy(), sums[action == a].copy())
        return table

    def _restore_eslots(self, arrays: dict[str, np.ndarray], room: int) -> None:
        """The endorsement slots' index and bits from a state's pair of each slot (or,
        in a state from before they were sparse, from its slot of each pair)."""
        if "eslot_pair" in arrays:
            self.eslot_pair = arrays["eslot_pair"].astype(np.uint64)
        else:
            slot = arrays["pair_eslot"]
            held = np.flatnonzero(slot >= 0)
            self.eslot_pair = np.empty(self.n_eslots, np.uint64)
            self.eslot_pair[slot[held]] = held
        self.eslot_index.add_ids(self.eslot_pair, 0, self.n_eslots)  # distinct pairs
        self.eslot_bits = np.zeros(bit_words(room), np.uint64)
        if self.n_eslots:
            self._mark_endorsed(np.sort(self.eslot_pair))
