"""Moderation: suspending a cluster and invalidating what passed between users remove
an attack's weight exactly as if it never happened, reversibly and durably, with an
audit trail served to admins."""

from __future__ import annotations

import sys
from pathlib import Path

import grpc
import numpy as np
import pytest
from support import CRED_ABS, CRED_REL, rejected

from scoresvc.client import ScoreClient
from scoresvc.core.engine import Engine
from scoresvc.core.errors import InvalidArgument, NotFound
from scoresvc.core.model import AccountStatus, ModelParams
from scoresvc.core.moderation import ModerationKind
from scoresvc.core.suspects import SuspectKind
from scoresvc.service.auth import Authenticator, TokenStore
from scoresvc.service.server import ServerSettings, build_server
from scoresvc.storage import archive
from scoresvc.storage.store import Store
from scoresvc.synthetic import community
from scoresvc.v1 import score_service_pb2 as pb
from scoresvc.v1 import score_service_pb2_grpc as pb_grpc

sys.path.insert(0, str(Path(__file__).parent.parent / "benchmarks"))
import bench_gaming as gaming

END = gaming.NOW
LOG = community(12_000, 600, seed=3, end=END)
IDS = list(LOG.user_ids or [])


def built() -> Engine:
    engine = Engine(ModelParams(), threads=1)
    engine.load_events(LOG)
    return engine


CLEAN = built().refresh(END)


def credibility(engine: Engine, now: float = END) -> np.ndarray:
    """The community's users' credibility (in its order) after a refresh at ``now``."""
    snap = engine.refresh(now)
    return np.array([snap.credibility_of(snap.user(u)) for u in IDS])


def assert_close(got: np.ndarray, want: np.ndarray) -> None:
    off = np.abs(got - want) > np.maximum(CRED_REL * np.abs(want), CRED_ABS)
    assert not off.any(), (np.flatnonzero(off)[:5], got[off][:5], want[off][:5])


def attacked(build: gaming.Build, target_rank: int = 300) -> tuple[Engine, gaming.Moves, str]:
    """A community with one attack of the gaming suite aimed at a median user."""
    order = np.argsort(CLEAN.influence, kind="stable")
    pools = {"median": [CLEAN.user_ids[i] for i in order[240:360]]}
    target = CLEAN.user_ids[order[target_rank]]
    moves = gaming.Moves("attack", ModelParams().daily_endorsement_limit)
    build(moves, gaming.Picker(pools, 1), target, 0)
    engine = built()
    moves.apply(engine)
    return engine, moves, target


def involved(moves: gaming.Moves) -> list[str]:
    users = {u for _, a, b, *_ in moves.interactions for u in (a, b)}
    users |= {u for _, a, b, *_ in moves.endorsements for u in (a, b)}
    return sorted(users)


CLEAN_X = credibility(built())
ATTACKS = {
    "trading circle across kinds": gaming.trade(5, across_kinds=True),
    "trading circle of endorsements": gaming.trade(5, across_kinds=False),
    "ring with honest inbound": gaming.ring(6, honest_inbound=True),
}


@pytest.mark.parametrize("name", ATTACKS)
def test_invalidating_an_attack_gives_the_scores_of_a_community_that_never_saw_it(name):
    engine, moves, _target = attacked(ATTACKS[name])
    during = credibility(engine)
    assert not np.allclose(during, CLEAN_X, rtol=1e-3)  # the attack moved scores
    action = engine.invalidate_between(involved(moves), actor="mod", reason="trade", now=END)
    assert action.kind == ModerationKind.INVALIDATE_BETWEEN and action.actor == "mod"
    assert action.endorsement_events > 0
    assert_close(credibility(engine), CLEAN_X)
    # Reversed, the attack's weight is back exactly.
    engine.restore_between(action.action_id, actor="mod", reason="appeal", now=END)
    assert_close(credibility(engine), during)


def without_their_events(engine: Engine, accounts: list[str], suspended: bool) -> np.ndarray:
    """The credibility of the community where ``accounts`` exist, as old as in
    ``engine`` (and suspended, or not), but none of their events ever happened."""
    snap, arrays = engine.evidence_arrays()
    clean = built()
    for u in accounts:
        status = AccountStatus.SUSPENDED if suspended else AccountStatus.NORMAL
        clean.set_status(u, status, now=float(arrays["first_seen"][snap.user_index[u]]))
    return credibility(clean)


def test_invalidating_or_suspending_an_aged_farm_brings_its_beneficiary_back():
    build = gaming.farm(10, age_days=60, arrived_then=True, seed=7)
    engine, moves, target = attacked(build)
    farm, t = moves.fresh, CLEAN.user_index[target]
    assert credibility(engine)[t] > 1.5 * CLEAN_X[t]
    # Invalidated, the farm's accounts are still there (as old), having done nothing.
    engine.invalidate_between([*farm, target], actor="mod", reason="aged farm", now=END)
    assert_close(credibility(engine), without_their_events(engine, farm, suspended=False))
    # Suspended in one call too, they are the accounts a community suspended.
    engine.suspend_cluster(farm, actor="mod", reason="aged farm", now=END)
    assert_close(credibility(engine), without_their_events(engine, farm, suspended=True))
    snap = engine.snapshot
    assert all(snap.status[snap.user_index[u]] == AccountStatus.SUSPENDED for u in farm)


def test_suspending_a_farm_alone_takes_away_the_credibility_it_passed():
    build = gaming.farm(10, age_days=60, arrived_then=True, seed=7)
    engine, moves, target = attacked(build)
    t = CLEAN.user_index[target]
    during = credibility(engine)[t]
    action = engine.suspend_cluster(moves.fresh, actor="mod", reason="aged farm", now=END)
    assert action.user_ids == tuple(moves.fresh) and action.kind == ModerationKind.SUSPEND_CLUSTER
    assert abs(credibility(engine)[t] - CLEAN_X[t]) < 0.05 * (during - CLEAN_X[t])


def test_events_after_an_invalidation_count_and_a_restore_adds_back_only_its_own():
    engine, moves, _target = attacked(ATTACKS["trading circle of endorsements"])
    users = involved(moves)
    first = engine.invalidate_between(users, actor="mod", reason="trade", now=END)
    a, b = users[0], users[1]
    engine.endorse(a, b, "", END, now=END + 1)
    clean = built()
    clean.endorse(a, b, "", END, now=END + 1)
    assert_close(credibility(engine, END + 10), credibility(clean, END + 10))
    # A second invalidation takes the new one; restoring the first leaves it aside.
    second = engine.invalidate_between([a, b], actor="mod", reason="again", now=END + 2)
    assert second.endorsement_events == 1
    engine.restore_between(first.action_id, actor="mod", reason="appeal", now=END + 3)
    redone = built()
    moves.apply(redone)
    assert_close(credibility(engine, END + 10), credibility(redone, END + 10))
    with pytest.raises(NotFound) as twice:
        engine.restore_between(first.action_id, actor="mod", reason="again", now=END + 4)
    assert twice.value.field == "action_id"


def test_bad_moderation_requests_name_their_fields_and_change_nothing():
    engine = built()
    before = engine.sequence
    with pytest.raises(InvalidArgument) as bad:
        engine.invalidate_between(["a", "", "b"], reason=" ", now=END)
    assert [v.field for v in bad.value.violations] == ["reason", "user_ids"]
    assert bad.value.violations[1].index == 1
    with pytest.raises(InvalidArgument) as one:
        engine.invalidate_between(["a", "a"], reason="x", now=END)
    assert one.value.violations[0].field == "user_ids"
    with pytest.raises(NotFound):
        engine.restore_between(7, reason="x", now=END)
    assert engine.sequence == before
    assert engine.moderation_actions(0, 10) == ([], None)


def test_invalidations_survive_a_restart_from_the_journal_or_a_checkpoint(tmp_path):
    for checkpoint in (False, True):
        data = tmp_path / str(checkpoint)
        engine = Engine(ModelParams(), threads=1)
        store = Store(data)
        store.load_into(engine)
        engine.load_events(LOG)
        ring = gaming.Moves("ring", ModelParams().daily_endorsement_limit)
        gaming.ring(6, honest_inbound=True)(ring, gaming.Picker({"median": IDS[:50]}, 1), "", 0)
        ring.apply(engine)
        during = credibility(engine)
        action = engine.invalidate_between(involved(ring), actor="mod", reason="ring", now=END)
        want = credibility(engine)
        assert_close(want, CLEAN_X)
        store.close(final_checkpoint=checkpoint)  # like a kill -9 when False

        again = Engine(ModelParams(), threads=1)
        reopened = Store(data)
        reopened.load_into(again)
        assert_close(credibility(again), want)
        assert again.moderation_actions(0, 10)[0][0] == action
        again.restore_between(action.action_id, actor="mod", reason="appeal", now=END)
        assert_close(credibility(again), during)
        reopened.close()


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_an_archive_omits_what_was_invalidated_and_carries_it_to_restore(tmp_path, fmt):
    engine, moves, _target = attacked(ATTACKS["trading circle across kinds"])
    during = credibility(engine)
    action = engine.invalidate_between(involved(moves), actor="mod", reason="trade", now=END)
    archive.export(engine, tmp_path, fmt)
    tables = {log_part.n_endorsement_events for log_part in archive.read(tmp_path)}
    assert sum(tables) == LOG.n_endorsement_events  # the circle's endorsements left out
    imported = Engine(ModelParams(), threads=1)
    archive.import_into(imported, tmp_path)
    assert_close(credibility(imported), CLEAN_X)
    listed = imported.moderation_actions(0, 10)[0]
    assert [(a.action_id, a.reason, a.user_ids) for a in listed] == [
        (action.action_id, "trade", action.user_ids)
    ]
    imported.restore_between(action.action_id, actor="mod", reason="appeal", now=END)
    assert_close(credibility(imported), during)


def test_moderation_rpcs_are_for_admins_recorded_with_the_caller_and_listed(tmp_path):
    engine, moves, target = attacked(gaming.farm(12, age_days=60, arrived_then=True, seed=7))
    tokens = TokenStore(tmp_path)
    admin, writer = tokens.create("moderator", "admin"), tokens.create("app", "writer")
    settings = ServerSettings(refresh_gap_seconds=0.005, time_step_seconds=3600)
    server = build_server("127.0.0.1:0", engine, settings, auth=Authenticator(tokens)).start()
    try:
        with grpc.insecure_channel(server.address) as channel:
            stub = pb_grpc.ScoreServiceStub(channel)
            as_admin = (("authorization", f"Bearer {admin}"),)
            as_writer = (("authorization", f"Bearer {writer}"),)
            request = pb.InvalidateBetweenRequest(user_ids=[*moves.fresh, target], reason="farm")
            denied = rejected(stub.InvalidateBetween, request, metadata=as_writer)
            assert denied.code == grpc.StatusCode.PERMISSION_DENIED
            no_reason = pb.InvalidateBetweenRequest(user_ids=["a", "b"])
            bad = rejected(stub.InvalidateBetween, no_reason, metadata=as_admin)
            assert bad.field_violations[0][0] == "reason"
            empty_id = pb.SuspendClusterRequest(user_ids=["a", ""], reason="x")
            bad = rejected(stub.SuspendCluster, empty_id, metadata=as_admin)
            assert bad.field_violations[0][0] == "user_ids[1]"
            gone = pb.RestoreBetweenRequest(action_id=9, reason="x")
            missing = rejected(stub.RestoreBetween, gone, metadata=as_admin)
            assert missing.code == grpc.StatusCode.NOT_FOUND

            done = stub.InvalidateBetween(request, metadata=as_admin).action
            assert (done.actor, done.reason, done.action_id) == ("moderator", "farm", 1)
            restore = pb.RestoreBetweenRequest(action_id=1, reason="appeal")
            stub.RestoreBetween(restore, metadata=as_admin)
            # A cluster of the report, by the id ListSuspects gives it.
            with ScoreClient(server.address, token=admin) as client:
                client.list_suspects()  # the first report is ready
            found = stub.ListSuspects(
                pb.ListSuspectsRequest(kind=SuspectKind.SYBIL_FARM_AGED), metadata=as_admin
            ).suspects
            assert found and found[0].cluster_id
            by_cluster = pb.SuspendClusterRequest(cluster_id=found[0].cluster_id, reason="farm")
            suspended = stub.SuspendCluster(by_cluster, metadata=as_admin).action
            assert set(suspended.user_ids) == set(found[0].member_ids)

            listing = pb.ListModerationActionsRequest(page_size=2)
            page = stub.ListModerationActions(listing, metadata=as_admin)
            assert [a.kind for a in page.actions] == [
                pb.MODERATION_ACTION_KIND_SUSPEND_CLUSTER,
                pb.MODERATION_ACTION_KIND_RESTORE_BETWEEN,
            ]
            assert page.actions[1].restores == 1
            listing.page_token = page.next_page_token
            rest = stub.ListModerationActions(listing, metadata=as_admin)
            assert [a.action_id for a in rest.actions] == [1] and not rest.next_page_token
            assert rest.actions[0].restored_by == 2
            denied = rejected(stub.ListModerationActions, listing, metadata=as_writer)
            assert denied.code == grpc.StatusCode.PERMISSION_DENIED
    finally:
        server.stop(0)
