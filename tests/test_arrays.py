"""The shared array helpers: the ranking's sort order (on one thread and on two),
the sort orders of integers and of several keys, distinct values, and the event that
decides each key, and the earliest event naming each user."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from scoresvc import _core
from scoresvc.core.arrays import distinct, lex_order, sorted_order
from scoresvc.core.events import earliest_events, latest_events
from scoresvc.core.snapshot import ranking_order


@given(st.lists(st.sampled_from([0.0, 1e-7, 0.5, -1.0]) | st.floats(-5, 5), max_size=200))
def test_sorted_order_is_the_stable_argsort(values: list[float]) -> None:
    array = np.array(values, np.float64)
    assert np.array_equal(sorted_order(array), np.argsort(array, kind="stable"))


@given(
    st.lists(st.integers(0, 5) | st.integers(0, 2**32 - 1) | st.integers(-3, 3), max_size=200),
    st.sampled_from([np.int32, np.int64, np.uint32, np.uint64]),
)
def test_sorted_order_of_integers_is_the_stable_argsort(values: list[int], dtype: type) -> None:
    array = np.array([v for v in values if np.can_cast(np.min_scalar_type(v), dtype)], dtype)
    assert np.array_equal(sorted_order(array), np.argsort(array, kind="stable"))


@given(st.lists(st.tuples(st.integers(0, 3), st.floats(0, 3), st.booleans()), max_size=100))
def test_lex_order_is_numpys_lexsort(rows: list[tuple[int, float, bool]]) -> None:
    columns = [np.array(c) for c in zip(*rows, strict=True)] if rows else [np.zeros(0)] * 3
    assert np.array_equal(lex_order(columns), np.lexsort(columns))


@given(
    st.lists(
        st.tuples(
            st.integers(0, 3), st.integers(0, 2), st.sampled_from([0.0, 1.0, 2.0]), st.booleans()
        ),
        max_size=60,
    )
)
def test_the_latest_event_decides_a_retraction_first_at_a_tie_then_the_last_to_arrive(
    events: list[tuple[int, int, float, bool]],
) -> None:
    a, b = np.array([e[0] for e in events], np.int64), np.array([e[1] for e in events], np.int64)
    ts, retracted = np.array([e[2] for e in events]), np.array([e[3] for e in events], bool)
    expected = {}
    for i, event in enumerate(events):  # arrival order: later twins replace earlier ones
        key, now = event[:2], (event[2], event[3])
        if key not in expected or now >= (events[expected[key]][2], events[expected[key]][3]):
            expected[key] = i
    assert latest_events([a, b], ts, retracted).tolist() == [expected[k] for k in sorted(expected)]


@pytest.mark.parametrize(("events", "threads"), [(50, 1), (50, 2), (1_200_000, 2)])
def test_each_user_is_dated_by_the_earliest_event_naming_it(events: int, threads: int) -> None:
    # From a million events on two threads, each takes a share into a copy of its own.
    rng = np.random.default_rng(events)
    users = 1000
    actor, target = rng.integers(0, users, events), rng.integers(0, users // 2, events)
    endorser, endorsee = rng.integers(0, users, 20), rng.integers(0, users, 20)
    ts, endorse_ts = rng.uniform(0, 1e6, events), rng.uniform(-10, 1e6, 20)
    expected = np.full(users + 1, np.inf)
    for who, when in ((actor, ts), (target, ts), (endorser, endorse_ts), (endorsee, endorse_ts)):
        np.minimum.at(expected, who, when)
    got = earliest_events(
        users + 1, actor, target, ts, endorser, endorsee, endorse_ts, threads=threads
    )
    assert np.array_equal(got, expected) and np.isinf(got[users])


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
