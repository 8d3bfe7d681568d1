"""The model's properties, each as its own test (docs/model.md, "Properties")."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from support import (
    DAY,
    T0,
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
from scoresvc.core.model import AccountStatus, InteractionKind, ModelParams
from scoresvc.core.topics import normalize_topic
from scoresvc.synthetic import community

NOW = T0 + 1.0
kinds = st.sampled_from(list(InteractionKind))

# The model's defaults as docs/model.md states them: literals, never read from the code,
# so a changed parameter fails these tests instead of moving their expectations along.
H = 30 * DAY
MATURITY = 30 * DAY  # maturity_age_seconds
KIND_WEIGHT = {
    InteractionKind.LIKE: 1.0,
    InteractionKind.MENTION: 1.5,
    InteractionKind.REPLY: 2.0,
    InteractionKind.RESHARE: 3.0,
}
ENDORSEMENT_WEIGHT = 5.0
RHO = 1.0
KAPPA = float(np.log(2.0))  # one fresh like
BUDGET = 50.0


def test_the_default_constants_are_the_specified_ones():
    """docs/model.md, "Parameters": each default as a literal number."""
    p = ModelParams()
    assert p.half_life_seconds == 2_592_000.0  # 30 days
    assert p.kind_weights == (1.0, 1.5, 2.0, 3.0)  # LIKE, MENTION, REPLY, RESHARE
    assert p.endorsement_weight == 5.0
    assert p.reciprocity == 1.0
    assert p.min_row_weight == pytest.approx(0.6931471805599453, rel=1e-15)  # ln 2
    assert p.endorsement_budget == 50.0
    assert p.damping == 0.85
    assert p.max_future_skew_seconds == 300.0
    assert p.daily_endorsement_limit == 20
    assert p.endorsement_limit_horizon_seconds == 7_776_000.0  # 90 days
    assert p.topic_min_endorsers == 2
    assert p.maturity_age_seconds == 2_592_000.0  # 30 days
    assert p.seed_prior_share == 0.15
    assert p.distrust_strength == 16.0
    assert list(p.channel_weights()) == [1.0, 1.5, 2.0, 3.0, 5.0]


def received(engine: Engine, user: str) -> dict[str, float]:
    e = engine.snapshot.score(user).explanation
    return {
        "engagement": e.engagement_received,
        "saturated": e.engagement_saturated,
        "endorsed": e.endorsements_received,
        "effective": e.endorsements_effective,
        "removed": e.reciprocity_removed,
    }


def fresh_engine(users: int, **params: float) -> Engine:
    engine = Engine(ModelParams(**params))
    for i in range(users):
        engine.set_status(f"u{i}", AccountStatus.NORMAL, now=NOW)
    return engine


# 1. Reciprocity ---------------------------------------------------------------------


def _decayed(weight: float, at: float) -> float:
    return weight * 2.0 ** (-(NOW - at) / H)


@given(age_half_lives=st.floats(0.0, 6.0))
def test_reciprocity_returned_endorsement_discounts_the_original(age_half_lives):
    """Between two users with no other support, B endorsing A back removes
    rho * min(V, V_back) of A's endorsement of B: all of it when fully matched."""
    alone = fresh_engine(2)
    alone.endorse("u0", "u1", "", T0, now=NOW)
    alone.refresh(NOW)

    returned = fresh_engine(2)
    returned.endorse("u0", "u1", "", T0, now=NOW)
    returned.endorse("u1", "u0", "", T0 - age_half_lives * H, now=NOW)
    returned.refresh(NOW)

    worth = received(alone, "u1")["effective"]
    assert worth == pytest.approx(_decayed(ENDORSEMENT_WEIGHT, T0), rel=1e-12)
    back = _decayed(ENDORSEMENT_WEIGHT, T0 - age_half_lives * H)
    expected = worth - RHO * min(worth, back)
    got = received(returned, "u1")["effective"]
    assert got == pytest.approx(expected, rel=1e-9, abs=1e-12 * worth)
    # Returned six half-lives later it is still a favour: measurably less.
    assert got < 0.99 * worth
    if age_half_lives == 0.0:
        assert got == pytest.approx(0.0, abs=1e-12 * worth)
    assert received(returned, "u1")["removed"] == pytest.approx(worth - got, rel=1e-9)


@given(kind=kinds, count=st.integers(1, 20))
def test_reciprocity_a_trade_across_kinds_is_penalised_like_a_same_kind_trade(kind, count):
    """An endorsement repaid with interactions of any kind (replies included) loses
    what the same endorsement repaid with an endorsement of that volume loses:
    reciprocity reads a pair's volume across kinds."""
    repaid = fresh_engine(2)
    repaid.endorse("u0", "u1", "", T0, now=NOW)
    repaid.record_interactions([("u1", "u0", kind, T0)] * count, now=NOW)
    repaid.refresh(NOW)
    worth = _decayed(ENDORSEMENT_WEIGHT, T0)
    back = _decayed(count * KIND_WEIGHT[kind], T0)
    got = received(repaid, "u1")["effective"]
    assert got == pytest.approx(worth - RHO * min(worth, back), rel=1e-9, abs=1e-12 * worth)
    assert got < 0.99 * worth
    # The same volume returned as an endorsement, dated to decay to it (one fresh
    # endorsement when the interactions outweigh it: both then keep nothing).
    back = min(back, worth)
    same_kind = Engine()
    same_kind.endorse("u0", "u1", "", T0, now=NOW)
    same_kind.endorse("u1", "u0", "", T0 + H * np.log2(back / worth), now=NOW)
    same_kind.refresh(NOW)
    assert received(same_kind, "u1")["effective"] == pytest.approx(got, rel=1e-9, abs=1e-12)


@given(kind=kinds, count=st.integers(1, 20))
def test_reciprocity_a_returned_favour_is_worth_less_than_one_unreturned(kind, count):
    """Against the same interactions unreturned, replies included: between two users
    with no other support a fully returned favour keeps nothing."""
    one_way = fresh_engine(2)
    one_way.record_interactions([("u0", "u1", kind, T0)] * count, now=NOW)
    both_ways = fresh_engine(2)
    both_ways.record_interactions(
        [("u0", "u1", kind, T0)] * count + [("u1", "u0", kind, T0)] * count, now=NOW
    )
    one_way.refresh(NOW)
    both_ways.refresh(NOW)
    alone, returned = received(one_way, "u1")["saturated"], received(both_ways, "u1")["saturated"]
    assert alone == pytest.approx(np.log1p(_decayed(count * KIND_WEIGHT[kind], T0)), rel=1e-12)
    assert returned == pytest.approx(0.0, abs=1e-9 * alone)


def _background(engine: Engine, users: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    rows = []
    for _ in range(12 * users):
        a, b = rng.choice(users, 2, replace=False)
        rows.append((f"c{a}", f"c{b}", InteractionKind(int(rng.integers(1, 5))), T0))
    engine.record_interactions(rows, now=NOW)


@given(replies=st.integers(1, 30), seed=st.integers(0, 1000), kind=kinds)
def test_reciprocity_a_closed_reply_ring_of_two_gains_nothing(replies, seed, kind):
    """Two accounts engaging only each other (replies or any kind) have exactly the
    influence they had as members with no events, and nobody else moves."""
    baseline = Engine()
    _background(baseline, 20, seed)
    for u in ("r0", "r1"):
        baseline.set_status(u, AccountStatus.NORMAL)
    ring = Engine()
    _background(ring, 20, seed)
    ring.record_interactions(
        [("r0", "r1", kind, T0)] * replies + [("r1", "r0", kind, T0)] * replies, now=NOW
    )
    before, after = baseline.refresh(NOW), ring.refresh(NOW)
    for u in ["r0", "r1", *(f"c{i}" for i in range(20))]:
        assert after.score(u).influence == pytest.approx(before.score(u).influence, rel=1e-6)


@given(others=st.integers(3, 12))
def test_reciprocity_honest_mutual_feedback_between_supported_users_keeps_most(others):
    """Established u0 and u1 (first seen the maturity age ago) endorse each other and
    are each endorsed by ``others`` established users: the penalty is gated by the
    share of each side's support from elsewhere, o = others / (others + 1), removing
    only rho (1 - o^2) of the matched volume."""
    engine = fresh_engine(0)
    for u in ("u0", "u1"):
        engine.set_status(u, AccountStatus.NORMAL, now=NOW - MATURITY)
        for i in range(others):
            engine.set_status(f"{u}-fan{i}", AccountStatus.NORMAL, now=NOW - MATURITY)
            engine.endorse(f"{u}-fan{i}", u, "", T0, now=NOW)
    engine.endorse("u0", "u1", "", T0, now=NOW)
    engine.endorse("u1", "u0", "", T0, now=NOW)
    engine.refresh(NOW)
    worth = _decayed(ENDORSEMENT_WEIGHT, T0)
    own = others / (others + 1)
    removed = received(engine, "u1")["removed"]
    assert removed == pytest.approx(RHO * worth * (1 - own**2), rel=1e-9)
    assert worth - removed > 0.5 * worth


# 2. Dilution ------------------------------------------------------------------------


@given(n=st.integers(1, 40), ages=st.lists(st.floats(0, 3 * H), min_size=40, max_size=40))
def test_dilution_an_endorsers_endorsements_sum_to_at_most_the_budget(n, ages):
    engine = fresh_engine(n + 1, daily_endorsement_limit=0)
    for i in range(n):
        engine.endorse("u0", f"u{i + 1}", "", T0 - ages[i], now=NOW)
    engine.refresh(NOW)
    given_raw = sum(received(engine, f"u{i + 1}")["endorsed"] for i in range(n))
    given_eff = sum(received(engine, f"u{i + 1}")["effective"] for i in range(n))
    assert given_eff <= BUDGET * (1 + 1e-12)
    assert given_eff == pytest.approx(min(given_raw, BUDGET), rel=1e-12)


def test_dilution_endorsing_more_than_the_budget_splits_it_evenly():
    engine = fresh_engine(31, daily_endorsement_limit=0)
    for i in range(30):
        engine.endorse("u0", f"u{i + 1}", "", NOW, now=NOW)
    engine.refresh(NOW)
    each = [received(engine, f"u{i + 1}")["effective"] for i in range(30)]
    np.testing.assert_allclose(each, BUDGET / 30, rtol=1e-12)


# 3. Saturation ----------------------------------------------------------------------


@given(k=st.integers(2, 40), kind=kinds)
def test_saturation_k_interactions_from_one_actor_count_less_than_k_actors(k, kind):
    """Same users in both worlds (actors of equal standing, none with other events)."""
    one = fresh_engine(k + 1)
    one.record_interactions([("u1", "u0", kind, T0)] * k, now=NOW)
    many = fresh_engine(k + 1)
    many.record_interactions([(f"u{i + 1}", "u0", kind, T0) for i in range(k)], now=NOW)
    a, b = one.refresh(NOW), many.refresh(NOW)
    assert received(one, "u0")["engagement"] == pytest.approx(received(many, "u0")["engagement"])
    assert received(one, "u0")["saturated"] < received(many, "u0")["saturated"]
    assert a.score("u0").influence < b.score("u0").influence


# 4. Decay ---------------------------------------------------------------------------


@given(log=event_logs(statuses=False), dt=st.floats(1.0, 1000 * DAY))
def test_decay_received_sums_shrink_by_exactly_two_to_the_minus_dt_over_h(log, dt):
    engine, before = engine_for(log, NOW)
    after = engine.refresh(NOW + dt)
    factor = 2.0 ** (-dt / H)
    for column in (0, 2):  # engagement and endorsements received, before penalties
        np.testing.assert_allclose(
            after.received[:, column],
            before.received[:, column] * factor,
            rtol=1e-12,
            atol=1e-300,
        )


def test_decay_an_event_two_half_lives_old_weighs_a_quarter():
    engine = fresh_engine(3)
    engine.record_interactions(
        [
            ("u0", "u1", InteractionKind.RESHARE, NOW - 2 * H),
            ("u0", "u2", InteractionKind.RESHARE, NOW),
        ],
        now=NOW,
    )
    engine.refresh(NOW)
    old, new = received(engine, "u1")["engagement"], received(engine, "u2")["engagement"]
    assert old == pytest.approx(new / 4, rel=1e-12)


@given(age_half_lives=st.floats(0.5, 600.0))
def test_decay_an_old_only_link_passes_less_than_a_fresh_one(age_half_lives):
    """An account whose only link is old passes less than one whose only link is
    fresh: a row's normaliser is at least kappa (one fresh like), the rest leaks to the
    teleport. A 1970 endorsement from a fresh account is worth about nothing."""

    def passed(at: float) -> tuple[float, float]:
        engine = fresh_engine(3)
        engine.endorse("u0", "u1", "", at, now=NOW)
        snap = engine.refresh(NOW)
        none = np.zeros(0, np.int64)
        log = EventLog(
            n_users=3,
            actor=none,
            target=none,
            kind=none.astype(np.int8),
            ts=none * 1.0,
            endorser=np.array([0]),
            endorsee=np.array([1]),
            topic=np.array([0]),
            endorse_ts=np.array([at]),
            retracted=np.array([False]),
        )
        oracle = reference.compute(log, NOW)
        p = float(engine.edges()["transition"].max())
        assert p == pytest.approx(float(oracle.transition[0]), rel=1e-12, abs=1e-300)
        return p, snap.score("u1").influence

    fresh_p, fresh_i = passed(NOW)
    old_p, old_i = passed(NOW - age_half_lives * H)
    assert fresh_p == pytest.approx(1.0, rel=1e-12)
    weight = _decayed(ENDORSEMENT_WEIGHT, NOW - age_half_lives * H)
    assert old_p == pytest.approx(min(1.0, weight / KAPPA), rel=1e-9)
    if weight < KAPPA:
        assert old_i < fresh_i
    ancient_p, ancient_i = passed(1.0)  # 1970
    assert ancient_p < 1e-100
    assert ancient_i == pytest.approx(fresh_engine_influence(), rel=1e-9)


def fresh_engine_influence() -> float:
    """Influence of a member of three who receives nothing."""
    engine = fresh_engine(3)
    return engine.refresh(NOW).score("u1").influence


# 5. Credibility ---------------------------------------------------------------------


@given(fans=st.integers(3, 15))
def test_credibility_an_established_endorser_is_worth_more_than_a_newcomer(fans):
    """u0 is established (endorsed and engaged by fans); u1 is new. u0 endorses u2,
    u1 endorses u3; nothing else differs."""
    engine = fresh_engine(4)
    for i in range(fans):
        engine.endorse(f"fan{i}", "u0", "", T0, now=NOW)
        engine.record_interactions([(f"fan{i}", "u0", InteractionKind.REPLY, T0)], now=NOW)
    engine.endorse("u0", "u2", "", T0, now=NOW)
    engine.endorse("u1", "u3", "", T0, now=NOW)
    snap = engine.refresh(NOW)
    assert snap.score("u2").influence > snap.score("u3").influence
    assert snap.score("u2").score > snap.score("u3").score


# 6. Rings ---------------------------------------------------------------------------


def _community_with_ring(ring: int, intensity: int, kind: InteractionKind, handful: int):
    """40 users engaging at random, ``handful`` of the most established endorsing one
    honest user, and a ring that only endorses and engages itself."""
    rng = np.random.default_rng(ring * 1000 + intensity)
    n = 40
    engine = Engine()
    rows = []
    for _ in range(600):
        a, b = rng.choice(n, 2, replace=False)
        rows.append((f"c{a}", f"c{b}", InteractionKind(int(rng.integers(1, 5))), T0))
    engine.record_interactions(rows, now=NOW)
    engine.refresh(NOW)
    established = [u for u, _, _ in engine.snapshot.top(handful)]
    for u in established:
        engine.endorse(u, "honest", "", T0, now=NOW)
    ring_rows = []
    for i in range(ring):
        for j in range(ring):
            if i != j:
                engine.endorse(f"r{i}", f"r{j}", "", T0, now=NOW)
                ring_rows += [(f"r{i}", f"r{j}", kind, T0)] * intensity
    engine.record_interactions(ring_rows, now=NOW)
    return engine, established


@given(
    ring=st.integers(3, 8),
    intensity=st.integers(1, 60),
    kind=kinds,
    handful=st.integers(3, 6),
)
def test_rings_rank_below_a_user_endorsed_by_established_users(ring, intensity, kind, handful):
    engine, _ = _community_with_ring(ring, intensity, kind, handful)
    snap = engine.refresh(NOW)
    honest = snap.score("honest").influence
    assert all(snap.score(f"r{i}").influence < honest for i in range(ring))


@given(ring=st.integers(3, 8), intensity=st.integers(1, 60), kind=kinds)
def test_rings_with_seeds_a_group_no_seed_reaches_has_influence_zero(ring, intensity, kind):
    engine, established = _community_with_ring(ring, intensity, kind, 4)
    for u in established:
        engine.set_status(u, AccountStatus.SEED)
    snap = engine.refresh(NOW)
    assert all(snap.score(f"r{i}").influence == 0.0 for i in range(ring))
    assert all(snap.score(f"r{i}").score == 1.0 for i in range(ring))
    assert snap.score("honest").influence > 0.0


# 7. Retraction ----------------------------------------------------------------------


@given(
    log=event_logs(),
    pair=st.tuples(st.integers(0, 9), st.integers(0, 9)),
    topic=st.sampled_from(["", "python", "new-topic"]),
    gap=st.floats(0, 10 * DAY),
)
def test_retraction_endorse_then_retract_equals_never_endorsing(log, pair, topic, gap):
    a, b = pair
    assume(a != b and a < log.n_users and b < log.n_users)
    # The background must not already hold this endorsement.
    same = (log.endorser == a) & (log.endorsee == b) & (np.array(log.topics)[log.topic] == topic)
    assume(not same.any())
    # An endorsement dates its accounts (docs/model.md, "Accounts and their age"): the
    # two were seen before, so only the endorsement differs.
    log.first_seen = np.minimum(reference.first_seen_times(log), NOW)
    plain, _ = engine_for(log, NOW)
    retracted, _ = engine_for(log, NOW)
    retracted.endorse(f"u{a}", f"u{b}", topic, T0 - gap - 60, now=NOW)
    retracted.retract(f"u{a}", f"u{b}", topic, T0 - gap, now=NOW)
    x, y = plain.refresh(NOW + 1), retracted.refresh(NOW + 1)
    # The retracted pair stays in the graph with no weight, so the solvers add in
    # another order: equal to 1e-9, as two builds of the same events are (property 8).
    np.testing.assert_allclose(y.influence, x.influence, rtol=1e-9, atol=1e-15)
    np.testing.assert_allclose(y.received, x.received, rtol=1e-12, atol=1e-300)
    for u in log.user_ids:
        assert y.score(u).score == pytest.approx(x.score(u).score, rel=1e-9)


# 8. Order independence --------------------------------------------------------------


@given(log=event_logs(), seed=st.integers(0, 2**32 - 1), batches=st.integers(1, 6))
def test_order_independence_any_order_or_batching_gives_the_same_influence(log, seed, batches):
    rng = np.random.default_rng(seed)
    _, reference_snap = engine_for(log, NOW)
    shuffled = subset(log, rng.permutation(log.n_interactions), rng.permutation(vouches(log)))
    engine = Engine()
    cuts = np.sort(rng.integers(0, log.n_interactions + 1, batches - 1))
    ecuts = np.sort(rng.integers(0, vouches(log) + 1, batches - 1))
    bounds = zip(np.r_[0, cuts], np.r_[cuts, log.n_interactions])
    ebounds = zip(np.r_[0, ecuts], np.r_[ecuts, vouches(log)])
    for (lo, hi), (elo, ehi) in zip(bounds, ebounds):
        engine.load_events(subset(shuffled, np.arange(lo, hi), np.arange(elo, ehi)))
    snap = engine.refresh(NOW)
    dense = [snap.user_index[u] for u in log.user_ids]
    ref_dense = [reference_snap.user_index[u] for u in log.user_ids]
    np.testing.assert_allclose(
        snap.influence[dense], reference_snap.influence[ref_dense], rtol=1e-9, atol=1e-15
    )


@given(log=event_logs(), seed=st.integers(0, 2**32 - 1), batches=st.integers(2, 6))
def test_order_independence_incremental_refreshes_stay_within_tolerance(log, seed, batches):
    rng = np.random.default_rng(seed)
    _, cold = engine_for(log, NOW)
    shuffled = subset(log, rng.permutation(log.n_interactions), rng.permutation(vouches(log)))
    engine = Engine()
    cuts = np.linspace(0, log.n_interactions, batches + 1).astype(int)
    ecuts = np.linspace(0, vouches(log), batches + 1).astype(int)
    for i in range(batches):
        engine.load_events(
            subset(shuffled, np.arange(cuts[i], cuts[i + 1]), np.arange(ecuts[i], ecuts[i + 1]))
        )
        snap = engine.refresh(NOW)
    dense = [snap.user_index[u] for u in log.user_ids]
    cold_dense = [cold.user_index[u] for u in log.user_ids]
    assert close_credibility(snap.credibility[dense], cold.credibility[cold_dense]).all()


# 12. Anchoring ------------------------------------------------------------------------


def _dated_users(ages: list[float], status: list[int] | None = None) -> EventLog:
    """Users first seen ``ages`` before NOW, with no events (their teleport share is
    all their credibility)."""
    n = len(ages)
    return EventLog(
        n_users=n,
        first_seen=[NOW - a for a in ages],
        status=np.zeros(n, np.uint8) if status is None else np.array(status, np.uint8),
    )


def _teleport(engine: Engine, log: EventLog, now: float = NOW) -> tuple[np.ndarray, np.ndarray]:
    """Step 7's p (normalised) of the engine's snapshot and of the oracle, in log order."""
    snap = engine.refresh(now)
    assert log.user_ids is not None
    got = snap.teleport[[snap.user_index[u] for u in log.user_ids]]
    want = reference.teleport_prior(log.status, reference.first_seen_times(log), now, engine.params)
    return got / got.sum(), want


@given(ages=st.lists(st.integers(0, int(3 * MATURITY)), min_size=2, max_size=12))
def test_anchoring_maturity_ramps_linearly_with_age_to_the_maturity_age(ages):
    log = _dated_users(ages)
    engine, _ = engine_for(log, NOW)
    got, want = _teleport(engine, log)
    ramp = np.minimum(np.array(ages) / MATURITY, 1.0)
    expected = ramp / ramp.sum() if ramp.sum() > 0 else np.full(len(ages), 1 / len(ages))
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(want, expected, rtol=1e-12, atol=1e-15)


def test_anchoring_a_brand_new_deployment_teleports_uniformly_over_members():
    """Nobody has any age yet: trust must be anchored somewhere, so everyone shares."""
    log = _dated_users([0.0] * 5, status=[0, 0, 0, 0, 2])
    engine, _ = engine_for(log, NOW)
    got, want = _teleport(engine, log)
    np.testing.assert_allclose(got, [0.25, 0.25, 0.25, 0.25, 0.0])
    np.testing.assert_allclose(want, [0.25, 0.25, 0.25, 0.25, 0.0])


@given(
    ages=st.lists(st.integers(0, int(3 * MATURITY)), min_size=3, max_size=12),
    seeds=st.sets(st.integers(0, 11), min_size=1, max_size=4),
    share=st.floats(0.0, 1.0),
)
def test_anchoring_with_seeds_the_teleport_blends_the_seed_and_maturity_priors(ages, seeds, share):
    status = [int(AccountStatus.SEED) if i in seeds else 0 for i in range(len(ages))]
    assume(any(status))
    log = _dated_users(ages, status)
    engine, _ = engine_for(log, NOW, params=ModelParams(seed_prior_share=share))
    got, want = _teleport(engine, log)
    seed = np.array(status, float) / sum(1 for s in status if s)
    ramp = np.minimum(np.array(ages) / MATURITY, 1.0)
    # Nobody mature: the seeds alone.
    expected = share * seed + (1 - share) * ramp / ramp.sum() if ramp.sum() > 0 else seed
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(want, expected, rtol=1e-12, atol=1e-15)


def _fresh_attack(engine: Engine, target: str, n: int, shape: str, channel: int) -> list[str]:
    """``n`` accounts created at NOW in ``shape``, every one also endorsing or engaging
    ``target``; returns their ids."""
    fresh = [f"fresh{i}" for i in range(n)]
    links = [(f, target) for f in fresh]
    if shape == "ring":
        links += [(fresh[i], fresh[(i + 1) % n]) for i in range(n) if n > 1]
    elif shape == "clique":
        links += [(a, b) for a in fresh for b in fresh if a != b]
    for a, b in links:
        if channel == 0:
            engine.endorse(a, b, "", NOW - 60, now=NOW)
        else:
            engine.record_interactions([(a, b, InteractionKind(channel), NOW - 60)], now=NOW)
    return fresh


@given(
    n=st.integers(1, 20),  # within the daily endorsement limit
    shape=st.sampled_from(["star", "ring", "clique"]),
    channel=st.integers(0, 4),  # 0: endorsement, else an InteractionKind
    target_is_fresh=st.booleans(),
    seeded=st.booleans(),
)
def test_anchoring_fresh_accounts_pass_on_nothing_in_any_shape(
    n, shape, channel, target_is_fresh, seeded
):
    """Accounts first seen now (by the server's clock) have no teleport share, so a
    target endorsed or engaged only by them gains nothing: every established user's
    credibility is as if they did not exist, and a fresh target stays at 0."""
    log = community(1500, 40, seed=5, end=NOW - DAY)
    assert log.user_ids is not None
    if seeded:
        log.status[:4] = AccountStatus.SEED
    target = "fresh-target" if target_is_fresh else log.user_ids[7]
    _, before = engine_for(log, NOW)
    attacked, _ = engine_for(log, NOW)
    fresh = _fresh_attack(attacked, target, n, shape, channel)
    after = attacked.refresh(NOW)
    for u in fresh + ([target] if target_is_fresh else []):
        assert after.teleport[after.user_index[u]] == 0.0
        assert after.score(u).influence == 0.0
    old = [after.user_index[u] for u in log.user_ids]
    assert close_credibility(after.credibility[old], before.credibility).all()


def test_anchoring_back_dated_first_events_do_not_make_an_account_mature():
    """An account created today whose events claim 1970 is as new as one whose events
    are dated today; an account whose history a bulk load dates 60 days back is mature."""
    engine = Engine()
    engine.load_events(_dated_users([60 * DAY]))  # "u0", mature
    engine.record_interactions([("backdated", "u0", InteractionKind.LIKE, 0.0)], now=NOW)
    engine.endorse("backdated", "u0", "", 1.0, now=NOW)
    engine.record_interactions([("today", "u0", InteractionKind.LIKE, NOW)], now=NOW)
    engine.endorse("today", "u0", "", NOW, now=NOW)
    snap = engine.refresh(NOW + DAY)
    p = {u: snap.teleport[snap.user_index[u]] for u in ("u0", "backdated", "today")}
    assert p["backdated"] == pytest.approx(p["today"], rel=1e-12)
    assert p["backdated"] == pytest.approx(p["u0"] / 30, rel=1e-12)  # one day of thirty
    # The oracle, given the first-seen times the engine keeps.
    log = EventLog(
        n_users=3,
        user_ids=["u0", "backdated", "today"],
        first_seen=[NOW - 60 * DAY, NOW, NOW],
        actor=[1, 2],
        target=[0, 0],
        kind=[1, 1],
        ts=[0.0, NOW],
        endorser=[1, 2],
        endorsee=[0, 0],
        topic=[0, 0],
        endorse_ts=[1.0, NOW],
        retracted=[False, False],
    )
    assert_matches_reference(engine, snap, log, NOW + DAY)


# Suspension --------------------------------------------------------------------------


def _assert_suspended_users_rank_nowhere(
    status: np.ndarray, score, tops: dict[str, list[str]], user_ids: list[str], topics
) -> None:
    """``score(user, topic) -> (score, percentile)``; ``tops``: topic -> ranked ids."""
    suspended = {u for u, s in zip(user_ids, status) if s == AccountStatus.SUSPENDED}
    for u in suspended:
        for topic in topics:
            assert score(u, topic) == (1.0, 0.0), (u, topic)
    for topic, ranked in tops.items():
        assert not suspended & set(ranked), topic


@given(log=event_logs())
def test_suspension_a_suspended_user_scores_the_minimum_and_ranks_nowhere(log):
    """Global and per topic: score 1, percentile 0, absent from every top list (the
    engine and the oracle)."""
    assert log.user_ids is not None
    _, snap = engine_for(log, NOW)

    def engine_score(u: str, topic: str) -> tuple[float, float]:
        got = snap.score(u, topic)
        return got.score, got.percentile

    tops = {t: [u for u, _, _ in snap.top(log.n_users, t)] for t in log.topics}
    _assert_suspended_users_rank_nowhere(log.status, engine_score, tops, log.user_ids, log.topics)
    found, scores, _, percentiles = snap.scores(log.user_ids, "python")
    suspended = log.status == AccountStatus.SUSPENDED
    assert found.all() and (scores[suspended] == 1.0).all()
    assert (percentiles[suspended] == 0.0).all()

    ref = reference.compute(log, NOW)

    def oracle_score(u: str, topic: str) -> tuple[float, float]:
        i = log.user_ids.index(u)
        if not topic:
            return float(ref.score[i]), float(ref.percentile[i])
        t = log.topics.index(topic)
        return (
            ref.topic_score.get(t, {}).get(i, 1.0),
            ref.topic_percentile.get(t, {}).get(i, 0.0),
        )

    ref_tops = {
        log.topics[t]: [log.user_ids[u] for u in values] for t, values in ref.topic_value.items()
    }
    _assert_suspended_users_rank_nowhere(
        log.status, oracle_score, ref_tops, log.user_ids, log.topics
    )


def test_suspension_of_a_topics_leader_removes_it_and_lifting_restores_it():
    engine = fresh_engine(4)
    for fan in ("u1", "u2", "u3"):
        engine.endorse(fan, "u0", "python", T0, now=NOW)
    engine.endorse("u1", "u2", "python", T0, now=NOW)
    engine.endorse("u3", "u2", "python", T0, now=NOW)  # two endorsers: ranked
    before = engine.refresh(NOW)
    assert [u for u, _, _ in before.top(1, "python")] == ["u0"]
    engine.set_status("u0", AccountStatus.SUSPENDED)
    during = engine.refresh(NOW)
    assert "u0" not in [u for u, _, _ in during.top(10, "python")]
    assert during.score("u0", "python").score == 1.0
    assert during.score("u0", "python").percentile == 0.0
    assert during.score("u2", "python").score == 100.0
    engine.set_status("u0", AccountStatus.NORMAL)
    after, was = engine.refresh(NOW).score("u0", "python"), before.score("u0", "python")
    assert (after.score, after.percentile) == pytest.approx((was.score, was.percentile))


# 12. Topic support -----------------------------------------------------------------


@given(log=event_logs(max_endorsements=40), least=st.integers(1, 3))
def test_topic_support_a_topic_ranks_only_users_with_enough_credible_endorsers(log, least):
    """A user is ranked in a topic exactly when at least ``topic_min_endorsers``
    distinct endorsers with influence above 0 endorse them there; anyone else scores 1
    with percentile 0 there and is in no top list (the engine and the oracle alike)."""
    assert log.user_ids is not None
    params = ModelParams(topic_min_endorsers=least)
    _, snap = engine_for(log, NOW, params=params)
    ref = reference.compute(log, NOW, params, tolerance=1e-15, max_iterations=20_000)
    live = reference.live_endorsements(log)
    influence = snap.influence
    dense = np.array([snap.user_index[u] for u in log.user_ids])
    for t, topic in enumerate(log.topics):
        if not topic:
            continue
        ranked = {u for u, _, _ in snap.top(log.n_users, topic)}
        assert {log.user_ids[u] for u in ref.topic_value.get(t, {})} == ranked
        for i, user in enumerate(log.user_ids):
            endorsers = {
                int(a)
                for a, b, k in zip(log.endorser[live], log.endorsee[live], log.topic[live])
                if b == i and k == t and influence[dense[a]] > 0
            }
            supported = len(endorsers) >= least and log.status[i] != AccountStatus.SUSPENDED
            assert (user in ranked) == supported, (topic, user, endorsers)
            if not supported:
                got = snap.score(user, topic)
                assert (got.score, got.percentile) == (1.0, 0.0)


def test_topic_support_one_account_cannot_claim_a_topic():
    """Topic squatting: an endorsement from one account, however credible, ranks no one;
    a second credible endorser does. Fresh accounts with no credibility count for
    nothing, with seeds (where they get none)."""
    engine = fresh_engine(6)
    engine.endorse("u1", "u0", "rust", T0, now=NOW)
    alone = engine.refresh(NOW)
    assert alone.top(10, "rust") == []
    assert alone.score("u0", "rust").score == 1.0
    engine.endorse("u2", "u0", "rust", T0, now=NOW)
    assert [u for u, _, _ in engine.refresh(NOW).top(10, "rust")] == ["u0"]

    seeded = fresh_engine(4)
    seeded.set_status("u3", AccountStatus.SEED)
    seeded.endorse("u3", "u1", "", T0, now=NOW)
    seeded.endorse("u1", "u0", "rust", T0, now=NOW)  # credible: reached from the seed
    for fresh in ("f1", "f2", "f3"):  # no seed reaches them: credibility 0
        seeded.endorse(fresh, "u0", "rust", T0, now=NOW)
    assert seeded.refresh(NOW).top(10, "rust") == []
    seeded.endorse("u3", "u0", "rust", T0, now=NOW)
    assert [u for u, _, _ in seeded.refresh(NOW).top(10, "rust")] == ["u0"]


@given(topic=st.text(max_size=20))
def test_topic_names_are_normalised_idempotently(topic):
    once = normalize_topic(topic)
    assert normalize_topic(once) == once
    if topic.isascii():
        assert normalize_topic(topic.upper()) == normalize_topic(topic.lower())
    assert once == once.strip()


def test_spellings_of_a_topic_are_one_topic_everywhere():
    engine = fresh_engine(4)
    engine.endorse("u1", "u0", "Python", T0, now=NOW)
    engine.endorse("u2", "u0", " python\u3000", T0, now=NOW)  # ideographic space
    engine.retract("u2", "u0", "PYTHON", T0 + 0.5, now=NOW)
    engine.endorse("u3", "u0", "\uff30\uff59\uff54\uff48\uff4f\uff4e", T0, now=NOW)  # full-width
    snap = engine.refresh(NOW)
    assert [u for u, _, _ in snap.top(10, "pYtHoN ")] == ["u0"]
    assert snap.score("u0", "PYTHON").topic == "python"
    assert snap.score("u0", "PYTHON").score == 100.0
    trail, _ = engine.list_endorsements("u0", False, 0, 10)
    assert {e.topic for e in trail} == {"python"}


def test_the_specification_is_self_contained_and_names_real_tests():
    """docs/model.md defines the model: it points to no specification outside the
    repository, and every test it names for a property exists."""
    root = Path(__file__).resolve().parents[1]
    spec = (root / "docs" / "model.md").read_text()
    assert "MODEL.md" not in spec
    named = set(re.findall(r"`(test_\w+)`", spec))
    defined = set()
    for path in (root / "tests").glob("test_*.py"):
        defined |= set(re.findall(r"^def (test_\w+)\(", path.read_text(), re.MULTILINE))
    assert named and named <= defined, named - defined
