"""Export and import: an archive of an engine rebuilds the same scores, in Parquet and
in CSV, through the library and through the CLI."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from hypothesis import given, settings
from support import T0, event_logs

from scoresvc import cli, reference
from scoresvc.core.engine import Engine
from scoresvc.core.model import AccountStatus, InteractionKind
from scoresvc.storage import archive
from scoresvc.storage.store import Store
from scoresvc.synthetic import community

LIKE = InteractionKind.LIKE


def _same_scores(a: Engine, b: Engine, at: float) -> None:
    sa, sb = a.refresh(at), b.refresh(at)
    assert sb.user_ids[: len(sa.user_ids)] == sa.user_ids
    np.testing.assert_allclose(sb.influence, sa.influence, rtol=1e-9, atol=1e-18)
    np.testing.assert_allclose(sb.received, sa.received, rtol=1e-9, atol=1e-18)


@settings(deadline=None)
@given(log=event_logs())
def test_the_compacted_log_rebuilds_the_same_state(log):
    original = Engine()
    original.load_events(log)
    compacted, at = original.compacted_log()
    assert compacted.n_interactions <= 4 * original.n_pairs
    rebuilt = Engine()
    rebuilt.load_events(compacted)
    for later in (at, at + 86_400.0 * 40):
        _same_scores(original, rebuilt, later)
    # The oracle reads weights the same way.
    want = reference.compute(compacted, at).influence
    np.testing.assert_allclose(original.refresh(at).influence, want, rtol=1e-5, atol=1e-15)


BUSY = community(3000, 120, seed=3, end=T0)


def _busy_engine() -> Engine:
    engine = Engine()
    engine.load_events(BUSY)
    engine.record_interactions([("ana", 'bo, the "quoted"', LIKE, T0 - 60)], now=T0)
    engine.endorse("ana", "user0000001", "python", T0 - 100, now=T0)
    engine.endorse("cy", "user0000001", "", T0 - 50, now=T0)
    engine.retract("cy", "user0000001", "", T0 - 10, now=T0)
    engine.set_status("user0000002", AccountStatus.SEED)
    engine.set_status("user0000003", AccountStatus.SUSPENDED)
    return engine


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_export_then_import_gives_the_same_scores(tmp_path, fmt):
    original = _busy_engine()
    manifest = archive.export(original, tmp_path / "archive", fmt)
    tables = manifest["tables"]
    assert tables["accounts"]["rows"] == original.n_users
    assert tables["endorsements"]["rows"] == BUSY.n_endorsement_events + 3
    assert (tmp_path / "archive" / f"interactions.{fmt}").exists()
    imported = Engine()
    applied = archive.import_into(imported, tmp_path / "archive")
    assert applied == tables["interactions"]["rows"] + tables["endorsements"]["rows"]
    at = manifest["compacted_at"]
    _same_scores(original, imported, at)
    a, b = original.snapshot, imported.snapshot
    assert b.score("user0000001", "python").influence == pytest.approx(
        a.score("user0000001", "python").influence, rel=1e-9
    )
    assert imported.list_endorsements("cy", True, 0, 5)[0][0].retracted


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_export_then_import_keeps_distrusts(tmp_path, fmt):
    original = _busy_engine()
    original.set_status("user0000004", AccountStatus.SEED)
    original.distrust("user0000004", "user0000001", "", T0 - 100, now=T0)
    original.distrust("user0000002", "user0000001", "Python", T0 - 90, now=T0)
    original.distrust("ana", "user0000005", "", T0 - 80, now=T0)
    original.retract_distrust("ana", "user0000005", "", T0 - 70, now=T0)
    manifest = archive.export(original, tmp_path / "archive", fmt)
    assert manifest["tables"]["distrusts"]["rows"] == 4
    imported = Engine()
    applied = archive.import_into(imported, tmp_path / "archive")
    assert applied == sum(t["rows"] for name, t in manifest["tables"].items() if name != "accounts")
    at = manifest["compacted_at"]
    _same_scores(original, imported, at)
    a, b = original.snapshot, imported.snapshot
    kept = a.score("user0000001").explanation.trust_kept
    assert kept < 1 and b.score("user0000001").explanation.trust_kept == pytest.approx(kept)
    assert b.score("user0000005").explanation.trust_kept == 1  # retracted
    trail, _ = imported.list_endorsements("user0000001", False, 0, 10)
    assert {(e.endorser_id, e.topic) for e in trail if e.distrust} == {
        ("user0000004", ""),
        ("user0000002", "python"),
    }


def test_an_archive_without_a_distrusts_table_imports_with_none(tmp_path):
    """Archives written before distrust have three tables: they import as before."""
    original = _busy_engine()
    manifest = archive.export(original, tmp_path / "archive", "csv")
    (tmp_path / "archive" / "distrusts.csv").unlink()
    del manifest["tables"]["distrusts"]
    (tmp_path / "archive" / "manifest.json").write_text(json.dumps(manifest))
    imported = Engine()
    archive.import_into(imported, tmp_path / "archive")
    _same_scores(original, imported, manifest["compacted_at"])


def test_imported_distrust_topics_are_normalised(tmp_path):
    (tmp_path / "distrusts.csv").write_text(
        "distruster_id,distrusted_id,topic,event_time_seconds,retracted\n"
        f"a,b,Rust,{T0},False\n"
        f"a,b, rust,{T0 + 1},True\n"
    )
    engine = Engine()
    archive.import_into(engine, tmp_path)
    trail, _ = engine.list_endorsements("a", True, 0, 10)
    assert [(e.distrust, e.topic, e.retracted) for e in trail] == [
        (True, "rust", True),
        (True, "rust", False),
    ]
    assert trail[0].decides_current_state  # one record: the later retraction decides


def test_an_imported_archive_merges_the_spellings_of_a_topic(tmp_path):
    """Archives written before topics were normalised, or by hand, import as the
    service names topics: "Rust", " rust" and "RUST" are one topic."""
    (tmp_path / "endorsements.csv").write_text(
        "endorser_id,endorsee_id,topic,event_time_seconds,retracted\n"
        f"a,b,Rust,{T0},False\n"
        f"c,b, rust,{T0},False\n"
        f"a,d,RUST,{T0},False\n"
        f"c,d,go,{T0},False\n"
    )
    engine = Engine()
    archive.import_into(engine, tmp_path)
    snap = engine.refresh(T0 + 1)
    assert [u for u, _, _ in snap.top(10, "rust")] == ["b"]
    assert snap.score("d", "Rust").score == 1.0  # one endorser there
    trail, _ = engine.list_endorsements("b", False, 0, 10)
    assert {e.topic for e in trail} == {"rust"}


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_an_archive_keeps_when_each_account_was_first_seen(tmp_path, fmt):
    """An account created through the API with events back-dated to 1970 stays as
    young after export and import; an archive without the column dates accounts by
    their earliest event."""
    original = _busy_engine()
    original.record_interactions([("newcomer", "user0000001", LIKE, 1.0)], now=T0 + 3600)
    original.endorse("newcomer", "user0000004", "", 2.0, now=T0 + 3600)
    archive.export(original, tmp_path / "archive", fmt)
    imported = Engine()
    archive.import_into(imported, tmp_path / "archive")
    day = T0 + 86_400.0
    _same_scores(original, imported, day)
    a, b = original.snapshot, imported.snapshot
    assert b.teleport[b.user_index["newcomer"]] == a.teleport[a.user_index["newcomer"]]
    # A share by age: 23 hours against ana's 24 (both first seen through the API).
    young = a.teleport[a.user_index["newcomer"]] / a.teleport[a.user_index["ana"]]
    assert young == pytest.approx(23 / 24, rel=1e-12)
    if fmt == "csv":  # as an older scoresvc wrote it: dated by the endorsement's time
        accounts = tmp_path / "archive" / "accounts.csv"
        with open(accounts, newline="") as f:
            rows = [row[:2] for row in csv.reader(f)]
        with open(accounts, "w", newline="") as f:
            csv.writer(f).writerows(rows)
        undated = Engine()
        archive.import_into(undated, tmp_path / "archive")
        snap = undated.refresh(day)
        mature = snap.teleport[snap.status == AccountStatus.NORMAL].max()
        assert snap.teleport[snap.user_index["newcomer"]] == mature


def test_a_bad_archive_names_the_file_and_column(tmp_path):
    (tmp_path / "interactions.csv").write_text(
        "actor_id,target_id,kind,event_time_seconds\na,b,POKE,1.0\n"
    )
    with pytest.raises(archive.ArchiveError, match=r"interactions.csv: kind: unknown value 'POKE'"):
        archive.import_into(Engine(), tmp_path)
    with pytest.raises(archive.ArchiveError, match="no accounts, interactions"):
        archive.import_into(Engine(), tmp_path / "nothing")
    (tmp_path / "manifest.json").write_text(json.dumps({"format": "other", "version": 9}))
    with pytest.raises(archive.ArchiveError, match="not a scoresvc-archive version 1"):
        archive.import_into(Engine(), tmp_path)


def test_cli_export_of_a_data_directory_imports_into_another(tmp_path):
    source = tmp_path / "source"
    original = Engine()
    with Store(source) as store:
        store.load_into(original)
        original.load_events(community(2000, 80, seed=5, end=T0))
        original.endorse("user0000004", "user0000005", "go", T0 - 5, now=T0)
        store.checkpoint()
        original.record_interactions([("new", "user0000005", LIKE, T0 - 1)], now=T0)
    original.attach_journal(None)

    out = tmp_path / "archive"
    assert cli.main(["export", "--data-dir", str(source), "--out", str(out)]) == 0
    target = tmp_path / "target"
    assert cli.main(["import", "--data-dir", str(target), "--input", str(out)]) == 0
    restored = Engine()
    with Store(target) as store:
        assert store.count() > 0 or list(store.checkpoint_dir.iterdir())
        store.load_into(restored)
    at = json.loads((out / "manifest.json").read_text())["compacted_at"]
    _same_scores(original, restored, at)


def test_an_imported_archive_keeps_the_latest_event_of_its_compacted_sums(tmp_path):
    original = _busy_engine()
    first = archive.export(original, tmp_path / "first")
    latest = first["latest_compacted_event"]
    assert latest == max(float(BUSY.ts.max()), T0 - 60)  # the interactions', not the trail's
    assert first["compacted_at"] > latest
    data = tmp_path / "data"
    imported = Engine()
    with Store(data) as store:
        store.load_into(imported)
        archive.import_into(imported, tmp_path / "first")
    imported.attach_journal(None)
    restarted = Engine()  # the import replayed from the journal
    with Store(data) as store:
        store.load_into(restarted)
    from_checkpoint = Engine()
    from_checkpoint.restore(restarted.state())
    for engine in (imported, restarted, from_checkpoint):
        again = archive.export(engine, tmp_path / "again")
        assert again["latest_compacted_event"] == latest
    # Read before its compaction time, from the latest event on, it is the original.
    _same_scores(original, restarted, latest)
