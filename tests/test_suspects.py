"""The suspect report: each planted kind of gaming is found with its evidence, an honest
community is not flagged, and ListSuspects serves the report on a real server."""

from __future__ import annotations

import json
import time

import grpc
import numpy as np
import pytest
from support import run_cli

from scoresvc.client import ScoreClient, ScoreServiceError
from scoresvc.core.engine import Engine
from scoresvc.core.model import SECONDS_PER_DAY, InteractionKind, ModelParams
from scoresvc.core.suspects import Suspect, SuspectKind, SuspectReport, report_of
from scoresvc.service.auth import Authenticator, TokenStore
from scoresvc.service.server import ServerSettings, build_server
from scoresvc.storage.store import Store
from scoresvc.synthetic import community

END = 1_767_225_600.0
PARAMS = ModelParams()
LIKE, REPLY, RESHARE = InteractionKind.LIKE, InteractionKind.REPLY, InteractionKind.RESHARE


def honest_engine(end: float = END) -> Engine:
    engine = Engine(PARAMS, threads=1)
    engine.load_events(community(12_000, 600, seed=3, end=end))
    engine.refresh(end)
    return engine


def median_users(engine: Engine, n: int) -> list[str]:
    snap = engine.snapshot
    order = np.argsort(snap.influence, kind="stable")
    middle = len(order) // 2
    return [snap.user_ids[u] for u in order[middle - n // 2 : middle - n // 2 + n]]


def report(engine: Engine, now: float = END) -> SuspectReport:
    engine.refresh(now)
    return report_of(engine, PARAMS.maturity_age_seconds, PARAMS.damping)


def the_one(found: SuspectReport, kind: SuspectKind) -> Suspect:
    of_kind = found.of_kind(kind)
    assert len(of_kind) == 1, [(s.kind, s.member_ids[:3]) for s in found.suspects]
    return of_kind[0]


def volume_share(engine: Engine, senders: list[str], target: str) -> float:
    """The senders' share of the volume the target receives, from the graph's table."""
    snap, edges = engine.snapshot, engine.edges()
    volume = edges["interaction_sums"].sum(axis=1) + edges["endorsement_sums"]
    into = edges["dst"] == snap.user_index[target]
    mine = np.isin(edges["src"], [snap.user_index[s] for s in senders])
    return float(volume[into & mine].sum() / volume[into].sum())


def fresh_farm(engine: Engine, target: str, n: int, now: float = END) -> list[str]:
    farm = [f"fresh{i}" for i in range(n)]
    for s in farm:
        engine.endorse(s, target, ts=now, now=now)
    return farm


def aged_farm(engine: Engine, target: str, n: int, end: float = END) -> list[str]:
    """Accounts engaging only each other over 60 days (arriving then), then endorsing."""
    farm = [f"aged{i}" for i in range(n)]
    rng = np.random.default_rng(5)
    for j, s in enumerate(farm):
        for step in (1, 2, 3):
            ts = end - SECONDS_PER_DAY * float(rng.uniform(31, 60))
            engine.record_interactions([(s, farm[(j + step) % n], REPLY, ts)], now=ts)
    for s in farm:
        engine.endorse(s, target, ts=end, now=end)
    return farm


def test_an_honest_community_flags_nobody():
    assert report(honest_engine()).suspects == ()


def test_a_fresh_sybil_farm_is_reported_with_its_beneficiary_and_evidence():
    engine = honest_engine()
    (target,) = median_users(engine, 1)
    farm = fresh_farm(engine, target, 12)
    found = the_one(report(engine), SuspectKind.SYBIL_FARM_FRESH)
    assert set(found.member_ids) == set(farm)
    assert found.beneficiary_ids == (target,)
    e = found.evidence
    # Twelve fresh endorsements (5 each) are most of what a median user receives;
    # fresh accounts have no teleport share, so they pass no credibility (the model's
    # own defence) and nothing reaches them from outside.
    assert e.volume_from_cluster == pytest.approx(volume_share(engine, farm, target))
    assert e.volume_from_cluster > 0.5
    assert e.credibility_from_cluster == 0.0
    assert e.trust_from_outside == 0.0
    assert e.median_age_seconds == 0.0 and e.first_seen_span_seconds == 0.0
    assert e.burst_endorsements == 12
    assert found.score == pytest.approx(e.volume_from_cluster)


def test_an_aged_farm_is_reported_as_aged_with_the_credibility_it_passes():
    engine = honest_engine()
    (target,) = median_users(engine, 1)
    farm = aged_farm(engine, target, 12)
    found = the_one(report(engine), SuspectKind.SYBIL_FARM_AGED)
    assert set(found.member_ids) == set(farm) and found.beneficiary_ids == (target,)
    e = found.evidence
    assert e.median_age_seconds >= PARAMS.maturity_age_seconds
    # Mature accounts have a teleport share and pass it on: most of the target's
    # credibility now comes from the farm, none of it from young accounts.
    assert e.credibility_from_cluster > 0.5
    assert e.trust_from_outside == 0.0
    assert e.reciprocity_outside == 0.0


def test_a_closed_ring_is_reported_as_its_own_beneficiary():
    engine = honest_engine()
    ring = [f"ring{i}" for i in range(15)]
    for j, s in enumerate(ring):
        for step in (1, 2, 3):
            engine.endorse(s, ring[(j + step) % 15], ts=END, now=END)
            engine.record_interactions([(s, ring[(j + step) % 15], RESHARE, END)], now=END)
    found = the_one(report(engine), SuspectKind.CLOSED_RING)
    assert set(found.member_ids) == set(ring) == set(found.beneficiary_ids)
    e = found.evidence
    assert e.volume_from_cluster == pytest.approx(1.0)
    assert e.trust_from_outside == 0.0
    assert e.median_age_seconds == 0.0


def test_a_circle_trading_endorsements_for_replies_is_reported_with_its_trades():
    engine = honest_engine()
    circle = median_users(engine, 8)
    for x, a in enumerate(circle):
        for b in circle[x + 1 :]:
            engine.endorse(a, b, ts=END - 60, now=END - 60)
            engine.record_interactions([(b, a, REPLY, END - 30)], now=END - 30)
    found = the_one(report(engine), SuspectKind.TRADING_CIRCLE)
    assert set(found.member_ids) == set(circle)
    e = found.evidence
    assert e.cross_kind_trades == 8 * 7 // 2
    assert e.reciprocity_inside > e.reciprocity_outside
    assert e.trust_from_outside > 0.0  # established users: trust reaches them


def test_a_burst_of_endorsements_from_established_accounts_is_reported():
    engine = honest_engine()
    target, *endorsers = median_users(engine, 13)
    for i, s in enumerate(endorsers):
        engine.endorse(s, target, ts=END - 600 + i, now=END)
    found = the_one(report(engine), SuspectKind.ENDORSEMENT_BURST)
    assert set(found.member_ids) == set(endorsers) and found.beneficiary_ids == (target,)
    assert found.evidence.burst_endorsements == 12
    assert found.evidence.burst_window_seconds == 3600.0


def test_credibility_shares_are_the_contributions_d_c_a_p():
    engine = honest_engine()
    (target,) = median_users(engine, 1)
    farm = aged_farm(engine, target, 12)
    found = the_one(report(engine), SuspectKind.SYBIL_FARM_AGED)
    snap, edges = engine.snapshot, engine.edges()
    c = snap.credibility
    u = snap.user_index[target]
    members = [snap.user_index[s] for s in farm]
    into = edges["dst"] == u
    sent = PARAMS.damping * c[edges["src"]] * edges["transition"]
    from_farm = sent[into & np.isin(edges["src"], members)].sum() / c[u]
    assert found.evidence.credibility_from_cluster == pytest.approx(from_farm, rel=1e-9)


def test_a_users_own_cluster_share_is_the_reports_credibility_from_cluster():
    engine = honest_engine()
    (target,) = median_users(engine, 1)
    farm = aged_farm(engine, target, 12)
    found = report(engine)
    e = the_one(found, SuspectKind.SYBIL_FARM_AGED).evidence
    assert found.cluster_of(target) == frozenset(farm)
    assert all(found.cluster_of(s) == frozenset(farm) for s in farm)
    assert found.cluster_of(median_users(engine, 3)[0]) == frozenset()
    snap, got = engine.contributions(target, 3, found.cluster_of(target))
    # One beneficiary: the report's shares are this user's shares.
    assert got.from_own_cluster == pytest.approx(e.credibility_from_cluster, rel=1e-9)
    assert got.from_young_accounts == pytest.approx(e.credibility_from_young, abs=1e-12)
    said = snap.score(target, "", got).explanation.summary
    assert f"{round(100 * got.from_own_cluster)}% of your standing comes from a group" in said[1]


# ---------------------------------------------------------------------- the service


def test_list_suspects_serves_the_report_by_kind_and_page_to_admins_only(tmp_path):
    now = time.time()
    engine = honest_engine(now)
    targets = median_users(engine, 2)
    fresh_farm(engine, targets[0], 12, now)
    for i in range(12):  # a second farm, for a second page
        engine.endorse(f"other{i}", targets[1], ts=now, now=now)
    tokens = TokenStore(tmp_path)
    admin, reader = tokens.create("moderator", "admin"), tokens.create("viewer", "reader")
    settings = ServerSettings(refresh_gap_seconds=0.005, time_step_seconds=3600)
    server = build_server("127.0.0.1:0", engine, settings, auth=Authenticator(tokens)).start()
    try:
        with ScoreClient(server.address, token=admin) as client:
            # The first report is computed before the server reports ready.
            got = client.list_suspects(SuspectKind.SYBIL_FARM_FRESH, page_size=1)
            assert {s.beneficiary_ids for s in got.suspects} == {(t,) for t in targets}
            assert got.sequence == engine.snapshot.sequence
            assert client.list_suspects(SuspectKind.CLOSED_RING).suspects == ()
        shown = run_cli("suspects", "--address", server.address, "--token", admin)
        assert shown.returncode == 0, shown.stderr
        assert shown.stdout.startswith("2 suspect clusters")
        assert targets[0] in shown.stdout and "sybil-farm-fresh" in shown.stdout
        with ScoreClient(server.address, token=reader) as client:
            with pytest.raises(ScoreServiceError) as denied:
                client.list_suspects()
            assert denied.value.code == grpc.StatusCode.PERMISSION_DENIED
        # Refused as the other commands that call a service refuse: one line naming the flag.
        refused = run_cli("suspects", "--address", server.address, "--token", reader)
        assert refused.returncode == 1 and refused.stderr.count("\n") == 1, refused.stderr
        assert "PERMISSION_DENIED" in refused.stderr and "--token" in refused.stderr
        assert "admin role" in refused.stderr
    finally:
        server.stop(0)
    gone = run_cli("suspects", "--address", server.address, "--token", admin)
    assert gone.returncode == 1 and gone.stderr.count("\n") == 1, gone.stderr
    assert "cannot reach a scoresvc service" in gone.stderr and "(--address)" in gone.stderr


def test_score_shows_a_beneficiary_the_share_of_its_standing_from_its_own_farm():
    now = time.time()
    engine = honest_engine(now)
    (target,) = median_users(engine, 1)
    aged_farm(engine, target, 12, now)
    settings = ServerSettings(refresh_gap_seconds=0.005, time_step_seconds=3600)
    server = build_server("127.0.0.1:0", engine, settings).start()
    try:
        # The first report is computed before the server reports ready.
        farm = the_one(server.refresher.suspects.latest, SuspectKind.SYBIL_FARM_AGED)
        with ScoreClient(server.address) as client:
            got = client.score(target, top_contributors=3)
    finally:
        server.stop(0)
    share = got.explanation.credibility_from_own_cluster
    assert share == pytest.approx(farm.evidence.credibility_from_cluster, rel=1e-6)
    assert share > 0.5
    assert (
        f"{round(100 * share)}% of your standing comes from a group of accounts flagged as "
        "possibly gaming the score, which you belong to or benefit from."
    ) in got.explanation.summary


# ---------------------------------------------------------------------- the CLI


def test_the_suspects_command_reads_a_data_dir_and_prints_a_table_or_json(tmp_path):
    now = time.time()
    engine = Engine(PARAMS, threads=1)
    with Store(tmp_path / "data") as store:
        store.load_into(engine)
        engine.load_events(community(12_000, 600, seed=3, end=now))
        engine.refresh(now)
        (target,) = median_users(engine, 1)
        farm = fresh_farm(engine, target, 12, now)
    done = run_cli("suspects", "--data-dir", str(tmp_path / "data"), "--json")
    assert done.returncode == 0, done.stderr
    (found,) = json.loads(done.stdout)["suspects"]
    assert found["kind"] == "sybil-farm-fresh"
    assert set(found["member_ids"]) == set(farm) and found["beneficiary_ids"] == [target]
    assert found["evidence"]["burst_endorsements"] == 12
    table = run_cli("suspects", "--data-dir", str(tmp_path / "data"), "--kind", "closed-ring")
    assert table.returncode == 0, table.stderr
    assert table.stdout.startswith("0 suspect clusters")
    neither = run_cli("suspects")
    assert neither.returncode == 2 and "--data-dir or --address" in neither.stderr
