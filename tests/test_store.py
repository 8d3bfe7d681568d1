"""The embedded store: writes survive restarts and SIGKILL, nothing half-applied."""

from __future__ import annotations

import gc
import json
import os
import random
import shutil
import sqlite3
import subprocess
import sys
import threading
import weakref
from pathlib import Path

import grpc
import numpy as np
import pytest
from support import DAY, CliServer

from scoresvc.core.engine import Engine, WriteResult
from scoresvc.core.errors import Conflict, StorageError
from scoresvc.core.events import Compaction
from scoresvc.core.model import RECEIVED_COLUMNS, AccountStatus, InteractionKind, ModelParams
from scoresvc.storage import checkpoint
from scoresvc.storage.store import Store, decode, encode
from scoresvc.synthetic import community
from scoresvc.v1 import score_service_pb2 as pb
from scoresvc.v1 import score_service_pb2_grpc as pb_grpc

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
    store.load_into(engine)
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
    store = Store(tmp_path)
    store.load_into(first)
    _write_everything(first)
    before = first.refresh(NOW)
    store.close(final_checkpoint=False)  # all from the journal

    second = Engine()
    assert Store(tmp_path).load_into(second) == first.sequence
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
    assert [e.retracted for e in trail][:2] == [True, False]


def test_weighted_interactions_are_journaled_with_their_weights_and_request_ids(tmp_path):
    first = Engine()
    store = Store(tmp_path)
    store.load_into(first)
    rows = [("ana", "bo", LIKE, NOW - 60, 4.0), ("cy", "bo", LIKE, NOW - 60)]
    first.record_interactions(rows, request_id="w-1", now=NOW)
    first.record_interaction_columns(
        ["dee", "bo"], [0], [1], [LIKE], [NOW - 60], [2.5], request_id="w-2", now=NOW
    )
    store.close(final_checkpoint=False)  # all from the journal

    second = Engine()
    Store(tmp_path).load_into(second)
    snap = second.refresh(NOW)
    received = snap.score("bo").explanation.engagement_received
    assert received == pytest.approx((4.0 + 1.0 + 2.5) * 2 ** (-60 / (30 * 86_400)))
    assert second.record_interactions(rows, request_id="w-1", now=NOW).sequence == 1
    with pytest.raises(Conflict):
        second.record_interactions(
            [("ana", "bo", LIKE, NOW - 60, 3.0), ("cy", "bo", LIKE, NOW - 60)],
            request_id="w-1",
            now=NOW,
        )


def _write_a_little(engine: Engine, now: float = NOW) -> None:
    """The writes in tests/data/checkpoint-version-1.svck (refreshed at NOW), accepted
    at ``now``."""
    engine.record_interactions(
        [
            ("ana", "bo", LIKE, NOW - 60),
            ("bo", "ana", InteractionKind.REPLY, NOW - 30),
            ("cy", "bo", InteractionKind.RESHARE, NOW - 10),
        ],
        request_id="rows-1",
        now=now,
    )
    engine.endorse("ana", "bo", "python", NOW - 100, request_id="e-1", now=now)
    engine.endorse("cy", "bo", "", NOW - 50, now=now)
    engine.retract("cy", "bo", "", NOW - 5, request_id="r-1", now=now)
    engine.set_status("ana", AccountStatus.SEED, request_id="s-1", now=now)


def test_a_version_1_checkpoint_is_read_with_its_clock_topics_and_request_ids(tmp_path):
    (tmp_path / "checkpoints").mkdir()
    fixture = Path(__file__).parent / "data" / "checkpoint-version-1.svck"
    shutil.copy(fixture, tmp_path / "checkpoints" / checkpoint.file_name(5))
    # The fixture's "python" has one endorser: rank it, to compare its topic scores.
    one_endorser = ModelParams(topic_min_endorsers=1)
    fresh, restored = Engine(one_endorser), Engine(one_endorser)
    # The checkpoint predates first-seen times: it dates every account at its latest
    # event, NOW - 5 (docs/model.md); the fresh engine sees them then too.
    _write_a_little(fresh, now=NOW - 5)
    with Store(tmp_path) as store:
        assert store.load_into(restored) == fresh.sequence == 5
        assert restored.landmark == fresh.landmark
        before, after = fresh.refresh(NOW), restored.refresh(NOW)
        # Within the solver's tolerance: the restored engine starts warm, the fresh cold.
        np.testing.assert_allclose(after.influence, before.influence, rtol=1e-6)
        topic = after.score("bo", "python").influence
        assert topic > 0
        assert topic == pytest.approx(before.score("bo", "python").influence, rel=1e-6)
        assert restored.endorse("ana", "bo", "python", NOW - 100, request_id="e-1").sequence == 2
        with pytest.raises(Conflict):
            restored.set_status("bo", AccountStatus.SEED, request_id="s-1")
        assert restored.sequence == 5


@pytest.mark.parametrize("version", [2, 3])
def test_checkpoints_of_versions_2_and_3_are_read(tmp_path, version):
    """tests/data/checkpoint-version-N.svck holds ``_write_a_little`` at NOW, refreshed
    at NOW: version 2 kept an endorsement slot per pair, version 3 only the slots'
    pairs; both end with a BLAKE2b checksum, where version 4 ends with XXH3."""
    (tmp_path / "checkpoints").mkdir()
    fixture = Path(__file__).parent / "data" / f"checkpoint-version-{version}.svck"
    shutil.copy(fixture, tmp_path / "checkpoints" / checkpoint.file_name(5))
    one_endorser = ModelParams(topic_min_endorsers=1)
    fresh, restored = Engine(one_endorser), Engine(one_endorser)
    _write_a_little(fresh)
    with Store(tmp_path) as store:
        assert store.load_into(restored) == fresh.sequence == 5
        before, after = fresh.refresh(NOW), restored.refresh(NOW)
        np.testing.assert_allclose(after.influence, before.influence, rtol=1e-6)
        got, want = after.score("bo").explanation, before.score("bo").explanation
        for column in RECEIVED_COLUMNS:  # what bo received, endorsements included
            assert getattr(got, column) == pytest.approx(getattr(want, column), rel=1e-12)
        assert got.endorsements_received > 0
        assert after.score("bo", "python").influence > 0
        # Endorsing again refreshes the one slot the pair has.
        restored.endorse("ana", "bo", "python", NOW - 1, now=NOW)
        fresh.endorse("ana", "bo", "python", NOW - 1, now=NOW)
        again, want = restored.refresh(NOW), fresh.refresh(NOW)
        assert again.score("bo").explanation.endorsements_received == pytest.approx(
            want.score("bo").explanation.endorsements_received, rel=1e-12
        )


def test_a_version_3_checkpoint_is_checked_by_its_blake2b_digest(tmp_path):
    fixture = Path(__file__).parent / "data" / "checkpoint-version-3.svck"
    assert checkpoint.read(fixture).sequence == 5
    damaged = bytearray(fixture.read_bytes())
    damaged[len(damaged) // 2] ^= 0x01
    (tmp_path / fixture.name).write_bytes(bytes(damaged))
    with pytest.raises(checkpoint.CorruptCheckpoint, match="checksum mismatch"):
        checkpoint.read(tmp_path / fixture.name)


def _accounts_arriving(engine: Engine) -> None:
    """Accounts first seen through the API at different server times, each with
    events back-dated to 1970, beside a community bulk-loaded long before."""
    engine.load_events(community(2000, 100, seed=1, end=NOW - 40 * DAY))
    engine.record_interactions([("ana", "user0000001", LIKE, 0.0)], now=NOW - 20 * DAY)
    engine.endorse("bo", "user0000002", "", 5.0, now=NOW - 10 * DAY)
    engine.set_status("cy", AccountStatus.NORMAL, now=NOW - 5 * DAY)
    engine.record_interaction_columns(["dee", "ana"], [0], [1], [1], [1.0], now=NOW - 2 * DAY)


def test_first_seen_times_survive_the_journal_and_checkpoints(tmp_path):
    first = Engine()
    store = Store(tmp_path)
    store.load_into(first)
    _accounts_arriving(first)
    want = first.refresh(NOW).teleport
    p = {u: want[first.snapshot.user_index[u]] / want.max() for u in ("ana", "bo", "cy", "dee")}
    assert p == pytest.approx({"ana": 20 / 30, "bo": 10 / 30, "cy": 5 / 30, "dee": 2 / 30})
    store.close(final_checkpoint=False)
    replayed = Engine()
    with Store(tmp_path) as again:  # from the journal; closing writes a checkpoint
        again.load_into(replayed)
        np.testing.assert_array_equal(replayed.refresh(NOW).teleport, want)
    restored = Engine()
    with Store(tmp_path) as again:
        again.load_into(restored)
        assert again._tail(checkpoint.latest(tmp_path / "checkpoints").sequence)[0] == 0
        np.testing.assert_array_equal(restored.refresh(NOW).teleport, want)


def test_a_write_that_cannot_be_stored_is_not_applied(tmp_path):
    store = Store(tmp_path)
    engine = Engine()
    store.load_into(engine)
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


def _same_snapshots(a: Engine, b: Engine) -> None:
    before, after = a.refresh(NOW), b.refresh(NOW)
    assert after.sequence == before.sequence
    np.testing.assert_array_equal(after.influence, before.influence)
    np.testing.assert_array_equal(after.received, before.received)
    assert after.score("bo", "python").influence == before.score("bo", "python").influence


def test_a_checkpoint_holds_the_whole_state_and_later_writes_follow_it(tmp_path):
    first = Engine()
    store = Store(tmp_path)
    store.load_into(first)
    _write_everything(first)
    path = store.checkpoint()
    assert path is not None and path.name == checkpoint.file_name(first.sequence)
    first.record_interactions([("dee", "bo", LIKE, NOW - 5)], request_id="after", now=NOW)
    store.close(final_checkpoint=False)
    first.attach_journal(None)  # carry on in memory, as the reference

    second = Engine()
    with Store(tmp_path) as again:
        assert again.load_into(second) == first.sequence
        _same_snapshots(first, second)
        # Request ids from before the checkpoint and from the journal both answer.
        assert second.endorse("ana", "bo", "python", NOW - 100, request_id="e-1").sequence == 4
        repeat = second.record_interactions([("dee", "bo", LIKE, NOW - 5)], request_id="after")
        assert repeat.sequence == first.sequence
        # The same later write lands the same on both.
        for engine in (first, second):
            engine.endorse("dee", "cy", "go", NOW - 1, now=NOW)
        _same_snapshots(first, second)


def test_a_pruned_checkpoint_is_not_held_open_by_the_engine_restored_from_it(tmp_path):
    # Checkpoints are read mapped; nothing the engine keeps may pin the file (an
    # erasure deletes old checkpoints, and their bytes must leave the disk).
    first = Engine()
    with Store(tmp_path, keep_checkpoints=1) as store:
        store.load_into(first)
        _write_everything(first)
        first.refresh(NOW)
        store.checkpoint()
    second = Engine()
    with Store(tmp_path, keep_checkpoints=1) as store:
        store.load_into(second)
        (old,) = (tmp_path / "checkpoints").glob("*.svck")
        second.record_interactions([("dee", "bo", LIKE, NOW - 5)], now=NOW)
        store.checkpoint()  # prunes the one restored from, before any refresh
        assert not old.exists()
        held = [os.readlink(f) for f in Path("/proc/self/fd").iterdir() if f.is_symlink()]
        assert not [f for f in held if f.startswith(str(old))]
        assert str(old) not in Path("/proc/self/maps").read_text()


def test_an_engine_and_its_closed_store_are_freed_as_soon_as_they_are_dropped(tmp_path):
    # Not at the cycle collector's leisure: a dropped engine may hold gigabytes, and
    # a reader or a restart makes a new one beside it.
    engine = Engine()
    store = Store(tmp_path)
    store.load_into(engine)
    _write_everything(engine)
    engine.refresh(NOW)
    store.close()
    dropped = weakref.ref(engine), weakref.ref(store)
    gc.disable()
    try:
        del engine, store
        assert [ref() for ref in dropped] == [None, None]
    finally:
        gc.enable()


def test_a_checkpoint_keeps_the_latest_interaction_and_each_retried_endorsements_liveness(
    tmp_path,
):
    first = Engine()
    first.record_interactions([("ana", "bo", LIKE, NOW - 60)], now=NOW)
    first.endorse("ana", "bo", "", NOW - 30, request_id="e-1", now=NOW)  # later, not folded
    first.retract("ana", "bo", "", NOW - 40, request_id="r-1", now=NOW)  # back-dated
    second = Engine()
    second.restore(checkpoint.read(checkpoint.write(tmp_path, first.state())))
    for engine in (first, second):
        log, _ = engine.compacted_log(at=NOW)
        assert log.compaction == Compaction(NOW, NOW - 60)
        assert engine.endorse("ana", "bo", "", NOW - 30, request_id="e-1").endorsement_live
        assert engine.retract("ana", "bo", "", NOW - 40, request_id="r-1").endorsement_live


def test_the_journal_is_compacted_behind_the_older_checkpoint(tmp_path):
    engine = Engine()
    store = Store(tmp_path)
    store.load_into(engine)
    marks = []
    for i in range(3):
        engine.record_interactions([(f"u{i}", "hub", LIKE, NOW)], now=NOW)
        engine.record_interactions([(f"v{i}", "hub", LIKE, NOW)], now=NOW)
        store.checkpoint()
        marks.append(engine.sequence)
    # Two checkpoints kept (at marks[1] and marks[2]); rows up to marks[1] are gone.
    assert [seq for seq, _ in checkpoint.checkpoints(store.checkpoint_dir)] == marks[:0:-1]
    assert [r.sequence for r in store.records()] == list(range(marks[1] + 1, marks[2] + 1))
    assert store.integrity_check() == "ok"
    store.close()


def test_a_corrupt_newest_checkpoint_falls_back_to_the_previous_one(tmp_path, caplog):
    first = Engine()
    store = Store(tmp_path)
    store.load_into(first)
    _write_everything(first)
    store.checkpoint()
    first.record_interactions([("dee", "bo", LIKE, NOW - 5)], now=NOW)
    newest = store.checkpoint()
    store.close(final_checkpoint=False)
    assert newest is not None
    data = bytearray(newest.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped bit in the middle
    newest.write_bytes(bytes(data))

    second = Engine()
    with Store(tmp_path) as again:
        assert again.load_into(second) == first.sequence
    assert "checksum mismatch" in caplog.text
    _same_snapshots(first, second)


def test_an_unreadable_journal_row_stops_the_start_at_its_write_and_frees_the_directory(
    tmp_path,
):
    # The journal is read ahead of the replay: its errors still surface where they lie.
    first = Engine()
    with Store(tmp_path) as store:
        store.load_into(first)
        for i in range(5):
            first.record_interactions([("ana", f"u{i}", LIKE, NOW - i)], now=NOW)
        store.close(final_checkpoint=False)
    database = sqlite3.connect(tmp_path / "scoresvc.db")
    with database:
        database.execute("UPDATE writes SET payload = X'00' WHERE sequence = 3")
    database.close()
    threads = threading.active_count()
    again = Store(tmp_path)
    with pytest.raises(ValueError, match="write 3: unknown payload format"):
        again.load_into(Engine())
    assert threading.active_count() == threads  # the reader stopped with the start
    again.close()


def test_a_truncated_checkpoint_and_a_compacted_journal_refuse_to_start(tmp_path):
    engine = Engine()
    store = Store(tmp_path, keep_checkpoints=1)
    store.load_into(engine)
    _write_everything(engine)
    path = store.checkpoint()
    engine.record_interactions([("dee", "bo", LIKE, NOW - 5)], now=NOW)
    store.checkpoint()
    store.close(final_checkpoint=False)
    for _, path in checkpoint.checkpoints(tmp_path / "checkpoints"):
        path.write_bytes(path.read_bytes()[:-100])
    with Store(tmp_path) as again, pytest.raises(StorageError, match="restore from an export"):
        again.load_into(Engine())


def test_changed_weights_rescale_the_stored_sums_and_a_changed_half_life_is_refused(tmp_path):
    engine = Engine()
    _write_everything(engine)
    state = engine.state()
    heavier = ModelParams(kind_weights=(2.0, 1.0, 3.0, 0.5), endorsement_weight=7.0)
    restored, fresh = Engine(heavier), Engine(heavier)
    restored.restore(state)
    _write_everything(fresh)
    np.testing.assert_allclose(
        restored.refresh(NOW).influence, fresh.refresh(NOW).influence, rtol=1e-9
    )
    with pytest.raises(ValueError, match="half-life"):
        Engine(ModelParams(half_life_seconds=86_400.0)).restore(state)


def test_concurrent_writers_share_commits(tmp_path):
    engine = Engine()
    store = Store(tmp_path)
    store.load_into(engine)
    writers, per_writer = 8, 25

    def write(w: int) -> None:
        for i in range(per_writer):
            engine.record_interactions([(f"w{w}", f"t{i}", LIKE, None)], request_id=f"{w}-{i}")

    threads = [threading.Thread(target=write, args=(w,)) for w in range(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert engine.sequence == store.records_committed == writers * per_writer
    assert store.commits < store.records_committed  # some commits carried several writes
    store.close()


def test_a_request_id_in_flight_is_applied_once(tmp_path):
    """A retry that arrives while the first attempt is still being journaled waits
    for that attempt's answer instead of writing again."""
    engine = Engine()
    queued: list = []
    release = threading.Event()
    waiting = threading.Semaphore(0)

    def slow_journal(record):
        queued.append(record)
        applied: list[WriteResult] = []
        lock = threading.Lock()

        def wait() -> WriteResult:  # like the store's: every waiter gets the one result
            waiting.release()
            release.wait()
            with lock:
                if not applied:
                    applied.append(engine.replay(record))
            return applied[0]

        return wait

    engine.attach_journal(slow_journal)
    answers: list[WriteResult] = []
    rows = [("ana", "bo", LIKE, NOW)]
    threads = [
        threading.Thread(
            target=lambda: answers.append(engine.record_interactions(rows, request_id="r"))
        )
        for _ in range(2)
    ]
    for t in threads:
        t.start()
    for _ in threads:  # both attempts wait on the one journaled write
        assert waiting.acquire(timeout=60)
    release.set()
    for t in threads:
        t.join()
    assert len(queued) == 1 and answers == [WriteResult(1, 1)] * 2


@pytest.mark.parametrize(("durability", "synchronous"), [("full", 2), ("normal", 1)])
def test_durability_sets_sqlite_synchronous_on_the_journal_connection(
    tmp_path, durability, synchronous
):
    """The README's promise, read back from SQLite: ``full`` is synchronous=FULL (2),
    ``normal`` is NORMAL (1), in WAL mode, on the connection that commits the writes."""
    with Store(tmp_path, durability) as store:
        engine = Engine()
        store.load_into(engine)
        engine.record_interactions([("a", "b", LIKE, None)])
        with store._db_lock:
            got = store._db.execute("PRAGMA synchronous").fetchone()[0]
            mode = store._db.execute("PRAGMA journal_mode").fetchone()[0]
    assert (got, mode) == (synchronous, "wal")


def test_a_checkpoint_is_fsynced_then_renamed_then_its_directory_fsynced(tmp_path, monkeypatch):
    """Traces the os calls the checkpoint writer makes: the file's data reaches the
    disk before the rename makes it the checkpoint, and the rename itself (the
    directory entry) reaches the disk before the checkpoint counts as taken."""
    store = Store(tmp_path)
    engine = Engine()
    store.load_into(engine)
    _write_everything(engine)
    calls: list[tuple[str, str]] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd: int) -> None:
        real_fsync(fd)
        calls.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))

    def replace(src, dst) -> None:  # type: ignore[no-untyped-def]
        real_replace(src, dst)
        calls.append(("replace", f"{os.fspath(src)} -> {os.fspath(dst)}"))

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    path = store.checkpoint()
    monkeypatch.undo()
    store.close(final_checkpoint=False)
    assert path is not None
    directory = str(path.parent.resolve())
    mine = [c for c in calls if directory in c[1]]
    assert len(mine) == 3, calls
    (first, written), (second, renamed), (third, synced) = mine
    source, target = renamed.split(" -> ")
    assert (first, second, third) == ("fsync", "replace", "fsync")
    assert os.path.realpath(source) == written != str(path.resolve())  # a temporary file
    assert os.path.realpath(target) == str(path.resolve())
    assert synced == directory
    assert checkpoint.read(path).sequence == engine.sequence


def test_a_data_directory_in_use_is_refused(tmp_path):
    with Store(tmp_path), pytest.raises(StorageError, match="in use"):
        Store(tmp_path)


def _start(data_dir) -> CliServer:
    server = CliServer(
        "serve",
        "--port",
        "0",
        "--data-dir",
        str(data_dir),
        "--refresh-gap",
        "0.01",
        "--checkpoint-events",
        "10",  # a checkpoint (and a compaction) every few writes: kills land in them too
    )
    try:
        server.wait_serving()
    except BaseException:
        server.kill()
        raise
    return server


class _Stream:
    """Writes of every kind to a server, each with a request id, and which were
    acknowledged: interaction batches (3 rows), endorsements, retractions of
    acknowledged endorsements, and status changes."""

    def __init__(self) -> None:
        self.acknowledged: list[tuple[str, object, int]] = []  # (request id, request, seq)
        self.batches: list[int] = []
        self.live: list[str] = []  # endorsers whose acknowledged endorsement is live
        self.next = 0

    def request(self, i: int):
        rid = f"w{i}"
        if i % 4 == 0:
            rows = [
                pb.Interaction(actor_id=f"b{i}-{k}", target_id="hub", kind=LIKE) for k in range(3)
            ]
            return "RecordInteractions", pb.RecordInteractionsRequest(
                interactions=rows, request_id=rid
            )
        if i % 4 == 1 or (i % 4 == 2 and not self.live):
            return "Endorse", pb.EndorseRequest(
                endorser_id=f"e{i}", endorsee_id="hub", request_id=rid
            )
        if i % 4 == 2:
            endorser = self.live[0]
            return "RetractEndorsement", pb.RetractEndorsementRequest(
                endorser_id=endorser, endorsee_id="hub", request_id=rid
            )
        status = pb.ACCOUNT_STATUS_SEED if i % 8 == 3 else pb.ACCOUNT_STATUS_SUSPENDED
        return "SetAccountStatus", pb.SetAccountStatusRequest(
            user_id=f"s{i}", status=status, request_id=rid
        )

    def run(self, address: str, kill_after: int, ready: threading.Event) -> None:
        """Write until the server dies; ``ready`` is set after ``kill_after`` writes."""
        done = 0
        with grpc.insecure_channel(address) as channel:
            stub = pb_grpc.ScoreServiceStub(channel)
            while True:
                i = self.next
                method, request = self.request(i)
                try:
                    sequence = getattr(stub, method)(request, timeout=60).sequence
                except grpc.RpcError:
                    self.next += 1  # in flight when the server died: maybe landed, skip its id
                    ready.set()
                    return
                self.acknowledged.append((method, request, sequence))
                if method == "RecordInteractions":
                    self.batches.append(i)
                elif method == "Endorse":
                    self.live.append(request.endorser_id)
                elif method == "RetractEndorsement":
                    self.live.remove(request.endorser_id)
                self.next += 1
                done += 1
                if done == kill_after:
                    ready.set()

    def check(self, address: str) -> None:
        """Every acknowledged write is there, whole, and its retry gets its sequence."""
        if not self.acknowledged:
            return
        with grpc.insecure_channel(address) as channel:
            stub = pb_grpc.ScoreServiceStub(channel)
            names = [f"b{i}-{k}" for i in range(self.next) for k in range(3)]
            found = {
                e.user_id
                for e in stub.BatchScore(pb.BatchScoreRequest(user_ids=names), timeout=60).entries
                if e.found
            }
            for i in self.batches:
                assert {f"b{i}-{k}" for k in range(3)} <= found, i
            for i in range(self.next):  # whole batches only: all rows or none
                rows = {f"b{i}-{k}" for k in range(3)}
                assert rows <= found or not rows & found, i
            trail, token = set(), ""
            while True:
                page = stub.ListEndorsements(
                    pb.ListEndorsementsRequest(
                        user_id="hub",
                        direction=pb.ENDORSEMENT_DIRECTION_RECEIVED,
                        page_size=1000,
                        page_token=token,
                    ),
                    timeout=60,
                )
                trail |= {(e.endorser_id, e.retracted, e.sequence) for e in page.endorsements}
                token = page.next_page_token
                if not token:
                    break
            for method, request, sequence in self.acknowledged:
                if method in ("Endorse", "RetractEndorsement"):
                    retracted = method == "RetractEndorsement"
                    assert (request.endorser_id, retracted, sequence) in trail, (method, sequence)
                elif method == "SetAccountStatus":
                    got = stub.Score(pb.ScoreRequest(user_id=request.user_id), timeout=60)
                    assert got.status == request.status, request.user_id
                again = getattr(stub, method)(request, timeout=60).sequence
                assert again == sequence, (method, request.request_id)


def test_acknowledged_writes_survive_sigkill_and_no_write_is_half_applied(tmp_path):
    """A writer streams interaction batches, endorsements, retractions and status
    changes while the server, checkpointing every few writes, is SIGKILLed after a
    random number of them, eight times; after each restart every acknowledged write
    is there, whole, and a retry of it answers its first sequence."""
    rng = random.Random(7)
    stream = _Stream()
    for _round in range(8):
        with _start(tmp_path) as server:
            stream.check(server.address)
            ready = threading.Event()
            writer = threading.Thread(
                target=stream.run, args=(server.address, rng.randint(1, 40), ready)
            )
            writer.start()
            try:
                assert ready.wait(timeout=600), "the writer made no progress"
            finally:
                server.kill()
                writer.join()
    with _start(tmp_path) as server:
        stream.check(server.address)
        server.stop(timeout=60)
    kinds = {method for method, _, _ in stream.acknowledged}
    assert kinds == {"RecordInteractions", "Endorse", "RetractEndorsement", "SetAccountStatus"}
    assert len(stream.acknowledged) > 40
    assert Store(tmp_path).integrity_check() == "ok"


LIMITS_SCRIPT = r"""
import json, os, sys
from scoresvc.core.engine import Engine
from scoresvc.core.errors import StorageError
from scoresvc.storage.store import Store

data = sys.argv[1]
out = {}
store = Store(data, checkpoint_events=10**9, checkpoint_seconds=1e9)
engine = Engine()
store.load_into(engine)
acknowledged, i = [], 0
while i < 10_000:
    rows = [(f"u{i}-{k}", f"hub{k % 7}", 1, None) for k in range(100)]
    try:
        engine.record_interactions(rows, request_id=f"b{i}")
    except StorageError as exc:
        out["full"] = str(exc)
        break
    acknowledged.append(i)
    i += 1
out["acknowledged"] = len(acknowledged)
sequence, pairs = engine.sequence, engine.n_pairs
try:  # the same batch again: still no room, still nothing applied
    engine.record_interactions(rows, request_id=f"b{i}")
except StorageError as exc:
    out["still_full"] = str(exc)
out["unchanged"] = (engine.sequence, engine.n_pairs) == (sequence, pairs)
try:
    store.checkpoint()
except StorageError as exc:
    out["checkpoint"] = str(exc)
out["stray"] = [p for p in os.listdir(data + "/checkpoints") if p.endswith(".tmp")]
store.close(final_checkpoint=False)

again = Engine()
with Store(data) as reopened:
    out["integrity"] = reopened.integrity_check()
    reopened.load_into(again)
    out["restored"] = again.sequence == sequence
    out["all_there"] = all(again.has_user(f"u{j}-99") for j in acknowledged)
    out["not_applied"] = not again.has_user(f"u{i}-0")

os.system(f"mount -o remount,ro {data}")
try:
    Store(data)
except StorageError as exc:
    out["read_only"] = str(exc)
print(json.dumps(out))
"""


def test_a_full_disk_or_read_only_directory_is_a_clear_error_and_corrupts_nothing(tmp_path):
    """On a 1 MiB tmpfs (mounted in a user and mount namespace of its own), writes run
    until the disk is full: that write and later ones fail with a clear StorageError,
    nothing unacknowledged is applied, a checkpoint that does not fit leaves no trace,
    and a restart finds every acknowledged write with the database intact. Then the
    file system goes read-only and opening it says so."""
    data = tmp_path / "small"
    data.mkdir()
    script = tmp_path / "limits.py"
    script.write_text(LIMITS_SCRIPT)
    done = subprocess.run(
        [
            "unshare",
            "--user",
            "--map-root-user",
            "--mount",
            "sh",
            "-c",
            f"mount -t tmpfs -o size=1m tmpfs {data} && exec {sys.executable} {script} {data}",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    got = json.loads(done.stdout.strip().splitlines()[-1])
    assert got["acknowledged"] > 5
    assert "disk is full" in got["full"] and "disk is full" in got["still_full"]
    assert got["unchanged"]
    assert "No space left" in got["checkpoint"] and got["stray"] == []
    assert got["integrity"] == "ok" and got["restored"] and got["all_there"]
    assert got["not_applied"]
    assert "Read-only file system" in got["read_only"]
