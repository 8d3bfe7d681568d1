"""pytest-benchmark of the engine's phases on a synthetic community.

    pytest benchmarks/test_kernels.py                    # 1M events, 100k users
    SCORESVC_BENCH_EVENTS=10000000 SCORESVC_BENCH_USERS=1000000 pytest benchmarks/

Each benchmark sits beside a baseline measured in the same run (the numpy reference
on the same input), so compare the ratio, not the seconds: these machines are shared.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

from scoresvc import reference
from scoresvc.core.engine import Engine
from scoresvc.synthetic import community

EVENTS = int(float(os.environ.get("SCORESVC_BENCH_EVENTS", 1_000_000)))
USERS = int(float(os.environ.get("SCORESVC_BENCH_USERS", 100_000)))


@pytest.fixture(scope="module")
def log():
    return community(EVENTS, USERS, seed=1)


@pytest.fixture(scope="module")
def now(log):
    return float(log.ts.max()) + 1.0


@pytest.fixture(scope="module")
def built(log, now):
    engine = Engine()
    engine.load_events(log)
    engine.refresh(now)
    return engine


def test_full_build(benchmark, log, now):
    def build():
        engine = Engine()
        engine.load_events(log)
        return engine.refresh(now)

    snap = benchmark.pedantic(build, rounds=3, iterations=1)
    assert snap.n_users == USERS


def test_full_build_numpy_reference_baseline(benchmark, log, now):
    ref = benchmark.pedantic(reference.compute, args=(log, now), rounds=1, iterations=1)
    assert ref.n_users == USERS


def test_refresh_after_time_moves(benchmark, built, now):
    later = iter(now + 60.0 * np.arange(1, 1000))
    snap = benchmark.pedantic(lambda: built.refresh(next(later)), rounds=3, iterations=1)
    assert snap.stats["full"]


def test_refresh_after_a_burst_of_events(benchmark, built, now):
    bursts = iter(
        [
            community(max(EVENTS // 1000, 10), USERS, seed=s, end=now, days=1.0)
            for s in range(100, 110)
        ]
    )

    def refresh():
        built.load_events(next(bursts))
        return built.refresh(now)

    built.refresh(now)
    snap = benchmark.pedantic(refresh, rounds=5, iterations=1)
    assert not snap.stats["full"]


def test_score_lookup(benchmark, built):
    snap = built.snapshot
    users = [snap.user_ids[i] for i in range(0, snap.n_users, max(snap.n_users // 1000, 1))]
    it = iter(users * 1000)
    got = benchmark(lambda: snap.score(next(it)))
    assert 1.0 <= got.score <= 100.0
