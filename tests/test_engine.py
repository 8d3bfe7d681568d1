"""The engine's API: edge cases, validation, idempotency, limits, snapshots."""

from __future__ import annotations

import math
import threading

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from support import DAY, T0, assert_matches_reference, engine_for, subset

from scoresvc.core.endorsement_limit import EndorsementLimit
from scoresvc.core.engine import Engine
from scoresvc.core.errors import Conflict, InvalidArgument, NotFound, RateLimited
from scoresvc.core.events import EventLog
from scoresvc.core.graph import SlackCSR
from scoresvc.core.model import AccountStatus, InteractionKind, ModelParams
from scoresvc.core.pairs import PairTable, pack_pairs, reversed_pairs
from scoresvc.core.records import EngineState, WriteRecord
from scoresvc.synthetic import community

NOW = T0 + 1.0
LIKE, REPLY = InteractionKind.LIKE, InteractionKind.REPLY


# ---------------------------------------------------------------- edge cases


def test_empty_engine_publishes_an_empty_snapshot():
    engine = Engine()
    snap = engine.refresh(NOW)
    assert snap.n_users == 0 and snap.sequence == 0
    assert snap.top(10) == []
    with pytest.raises(NotFound):
        snap.score("nobody")


def test_one_user_is_the_average_and_the_top():
    engine = Engine()
    engine.set_status("solo", AccountStatus.NORMAL)
    got = engine.refresh(NOW).score("solo")
    assert got.influence == pytest.approx(1.0)
    assert got.score == pytest.approx(100.0)
    assert got.percentile == 0.0


def test_everyone_suspended_scores_one_with_no_influence():
    log = community(300, 20, seed=1)
    log.status = np.full(20, AccountStatus.SUSPENDED, np.uint8)
    _, snap = engine_for(log, float(log.ts.max()))
    assert not snap.influence.any()
    assert {snap.score(u).score for u in log.user_ids} == {1.0}
    assert {snap.score(u).percentile for u in log.user_ids} == {0.0}


def test_seeds_that_reach_nobody_keep_all_the_trust():
    """With the whole teleport vector on the seeds (``seed_prior_share`` 1)."""
    log = community(300, 20, seed=2)
    now = float(log.ts.max())
    loner = EventLog(n_users=1, user_ids=["loner"], status=np.array([AccountStatus.SEED]))
    engine, _ = engine_for(log, now, params=ModelParams(seed_prior_share=1.0))
    engine.load_events(loner)
    snap = engine.refresh(now)
    assert snap.score("loner").influence == pytest.approx(snap.n_users)
    assert sum(snap.score(u).influence for u in log.user_ids) == 0.0


def test_no_seeds_teleports_to_everyone_and_influence_averages_one():
    """Everyone seen before the snapshot's time has a share of the teleport vector."""
    log = community(2000, 100, seed=3)
    _, snap = engine_for(log, float(log.ts.max()) + 1.0)
    assert snap.influence.mean() == pytest.approx(1.0)
    assert snap.teleport_share.min() > 0


def test_duplicate_interactions_count_and_duplicate_endorsements_do_not():
    engine = Engine()
    engine.record_interactions([("a", "b", LIKE, T0), ("a", "b", LIKE, T0)], now=NOW)
    engine.endorse("a", "b", "", T0, now=NOW)
    engine.endorse("a", "b", "", T0, now=NOW)
    snap = engine.refresh(T0)
    explanation = snap.score("b").explanation
    assert explanation.engagement_received == pytest.approx(2.0)
    assert explanation.endorsements_received == pytest.approx(5.0)


def test_out_of_order_endorsement_events_resolve_by_time():
    """A retraction stamped before the endorsement it follows in arrival order does
    not remove it; the same events as a log agree with the oracle."""
    log = EventLog(
        n_users=3,
        endorser=[0, 0, 1, 1],
        endorsee=[1, 1, 2, 2],
        topic=[1, 1, 0, 0],
        endorse_ts=[T0, T0 - DAY, T0 - DAY, T0 - DAY],
        retracted=[False, True, True, False],
        topics=["", "python"],
    )
    engine, snap = engine_for(log, NOW)
    assert snap.score("u1").explanation.endorsements_received > 0
    # Same second: the retraction wins whatever the arrival order.
    assert snap.score("u2").explanation.endorsements_received == 0
    assert_matches_reference(engine, snap, log, NOW)


def test_the_trail_marks_the_events_that_decide_each_endorsement():
    """Out-of-order events in a bulk load and live writes: the deciding event of each
    endorsement is the latest by time, and a checkpoint's restore keeps the marks."""
    log = EventLog(
        n_users=3,
        endorser=[0, 0, 1, 1],
        endorsee=[1, 1, 2, 2],
        topic=[1, 1, 0, 0],
        endorse_ts=[T0, T0 - DAY, T0 - DAY, T0 - DAY],
        retracted=[False, True, True, False],
        topics=["", "python"],
    )
    engine, _ = engine_for(log, NOW)

    def marks(user: str) -> list[tuple[bool, bool]]:
        page, _ = engine.list_endorsements(user, True, 0, 10)
        return [(e.retracted, e.decides_current_state) for e in page]

    assert marks("u0") == [(True, False), (False, True)]
    assert marks("u1") == [(False, False), (True, True)]  # same second: the retraction
    done = engine.retract("u0", "u1", "python", T0 - 60, now=NOW)
    assert done.endorsement_live is True
    assert marks("u0") == [(True, False), (True, False), (False, True)]
    assert engine.endorse("u1", "u2", "", T0 - 2 * DAY, now=NOW).endorsement_live is False
    assert engine.endorse("u1", "u2", "", T0, now=NOW).endorsement_live is True
    assert marks("u1") == [(False, True), (False, False), (False, False), (True, False)]
    restored = Engine()
    restored.restore(engine.state())
    engine = restored
    assert marks("u1") == [(False, True), (False, False), (False, False), (True, False)]


def test_endorsing_again_refreshes_the_time():
    engine = Engine()
    engine.endorse("a", "b", "", T0 - 60 * DAY, now=NOW)
    old = engine.refresh(NOW).score("b").explanation.endorsements_received
    engine.endorse("a", "b", "", T0, now=NOW)
    new = engine.refresh(NOW).score("b").explanation.endorsements_received
    assert old == pytest.approx(new / 4, rel=1e-3)


def test_suspension_is_reversible():
    log = community(3000, 200, seed=4)
    now = float(log.ts.max())
    engine, before = engine_for(log, now)
    star = before.top(1)[0][0]
    engine.set_status(star, AccountStatus.SUSPENDED)
    during = engine.refresh(now)
    assert during.score(star).influence == 0.0
    assert during.score(star).status is AccountStatus.SUSPENDED
    engine.set_status(star, AccountStatus.NORMAL)
    after = engine.refresh(now)
    np.testing.assert_allclose(after.influence, before.influence, rtol=1e-5, atol=1e-12)


# ---------------------------------------------------------------- validation


def test_bad_rows_reject_the_whole_batch_and_apply_nothing():
    engine = Engine()
    engine.record_interactions([("a", "b", LIKE, T0)], now=NOW)
    sequence, pairs, users = engine.sequence, engine.n_pairs, engine.n_users
    rows = [
        ("c", "d", LIKE, T0),
        ("c", "c", LIKE, T0),
        ("", "d", LIKE, T0),
        ("c", "x" * 129, LIKE, T0),
        ("c", "d", 0, T0),
        ("c", "d", LIKE, NOW + 3600),
        ("c", "d", LIKE, -5.0),
    ]
    with pytest.raises(InvalidArgument) as caught:
        engine.record_interactions(rows, now=NOW)
    found = {(v.index, v.field) for v in caught.value.violations}
    assert found == {
        (1, "target_id"),
        (2, "actor_id"),
        (3, "target_id"),
        (4, "kind"),
        (5, "event_time"),
        (6, "event_time"),
    }
    assert (engine.sequence, engine.n_pairs, engine.n_users) == (sequence, pairs, users)


def test_a_bulk_load_with_an_invalid_id_is_refused_whole():
    # Trusted input too: ids are kept as UTF-8 bytes, which every reader decodes.
    engine = Engine()
    engine.load_events(community(200, 20, seed=1, end=NOW))
    before = (engine.sequence, engine.n_pairs, engine.n_users)
    for bad in ("", "x" * 129, "\ud800"):
        log = community(200, 20, seed=2, end=NOW)
        assert log.user_ids is not None
        log.user_ids[3] = bad
        with pytest.raises(InvalidArgument) as caught:
            engine.load_events(log)
        assert [(v.field, v.index) for v in caught.value.violations] == [("user_ids", 3)]
        assert (engine.sequence, engine.n_pairs, engine.n_users) == before
    assert engine.refresh(NOW).score("user0000001").influence >= 0


def test_violations_are_capped_at_one_hundred_but_counted():
    engine = Engine()
    n = 250
    with pytest.raises(InvalidArgument) as caught:
        engine.record_interaction_columns(
            ["a", "b"], np.zeros(n), np.zeros(n), np.ones(n), np.full(n, T0), now=NOW
        )
    assert len(caught.value.violations) == 100
    assert caught.value.total == n


def test_multibyte_ids_are_measured_in_utf8_bytes():
    engine = Engine()
    ok = "é" * 64  # 128 bytes
    engine.record_interactions([(ok, "b", LIKE, T0)], now=NOW)
    with pytest.raises(InvalidArgument):
        engine.record_interactions([("é" * 65, "b", LIKE, T0)], now=NOW)


@pytest.mark.parametrize(
    ("args", "field"),
    [
        (("a", "a", ""), "endorsee_id"),
        (("", "b", ""), "endorser_id"),
        (("a", "b", "t" * 200), "topic"),
    ],
)
def test_bad_endorsements_name_the_field(args, field):
    with pytest.raises(InvalidArgument) as caught:
        Engine().endorse(*args, now=NOW)
    assert caught.value.violations[0].field == field


@pytest.mark.parametrize("when", [math.nan, math.inf, -math.inf])
def test_times_that_are_not_finite_get_one_clear_message(when):
    engine = Engine()
    for call in (engine.endorse, engine.retract):
        with pytest.raises(InvalidArgument) as caught:
            call("a", "b", "go", when, now=NOW)
        assert [(v.field, v.description) for v in caught.value.violations] == [
            ("event_time", "must be a finite number of seconds")
        ]
    with pytest.raises(InvalidArgument) as caught:
        engine.record_interaction_columns(["a", "b"], [0], [1], [1], [when], now=NOW)
    assert [v.description for v in caught.value.violations] == [
        "must be a finite number of seconds"
    ]


def test_retracting_what_is_not_live_is_not_found():
    engine = Engine()
    with pytest.raises(NotFound):
        engine.retract("a", "b", "", now=NOW)
    engine.endorse("a", "b", "go", T0, now=NOW)
    with pytest.raises(NotFound):
        engine.retract("a", "b", "rust", now=NOW)
    engine.retract("a", "b", "go", T0 + 1, now=NOW)
    with pytest.raises(NotFound):
        engine.retract("a", "b", "go", T0 + 2, now=NOW)


# ---------------------------------------------------------------- idempotency, limits


def test_a_request_id_is_applied_once_and_answers_the_same():
    engine = Engine()
    rows = [("a", "b", LIKE, T0)]
    first = engine.record_interactions(rows, request_id="r1", now=NOW)
    again = engine.record_interactions(rows, request_id="r1", now=NOW)
    assert first == again
    assert engine.sequence == first.sequence
    snap = engine.refresh(T0)
    assert snap.score("b").explanation.engagement_received == pytest.approx(1.0)
    e1 = engine.endorse("a", "b", "", T0, request_id="e1", now=NOW)
    assert engine.endorse("a", "b", "", T0, request_id="e1", now=NOW) == e1


def test_a_request_id_reused_for_another_request_conflicts():
    engine = Engine()
    engine.record_interactions([("a", "b", LIKE, T0)], request_id="r1", now=NOW)
    with pytest.raises(Conflict):
        engine.record_interactions([("a", "c", LIKE, T0)], request_id="r1", now=NOW)


def test_endorsements_are_rate_limited_per_endorser_per_day():
    engine = Engine(ModelParams(daily_endorsement_limit=3))
    for i in range(3):
        engine.endorse("a", f"b{i}", "", now=NOW)
    with pytest.raises(RateLimited) as caught:
        engine.endorse("a", "b9", "", now=NOW + 10)
    assert 0 < caught.value.retry_after_seconds <= DAY
    engine.endorse("other", "b9", "", now=NOW + 10)  # per endorser
    engine.endorse("a", "b9", "", now=NOW + DAY + 1)  # the window slides


def test_endorsements_waiting_on_the_journal_count_toward_the_daily_limit():
    # Writers wait for the journal outside the ingest lock, so one endorser's writes can
    # all be accepted before the first is applied; each must still see the others.
    engine = Engine(ModelParams(daily_endorsement_limit=3))
    engine.endorse("known", "x0", "", now=NOW)  # applied at once: no journal yet
    queued: list[WriteRecord] = []
    engine.attach_journal(lambda record: queued.append(record) or (lambda: None))
    for i in range(3):
        engine.endorse("new", f"b{i}", "", now=NOW)
    engine.endorse("known", "x1", "", now=NOW)
    engine.endorse("known", "x2", "", now=NOW)
    for endorser in ("new", "known"):
        with pytest.raises(RateLimited):
            engine.endorse(endorser, "b9", "", now=NOW + 10)
    engine.endorse("other", "b9", "", now=NOW + 10)  # per endorser, still
    # A write the journal could not store gives its room back; applied ones keep theirs.
    engine.discard(queued[0])
    engine.endorse("new", "b8", "", now=NOW + 20)
    for record in queued[1:]:
        engine.replay(record)
    for endorser in ("new", "known"):
        with pytest.raises(RateLimited):
            engine.endorse(endorser, "b9", "", now=NOW + 30)
    assert engine.refresh(NOW + 30).score("b8").explanation.endorsements_received > 0


def _backfill(engine: Engine, times: list[float], now: float) -> None:
    for i, ts in enumerate(times):
        engine.endorse("a", f"b{i}", "", ts, now=now)


def test_a_backfill_spread_over_many_days_of_event_time_is_accepted_whole():
    """The limit counts event time, not arrival: 200 endorsements, ten a day over 20
    days, all arriving now, in order and out of order."""
    times = [NOW - 20 * DAY + i * DAY / 10 for i in range(200)]
    shuffled = list(np.random.default_rng(1).permutation(times))
    for order in (times, shuffled, times[::-1]):
        engine = Engine()  # 20 a day, the default
        _backfill(engine, order, NOW)
        given, _ = engine.list_endorsements("a", True, 0, 1000)
        assert len(given) == 200


def test_more_than_the_limit_within_one_day_of_event_time_is_refused():
    """Twenty endorsements of one past day arriving days apart fill that day."""
    engine = Engine()
    day = NOW - 10 * DAY
    for i in range(20):
        engine.endorse("a", f"b{i}", "", day + i * 3600, now=NOW + i * DAY)
    with pytest.raises(RateLimited) as caught:
        engine.endorse("a", "late", "", day + 20 * 3600, now=NOW + 30 * DAY)
    assert 0 < caught.value.retry_after_seconds <= DAY
    # Out of order: an earlier time would put 21 into the day that follows it.
    with pytest.raises(RateLimited):
        engine.endorse("a", "early", "", day - 3600, now=NOW + 30 * DAY)
    engine.endorse("a", "next-day", "", day + DAY, now=NOW + 30 * DAY)
    engine.endorse("a", "day-before", "", day - DAY, now=NOW + 30 * DAY)


@given(
    hours=st.lists(st.integers(0, 24 * 6), max_size=80),
    limit=st.integers(1, 6),
)
def test_no_24_hours_of_event_time_hold_more_than_the_limit_in_any_arrival_order(hours, limit):
    """Whatever the arrival order, every window (s - 24 h, s] of the accepted
    endorsements holds at most the limit, and each refusal was needed."""
    window = EndorsementLimit(limit, DAY, 90 * DAY)
    accepted: list[float] = []
    for ts in (T0 + h * 3600.0 for h in hours):
        if window.refusal(0, ts, T0 + 6 * DAY) is None:
            window.add(0, ts, T0 + 6 * DAY)
            accepted.append(ts)
        else:
            with_it = np.array([*accepted, ts])
            assert any(((with_it > end - DAY) & (with_it <= end)).sum() > limit for end in with_it)
    times = np.array(accepted)
    for end in times:
        assert ((times > end - DAY) & (times <= end)).sum() <= limit


def test_the_endorsement_limit_keeps_only_the_horizon_in_memory():
    """Two years of endorsements at the limit, in order: what is kept stays within
    the horizon (90 days) and every day of it is still enforced."""
    limit = EndorsementLimit(20, DAY, 90 * DAY)
    newest = -np.inf
    for ts in T0 + np.arange(730 * 20) * (DAY / 20):
        assert limit.refusal(7, ts, newest) is None
        newest = max(newest, ts)
        limit.add(7, ts, newest)
    assert len(limit) <= 20 * (90 + 1)
    assert limit.refusal(7, newest - 30 * DAY, newest) is not None
    kept = limit.arrays(newest)["rate_time"]
    assert kept.min() >= newest - 90 * DAY and np.all(np.diff(kept) >= 0)


def test_the_endorsement_limit_survives_a_checkpoint():
    engine = Engine(ModelParams(daily_endorsement_limit=3))
    day = NOW - 5 * DAY
    _backfill(engine, [day, day + 60, day + 120], NOW)
    restored = Engine(ModelParams(daily_endorsement_limit=3))
    restored.restore(engine.state())
    with pytest.raises(RateLimited):
        restored.endorse("a", "b9", "", day + 180, now=NOW)
    restored.endorse("a", "b9", "", day + DAY, now=NOW)


# ---------------------------------------------------------------- reading


def test_contributor_shares_and_the_teleport_share_add_up_to_one():
    log = community(5000, 300, seed=6)
    engine, snap = engine_for(log, float(log.ts.max()))
    for user, _, _ in snap.top(10):
        _, contributors = engine.explain(user, 10_000)
        total = (
            sum(share for _, share in contributors) + snap.score(user).explanation.teleport_share
        )
        assert total == pytest.approx(1.0, rel=1e-6)


def test_the_endorsement_trail_pages_newest_first_with_retractions():
    engine = Engine()
    for i in range(5):
        engine.endorse("a", f"b{i}", "go", T0 + i, now=NOW)
    engine.retract("a", "b1", "go", T0 + 10, now=NOW)
    page, following = engine.list_endorsements("a", True, 0, 4)
    assert [e.endorsee_id for e in page] == ["b1", "b4", "b3", "b2"]
    assert page[0].retracted and not page[1].retracted
    rest, end = engine.list_endorsements("a", True, following, 4)
    assert [e.endorsee_id for e in rest] == ["b1", "b0"] and end is None
    received, _ = engine.list_endorsements("b1", False, 0, 10)
    assert [e.retracted for e in received] == [True, False]
    with pytest.raises(NotFound):
        engine.list_endorsements("ghost", True, 0, 10)


def test_snapshots_are_immutable_once_published():
    log = community(3000, 200, seed=7)
    now = float(log.ts.max())
    engine, snap = engine_for(log, now)
    influence, received = snap.influence.copy(), snap.received.copy()
    engine.load_events(community(3000, 200, seed=8))
    later = engine.refresh(now)
    assert later.sequence > snap.sequence
    np.testing.assert_array_equal(snap.influence, influence)
    np.testing.assert_array_equal(snap.received, received)


def test_topic_scores_rank_within_the_topic():
    engine = Engine()
    for fan in range(6):
        engine.endorse(f"fan{fan}", "guru", "python", T0, now=NOW)
    engine.endorse("fan0", "novice", "python", T0, now=NOW)
    engine.endorse("fan1", "novice", "python", T0, now=NOW)  # two endorsers: ranked
    snap = engine.refresh(NOW)
    guru, novice = snap.score("guru", "python"), snap.score("novice", "python")
    assert guru.score == pytest.approx(100.0) and novice.score < guru.score
    assert guru.percentile > novice.percentile
    assert [u for u, _, _ in snap.top(5, "python")] == ["guru", "novice"]
    assert snap.score("fan1", "python").score == 1.0
    assert snap.top(5, "no-such-topic") == []


def test_concurrent_writers_readers_and_refreshes_lose_nothing():
    log = community(4000, 150, seed=9)
    now = float(log.ts.max()) + 1
    engine = Engine()
    engine.set_status(log.user_ids[0], AccountStatus.NORMAL)
    engine.refresh(now)
    errors: list[BaseException] = []
    stop = threading.Event()

    def write(part: np.ndarray) -> None:
        try:
            for chunk in np.array_split(part, 20):
                rows = [
                    (
                        log.user_ids[log.actor[i]],
                        log.user_ids[log.target[i]],
                        int(log.kind[i]),
                        float(log.ts[i]),
                    )
                    for i in chunk
                ]
                engine.record_interactions(rows, now=now)
        except BaseException as exc:
            errors.append(exc)

    def read() -> None:
        try:
            while not stop.is_set():
                snap = engine.snapshot
                for u, _, _ in snap.top(5):
                    snap.score(u)
                    engine.explain(u, 3)
        except BaseException as exc:
            errors.append(exc)

    def refresh() -> None:
        try:
            while not stop.is_set():
                engine.refresh(now)
        except BaseException as exc:
            errors.append(exc)

    parts = np.array_split(np.arange(log.n_interactions), 3)
    writers = [threading.Thread(target=write, args=(p,)) for p in parts]
    others = [threading.Thread(target=read), threading.Thread(target=refresh)]
    for t in writers + others:
        t.start()
    for t in writers:
        t.join()
    stop.set()
    for t in others:
        t.join()
    assert not errors
    snap = engine.refresh(now)
    # Every account was first seen by the API at ``now``, whatever its events' times:
    # the oracle is given the first-seen times the engine keeps.
    interactions_only = EventLog(
        n_users=log.n_users,
        actor=log.actor,
        target=log.target,
        kind=log.kind,
        ts=log.ts,
        user_ids=log.user_ids,
        first_seen=np.full(log.n_users, now),
    )
    assert_matches_reference(engine, snap, interactions_only, now, exact_edges=False)


def test_accounts_crossing_the_maturity_age_count_in_the_gate_from_the_next_refresh():
    """Support from elsewhere counts established senders only; an account becomes one
    by age alone, with no event, so the refresh after it crosses the maturity age
    recomputes the support of its targets and the gates that read it."""
    end = 1_767_225_600.0
    log = community(3000, 80, seed=12, end=end, days=20)
    rng = np.random.default_rng(12)
    newcomers = rng.random(log.n_users) < 0.3
    log.first_seen = np.where(newcomers, end - 25 * DAY, end - 90 * DAY)
    engine, _ = engine_for(log, end + 1)
    after = engine.refresh(end + 6 * DAY)
    assert_matches_reference(engine, after, log, end + 6 * DAY)
    # and from scratch before they cross it, where they count for nothing
    assert_matches_reference(*engine_for(log, end + 1), log, end + 1)


def test_memory_is_reported_by_part():
    engine, _ = engine_for(community(5000, 300, seed=10), NOW)
    parts = engine.memory_bytes()
    assert set(parts) == {"pairs", "graph", "users", "endorsements", "snapshot"}
    assert all(v > 0 for v in parts.values())
    # The solver's credibility and teleport vector are the snapshot's: counted once.
    snap = engine.snapshot
    assert parts["snapshot"] == snap.nbytes - snap.x.nbytes - snap.teleport.nbytes


# ---------------------------------------------------------------- bulk loads


@given(
    users=st.integers(1, 12),
    events=st.lists(
        st.tuples(st.integers(0, 11), st.integers(0, 11), st.integers(0, 3), st.integers(0, 50)),
        min_size=1,
        max_size=80,
    ),
    weighted=st.booleans(),
    threads=st.sampled_from([1, 2, 3]),
    endorsed=st.lists(st.tuples(st.integers(0, 11), st.integers(0, 11)), max_size=20),
)
def test_a_load_into_an_empty_table_builds_the_pairs_adding_them_one_by_one_would(
    users, events, weighted, threads, endorsed
):
    # Ids of the log to the engine's, shuffled; pairs of a user with itself included.
    dense = np.random.default_rng(users).permutation(12)[:users].astype(np.int64)
    actor = np.array([e[0] % users for e in events], np.int64)
    target = np.array([e[1] % users for e in events], np.int64)
    channel = np.array([e[2] for e in events], np.int8)
    ts = T0 - np.array([e[3] for e in events], np.float64) * DAY
    weight = np.linspace(0.5, 3.0, len(events)) if weighted else None
    # Pairs endorsements reach next: the build creates them with no sums.
    also = tuple(dense[np.array([e[k] % users for e in endorsed], np.int64)] for k in (0, 1))
    one_by_one, built = PairTable(ModelParams()), PairTable(ModelParams())
    one_by_one.add_interactions(dense, actor, target, channel, ts, weight)
    one_by_one.slots(pack_pairs(*also))
    built.build(dense, actor, target, channel, ts, threads, weight, also=also)
    built_n, room = built.n, len(built.key)
    built.slots(pack_pairs(*also))
    assert built.n == built_n and len(built.key) == room

    n = one_by_one.n
    assert built.n == n and built.landmark == one_by_one.landmark
    slots = built.lookup(one_by_one.key[:n])
    assert np.array_equal(built.key[slots], one_by_one.key[:n])
    # The same sums to the last bit: each pair's events are added in the same order.
    assert np.array_equal(built.fd[slots], one_by_one.fd[:n])
    reverse = one_by_one.lookup(reversed_pairs(one_by_one.key[:n]))
    assert np.array_equal(one_by_one.rev[:n], reverse)
    assert np.array_equal(built.rev[slots], np.where(reverse >= 0, slots[reverse], -1))
    assert (built.rev[n:] == -1).all() and not built.eslot_bits.any()


def test_a_restored_pair_table_has_every_reverse_slot_and_room_for_the_spare_pairs():
    engine = Engine(threads=1)
    engine.load_events(community(3000, 150, seed=4, end=NOW))
    arrays = engine.state().arrays
    # A state from before the reverse slots were kept finds them by hash instead.
    older = {name: a for name, a in arrays.items() if name != "pair_rev"}
    n = len(arrays["pair_key"])
    spare = n - 100
    for state in (arrays, older):
        table = PairTable.from_arrays(state, ModelParams(), spare_pairs=spare)
        assert np.array_equal(table.rev[:n], table.lookup(reversed_pairs(table.key[:n])))
        assert (table.rev[n:] == -1).all()
        # The spare pairs arrive without the index growing (a rehash of every key).
        buckets = table.index.nbytes
        src, dst = np.divmod(np.arange(spare, dtype=np.int64), 50)
        table.slots(pack_pairs(src + 1000, dst + 2000))
        assert table.n == n + spare and table.index.nbytes == buckets
        keys = table.key[: table.n]
        assert np.array_equal(table.rev[: table.n], table.lookup(reversed_pairs(keys)))
    assert "pair_rev" in arrays
    # Spare pairs are counted in events, most of which may repeat pairs: the buckets
    # reserved for them are capped, so a long tail of repeats leaves no large index.
    reserved = PairTable.from_arrays(arrays, ModelParams(), spare_pairs=100 * n).index.nbytes
    assert reserved <= PairTable.from_arrays(arrays, ModelParams(), spare_pairs=n).index.nbytes


@given(st.lists(st.lists(st.integers(0, 299), max_size=40), max_size=5))
def test_endorsement_slots_are_given_once_in_order_and_flagged_by_pair(batches):
    table = PairTable(ModelParams())
    src, dst = np.divmod(np.arange(300), 20)
    table.slots(pack_pairs(src, dst + 100))
    expected: dict[int, int] = {}
    for batch in batches:
        table.give_endorsement_slots(np.array(batch, np.int32))
        for p in sorted(set(batch) - set(expected)):
            expected[p] = len(expected)
    pairs = np.arange(300)
    want = np.array([expected.get(p, -1) for p in range(300)])
    assert np.array_equal(table.eslots(pairs), want)
    flagged = (table.eslot_bits[pairs >> 6] >> (pairs & 63).astype(np.uint64)) & 1
    assert np.array_equal(flagged.astype(bool), want >= 0)
    assert table.n_eslots == len(expected) and len(table.e_sum) >= len(expected)
    table.e_sum[:] = np.arange(1, len(table.e_sum) + 1)
    sums = np.zeros(len(pairs))
    sums[want >= 0] = table.e_sum[want[want >= 0]]
    assert np.array_equal(table.endorsement_sums(pairs), sums)


def test_a_state_with_an_endorsement_slot_per_pair_restores_the_same_scores():
    engine = Engine(threads=1)
    engine.load_events(community(3000, 150, seed=4, end=NOW))
    state = engine.state()
    eslot_pair = state.arrays["eslot_pair"].astype(np.int64)
    n = len(state.arrays["pair_key"])
    assert 0 < len(eslot_pair) < n  # endorsed pairs are a minority
    # States from before the slots were sparse kept the slot of each pair, -1 for none.
    slot = np.full(n, -1, np.int32)
    slot[eslot_pair] = np.arange(len(eslot_pair), dtype=np.int32)
    arrays = {k: v for k, v in state.arrays.items() if k != "eslot_pair"}
    older = EngineState(state.sequence, arrays | {"pair_eslot": slot}, state.meta)
    now, then = Engine(threads=1), Engine(threads=1)
    now.restore(state)
    then.restore(older)
    a, b = now.refresh(NOW), then.refresh(NOW)
    assert np.array_equal(a.x, b.x) and np.array_equal(a.received, b.received)
    assert (b.received[:, 2] > 0).sum() > 10  # endorsements received, read by pair
    assert np.array_equal(then.state().arrays["eslot_pair"], state.arrays["eslot_pair"])


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_a_full_refresh_in_slot_order_gives_what_row_by_row_gives(threads):
    # Past eight threads the engine computes row by row and sums in a second pass
    # over the in-edges, and the volumes each user receives over its in-edges; up to
    # eight, all of them in slot order.
    log = community(4000, 200, seed=3)
    now = float(log.ts.max()) + 1.0  # 90 days on: most senders are established
    params = ModelParams(endorsement_budget=1.0)  # so that budgets bind
    slot_order, slot_snap = engine_for(log, now, threads=threads, params=params)
    by_row, row_snap = engine_for(log, now, threads=9, params=params)
    np.testing.assert_allclose(slot_snap.received, row_snap.received, rtol=1e-13, atol=0)
    assert slot_snap.received[:, 0].sum() > 0 and slot_snap.received[:, 3].sum() > 0
    mine, theirs = slot_order.edges(), by_row.edges()
    np.testing.assert_array_equal(mine["src"], theirs["src"])
    np.testing.assert_allclose(mine["transition"], theirs["transition"], rtol=1e-13, atol=0)
    np.testing.assert_allclose(mine["budget_factor"], theirs["budget_factor"], rtol=1e-13)
    assert (mine["budget_factor"] < 1).any()
    support = slot_order._scorer.graph.support, by_row._scorer.graph.support
    np.testing.assert_allclose(*support, rtol=1e-13, atol=0)
    assert (support[0] > 0).sum() > 100


@given(
    edges=st.lists(st.tuples(st.integers(0, 9), st.integers(0, 9)), max_size=60, unique=True),
    threads=st.sampled_from([1, 2, 3]),
)
def test_a_new_graph_is_filled_with_the_rows_inserting_its_edges_gives(edges, threads):
    keys = pack_pairs([e[0] for e in edges], [e[1] for e in edges])
    for source in (True, False):
        rows = (keys >> np.uint64(32 if source else 0)) & np.uint64(0xFFFFFFFF)
        filled, inserted = SlackCSR(), SlackCSR()
        filled.grow(10)
        inserted.grow(10)
        filled.fill(keys, source, 10, threads)
        inserted.insert(rows.astype(np.int32), np.arange(len(keys), dtype=np.int32), 10)
        for a in range(10):
            assert filled.row(a).tolist() == inserted.row(a).tolist()
        assert filled.used == len(keys) and (filled.cap == filled.length).all()


def test_a_state_taken_before_the_first_refresh_after_a_restore_hands_on_its_warm_start():
    engine, snap = engine_for(community(3000, 200, seed=4), NOW)
    restored = Engine()
    restored.restore(engine.state())
    handed_on = restored.state().arrays["warm_x"]
    np.testing.assert_array_equal(handed_on, snap.x)
    # After a refresh the published credibility is handed on instead.
    refreshed = restored.refresh(NOW + DAY)
    np.testing.assert_array_equal(restored.state().arrays["warm_x"], refreshed.x)
    again = Engine()
    again.restore(restored.state())
    assert again.refresh(NOW + DAY).stats["sweeps"] <= refreshed.stats["sweeps"]


def test_a_change_trust_does_not_reach_is_refreshed_by_pushes_alone():
    log = community(20_000, 2_000, seed=6)
    now = float(log.ts.max()) + 1.0
    engine, _ = engine_for(log, now)
    fresh = EventLog(
        n_users=2,
        actor=np.array([0]),
        target=np.array([1]),
        kind=np.array([InteractionKind.LIKE], np.int8),
        ts=np.array([now - 10.0]),
        endorser=np.zeros(0, np.int64),
        endorsee=np.zeros(0, np.int64),
        topic=np.zeros(0, np.int64),
        endorse_ts=np.zeros(0),
        retracted=np.zeros(0, bool),
        user_ids=["newcomer-a", "newcomer-b"],
        topics=[""],
    )
    engine.load_events(fresh)
    stats = engine.refresh(now).stats
    assert not stats["full"] and stats["sweeps"] == 0 and stats["pushes"] > 0
    # One more event between established users reaches everyone past the
    # tolerance: the push gives up within its budget and power steps finish.
    last = np.array([log.n_interactions - 1])
    engine.load_events(subset(log, last, np.zeros(0, np.int64)))
    assert engine.refresh(now).stats["sweeps"] > 0
