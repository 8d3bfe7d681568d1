"""The batch engine on a LocalCluster with 2 workers gives the in-process engine's
scores on the same events, and the service serves its snapshot and builds on it."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from scoresvc import cli
from scoresvc.batch import recompute as batch
from scoresvc.cli import flags, serving
from scoresvc.client import ScoreClient
from scoresvc.core.engine import Engine, SolverSettings
from scoresvc.core.events import CompactionError, format_time
from scoresvc.core.model import AccountStatus, InteractionKind, ModelParams
from scoresvc.storage import archive
from scoresvc.synthetic import community

distributed = pytest.importorskip("distributed")  # the `distributed` extra; in [test]

T0 = 1_767_225_600.0
TIGHT = SolverSettings(relative=1e-13, absolute=1e-22)


@pytest.fixture(scope="module")
def client():
    cluster = distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, dashboard_address=":0", processes=True
    )
    with distributed.Client(cluster) as c:
        yield c
    cluster.close()


def _engine(seeds: bool) -> Engine:
    log = community(30_000, 600, seed=11, end=T0)
    engine = Engine(solver=TIGHT)
    engine.load_events(log)
    assert log.user_ids is not None
    if seeds:
        for uid in log.user_ids[:3]:
            engine.set_status(uid, AccountStatus.SEED)
    engine.set_status(log.user_ids[5], AccountStatus.SUSPENDED)
    engine.endorse(log.user_ids[7], log.user_ids[8], "rust", T0 - 3600, now=T0)
    engine.endorse(log.user_ids[8], log.user_ids[7], "rust", T0 - 1800, now=T0)
    engine.endorse(log.user_ids[9], log.user_ids[8], "", T0 - 120, now=T0)
    engine.endorse(log.user_ids[9], log.user_ids[5], "rust", T0 - 90, now=T0)  # suspended
    # Two endorsers rank user 8 in rust; user 7's one does not (docs/model.md, step 9).
    engine.endorse(log.user_ids[10], log.user_ids[8], "rust", T0 - 80, now=T0)
    engine.retract(log.user_ids[9], log.user_ids[8], "", T0 - 60, now=T0)
    # Created now with events back-dated to 1970: young, whatever its events claim.
    engine.record_interactions([("newcomer", log.user_ids[8], InteractionKind.LIKE, 1.0)], now=T0)
    engine.endorse("newcomer", log.user_ids[10], "", 2.0, now=T0)
    # Distrust (step 8): user 8 is distrusted twice (once for a topic), user 12's is
    # retracted, user 5 is suspended and distrusted, the newcomer's counts for nothing.
    engine.distrust(log.user_ids[1], log.user_ids[8], "", T0 - 500, now=T0)
    engine.distrust(log.user_ids[2], log.user_ids[8], "rust", T0 - 400, now=T0)
    engine.distrust(log.user_ids[3], log.user_ids[12], "", T0 - 300, now=T0)
    engine.retract_distrust(log.user_ids[3], log.user_ids[12], "", T0 - 200, now=T0)
    engine.distrust(log.user_ids[4], log.user_ids[5], "", T0 - 100, now=T0)
    engine.distrust("newcomer", log.user_ids[9], "", T0 - 50, now=T0)
    return engine


def _check_distrust(result: batch.BatchResult, order: np.ndarray, snap, rtol: float) -> None:
    """The batch's distrust columns are the snapshot's explanation; user 8 is discounted."""
    kept = [snap.score(u).explanation.trust_kept for u in snap.user_ids]
    received = [snap.score(u).explanation.distrust_received for u in snap.user_ids]
    np.testing.assert_allclose(result.columns["trust_kept"][order], kept, rtol=rtol)
    np.testing.assert_allclose(result.columns["distrust_received"][order], received, rtol=rtol)
    assert 0 < kept[8] < 1 and received[8] > 0 and kept[12] == 1 and received[12] == 0


@pytest.mark.parametrize("seeds", [False, True])
def test_batch_scores_are_the_engines_to_a_billionth(tmp_path, client, seeds):
    engine = _engine(seeds)
    manifest = archive.export(engine, tmp_path / "archive")
    as_of = manifest["compacted_at"] + 86_400.0  # a day after: decay is applied too
    result = batch.run(client, tmp_path / "archive", as_of, topics=True)
    snap = engine.refresh(as_of)
    order = np.searchsorted(result.user_ids, np.asarray(snap.user_ids))
    assert (result.user_ids[order] == np.asarray(snap.user_ids)).all()
    got, want = result.columns["influence"][order], snap.influence
    # A fully matched pair keeps a difference of nearly equal sums, rounded differently
    # from sums decayed per event (batch) and forward-decayed ones (engine): what the
    # nearly cancelled edges carry agrees to the scale of the largest influence.
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-13 * want.max())
    np.testing.assert_allclose(
        result.columns["score"][order], [snap.score(u).score for u in snap.user_ids], rtol=1e-9
    )
    for j, name in enumerate(
        (
            "engagement_received",
            "engagement_saturated",
            "endorsements_received",
            "endorsements_effective",
            "reciprocity_removed",
        )
    ):
        column = snap.received[:, j]
        np.testing.assert_allclose(
            result.columns[name][order], column, rtol=1e-9, atol=1e-13 * column.max()
        )
    percentile = [snap.score(u).percentile for u in snap.user_ids]
    np.testing.assert_allclose(result.columns["percentile"][order], percentile, atol=1e-9)
    _check_distrust(result, order, snap, rtol=1e-9)
    # Topic scores: every (user, topic) the engine scores, alike.
    topics = result.topics
    assert topics is not None and len(topics["user"])
    for user, topic, score in zip(topics["user"], topics["topic"], topics["score"]):
        assert snap.score(str(result.user_ids[user]), str(topic)).score == pytest.approx(
            score, rel=1e-9
        )
    ranked = {u for u, _, _ in snap.top(snap.n_users, "rust")}
    assert {str(result.user_ids[u]) for u in topics["user"][topics["topic"] == "rust"]} == ranked
    assert snap.user_ids[8] in ranked and snap.user_ids[7] not in ranked


#: Rankings of one endorser each: the rounding case below needs many distinct tops.
ONE_ENDORSER = ModelParams(topic_min_endorsers=1)


def _many_topics_engine() -> Engine:
    """Forty topics, each topped by a different value: at the top of a ranking the
    score ``1 + 99 ln(1 + v) / ln(1 + v_max)`` rounds a hair past 100 for some ``v``."""
    engine = Engine(ONE_ENDORSER, solver=TIGHT)
    kinds = list(InteractionKind)
    engine.record_interactions(
        [(f"u{i}", f"u{(7 * i + 3) % 50}", kinds[i % 4], T0 - 600.0 * i) for i in range(200)],
        now=T0,
    )
    for t in range(40):
        engine.endorse(f"u{t}", f"u{t + 1}", f"topic{t}", T0 - 60.0 * t, now=T0)
        engine.endorse(f"u{t + 2}", f"u{t + 3}", f"topic{t}", T0 - 90.0 * t, now=T0)
    return engine


def test_batch_and_live_agree_at_the_top_of_every_ranking(tmp_path, client):
    engine = _many_topics_engine()
    archive.export(engine, tmp_path / "archive")
    result = batch.run(client, tmp_path / "archive", T0, ONE_ENDORSER, topics=True)
    snap = engine.refresh(T0)
    topics = result.topics
    assert topics is not None
    # The case this pins: unclipped, some topic's top scores past 100.
    names, at = np.unique(topics["topic"], return_inverse=True)
    top = np.zeros(len(names))
    np.maximum.at(top, at, topics["value"])
    assert (1.0 + 99.0 * np.log1p(topics["value"]) / np.log1p(top[at]) > 100.0).any()
    # Batch clips as the service does: no score past 100, the same top users alike.
    assert topics["score"].max() <= 100.0 and result.columns["score"].max() <= 100.0
    for i, name in enumerate(names):
        mine = np.flatnonzero(at == i)
        best = mine[np.lexsort((topics["user"][mine], -topics["value"][mine]))[0]]
        (live,) = snap.top(1, str(name))
        assert live.user_id == result.user_ids[topics["user"][best]]
        assert live.score == pytest.approx(topics["score"][best], rel=1e-12)
    (live,) = snap.top(1)
    best = int(np.argmax(result.columns["influence"]))
    assert live.user_id == result.user_ids[best]
    assert live.score == pytest.approx(result.columns["score"][best], rel=1e-12)


def test_events_after_as_of_are_left_out(tmp_path, client):
    # A raw archive (no manifest, nothing compacted): each event at its own time.
    (tmp_path / "interactions.csv").write_text(
        "actor_id,target_id,kind,event_time_seconds\n"
        f"ana,bo,LIKE,{T0 - 100}\nbo,cy,LIKE,{T0 - 100}\ncy,ana,REPLY,{T0 + 50}\n"
    )
    before = batch.run(client, tmp_path, T0)
    after = batch.run(client, tmp_path, T0 + 60)
    ana = int(np.searchsorted(before.user_ids, "ana"))
    assert before.columns["engagement_received"][ana] == 0
    assert after.columns["engagement_received"][ana] > 0


def _ordered(result: batch.BatchResult, user_ids: list[str]) -> np.ndarray:
    order = np.searchsorted(result.user_ids, np.asarray(user_ids))
    assert (result.user_ids[order] == np.asarray(user_ids)).all()
    return order


def test_batch_at_the_services_compute_time_is_the_services(tmp_path, client):
    engine = _engine(seeds=True)
    snap = engine.refresh(T0)  # the service computes at T0; its events are up to T0
    manifest = archive.export(engine, tmp_path / "archive")  # compacted later, at now
    assert manifest["compacted_at"] > T0 >= manifest["latest_compacted_event"]
    result = batch.run(client, tmp_path / "archive", T0, topics=True)
    order = _ordered(result, snap.user_ids)
    assert snap.received[:, 0].sum() > 0
    np.testing.assert_allclose(result.columns["influence"][order], snap.influence, rtol=1e-6)
    np.testing.assert_allclose(
        result.columns["engagement_received"][order], snap.received[:, 0], rtol=1e-6
    )
    np.testing.assert_allclose(
        result.columns["teleport_share"][order], snap.teleport_share, rtol=1e-6, atol=1e-12
    )
    _check_distrust(result, order, snap, rtol=1e-6)
    topics = result.topics
    assert topics is not None
    for user, topic, value in zip(topics["user"], topics["topic"], topics["value"]):
        got = snap.score(str(result.user_ids[user]), str(topic)).influence
        assert got == pytest.approx(value, rel=1e-6)


def _late_engine() -> Engine:
    """Interactions up to T0 + 50, compacted when exported (now)."""
    engine = Engine(solver=TIGHT)
    engine.record_interactions(
        [
            ("ana", "bo", InteractionKind.LIKE, T0 - 100),
            ("bo", "cy", InteractionKind.LIKE, T0 - 100),
            ("cy", "ana", InteractionKind.REPLY, T0 + 50),
        ],
        now=T0 + 60,
    )
    return engine


def test_as_of_before_the_latest_compacted_event_is_refused_naming_both_times(tmp_path, client):
    engine = _late_engine()
    manifest = archive.export(engine, tmp_path / "archive")
    assert manifest["latest_compacted_event"] == T0 + 50
    with pytest.raises(CompactionError) as refused:
        batch.run(client, tmp_path / "archive", T0)
    assert format_time(T0) in str(refused.value)
    assert format_time(T0 + 50) in str(refused.value)
    # From the latest event on, before the compaction time, the sums are exact.
    result = batch.run(client, tmp_path / "archive", T0 + 50)
    snap = engine.refresh(T0 + 50)
    np.testing.assert_allclose(
        result.columns["engagement_received"][_ordered(result, snap.user_ids)],
        snap.received[:, 0],
        rtol=1e-9,
    )


def test_an_archive_without_its_latest_event_time_is_read_from_its_compaction_on(tmp_path, client):
    manifest = archive.export(_late_engine(), tmp_path / "archive")
    del manifest["latest_compacted_event"]  # as archives written before it was recorded
    (tmp_path / "archive" / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(CompactionError, match="does not record its latest event"):
        batch.run(client, tmp_path / "archive", T0 + 50)
    at = manifest["compacted_at"]
    assert batch.run(client, tmp_path / "archive", at).columns["engagement_received"].sum() > 0


def test_cli_batch_refuses_an_as_of_before_the_latest_compacted_event(tmp_path, capsys):
    archive.export(_late_engine(), tmp_path / "archive")
    argv = ["batch", "--input", str(tmp_path / "archive"), "--as-of", str(T0)]
    assert cli.main([*argv, "--out", str(tmp_path / "s.parquet"), "--local-workers", "1"]) == 2
    err = capsys.readouterr().err
    assert format_time(T0) in err and format_time(T0 + 50) in err
    assert not (tmp_path / "s.parquet").exists()


def test_cli_batch_then_serve_its_snapshot_and_build_on_it(tmp_path, capsys):
    now = time.time()
    engine = Engine()
    engine.load_events(community(5000, 200, seed=4, end=now))
    engine.distrust("user0000001", "user0000002", "", now - 60, now=now)
    archive.export(engine, tmp_path / "archive")
    out = tmp_path / "scores.parquet"
    code = cli.main(
        [
            "batch",
            "--input",
            str(tmp_path / "archive"),
            "--out",
            str(out),
            "--local-workers",
            "2",
            "--topics",
        ]
    )
    assert code == 0
    _, pq = archive.pyarrow_modules()
    scores = pq.read_table(out).to_pydict()
    assert set(batch.SCORE_COLUMNS) <= set(scores) and len(scores["user_id"]) == 200
    assert (tmp_path / "scores.topics.parquet").exists()
    top = scores["user_id"][int(np.argmax(scores["influence"]))]

    data = tmp_path / "data"
    server_args = [
        "serve",
        "--port",
        "0",
        "--data-dir",
        str(data),
        "--snapshot",
        str(out),
        "--time-step",
        "1",
        "--refresh-gap",
        "0.01",
    ]
    args = cli._parser().parse_args(server_args)
    engine = flags.engine(args)
    history = serving._history(args)
    server = serving._server(args, engine, history)
    store = serving._open_store(args, engine, serving._batch_snapshot(args))
    server.start()
    try:
        with ScoreClient(server.address) as c:
            served = c.score(top)
            assert served.influence == pytest.approx(max(scores["influence"]), rel=1e-3)
            before = served.explanation.engagement_received
            seq = c.record_interactions([("newcomer", top, InteractionKind.RESHARE, None)]).sequence
            after = c.score(top, min_sequence=seq).explanation.engagement_received
            assert after > before
            # The serving state holds the distrust: its trail, and the batch's discount.
            trail = c.list_endorsements("user0000002", given=False)
            assert [e.endorser_id for e in trail if e.distrust] == ["user0000001"]
            kept = scores["trust_kept"][scores["user_id"].index("user0000002")]
            assert kept < 1
            got = c.score("user0000002", min_sequence=seq).explanation.trust_kept
            assert got == pytest.approx(kept, rel=1e-3)
    finally:
        server.stop(0)
        history.close()
        assert store is not None
        store.close()
    # The data directory holds the snapshot and the write: a second --snapshot is refused.
    assert cli.main(server_args) == 1
    assert "needs an empty data directory" in capsys.readouterr().err


# ---------------------------------------------------------------------- a real cluster


def _wait_for_file(path: Path, procs: list[subprocess.Popen], timeout: float = 120) -> dict:
    """The scheduler file's contents once written whole (or fail if a process died)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for proc in procs:
            assert proc.poll() is None, f"{proc.args} exited with {proc.returncode}"
        try:
            return json.loads(path.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            time.sleep(0.05)
    raise AssertionError(f"no scheduler file after {timeout} s")


@pytest.fixture
def separate_cluster(tmp_path):
    """A scheduler and two workers started as their own processes, each in a working
    directory of its own (as on machines of their own): the scheduler's address."""
    procs: list[subprocess.Popen] = []
    scheduler_file = tmp_path / "scheduler.json"

    def start(name: str, *args: str) -> None:
        cwd = tmp_path / name
        cwd.mkdir()
        with open(tmp_path / f"{name}.log", "w") as log_file:
            procs.append(
                subprocess.Popen(
                    [sys.executable, "-m", *args, "--scheduler-file", str(scheduler_file)],
                    cwd=cwd,
                    stdout=log_file,
                    stderr=subprocess.STDOUT,
                )
            )

    try:
        start(
            "scheduler",
            "distributed.cli.dask_scheduler",
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--no-dashboard",
        )
        address = _wait_for_file(scheduler_file, procs)["address"]
        for name in ("worker-a", "worker-b"):
            start(
                name,
                "distributed.cli.dask_worker",
                "--host",
                "127.0.0.1",
                "--nthreads",
                "1",
                "--no-nanny",
                "--no-dashboard",
            )
        with distributed.Client(address) as c:
            c.wait_for_workers(2, timeout=120)
        yield address
    finally:
        for proc in reversed(procs):
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _cli_batch(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "scoresvc", "batch", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_cli_batch_on_a_cluster_reads_relative_paths_and_urls(tmp_path, separate_cluster):
    engine = _engine(seeds=True)
    here = tmp_path / "client"
    here.mkdir()
    manifest = archive.export(engine, here / "archive")
    as_of = manifest["compacted_at"]
    want = engine.refresh(as_of)
    common = ["--scheduler", separate_cluster, "--as-of", str(as_of), "--topics"]
    # Relative to the client's working directory, wherever the workers run.
    done = _cli_batch(here, "--input", "archive", "--out", "out/scores.parquet", *common)
    assert done.returncode == 0, done.stderr
    # URLs of storage every worker reads (file:// here; s3://, gs://, hdfs:// alike).
    shared = (tmp_path / "shared").as_uri()
    done = _cli_batch(
        here, "--input", (here / "archive").as_uri(), "--out", f"{shared}/scores.parquet", *common
    )
    assert done.returncode == 0, done.stderr
    _, pq = archive.pyarrow_modules()
    for out in (here / "out", tmp_path / "shared"):
        scores = pq.read_table(out / "scores.parquet").to_pydict()
        order = [scores["user_id"].index(u) for u in want.user_ids]
        np.testing.assert_allclose(
            np.asarray(scores["influence"])[order],
            want.influence,
            rtol=1e-9,
            atol=1e-13 * want.influence.max(),  # see test_batch_scores_are_the_engines_...
        )
        assert (out / "scores.topics.parquet").exists()
        assert list((out / "scores.parquet.state").glob("checkpoint-*.svck"))
