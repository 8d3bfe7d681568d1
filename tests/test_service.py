"""ScoreService on a real server at 127.0.0.1, port 0: every RPC, every error with its
decoded details, min_sequence, idempotency, concurrency, health, reflection."""

from __future__ import annotations

import threading
import time

import grpc
import numpy as np
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from grpc_health.v1 import health_pb2, health_pb2_grpc
from support import rejected

from scoresvc.client import ScoreClient, ScoreServiceError
from scoresvc.core.engine import Engine
from scoresvc.core.model import AccountStatus, InteractionKind, ModelParams
from scoresvc.service.convert import timestamp
from scoresvc.service.server import ServerSettings, build_server
from scoresvc.synthetic import community
from scoresvc.v1 import score_service_pb2 as pb
from scoresvc.v1 import score_service_pb2_grpc as pb_grpc

LIKE, REPLY = InteractionKind.LIKE, InteractionKind.REPLY
FAST = ServerSettings(workers=8, refresh_gap_seconds=0.005, time_step_seconds=3600)


@pytest.fixture
def server():
    srv = build_server("127.0.0.1:0", Engine(), FAST)
    srv.start()
    yield srv
    srv.stop(0)


@pytest.fixture
def client(server):
    with ScoreClient(server.address, timeout=10) as c:
        yield c


def now() -> float:
    return time.time()


# ------------------------------------------------------------------ each RPC


def test_score_reads_its_own_write(client):
    done = client.record_interactions([("ana", "bo", REPLY, now()), ("cy", "bo", LIKE, None)])
    assert done.accepted == 2
    got = client.score("bo", min_sequence=done.sequence, top_contributors=5)
    assert got.sequence >= done.sequence
    assert 1 <= got.score <= 100 and got.influence > 0
    assert {c.user_id for c in got.explanation.top_contributors} == {"ana", "cy"}
    shares = sum(c.share for c in got.explanation.top_contributors)
    assert shares + got.explanation.teleport_share == pytest.approx(1.0)
    assert got.explanation.engagement_received == pytest.approx(3.0, rel=1e-3)
    assert got.status == AccountStatus.NORMAL
    assert got.compute_time > 0


def test_score_says_in_sentences_how_much_standing_comes_from_young_accounts():
    # Accounts age from their first write's arrival, so the established ones are
    # written in-process 60 days back; the fresh ones arrive now.
    t = now()
    past = t - 60 * 86_400.0
    engine = Engine(threads=1)
    old = [f"old{i}" for i in range(4)]
    engine.record_interactions([(a, b, REPLY, past) for a in old for b in old if a != b], now=past)
    fresh = ["new0", "new1", "new2"]
    # Established accounts reply to the fresh ones, so those have trust to pass on.
    engine.record_interactions([(o, f, REPLY, t) for o in old for f in fresh], now=t)
    for f in fresh:
        engine.endorse(f, "newbie", ts=t, now=t)
    for o in old:
        engine.endorse(o, "veteran", ts=t, now=t)
    server = build_server("127.0.0.1:0", engine, FAST).start()
    try:
        with ScoreClient(server.address, timeout=10) as client:
            newbie = client.score("newbie", top_contributors=3).explanation
            veteran = client.score("veteran", top_contributors=3).explanation
            plain = client.score("newbie").explanation
    finally:
        server.stop(0)
    # Everything newbie has came from its three fresh endorsers.
    assert {c.user_id for c in newbie.top_contributors} == set(fresh)
    assert newbie.credibility_from_young_accounts == pytest.approx(1.0)
    assert "100% of your standing comes from accounts less than 30 days old." in newbie.summary
    top = newbie.top_contributors[0]
    assert newbie.summary[0] == (
        "100% of your standing comes from the 3 accounts that give you the most; "
        f"the largest is {top.user_id} ({round(100 * top.share)}%)."
    )
    # veteran's endorsers are established: nothing from young accounts, nothing said.
    assert veteran.credibility_from_young_accounts == 0.0
    assert not any("days old" in s for s in veteran.summary)
    shown = sum(c.share for c in veteran.top_contributors)
    assert veteran.summary[0].startswith(f"{round(100 * shown)}% of your standing comes from")
    # Neither is in a suspect cluster; without top_contributors the graph is not read.
    assert newbie.credibility_from_own_cluster == veteran.credibility_from_own_cluster == 0.0
    assert plain.credibility_from_young_accounts == 0.0 and plain.summary == ()
    print(*newbie.summary, *veteran.summary, sep="\n")


def test_endorse_retract_and_topic_scores(client):
    # A topic ranks users with two endorsers or more (docs/model.md, step 9).
    for endorser in ("ana", "cy", "eve"):
        client.endorse(endorser, "bo", "python")
    client.endorse("cy", "dee", "python")
    seq = client.endorse("eve", "dee", "python").sequence
    topic = client.score("bo", "python", min_sequence=seq)
    assert topic.topic == "python" and topic.score == pytest.approx(100.0)
    assert topic.explanation.endorsements_received == pytest.approx(15.0, rel=1e-3)
    ranking = client.top_users(5, "python", min_sequence=seq)
    assert [u.user_id for u in ranking.users] == ["bo", "dee"]
    seq = client.retract("ana", "bo", "python").sequence
    after = client.score("bo", "python", min_sequence=seq)
    assert after.explanation.endorsements_received == pytest.approx(10.0, rel=1e-3)


def test_topics_are_normalised_on_the_wire_and_listed_with_their_rankings(server, client):
    client.endorse("ana", "bo", "Python")
    client.endorse("cy", "bo", " PYTHON ")
    client.endorse("ana", "cy", "Rust")
    client.endorse("bo", "cy", "rust")
    client.endorse("ana", "dee", "rust")  # one endorser: not ranked
    client.endorse("ana", "eve", "go")  # a topic that ranks nobody is not listed
    seq = client.endorse("cy", "dee", "\uff32\uff35\uff33\uff34").sequence  # full-width
    got = client.score("bo", "pYthon", min_sequence=seq)
    assert got.topic == "python" and got.score == 100.0
    ranked = client.top_users(10, "RUST", min_sequence=seq)
    assert {u.user_id for u in ranked.users} == {"cy", "dee"}
    batch = client.batch_score(["bo", "eve"], " Python")
    assert batch.entries[0].score == 100.0
    assert client.score("eve", "go").score == 1.0
    assert list(client.list_topics(page_size=1)) == [("python", 1), ("rust", 2)]
    stub = server_stub(client)
    first = stub.ListTopics(pb.ListTopicsRequest(page_size=1), timeout=10)
    assert [t.topic for t in first.topics] == ["python"] and first.sequence >= seq
    last = stub.ListTopics(pb.ListTopicsRequest(page_token=first.next_page_token), timeout=10)
    assert [t.topic for t in last.topics] == ["rust"] and last.next_page_token == ""
    bad = rejected(stub.ListTopics, pb.ListTopicsRequest(page_token="nonsense"))
    assert bad.field_violations[0][0] == "page_token"
    big = rejected(stub.ListTopics, pb.ListTopicsRequest(page_size=1001))
    assert big.field_violations[0][0] == "page_size"
    trail = list(client.list_endorsements("bo", given=False))
    assert {e.topic for e in trail} == {"python"}


def test_batch_score_flags_unknown_users_per_entry(client):
    seq = client.record_interactions([("ana", "bo", LIKE, None)]).sequence
    got = client.batch_score(["bo", "nobody", "ana"], min_sequence=seq)
    assert [(e.user_id, e.found) for e in got.entries] == [
        ("bo", True),
        ("nobody", False),
        ("ana", True),
    ]
    assert got.entries[1].score == 0 and got.sequence >= seq


def test_batch_score_gives_every_user_the_numbers_score_gives_globally_and_per_topic():
    """Every user's BatchScore entry equals its Score answer, in one snapshot: a
    community with topic endorsements, a seed, a suspended user, twins, and users
    whose influence ties (every user nobody trusts)."""
    engine = Engine()
    engine.load_events(community(3000, 120, seed=3, end=now()))
    engine.record_interactions(
        [
            ("fan", "twin-a", REPLY, None),
            ("fan", "twin-b", REPLY, None),
            ("twin-a", "user0000001", LIKE, None),
            ("twin-b", "user0000001", LIKE, None),
        ]
        + [(f"lurker-{i}", "user0000001", LIKE, None) for i in range(3)]
    )
    for twin in ("twin-a", "twin-b"):
        engine.endorse("user0000002", twin, "python")
    engine.endorse("user0000003", "user0000004", "python")
    engine.set_status("user0000005", AccountStatus.SEED)
    engine.set_status("user0000006", AccountStatus.SUSPENDED)
    engine.set_status("user0000007", AccountStatus.SUSPENDED)
    srv = build_server("127.0.0.1:0", engine, FAST)
    srv.start()
    try:
        with grpc.insecure_channel(srv.address) as channel:
            stub = pb_grpc.ScoreServiceStub(channel)
            seq = engine.sequence
            users = [u.user_id for u in stub.TopUsers(pb.TopUsersRequest(limit=1000)).users]
            users.append("never-seen")
            assert len(users) > 100
            for topic in ("", "python"):
                batch = stub.BatchScore(
                    pb.BatchScoreRequest(user_ids=users, topic=topic, min_sequence=seq),
                    timeout=60,
                )
                assert [e.user_id for e in batch.entries] == users
                for entry in batch.entries:
                    try:
                        one = stub.Score(
                            pb.ScoreRequest(user_id=entry.user_id, topic=topic), timeout=60
                        )
                    except grpc.RpcError as exc:
                        assert exc.code() == grpc.StatusCode.NOT_FOUND  # type: ignore[attr-defined]
                        assert not entry.found, entry.user_id
                        continue
                    assert one.sequence == batch.sequence
                    assert entry.found, entry.user_id
                    # the same numbers (one computes a user, the other a vector: last bits)
                    got = (entry.score, entry.influence, entry.percentile)
                    want = (one.score, one.influence, one.percentile)
                    assert got == pytest.approx(want, rel=1e-12, abs=1e-300), (topic, entry)
                found = [e.influence for e in batch.entries if e.found]
                assert len(set(found)) < len(found), "no ties among the users compared"
    finally:
        srv.stop(0)


def test_top_users_ranks_globally(client):
    rows = [(f"fan{i}", "star", REPLY, None) for i in range(10)] + [("fan0", "other", LIKE, None)]
    seq = client.record_interactions(rows).sequence
    top = client.top_users(3, min_sequence=seq)
    assert top.users[0].user_id == "star" and top.users[0].score == pytest.approx(100)
    assert len(top.users) == 3
    assert top.users[0].influence >= top.users[1].influence >= top.users[2].influence


def test_columnar_ingest(client):
    users = ["a", "b", "c"]
    done = client.record_interaction_columns(
        users, [0, 1, 2, 0], [1, 2, 0, 2], [1, 2, 3, 4], np.full(4, now())
    )
    assert done.accepted == 4
    got = client.score("c", min_sequence=done.sequence)
    assert got.explanation.engagement_received == pytest.approx(1.5 + 3.0, rel=1e-3)
    # No times: every row at server time.
    done = client.record_interaction_columns(users, [0], [1], [1])
    assert done.accepted == 1


def test_a_weighted_interaction_counts_as_that_many_in_rows_and_columns(client):
    t = now()
    done = client.record_interactions(
        [("ana", "bo", LIKE, t, 4.0), ("cy", "bo", REPLY, t), ("cy", "dee", LIKE, t, None)]
    )
    got = client.score("bo", min_sequence=done.sequence)
    assert got.explanation.engagement_received == pytest.approx(4 * 1.0 + 2.0, rel=1e-3)
    done = client.record_interaction_columns(
        ["ana", "dee", "eve"], [0, 2], [1, 1], [LIKE, REPLY], np.full(2, t), [0.5, 3.0]
    )
    got = client.score("dee", min_sequence=done.sequence)
    assert got.explanation.engagement_received == pytest.approx(1.0 + 0.5 + 3 * 2.0, rel=1e-3)


def test_weights_read_by_protobuf_keep_absent_apart_from_zero(server, client):
    # An empty id sends the batch to protobuf's parser rather than the compiled one.
    request = _rows(
        _row("", "b", when=None), _row("a", "b", when=None, weight=0.0), _row("a", "c", when=None)
    )
    got = rejected(server_stub(client).RecordInteractions, request)
    assert [f for f, _ in got.field_violations] == [
        "interactions[0].actor_id",
        "interactions[1].weight",
    ]


def test_bad_weights_in_columns_name_the_column_and_apply_nothing(client):
    got = rejected(
        client.record_interaction_columns, ["a", "b"], [0, 1], [1, 0], [1, 1], None, [1.0, 0.0]
    )
    assert got.field_violations == [("columns.weight[1]", "must be a finite number above 0")]
    big = rejected(client.record_interaction_columns, ["a", "b"], [0], [1], [1], None, [2e6])
    assert big.field_violations == [("columns.weight[0]", "must be at most 1000000")]
    short = rejected(
        client.record_interaction_columns, ["a", "b"], [0, 1], [1, 0], [1, 1], None, [2.0]
    )
    assert short.field_violations[0][0] == "columns.weight"
    assert rejected(client.score, "a").code == grpc.StatusCode.NOT_FOUND


def test_list_endorsements_pages_the_audit_trail(client):
    for i in range(7):
        client.endorse("ana", f"u{i}", "go")
    client.retract("ana", "u3", "go")
    given = list(client.list_endorsements("ana", given=True, page_size=3))
    assert len(given) == 8
    assert given[0].endorsee_id == "u3" and given[0].retracted
    assert [g.sequence for g in given] == sorted((g.sequence for g in given), reverse=True)
    received = list(client.list_endorsements("u3", given=False))
    assert [r.retracted for r in received] == [True, False]


def _send_endorsement(stub, verb: str, seconds: float):
    request = getattr(pb, f"{verb}Request")(
        endorser_id="ana", endorsee_id="bo", topic="go", event_time=timestamp(seconds)
    )
    return getattr(stub, verb)(request, timeout=10)


def _trail(stub) -> list[tuple[bool, bool]]:
    """(retracted, decides_current_state) of ana's trail, newest first."""
    page = stub.ListEndorsements(
        pb.ListEndorsementsRequest(user_id="ana", direction=pb.ENDORSEMENT_DIRECTION_GIVEN),
        timeout=10,
    )
    return [(e.retracted, e.decides_current_state) for e in page.endorsements]


def test_a_back_dated_retraction_says_the_endorsement_stays_live(client):
    stub, t = client.stub, now() - 3600
    assert _send_endorsement(stub, "Endorse", t).endorsement_live
    back_dated = _send_endorsement(stub, "RetractEndorsement", t - 60)
    assert back_dated.endorsement_live  # an older retraction does not undo a newer endorsement
    assert _trail(stub) == [(True, False), (False, True)]
    got = client.score("bo", "go", min_sequence=back_dated.sequence)
    assert got.explanation.endorsements_received > 0  # still counting, as the answer said
    retracted = _send_endorsement(stub, "RetractEndorsement", now())
    assert not retracted.endorsement_live
    assert _trail(stub) == [(True, True), (True, False), (False, False)]
    # An endorsement older than the retraction is recorded, and says it is not live.
    assert not _send_endorsement(stub, "Endorse", t).endorsement_live
    assert _trail(stub)[0] == (False, False) and _trail(stub)[1] == (True, True)


def test_set_account_status_suspends_and_restores(client):
    seq = client.record_interactions(
        [("ana", "bo", LIKE, None), ("bo", "ana", LIKE, None)]
    ).sequence
    seq = client.set_account_status("bo", AccountStatus.SUSPENDED).sequence
    got = client.score("bo", min_sequence=seq)
    assert got.status == AccountStatus.SUSPENDED and got.influence == 0 and got.score == 1
    seq = client.set_account_status("bo", AccountStatus.SEED).sequence
    got = client.score("bo", min_sequence=seq)
    assert got.status == AccountStatus.SEED and got.influence > 0


# ------------------------------------------------------------------ errors


@pytest.mark.parametrize(
    ("row", "path"),
    [
        (pb.Interaction(actor_id="", target_id="b", kind=1), "interactions[1].actor_id"),
        (pb.Interaction(actor_id="a", target_id="b" * 129, kind=1), "interactions[1].target_id"),
        (pb.Interaction(actor_id="a", target_id="a", kind=1), "interactions[1].target_id"),
        (pb.Interaction(actor_id="a", target_id="b", kind=0), "interactions[1].kind"),
        (pb.Interaction(actor_id="a", target_id="b", kind=9), "interactions[1].kind"),
        (pb.Interaction(actor_id="a", target_id="b", kind=1, weight=0), "interactions[1].weight"),
        (pb.Interaction(actor_id="a", target_id="b", kind=1, weight=-2), "interactions[1].weight"),
        (
            pb.Interaction(actor_id="a", target_id="b", kind=1, weight=float("nan")),
            "interactions[1].weight",
        ),
        (
            pb.Interaction(actor_id="a", target_id="b", kind=1, weight=float("inf")),
            "interactions[1].weight",
        ),
        (
            pb.Interaction(actor_id="a", target_id="b", kind=1, weight=1e6 + 1),
            "interactions[1].weight",
        ),
    ],
)
def test_bad_rows_name_their_field_and_apply_nothing(server, client, row, path):
    good = pb.Interaction(actor_id="x1", target_id="y1", kind=1)
    request = pb.RecordInteractionsRequest(interactions=[good, row])
    got = rejected(server_stub(client).RecordInteractions, request)
    assert got.code == grpc.StatusCode.INVALID_ARGUMENT
    assert got.reason == "INVALID_ARGUMENT"
    assert [f for f, _ in got.field_violations] == [path]
    seq = client.record_interactions([("x2", "y2", LIKE, None)]).sequence
    assert rejected(client.score, "y1", min_sequence=seq).code == grpc.StatusCode.NOT_FOUND


def test_times_in_the_future_or_before_1970_are_rejected(client):
    future = rejected(client.record_interactions, [("a", "b", LIKE, now() + 3600)])
    assert future.field_violations[0][0] == "interactions[0].event_time"
    past = rejected(client.record_interactions, [("a", "b", LIKE, -10.0)])
    assert past.field_violations[0][0] == "interactions[0].event_time"
    endorse = rejected(client.endorse, "a", "b", event_time=now() + 3600)
    assert endorse.field_violations[0][0] == "event_time"


def test_at_most_one_hundred_violations_are_listed(client):
    rows = [("a", "a", LIKE, None)] * 250
    got = rejected(client.record_interactions, rows)
    assert len(got.field_violations) == 100
    assert got.metadata["violations"] == "250"
    assert got.field_violations[99][0] == "interactions[99].target_id"


def test_columnar_errors_name_the_column(client):
    got = rejected(client.record_interaction_columns, ["a", ""], [0, 0], [1, 0], [1, 1])
    assert ("columns.user_ids[1]", "must be a non-empty string") in got.field_violations
    assert ("columns.target_index[1]", "must differ from actor_id") in got.field_violations
    stub = server_stub(client)
    bad_length = pb.RecordInteractionsRequest(
        columns=pb.InteractionColumns(user_ids=["a", "b"], actor_index=b"\0\0\0", kind=b"\1")
    )
    got = rejected(stub.RecordInteractions, bad_length)
    assert got.field_violations[0][0] == "columns.actor_index"
    out_of_range = rejected(
        client.record_interaction_columns, ["a", "b", "c"], [0, 7, 0], [5, 1, 1], [1, 1, 1]
    )
    assert [f for f, _ in out_of_range.field_violations] == [
        "columns.target_index[0]",
        "columns.actor_index[1]",
    ]
    both = pb.RecordInteractionsRequest(
        interactions=[pb.Interaction(actor_id="a", target_id="b", kind=1)],
        columns=pb.InteractionColumns(user_ids=["a"]),
    )
    assert rejected(stub.RecordInteractions, both).field_violations[0][0] == "columns"
    empty = rejected(stub.RecordInteractions, pb.RecordInteractionsRequest())
    assert empty.field_violations[0][0] == "interactions"


def test_an_id_that_is_not_utf8_is_named_and_nothing_applied(server, client):
    request = pb.RecordInteractionsRequest(
        columns=pb.InteractionColumns(
            user_ids=["aa", "bb"], actor_index=bytes(4), target_index=b"\1\0\0\0", kind=b"\1"
        )
    )
    # protobuf will not serialize a str that is not UTF-8: corrupt the bytes instead.
    data = request.SerializeToString().replace(b"bb", b"b\xff")
    with grpc.insecure_channel(server.address) as channel:
        call = channel.unary_unary(
            "/scoresvc.v1.ScoreService/RecordInteractions",
            request_serializer=lambda raw: raw,
            response_deserializer=pb.RecordInteractionsResponse.FromString,
        )
        got = rejected(call, data, timeout=10)
    assert got.code == grpc.StatusCode.INVALID_ARGUMENT
    assert got.field_violations == [("columns.user_ids[1]", "must be valid UTF-8")]
    assert rejected(client.score, "aa").code == grpc.StatusCode.NOT_FOUND


def test_unknown_users_are_not_found(client):
    got = rejected(client.score, "ghost")
    assert got.code == grpc.StatusCode.NOT_FOUND and got.reason == "USER_NOT_FOUND"
    assert rejected(client.score, "ghost", top_contributors=3).code == grpc.StatusCode.NOT_FOUND
    listing = rejected(lambda: list(client.list_endorsements("ghost")))
    assert listing.code == grpc.StatusCode.NOT_FOUND


def test_request_fields_are_validated(client):
    assert rejected(client.score, "").field_violations[0][0] == "user_id"
    assert rejected(client.score, "a", top_contributors=101).field_violations[0][0] == (
        "top_contributors"
    )
    assert rejected(client.top_users, 5000).field_violations[0][0] == "limit"
    assert rejected(client.batch_score, ["a", ""]).field_violations[0][0] == "user_ids[1]"
    assert rejected(client.endorse, "a", "a").field_violations[0][0] == "endorsee_id"
    assert rejected(client.endorse, "", "b").field_violations[0][0] == "endorser_id"
    stub = server_stub(client)
    bad_status = rejected(stub.SetAccountStatus, pb.SetAccountStatusRequest(user_id="a"))
    assert bad_status.field_violations[0][0] == "status"
    bad_direction = rejected(stub.ListEndorsements, pb.ListEndorsementsRequest(user_id="a"))
    assert bad_direction.field_violations[0][0] == "direction"
    client.endorse("a", "b")
    bad_token = rejected(
        stub.ListEndorsements,
        pb.ListEndorsementsRequest(
            user_id="a", direction=pb.ENDORSEMENT_DIRECTION_GIVEN, page_token="!!"
        ),
    )
    assert bad_token.field_violations[0][0] == "page_token"


def test_retracting_nothing_is_not_found(client):
    got = rejected(client.retract, "a", "b", "python")
    assert got.code == grpc.StatusCode.NOT_FOUND and got.reason == "ENDORSEMENT_NOT_FOUND"


def test_endorsements_past_the_daily_limit_are_resource_exhausted(client):
    for i in range(ModelParams().daily_endorsement_limit):
        client.endorse("eager", f"u{i}")
    got = rejected(client.endorse, "eager", "u9")
    assert got.code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert got.reason == "ENDORSEMENT_LIMIT_EXCEEDED"
    assert 0 < got.retry_delay_seconds <= 86_400


def test_min_sequence_ahead_of_every_write_is_out_of_range(client):
    seq = client.record_interactions([("a", "b", LIKE, None)]).sequence
    got = rejected(client.score, "b", min_sequence=seq + 100)
    assert got.code == grpc.StatusCode.OUT_OF_RANGE
    assert got.field_violations[0][0] == "min_sequence"


def test_min_sequence_waits_within_the_deadline_then_gives_up():
    # The refresh comes 5 s after the write: a read with a 0.3 s deadline gives up
    # first unless the machine stalls the test for longer than that.
    slow = ServerSettings(refresh_gap_seconds=5, max_staleness_seconds=5, time_step_seconds=3600)
    srv = build_server("127.0.0.1:0", Engine(), slow)
    srv.start()
    try:
        with ScoreClient(srv.address) as c:
            seq = c.record_interactions([("a", "b", LIKE, None)]).sequence
            got = rejected(c.score, "b", min_sequence=seq, timeout=0.3)
            assert got.code == grpc.StatusCode.DEADLINE_EXCEEDED
            assert c.score("b", min_sequence=seq, timeout=60).sequence >= seq
    finally:
        srv.stop(0)


@pytest.fixture
def stalled():
    """A server that will not refresh for a minute and caps waits at 0.3 s, and the
    sequence of a write to it: a read for that sequence can only wait."""
    settings = ServerSettings(
        refresh_gap_seconds=60,
        max_staleness_seconds=60,
        time_step_seconds=3600,
        max_wait_seconds=0.3,
    )
    srv = build_server("127.0.0.1:0", Engine(), settings)
    srv.start()
    try:
        with ScoreClient(srv.address) as c:
            yield c, c.record_interactions([("a", "b", LIKE, None)]).sequence
    finally:
        srv.stop(0)


@pytest.mark.parametrize("timeout", [None, 1e9, 3600.0], ids=["none", "huge", "long"])
def test_min_sequence_without_a_usable_deadline_waits_up_to_the_server_cap(stalled, timeout):
    client, seq = stalled
    with pytest.raises(grpc.RpcError) as caught:
        client.stub.Score(pb.ScoreRequest(user_id="b", min_sequence=seq), timeout=timeout)
    got = ScoreServiceError.of(caught.value)
    assert got.code == grpc.StatusCode.DEADLINE_EXCEEDED, got.message
    assert got.reason == "SNAPSHOT_NOT_READY" and "0.3 s" in got.message


def test_min_sequence_without_a_deadline_reads_its_own_write(client):
    seq = client.record_interactions([("ana", "bo", LIKE, None)]).sequence
    got = client.stub.Score(pb.ScoreRequest(user_id="bo", min_sequence=seq))
    assert got.sequence >= seq


def test_every_call_returns_its_request_id_in_the_trailers(client):
    stub = client.stub
    traced = [("x-request-id", "trace-7")]
    done, call = stub.Endorse.with_call(
        pb.EndorseRequest(endorser_id="ana", endorsee_id="bo"), metadata=traced, timeout=10
    )
    assert dict(call.trailing_metadata())["x-request-id"] == "trace-7"
    read = pb.ScoreRequest(user_id="bo", min_sequence=done.sequence)
    made_up = [dict(stub.Score.with_call(read, timeout=10)[1].trailing_metadata()) for _ in "ab"]
    assert made_up[0]["x-request-id"] != made_up[1]["x-request-id"]
    for request, reason in (
        (pb.ScoreRequest(user_id="ghost"), "USER_NOT_FOUND"),
        (pb.ScoreRequest(user_id=""), "INVALID_ARGUMENT"),
    ):
        with pytest.raises(grpc.RpcError) as caught:
            stub.Score(request, metadata=[("x-request-id", "trace-8")], timeout=10)
        assert dict(caught.value.trailing_metadata())["x-request-id"] == "trace-8"
        assert ScoreServiceError.of(caught.value).reason == reason  # the details are still there


def test_reads_refuse_ids_over_128_bytes_without_echoing_them(client):
    huge = "x" * 100_000
    given = pb.ENDORSEMENT_DIRECTION_GIVEN
    for call, field in (
        (lambda: client.score(huge), "user_id"),
        (lambda: client.score("ana", huge), "topic"),
        (lambda: client.batch_score(["ana", huge]), "user_ids[1]"),
        (lambda: client.top_users(5, huge), "topic"),
        (
            lambda: client.stub.ListEndorsements(
                pb.ListEndorsementsRequest(user_id=huge, direction=given), timeout=10
            ),
            "user_id",
        ),
    ):
        got = rejected(call)
        assert got.code == grpc.StatusCode.INVALID_ARGUMENT
        assert got.field_violations == [(field, "must be at most 128 bytes of UTF-8")]
        assert huge[:200] not in got.message


def _columns(users, actor, target, kind, seconds) -> pb.RecordInteractionsRequest:
    return pb.RecordInteractionsRequest(
        columns=pb.InteractionColumns(
            user_ids=users,
            actor_index=np.asarray(actor, "<u4").tobytes(),
            target_index=np.asarray(target, "<u4").tobytes(),
            kind=bytes(kind),
            event_time_seconds=np.asarray(seconds, "<f8").tobytes(),
        )
    )


def test_times_that_are_not_finite_get_one_clear_message(client):
    request = _columns(
        ["a", "b"], [0, 0, 0, 0], [1, 1, 1, 1], [1] * 4, [np.nan, np.inf, -np.inf, now()]
    )
    got = rejected(client.stub.RecordInteractions, request, timeout=10)
    assert got.field_violations == [
        (f"columns.event_time_seconds[{i}]", "must be a finite number of seconds") for i in range(3)
    ]
    assert got.metadata["violations"] == "3"


def test_reads_and_writes_word_their_errors_alike(client):
    assert rejected(client.score, "").message == "user_id: must be a non-empty string"
    one = rejected(client.record_interactions, [("a", "a", LIKE, None)])
    assert one.message == "interactions[0].target_id: must differ from actor_id"
    many = rejected(client.record_interactions, [("a", "a", LIKE, None)] * 5)
    assert many.message == "interactions[0].target_id: must differ from actor_id (and 4 more)"


def test_a_reused_request_id_with_other_content_is_rejected(client):
    client.endorse("a", "b", request_id="r-1")
    got = rejected(client.endorse, "a", "c", request_id="r-1")
    assert got.code == grpc.StatusCode.INVALID_ARGUMENT
    assert got.reason == "REQUEST_ID_REUSED" and got.field_violations[0][0] == "request_id"


T = 1_767_225_600.0  # a fixed event time, in the past


def _at(seconds: float) -> Timestamp:
    stamp = Timestamp()
    stamp.FromNanoseconds(round(seconds * 1e9))
    return stamp


def _row(
    actor: str,
    target: str,
    kind: int = LIKE,
    when: float | None = T,
    topic: str = "",
    weight: float | None = None,
):
    row = pb.Interaction(actor_id=actor, target_id=target, kind=kind, topic=topic)
    if when is not None:
        row.event_time.CopyFrom(_at(when))
    if weight is not None:
        row.weight = weight
    return row


def _rows(*rows) -> pb.RecordInteractionsRequest:
    return pb.RecordInteractionsRequest(interactions=rows)


def _columns(
    users=("a", "b", "c"), actor=(0, 2), target=(1, 1), kind=(1, 3), times=(T, T), weight=()
):
    return pb.RecordInteractionsRequest(
        columns=pb.InteractionColumns(
            user_ids=users,
            actor_index=np.array(actor, "<u4").tobytes(),
            target_index=np.array(target, "<u4").tobytes(),
            kind=np.array(kind, np.uint8).tobytes(),
            event_time_seconds=np.array(times, "<f8").tobytes(),
            weight=np.array(weight, "<f8").tobytes(),
        )
    )


def _endorsement(message, endorser="a", endorsee="b", topic="go", when: float | None = T):
    request = message(endorser_id=endorser, endorsee_id=endorsee, topic=topic)
    if when is not None:
        request.event_time.CopyFrom(_at(when))
    return request


def _endorse(**fields):
    return _endorsement(pb.EndorseRequest, **fields)


def _retract(**fields):
    return _endorsement(pb.RetractEndorsementRequest, **fields)


def _status(user="a", status=pb.ACCOUNT_STATUS_SEED):
    return pb.SetAccountStatusRequest(user_id=user, status=status)


BASE_ROWS = _rows(_row("a", "b"), _row("c", "b", REPLY, None))
#: (method, the first request, the same request id with one thing changed)
CHANGED = {
    "rows: actor": (
        "RecordInteractions",
        BASE_ROWS,
        _rows(_row("x", "b"), _row("c", "b", REPLY, None)),
    ),
    "rows: target": (
        "RecordInteractions",
        BASE_ROWS,
        _rows(_row("a", "x"), _row("c", "b", REPLY, None)),
    ),
    "rows: kind": (
        "RecordInteractions",
        BASE_ROWS,
        _rows(_row("a", "b", REPLY), _row("c", "b", REPLY, None)),
    ),
    "rows: time": (
        "RecordInteractions",
        BASE_ROWS,
        _rows(_row("a", "b", when=T - 1), _row("c", "b", REPLY, None)),
    ),
    "rows: time by 1 ms": (
        "RecordInteractions",
        BASE_ROWS,
        _rows(_row("a", "b", when=T + 1e-3), _row("c", "b", REPLY, None)),
    ),
    "rows: time left out": (
        "RecordInteractions",
        BASE_ROWS,
        _rows(_row("a", "b", when=None), _row("c", "b", REPLY, None)),
    ),
    "rows: time given": (
        "RecordInteractions",
        BASE_ROWS,
        _rows(_row("a", "b"), _row("c", "b", REPLY, T)),
    ),
    "rows: weight": (
        "RecordInteractions",
        BASE_ROWS,
        _rows(_row("a", "b", weight=2.0), _row("c", "b", REPLY, None)),
    ),
    "rows: weight, both given": (
        "RecordInteractions",
        _rows(_row("a", "b", weight=2.0), _row("c", "b", REPLY, None)),
        _rows(_row("a", "b", weight=2.5), _row("c", "b", REPLY, None)),
    ),
    "rows: a row less": ("RecordInteractions", BASE_ROWS, _rows(_row("a", "b"))),
    "rows: a row more": (
        "RecordInteractions",
        BASE_ROWS,
        _rows(_row("a", "b"), _row("c", "b", REPLY, None), _row("a", "b")),
    ),
    "rows: swapped": (
        "RecordInteractions",
        BASE_ROWS,
        _rows(_row("c", "b", REPLY, None), _row("a", "b")),
    ),
    "rows: ids reversed": (
        "RecordInteractions",
        BASE_ROWS,
        _rows(_row("b", "a"), _row("b", "c", REPLY, None)),
    ),
    "columns: user ids": ("RecordInteractions", _columns(), _columns(users=("a", "b", "x"))),
    "columns: actor": ("RecordInteractions", _columns(), _columns(actor=(0, 0))),
    "columns: target": ("RecordInteractions", _columns(), _columns(target=(1, 0))),
    "columns: kind": ("RecordInteractions", _columns(), _columns(kind=(1, 4))),
    "columns: time": ("RecordInteractions", _columns(), _columns(times=(T, T - 60))),
    "columns: time left out": ("RecordInteractions", _columns(), _columns(times=())),
    "columns: weight": ("RecordInteractions", _columns(), _columns(weight=(1, 4))),
    "columns: weight changed": (
        "RecordInteractions",
        _columns(weight=(1, 4)),
        _columns(weight=(4, 1)),
    ),
    "columns: as rows, a kind changed": (
        "RecordInteractions",
        _columns(),
        _rows(_row("a", "b"), _row("c", "b", InteractionKind.MENTION)),
    ),
    "endorse: endorser": ("Endorse", _endorse(), _endorse(endorser="x")),
    "endorse: endorsee": ("Endorse", _endorse(), _endorse(endorsee="x")),
    "endorse: topic": ("Endorse", _endorse(), _endorse(topic="rust")),
    "endorse: no topic": ("Endorse", _endorse(), _endorse(topic="")),
    "endorse: time": ("Endorse", _endorse(), _endorse(when=T - 60)),
    "endorse: time left out": ("Endorse", _endorse(), _endorse(when=None)),
    "endorse, then retract": ("Endorse", _endorse(), _retract()),
    "retract: endorser": ("RetractEndorsement", _retract(), _retract(endorser="c")),
    "retract: endorsee": ("RetractEndorsement", _retract(), _retract(endorsee="c")),
    "retract: topic": ("RetractEndorsement", _retract(), _retract(topic="")),
    "retract: time": ("RetractEndorsement", _retract(), _retract(when=T + 60)),
    "retract: time left out": ("RetractEndorsement", _retract(), _retract(when=None)),
    "retract, then endorse": ("RetractEndorsement", _retract(), _endorse()),
    "status: user": ("SetAccountStatus", _status(), _status(user="b")),
    "status: status": ("SetAccountStatus", _status(), _status(status=pb.ACCOUNT_STATUS_SUSPENDED)),
    "status, then endorse": ("SetAccountStatus", _status(), _endorse()),
    "rows, then status": ("RecordInteractions", BASE_ROWS, _status()),
}


def _prepare(engine: Engine) -> None:
    """What every case's first request needs: live endorsements to retract."""
    for endorser, endorsee, topic in (
        ("a", "b", "go"),
        ("c", "b", "go"),
        ("a", "c", "go"),
        ("a", "b", ""),
    ):
        engine.endorse(endorser, endorsee, topic, T - 3600)


def _send(stub, request):
    method = {
        pb.RecordInteractionsRequest: "RecordInteractions",
        pb.EndorseRequest: "Endorse",
        pb.RetractEndorsementRequest: "RetractEndorsement",
        pb.SetAccountStatusRequest: "SetAccountStatus",
    }[type(request)]
    return getattr(stub, method)(request, timeout=30).sequence


@pytest.mark.parametrize("case", list(CHANGED))
def test_a_request_id_reused_with_anything_changed_is_invalid_and_applies_nothing(case):
    method, first, changed = CHANGED[case]
    engine = Engine()
    _prepare(engine)
    srv = build_server("127.0.0.1:0", engine, FAST)
    srv.start()
    try:
        with grpc.insecure_channel(srv.address) as channel:
            stub = pb_grpc.ScoreServiceStub(channel)
            first.request_id = changed.request_id = "req-1"
            assert type(first).__name__.startswith(method)
            sequence = _send(stub, first)
            with pytest.raises(grpc.RpcError) as caught:
                _send(stub, changed)
            got = ScoreServiceError.of(caught.value)
            assert got.code == grpc.StatusCode.INVALID_ARGUMENT, (case, got)
            assert got.reason == "REQUEST_ID_REUSED"
            assert engine.sequence == sequence
            assert _send(stub, first) == sequence  # the first request again: a retry
            assert engine.sequence == sequence
    finally:
        srv.stop(0)


def test_the_same_batch_as_rows_or_as_columns_is_one_request(server):
    columns, rows = _columns(), _rows(_row("a", "b"), _row("c", "b", REPLY))
    columns.request_id = rows.request_id = "either-form"
    with grpc.insecure_channel(server.address) as channel:
        stub = pb_grpc.ScoreServiceStub(channel)
        first = _send(stub, columns)
        assert _send(stub, rows) == first
        assert _send(stub, columns) == first


def test_a_weight_of_one_is_the_same_request_as_no_weight(server):
    """Absent means 1, so a retry that spells the default out is a retry, in either form."""
    plain = _rows(_row("a", "b"), _row("c", "b", REPLY))
    spelled = _rows(_row("a", "b", weight=1.0), _row("c", "b", REPLY, weight=1.0))
    columns = _columns(weight=(1.0, 1.0))
    for request in (plain, spelled, columns):
        request.request_id = "weight-one"
    with grpc.insecure_channel(server.address) as channel:
        stub = pb_grpc.ScoreServiceStub(channel)
        first = _send(stub, plain)
        assert _send(stub, spelled) == first
        assert _send(stub, columns) == first


@pytest.mark.parametrize(
    "request_",
    [_retract(), _retract(when=None), _status(), _status(status=pb.ACCOUNT_STATUS_SUSPENDED)],
    ids=["retract", "retract at server time", "seed", "suspend"],
)
def test_retries_of_retract_and_set_status_get_the_first_sequence(request_):
    engine = Engine()
    _prepare(engine)
    srv = build_server("127.0.0.1:0", engine, FAST)
    srv.start()
    try:
        with grpc.insecure_channel(srv.address) as channel:
            stub = pb_grpc.ScoreServiceStub(channel)
            request_.request_id = "retry-me"
            first = _send(stub, request_)
            _send(stub, _endorse(endorser="x", endorsee="y"))  # a write in between
            later = engine.sequence
            # a retract retried after it succeeded finds nothing live: the first answer
            assert [_send(stub, request_) for _ in range(3)] == [first] * 3
            assert engine.sequence == later
    finally:
        srv.stop(0)


class _Faulty(Engine):
    def contributions(self, user_id, limit, cluster=()):  # type: ignore[no-untyped-def]
        raise RuntimeError("secret internal detail")


def test_unexpected_errors_are_internal_and_leak_nothing():
    srv = build_server("127.0.0.1:0", _Faulty(), FAST)
    srv.start()
    try:
        with ScoreClient(srv.address) as c:
            seq = c.record_interactions([("a", "b", LIKE, None)]).sequence
            got = rejected(c.score, "b", min_sequence=seq, top_contributors=2)
            assert got.code == grpc.StatusCode.INTERNAL
            assert "secret" not in got.message and "request id" in got.message
            assert got.metadata["request_id"]
    finally:
        srv.stop(0)


# ------------------------------------------------------------------ semantics


def test_request_ids_make_writes_idempotent(client):
    rows = [("ana", "bo", LIKE, now())]
    first = client.record_interactions(rows, request_id="batch-1")
    again = client.record_interactions(rows, request_id="batch-1")
    assert again.sequence == first.sequence and again.accepted == first.accepted
    e1 = client.endorse("ana", "bo", request_id="e-1")
    assert client.endorse("ana", "bo", request_id="e-1") == e1
    got = client.score("bo", min_sequence=e1.sequence)
    assert got.explanation.engagement_received == pytest.approx(1.0, rel=1e-3)


def test_concurrent_writers_and_readers_lose_nothing(server):
    writers, per_writer = 4, 40
    errors: list[BaseException] = []
    sequences: list[int] = []
    stop = threading.Event()

    def write(w: int) -> None:
        try:
            with ScoreClient(server.address) as c:
                for i in range(per_writer):
                    done = c.record_interactions([(f"w{w}-{i}", "hub", LIKE, None)])
                    sequences.append(done.sequence)
        except BaseException as exc:
            errors.append(exc)

    def read() -> None:
        try:
            with ScoreClient(server.address) as c:
                while not stop.is_set():
                    try:
                        c.score("hub", top_contributors=3)
                        c.top_users(5)
                    except ScoreServiceError as exc:
                        if exc.code != grpc.StatusCode.NOT_FOUND:
                            raise
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(w,)) for w in range(writers)]
    readers = [threading.Thread(target=read) for _ in range(3)]
    for t in threads + readers:
        t.start()
    for t in threads:
        t.join()
    stop.set()
    for t in readers:
        t.join()
    assert not errors
    assert len(set(sequences)) == writers * per_writer
    with ScoreClient(server.address) as c:
        got = c.score("hub", min_sequence=max(sequences))
        assert got.explanation.engagement_received == pytest.approx(writers * per_writer, rel=1e-3)


def test_health_is_serving_only_once_ready():
    srv = build_server("127.0.0.1:0", Engine(), FAST)
    srv.start(ready=False)
    try:
        with grpc.insecure_channel(srv.address) as channel:
            health = health_pb2_grpc.HealthStub(channel)
            check = health.Check(health_pb2.HealthCheckRequest(service="scoresvc.v1.ScoreService"))
            assert check.status == health_pb2.HealthCheckResponse.NOT_SERVING
            with ScoreClient(srv.address) as c:
                got = rejected(c.record_interactions, [("a", "b", LIKE, None)])
                assert got.code == grpc.StatusCode.UNAVAILABLE
            srv.mark_ready()
            check = health.Check(health_pb2.HealthCheckRequest(service=""))
            assert check.status == health_pb2.HealthCheckResponse.SERVING
    finally:
        srv.stop(0)


def server_stub(client: ScoreClient):
    return client.stub
