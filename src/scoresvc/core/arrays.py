"""Growable numpy arrays (the one growth policy the engine's tables share) and the
hash-indexed key stores that grow with them, the sort order the rankings use, and
distinct values by sorting."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np


def grown(array: np.ndarray, needed: int, fill: Any = 0) -> np.ndarray:
    """``array`` if it holds ``needed`` rows, else a copy with 25% headroom."""
    if len(array) >= needed:
        return array
    capacity = max(needed, int(len(array) * 1.25) + 16)
    shape = (capacity, *array.shape[1:])
    if fill == 0:
        # calloc: the new pages come zeroed from the OS, touched only when used.
        fresh = np.zeros(shape, dtype=array.dtype)
    else:
        fresh = np.empty(shape, dtype=array.dtype)
        fresh[len(array) :] = fill
    fresh[: len(array)] = array
    return fresh


def get_or_insert(
    index: Any, keys: np.ndarray, stored: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Slots of ``keys`` in ``index`` (a ``_core.U64Index`` over ``stored``), giving
    unseen keys the next slots; returns them and ``stored``, grown when it filled."""
    slots = np.empty(len(keys), np.int32)
    position = 0
    while True:
        position = index.get_or_insert(keys, stored, slots, position)
        if position == len(keys):
            return slots, stored
        need = len(index) + min(len(keys) - position, max(2 * len(stored), 1024))
        stored = grown(stored, need)


def sorted_order(values: np.ndarray) -> np.ndarray:
    """``np.argsort(values, kind="stable")`` for a 1-d array, from numpy's vectorised
    unstable sorts, several times faster on millions of values. Integers in
    ``[0, 2^32)`` sort as unique keys ``value << 32 | position`` (numpy sorts plain
    keys with vector instructions, ten times faster than it orders them); other
    values take the unstable order, and only runs of equal values are put back in
    their original order, by one sort of unique integer keys."""
    m = len(values)
    if m == 0:
        return np.zeros(0, np.int64)
    if values.dtype.kind in "iub" and m <= 1 << 32 and values.min() >= 0 and values.max() < 1 << 32:
        keys = values.astype(np.uint64) << np.uint64(32)
        keys |= np.arange(m, dtype=np.uint64)
        keys.sort()
        return (keys & np.uint64(0xFFFFFFFF)).astype(np.int64)
    order = np.argsort(values)
    ordered = values[order]
    tied = ordered[1:] == ordered[:-1]
    if not tied.any():
        return order
    run_start = np.ones(m, bool)
    run_start[1:] = ~tied
    in_run = np.zeros(m, bool)
    in_run[1:] |= tied
    in_run[:-1] |= tied
    where = np.flatnonzero(in_run)
    run = (np.cumsum(run_start) - 1)[where]
    order[where] = np.sort(run * m + order[where]) % m
    return order


def lex_order(keys: Sequence[np.ndarray]) -> np.ndarray:
    """``np.lexsort(keys)`` (the last key primary), by a stable sort per key."""
    order = np.arange(len(keys[0]))
    for key in keys:
        order = order[sorted_order(np.asarray(key)[order])]
    return order


def distinct(values: np.ndarray) -> np.ndarray:
    """``np.unique(values)`` of a 1-d integer array, by one sort: numpy 2's plain
    ``unique`` hashes instead, tens of times slower on 10^5 values and more."""
    ordered = np.sort(np.asarray(values).ravel())
    if len(ordered) < 2:
        return ordered
    keep = np.empty(len(ordered), bool)
    keep[0] = True
    np.not_equal(ordered[1:], ordered[:-1], out=keep[1:])
    return ordered[keep]
