"""Abuse: fuzzed requests to every RPC, and a bounded soak of mixed traffic.

The fuzz sends random bytes, mutated valid messages and random field values (built from
the proto descriptors) to a real server on loopback: every answer is a proper status
(never INTERNAL or UNKNOWN), a rejected request changes nothing, and the server stays
up. The soak runs readers and writers against a server process for
SCORESVC_SOAK_SECONDS (60 by default): no unexpected errors, memory growth bounded,
every acknowledged write present at the end.
"""

from __future__ import annotations

import os
import random
import threading
import time

import grpc
import pytest
from google.protobuf.descriptor import FieldDescriptor
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support import CliServer

from scoresvc.client import ScoreClient, ScoreServiceError
from scoresvc.core.engine import Engine
from scoresvc.core.model import InteractionKind
from scoresvc.service.server import ServerSettings, build_server
from scoresvc.v1 import score_service_pb2 as pb

SERVICE = pb.DESCRIPTOR.services_by_name["ScoreService"]
METHODS = [m.name for m in SERVICE.methods]
#: What a bad request may hear. INTERNAL, UNKNOWN, UNAVAILABLE would be bugs, and so
#: would DEADLINE_EXCEEDED: every request here is answered at once or after a refresh
#: (milliseconds), so running out of a generous deadline means the server hung.
PROPER = {
    grpc.StatusCode.OK,
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.OUT_OF_RANGE,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
}
#: Far beyond any answer's time on a loaded machine; only a hang reaches it.
HANG_SECONDS = 30
LIKE = InteractionKind.LIKE
FUZZ = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@pytest.fixture(scope="module")
def fuzzed():
    engine = Engine()
    settings_ = ServerSettings(workers=4, refresh_gap_seconds=0.002, time_step_seconds=3600)
    server = build_server("127.0.0.1:0", engine, settings_).start()
    with ScoreClient(server.address) as client:  # something to find and endorse
        client.record_interactions([("ana", "bo", LIKE, None), ("bo", "cy", LIKE, None)])
    channel = grpc.insecure_channel(server.address)
    calls = {
        name: channel.unary_unary(
            f"/{SERVICE.full_name}/{name}",
            request_serializer=lambda raw: raw,
            response_deserializer=lambda raw: raw,
        )
        for name in METHODS
    }
    yield engine, calls, server
    channel.close()
    server.stop(0)


def _send(fuzzed, method: str, data: bytes) -> grpc.StatusCode:
    engine, calls, _ = fuzzed
    before = (engine.sequence, engine.n_users, engine.n_pairs)
    try:
        calls[method](data, timeout=HANG_SECONDS)
        code = grpc.StatusCode.OK
    except grpc.RpcError as exc:
        code = exc.code()  # type: ignore[attr-defined]
    assert code in PROPER, (method, code, data[:80])
    if code != grpc.StatusCode.OK:
        assert (engine.sequence, engine.n_users, engine.n_pairs) == before, (method, data[:80])
    return code


def _messages(descriptor, depth: int = 0) -> st.SearchStrategy:
    """Messages of ``descriptor`` with every field drawn at random (or left unset)."""
    fields = {}
    for field in descriptor.fields:
        if field.type == FieldDescriptor.TYPE_MESSAGE:
            if depth > 2:
                continue
            value = _messages(field.message_type, depth + 1)
        elif field.type == FieldDescriptor.TYPE_STRING:
            value = st.one_of(st.text(max_size=12), st.text(min_size=120, max_size=140))
        elif field.type == FieldDescriptor.TYPE_BYTES:
            value = st.binary(max_size=48)
        elif field.type == FieldDescriptor.TYPE_ENUM:
            value = st.integers(-3, 8)
        elif field.type == FieldDescriptor.TYPE_BOOL:
            value = st.booleans()
        elif field.type in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT):
            value = st.floats(allow_nan=True)
        elif field.type in (FieldDescriptor.TYPE_INT32, FieldDescriptor.TYPE_SINT32):
            value = st.integers(-(2**31), 2**31 - 1)
        elif field.type in (FieldDescriptor.TYPE_UINT32, FieldDescriptor.TYPE_FIXED32):
            value = st.integers(0, 2**32 - 1)
        elif field.type in (FieldDescriptor.TYPE_UINT64, FieldDescriptor.TYPE_FIXED64):
            value = st.integers(0, 2**64 - 1)
        else:
            value = st.integers(-(2**63), 2**63 - 1)
        if _repeated(field):
            value = st.lists(value, max_size=6)
        fields[field.name] = st.none() | value

    def build(values: dict) -> bytes:
        message = _message_class(descriptor)()
        for name, value in values.items():
            if value is None:
                continue
            field = descriptor.fields_by_name[name]
            if _repeated(field):
                if field.type == FieldDescriptor.TYPE_MESSAGE:
                    for item in value:
                        getattr(message, name).add().MergeFromString(item)
                else:
                    getattr(message, name).extend(value)
            elif field.type == FieldDescriptor.TYPE_MESSAGE:
                getattr(message, name).MergeFromString(value)
            else:
                setattr(message, name, value)
        return message.SerializeToString()

    return st.fixed_dictionaries(fields).map(build)


def _repeated(field) -> bool:
    found = getattr(field, "is_repeated", None)  # newer protobuf; older ones have label
    return bool(found) if found is not None else field.label == FieldDescriptor.LABEL_REPEATED


def _message_class(descriptor):
    from google.protobuf import message_factory

    return message_factory.GetMessageClass(descriptor)


@pytest.mark.parametrize("method", METHODS)
@FUZZ
@given(data=st.binary(max_size=200))
def test_random_bytes_get_proper_answers(fuzzed, method, data):
    _send(fuzzed, method, data)


@pytest.mark.parametrize("method", METHODS)
@FUZZ
@given(data=st.data())
def test_random_field_values_get_proper_answers(fuzzed, method, data):
    descriptor = SERVICE.methods_by_name[method].input_type
    _send(fuzzed, method, data.draw(_messages(descriptor)))


@pytest.mark.parametrize("method", METHODS)
@FUZZ
@given(data=st.data())
def test_mutated_valid_messages_get_proper_answers(fuzzed, method, data):
    descriptor = SERVICE.methods_by_name[method].input_type
    raw = bytearray(data.draw(_messages(descriptor)))
    for _ in range(data.draw(st.integers(1, 4))):
        what = data.draw(st.sampled_from(["flip", "insert", "delete", "truncate"]))
        at = data.draw(st.integers(0, len(raw)))
        if what == "flip" and at < len(raw):
            raw[at] ^= 1 << data.draw(st.integers(0, 7))
        elif what == "insert":
            raw[at:at] = data.draw(st.binary(min_size=1, max_size=4))
        elif what == "delete" and at < len(raw):
            del raw[at]
        elif what == "truncate":
            del raw[at:]
    _send(fuzzed, method, bytes(raw))


def test_the_fuzzed_server_still_serves(fuzzed):
    _, _, server = fuzzed
    with grpc.insecure_channel(server.address) as channel:
        reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest())
    assert reply.status == health_pb2.HealthCheckResponse.SERVING
    with ScoreClient(server.address) as client:
        assert client.score("bo").user_id == "bo"


# ---------------------------------------------------------------------- soak


def _rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def test_soak_of_mixed_readers_and_writers(tmp_path):
    seconds = float(os.environ.get("SCORESVC_SOAK_SECONDS", "60"))
    server = CliServer(
        "serve",
        "--port",
        "0",
        "--data-dir",
        str(tmp_path),
        "--durability",
        "normal",
        "--log-level",
        "WARNING",
    )
    address = server.address
    stop = threading.Event()
    acknowledged: list[tuple[str, int]] = []  # (batch prefix, rows)
    endorsed: list[tuple[str, str]] = []
    unexpected: list[str] = []
    lock = threading.Lock()

    def writer(w: int) -> None:
        rng = random.Random(w)
        with ScoreClient(address, timeout=10) as client:
            i = 0
            while not stop.is_set():
                prefix = f"w{w}b{i}"
                rows = [(f"{prefix}r{k}", f"hub{rng.randrange(20)}", LIKE, None) for k in range(20)]
                try:
                    client.record_interactions(rows, request_id=prefix)
                    with lock:
                        acknowledged.append((prefix, len(rows)))
                    if i % 5 == 0:
                        client.endorse(f"{prefix}r0", f"hub{w}")
                        with lock:
                            endorsed.append((f"{prefix}r0", f"hub{w}"))
                except ScoreServiceError as exc:
                    if "starting" not in exc.message:
                        unexpected.append(f"write: {exc}")
                    time.sleep(0.05)
                i += 1

    def reader(r: int) -> None:
        rng = random.Random(100 + r)
        with ScoreClient(address, timeout=10) as client:
            while not stop.is_set():
                try:
                    choice = rng.random()
                    if choice < 0.6:
                        client.score(f"hub{rng.randrange(20)}", top_contributors=rng.randrange(3))
                    elif choice < 0.9:
                        client.batch_score([f"hub{k}" for k in range(20)] + ["ghost"])
                    else:
                        client.top_users(limit=10)
                except ScoreServiceError as exc:
                    if exc.code not in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.UNAVAILABLE):
                        unexpected.append(f"read: {exc}")
                    time.sleep(0.02)

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(3)]
    threads += [threading.Thread(target=reader, args=(r,)) for r in range(3)]
    try:
        for t in threads:
            t.start()
        time.sleep(min(5.0, seconds / 4))  # warmed up: code loaded, caches filled
        rss_start = _rss_bytes(server.pid)
        events_start = sum(n for _, n in acknowledged)
        time.sleep(seconds)
        stop.set()
        for t in threads:
            t.join()
        rss_end = _rss_bytes(server.pid)
        events = sum(n for _, n in acknowledged) - events_start
        with ScoreClient(address, timeout=30) as client:
            seq = client.record_interactions([("last", "hub0", LIKE, None)]).sequence
            client.score("hub0", min_sequence=seq)
            names = [f"{prefix}r{k}" for prefix, n in acknowledged for k in range(n)]
            missing = []
            for start in range(0, len(names), 5000):
                reply = client.batch_score(names[start : start + 5000], min_sequence=seq)
                missing += [e.user_id for e in reply.entries if not e.found]
            given = {
                (e.endorser_id, e.endorsee_id)
                for hub in {h for _, h in endorsed}
                for e in client.list_endorsements(hub, given=False, page_size=1000)
            }
    finally:
        server.stop(timeout=60)
    assert unexpected == []
    assert len(acknowledged) > 50
    assert missing == []
    assert set(endorsed) <= given
    # Memory grows with the users and pairs written (a few hundred bytes each), not
    # with the number of calls: allow 2 KB per event written plus 64 MB of slack.
    assert rss_end - rss_start < 2048 * events + 64 * 2**20, (rss_start, rss_end, events)
