"""The batch engine on a LocalCluster with 2 workers gives the in-process engine's
scores on the same events, and the service serves its snapshot and builds on it."""

from __future__ import annotations

import time

import numpy as np
import pytest

from scoresvc import archive, batch, cli
from scoresvc.client import ScoreClient
from scoresvc.engine import Engine, SolverSettings
from scoresvc.model import AccountStatus, InteractionKind
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
    engine.retract(log.user_ids[9], log.user_ids[8], "", T0 - 60, now=T0)
    return engine


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
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-300)
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
        np.testing.assert_allclose(result.columns[name][order], snap.received[:, j], rtol=1e-9)
    percentile = [snap.score(u).percentile for u in snap.user_ids]
    np.testing.assert_allclose(result.columns["percentile"][order], percentile, atol=1e-9)
    # Topic scores: every (user, topic) the engine scores, alike.
    topics = result.topics
    assert topics is not None and len(topics["user"])
    for user, topic, score in zip(topics["user"], topics["topic"], topics["score"]):
        assert snap.score(str(result.user_ids[user]), str(topic)).score == pytest.approx(
            score, rel=1e-9
        )


def test_events_after_as_of_are_left_out(tmp_path, client):
    engine = Engine(solver=TIGHT)
    engine.record_interactions(
        [
            ("ana", "bo", InteractionKind.LIKE, T0 - 100),
            ("bo", "cy", InteractionKind.LIKE, T0 - 100),
        ],
        now=T0,
    )
    archive.export(engine, tmp_path / "before")
    later = Engine(solver=TIGHT)
    later.restore(engine.state())
    later.record_interactions([("cy", "ana", InteractionKind.REPLY, T0 + 50)], now=T0 + 60)
    manifest = archive.export(later, tmp_path / "after")
    # The compacted interactions sit at the export time: evaluate after it.
    at = manifest["compacted_at"]
    with_all = batch.run(client, tmp_path / "after", at)
    without = batch.run(client, tmp_path / "after", at - 1e6)
    assert with_all.columns["engagement_received"].sum() > 0
    assert without.columns["engagement_received"].sum() == 0


def test_cli_batch_then_serve_its_snapshot_and_build_on_it(tmp_path, capsys):
    now = time.time()
    engine = Engine()
    engine.load_events(community(5000, 200, seed=4, end=now))
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
    engine = cli._engine(args)
    server = cli._server(args, engine)
    store = cli._open_store(args, engine, cli._batch_snapshot(args))
    server.start()
    try:
        with ScoreClient(server.address) as c:
            served = c.score(top)
            assert served.influence == pytest.approx(max(scores["influence"]), rel=1e-3)
            before = served.explanation.engagement_received
            seq = c.record_interactions([("newcomer", top, InteractionKind.RESHARE, None)]).sequence
            after = c.score(top, min_sequence=seq).explanation.engagement_received
            assert after > before
    finally:
        server.stop(0)
        assert store is not None
        store.close()
    # The data directory holds the snapshot and the write: a second --snapshot is refused.
    assert cli.main(server_args) == 1
    assert "needs an empty data directory" in capsys.readouterr().err
