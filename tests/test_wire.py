"""The compiled RecordInteractions wire parser against protobuf's own parser."""

from __future__ import annotations

import math

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from scoresvc import _wire
from scoresvc.service import RowBatch, parse_record_interactions
from scoresvc.v1 import score_service_pb2 as pb

ids = st.text(min_size=1, max_size=12)


@st.composite
def row_requests(draw: st.DrawFn) -> pb.RecordInteractionsRequest:
    rows = []
    for _ in range(draw(st.integers(0, 30))):
        m = pb.Interaction(
            actor_id=draw(ids),
            target_id=draw(ids),
            kind=draw(st.integers(-5, 9)),
            topic=draw(st.text(max_size=5)),
        )
        if draw(st.booleans()):
            m.event_time.seconds = draw(st.integers(-(2**40), 2**40))
            m.event_time.nanos = draw(st.integers(0, 999_999_999))
        rows.append(m)
    return pb.RecordInteractionsRequest(interactions=rows, request_id=draw(st.text(max_size=8)))


def expected(request: pb.RecordInteractionsRequest):
    users: dict[str, int] = {}
    actor, target, kind, ts = [], [], [], []
    for m in request.interactions:
        actor.append(users.setdefault(m.actor_id, len(users)))
        target.append(users.setdefault(m.target_id, len(users)))
        kind.append(m.kind)
        ts.append(
            m.event_time.seconds + m.event_time.nanos * 1e-9
            if m.HasField("event_time")
            else math.nan
        )
    return list(users), actor, target, kind, ts


@given(request=row_requests())
def test_parser_reads_rows_exactly_as_protobuf_does(request):
    got = parse_record_interactions(request.SerializeToString())
    assert isinstance(got, RowBatch)
    users, actor, target, kind, ts = expected(request)
    assert got.users == users and got.request_id == request.request_id
    np.testing.assert_array_equal(got.actor, actor)
    np.testing.assert_array_equal(got.target, target)
    np.testing.assert_array_equal(got.kind, kind)
    np.testing.assert_array_equal(got.ts, ts)


@given(request=row_requests(), junk=st.binary(max_size=40))
def test_unknown_fields_are_skipped_like_protobuf_skips_them(request, junk):
    # Field 15, length-delimited: a field this version does not know.
    extra = bytes([15 << 3 | 2, len(junk)]) + junk
    data = request.SerializeToString() + extra
    got = parse_record_interactions(data)
    assert isinstance(got, RowBatch)
    assert got.users == expected(request)[0]


def test_columns_and_empty_ids_go_to_protobuf():
    columnar = pb.RecordInteractionsRequest(columns=pb.InteractionColumns(user_ids=["a"]))
    assert isinstance(
        parse_record_interactions(columnar.SerializeToString()), pb.RecordInteractionsRequest
    )
    empty_actor = pb.RecordInteractionsRequest(
        interactions=[pb.Interaction(actor_id="", target_id="b", kind=1)]
    )
    assert _wire.parse_interaction_rows(empty_actor.SerializeToString()) is None


@given(data=st.binary(max_size=200))
def test_malformed_bytes_never_crash_the_parser(data):
    got = _wire.parse_interaction_rows(data)
    if got is not None:
        users, actor, target, kind, ts, _ = got
        assert len(actor) == len(target) == len(kind) == len(ts)
        assert all(0 <= i < len(users) for i in np.concatenate([actor, target]))
