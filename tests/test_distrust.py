"""Distrust, docs/model.md step 8 and property 14: each test pins one claim, with the
model's constants written here as literals."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from support import DAY, T0, close_credibility, engine_for

from scoresvc.core.engine import Engine
from scoresvc.core.errors import InvalidArgument, NotFound
from scoresvc.core.model import AccountStatus
from scoresvc.synthetic import community

NOW = T0 + 1.0
H = 30 * DAY
GAMMA = 16.0  # distrust_strength: units of trust one unit of credible distrust cancels


def _community(seeded: bool = False) -> tuple[Engine, list[str]]:
    log = community(1500, 40, seed=5, end=NOW - DAY)
    assert log.user_ids is not None
    if seeded:
        log.status[:4] = AccountStatus.SEED
    engine, _ = engine_for(log, NOW)
    return engine, list(log.user_ids)


def _credibility(engine: Engine, user: str) -> float:
    snap = engine.snapshot
    return float(snap.credibility[snap.user_index[user]])


@given(
    n=st.integers(1, 30),
    target=st.integers(0, 39),
    seeded=st.booleans(),
    shape=st.sampled_from(["star", "ring"]),
)
@settings(max_examples=20, deadline=None)
def test_distrust_from_fresh_accounts_is_worth_nothing(n, target, seeded, shape):
    """Fresh accounts hold no credibility, so their distrust, however many and whether
    they also endorse each other (a ring), moves nobody."""
    engine, users = _community(seeded)
    before = engine.refresh(NOW)
    fresh = [f"smear{i}" for i in range(n)]
    for i, account in enumerate(fresh):
        engine.distrust(account, users[target], "", NOW, now=NOW)
        if shape == "ring" and n > 1:
            engine.endorse(account, fresh[(i + 1) % n], "", NOW, now=NOW)
    after = engine.refresh(NOW)
    old = [after.user_index[u] for u in users]
    assert close_credibility(after.credibility[old], before.credibility[: len(users)]).all()
    assert after.score(users[target]).explanation.trust_kept == 1.0
    assert after.score(users[target]).explanation.distrust_received == pytest.approx(n)


@given(distruster=st.integers(0, 39), distrusted=st.integers(0, 39), age=st.floats(0, 3))
@settings(max_examples=20, deadline=None)
def test_distrust_weighs_as_much_as_the_distrusters_credibility(distruster, distrusted, age):
    """One distrust of weight ``2^(-age/H)`` from ``a``: ``u`` keeps
    ``c_u / (c_u + 16 c_a 2^(-age/H))`` of its trust, with the credibilities of the
    graph without distrust (one step)."""
    if distruster == distrusted:
        return
    engine, users = _community()
    engine.refresh(NOW)
    c_a, c_u = _credibility(engine, users[distruster]), _credibility(engine, users[distrusted])
    weight = 2.0 ** (-age)
    engine.distrust(users[distruster], users[distrusted], "", NOW - age * H, now=NOW)
    explanation = engine.refresh(NOW).score(users[distrusted]).explanation
    assert explanation.distrust_received == pytest.approx(weight, rel=1e-12)
    want = c_u / (c_u + GAMMA * c_a * weight)
    assert explanation.trust_kept == pytest.approx(want, rel=1e-5)


def test_distrust_splits_a_distrusters_credibility_over_its_distrusts():
    """Distrusting ten users at once spends a tenth of one's credibility on each."""
    engine, users = _community()
    engine.refresh(NOW)
    c_a = _credibility(engine, users[0])
    targets = users[1:11]
    c = {u: _credibility(engine, u) for u in targets}
    for u in targets:
        engine.distrust(users[0], u, "", NOW, now=NOW)
    snap = engine.refresh(NOW)
    for u in targets:
        want = c[u] / (c[u] + GAMMA * c_a / 10)
        assert snap.score(u).explanation.trust_kept == pytest.approx(want, rel=1e-5)


def test_distrust_a_distrusted_user_passes_less_trust_on():
    """v's only support is u; when credible users distrust u, v falls too."""
    engine, users = _community()
    engine.endorse(users[5], "protege", "", NOW - 40 * DAY, now=NOW - 40 * DAY)
    before = engine.refresh(NOW).score("protege").influence
    for a in users[:5]:
        engine.distrust(a, users[5], "", NOW, now=NOW)
    snap = engine.refresh(NOW)
    assert snap.score(users[5]).explanation.trust_kept < 0.5
    assert snap.score("protege").influence < 0.75 * before


def test_distrust_retaliation_changes_nothing_the_accusers_spend():
    """f distrusts everyone who distrusts it: the distrust f receives, and the share of
    trust it keeps, are what they were."""
    engine, users = _community()
    accusers, f = users[:3], users[10]
    for a in accusers:
        engine.distrust(a, f, "", NOW, now=NOW)
    kept = engine.refresh(NOW).score(f).explanation.trust_kept
    for a in accusers:
        engine.distrust(f, a, "", NOW, now=NOW)
    again = engine.refresh(NOW).score(f).explanation.trust_kept
    assert again == pytest.approx(kept, rel=1e-9)


def test_distrust_retracted_equals_never_distrusting():
    engine, users = _community()
    before = engine.refresh(NOW)
    engine.distrust(users[0], users[1], "python", NOW - 60, now=NOW)
    assert engine.refresh(NOW).score(users[1]).explanation.trust_kept < 1.0
    engine.retract_distrust(users[0], users[1], "Python ", NOW, now=NOW)
    after = engine.refresh(NOW)
    old = [after.user_index[u] for u in users]
    np.testing.assert_allclose(after.credibility[old], before.credibility[: len(users)], rtol=1e-5)


def test_distrust_is_in_the_audit_trail_with_what_decides_it():
    engine = Engine()
    engine.endorse("a", "b", "", NOW - 30, now=NOW)
    engine.distrust("a", "c", "rust", NOW - 20, now=NOW)
    engine.retract_distrust("a", "c", "rust", NOW - 10, now=NOW)
    entries, following = engine.list_endorsements("a", True, 0, 10)
    assert following is None
    assert [(e.endorsee_id, e.distrust, e.retracted) for e in entries] == [
        ("c", True, True),
        ("c", True, False),
        ("b", False, False),
    ]
    assert [e.decides_current_state for e in entries] == [True, False, True]
    received, _ = engine.list_endorsements("c", False, 0, 1)
    assert received[0].distrust and received[0].retracted


def test_distrust_bad_input_names_the_field_and_a_missing_retraction_is_not_found():
    engine = Engine()
    error = rejected_engine(lambda: engine.distrust("a", "a", "", NOW, now=NOW))
    assert [v.field for v in error.violations] == ["distrusted_id"]
    error = rejected_engine(lambda: engine.distrust("", "b", "", NOW, now=NOW))
    assert [v.field for v in error.violations] == ["distruster_id"]
    with pytest.raises(NotFound) as missing:
        engine.retract_distrust("a", "b", "", NOW, now=NOW)
    assert missing.value.field == "distrusted_id"
    assert engine.sequence == 0  # nothing was accepted


def rejected_engine(call) -> InvalidArgument:
    with pytest.raises(InvalidArgument) as error:
        call()
    return error.value


def test_distrust_survives_a_checkpoint_and_the_compacted_log():
    engine, users = _community()
    engine.distrust(users[0], users[1], "", NOW - DAY, now=NOW)
    engine.distrust(users[2], users[1], "", NOW - DAY, now=NOW)
    engine.retract_distrust(users[2], users[1], "", NOW, now=NOW)
    want = engine.refresh(NOW).score(users[1])
    restored = Engine()
    restored.restore(engine.state())
    log, _ = engine.compacted_log(NOW)
    rebuilt = Engine()
    rebuilt.load_events(log)
    for other in (restored, rebuilt):
        got = other.refresh(NOW).score(users[1])
        assert got.explanation.trust_kept == pytest.approx(want.explanation.trust_kept, rel=1e-6)
        assert got.influence == pytest.approx(want.influence, rel=1e-6)
    assert len(rebuilt.list_endorsements(users[1], False, 0, 100)[0]) >= 2
