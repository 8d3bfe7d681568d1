"""Shared test helpers: event-log strategies and the engine-versus-oracle check."""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from typing import Any

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hypothesis import strategies as st

from scoresvc import reference
from scoresvc.client import ScoreServiceError
from scoresvc.core.engine import Engine
from scoresvc.core.events import EventLog
from scoresvc.core.model import AccountStatus, ModelParams
from scoresvc.core.snapshot import Snapshot

DAY = 86_400.0
T0 = 1_700_000_000.0
H = ModelParams().half_life_seconds

#: docs/model.md step 7: relative 1e-5 of the exact fixed point, or absolute 1e-15.
CRED_REL, CRED_ABS = 1e-5, 1e-15


def rejected(call: Callable[..., Any], *args: Any, **kwargs: Any) -> ScoreServiceError:
    """The error a call fails with; a call straight through a generated stub (a
    ``grpc.RpcError``) is decoded the same way."""
    try:
        call(*args, **kwargs)
    except ScoreServiceError as error:
        return error
    except grpc.RpcError as error:
        return ScoreServiceError.of(error)
    pytest.fail("the call was accepted")


@st.composite
def event_logs(
    draw: st.DrawFn,
    max_users: int = 10,
    max_interactions: int = 60,
    max_endorsements: int = 20,
    max_distrusts: int = 8,
    statuses: bool = True,
    span_days: float = 200.0,
    first_seen: bool = True,
) -> EventLog:
    """Small event logs over ``span_days`` before T0. With ``first_seen``, some logs
    date their accounts explicitly (any time in the span, not necessarily before the
    account's events: accounts created after their back-dated events; or never), the
    others by their earliest event."""
    n = draw(st.integers(2, max_users))
    m = draw(st.integers(0, max_interactions))
    k = draw(st.integers(0, max_endorsements))
    q = draw(st.integers(0, max_distrusts))
    user = st.integers(0, n - 1)
    # Whole seconds, so equal timestamps (ties) happen.
    when = st.integers(-int(span_days * DAY), 0).map(lambda s: T0 + s)
    pairs = draw(
        st.lists(st.tuples(user, user).filter(lambda p: p[0] != p[1]), min_size=m, max_size=m)
    )
    endorsements = draw(
        st.lists(st.tuples(user, user).filter(lambda p: p[0] != p[1]), min_size=k, max_size=k)
    )
    distrusts = draw(
        st.lists(st.tuples(user, user).filter(lambda p: p[0] != p[1]), min_size=q, max_size=q)
    )
    status = np.zeros(n, np.uint8)
    if statuses:
        status = np.array(
            draw(st.lists(st.sampled_from([0, 0, 0, 0, 1, 2]), min_size=n, max_size=n)),
            np.uint8,
        )
    seen = None
    if first_seen and draw(st.booleans()):
        never = st.just(np.inf)
        seen = draw(st.lists(st.one_of(when, never), min_size=n, max_size=n))
    return EventLog(
        n_users=n,
        first_seen=seen,
        actor=[p[0] for p in pairs],
        target=[p[1] for p in pairs],
        kind=draw(st.lists(st.integers(1, 4), min_size=m, max_size=m)),
        ts=draw(st.lists(when, min_size=m, max_size=m)),
        endorser=[p[0] for p in endorsements],
        endorsee=[p[1] for p in endorsements],
        topic=draw(st.lists(st.integers(0, 2), min_size=k, max_size=k)),
        endorse_ts=draw(st.lists(when, min_size=k, max_size=k)),
        retracted=draw(st.lists(st.booleans(), min_size=k, max_size=k)),
        distruster=[p[0] for p in distrusts],
        distrusted=[p[1] for p in distrusts],
        distrust_topic=draw(st.lists(st.integers(0, 2), min_size=q, max_size=q)),
        distrust_ts=draw(st.lists(when, min_size=q, max_size=q)),
        distrust_retracted=draw(st.lists(st.booleans(), min_size=q, max_size=q)),
        status=status,
        topics=["", "python", "rust"],
    )


def vouches(log: EventLog) -> int:
    """Endorsement and distrust events together (``subset``'s second index space)."""
    return log.n_endorsement_events + log.n_distrust_events


def subset(log: EventLog, interactions: np.ndarray, events: np.ndarray) -> EventLog:
    """The log with only these interactions and these vouches (indexes below
    ``n_endorsement_events`` are endorsement events, the rest distrust events), in the
    order given; users, statuses and first-seen times as they were."""
    events = np.asarray(events, np.int64)
    e = events[events < log.n_endorsement_events]
    d = events[events >= log.n_endorsement_events] - log.n_endorsement_events
    return EventLog(
        n_users=log.n_users,
        actor=log.actor[interactions],
        target=log.target[interactions],
        kind=log.kind[interactions],
        ts=log.ts[interactions],
        endorser=log.endorser[e],
        endorsee=log.endorsee[e],
        topic=log.topic[e],
        endorse_ts=log.endorse_ts[e],
        retracted=log.retracted[e],
        distruster=log.distruster[d],
        distrusted=log.distrusted[d],
        distrust_topic=log.distrust_topic[d],
        distrust_ts=log.distrust_ts[d],
        distrust_retracted=log.distrust_retracted[d],
        status=log.status,
        user_ids=log.user_ids,
        topics=log.topics,
        first_seen=log.first_seen,
    )


def engine_for(log: EventLog, now: float, **kwargs: object) -> tuple[Engine, Snapshot]:
    engine = Engine(**kwargs)  # type: ignore[arg-type]
    engine.load_events(log)
    return engine, engine.refresh(now)


def close_credibility(got: np.ndarray, want: np.ndarray) -> np.ndarray:
    """Per node: within the model's credibility tolerance."""
    return np.abs(got - want) <= np.maximum(CRED_REL * np.abs(want), CRED_ABS)


def assert_matches_reference(
    engine: Engine,
    snap: Snapshot,
    log: EventLog,
    now: float,
    *,
    exact_edges: bool = True,
) -> reference.ReferenceSnapshot:
    """The engine's snapshot against the numpy oracle on the same events.

    Decayed sums, budgets, transition probabilities and received sums to 1e-12
    relative; credibility, influence and scores within the model's tolerance.
    """
    ref = reference.compute(log, now, engine.params, tolerance=1e-15, max_iterations=20_000)
    n = log.n_users
    assert log.user_ids is not None
    dense = np.array([snap.user_index[u] for u in log.user_ids])
    assert snap.n_users == n

    if exact_edges:
        edges = engine.edges()
        to_log = np.empty(n, np.int64)
        to_log[dense] = np.arange(n)
        code = to_log[edges["src"]] * n + to_log[edges["dst"]]
        order = np.argsort(code)
        ref_code = ref.pair_src * n + ref.pair_dst
        at = order[np.searchsorted(code[order], ref_code)]
        assert np.array_equal(code[at], ref_code), "a pair of the oracle is missing"
        np.testing.assert_allclose(
            edges["interaction_sums"][at], ref.interaction_sums, rtol=1e-12, atol=1e-300
        )
        np.testing.assert_allclose(
            edges["endorsement_sums"][at], ref.endorsement_sums, rtol=1e-12, atol=1e-300
        )
        # Pairs only the engine keeps (every endorsement retracted) carry nothing.
        extra = np.ones(len(code), bool)
        extra[at] = False
        assert not edges["interaction_sums"][extra].any()
        assert not edges["endorsement_sums"][extra].any()
        assert not edges["transition"][extra].any()
        np.testing.assert_allclose(edges["budget_factor"][dense], ref.budget_factor, rtol=1e-12)
        # Trust sent to a suspended user is dropped in the oracle and absorbed (then
        # excluded from normalisation) in the engine: the same fixed point elsewhere.
        # A fully matched pair keeps V - min(V, V_rev): a difference of nearly equal
        # sums, which the engine (forward-decayed) and the oracle (decayed per event)
        # round differently, so what is left is compared to its row's scale.
        alive = log.status[ref.pair_dst] != AccountStatus.SUSPENDED
        np.testing.assert_allclose(
            edges["transition"][at][alive], ref.transition[alive], rtol=1e-12, atol=1e-12
        )
        scale = 1e-12 * max(1.0, float(np.abs(ref.received).max(initial=0.0)))
        np.testing.assert_allclose(snap.received[dense], ref.received, rtol=1e-12, atol=scale)

    explained = [snap.score(u).explanation for u in log.user_ids]
    np.testing.assert_allclose(
        [e.distrust_received for e in explained], ref.distrust_received, rtol=1e-12
    )
    kept = np.array([e.trust_kept for e in explained])
    np.testing.assert_allclose(kept, ref.trust_kept, rtol=CRED_REL, atol=CRED_ABS)
    got = snap.credibility[dense]
    ok = close_credibility(got, ref.credibility)
    assert ok.all(), (
        f"credibility off at {np.flatnonzero(~ok)}: {got[~ok]} vs {ref.credibility[~ok]}"
    )
    np.testing.assert_allclose(
        snap.influence[dense], ref.influence, rtol=CRED_REL, atol=CRED_ABS * max(n, 1)
    )
    scores = np.array([snap.score(u).score for u in log.user_ids])
    np.testing.assert_allclose(scores, ref.score, rtol=0, atol=1e-3)
    # Percentiles are exact wherever no other user is within the tolerance.
    near_tie = np.abs(ref.influence[:, None] - ref.influence[None, :]) <= np.maximum(
        2 * CRED_REL * ref.influence[:, None], 1e-12
    )
    lonely = near_tie.sum(axis=1) == 1
    percentiles = np.array([snap.score(u).percentile for u in log.user_ids])
    np.testing.assert_allclose(percentiles[lonely], ref.percentile[lonely], atol=1e-9)

    for t, topic in enumerate(log.topics):
        if not topic:
            continue  # an empty topic asks for the global score
        values = ref.topic_value.get(t, {})
        ranked = {user for user, _, _ in snap.top(n, topic)}
        assert ranked == {log.user_ids[u] for u in values}, topic
        for u, value in values.items():
            got = snap.score(log.user_ids[u], topic)
            assert abs(got.influence - value) <= max(CRED_REL * value, 1e-12), (topic, u)
            assert got.score == pytest.approx(ref.topic_score[t][u], abs=1e-3), (topic, u)
    return ref


class CliServer:
    """``python -m scoresvc <args>`` started for a test (in ``cwd`` when given):
    ``address`` once it serves, its log in a file (a pipe nobody reads would fill and
    stall it). As a context manager it is killed on every path out."""

    #: Long enough for a start-up on a machine whose cores are busy with other work.
    START_SECONDS = 120.0

    def __init__(
        self, *args: str, env: dict[str, str] | None = None, cwd: str | os.PathLike | None = None
    ) -> None:
        self._log = tempfile.TemporaryFile("w+")  # noqa: SIM115 (lives as long as the server)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "scoresvc", *args],
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
            env={**os.environ, **(env or {})},
            cwd=cwd,
        )
        self.pid = self.proc.pid
        self.line = self._first_line()
        if "listening on" not in self.line:
            self.kill()
            raise AssertionError(f"the server did not start: {self.line}{self.log()}")
        # The line is JSON under --log-format json.
        if self.line.startswith("{"):
            self.address = json.loads(self.line)["address"]
        else:
            self.address = self.line.split()[-1]

    def _first_line(self) -> str:
        """The first line of stdout, or "" if none comes within START_SECONDS (the
        process is hung or dead)."""
        lines: queue.Queue[str] = queue.Queue()
        stdout = self.proc.stdout
        assert stdout is not None
        threading.Thread(target=lambda: lines.put(stdout.readline()), daemon=True).start()
        try:
            return lines.get(timeout=self.START_SECONDS)
        except queue.Empty:
            return ""

    def __enter__(self) -> CliServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.kill()

    def log(self) -> str:
        self._log.seek(0)
        return self._log.read()

    def wait_serving(self, timeout: float = START_SECONDS) -> None:
        """Until health says SERVING (a check that fails or times out is asked again)."""
        deadline = time.monotonic() + timeout
        with grpc.insecure_channel(self.address) as channel:
            health = health_pb2_grpc.HealthStub(channel)
            while time.monotonic() < deadline and self.proc.poll() is None:
                try:
                    status = health.Check(health_pb2.HealthCheckRequest(), timeout=10).status
                    if status == health_pb2.HealthCheckResponse.SERVING:
                        return
                except grpc.RpcError:
                    pass  # not answering yet
                time.sleep(0.05)  # polling a condition, not waiting for it to happen
        raise AssertionError(f"not serving after {timeout} s: {self.log()}")

    def stop(self, timeout: float = 60) -> int:
        """SIGTERM, then the exit code; killed if it does not exit within ``timeout``."""
        if self.proc.poll() is None:
            self.proc.terminate()
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()


def run_cli(
    *args: str, cwd: str | os.PathLike | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``python -m scoresvc <args>`` run to its end, as an operator types it."""
    return subprocess.run(
        [sys.executable, "-m", "scoresvc", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**os.environ, **(env or {})},
        timeout=120,  # a command that serves instead of failing is killed, and fails
    )
