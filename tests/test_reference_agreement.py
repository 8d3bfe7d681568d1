"""The compiled core against the numpy oracle on the same events."""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st
from support import (
    DAY,
    T0,
    H,
    assert_matches_reference,
    close_credibility,
    engine_for,
    event_logs,
    subset,
    vouches,
)

from scoresvc import reference
from scoresvc.core.engine import Engine
from scoresvc.core.events import EventLog
from scoresvc.core.model import AccountStatus
from scoresvc.synthetic import community


@given(log=event_logs())
def test_cold_build_matches_reference(log):
    now = T0 + 1.0
    engine, snap = engine_for(log, now)
    assert_matches_reference(engine, snap, log, now)


@given(log=event_logs(statuses=False), threads=st.sampled_from([1, 2]))
def test_one_thread_and_many_threads_agree_with_reference(log, threads):
    now = T0 + 1.0
    engine, snap = engine_for(log, now, threads=threads)
    assert_matches_reference(engine, snap, log, now)


@given(log=event_logs(), later=st.floats(1.0, 400 * DAY))
def test_warm_refresh_after_time_moves_matches_cold(log, later):
    engine, _ = engine_for(log, T0 + 1.0)
    snap = engine.refresh(T0 + 1.0 + later)
    assert snap.stats["full"]
    assert_matches_reference(engine, snap, log, T0 + 1.0 + later)


@given(log=event_logs(max_users=8), split=st.integers(0, 60), data=st.data())
def test_incremental_refresh_matches_reference(log, split, data):
    """Events arriving after a snapshot: only touched rows are recomputed."""
    now = T0 + 1.0
    first = _slice(log, 0, split)
    engine, before = engine_for(first, now)
    rest = _slice(log, split, None)
    engine.load_events(rest)
    snap = engine.refresh(now)
    # Teleport changes go through the residual; only a user losing its share (the
    # first mature member ends the uniform fallback) needs a cold solve.
    lost = (before.teleport > 0) & (snap.teleport[: before.n_users] == 0)
    unanchored = (snap.teleport == 0) & (snap.status != AccountStatus.SUSPENDED)
    assert snap.stats["full"] == bool(lost.any() and unanchored.any())
    assert_matches_reference(engine, snap, log, now)


@given(
    log=event_logs(max_users=8),
    arrivals=st.lists(
        st.tuples(st.integers(0, 9), st.integers(0, 7), st.integers(0, 60)), max_size=6
    ),
)
def test_accounts_arriving_through_the_api_at_any_age_match_reference(log, arrivals):
    """Writes accepted at earlier server times, refreshed incrementally at one time: the
    new accounts' teleport shares (and older ones' first-seen times moving earlier)
    enter the residual exactly; events back-dated to 1970 date nothing."""
    now = T0 + 1.0
    engine, before = engine_for(log, now)
    assert log.user_ids is not None
    ids = list(log.user_ids)
    first_seen = list(reference.first_seen_times(log))
    actor, target, ts = list(log.actor), list(log.target), list(log.ts)
    for new, old, days in arrivals:
        name, other = f"new{new}", ids[old % log.n_users]
        arrived = now - days * DAY
        engine.record_interactions([(name, other, 1, 0.0)], now=arrived)
        if name not in ids:
            ids.append(name)
            first_seen.append(np.inf)
        a, b = ids.index(name), ids.index(other)
        first_seen[a] = min(first_seen[a], arrived)
        first_seen[b] = min(first_seen[b], arrived)
        actor.append(a)
        target.append(b)
        ts.append(0.0)
    snap = engine.refresh(now)
    lost = (before.teleport > 0) & (snap.teleport[: before.n_users] == 0)
    unanchored = (snap.teleport == 0) & (snap.status != AccountStatus.SUSPENDED)
    assert snap.stats["full"] == bool(lost.any() and unanchored.any())
    status = np.zeros(len(ids), np.uint8)
    status[: log.n_users] = log.status
    merged = EventLog(
        n_users=len(ids),
        user_ids=ids,
        first_seen=first_seen,
        actor=actor,
        target=target,
        kind=[*log.kind, *[1] * (len(actor) - log.n_interactions)],
        ts=ts,
        endorser=log.endorser,
        endorsee=log.endorsee,
        topic=log.topic,
        endorse_ts=log.endorse_ts,
        retracted=log.retracted,
        distruster=log.distruster,
        distrusted=log.distrusted,
        distrust_topic=log.distrust_topic,
        distrust_ts=log.distrust_ts,
        distrust_retracted=log.distrust_retracted,
        status=status,
        topics=log.topics,
    )
    assert_matches_reference(engine, snap, merged, now)


def _slice(log, lo, hi):
    """Interactions and vouches (endorsements, then distrusts) from lo to hi."""

    def span(n):
        return np.arange(min(lo, n), n if hi is None else min(hi, n))

    return subset(log, span(log.n_interactions), span(vouches(log)))


def test_top_contributors_match_reference():
    log = community(3000, 200, seed=3)
    now = float(log.ts.max()) + 1
    engine, snap = engine_for(log, now)
    ref = assert_matches_reference(engine, snap, log, now)
    for u in np.argsort(ref.influence)[-20:]:
        _, got = engine.explain(log.user_ids[u], 5)
        want = ref.top_contributors(int(u), 5)
        assert [log.user_ids[a] for a, _ in want] == [a for a, _ in got]
        np.testing.assert_allclose([s for _, s in got], [s for _, s in want], rtol=1e-5)
        assert sum(s for _, s in got) <= 1.0 + 1e-9


def test_long_runs_of_incremental_refreshes_do_not_accumulate_error():
    """200 small batches, each refreshed incrementally, then checked against a cold
    oracle: the push invariant is restored exactly at every step."""
    log = community(20_000, 600, seed=5)
    now = float(log.ts.max()) + 1
    engine = Engine()
    bounds = np.linspace(0, log.n_interactions, 201).astype(int)
    ebounds = np.linspace(0, log.n_endorsement_events, 201).astype(int)
    for i in range(200):
        batch = _slice(log, bounds[i], bounds[i + 1])
        batch.endorser = log.endorser[ebounds[i] : ebounds[i + 1]]
        batch.endorsee = log.endorsee[ebounds[i] : ebounds[i + 1]]
        batch.topic = log.topic[ebounds[i] : ebounds[i + 1]]
        batch.endorse_ts = log.endorse_ts[ebounds[i] : ebounds[i + 1]]
        batch.retracted = log.retracted[ebounds[i] : ebounds[i + 1]]
        engine.load_events(batch)
        snap = engine.refresh(now)
    assert not snap.stats["full"]
    assert_matches_reference(engine, snap, log, now)


def test_landmark_shift_keeps_precision_over_thousands_of_half_lives():
    """Events 3000 half-lives apart: the landmark moves forward several times and
    every sum still matches direct evaluation."""
    step = 1000 * H
    log = community(400, 30, seed=7)
    log.ts = T0 + (np.arange(log.n_interactions) % 4) * step + log.ts % DAY
    log.endorse_ts = T0 + 3 * step + log.endorse_ts % DAY
    now = T0 + 3 * step + DAY
    engine = Engine()
    landmarks = []
    for quarter in range(4):
        part = _slice(log, 0, 0)
        keep = (np.arange(log.n_interactions) % 4) == quarter
        part.actor, part.target = log.actor[keep], log.target[keep]
        part.kind, part.ts = log.kind[keep], log.ts[keep]
        engine.load_events(part)
        landmarks.append(engine.landmark)
        engine.refresh(float(part.ts.max()))
    engine.load_events(_endorsements_only(log))
    snap = engine.refresh(now)
    assert len(set(landmarks)) == 4, "the landmark never moved"
    assert_matches_reference(engine, snap, log, now)


def _endorsements_only(log):
    part = _slice(log, 0, 0)
    part.endorser, part.endorsee = log.endorser, log.endorsee
    part.topic, part.endorse_ts, part.retracted = log.topic, log.endorse_ts, log.retracted
    return part


def test_solver_meets_tolerance_on_a_larger_community():
    log = community(200_000, 20_000, seed=11)
    now = float(log.ts.max()) + 1
    engine, snap = engine_for(log, now)
    ref = reference.compute(log, now, tolerance=1e-14)
    assert close_credibility(snap.credibility, ref.credibility).all()
    # Then 50 incremental rounds of new events, and a final check.
    extra = community(20_000, 20_000, seed=12)
    for part in np.array_split(np.arange(extra.n_interactions), 50):
        batch = _slice(extra, 0, 0)
        batch.actor, batch.target = extra.actor[part], extra.target[part]
        batch.kind, batch.ts = extra.kind[part], extra.ts[part]
        engine.load_events(batch)
        snap = engine.refresh(now)
    merged = _slice(log, 0, None)
    merged.actor = np.concatenate([log.actor, extra.actor])
    merged.target = np.concatenate([log.target, extra.target])
    merged.kind = np.concatenate([log.kind, extra.kind])
    merged.ts = np.concatenate([log.ts, extra.ts])
    ref = reference.compute(merged, now, tolerance=1e-14)
    assert close_credibility(snap.credibility, ref.credibility).all()
