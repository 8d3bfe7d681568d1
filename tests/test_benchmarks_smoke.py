"""Tiny runs of every benchmark, so they never rot (figures are not checked here)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture(scope="module")
def bench_engine():
    sys.path.insert(0, str(BENCH))
    try:
        import bench_engine

        yield bench_engine
    finally:
        sys.path.remove(str(BENCH))


def test_engine_benchmark_runs_and_every_peer_agrees(bench_engine, capsys):
    pytest.importorskip("duckdb")
    result = bench_engine.main(["--events", "4000", "--users", "300", "--new-events", "50"])
    assert set(result["peers"]) == {"duckdb", "numpy"}
    for peer in result["peers"].values():
        assert peer["worst_relative_difference"] < 1e-5
    assert result["bytes_per_pair"] > 0
    assert "(a) full build" in capsys.readouterr().out


def test_kernel_benchmarks_run(tmp_path):
    env = dict(os.environ, SCORESVC_BENCH_EVENTS="3000", SCORESVC_BENCH_USERS="200")
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            str(BENCH / "test_kernels.py"),
            "-q",
            "--benchmark-disable",
            "-p",
            "no:cacheprovider",
            f"--rootdir={tmp_path}",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_service_benchmark_runs_against_both_servers():
    sys.path.insert(0, str(BENCH))
    try:
        import bench_service

        result = bench_service.main(
            [
                "--users",
                "300",
                "--events",
                "3000",
                "--seconds",
                "0.3",
                "--rounds",
                "1",
                "--concurrency",
                "4",
            ]
        )
    finally:
        sys.path.remove(str(BENCH))
    for kind in ("scoresvc", "trivial"):
        assert result[kind]["score_qps"] > 0
        assert result[kind]["row_ingest_per_second"] > 0
        assert result[kind]["column_ingest_per_second"] > 0
    assert set(result["ratios"]) == {"score_qps", "score_p99", "batch", "rows", "columns"}


def test_store_benchmark_runs_every_mode():
    sys.path.insert(0, str(BENCH))
    try:
        import bench_store

        result = bench_store.main(
            [
                "--users",
                "200",
                "--events",
                "3000",
                "--batch",
                "500",
                "--batches",
                "4",
                "--rounds",
                "1",
                "--tail-events",
                "1000",
            ]
        )
    finally:
        sys.path.remove(str(BENCH))
    assert set(result["ingest_rows_per_second"]) == {"memory", "normal", "full"}
    assert all(rate > 0 for rate in result["ingest_rows_per_second"].values())
    assert result["checkpoint"]["bytes_per_pair"] > 0
    assert result["restart"]["tail_events"] == 1000
    assert result["restart"]["seconds"] > 0


def test_batch_benchmark_runs_on_a_local_cluster():
    pytest.importorskip("distributed")
    sys.path.insert(0, str(BENCH))
    try:
        import bench_batch

        result = bench_batch.main(["--users", "200", "--events", "3000", "--workers", "2"])
    finally:
        sys.path.remove(str(BENCH))
    assert result["batch_seconds"] > 0 and result["in_process_seconds"] > 0
    assert result["worst_relative_difference"] < 1e-5
