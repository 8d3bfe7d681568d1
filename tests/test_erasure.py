"""Erasure (EraseUser): the user is gone from the engine, and every other score is
what a fresh engine fed the same events without them computes."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import grpc
import numpy as np
import pytest
from support import CRED_ABS, CRED_REL, DAY, T0, CliServer, rejected, run_cli
from test_history import wait_for_points

from scoresvc.client import AsyncScoreClient, ScoreClient, ScoreServiceError
from scoresvc.core.engine import Engine
from scoresvc.core.erasure import digest
from scoresvc.core.errors import InvalidArgument, NotFound
from scoresvc.core.events import EventLog
from scoresvc.core.model import AccountStatus
from scoresvc.core.moderation import ModerationKind
from scoresvc.core.records import WriteRecord
from scoresvc.core.snapshot import Snapshot
from scoresvc.core.users import UserIds
from scoresvc.service.server import ServerSettings, build_server
from scoresvc.storage import archive
from scoresvc.storage.history import ERASING_FILE, History
from scoresvc.storage.store import Store
from scoresvc.v1 import score_service_pb2 as pb

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


# ------------------------------------------------------------------ a real server


def _community(now: float) -> EventLog:
    """Accounts older than the maturity age (so scores do not hang on arrival times)
    with interactions and endorsements over the last 60 days; some name ERASED."""
    rng = np.random.default_rng(11)
    ids = [*USERS, ERASED]
    n, rows = len(ids), 600
    actor = rng.integers(0, n, rows)
    target = (actor + rng.integers(1, n, rows)) % n
    endorser = rng.integers(0, n, 40)
    endorsee = (endorser + rng.integers(1, n, 40)) % n
    return EventLog(
        n_users=n,
        actor=actor,
        target=target,
        kind=rng.integers(1, 5, rows),
        ts=now - rng.uniform(DAY, 60 * DAY, rows),
        endorser=endorser,
        endorsee=endorsee,
        topic=rng.integers(0, 2, 40),
        endorse_ts=now - rng.uniform(DAY, 60 * DAY, 40),
        retracted=np.zeros(40, bool),
        user_ids=ids,
        topics=["", "rust"],
        first_seen=np.full(n, now - 100 * DAY),
    )


def _without(log: EventLog, user: int) -> EventLog:
    keep_i = (log.actor != user) & (log.target != user)
    keep_e = (log.endorser != user) & (log.endorsee != user)
    renumber = np.arange(log.n_users) - (np.arange(log.n_users) > user)
    assert log.user_ids is not None and log.first_seen is not None
    return EventLog(
        n_users=log.n_users - 1,
        actor=renumber[log.actor[keep_i]],
        target=renumber[log.target[keep_i]],
        kind=log.kind[keep_i],
        ts=log.ts[keep_i],
        endorser=renumber[log.endorser[keep_e]],
        endorsee=renumber[log.endorsee[keep_e]],
        topic=log.topic[keep_e],
        endorse_ts=log.endorse_ts[keep_e],
        retracted=log.retracted[keep_e],
        user_ids=[u for i, u in enumerate(log.user_ids) if i != user],
        topics=log.topics,
        first_seen=np.delete(log.first_seen, user),
    )


def _files_naming(data: Path, user_id: str) -> list[str]:
    """Every file under ``data`` whose bytes hold ``user_id``."""
    needle = user_id.encode()
    return [str(p) for p in data.rglob("*") if p.is_file() and needle in p.read_bytes()]


def _live_writes(client: ScoreClient, now: float) -> None:
    """Writes through the API after start-up; the fresh engine gets ``_fresh_writes``."""
    client.endorse(ERASED, "user3", event_time=now - DAY, request_id=f"req-{ERASED}-1")
    client.endorse("user3", ERASED, "rust", event_time=now - DAY)
    client.distrust("user5", ERASED, event_time=now - DAY)
    client.record_interactions([(ERASED, "user4", 1, now - DAY), ("user6", "user7", 2, now - DAY)])
    client.stub.InvalidateBetween(
        pb.InvalidateBetweenRequest(
            user_ids=["user1", "user2", ERASED], reason=f"ring around {ERASED}"
        ),
        timeout=30,
    )


def _fresh_writes(engine: Engine, now: float) -> None:
    engine.record_interactions([("user6", "user7", 2, now - DAY)], now=now)
    engine.invalidate_between(["user1", "user2"], reason="ring", now=now)


def _assert_server_matches(client: ScoreClient, fresh: Engine) -> None:
    with pytest.raises(ScoreServiceError) as gone:
        client.score(ERASED)
    assert gone.value.code == grpc.StatusCode.NOT_FOUND
    snapshots: dict[float, Snapshot] = {}
    for user_id in USERS:
        got = client.score(user_id)
        if got.compute_time not in snapshots:
            snapshots[got.compute_time] = fresh.refresh(got.compute_time)
        want = snapshots[got.compute_time].score(user_id)
        assert got.influence == pytest.approx(want.influence, rel=CRED_REL, abs=1e-12), user_id


def test_a_served_erasure_leaves_no_byte_of_the_id_in_the_data_directory(tmp_path):
    now = time.time()
    log = _community(now)
    archive_dir, data = tmp_path / "archive", tmp_path / "data"
    source = Engine(threads=1)
    source.load_events(log)
    archive.export(source, archive_dir, "csv")
    done = run_cli("import", "--data-dir", str(data), "--input", str(archive_dir))
    assert done.returncode == 0, done.stderr
    fresh = Engine(threads=1)
    fresh.load_events(_without(log, len(USERS)))
    _fresh_writes(fresh, now)
    serve = ("serve", "--port", "0", "--data-dir", str(data), "--history-interval", "0.1")
    with CliServer(*serve, "--checkpoint-events", "1") as server:
        server.wait_serving()
        with ScoreClient(server.address, timeout=60) as client:
            _live_writes(client, now)
            wait_for_points(client, ERASED, 2)
            assert _files_naming(data, ERASED)  # it was there to erase
            receipt = client.erase_user(ERASED, reason=f"{ERASED} asked to be forgotten")
            assert receipt.endorsement_events >= 2 and receipt.distrust_events == 1
            assert receipt.accounts == 1
            _assert_server_matches(client, fresh)
            actions = client.stub.ListModerationActions(
                pb.ListModerationActionsRequest(page_size=10), timeout=30
            ).actions
            assert actions[0].kind == pb.MODERATION_ACTION_KIND_ERASE_USER
            before = len(client.score_history("user3"))
            wait_for_points(client, "user3", before + 2)  # recording goes on without it
        assert server.stop() == 0, server.log()
    assert _files_naming(data, ERASED) == []
    with CliServer(*serve) as server:
        server.wait_serving()
        with ScoreClient(server.address, timeout=60) as client:
            _assert_server_matches(client, fresh)
            with pytest.raises(ScoreServiceError) as gone:
                client.score_history(ERASED)
            assert gone.value.code == grpc.StatusCode.NOT_FOUND
        assert server.stop() == 0, server.log()
    assert _files_naming(data, ERASED) == []


# ------------------------------------------------------------------ crashes


def test_an_erasure_journaled_before_a_crash_is_finished_at_the_next_start(tmp_path):
    data = tmp_path / "data"
    engine = Engine(threads=1)
    store = Store(data)
    store.load_into(engine)
    engine.record_interactions([(ERASED, "ana", 1, T0), ("ana", "bo", 2, T0)], now=T0)
    store.checkpoint()
    engine.endorse("bo", ERASED, now=T0)
    # The erasure's row committed, then the crash: neither applied nor rewritten.
    salt = bytes(16)
    fields = {"salt": salt.hex(), "digest": digest(ERASED, salt), "actor": "", "reason": "asked"}
    store.append(
        WriteRecord(engine.sequence + 1, "erase", {**fields, "now": T0}, {}, UserIds.of([]))
    )
    store.close(final_checkpoint=False)
    assert _files_naming(data, ERASED)
    with Store(data) as reopened:
        restarted = Engine(threads=1)
        reopened.load_into(restarted)
        assert not restarted.has_user(ERASED) and restarted.has_user("bo")
    assert _files_naming(data, ERASED) == []
    with Store(data) as again:  # and it stays so: nothing left to redo
        final = Engine(threads=1)
        again.load_into(final)
        assert not final.has_user(ERASED)
    assert _files_naming(data, ERASED) == []


def test_a_history_erasure_a_crash_interrupted_is_finished_when_it_opens(tmp_path):
    engine = Engine(threads=1)
    engine.record_interactions([(ERASED, "ana", 1, T0), ("ana", "bo", 2, T0)], now=T0)
    forever = 1e12  # keep points of T0
    history = History(tmp_path / "history", forever)
    history.record(engine.refresh(T0), T0, engine.top_inflows(4)[1:])
    history.record(engine.refresh(T0 + 60), T0 + 60, engine.top_inflows(4)[1:])
    salt = bytes(16)
    marker = {"salt": salt.hex(), "digest": digest(ERASED, salt)}
    (tmp_path / "history" / ERASING_FILE).write_text(json.dumps(marker))
    reopened = History(tmp_path / "history", forever)
    assert not reopened.knows(ERASED) and len(reopened.points("bo")) == 2
    assert reopened.points("bo")[0].influence == history.points("bo")[0].influence
    assert _files_naming(tmp_path, ERASED) == []
    assert not (tmp_path / "history" / ERASING_FILE).exists()


def test_the_clients_erase_and_refuse_with_the_field_named() -> None:
    engine = Engine(threads=1)
    engine.record_interactions(
        [("ana", "bo", 1, None), ("cy", "bo", 1, None), ("dee", "bo", 1, None)]
    )
    settings = ServerSettings(refresh_gap_seconds=0.005, time_step_seconds=3600)
    server = build_server("127.0.0.1:0", engine, settings).start()
    try:
        with ScoreClient(server.address, timeout=30) as client:
            assert client.erase_user("ana", reason="asked").accounts == 1
            missing = rejected(client.erase_user, "ana", reason="asked")
            assert missing.code == grpc.StatusCode.NOT_FOUND
            assert missing.reason == "USER_NOT_FOUND" and "user_id" in str(missing.metadata)
            unsaid = rejected(client.erase_user, "bo", reason="")
            assert unsaid.code == grpc.StatusCode.INVALID_ARGUMENT
            assert [v[0] for v in unsaid.field_violations] == ["reason"]

        async def erase() -> int:
            async with AsyncScoreClient(server.address) as client:
                return (await client.erase_user("cy", reason="asked")).sequence

        assert asyncio.run(erase()) == engine.sequence
        assert not engine.has_user("cy") and engine.has_user("bo")
    finally:
        server.stop(0)
