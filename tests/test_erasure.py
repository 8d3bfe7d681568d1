"""Erasure (EraseUser): the user is gone from the engine, and every other score is
what a fresh engine fed the same events without them computes."""

from __future__ import annotations

import numpy as np
import pytest
from support import CRED_ABS, CRED_REL, DAY, T0

from scoresvc.core.engine import Engine
from scoresvc.core.errors import InvalidArgument, NotFound
from scoresvc.core.model import AccountStatus
from scoresvc.core.moderation import ModerationKind

ERASED = "erased-user-7f3a"
USERS = [f"user{i}" for i in range(24)]


def _writes(rng: np.random.Generator) -> list[tuple]:
    """A community's writes, in order; some name ERASED."""
    everyone = [*USERS, ERASED]
    writes: list[tuple] = [("status", "user0", AccountStatus.SEED)]
    for day in range(30):
        rows = []
        for _ in range(40):
            a, b = rng.choice(len(everyone), 2, replace=False)
            ts = T0 - (30 - day) * DAY + float(rng.uniform(0, DAY))
            rows.append((everyone[a], everyone[b], int(rng.integers(1, 5)), ts))
        writes.append(("interactions", rows))
        a, b = rng.choice(len(everyone), 2, replace=False)
        topic = ["", "rust", "go"][day % 3]
        writes.append(("endorse", everyone[a], everyone[b], topic, T0 - (30 - day) * DAY))
    writes += [
        ("endorse", ERASED, "user3", "", T0 - 2 * DAY),
        ("endorse", "user3", ERASED, "rust", T0 - 2 * DAY),
        ("distrust", ERASED, "user4", T0 - DAY),
        ("distrust", "user5", ERASED, T0 - DAY),
        ("distrust", "user6", "user7", T0 - DAY),
        ("invalidate", ["user1", "user2", ERASED]),
        ("interactions", [(ERASED, "lonely", 1, T0 - DAY)]),  # known only through ERASED
        ("status", ERASED, AccountStatus.SEED),
    ]
    return writes


def _feed(engine: Engine, writes: list[tuple], without: str | None = None) -> None:
    for write in writes:
        kind, args = write[0], write[1:]
        if kind == "interactions":
            rows = [r for r in args[0] if without not in (r[0], r[1])]
            if rows:
                engine.record_interactions(rows, now=T0)
        elif without in args:
            continue
        elif kind == "status":
            engine.set_status(args[0], args[1], now=T0)
        elif kind == "endorse":
            engine.endorse(*args, now=T0)
        elif kind == "distrust":
            engine.distrust(args[0], args[1], ts=args[2], now=T0)
        elif kind == "invalidate":
            engine.invalidate_between([u for u in args[0] if u != without], reason="ring", now=T0)


def _assert_same_scores(erased: Engine, fresh: Engine, at: float) -> None:
    a, b = erased.refresh(at), fresh.refresh(at)
    assert sorted(a.user_ids[: a.n_users]) == sorted(b.user_ids[: b.n_users])
    for user_id in b.user_ids[: b.n_users]:
        got, want = a.credibility_of(a.user(user_id)), b.credibility_of(b.user(user_id))
        assert got == pytest.approx(want, rel=CRED_REL, abs=CRED_ABS), user_id
        for topic in ("", "rust", "go"):
            got_score, want_score = a.score(user_id, topic), b.score(user_id, topic)
            assert got_score.influence == pytest.approx(
                want_score.influence, rel=CRED_REL, abs=CRED_ABS
            ), (user_id, topic)
            assert got_score.percentile == pytest.approx(want_score.percentile, abs=1e-9)


def test_erasure_leaves_the_scores_of_a_world_without_the_user() -> None:
    writes = _writes(np.random.default_rng(7))
    erased, fresh = Engine(threads=1), Engine(threads=1)
    _feed(erased, writes)
    _feed(fresh, writes, without=ERASED)
    erased.refresh(T0)
    receipt = erased.erase_user(ERASED, reason=f"{ERASED} asked to be forgotten", now=T0 + 60)
    assert receipt.sequence == erased.sequence
    assert receipt.endorsement_events >= 2 and receipt.distrust_events == 2
    assert receipt.interaction_links > 0
    assert receipt.accounts == 2  # the user, and "lonely", known only through them
    assert not erased.has_user(ERASED) and not erased.has_user("lonely")
    _assert_same_scores(erased, fresh, T0 + 120)
    _assert_same_scores(erased, fresh, T0 + 30 * DAY)


def test_erasure_leaves_no_trace_in_trails_and_the_moderation_trail() -> None:
    writes = _writes(np.random.default_rng(8))
    engine = Engine(threads=1)
    _feed(engine, writes)
    engine.erase_user(ERASED, reason=f"request from {ERASED}", actor="ops", now=T0 + 60)
    actions, _ = engine.moderation_actions(0, 100)
    assert actions[0].kind == ModerationKind.ERASE_USER
    assert actions[0].user_ids == () and ERASED not in actions[0].reason
    assert all(ERASED not in a.user_ids and ERASED not in a.reason for a in actions)
    for user_id in ("user3", "user4", "user5"):
        for given in (True, False):
            page, _ = engine.list_endorsements(user_id, given, 0, 1000)
            assert all(ERASED not in (e.endorser_id, e.endorsee_id) for e in page)
    log, _ = engine.compacted_log()
    assert ERASED not in (log.user_ids or [])
    state = engine.state()
    assert not any(ERASED.encode() in a.tobytes() for a in state.arrays.values())


def test_erasure_keeps_what_moderation_set_aside_between_others() -> None:
    writes = _writes(np.random.default_rng(9))
    erased, fresh = Engine(threads=1), Engine(threads=1)
    _feed(erased, writes)
    _feed(fresh, writes, without=ERASED)
    erased.erase_user(ERASED, reason="asked", now=T0 + 60)
    for engine in (erased, fresh):
        ring = next(
            a
            for a in engine.moderation_actions(0, 100)[0]
            if a.kind == ModerationKind.INVALIDATE_BETWEEN
        )
        engine.restore_between(ring.action_id, reason="appeal", now=T0 + 90)
    _assert_same_scores(erased, fresh, T0 + 120)


def test_erasure_of_an_unknown_user_or_without_a_reason_is_refused() -> None:
    engine = Engine(threads=1)
    engine.record_interactions([("a", "b", 1, T0)], now=T0)
    with pytest.raises(NotFound) as found:
        engine.erase_user("nobody", reason="asked")
    assert found.value.field == "user_id"
    with pytest.raises(InvalidArgument) as invalid:
        engine.erase_user("a", reason=" ")
    assert [v.field for v in invalid.value.violations] == ["reason"]
    assert engine.has_user("a")


def test_writes_after_an_erasure_count_normally() -> None:
    engine = Engine(threads=1)
    engine.record_interactions([("a", "b", 1, T0), ("b", "c", 2, T0)], now=T0)
    engine.erase_user("a", reason="asked", now=T0)
    engine.record_interactions([("a", "c", 1, T0 + 1)], now=T0 + 1)
    snap = engine.refresh(T0 + 2)
    assert engine.has_user("a") and snap.credibility_of(snap.user("c")) > 0
