"""ExplainChange's split of a score change into causes (docs/model.md, "What a change
explains"): driven through known causes, the parts sum to the whole and the cause
that moved the score is named, with its contributor."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable

import grpc
import pytest
from support import DAY, T0, rejected, run_cli

from scoresvc.client import ScoreClient
from scoresvc.core.change import Cause, ScoreChange, explain_change, moderated
from scoresvc.core.engine import Engine
from scoresvc.core.model import AccountStatus
from scoresvc.core.wording import change_summary
from scoresvc.service.server import ServerSettings, build_server
from scoresvc.storage.history import History
from scoresvc.v1 import score_service_pb2 as pb
from scoresvc.v1 import score_service_pb2_grpc as pb_grpc

NOW = T0 + 1.0


def _community(now: float = NOW) -> Engine:
    """ana is endorsed by bob (who is endorsed by five fans) and by carol; everyone
    else is background, all established (first seen 60 days before ``now``)."""
    engine = Engine()
    old = now - 60 * DAY
    for i in range(12):
        engine.endorse(f"bg{i}", f"bg{(i + 1) % 12}", "", old, now=old)
        engine.endorse(f"bg{i}", "carol", "", old, now=old) if i < 3 else None
    for i in range(5):
        engine.endorse(f"fan{i}", "bob", "", old, now=old)
        engine.endorse(f"bg{i}", f"fan{i}", "", old, now=old)
    engine.endorse("bob", "ana", "", old, now=old)
    engine.endorse("carol", "ana", "", old, now=old)
    return engine


def _change(
    tmp_path, act: Callable[[Engine], None], later: float = NOW, user: str = "ana"
) -> ScoreChange:
    engine = _community()
    history = History(tmp_path / "history", clock=lambda: NOW)
    engine.refresh(NOW)
    snap, sources, flows = engine.top_inflows(4)
    history.record(snap, at=NOW, inflows=(sources, flows))
    act(engine)
    engine.refresh(later)
    before = history.standing(user, NOW)
    assert before is not None
    change = explain_change(user, before, engine.standing(user))
    _assert_parts_sum_to_the_whole(change)
    return change


def _assert_parts_sum_to_the_whole(change: ScoreChange) -> None:
    influence = sum(p.influence_change for p in change.parts)
    score = sum(p.score_change for p in change.parts)
    scale = max(abs(change.before.influence), abs(change.after.influence), 1.0)
    assert influence == pytest.approx(change.influence_change, abs=1e-9 * scale)
    assert score == pytest.approx(change.score_change, abs=1e-9 * 100)


def _largest(change: ScoreChange):
    return change.parts[0]


def test_change_an_endorser_retracting_is_that_link(tmp_path):
    change = _change(tmp_path, lambda e: e.retract("bob", "ana", "", NOW, now=NOW))
    top = _largest(change)
    assert (top.cause, top.contributor_id) == (Cause.CONTRIBUTOR_LINK, "bob")
    assert top.score_change < 0 and change.score_change < 0


def test_change_an_endorsers_own_standing_falling_is_that_contributors_standing(tmp_path):
    def bob_loses_his_fans(engine: Engine) -> None:
        for i in range(5):
            engine.retract(f"fan{i}", "bob", "", NOW, now=NOW)

    change = _change(tmp_path, bob_loses_his_fans)
    top = _largest(change)
    assert (top.cause, top.contributor_id) == (Cause.CONTRIBUTOR_STANDING, "bob")
    assert top.influence_change < 0
    link = [
        p for p in change.parts if p.cause == Cause.CONTRIBUTOR_LINK and p.contributor_id == "bob"
    ]
    assert all(abs(p.influence_change) < 1e-9 for p in link)  # bob's endorsement is unchanged


def test_change_time_passing_splits_exactly(tmp_path):
    change = _change(tmp_path, lambda e: None, later=NOW + 45 * DAY)
    assert {p.cause for p in change.parts} <= {
        Cause.OWN_ACCOUNT,
        Cause.CONTRIBUTOR_STANDING,
        Cause.CONTRIBUTOR_LINK,
        Cause.OTHER_CONTRIBUTORS,
        Cause.TOP_OF_RANKING,
    }


def test_change_a_new_top_user_rescales_the_score(tmp_path):
    def a_star_appears(engine: Engine) -> None:
        for i in range(12):
            engine.endorse(f"bg{i}", "star", "", NOW, now=NOW)
        for i in range(5):
            engine.endorse(f"fan{i}", "star", "", NOW, now=NOW)

    change = _change(tmp_path, a_star_appears)
    rescaled = [p for p in change.parts if p.cause == Cause.TOP_OF_RANKING]
    assert len(rescaled) == 1 and rescaled[0].score_change < 0
    assert change.after.influence_max > change.before.influence_max


def test_change_credible_distrust_is_the_users_own_distrust(tmp_path):
    def distrusted(engine: Engine) -> None:
        for i in range(4):
            engine.distrust(f"bg{i}", "ana", "", NOW, now=NOW)

    change = _change(tmp_path, distrusted)
    top = _largest(change)
    assert top.cause == Cause.DISTRUST and top.influence_change < 0
    assert change.after.kept < 1.0


def test_change_a_suspended_contributor_loses_its_standing(tmp_path):
    change = _change(tmp_path, lambda e: e.set_status("bob", AccountStatus.SUSPENDED, now=NOW))
    top = _largest(change)
    assert (top.cause, top.contributor_id) == (Cause.CONTRIBUTOR_STANDING, "bob")


def test_change_a_suspension_of_the_user_is_its_status(tmp_path):
    change = _change(tmp_path, lambda e: e.set_status("ana", AccountStatus.SUSPENDED, now=NOW))
    assert _largest(change).cause == Cause.STATUS
    assert change.after.influence == 0.0


def test_change_an_invalidated_trade_is_moderation_naming_the_action(tmp_path):
    engine = _community()
    old = NOW - 60 * DAY
    engine.endorse("ana", "carol", "", old, now=old)  # carol and ana trade endorsements
    history = History(tmp_path / "history", clock=lambda: NOW)
    engine.refresh(NOW)
    snap, sources, flows = engine.top_inflows(4)
    history.record(snap, at=NOW, inflows=(sources, flows))
    action = engine.invalidate_between(["carol", "ana"], reason="trade", now=NOW + 1)
    engine.refresh(NOW + 1)
    before = history.standing("ana", NOW)
    assert before is not None
    plain = explain_change("ana", before, engine.standing("ana"))
    linked = [p.contributor_id for p in plain.parts if p.cause == Cause.CONTRIBUTOR_LINK]
    change = moderated(plain, *engine.moderation_between("ana", linked, NOW, math.inf))
    _assert_parts_sum_to_the_whole(change)
    assert [p.influence_change for p in change.parts] == [
        p.influence_change for p in plain.parts
    ]  # only labels changed
    top = _largest(change)
    assert (top.cause, top.contributor_id) == (Cause.MODERATION, "carol")
    assert top.moderation_action_ids == (action.action_id,) and top.score_change < 0
    assert not [
        p for p in change.parts if p.cause == Cause.CONTRIBUTOR_LINK and p.contributor_id == "carol"
    ]
    assert (
        "A moderator setting aside or restoring what passed between you and carol "
        f"(moderation action #{action.action_id})" in " ".join(change_summary(change))
    )
    # An action before the interval is not this change's.
    assert engine.moderation_between("ana", linked, NOW + 1, math.inf) == ({}, [])


# ------------------------------------------------------------------ over the wire


@pytest.fixture
def served(tmp_path):
    """A server on loopback over the community, which recorded one point at start-up."""
    history = History(tmp_path / "history")
    settings = ServerSettings(refresh_gap_seconds=0.005, history_interval_seconds=3600)
    engine = _community(time.time())
    server = build_server("127.0.0.1:0", engine, settings, history=history).start()
    try:
        assert history.wait_for_points(1, 120)
        with ScoreClient(server.address, timeout=30) as client:
            yield client, history.times()[0], server.address
    finally:
        server.stop(0)


def test_explain_change_over_the_wire_names_the_retraction_with_its_event(served):
    client, recorded, _ = served
    done = client.retract("bob", "ana")
    client.score("ana", min_sequence=done.sequence)
    change = client.explain_change("ana", recorded + 1)
    (point,) = client.score_history("ana", end_time=recorded + 1)
    assert change.from_time == pytest.approx(point.compute_time, abs=1e-6)
    assert change.score_after - change.score_before == pytest.approx(
        sum(p.score_change for p in change.parts), abs=1e-9
    )
    top = change.parts[0]
    assert (top.cause, top.contributor_id) == (Cause.CONTRIBUTOR_LINK, "bob")
    assert [(e.endorser_id, e.retracted) for e in top.events] == [("bob", True)]
    assert change.summary[0].startswith("Your score fell from")
    assert any("bob" in line for line in change.summary[1:])


def test_explain_change_errors_name_the_field(served):
    client, recorded, _ = served
    assert rejected(client.explain_change, "nobody", recorded).code == grpc.StatusCode.NOT_FOUND
    early = rejected(client.explain_change, "ana", recorded - 3600)
    assert early.code == grpc.StatusCode.FAILED_PRECONDITION
    assert [f for f, _ in early.field_violations] == ["from_time"]
    backwards = rejected(client.explain_change, "ana", recorded + 10, recorded)
    assert [f for f, _ in backwards.field_violations] == ["from_time"]
    stub = pb_grpc.ScoreServiceStub(client.channel)
    with pytest.raises(grpc.RpcError) as missing:
        stub.ExplainChange(pb.ExplainChangeRequest(user_id="ana"))
    assert missing.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "from_time" in missing.value.details()
    with pytest.raises(grpc.RpcError) as topic:
        stub.ExplainChange(pb.ExplainChangeRequest(user_id="ana", topic="python"))
    assert "topic" in topic.value.details()


def test_scoresvc_why_prints_the_change_and_its_causes(served):
    client, recorded, address = served
    done = client.retract("bob", "ana")
    client.score("ana", min_sequence=done.sequence)
    printed = run_cli("why", "ana", "--since", str(recorded + 1), "--address", address)
    assert printed.returncode == 0, printed.stderr
    assert "Your score fell" in printed.stdout
    assert "contributor_link" in printed.stdout and "bob" in printed.stdout
    as_json = run_cli("why", "ana", "--since", str(recorded + 1), "--address", address, "--json")
    parts = json.loads(as_json.stdout)["parts"]
    assert parts[0]["cause"] == "CONTRIBUTOR_LINK" and parts[0]["contributor_id"] == "bob"
    missing = run_cli("why", "ana", "--address", address)
    assert missing.returncode != 0 and "--since" in missing.stderr


def test_explain_change_over_the_wire_names_an_invalidation_and_a_suspension(served):
    client, recorded, _ = served
    invalidated = client.invalidate_between(["carol", "ana"], reason="trade")
    client.score("ana", min_sequence=invalidated.sequence)
    change = client.explain_change("ana", recorded + 1)
    assert change.score_after - change.score_before == pytest.approx(
        sum(p.score_change for p in change.parts), abs=1e-9
    )
    (named,) = [p for p in change.parts if p.cause == Cause.MODERATION]
    assert named.contributor_id == "carol" and named.score_change < 0
    assert named.moderation_action_ids == (invalidated.action_id,)
    assert any("moderation action #1" in line for line in change.summary)
    suspended = client.suspend_cluster(["ana"], reason="sock puppet")
    client.score("ana", min_sequence=suspended.sequence)
    change = client.explain_change("ana", recorded + 1)
    (status,) = change.parts[:1]
    assert status.cause == Cause.STATUS
    assert status.moderation_action_ids == (suspended.action_id,)
