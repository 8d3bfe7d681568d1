"""The compiled RecordInteractions wire parser against protobuf's own parser."""

from __future__ import annotations

import math

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from scoresvc import _wire
from scoresvc.service.handlers import ColumnBatch, RowBatch, parse_record_interactions
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
        if draw(st.booleans()):
            # Any double, NaN, infinities and an explicit 0 among them: the parser reads
            # them all; the engine judges them.
            m.weight = draw(st.floats(allow_nan=True, allow_infinity=True))
        rows.append(m)
    return pb.RecordInteractionsRequest(interactions=rows, request_id=draw(st.text(max_size=8)))


def expected(request: pb.RecordInteractionsRequest):
    users: dict[str, int] = {}
    actor, target, kind, ts, weight = [], [], [], [], []
    for m in request.interactions:
        actor.append(users.setdefault(m.actor_id, len(users)))
        target.append(users.setdefault(m.target_id, len(users)))
        kind.append(m.kind)
        ts.append(
            m.event_time.seconds + m.event_time.nanos * 1e-9
            if m.HasField("event_time")
            else math.nan
        )
        weight.append(m.weight if m.HasField("weight") else 1.0)
    return list(users), actor, target, kind, ts, weight


@given(request=row_requests())
def test_parser_reads_rows_exactly_as_protobuf_does(request):
    got = parse_record_interactions(request.SerializeToString())
    assert isinstance(got, RowBatch)
    users, actor, target, kind, ts, weight = expected(request)
    assert got.users == users and got.request_id == request.request_id
    np.testing.assert_array_equal(got.actor, actor)
    np.testing.assert_array_equal(got.target, target)
    np.testing.assert_array_equal(got.kind, kind)
    np.testing.assert_array_equal(got.ts, ts)
    np.testing.assert_array_equal(got.weight, weight)  # NaN equals NaN here


@given(request=row_requests(), junk=st.binary(max_size=40))
def test_unknown_fields_are_skipped_like_protobuf_skips_them(request, junk):
    # Field 15, length-delimited: a field this version does not know.
    extra = bytes([15 << 3 | 2, len(junk)]) + junk
    data = request.SerializeToString() + extra
    got = parse_record_interactions(data)
    assert isinstance(got, RowBatch)
    assert got.users == expected(request)[0]


@st.composite
def column_requests(draw: st.DrawFn) -> pb.RecordInteractionsRequest:
    n = draw(st.integers(0, 20))
    columns = pb.InteractionColumns(
        user_ids=draw(st.lists(st.text(max_size=12), max_size=30)),
        actor_index=draw(st.binary(min_size=4 * n, max_size=4 * n)),
        target_index=draw(st.binary(max_size=40)),
        kind=draw(st.binary(min_size=n, max_size=n)),
        event_time_seconds=draw(st.binary(max_size=40)),
        weight=draw(st.binary(max_size=40)),
    )
    return pb.RecordInteractionsRequest(columns=columns, request_id=draw(st.text(max_size=8)))


@given(request=column_requests(), junk=st.binary(max_size=20))
def test_parser_reads_columns_exactly_as_protobuf_does(request, junk):
    # Field 15 inside the columns message: a field this version does not know.
    request.columns.MergeFromString(bytes([15 << 3 | 2, len(junk)]) + junk)
    got = parse_record_interactions(request.SerializeToString())
    assert isinstance(got, ColumnBatch)
    want = ColumnBatch.of(request)
    assert got.users.decoded() == list(request.columns.user_ids)
    np.testing.assert_array_equal(got.users.offsets, want.users.offsets)
    np.testing.assert_array_equal(got.users.blob, want.users.blob)
    names = ("actor_index", "target_index", "kind", "event_time_seconds", "weight", "request_id")
    for name in names:
        assert getattr(got, name) == getattr(want, name), name


def test_ids_that_are_not_utf8_are_reported_not_mangled():
    # protobuf would refuse the message; the fast path keeps the bytes for the engine,
    # which names the id.
    good = pb.RecordInteractionsRequest(columns=pb.InteractionColumns(user_ids=["ab", "cd"]))
    data = good.SerializeToString().replace(b"cd", b"c\xff")
    got = parse_record_interactions(data)
    assert isinstance(got, ColumnBatch)
    bad_length, bad_text = got.users.invalid()
    assert list(bad_length) == [] and list(bad_text) == [1]


def test_rows_messages_and_empty_ids_go_elsewhere():
    rows = pb.RecordInteractionsRequest(interactions=[pb.Interaction(actor_id="a")])
    assert _wire.parse_interaction_columns(rows.SerializeToString()) is None
    empty_actor = pb.RecordInteractionsRequest(
        interactions=[pb.Interaction(actor_id="", target_id="b", kind=1)]
    )
    assert _wire.parse_interaction_rows(empty_actor.SerializeToString()) is None


@given(data=st.binary(max_size=200))
def test_malformed_bytes_never_crash_the_parsers(data):
    got = _wire.parse_interaction_rows(data)
    if got is not None:
        users, actor, target, kind, ts, weight, _ = got
        assert len(actor) == len(target) == len(kind) == len(ts) == len(weight)
        assert all(0 <= i < len(users) for i in np.concatenate([actor, target]))
    columns = _wire.parse_interaction_columns(data)
    if columns is not None:
        blob, offsets = columns[:2]
        assert offsets[0] == 0 and offsets[-1] == len(blob)
        assert np.all(np.diff(offsets) >= 0)
