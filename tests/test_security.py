"""Safe to expose: tokens and roles, TLS and mutual TLS, limits, metrics, logs."""

from __future__ import annotations

import contextlib
import datetime
import json
import subprocess
import sys
import threading
import time
import urllib.request

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from google.protobuf import timestamp_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from support import CliServer, rejected, run_cli

from scoresvc import cli
from scoresvc.client import ScoreClient, ScoreServiceError
from scoresvc.core.engine import Engine
from scoresvc.core.model import AccountStatus, InteractionKind
from scoresvc.service.auth import Authenticator, TokenStore
from scoresvc.service.server import MetricsEndpoint, ScoreServer, ServerSettings, Tls, build_server
from scoresvc.v1 import score_service_pb2 as pb
from scoresvc.v1 import score_service_pb2_grpc as pb_grpc

LIKE = InteractionKind.LIKE
FAST = ServerSettings(workers=8, refresh_gap_seconds=0.005, time_step_seconds=3600)


@pytest.fixture
def tokens(tmp_path):
    store = TokenStore(tmp_path)
    return store, {
        role: store.create(f"svc-{role}", role) for role in ("reader", "writer", "admin")
    }


@pytest.fixture
def guarded(tokens):
    store, _ = tokens
    server = build_server("127.0.0.1:0", Engine(), FAST, auth=Authenticator(store)).start()
    yield server
    server.stop(0)


def test_each_role_may_call_what_it_should_and_nothing_more(guarded, tokens):
    _, token = tokens
    with ScoreClient(guarded.address, token=token["writer"]) as writer:
        seq = writer.record_interactions([("ana", "bo", LIKE, None)]).sequence
        assert writer.score("bo", min_sequence=seq).user_id == "bo"
        denied = rejected(writer.set_account_status, "bo", AccountStatus.SEED)
        assert denied.code == grpc.StatusCode.PERMISSION_DENIED
        assert "needs admin" in denied.message
    with ScoreClient(guarded.address, token=token["reader"]) as reader:
        assert reader.score("bo").user_id == "bo"
        assert rejected(reader.endorse, "ana", "bo").code == grpc.StatusCode.PERMISSION_DENIED
    with ScoreClient(guarded.address, token=token["admin"]) as admin:
        admin.set_account_status("bo", AccountStatus.SEED)
        admin.endorse("ana", "bo")


#: The README's role table, written out: who may call what on a server holding tokens.
#: Roles nest: reader (the seven reads) < writer (also the five writes of events)
#: < admin (also SetAccountStatus, ListSuspects, the moderation actions and their
#: trail, and EraseUser); a call without a token is UNAUTHENTICATED.
_OK, _DENIED, _UNAUTH = "OK", "PERMISSION_DENIED", "UNAUTHENTICATED"
ROLE_MATRIX = {
    #                      anonymous  reader   writer   admin
    "Score": (_UNAUTH, _OK, _OK, _OK),
    "BatchScore": (_UNAUTH, _OK, _OK, _OK),
    "TopUsers": (_UNAUTH, _OK, _OK, _OK),
    "ListEndorsements": (_UNAUTH, _OK, _OK, _OK),
    "ListTopics": (_UNAUTH, _OK, _OK, _OK),
    "ScoreHistory": (_UNAUTH, _OK, _OK, _OK),
    "ExplainChange": (_UNAUTH, _OK, _OK, _OK),
    "Endorse": (_UNAUTH, _DENIED, _OK, _OK),
    "RetractEndorsement": (_UNAUTH, _DENIED, _OK, _OK),
    "Distrust": (_UNAUTH, _DENIED, _OK, _OK),
    "RetractDistrust": (_UNAUTH, _DENIED, _OK, _OK),
    "RecordInteractions": (_UNAUTH, _DENIED, _OK, _OK),
    "SetAccountStatus": (_UNAUTH, _DENIED, _DENIED, _OK),
    "ListSuspects": (_UNAUTH, _DENIED, _DENIED, _OK),
    "SuspendCluster": (_UNAUTH, _DENIED, _DENIED, _OK),
    "InvalidateBetween": (_UNAUTH, _DENIED, _DENIED, _OK),
    "RestoreBetween": (_UNAUTH, _DENIED, _DENIED, _OK),
    "ListModerationActions": (_UNAUTH, _DENIED, _DENIED, _OK),
    "EraseUser": (_UNAUTH, _DENIED, _DENIED, _OK),
}
CALLERS = ("anonymous", "reader", "writer", "admin")


def _valid_request(method: str, caller: str):
    """A request ``method`` answers OK when the caller may make it: each caller
    retracts an endorsement and a distrust of its own (made before the server started)."""
    return {
        "Score": pb.ScoreRequest(user_id="bo"),
        "BatchScore": pb.BatchScoreRequest(user_ids=["bo", "ana"]),
        "TopUsers": pb.TopUsersRequest(limit=3),
        "ListEndorsements": pb.ListEndorsementsRequest(
            user_id="bo", direction=pb.ENDORSEMENT_DIRECTION_RECEIVED
        ),
        "ListTopics": pb.ListTopicsRequest(page_size=5),
        "ScoreHistory": pb.ScoreHistoryRequest(user_id="bo"),
        # From now: the point recorded at start-up is before it.
        "ExplainChange": pb.ExplainChangeRequest(
            user_id="bo", from_time=timestamp_pb2.Timestamp(seconds=int(time.time()) + 1)
        ),
        "Endorse": pb.EndorseRequest(endorser_id=f"{caller}-new", endorsee_id="bo"),
        "RetractEndorsement": pb.RetractEndorsementRequest(
            endorser_id=f"{caller}-fan", endorsee_id="bo"
        ),
        "Distrust": pb.DistrustRequest(distruster_id=f"{caller}-new", distrusted_id="bo"),
        "RetractDistrust": pb.RetractDistrustRequest(
            distruster_id=f"{caller}-critic", distrusted_id="bo"
        ),
        "RecordInteractions": pb.RecordInteractionsRequest(
            interactions=[pb.Interaction(actor_id=caller, target_id="bo", kind=LIKE)]
        ),
        "SetAccountStatus": pb.SetAccountStatusRequest(
            user_id="bo", status=pb.ACCOUNT_STATUS_NORMAL
        ),
        "ListSuspects": pb.ListSuspectsRequest(limit=5),
        "SuspendCluster": pb.SuspendClusterRequest(user_ids=[f"{caller}-sock"], reason="socks"),
        "InvalidateBetween": pb.InvalidateBetweenRequest(user_ids=["ana", "bo"], reason="trade"),
        # Invalidation 1 is made before the server starts.
        "RestoreBetween": pb.RestoreBetweenRequest(action_id=1, reason="appeal"),
        "ListModerationActions": pb.ListModerationActionsRequest(page_size=5),
        # Each caller erases an account of its own (made before the server started).
        "EraseUser": pb.EraseUserRequest(user_id=f"{caller}-gone", reason="asked"),
    }[method]


def test_every_method_for_every_role_follows_the_readme_role_table(tokens):
    store, token = tokens
    assert set(ROLE_MATRIX) == {
        m.name for m in pb.DESCRIPTOR.services_by_name["ScoreService"].methods
    }, "a method is missing from the role table"
    engine = Engine()
    engine.record_interactions([("ana", "bo", LIKE, None)])
    for caller in CALLERS:
        engine.endorse(f"{caller}-fan", "bo")
        engine.distrust(f"{caller}-critic", "bo")
        engine.record_interactions([(f"{caller}-gone", "bo", LIKE, None)])
    engine.invalidate_between(["cy", "dee"], reason="for RestoreBetween")
    engine.refresh()
    server = build_server("127.0.0.1:0", engine, FAST, auth=Authenticator(store)).start()
    got: dict[str, tuple[str, ...]] = {}
    try:
        with grpc.insecure_channel(server.address) as channel:
            stub = pb_grpc.ScoreServiceStub(channel)
            for method in ROLE_MATRIX:
                codes = []
                for caller in CALLERS:
                    metadata = (
                        []
                        if caller == "anonymous"
                        else [("authorization", f"Bearer {token[caller]}")]
                    )
                    try:
                        getattr(stub, method)(
                            _valid_request(method, caller), timeout=30, metadata=metadata
                        )
                        codes.append(_OK)
                    except grpc.RpcError as exc:
                        codes.append(exc.code().name)  # type: ignore[attr-defined]
                got[method] = tuple(codes)
    finally:
        server.stop(0)
    assert got == ROLE_MATRIX


def test_missing_or_bad_tokens_are_unauthenticated_but_health_stays_open(guarded, tokens):
    _, token = tokens
    with ScoreClient(guarded.address) as anonymous:
        got = rejected(anonymous.score, "bo")
        assert got.code == grpc.StatusCode.UNAUTHENTICATED and "Bearer" in got.message
    forged = token["admin"][:-4] + "AAAA"
    for bad in (forged, "sv1.nope.nope", "not-a-token"):
        with ScoreClient(guarded.address, token=bad) as client:
            assert rejected(client.score, "bo").code == grpc.StatusCode.UNAUTHENTICATED
    with grpc.insecure_channel(guarded.address) as channel:
        reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest())
        assert reply.status == health_pb2.HealthCheckResponse.SERVING


def test_a_revoked_token_stops_working_without_a_restart(guarded, tokens):
    store, token = tokens
    with ScoreClient(guarded.address, token=token["reader"]) as reader:
        rejected(reader.score, "nobody")  # NOT_FOUND: the token works
        assert store.revoke("svc-reader")
        deadline = time.monotonic() + 60  # "within a second" on an idle machine
        while time.monotonic() < deadline:
            code = rejected(reader.score, "nobody").code
            if code == grpc.StatusCode.UNAUTHENTICATED:
                break
            time.sleep(0.1)
        assert code == grpc.StatusCode.UNAUTHENTICATED


def test_request_ids_are_scoped_to_the_caller(guarded, tokens):
    store, token = tokens
    other = store.create("svc-other-writer", "writer")
    with (
        ScoreClient(guarded.address, token=token["writer"]) as a,
        ScoreClient(guarded.address, token=other) as b,
    ):
        first = a.record_interactions([("ana", "bo", LIKE, None)], request_id="r1").sequence
        second = b.record_interactions([("cy", "dee", LIKE, None)], request_id="r1").sequence
        assert second > first  # not the first caller's answer: applied
        again = a.record_interactions([("ana", "bo", LIKE, None)], request_id="r1")
        assert again.sequence == first
        clash = rejected(a.record_interactions, [("x", "y", LIKE, None)], request_id="r1")
        assert clash.reason == "REQUEST_ID_REUSED"


def test_token_cli_prints_the_token_last_and_stores_only_its_hash(tmp_path, capsys):
    data = str(tmp_path)
    assert (
        cli.main(["token", "create", "--data-dir", data, "--name", "ci", "--role", "writer"]) == 0
    )
    printed = capsys.readouterr().out.strip().splitlines()[-1]
    assert printed.startswith("sv1.")
    stored = (tmp_path / "tokens.json").read_text()
    assert printed.split(".")[2] not in stored and "sha256" in stored
    assert (tmp_path / "tokens.json").stat().st_mode & 0o077 == 0
    assert cli.main(["token", "list", "--data-dir", data]) == 0
    assert "ci\twriter" in capsys.readouterr().out
    assert cli.main(["token", "create", "--data-dir", data, "--name", "ci"]) == 2
    assert "exists" in capsys.readouterr().err
    assert cli.main(["token", "revoke", "--data-dir", data, "--name", "ci"]) == 0
    assert cli.main(["token", "revoke", "--data-dir", data, "--name", "ci"]) == 2
    assert Authenticator(TokenStore(tmp_path)).enforcing() is False


def test_a_public_address_without_tokens_is_refused_unless_told(tmp_path):
    base = [sys.executable, "-m", "scoresvc", "serve", "--port", "0", "--host", "0.0.0.0"]
    refused = subprocess.run(
        [*base, "--data-dir", str(tmp_path / "d")], capture_output=True, text=True, timeout=60
    )
    assert refused.returncode == 2 and "needs tokens" in refused.stderr
    with CliServer(*base[3:], "--data-dir", "", "--insecure-no-auth") as server:
        server.stop(timeout=60)
    assert "--insecure-no-auth: anyone who can reach 0.0.0.0" in server.log()


# ---------------------------------------------------------------------- TLS


def _certificate(name: str, issuer=None, issuer_key=None, ca: bool = False):
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer.subject if issuer else subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if not ca:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False
        )
    cert = builder.sign(issuer_key or key, hashes.SHA256())
    pem_key = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return cert, key, cert.public_bytes(serialization.Encoding.PEM), pem_key


@pytest.fixture(scope="module")
def pki():
    ca, ca_key, ca_pem, _ = _certificate("scoresvc test CA", ca=True)
    _, _, server_pem, server_key = _certificate("localhost", ca, ca_key)
    _, _, client_pem, client_key = _certificate("a client", ca, ca_key)
    return {
        "ca": ca_pem,
        "server": (server_pem, server_key),
        "client": (client_pem, client_key),
    }


def _tls_server(pki, mutual: bool) -> ScoreServer:
    cert, key = pki["server"]
    tls = Tls(cert, key, client_ca=pki["ca"] if mutual else None)
    return build_server("127.0.0.1:0", Engine(), FAST, tls=tls).start()


def _tls_client(server: ScoreServer, pki, with_certificate: bool) -> ScoreClient:
    cert, key = pki["client"]
    credentials = grpc.ssl_channel_credentials(
        root_certificates=pki["ca"],
        private_key=key if with_certificate else None,
        certificate_chain=cert if with_certificate else None,
    )
    return ScoreClient(
        f"localhost:{server.port}",
        credentials=credentials,
        timeout=5,
        options=[("grpc.ssl_target_name_override", "localhost")],
    )


def test_tls_serves_and_plaintext_is_refused(pki):
    server = _tls_server(pki, mutual=False)
    try:
        with _tls_client(server, pki, with_certificate=False) as client:
            seq = client.record_interactions([("ana", "bo", LIKE, None)]).sequence
            assert client.score("bo", min_sequence=seq).user_id == "bo"
        with ScoreClient(server.address, timeout=2) as plain:
            assert rejected(plain.score, "bo").code == grpc.StatusCode.UNAVAILABLE
    finally:
        server.stop(0)


def test_mutual_tls_needs_a_client_certificate_from_the_ca(pki):
    server = _tls_server(pki, mutual=True)
    try:
        with _tls_client(server, pki, with_certificate=True) as client:
            rejected(client.score, "nobody")  # NOT_FOUND: through the handshake
            assert rejected(client.score, "nobody").code == grpc.StatusCode.NOT_FOUND
        with _tls_client(server, pki, with_certificate=False) as client:
            assert rejected(client.score, "nobody").code == grpc.StatusCode.UNAVAILABLE
    finally:
        server.stop(0)


def test_the_operator_commands_reach_a_service_over_mutual_tls(pki, tmp_path):
    server = _tls_server(pki, mutual=True)
    files = {"ca": pki["ca"], "cert": pki["client"][0], "key": pki["client"][1]}
    for name, pem in files.items():
        (tmp_path / f"{name}.pem").write_bytes(pem)
    address = ("--address", f"localhost:{server.port}")
    mine = ("--tls-client-cert", str(tmp_path / "cert.pem"))
    mine += ("--tls-client-key", str(tmp_path / "key.pem"))
    try:
        done = run_cli("moderate", "actions", *address, "--tls-ca", str(tmp_path / "ca.pem"), *mine)
        assert done.returncode == 0, done.stderr
        listed = run_cli("suspects", *address, "--tls-ca", str(tmp_path / "ca.pem"), *mine)
        assert listed.returncode == 0, listed.stderr
        # Without TLS, or without the client certificate, the handshake fails: one line.
        for flags in ((), ("--tls-ca", str(tmp_path / "ca.pem"))):
            refused = run_cli("moderate", "actions", *address, *flags)
            assert refused.returncode != 0 and "(--address)" in refused.stderr
            assert len(refused.stderr.strip().splitlines()) == 1
        half = run_cli("moderate", "actions", *address, mine[0], mine[1])
        assert half.returncode == 2 and "--tls-client-key" in half.stderr
    finally:
        server.stop(0)


# ---------------------------------------------------------------------- limits


@contextlib.contextmanager
def _limited(**limits):
    """A client of a server with ``limits`` (ServerSettings fields) on loopback."""
    settings = ServerSettings(workers=4, time_step_seconds=3600, **limits)
    server = build_server("127.0.0.1:0", Engine(), settings).start()
    try:
        with ScoreClient(server.address) as client:
            yield client
    finally:
        server.stop(0)


def test_batches_over_the_row_limit_are_invalid():
    with _limited(max_batch_rows=3) as client:
        rows = [(f"a{i}", "hub", LIKE, None) for i in range(4)]
        got = rejected(client.record_interactions, rows)
        assert got.field_violations[0][0] == "interactions"
        assert "at most 3" in got.field_violations[0][1]
        got = rejected(client.record_interaction_columns, ["a", "b"], [0] * 4, [1] * 4, [1] * 4)
        assert got.field_violations[0][0] == "columns.kind"
        assert client.record_interactions(rows[:3]).sequence == 1


def test_a_request_over_the_size_limit_is_refused():
    with _limited(max_receive_message_bytes=2000) as client:
        rows = [(f"actor-{i:04d}", "hub", LIKE, None) for i in range(200)]
        assert rejected(client.record_interactions, rows).code == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert client.record_interactions(rows[:5]).sequence == 1


def test_a_caller_over_its_rate_is_told_when_to_retry():
    with _limited(rate_per_caller=5.0) as client:
        # Calls until one is limited: a burst of 10 at most, and 5 more a second, so
        # it comes however slowly a busy machine makes the calls.
        for _ in range(1000):
            got = rejected(client.score, "nobody")
            if got.code == grpc.StatusCode.RESOURCE_EXHAUSTED:
                break
        assert got.reason == "CALLER_RATE_LIMITED"
        assert got.retry_delay_seconds is not None and 0 < got.retry_delay_seconds <= 0.2
        deadline = time.monotonic() + 60
        while got.code == grpc.StatusCode.RESOURCE_EXHAUSTED:  # until the bucket refills
            assert time.monotonic() < deadline
            time.sleep(got.retry_delay_seconds)  # as told: the condition is then re-checked
            got = rejected(client.score, "nobody")
        assert got.code == grpc.StatusCode.NOT_FOUND


def test_the_rate_limit_holds_for_a_new_connection_per_call(tokens):
    """Anonymous callers are limited by IP address (not address and port), callers
    with a token by their token, whichever connection they come on."""
    store, token = tokens
    settings = ServerSettings(workers=4, time_step_seconds=3600, rate_per_caller=5.0)
    open_server = build_server("127.0.0.1:0", Engine(), settings).start()
    guarded = build_server("127.0.0.1:0", Engine(), settings, auth=Authenticator(store)).start()

    def codes(server: ScoreServer, metadata: list[tuple[str, str]], calls: int = 40) -> list:
        found = []
        for _ in range(calls):  # a fresh connection each time
            options = [("grpc.use_local_subchannel_pool", 1)]
            with grpc.insecure_channel(server.address, options=options) as channel:
                stub = pb_grpc.ScoreServiceStub(channel)
                try:
                    stub.Score(pb.ScoreRequest(user_id="nobody"), metadata=metadata, timeout=10)
                except grpc.RpcError as exc:
                    found.append(ScoreServiceError.of(exc))
        return found

    try:
        limited = [
            d for d in codes(open_server, []) if d.code == grpc.StatusCode.RESOURCE_EXHAUSTED
        ]
        assert limited and limited[0].reason == "CALLER_RATE_LIMITED"
        assert "127.0.0.1" in limited[0].message
        reader = [("authorization", f"Bearer {token['reader']}")]
        refused = [d.reason for d in codes(guarded, reader)]
        assert "CALLER_RATE_LIMITED" in refused
        admin = [("authorization", f"Bearer {token['admin']}")]
        assert [d.reason for d in codes(guarded, admin, calls=1)] == ["USER_NOT_FOUND"]
    finally:
        open_server.stop(0)
        guarded.stop(0)


@pytest.fixture
def one_slot():
    """A server taking one call at a time that does not refresh for a minute, and the
    sequence of a write to it: a read for that sequence waits, holding the only slot."""
    with _limited(max_concurrent_rpcs=1, refresh_gap_seconds=60, max_staleness_seconds=60) as c:
        yield c, c.record_interactions([("ana", "bo", LIKE, None)]).sequence


def _refused_while(client: ScoreClient, waiting) -> bool:
    """Whether a call is refused RESOURCE_EXHAUSTED before ``waiting()`` turns false."""
    while waiting():
        if rejected(client.score, "bo").code == grpc.StatusCode.RESOURCE_EXHAUSTED:
            return True
    return False


def test_calls_past_the_concurrency_limit_are_refused_and_deadlines_end_waits(one_slot):
    client, seq = one_slot
    for deadline in (2, 8, 32):  # a longer wait if a busy machine did not see it held
        waiting: list = []
        waiter = threading.Thread(
            target=lambda d=deadline, out=waiting: out.append(
                rejected(client.score, "bo", min_sequence=seq, timeout=d)
            )
        )
        waiter.start()
        refused = _refused_while(client, waiter.is_alive)
        waiter.join()
        assert waiting[0].code == grpc.StatusCode.DEADLINE_EXCEEDED
        if refused:
            break
    assert refused


def test_a_caller_that_goes_away_frees_its_slot_at_once(one_slot):
    client, seq = one_slot
    stub = pb_grpc.ScoreServiceStub(client.channel)
    waiting = stub.Score.future(pb.ScoreRequest(user_id="bo", min_sequence=seq), timeout=600)
    assert _refused_while(client, lambda: not waiting.done())  # it holds the slot
    waiting.cancel()
    deadline = time.monotonic() + 60
    while True:  # the slot frees as soon as the server sees the cancellation
        code = rejected(client.score, "bo").code
        if code != grpc.StatusCode.RESOURCE_EXHAUSTED:
            break
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert code == grpc.StatusCode.NOT_FOUND  # served (no refresh has run yet)


# ---------------------------------------------------------------------- observability


def test_metrics_count_calls_and_report_the_state():
    engine = Engine()
    server = build_server("127.0.0.1:0", engine, FAST, metrics=MetricsEndpoint(port=0)).start()
    try:
        with ScoreClient(server.address) as client:
            rows = [("ana", "bo", LIKE, None), ("cy", "bo", LIKE, None)]
            seq = client.record_interactions(rows).sequence
            client.score("bo", min_sequence=seq)
            rejected(client.score, "nobody")
        text = (
            urllib.request.urlopen(f"http://127.0.0.1:{server.metrics_port}/metrics", timeout=10)
            .read()
            .decode()
        )
    finally:
        server.stop(0)
    assert 'scoresvc_rpcs_total{code="OK",method="Score"} 1.0' in text
    assert 'scoresvc_rpcs_total{code="NOT_FOUND",method="Score"} 1.0' in text
    assert 'scoresvc_rpc_duration_seconds_bucket{le="10.0",method="RecordInteractions"} 1.0' in text
    assert "scoresvc_events_ingested_total 2.0" in text
    assert "scoresvc_users 3.0" in text and "scoresvc_pairs 2.0" in text
    assert "scoresvc_refresh_duration_seconds_count" in text
    assert "scoresvc_snapshot_age_seconds" in text
    # The standard process metrics of the server's own process, read from /proc.
    values = {
        line.split()[0]: float(line.split()[1])
        for line in text.splitlines()
        if line.startswith("process_")
    }
    assert values["process_resident_memory_bytes"] > 1 << 20
    assert values["process_cpu_seconds_total"] > 0
    assert values["process_open_fds"] >= 3
    assert abs(values["process_start_time_seconds"] - time.time()) < 24 * 3600


def test_json_logs_carry_the_request_id_of_each_write():
    server = CliServer("serve", "--port", "0", "--data-dir", "", "--log-format", "json")
    try:
        server.wait_serving()
        with ScoreClient(server.address, metadata=[("x-request-id", "trace-42")]) as client:
            client.record_interactions([("ana", "bo", LIKE, None)])
    finally:
        server.stop(timeout=30)
    calls = [json.loads(line) for line in server.log().splitlines() if '"method"' in line]
    ok = [c for c in calls if c["code"] == "OK"]
    assert ok and ok[0]["method"] == "RecordInteractions" and ok[0]["request_id"] == "trace-42"


def test_bytes_that_are_not_the_message_are_invalid_not_internal(guarded, tokens):
    _, token = tokens
    with grpc.insecure_channel(guarded.address) as channel:
        call = channel.unary_unary(
            "/scoresvc.v1.ScoreService/Score",
            request_serializer=lambda raw: raw,
            response_deserializer=pb.ScoreResponse.FromString,
        )
        got = rejected(
            call,
            b"\xff\xff\xff",
            timeout=5,
            metadata=[("authorization", f"Bearer {token['reader']}")],
        )
    assert got.code == grpc.StatusCode.INVALID_ARGUMENT and got.reason == "MALFORMED_REQUEST"
