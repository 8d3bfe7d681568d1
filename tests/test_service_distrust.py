"""Distrust and RetractDistrust on a real server at 127.0.0.1, port 0, through the
client and straight through the generated stub: writes, retractions, errors naming
their fields, idempotency, the audit trail and the explanation's distrust fields."""

from __future__ import annotations

import asyncio
import time

import grpc
import pytest
from support import rejected

from scoresvc.client import AsyncScoreClient, ScoreClient
from scoresvc.core.engine import Engine
from scoresvc.core.model import AccountStatus, InteractionKind
from scoresvc.service.convert import timestamp
from scoresvc.service.server import ServerSettings, build_server
from scoresvc.v1 import score_service_pb2 as pb

REPLY = InteractionKind.REPLY
FAST = ServerSettings(workers=8, refresh_gap_seconds=0.005, time_step_seconds=3600)


@pytest.fixture
def engine():
    return Engine()


@pytest.fixture
def server(engine):
    srv = build_server("127.0.0.1:0", engine, FAST)
    srv.start()
    yield srv
    srv.stop(0)


@pytest.fixture
def client(server):
    with ScoreClient(server.address, timeout=10) as c:
        yield c


def _credible_critic(client: ScoreClient) -> int:
    """A seed ``ana`` who trusts ``bo`` and ``cy``; bo and cy trust each other. Returns
    the last write's sequence."""
    client.set_account_status("ana", AccountStatus.SEED)
    return client.record_interactions(
        [
            ("ana", "bo", REPLY, None),
            ("ana", "cy", REPLY, None),
            ("bo", "cy", REPLY, None),
            ("cy", "bo", REPLY, None),
        ]
    ).sequence


def test_a_credible_distrust_shows_in_the_explanation_and_its_retraction_restores(client):
    seq = _credible_critic(client)
    before = client.score("bo", min_sequence=seq)
    assert before.explanation.distrust_received == 0 and before.explanation.trust_kept == 1
    done = client.distrust("ana", "bo")
    assert done.endorsement_live is True
    # Both ways of reading a score: the page-view path and the explained one.
    for contributors in (0, 3):
        got = client.score("bo", min_sequence=done.sequence, top_contributors=contributors)
        assert got.explanation.distrust_received == pytest.approx(1.0, rel=1e-3)
        assert 0 < got.explanation.trust_kept < 1
        assert got.influence < before.influence
    assert client.score("cy", min_sequence=done.sequence).explanation.trust_kept == 1
    undone = client.retract_distrust("ana", "bo")
    assert undone.endorsement_live is False and undone.sequence > done.sequence
    after = client.score("bo", min_sequence=undone.sequence)
    assert after.explanation.distrust_received == 0 and after.explanation.trust_kept == 1
    assert after.influence == pytest.approx(before.influence, rel=1e-3)


def test_distrusts_are_in_the_audit_trail_marked_as_such(client):
    client.endorse("ana", "bo", "go")
    client.distrust("ana", "bo", "Go ")
    client.retract_distrust("ana", "bo", "go")
    given = list(client.list_endorsements("ana", given=True))
    assert [(e.distrust, e.retracted) for e in given] == [
        (True, True),
        (True, False),
        (False, False),
    ]
    assert all(e.endorser_id == "ana" and e.endorsee_id == "bo" for e in given)
    assert given[1].topic == "go"  # normalised as endorsement topics are
    assert [e.decides_current_state for e in given] == [True, False, True]
    received = list(client.list_endorsements("bo", given=False))
    assert [e.distrust for e in received] == [True, True, False]


def test_the_wire_carries_distrust_live_and_the_trail_flag(client):
    stub, t = client.stub, time.time() - 3600
    request = pb.DistrustRequest(distruster_id="ana", distrusted_id="bo", event_time=timestamp(t))
    assert stub.Distrust(request, timeout=10).distrust_live
    back_dated = pb.RetractDistrustRequest(
        distruster_id="ana", distrusted_id="bo", event_time=timestamp(t - 60)
    )
    assert stub.RetractDistrust(back_dated, timeout=10).distrust_live  # older: still live
    page = stub.ListEndorsements(
        pb.ListEndorsementsRequest(user_id="ana", direction=pb.ENDORSEMENT_DIRECTION_GIVEN),
        timeout=10,
    )
    assert [(e.distrust, e.retracted, e.decides_current_state) for e in page.endorsements] == [
        (True, True, False),
        (True, False, True),
    ]


def test_retracting_no_distrust_is_not_found_naming_the_distrusted(client):
    client.endorse("ana", "bo")  # an endorsement is not a distrust
    got = rejected(client.retract_distrust, "ana", "bo")
    assert got.code == grpc.StatusCode.NOT_FOUND and got.reason == "DISTRUST_NOT_FOUND"
    assert got.metadata["field"] == "distrusted_id"


@pytest.mark.parametrize(
    ("fields", "path"),
    [
        ({"distruster_id": "", "distrusted_id": "bo"}, "distruster_id"),
        ({"distruster_id": "ana", "distrusted_id": ""}, "distrusted_id"),
        ({"distruster_id": "ana", "distrusted_id": "ana"}, "distrusted_id"),
        ({"distruster_id": "ana", "distrusted_id": "bo", "topic": "t" * 200}, "topic"),
        ({"distruster_id": "ana", "distrusted_id": "bo", "when": 4e9}, "event_time"),
    ],
)
@pytest.mark.parametrize("method", ["Distrust", "RetractDistrust"])
def test_bad_distrusts_are_invalid_naming_the_field(client, engine, fields, path, method):
    fields = dict(fields)
    when = fields.pop("when", None)
    request = getattr(pb, f"{method}Request")(**fields)
    if when is not None:
        request.event_time.CopyFrom(timestamp(when))
    got = rejected(getattr(client.stub, method), request, timeout=10)
    assert got.code == grpc.StatusCode.INVALID_ARGUMENT
    assert [f for f, _ in got.field_violations] == [path], got
    assert got.message.startswith(f"{path}: ")
    assert engine.sequence == 0  # nothing applied


def test_a_retried_distrust_is_applied_once(client, engine):
    first = client.distrust("ana", "bo", request_id="d-1")
    again = client.distrust("ana", "bo", request_id="d-1")
    assert again.sequence == first.sequence and engine.sequence == first.sequence
    changed = rejected(client.distrust, "ana", "cy", request_id="d-1")
    assert changed.code == grpc.StatusCode.INVALID_ARGUMENT
    assert changed.reason == "REQUEST_ID_REUSED"
    # A retraction retried after it succeeded finds nothing live: the first answer.
    gone = client.retract_distrust("ana", "bo", request_id="r-1")
    assert client.retract_distrust("ana", "bo", request_id="r-1").sequence == gone.sequence
    assert engine.sequence == gone.sequence
    assert len(list(client.list_endorsements("ana", given=True))) == 2


def test_the_async_client_distrusts_and_retracts(server):
    async def go() -> tuple[bool | None, bool | None]:
        async with AsyncScoreClient(server.address, timeout=10) as c:
            done = await c.distrust("ana", "bo", "rust")
            undone = await c.retract_distrust("ana", "bo", "rust")
            return done.endorsement_live, undone.endorsement_live

    assert asyncio.run(go()) == (True, False)
