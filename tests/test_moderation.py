"""Moderation: suspending a cluster and invalidating what passed between users remove
an attack's weight exactly as if it never happened, reversibly and durably, with an
audit trail served to admins."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import grpc
import numpy as np
import pytest
from support import CRED_ABS, CRED_REL, rejected, run_cli

from scoresvc.client import AsyncScoreClient, ScoreClient
from scoresvc.core.engine import Engine
from scoresvc.core.errors import InvalidArgument, NotFound
from scoresvc.core.model import AccountStatus, ModelParams
from scoresvc.core.moderation import ModerationAction, ModerationKind
from scoresvc.core.suspects import SuspectKind
from scoresvc.service.auth import Authenticator, TokenStore
from scoresvc.service.server import ServerSettings, build_server
from scoresvc.storage import archive
from scoresvc.storage.store import Store
from scoresvc.synthetic import community

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


@pytest.fixture
def served_farm(tmp_path):
    """A server on loopback over a community with an aged farm of 12 aimed at a median
    user, with an admin and a writer token: (address, admin, writer, farm, target)."""
    engine, moves, target = attacked(gaming.farm(12, age_days=60, arrived_then=True, seed=7))
    tokens = TokenStore(tmp_path)
    admin, writer = tokens.create("moderator", "admin"), tokens.create("app", "writer")
    settings = ServerSettings(refresh_gap_seconds=0.005, time_step_seconds=3600)
    server = build_server("127.0.0.1:0", engine, settings, auth=Authenticator(tokens)).start()
    try:
        yield server.address, admin, writer, list(moves.fresh), target
    finally:
        server.stop(0)


def test_moderation_rpcs_are_for_admins_recorded_with_the_caller_and_listed(served_farm):
    address, admin, writer, farm, target = served_farm
    with ScoreClient(address, token=admin) as client, ScoreClient(address, token=writer) as app:
        denied = rejected(app.invalidate_between, [*farm, target], reason="farm")
        assert denied.code == grpc.StatusCode.PERMISSION_DENIED
        bad = rejected(client.invalidate_between, ["a", "b"], reason="")
        assert bad.field_violations[0][0] == "reason"
        bad = rejected(client.suspend_cluster, ["a", ""], reason="x")
        assert bad.field_violations[0][0] == "user_ids[1]"
        missing = rejected(client.restore_between, 9, reason="x")
        assert missing.code == grpc.StatusCode.NOT_FOUND

        done = client.invalidate_between([*farm, target], reason="farm")
        assert isinstance(done, ModerationAction)
        assert (done.kind, done.actor, done.reason, done.action_id) == (
            ModerationKind.INVALIDATE_BETWEEN,
            "moderator",
            "farm",
            1,
        )
        assert done.user_ids == (*farm, target) and done.endorsement_events == len(farm)
        restored = client.restore_between(1, reason="appeal")
        assert (restored.kind, restored.restores) == (ModerationKind.RESTORE_BETWEEN, 1)
        # A cluster of the report, by the id ListSuspects gives it.
        found = client.list_suspects(SuspectKind.SYBIL_FARM_AGED).suspects
        assert found and found[0].cluster_id
        suspended = client.suspend_cluster(cluster_id=found[0].cluster_id, reason="farm")
        assert suspended.kind == ModerationKind.SUSPEND_CLUSTER
        assert set(suspended.user_ids) == set(found[0].member_ids)

        trail = list(client.list_moderation_actions(page_size=2))  # two pages
        assert [(a.action_id, a.kind) for a in trail] == [
            (3, ModerationKind.SUSPEND_CLUSTER),
            (2, ModerationKind.RESTORE_BETWEEN),
            (1, ModerationKind.INVALIDATE_BETWEEN),
        ]
        assert trail[0] == suspended and trail[1] == restored
        assert trail[2] == replace(done, restored_by=2)
        denied = rejected(lambda: list(app.list_moderation_actions()))
        assert denied.code == grpc.StatusCode.PERMISSION_DENIED


def test_the_async_client_moderates_and_reads_the_trail(served_farm):
    address, admin, _writer, farm, target = served_farm

    async def main() -> list[ModerationAction]:
        async with AsyncScoreClient(address, token=admin) as client:
            done = await client.invalidate_between([*farm, target], reason="farm")
            await client.restore_between(done.action_id, reason="appeal")
            await client.suspend_cluster(farm[:2], reason="two of them")
            return [a async for a in client.list_moderation_actions(page_size=1)]

    trail = asyncio.run(main())
    assert [a.kind for a in trail] == [
        ModerationKind.SUSPEND_CLUSTER,
        ModerationKind.RESTORE_BETWEEN,
        ModerationKind.INVALIDATE_BETWEEN,
    ]
    assert trail[0].user_ids == tuple(farm[:2]) and trail[2].restored_by == 2


# ---------------------------------------------------------------------- the CLI


def _clusters_benefiting(target: str, address: str, token: str) -> list[dict]:
    """The suspect report's clusters benefiting ``target``, once a report has them: the
    report is recomputed in the background after refreshes, so the one before a
    restore may still be the latest for a moment."""
    deadline = time.monotonic() + 60
    while True:
        shown = run_cli("suspects", "--address", address, "--token", token, "--json")
        found = [s for s in json.loads(shown.stdout)["suspects"] if target in s["beneficiary_ids"]]
        if found or time.monotonic() > deadline:
            return found
        time.sleep(0.1)  # polling a condition, not waiting for it to happen


def _cluster_and_table(target: str, address: str, token: str) -> tuple[dict, list[str]]:
    """The cluster benefiting ``target`` and the printed table, both of one report (a
    report computed in between renumbers its clusters: read again until they agree)."""
    deadline = time.monotonic() + 60
    while True:
        (cluster,) = _clusters_benefiting(target, address, token)
        table = run_cli("suspects", "--address", address, "--token", token).stdout.splitlines()
        again = _clusters_benefiting(target, address, token)
        if again == [cluster] or time.monotonic() > deadline:
            return cluster, table
        time.sleep(0.1)  # polling a condition, not waiting for it to happen


def test_scoresvc_moderate_invalidates_restores_suspends_and_lists(served_farm):
    address, admin, _writer, farm, target = served_farm
    on = ("--address", address, "--token", admin)
    users = ",".join([*farm, target])
    done = run_cli("moderate", "invalidate", "--users", users, "--reason", "aged farm", *on)
    assert done.returncode == 0, done.stderr
    assert "invalidate-between" in done.stdout and "in force" in done.stdout
    assert f"0 pairs, {len(farm)} endorsements" in done.stdout
    back = run_cli("moderate", "restore", "--action-id", "1", "--reason", "appeal", *on)
    assert back.returncode == 0, back.stderr
    assert "restores 1" in back.stdout
    cluster, table = _cluster_and_table(target, address, admin)
    assert table[1].split()[-1] == "cluster"
    assert any(line.endswith(f" {cluster['cluster_id']}") for line in table[2:])
    by_id = ("--cluster-id", cluster["cluster_id"], "--reason", "aged farm", "--json")
    suspended = run_cli("moderate", "suspend-cluster", *by_id, *on)
    assert suspended.returncode == 0, suspended.stderr
    assert set(json.loads(suspended.stdout)["user_ids"]) == set(cluster["member_ids"])

    listed = run_cli("moderate", "actions", *on, "--json")
    assert [(a["action_id"], a["kind"], a["actor"]) for a in json.loads(listed.stdout)] == [
        (3, "SUSPEND_CLUSTER", "moderator"),
        (2, "RESTORE_BETWEEN", "moderator"),
        (1, "INVALIDATE_BETWEEN", "moderator"),
    ]
    table = run_cli("moderate", "actions", *on).stdout.splitlines()
    assert table[0].split()[:3] == ["id", "kind", "time"]
    assert [line.split()[0] for line in table[1:]] == ["3", "2", "1"]
    assert "restored by 2" in table[3] and "appeal" in table[2]


def test_scoresvc_moderate_errors_are_one_line_naming_the_flag(served_farm):
    address, admin, writer, _farm, _target = served_farm
    on = ("--address", address, "--token", admin)
    cases = [
        (("suspend-cluster", "--reason", "x", *on), 2, "--users or --cluster-id"),
        (
            ("invalidate", "--users", "a,b", "--cluster-id", "1-0", "--reason", "x", *on),
            2,
            "--users or --cluster-id",
        ),
        (("invalidate", "--users", "a,b", *on), 2, "--reason"),
        (("invalidate", "--users", "a,,b", "--reason", "x", *on), 2, "--users"),
        (("invalidate", "--users", "a", "--reason", "x", *on), 1, "--users"),
        (("suspend-cluster", "--cluster-id", "nope", "--reason", "x", *on), 1, "--cluster-id"),
        (("restore", "--reason", "x", *on), 2, "--action-id"),
        (("restore", "--action-id", "7", "--reason", "x", *on), 1, "NOT_FOUND"),
        (("restore", "--action-id", "x", "--reason", "y", *on), 2, "--action-id"),
        (("actions", "--address", address, "--token", writer), 1, "--token"),
        (("actions", "--address", "127.0.0.1:1"), 1, "--address"),
    ]
    for argv, status, named in cases:
        done = run_cli("moderate", *argv)
        assert done.returncode == status, (argv, done.stderr)
        assert done.stderr.count("\n") == 1 and named in done.stderr, (argv, done.stderr)
        assert done.stderr.startswith("scoresvc moderate"), done.stderr
    # Nothing was recorded.
    with ScoreClient(address, token=admin) as client:
        assert list(client.list_moderation_actions()) == []
