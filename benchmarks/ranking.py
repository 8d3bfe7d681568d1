"""Rank statistics the gaming and real-data benchmarks share (numpy only)."""

from __future__ import annotations

import numpy as np


def average_ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks, ascending; tied values share the mean of their ranks."""
    _, inverse, counts = np.unique(values, return_inverse=True, return_counts=True)
    upper = np.cumsum(counts)
    return (upper - (counts - 1) / 2.0)[inverse]


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's rank correlation of two score vectors over the same users."""
    if len(a) < 2:
        return float("nan")
    return float(np.corrcoef(average_ranks(a), average_ranks(b))[0, 1])


def roc_auc(positive: np.ndarray, negative: np.ndarray) -> float:
    """P(a positive scores above a negative), ties counting half (Mann-Whitney U)."""
    if len(positive) == 0 or len(negative) == 0:
        return float("nan")
    ranks = average_ranks(np.concatenate([positive, negative]))
    u = ranks[: len(positive)].sum() - len(positive) * (len(positive) + 1) / 2.0
    return float(u / (len(positive) * len(negative)))


def share_strictly_below(population: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Percentage of ``population`` strictly below each value (the model's percentile)."""
    ordered = np.sort(population)
    return 100.0 * np.searchsorted(ordered, values, side="left") / max(len(ordered), 1)
