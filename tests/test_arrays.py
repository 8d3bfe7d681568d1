"""The shared array helpers: the ranking's sort order and distinct values."""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from scoresvc.core.arrays import distinct, sorted_order


@given(st.lists(st.sampled_from([0.0, 1e-7, 0.5, -1.0]) | st.floats(-5, 5), max_size=200))
def test_sorted_order_is_the_stable_argsort(values: list[float]) -> None:
    array = np.array(values, np.float64)
    assert np.array_equal(sorted_order(array), np.argsort(array, kind="stable"))


def test_sorted_order_keeps_ties_in_place_among_millions() -> None:
    rng = np.random.default_rng(7)
    values = rng.integers(0, 1000, 1_000_000) / 7.0
    assert np.array_equal(sorted_order(values), np.argsort(values, kind="stable"))


@given(st.lists(st.integers(-(2**62), 2**62), max_size=200))
def test_distinct_values_are_what_unique_gives(values: list[int]) -> None:
    array = np.array(values, np.int64)
    np.testing.assert_array_equal(distinct(array), np.unique(array))
