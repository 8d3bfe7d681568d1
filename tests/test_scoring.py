"""The shared scoring rules (scoresvc.core.scoring) the engine, the snapshot and batch read:
scores stay in 1-100 in the order of the values, the one-value and array forms agree,
percentiles count the strictly lower, and the teleport vector follows the seeds."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from scoresvc.core import scoring
from scoresvc.core.model import AccountStatus, ModelParams

values = st.lists(st.floats(0.0, 1e9), min_size=1, max_size=60)


@given(values)
def test_scores_run_from_1_to_100_in_the_order_of_the_values(vs):
    v = np.array(vs)
    top = float(v.max())
    score = scoring.log_scale(v, top)
    assert ((score >= 1.0) & (score <= 100.0)).all()
    order = np.argsort(v, kind="stable")
    assert (np.diff(score[order]) >= 0).all()
    one = [scoring.log_scale_one(x, top) for x in vs]
    assert one == pytest.approx(score.tolist(), rel=1e-14)
    assert max(one) <= 100.0


def test_the_top_value_scores_exactly_100_where_99_v_over_v_rounds_either_way():
    # 1 + 99 ln(1 + v) / ln(1 + v), multiplied before dividing, is a hair past 100 for
    # some v and a hair short (99.99999999999999) for others: the top must read 100.
    v = np.linspace(1.0, 2.0, 1001)
    raw = 1.0 + 99.0 * np.log1p(v) / np.log1p(v)
    over, under = v[raw > 100.0], v[raw < 100.0]
    assert len(over) and len(under)
    for top in [*over[:5], *under[:5]]:
        assert scoring.log_scale(np.array([0.5, top]), float(top))[1] == 100.0
        assert scoring.log_scale_one(float(top), float(top)) == 100.0


@given(st.floats(1e-300, 1e300))
def test_any_top_scores_100(top):
    assert scoring.log_scale_one(top, top) == 100.0
    assert scoring.log_scale(np.array([top]), top)[0] == 100.0


def test_with_no_positive_top_everyone_scores_1():
    assert scoring.log_scale(np.zeros(3), 0.0).tolist() == [1.0, 1.0, 1.0]
    assert scoring.log_scale_one(0.0, 0.0) == 1.0


@given(
    st.lists(st.tuples(st.integers(0, 3), st.integers(0, 5)), min_size=1, max_size=60),
)
def test_percentiles_count_the_strictly_lower_of_the_group(rows):
    groups = np.array([g for g, _ in rows])
    v = np.array([float(x) for _, x in rows])
    got = scoring.lower_share(v, groups)
    for i in range(len(rows)):
        mine = groups == groups[i]
        assert got[i] == 100.0 * np.sum(v[mine] < v[i]) / mine.sum()


def test_member_percentiles_leave_others_at_0():
    v = np.array([3.0, 1.0, 2.0, 9.0, 2.0])
    members = np.array([True, True, True, False, True])
    assert scoring.member_percentiles(v, members).tolist() == [75.0, 0.0, 25.0, 0.0, 25.0]


def test_topic_values_sum_per_topic_and_user_with_each_topics_top():
    table = scoring.topic_values(
        topic=np.array([1, 1, 1, 2]),
        user=np.array([4, 4, 0, 4]),
        contribution=np.array([1.0, 2.0, 5.0, 0.5]),
        n_users=10,
    )
    topic, user = table.topics_and_users(10)
    assert list(zip(topic.tolist(), user.tolist())) == [(1, 0), (1, 4), (2, 4)]
    assert table.value.tolist() == [5.0, 3.0, 0.5]
    assert table.bounds == {1: (0, 2, 5.0), 2: (2, 3, 0.5)}
    assert table.percentile.tolist() == [50.0, 0.0, 0.0]
    assert table.scores()[[0, 2]].tolist() == [100.0, 100.0]


S, N, X = AccountStatus.SEED, AccountStatus.NORMAL, AccountStatus.SUSPENDED


DAY = 86_400.0


@pytest.mark.parametrize(
    ("status", "ages", "teleport"),
    [
        ([N, S, X, S], [0, 0, 0, 0], [0, 1, 0, 1]),  # nobody aged: the seeds
        ([N, N, X], [0, 0, 0], [1, 1, 0]),  # nobody aged, no seed: every member
        ([X, X], [9, 9], [0, 0]),  # nobody to teleport to
        ([N, N, X, N], [15, 60, 60, 0], [0.5, 1, 0, 0]),  # maturity: age / 30 days, capped
        ([N, S], [30, 0], [0.85, 0.15]),  # seeds: 0.15 each, 0.85 |S| by maturity
    ],
)
def test_the_teleport_vector_is_maturity_blended_with_the_seeds(status, ages, teleport):
    now = 1_700_000_000.0
    first_seen = now - np.array(ages, float) * DAY
    got = scoring.teleport_vector(np.array(status, np.uint8), first_seen, now, ModelParams())
    assert got.dtype == np.float64
    np.testing.assert_allclose(got, teleport, rtol=1e-12)


@given(
    rows=st.lists(
        st.tuples(st.integers(0, 2), st.integers(0, 4), st.integers(0, 4), st.booleans()),
        max_size=40,
    ),
    least=st.integers(1, 3),
)
def test_a_topic_supports_users_with_enough_distinct_credible_endorsers(rows, least):
    """Counted by brute force: each (topic, user) keeps the rows of credible endorsers
    when at least ``least`` distinct credible endorsers endorse it; repeats count once."""
    topic, user, endorser, credible = (
        (np.array(c, dtype=int) for c in zip(*rows)) if rows else (np.zeros(0, int),) * 4
    )
    got = scoring.supported(topic, user, endorser, credible.astype(bool), least)
    for i, (t, u, _, ok) in enumerate(rows):
        backers = {a for (t2, u2, a, ok2) in rows if (t2, u2) == (t, u) and ok2}
        assert got[i] == (bool(ok) and len(backers) >= least)
