"""The embedded store: writes survive restarts and SIGKILL, nothing half-applied."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time

import grpc
import numpy as np
import pytest

from scoresvc.client import ScoreClient
from scoresvc.engine import Engine
from scoresvc.errors import StorageError
from scoresvc.model import AccountStatus, InteractionKind
from scoresvc.store import Store, decode, encode
from scoresvc.synthetic import community

LIKE = InteractionKind.LIKE
NOW = 1_767_225_600.0


def _write_everything(engine: Engine) -> None:
    engine.load_events(community(2000, 100, seed=1, end=NOW))
    engine.record_interactions(
        [("ana", "bo", LIKE, NOW - 60), ("cy", "bo", InteractionKind.REPLY, None)],
        request_id="rows-1",
        now=NOW,
    )
    engine.record_interaction_columns(
        ["ana", "bo", "cy"], [0, 1], [2, 0], [2, 4], None, request_id="cols-1", now=NOW
    )
    engine.endorse("ana", "bo", "python", NOW - 100, request_id="e-1", now=NOW)
    engine.endorse("cy", "bo", "", None, now=NOW)
    engine.retract("cy", "bo", "", NOW, now=NOW)
    engine.set_status("user0000003", AccountStatus.SEED, request_id="s-1")


def test_every_kind_of_write_round_trips_through_the_encoding(tmp_path):
    store = Store(tmp_path)
    engine = Engine()
    engine.attach_journal(store.append)
    _write_everything(engine)
    records = list(store.records())
    assert [r.sequence for r in records] == list(range(1, engine.sequence + 1))
    for record in records:
        again = decode(record.sequence, record.kind, encode(record))
        assert again.fields == record.fields and again.users.decoded() == record.users.decoded()
        assert again.fingerprint == record.fingerprint
        for name, values in record.arrays.items():
            np.testing.assert_array_equal(again.arrays[name], values)


def test_a_restart_gives_the_same_scores_and_remembers_request_ids(tmp_path):
    first = Engine()
    Store(tmp_path).replay_into(first)
    _write_everything(first)
    before = first.refresh(NOW)

    second = Engine()
    assert Store(tmp_path).replay_into(second) == first.sequence
    after = second.refresh(NOW)
    assert after.sequence == before.sequence
    np.testing.assert_array_equal(after.influence, before.influence)
    np.testing.assert_array_equal(after.received, before.received)
    assert after.score("bo", "python").influence == before.score("bo", "python").influence
    # The same request ids answer the same, applying nothing.
    again = second.record_interactions(
        [("ana", "bo", LIKE, NOW - 60), ("cy", "bo", InteractionKind.REPLY, None)],
        request_id="rows-1",
        now=NOW + 5,
    )
    assert again.sequence == 2 and second.sequence == first.sequence
    assert second.endorse("ana", "bo", "python", NOW - 100, request_id="e-1").sequence == 4
    trail, _ = second.list_endorsements("bo", False, 0, 10)
    assert [e["retracted"] for e in trail][:2] == [True, False]


def test_a_write_that_cannot_be_stored_is_not_applied(tmp_path):
    store = Store(tmp_path)
    engine = Engine()
    store.replay_into(engine)
    engine.record_interactions([("a", "b", LIKE, None)])
    sequence, pairs = engine.sequence, engine.n_pairs
    store.close()  # the disk is gone
    with pytest.raises(StorageError):
        engine.record_interactions([("c", "d", LIKE, None)])
    with pytest.raises(StorageError):
        engine.endorse("a", "b")
    assert (engine.sequence, engine.n_pairs) == (sequence, pairs)
    assert not engine.has_user("c")


def test_an_unusable_data_directory_is_a_clear_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(StorageError, match="cannot open the data directory"):
        Store(blocker / "data")


def _start(data_dir) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "scoresvc",
            "serve",
            "--port",
            "0",
            "--data-dir",
            str(data_dir),
            "--refresh-gap",
            "0.01",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    line = proc.stdout.readline() if proc.stdout else ""
    assert "listening on" in line
    return proc, line.split()[-1]


def test_acknowledged_writes_survive_sigkill_and_no_batch_is_half_applied(tmp_path):
    """A writer streams 3-row batches while the server is SIGKILLed at random moments
    three times; after each restart every acknowledged batch is there, whole."""
    rng = random.Random(7)
    acknowledged: list[int] = []
    batch = 3
    next_batch = 0
    for _round in range(3):
        proc, address = _start(tmp_path)
        stop = threading.Event()

        def write(address: str = address, stop: threading.Event = stop) -> None:
            nonlocal next_batch
            with ScoreClient(address, timeout=5) as c:
                while not stop.is_set():
                    i = next_batch
                    rows = [(f"w{i}-{k}", "hub", LIKE, None) for k in range(batch)]
                    try:
                        c.record_interactions(rows, request_id=f"batch-{i}")
                    except grpc.RpcError as exc:
                        if exc.code() == grpc.StatusCode.UNAVAILABLE and (
                            "starting" in (exc.details() or "")
                        ):
                            time.sleep(0.02)  # still replaying: the same batch again
                            continue
                        return  # the server died under us: this batch is not acknowledged
                    acknowledged.append(i)
                    next_batch += 1

        writer = threading.Thread(target=write)
        time.sleep(0.5)  # replay and become ready
        writer.start()
        time.sleep(rng.uniform(0.3, 1.0))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        stop.set()
        writer.join()
        next_batch += 1  # the batch in flight may or may not have landed: skip its id
    proc, address = _start(tmp_path)
    try:
        time.sleep(0.5)
        with ScoreClient(address, timeout=10) as c:
            seq = c.record_interactions([("final", "hub", LIKE, None)]).sequence
            got = c.score("hub", min_sequence=seq).explanation.engagement_received
            present = {
                e.user_id
                for e in c.batch_score(
                    [f"w{i}-{k}" for i in range(next_batch) for k in range(batch)]
                ).entries
                if e.found
            }
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    assert len(acknowledged) > 10
    for i in acknowledged:
        assert {f"w{i}-{k}" for k in range(batch)} <= present
    # Whole batches only: every batch's rows are all present or all absent.
    for i in range(next_batch):
        rows = {f"w{i}-{k}" for k in range(batch)}
        assert rows <= present or not rows & present
    assert round(got) == len(present) + 1
    assert Store(tmp_path).integrity_check() == "ok"
    assert os.path.exists(tmp_path / "scoresvc.db")
