"""The typed clients, blocking and asyncio, against a real server on 127.0.0.1 port 0:
results in the domain's types and enums, one error type with decoded details, and a
client that loads neither the engine nor the compiled core."""

from __future__ import annotations

import asyncio
import math
import socket
import subprocess
import sys
import time

import grpc
import pytest
from support import rejected

from scoresvc.client import AsyncScoreClient, ScoreClient, ScoreServiceError
from scoresvc.core.engine import Engine
from scoresvc.core.model import AccountStatus, InteractionKind, ModelParams
from scoresvc.core.results import (
    BatchScoreEntry,
    BatchScores,
    EndorsementEvent,
    Ranking,
    UserScore,
    WriteResult,
)
from scoresvc.service.convert import status_from_wire, status_to_wire, time_of, timestamp
from scoresvc.service.server import ServerSettings, build_server
from scoresvc.v1 import score_service_pb2 as pb

# ------------------------------------------------------------------ conversions


@pytest.mark.parametrize(
    ("seconds", "parts"),
    [
        (1_700_000_000.25, (1_700_000_000, 250_000_000)),
        (1.9999999999, (2, 0)),  # rounds up into the next second, not back to 1 s
        (-0.5, (-1, 500_000_000)),
        (0.0, (0, 0)),
    ],
)
def test_timestamps_round_to_the_nearest_nanosecond(seconds, parts):
    stamp = timestamp(seconds)
    assert (stamp.seconds, stamp.nanos) == parts
    assert time_of(stamp) == pytest.approx(seconds, abs=1e-9)


def test_a_snapshots_compute_time_splits_like_every_other_timestamp():
    snap = Engine().refresh(now=1.9999999999)
    stamp = timestamp(snap.time)
    assert snap.time_parts == (stamp.seconds, stamp.nanos) == (2, 0)


def test_statuses_cross_the_wire_by_name_not_number():
    wire = {
        AccountStatus.NORMAL: pb.ACCOUNT_STATUS_NORMAL,
        AccountStatus.SEED: pb.ACCOUNT_STATUS_SEED,
        AccountStatus.SUSPENDED: pb.ACCOUNT_STATUS_SUSPENDED,
    }
    for status, number in wire.items():
        assert status_to_wire(status) == number
        assert status_from_wire(number) is status
    with pytest.raises(ValueError):
        status_from_wire(pb.ACCOUNT_STATUS_UNSPECIFIED)


# ------------------------------------------------------------------ a server at a fixed time
# Snapshots are evaluated at the refresher's clock: held at NOW, every snapshot of the
# same writes is the same, so the client's answers can be compared with the engine's.

NOW = float(math.floor(time.time() / 3600) * 3600)
LIKE, REPLY = InteractionKind.LIKE, InteractionKind.REPLY
FAST = ServerSettings(workers=4, refresh_gap_seconds=0.005, time_step_seconds=3600)


@pytest.fixture
def served():
    engine = Engine()
    server = build_server("127.0.0.1:0", engine, FAST)
    server.refresher.clock = lambda: NOW
    server.start()
    try:
        yield engine, server
    finally:
        server.stop(0)


@pytest.fixture
def client(served):
    with ScoreClient(served[1].address) as c:
        yield c


def _community(client: ScoreClient) -> int:
    """A few users, endorsements on a topic, a seed and a suspended account; returns
    the last write's sequence."""
    client.record_interactions(
        [
            ("ana", "bo", REPLY, NOW - 600),
            ("cy", "bo", LIKE, NOW - 500),
            ("bo", "ana", LIKE, NOW - 400),
            ("dee", "cy", REPLY, NOW - 300),
            ("su", "bo", LIKE, NOW - 200),
        ]
    )
    client.endorse("ana", "bo", "python", event_time=NOW - 120)
    client.endorse("cy", "bo", "python", event_time=NOW - 110)
    client.endorse("ana", "dee", "python", event_time=NOW - 100)
    client.retract("ana", "dee", "python", event_time=NOW - 90)
    client.set_account_status("dee", AccountStatus.SEED)
    return client.set_account_status("su", AccountStatus.SUSPENDED).sequence


def test_statuses_read_through_the_client_are_the_domains(client):
    seq = _community(client)
    for topic, contributors in (("", 0), ("python", 0), ("", 2)):
        read = {
            u: client.score(u, topic, min_sequence=seq, top_contributors=contributors).status
            for u in ("ana", "dee", "su")
        }
        assert read == {
            "ana": AccountStatus.NORMAL,
            "dee": AccountStatus.SEED,
            "su": AccountStatus.SUSPENDED,
        }
        # The wire numbers SEED 2, the domain SUSPENDED 2: a seed must not read as one.
        assert read["dee"] != AccountStatus.SUSPENDED
        assert all(type(s) is AccountStatus for s in read.values())


def test_the_client_answers_what_the_engine_answers(served, client):
    engine, _ = served
    seq = _community(client)
    got = client.score("bo", min_sequence=seq)
    snap = engine.snapshot
    assert snap.sequence == seq
    assert isinstance(got, UserScore) and got == snap.score("bo")
    assert got.sequence == seq and got.compute_time == NOW
    assert client.score("bo", "python") == snap.score("bo", "python")
    explained, contributions = engine.contributions("bo", 3)
    assert contributions.top
    assert client.score("bo", top_contributors=3) == explained.score("bo", "", contributions)
    for topic in ("", "python"):
        ranking = client.top_users(5, topic)
        assert isinstance(ranking, Ranking) and ranking.sequence == seq
        assert ranking.users == tuple(snap.top(5, topic))
    ids = ["bo", "nobody", "su"]
    batch = client.batch_score(ids)
    found, score, influence, percentile = snap.scores(ids)
    assert isinstance(batch, BatchScores) and batch.compute_time == NOW
    assert batch.entries == tuple(
        BatchScoreEntry(*row)
        for row in zip(ids, found.tolist(), score.tolist(), influence.tolist(), percentile.tolist())
    )
    for user, given in (("ana", True), ("bo", False)):
        trail, _ = engine.list_endorsements(user, given, 0, 100)
        assert list(client.list_endorsements(user, given=given, page_size=2)) == trail
        assert all(isinstance(e, EndorsementEvent) for e in trail)


def test_writes_answer_write_results(client):
    rows = client.record_interactions([("ana", "bo", LIKE, NOW - 60)] * 3, request_id="r")
    assert rows == WriteResult(1, 3)
    assert client.record_interactions([("ana", "bo", LIKE, NOW - 60)] * 3, request_id="r") == rows
    columns = client.record_interaction_columns(["a", "b"], [0, 1], [1, 0], [1, 4])
    assert columns == WriteResult(2, 2)
    assert client.endorse("a", "b", event_time=NOW - 30) == WriteResult(3, endorsement_live=True)
    back_dated = client.retract("a", "b", event_time=NOW - 40)
    assert back_dated == WriteResult(4, endorsement_live=True)  # older than the endorsement
    assert client.retract("a", "b") == WriteResult(5, endorsement_live=False)
    assert client.set_account_status("a", AccountStatus.SEED) == WriteResult(6)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_errors_are_one_type_with_code_reason_violations_and_retry_delay(client):
    client.record_interactions([("ana", "bo", LIKE, None)])
    missing = rejected(client.score, "ghost")
    assert not isinstance(missing, grpc.RpcError)
    assert missing.code == grpc.StatusCode.NOT_FOUND and missing.reason == "USER_NOT_FOUND"
    assert "NOT_FOUND" in str(missing) and "ghost" in missing.message
    assert missing.field_violations == [] and missing.retry_delay_seconds is None

    bad = rejected(client.record_interactions, [("a", "b", LIKE, None), ("c", "c", LIKE, None)])
    assert bad.code == grpc.StatusCode.INVALID_ARGUMENT and bad.reason == "INVALID_ARGUMENT"
    assert bad.field_violations == [("interactions[1].target_id", "must differ from actor_id")]
    assert bad.metadata["violations"] == "1"

    limit = ModelParams().daily_endorsement_limit
    for i in range(limit):
        client.endorse("eager", f"u{i}", event_time=NOW - 100 + i)
    over = rejected(client.endorse, "eager", "one-more", event_time=NOW - 1)
    assert over.code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert over.reason == "ENDORSEMENT_LIMIT_EXCEEDED"
    assert over.retry_delay_seconds is not None and 0 < over.retry_delay_seconds <= 86_400

    pages = rejected(lambda: list(client.list_endorsements("ghost")))
    assert pages.code == grpc.StatusCode.NOT_FOUND

    # A call that never reaches a service has no details, and is the same type.
    with ScoreClient(f"127.0.0.1:{_free_port()}", timeout=30) as nowhere:
        unreachable = rejected(nowhere.score, "bo")
    assert unreachable.code == grpc.StatusCode.UNAVAILABLE and unreachable.reason == ""


# ------------------------------------------------------------------ asyncio


async def _every_call(client: AsyncScoreClient) -> list[object]:
    """Every method once, and the errors of a few; what each answered, in order."""
    out: list[object] = [
        await client.record_interactions([("ana", "bo", REPLY, NOW - 600, 2.0)], request_id="a1"),
        await client.record_interaction_columns(["cy", "bo"], [0], [1], [1], [NOW - 500], [3.0]),
        await client.endorse("ana", "bo", "python", event_time=NOW - 120),
        await client.endorse("cy", "bo", "python", event_time=NOW - 110),
        await client.retract("cy", "bo", "python", event_time=NOW - 100),
        await client.set_account_status("cy", AccountStatus.SEED),
    ]
    seq = (await client.set_account_status("ana", AccountStatus.SUSPENDED)).sequence
    out += [
        await client.score("bo", min_sequence=seq, top_contributors=2),
        await client.score("bo", "python"),
        await client.score("cy"),
        await client.batch_score(["bo", "ghost"]),
        await client.top_users(3),
        await client.top_users(3, "python"),
        [e async for e in client.list_endorsements("bo", given=False, page_size=1)],
        [t async for t in client.list_topics(page_size=1)],
    ]
    for call in (
        client.score("ghost"),
        client.endorse("bo", "bo"),
        client.record_interactions([("a", "b", LIKE, NOW + 86_400)]),
    ):
        try:
            await call
        except ScoreServiceError as error:
            out.append(
                (error.code, error.reason, error.field_violations, error.retry_delay_seconds)
            )
    return out


def _every_call_blocking(client: ScoreClient) -> list[object]:
    """``_every_call`` through the blocking client."""
    out: list[object] = [
        client.record_interactions([("ana", "bo", REPLY, NOW - 600, 2.0)], request_id="a1"),
        client.record_interaction_columns(["cy", "bo"], [0], [1], [1], [NOW - 500], [3.0]),
        client.endorse("ana", "bo", "python", event_time=NOW - 120),
        client.endorse("cy", "bo", "python", event_time=NOW - 110),
        client.retract("cy", "bo", "python", event_time=NOW - 100),
        client.set_account_status("cy", AccountStatus.SEED),
    ]
    seq = client.set_account_status("ana", AccountStatus.SUSPENDED).sequence
    out += [
        client.score("bo", min_sequence=seq, top_contributors=2),
        client.score("bo", "python"),
        client.score("cy"),
        client.batch_score(["bo", "ghost"]),
        client.top_users(3),
        client.top_users(3, "python"),
        list(client.list_endorsements("bo", given=False, page_size=1)),
        list(client.list_topics(page_size=1)),
    ]
    for call in (
        lambda: client.score("ghost"),
        lambda: client.endorse("bo", "bo"),
        lambda: client.record_interactions([("a", "b", LIKE, NOW + 86_400)]),
    ):
        error = rejected(call)
        out.append((error.code, error.reason, error.field_violations, error.retry_delay_seconds))
    return out


def test_the_async_client_makes_the_same_calls_with_the_same_answers():
    answers = []
    for run in ("blocking", "asyncio"):
        engine = Engine()
        server = build_server("127.0.0.1:0", engine, FAST)
        server.refresher.clock = lambda: NOW
        server.start()
        try:
            if run == "blocking":
                with ScoreClient(server.address) as c:
                    answers.append(_every_call_blocking(c))
            else:

                async def main(address: str = server.address) -> list[object]:
                    async with AsyncScoreClient(address) as c:
                        return await _every_call(c)

                answers.append(asyncio.run(main()))
        finally:
            server.stop(0)
    blocking, awaited = answers
    assert awaited == blocking
    writes, reads, errors = awaited[:6], awaited[6:14], awaited[14:]
    bo, _, cy, batch, top, _, trail, topics = reads
    assert all(isinstance(w, WriteResult) for w in writes)
    assert bo.status == AccountStatus.NORMAL and cy.status == AccountStatus.SEED
    # Weighted rows and columns: a reply of weight 2 (2 x 2.0) and a like of weight 3.
    assert bo.explanation.engagement_received == pytest.approx(2 * 2.0 + 3 * 1.0, rel=1e-3)
    assert bo.explanation.top_contributors and {u.user_id for u in top.users} == {"bo", "cy"}
    assert [e.found for e in batch.entries] == [True, False]
    assert [e.retracted for e in trail] == [True, False, False]
    # "python": ana's endorsement alone (cy's retracted, ana suspended) ranks nobody.
    assert topics == []
    assert [error[0] for error in errors] == [
        grpc.StatusCode.NOT_FOUND,
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.INVALID_ARGUMENT,
    ]


# ------------------------------------------------------------------ what a client loads


def test_importing_the_client_loads_neither_the_engine_nor_the_compiled_core():
    probe = (
        "import sys, scoresvc.client; "
        "print(' '.join(sorted(m for m in sys.modules if m.startswith('scoresvc'))))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=120
    ).stdout.split()
    assert "scoresvc.client" in loaded
    for heavy in (
        "scoresvc._core",
        "scoresvc._wire",
        "scoresvc.core.engine",
        "scoresvc.service.servicer",
    ):
        assert heavy not in loaded, loaded
