"""The shared array helpers: the ranking's sort order (on one thread and on two)
and distinct values."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from scoresvc import _core
from scoresvc.core.arrays import distinct, sorted_order
from scoresvc.core.snapshot import ranking_order


@given(st.lists(st.sampled_from([0.0, 1e-7, 0.5, -1.0]) | st.floats(-5, 5), max_size=200))
def test_sorted_order_is_the_stable_argsort(values: list[float]) -> None:
    array = np.array(values, np.float64)
    assert np.array_equal(sorted_order(array), np.argsort(array, kind="stable"))


@pytest.mark.parametrize("threads", [1, 2])
def test_the_ranking_order_keeps_ties_in_place_among_millions(threads: int) -> None:
    rng = np.random.default_rng(7)
    values = rng.integers(0, 1000, 1_000_000) / 7.0
    assert np.array_equal(ranking_order(values, threads), np.argsort(values, kind="stable"))


@given(st.lists(st.floats(-5, 5) | st.sampled_from([0.0, 1.0]), max_size=100), st.data())
def test_merging_two_sorted_halves_is_the_stable_sort_of_the_whole(
    values: list[float], data: st.DataObject
) -> None:
    array = np.array(values, np.float64)
    half = data.draw(st.integers(0, len(values)))
    lower = np.argsort(array[:half], kind="stable")
    upper = np.argsort(array[half:], kind="stable") + half
    merged = np.empty(len(values), np.int64)
    _core.merge_orders(array[lower], lower, array[upper], upper, merged)
    assert np.array_equal(merged, np.argsort(array, kind="stable"))


@given(st.lists(st.integers(-(2**62), 2**62), max_size=200))
def test_distinct_values_are_what_unique_gives(values: list[int]) -> None:
    array = np.array(values, np.int64)
    np.testing.assert_array_equal(distinct(array), np.unique(array))
