"""Score history: points recorded at the interval, read back by ScoreHistory, kept
through restarts, kill -9, export and import, dropped after the retention; the
``scoresvc history`` command."""

from __future__ import annotations

import json
import time
from pathlib import Path

import grpc
import numpy as np
import pytest
from google.protobuf import timestamp_pb2
from support import CliServer, rejected, run_cli

from scoresvc.client import ScoreClient
from scoresvc.core.engine import Engine
from scoresvc.core.model import AccountStatus, InteractionKind
from scoresvc.service.server import ServerSettings, build_server
from scoresvc.storage.history import HISTORY_DIR, History
from scoresvc.synthetic import community
from scoresvc.v1 import score_service_pb2 as pb
from scoresvc.v1 import score_service_pb2_grpc as pb_grpc

LIKE, REPLY = InteractionKind.LIKE, InteractionKind.REPLY
SHORT = ServerSettings(
    workers=4, refresh_gap_seconds=0.005, time_step_seconds=3600, history_interval_seconds=0.05
)
T0 = 1_700_000_000.0
#: Long enough for points to come on a machine whose cores are busy with other work.
WAIT_SECONDS = 120.0


def _community_engine() -> Engine:
    engine = Engine()
    engine.record_interactions(
        [("ana", "bo", REPLY, None), ("cy", "bo", LIKE, None), ("bo", "ana", LIKE, None)]
    )
    engine.endorse("ana", "bo", "python")
    engine.endorse("cy", "bo", "python")
    return engine


@pytest.fixture
def recording(tmp_path):
    """A server on loopback recording every 0.05 s into ``tmp_path/history``."""
    history = History(tmp_path / "history")
    server = build_server("127.0.0.1:0", _community_engine(), SHORT, history=history).start()
    try:
        with ScoreClient(server.address, timeout=30) as client:
            client.address = server.address  # type: ignore[attr-defined]
            yield history, client
    finally:
        server.stop(0)


def endorse(client: ScoreClient, endorser: str, endorsee: str, topic: str = "") -> None:
    """Endorse, and wait for a snapshot that includes it."""
    done = client.endorse(endorser, endorsee, topic)
    client.score(endorsee, min_sequence=done.sequence)


def wait_for_points(client: ScoreClient, user: str, count: int, **kwargs):
    """The user's history once it holds ``count`` points (asked again until then)."""
    deadline = time.monotonic() + WAIT_SECONDS
    while time.monotonic() < deadline:
        points = client.score_history(user, **kwargs)
        if len(points) >= count:
            return points
        time.sleep(0.05)  # polling a condition, not waiting for it to happen
    raise AssertionError(f"fewer than {count} points after {WAIT_SECONDS} s")


# ------------------------------------------------------------------ ScoreHistory


def test_points_accumulate_at_the_interval_in_time_order_with_the_scores_numbers(recording):
    history, client = recording
    assert history.wait_for_points(4, WAIT_SECONDS)
    points = client.score_history("bo")
    times = [p.time for p in points]
    assert len(points) >= 4 and times == sorted(set(times))
    now = client.score("bo")
    for p in points:  # nothing was written meanwhile: every point says what Score says
        assert p.score == now.score and p.influence == now.influence
        assert p.percentile == pytest.approx(now.percentile, rel=1e-6)
        assert p.status == AccountStatus.NORMAL and p.sequence == now.sequence
        x = now.explanation
        assert p.engagement_received == pytest.approx(x.engagement_received, rel=1e-6)
        assert p.endorsements_effective == pytest.approx(x.endorsements_effective, rel=1e-6)
        assert p.teleport_share == pytest.approx(x.teleport_share, rel=1e-6)
    topic = client.score("bo", "python")
    in_topic = client.score_history("bo", " Python", end_time=times[-1])
    assert topic.score > 1 and len(in_topic) == len(points)
    assert {(p.topic, p.score, p.influence) for p in in_topic} == {
        ("python", topic.score, topic.influence)
    }


def test_a_range_returns_the_points_within_it_inclusive(recording):
    history, client = recording
    assert history.wait_for_points(5, WAIT_SECONDS)
    times = [p.time for p in client.score_history("bo")]
    middle = client.score_history("bo", start_time=times[1], end_time=times[3])
    assert [p.time for p in middle] == times[1:4]
    assert client.score_history("bo", start_time=times[-1] + 3600) == []


def test_pages_follow_time_and_together_make_the_whole_range(recording):
    history, client = recording
    assert history.wait_for_points(5, WAIT_SECONDS)
    whole = client.score_history("bo")
    end = whole[-1].time
    stub = pb_grpc.ScoreServiceStub(client.channel)
    request = pb.ScoreHistoryRequest(user_id="bo", page_size=2)
    request.end_time.FromNanoseconds(round(end * 1e9))
    paged = []
    while True:
        page = stub.ScoreHistory(request, timeout=30)
        assert len(page.points) <= 2
        # Recorded to the microsecond, and sent as recorded (no float noise in the nanos).
        assert all(p.record_time.nanos % 1000 == 0 for p in page.points)
        paged += [p.record_time.ToNanoseconds() for p in page.points]
        if not page.next_page_token:
            break
        request.page_token = page.next_page_token
    assert len(paged) == len(whole) and paged == sorted(paged)


def test_points_from_before_a_user_was_seen_are_left_out(recording):
    history, client = recording
    assert history.wait_for_points(2, WAIT_SECONDS)
    done = client.record_interactions([("ana", "dee", LIKE, None)])
    client.score("dee", min_sequence=done.sequence)
    recorded_before = len(history.times())
    points = wait_for_points(client, "dee", 2)
    assert len(history.times()) >= recorded_before + len(points)
    assert all(p.sequence >= done.sequence for p in points)


def test_bad_requests_are_refused_naming_the_field(recording):
    _, client = recording
    missing = rejected(client.score_history, "nobody")
    assert missing.code == grpc.StatusCode.NOT_FOUND
    assert missing.metadata["field"] == "user_id" and missing.reason == "USER_NOT_FOUND"
    backwards = rejected(client.score_history, "bo", start_time=T0 + 10, end_time=T0)
    assert backwards.code == grpc.StatusCode.INVALID_ARGUMENT
    assert [f for f, _ in backwards.field_violations] == ["start_time"]
    assert rejected(client.score_history, "").field_violations[0][0] == "user_id"
    stub = pb_grpc.ScoreServiceStub(client.channel)
    bad = {
        "page_size": pb.ScoreHistoryRequest(user_id="bo", page_size=10_001),
        "page_token": pb.ScoreHistoryRequest(user_id="bo", page_token="nonsense"),
        "end_time": pb.ScoreHistoryRequest(
            user_id="bo", end_time=timestamp_pb2.Timestamp(seconds=1, nanos=-1)
        ),
    }
    for field, request in bad.items():
        error = rejected(stub.ScoreHistory, request, timeout=30)
        assert error.code == grpc.StatusCode.INVALID_ARGUMENT, field
        assert [f for f, _ in error.field_violations] == [field]


def test_the_asyncio_client_returns_the_same_points(recording):
    import asyncio

    from scoresvc.client import AsyncScoreClient

    history, client = recording
    assert history.wait_for_points(3, WAIT_SECONDS)
    end = client.score_history("bo")[-1].time

    async def read():
        async with AsyncScoreClient(client.address) as c:
            return await c.score_history("bo", end_time=end)

    assert asyncio.run(read()) == client.score_history("bo", end_time=end)


# ------------------------------------------------------------------ the files


def _snapshot(users: int = 2000):
    engine = Engine()
    engine.load_events(community(20 * users, users, seed=3, end=T0))
    return engine.refresh(T0)


def test_retention_drops_old_points_as_new_come_and_at_start(tmp_path):
    clock = [T0]
    history = History(tmp_path, retention_seconds=100, clock=lambda: clock[0])
    snap = _snapshot(50)
    for t in (0, 50, 120):
        clock[0] = T0 + t
        history.record(snap)
    assert history.times() == [T0 + 50, T0 + 120]
    assert len(list(tmp_path.glob("point-*.svhp"))) == 2
    clock[0] = T0 + 200
    reopened = History(tmp_path, retention_seconds=100, clock=lambda: clock[0])
    assert reopened.times() == [T0 + 120]
    assert len(list(tmp_path.glob("point-*.svhp"))) == 1


def test_a_point_costs_89_bytes_a_user_and_16_a_ranked_topic_entry(tmp_path):
    snap = _snapshot()
    history = History(tmp_path)
    history.record(snap)
    (point,) = tmp_path.glob("point-*.svhp")
    entries = sum(hi - lo for lo, hi, _ in snap.topic_bounds.values())
    header_and_padding = 4096
    assert point.stat().st_size <= 89 * snap.n_users + 16 * entries + header_and_padding
    user = snap.user_ids[int(snap.ranking[-1])]
    (p,) = history.points(user)
    assert p.influence == snap.score(user).influence  # kept exactly, as float64
    assert p.percentile == pytest.approx(snap.score(user).percentile, rel=1e-7)


def test_a_leftover_temporary_file_is_removed_and_points_read_as_written(tmp_path):
    history = History(tmp_path)
    snap = _snapshot(50)
    history.record(snap, at=T0)
    (tmp_path / ".point-00000000000000000001.svhp.tmp").write_bytes(b"SVHP torn")
    reopened = History(tmp_path)
    assert not list(tmp_path.glob(".*.tmp"))
    user = snap.user_ids[0]
    assert reopened.points(user) == history.points(user)


# ------------------------------------------------------------------ real processes


def _serve(data: Path, *extra: str) -> CliServer:
    return CliServer(
        "serve", "--port", "0", "--data-dir", str(data), "--topic-min-endorsers", "1", *extra
    )


def _same(before, after) -> None:
    """Every point of ``before`` is in ``after``, with the same numbers."""
    by_time = {p.time: p for p in after}
    assert all(by_time.get(p.time) == p for p in before), "a point was lost or changed"


def test_history_survives_restart_kill_9_export_and_import(tmp_path):
    data = tmp_path / "data"
    with _serve(data, "--history-interval", "0.1") as server:
        server.wait_serving()
        with ScoreClient(server.address, timeout=30) as client:
            endorse(client, "ana", "bo", "python")
            first = wait_for_points(client, "bo", 3)
        assert server.stop() == 0, server.log()
    with _serve(data, "--history-interval", "0.1") as server:
        server.wait_serving()
        with ScoreClient(server.address, timeout=30) as client:
            restarted = wait_for_points(client, "bo", len(first) + 2)
            _same(first, restarted)
            endorse(client, "cy", "bo", "python")
            seen = wait_for_points(client, "bo", len(restarted) + 3)
        server.proc.kill()  # SIGKILL, while recording every 0.1 s
        server.proc.wait()
    with _serve(data, "--history-interval", "3600") as server:
        server.wait_serving()
        with ScoreClient(server.address, timeout=30) as client:
            after_kill = wait_for_points(client, "bo", len(seen) + 1)
        _same(seen, after_kill)
        assert not list((data / HISTORY_DIR).glob(".*.tmp"))
        assert server.stop() == 0, server.log()
    backup, copy = str(tmp_path / "backup"), str(tmp_path / "copy")
    assert run_cli("export", "--data-dir", str(data), "--out", backup).returncode == 0
    done = run_cli("import", "--data-dir", copy, "--input", backup)
    assert done.returncode == 0, done.stderr
    with _serve(Path(copy), "--history-interval", "3600") as server:
        server.wait_serving()
        with ScoreClient(server.address, timeout=30) as client:
            imported = wait_for_points(client, "bo", len(after_kill) + 1)
            assert client.score_history("bo", "python")[-1].score > 1
        _same(after_kill, imported)


def test_serve_drops_points_past_the_retention_flag(tmp_path):
    with _serve(tmp_path / "data", "--history-interval", "0.1", "--history-retention", "1") as s:
        s.wait_serving()
        with ScoreClient(s.address, timeout=30) as client:
            endorse(client, "ana", "bo")
            oldest = wait_for_points(client, "bo", 1)[0].time
            deadline = time.monotonic() + WAIT_SECONDS
            while client.score_history("bo")[0].time == oldest:  # until it is dropped
                assert time.monotonic() < deadline, "the oldest point was never dropped"
                time.sleep(0.05)  # polling a condition, not waiting for it to happen
            kept = [p.time for p in client.score_history("bo")]
        assert kept[-1] - kept[0] <= 1.0 + 1.0  # the retention, and a recording's slack


def test_the_history_command_prints_a_table_or_json_and_one_line_errors(tmp_path):
    with _serve(tmp_path / "data", "--history-interval", "0.1") as server:
        server.wait_serving()
        with ScoreClient(server.address, timeout=30) as client:
            endorse(client, "ana", "bo", "python")
            wait_for_points(client, "bo", 3)
        address = ("--address", server.address)
        done = run_cli("history", "bo", *address)
        assert done.returncode == 0, done.stderr
        header, *rows = done.stdout.strip().splitlines()
        assert header.split()[:4] == ["time", "(UTC)", "score", "influence"]
        assert len(rows) >= 3 and all("NORMAL" in row for row in rows)
        done = run_cli("history", "bo", "--topic", "Python", "--json", *address)
        points = json.loads(done.stdout)
        assert len(points) >= 3 and {p["topic"] for p in points} == {"python"}
        assert np.all(np.diff([p["time"] for p in points]) > 0)
        later = run_cli("history", "bo", "--since", "2999-01-01", *address)
        assert later.returncode == 0 and "no points" in later.stdout
        missing = run_cli("history", "nobody", *address)
        assert missing.returncode == 1 and "NOT_FOUND" in missing.stderr
        assert len(missing.stderr.strip().splitlines()) == 1


def test_a_point_s_own_time_passed_back_through_a_double_names_it(tmp_path):
    # Points are recorded to the microsecond; a double holds today's times to about
    # 0.24 us, so a time read back as a float (the client's HistoryPoint.time) and
    # sent as a Timestamp may fall a fraction of a microsecond short of the point.
    first = 1_764_500_000_000_000
    history = History(tmp_path, clock=lambda: first / 1e6 + 1.0)
    snap = _snapshot(50)
    user = snap.user_ids[0]
    recorded = range(first, first + 600, 7)
    for micros in recorded:
        history.record(snap, at=micros / 1e6)
    assert len(history.times()) == len(recorded)
    for t in history.times():
        seconds, micros = divmod(round(t * 1e6), 10**6)
        read = seconds + micros * 1000 * 1e-9  # the client's time of the point
        sent = timestamp_pb2.Timestamp()
        sent.FromNanoseconds(round(read * 1e9))
        back = sent.seconds + sent.nanos * 1e-9  # as the server reads it
        (point,) = history.points(user, start=back, end=back)
        assert point.time == t
