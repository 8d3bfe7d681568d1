"""Growable numpy arrays: the one growth policy the engine's tables share."""

from __future__ import annotations

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
