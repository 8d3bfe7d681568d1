"""Tiny runs of every benchmark, so they never rot (figures are not checked here)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture(scope="module")
def benchmarks_importable():
    sys.path.insert(0, str(BENCH))
    try:
        yield
    finally:
        sys.path.remove(str(BENCH))


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
    argv = ["--events", "4000", "--users", "300", "--new-events", "50", "--rounds", "2"]
    result = bench_engine.main(argv)
    assert set(result["peers"]) == {"polars", "duckdb", "numpy"}
    for peer in result["peers"].values():
        assert peer["worst_relative_difference"] < 1e-5
    polars = result["peers"]["polars"]
    assert polars["rounds"] == 2 and len(polars["engine_over_peer"]) == 2
    assert result["peers"]["duckdb"]["rounds"] == 1
    assert result["build"]["rounds"] == 2
    if sys.platform == "linux":
        assert result["build"]["extra_bytes"] is not None and polars["extra_bytes"] is not None
    assert result["bytes_per_pair"] > 0
    out = capsys.readouterr().out
    assert "(a) full build" in out and "peer: polars" in out


def _with_statuses(log, seeds: int, suspended: int):
    """``log`` with its first ``seeds`` users made seeds and the next ``suspended``
    suspended."""
    from scoresvc.core.model import AccountStatus

    status = np.array(log.status, copy=True)
    status[:seeds] = AccountStatus.SEED
    status[seeds : seeds + suspended] = AccountStatus.SUSPENDED
    log.status = status
    return log


@pytest.mark.parametrize("case", ["plain", "seeds and suspensions", "compacted log"])
def test_polars_peer_agrees_with_the_engine_within_the_model_tolerance(benchmarks_importable, case):
    from polars_peer import polars_scipy

    from scoresvc.core.engine import Engine
    from scoresvc.synthetic import community

    log = community(20_000, 2_000, seed=7)
    now = float(log.ts.max()) + 1.0
    if case == "seeds and suspensions":
        log = _with_statuses(log, seeds=20, suspended=50)
    if case == "compacted log":  # weighted interactions and explicit first-seen times
        source = Engine()
        source.load_events(_with_statuses(log, seeds=5, suspended=5))
        log, now = source.compacted_log(now)
        assert log.weight is not None and log.first_seen is not None
    engine = Engine()
    engine.load_events(log)
    snapshot = engine.refresh(now)
    dense = np.array([snapshot.user_index[u] for u in log.user_ids])
    want = snapshot.influence[dense]

    got = polars_scipy(log, now, engine.params)

    assert got.steps > 1
    assert np.all((np.abs(got.influence - want) <= 1e-5 * np.abs(want)) | (np.abs(want) < 1e-15))
    np.testing.assert_allclose(got.received, snapshot.received[dense], rtol=1e-9, atol=1e-12)


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
    assert result["peer_seconds"] > 0 and result["peer_worst_relative_difference"] < 1e-5
    assert set(result["batch_phases"]) == {
        "dictionaries",
        "pair sums to pull graph",
        "PageRank iterations",
        "scores and explanation",
    }
    assert result["batch_worker_seconds"]["flow"]["compute"] > 0


# ---------------------------------------------------------------------- gaming and real data


def test_rank_statistics_count_ties_half_and_order_users_alike(benchmarks_importable):
    import ranking

    assert ranking.roc_auc(np.array([3.0, 4.0]), np.array([1.0, 2.0])) == 1.0
    assert ranking.roc_auc(np.array([1.0, 2.0]), np.array([3.0, 4.0])) == 0.0
    assert ranking.roc_auc(np.array([1.0, 1.0]), np.array([1.0])) == 0.5
    assert ranking.spearman(np.array([1.0, 2.0, 3.0]), np.array([10.0, 20.0, 90.0])) == 1.0
    assert ranking.spearman(np.array([1.0, 2.0, 3.0]), np.array([3.0, 2.0, 1.0])) == -1.0
    assert list(ranking.average_ranks(np.array([5.0, 1.0, 5.0]))) == [2.5, 1.0, 2.5]
    assert list(ranking.share_strictly_below(np.array([1.0, 2.0, 2.0, 3.0]), np.array([2.0]))) == [
        25.0
    ]


@pytest.fixture(scope="module")
def gaming_run(benchmarks_importable):
    import bench_gaming

    rows = "sybil-10,sybil-1,pair-reply,ring-20,trade-2,bought-seed-1,squat-new,smear,fans-50"
    argv = ["--users", "600", "--events", "6000", "--targets", "3", "--seeds", "8"]
    return bench_gaming.main([*argv, "--only", rows, "--compare-params", "{}"])


def test_gaming_benchmark_reports_every_row_in_both_configurations(gaming_run):
    import bench_gaming

    rows = gaming_run["attacks"]
    assert {"sybil-10", "sybil-1-1970", "pair-reply", "ring-20-inbound", "trade-2-cross"} <= set(
        rows
    )
    assert {"smear-20", "smear-ring-20", "smear-median-1"} <= set(rows)
    for name, row in rows.items():
        for config in ("default", "seeded"):
            r = row[config]
            assert 0.0 <= r["before"] <= 100.0 and 0.0 <= r["after"] <= 100.0, name
            assert r["verdict"] in ("", "ok", "MISS"), name
    assert len(gaming_run["targets"]) == 3
    assert gaming_run["spearman_vs_compare_params"] == pytest.approx({"default": 1, "seeded": 1})
    assert -1.0 <= gaming_run["spearman_seeded_vs_default"] <= 1.0
    printed = bench_gaming.table(gaming_run)
    assert "sybil-10" in printed and "Spearman" in printed


def test_gaming_benchmark_counts_what_each_attack_costs(gaming_run):
    rows = gaming_run["attacks"]
    assert (rows["sybil-10"]["default"]["accounts"], rows["sybil-10"]["default"]["actions"]) == (
        10,
        10,
    )
    assert rows["pair-reply"]["seeded"]["accounts"] == 2
    # 20 members, each endorsing and resharing three others, and 20 bought likes.
    assert rows["ring-20-inbound"]["default"]["actions"] == 20 * 6 + 20
    assert rows["trade-2-cross"]["default"]["accounts"] == 0


def test_gaming_benchmark_seeded_configuration_stops_fresh_sybils(gaming_run):
    rows = gaming_run["attacks"]
    for name in ("sybil-10", "sybil-1", "sybil-1-1970"):
        seeded = rows[name]["seeded"]
        assert seeded["gain"] <= 2.0 and seeded["fresh"] <= 2.0, name
    # A closed pair no seed reaches has no influence at all.
    assert rows["pair-reply"]["seeded"]["fresh"] == 0.0
    # Honest fans still lift a user in both configurations.
    assert rows["fans-50"]["default"]["gain"] > 0 and rows["fans-50"]["seeded"]["gain"] > 0


def _signed_network(folder: Path) -> None:
    """A small trust network in Bitcoin Alpha's CSV format: honest traders rate each
    other +1..+10 (mostly returned), fraudsters get a few positive ratings from each
    other and negative ones from honest traders, over two years."""
    rng = np.random.default_rng(3)
    honest, fraud, end = 150, 30, 1_450_000_000
    rows = []
    for a in range(honest):
        for b in rng.choice(honest, 6, replace=False):
            if a != b:
                t = end - int(rng.integers(0, 730 * 86_400))
                rows.append((a, int(b), int(rng.integers(1, 11)), t))
                if rng.random() < 0.8:
                    rows.append((int(b), a, int(rng.integers(1, 11)), t + 3600))
    for f in range(honest, honest + fraud):
        for other in rng.choice(np.arange(honest, honest + fraud), 3, replace=False):
            if other != f:
                rows.append((int(other), f, 10, end - int(rng.integers(0, 365 * 86_400))))
        for victim in rng.choice(honest, 3, replace=False):
            rows.append((f, int(victim), 5, end - int(rng.integers(0, 365 * 86_400))))
            rows.append((int(victim), f, -10, end - int(rng.integers(0, 365 * 86_400))))
    seen = set()
    lines = ["source,target,rating,time"]
    for s, t, r, ts in rows:
        if (s, t) not in seen:
            seen.add((s, t))
            lines.append(f"{s + 1},{t + 1},{r},{ts}")
    (folder / "network.csv").write_text("\n".join(lines) + "\n")
    labels = ["user,label"]
    labels += [f"{u + 1},1" for u in range(40)]
    labels += [f"{u + 1},-1" for u in range(honest, honest + 20)]
    (folder / "labels.csv").write_text("\n".join(labels) + "\n")


def test_realworld_benchmark_runs_on_a_small_signed_network(
    benchmarks_importable, tmp_path, capsys
):
    import bench_realworld

    _signed_network(tmp_path)
    result = bench_realworld.main([str(tmp_path), "--sybil-sample", "3", "--seeds", "5"])
    assert result["ratings"] == result["positive_ratings"] + result["negative_ratings"]
    assert result["negative_ratings"] > 0
    assert len(result["auc"]) == 6
    for name, halves in result["auc"].items():
        assert len(halves) == 2 and all(0.0 <= a <= 1.0 for a in halves), name
    # Fraudsters are distrusted and endorsed only by each other here: even counting
    # positive ratings ranks honest traders above them.
    assert min(result["auc"]["positive ratings counted"]) > 0.5
    assert sum(result["halves"]) == 60 - result["seeds_labelled"]
    for name, attack in result["sybil_attack"].items():
        assert attack["fraudsters"] >= 1 and attack["of"] == result["users"], name
        if "seeded" in name:
            # Fresh accounts have nothing to pass on when trust comes from seeds.
            assert attack["median_rank_after"] == attack["median_rank_before"], name
    out = capsys.readouterr().out
    assert "AUC half 1" in out and "PageRank" in out


def test_suspects_benchmark_finds_what_it_plants_on_a_small_community(
    benchmarks_importable, tmp_path, capsys
):
    import bench_suspects

    _signed_network(tmp_path)
    result = bench_suspects.main(
        [
            "--users",
            "3000",
            "--events",
            "30000",
            "--instances",
            "1",
            "--bitcoin-alpha",
            str(tmp_path),
        ]
    )
    synthetic = result["synthetic"]
    assert synthetic["planted"] == len(bench_suspects.PLANTED)
    assert 0.0 <= synthetic["recall"] <= 1.0
    assert 0.0 <= synthetic["honest_flagged_share"] <= 1.0
    assert 0.0 < result["bitcoin_alpha"]["base_rate"] < 1.0
    assert "recall" in capsys.readouterr().out


def test_suspects_benchmark_invalidates_each_cluster_and_reads_the_beneficiaries(
    benchmarks_importable, capsys
):
    import bench_suspects

    argv = ["--users", "3000", "--events", "30000", "--instances", "1", "--moderation"]
    moderation = bench_suspects.main(argv)["synthetic"]["moderation"]
    rows = moderation["attacks"]
    assert set(rows) == {name for name, _, _ in bench_suspects.PLANTED}
    assert moderation["clusters_invalidated"] >= len(rows)
    for name, row in rows.items():
        assert all(0.0 <= row[side] <= 100.0 for side in ("before", "attacked", "after")), name
        assert row["instances"] == 1
    # The aged farm lifts its target, and invalidating its cluster takes the lift away.
    aged = rows["aged-farm-10"]
    assert aged["attacked"] > aged["before"] + 10
    assert abs(aged["after"] - aged["before"]) < 1
    assert "never attacked / attacked / after" in capsys.readouterr().out
