"""The embedded durable store: a data directory holding a write-ahead journal in
SQLite (WAL mode) and checkpoints of the engine's aggregated state.

Every accepted write is a journal row, committed before the engine applies it and
before the caller is answered. Writers queue their records; one committer thread
writes everything queued in one transaction (group commit: concurrent writers share
a commit and its fsync), then applies the records in sequence order and answers
their writers. A write the journal cannot store is never applied.

Durability (SQLite's ``synchronous`` setting, https://sqlite.org/pragma.html):

* ``full`` (default): ``synchronous=FULL``: the WAL is fsynced at every commit, so
  an acknowledged write survives power loss (as far as the disk honours fsync).
* ``normal``: ``synchronous=NORMAL`` in WAL mode: a commit is in the operating
  system's hands before it returns, so it survives a crash of the process; the last
  commits before a power loss may be lost. The database is not corrupted in either.

Checkpoints (``scoresvc.storage.checkpoint``) hold the engine's state as of a sequence
number; start-up loads the newest good one and replays the journal after it. Journal
rows covered by the older of the two checkpoints kept are deleted, so a corrupt
newest checkpoint still has the journal it needs in the previous one.

An erasure (``Engine.erase_user``) is journaled like any write, naming the user only by
a salted digest; once applied, a checkpoint of the state without the user is written
at once, every older checkpoint and the journal through it are deleted, and the
database is rewritten (``VACUUM``) with its WAL truncated, so no file keeps the user's
bytes. A crash between the steps is finished at the next start: the erasure's journal
row (deleted last) or the ``vacuum_pending`` setting says what is left to do.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import queue
import sqlite3
import struct
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING

import numpy as np

from ..core.errors import StorageError
from ..core.records import WriteRecord
from ..core.results import WriteResult
from ..core.users import UserIds
from . import checkpoint

if TYPE_CHECKING:
    from ..core.engine import Engine

log = logging.getLogger("scoresvc.storage.store")

DB_NAME = "scoresvc.db"
LOCK_NAME = "LOCK"
CHECKPOINT_DIR = "checkpoints"
FORMAT = b"SVW2"  # version of the payload encoding below
OLD_FORMATS = (b"SVW1",)  # SVW1 kept the user ids in the JSON header
SYNCHRONOUS = {"full": "FULL", "normal": "NORMAL"}


def encode(record: WriteRecord) -> bytes:
    """``SVW2``, a 4-byte header length, a JSON header, then the raw arrays (the
    user ids among them, as UTF-8 bytes and offsets)."""
    arrays = {name: np.ascontiguousarray(a) for name, a in record.arrays.items()}
    arrays["user_offsets"] = record.users.offsets
    arrays["user_blob"] = record.users.blob
    header = json.dumps(
        {
            "fields": record.fields,
            "request_id": record.request_id,
            "fingerprint": list(record.fingerprint),
            "arrays": [[name, a.dtype.str, len(a)] for name, a in arrays.items()],
        },
        separators=(",", ":"),
    ).encode("utf-8")
    return b"".join(
        [FORMAT, struct.pack("<I", len(header)), header, *(a.tobytes() for a in arrays.values())]
    )


def decode(sequence: int, kind: str, payload: bytes) -> WriteRecord:
    version = payload[:4]
    if version != FORMAT and version not in OLD_FORMATS:
        raise ValueError(f"write {sequence}: unknown payload format {version!r}")
    (size,) = struct.unpack_from("<I", payload, 4)
    header = json.loads(payload[8 : 8 + size])
    offset = 8 + size
    arrays: dict[str, np.ndarray] = {}
    for name, dtype, length in header["arrays"]:
        dt = np.dtype(dtype)
        arrays[name] = np.frombuffer(payload, dt, length, offset).copy()
        offset += dt.itemsize * length
    if offset != len(payload):
        raise ValueError(f"write {sequence}: payload has {len(payload) - offset} extra bytes")
    if version == b"SVW1":
        users = UserIds.of(header["users"])
    else:
        users = UserIds(arrays.pop("user_blob"), arrays.pop("user_offsets"))
    return WriteRecord(
        sequence,
        kind,
        header["fields"],
        arrays,
        users,
        header["request_id"],
        tuple(header["fingerprint"]),
    )


@dataclass(frozen=True)
class StoreSettings:
    """How a data directory is written: ``Store``'s defaults (and the CLI's)."""

    # full: an acknowledged write survives power loss; normal: a crash of the process.
    durability: str = "full"
    # A checkpoint after this many events, or this long while writes arrive, since the
    # last one: restarts replay at most that much journal.
    checkpoint_events: int = 5_000_000
    checkpoint_seconds: float = 600.0
    # Checkpoints kept; the journal goes back to the oldest, so a corrupt newest one
    # still has the journal it needs in the previous one.
    keep_checkpoints: int = 2


class Store:
    """A data directory: the journal, the checkpoints and a lock held while open.

    ``load_into(engine)`` restores the newest checkpoint, replays the journal after
    it and from then on journals the engine's writes. Checkpoints are taken when
    ``checkpoint_events`` events or ``checkpoint_seconds`` have passed since the last
    one (and at ``close``), by a background thread.
    """

    def __init__(
        self,
        data_dir: str | Path,
        durability: str = StoreSettings.durability,
        *,
        checkpoint_events: int = StoreSettings.checkpoint_events,
        checkpoint_seconds: float = StoreSettings.checkpoint_seconds,
        keep_checkpoints: int = StoreSettings.keep_checkpoints,
        read_only: bool = False,
    ) -> None:
        if durability not in SYNCHRONOUS:
            raise ValueError("durability must be 'full' or 'normal'")
        if keep_checkpoints < 1:
            raise ValueError("keep_checkpoints must be at least 1")
        self.path = Path(data_dir)
        self.checkpoint_dir = self.path / CHECKPOINT_DIR
        self.durability = durability
        self.checkpoint_events = checkpoint_events
        self.checkpoint_seconds = checkpoint_seconds
        self.keep_checkpoints = keep_checkpoints
        self.read_only = read_only
        self._lock_file: IO[str] | None = None
        if read_only:
            self._open_read_only()
            return
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            lock_file = open(self.path / LOCK_NAME, "a+")  # noqa: SIM115
        except OSError as exc:
            raise StorageError(f"cannot open the data directory {self.path}: {exc}") from exc
        try:
            fcntl.flock(lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            lock_file.close()
            raise StorageError(
                f"the data directory {self.path} is in use by another scoresvc process"
            ) from None
        self._lock_file = lock_file
        try:
            self._db = sqlite3.connect(
                self.path / DB_NAME, isolation_level=None, check_same_thread=False
            )
            # Space freed by compaction goes back to the file system (new files only).
            self._db.execute("PRAGMA auto_vacuum=INCREMENTAL")
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute(f"PRAGMA synchronous={SYNCHRONOUS[durability]}")
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS writes (sequence INTEGER PRIMARY KEY,"
                " kind TEXT NOT NULL, payload BLOB NOT NULL, events INTEGER NOT NULL DEFAULT 1)"
            )
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS settings (name TEXT PRIMARY KEY, value NOT NULL)"
            )
        except (OSError, sqlite3.Error) as exc:
            lock_file.close()
            raise StorageError(f"cannot open the data directory {self.path}: {exc}") from exc
        self._init_state()

    def _open_read_only(self) -> None:
        """A reader beside a running server: no lock, no journal of its own."""
        database = self.path / DB_NAME
        if not database.exists():
            raise StorageError(f"{self.path} holds no scoresvc data")
        try:
            self._db = sqlite3.connect(
                f"{database.resolve().as_uri()}?mode=ro", uri=True, check_same_thread=False
            )
        except sqlite3.Error as exc:
            raise StorageError(f"cannot read the data directory {self.path}: {exc}") from exc
        self._init_state()

    def _init_state(self) -> None:
        self._db_lock = threading.Lock()
        self._queue: list[tuple[WriteRecord, _Ticket]] = []
        self._queued = threading.Condition()
        self._closing = False
        self._closed = False
        self._engine: Engine | None = None
        self._committer: threading.Thread | None = None
        self._checkpointer: threading.Thread | None = None
        self._checkpoint_lock = threading.Lock()
        self._events_since_checkpoint = 0
        self._last_checkpoint = (0, time.monotonic())  # (sequence, when)
        self.commits = 0  # transactions, for tests and metrics
        self.records_committed = 0

    # ------------------------------------------------------------------ start-up

    def load_into(self, engine: Engine, progress: Callable[[int, int], None] | None = None) -> int:
        """Restore the newest good checkpoint into a new ``engine``, replay the journal
        after it, then journal the engine's writes here (read-only: leave the engine
        in memory). Returns the sequence reached."""
        if self.read_only:
            return self._read_into(engine, progress)
        started = time.perf_counter()
        # The journal after the newest checkpoint is read while that is checked and
        # restored (again from the right place if it does not check out).
        newest = next(iter(checkpoint.checkpoints(self.checkpoint_dir)), (0, None))[0]
        tail = _ReadAhead(self._records_after(newest))
        try:
            state = checkpoint.latest(self.checkpoint_dir)
            base = 0 if state is None else state.sequence
            if base != newest:
                tail.close()
                tail = _ReadAhead(self._records_after(base))
            if state is not None:
                engine.restore(state, spare_pairs=self._tail(base)[1])
                log.info(
                    "loaded checkpoint at write %d in %.1f s", base, time.perf_counter() - started
                )
            compacted = self._setting("compacted_through", 0)
            if compacted > base:
                raise StorageError(
                    f"the journal was compacted through write {compacted} but no checkpoint at"
                    f" or after it checks out (newest good: {base}); restore from an export"
                )
            done = self._replay(tail, base, engine, progress)
        finally:
            tail.close()
        self._engine = engine
        self._finish_erasures()
        self._last_checkpoint = (base, time.monotonic())
        self._events_since_checkpoint = done
        engine.attach_journal(self.submit)
        self._committer = threading.Thread(
            target=self._commit_loop, name="scoresvc-journal", daemon=True
        )
        self._committer.start()
        self._checkpointer = threading.Thread(
            target=self._checkpoint_loop, name="scoresvc-checkpoint", daemon=True
        )
        self._checkpointer.start()
        log.info(
            "data directory %s: at write %d (%d replayed) in %.1f s",
            self.path,
            engine.sequence,
            done,
            time.perf_counter() - started,
        )
        return engine.sequence

    def _replay(
        self,
        tail: _ReadAhead,
        base: int,
        engine: Engine,
        progress: Callable[[int, int], None] | None,
    ) -> int:
        """Apply the records of ``tail``, the journal after write ``base``."""
        total = self._tail(base)[0]
        done = 0
        for record in tail:
            engine.replay(record)
            done += 1
            if progress is not None and (done % 1000 == 0 or done == total):
                progress(done, total)
        return done

    def _read_into(self, engine: Engine, progress: Callable[[int, int], None] | None) -> int:
        # A running server may checkpoint and compact meanwhile: if it compacted past
        # the checkpoint read here, the replay missed rows, so read again.
        for _attempt in range(5):
            state = checkpoint.latest(self.checkpoint_dir)
            base = 0 if state is None else state.sequence
            if self._setting("compacted_through", 0) > base:
                continue
            candidate = type(engine)(engine.params, threads=engine.threads, solver=engine.solver)
            if state is not None:
                candidate.restore(state, spare_pairs=self._tail(base)[1])
            with _ReadAhead(self._records_after(base)) as tail:
                self._replay(tail, base, candidate, progress)
            if self._setting("compacted_through", 0) <= base:
                engine.restore(candidate.state())
                return engine.sequence
        raise StorageError(f"{self.path} kept changing under the reader; try again")

    # ------------------------------------------------------------------ journal

    def submit(self, record: WriteRecord) -> Callable[[], WriteResult]:
        """Queue ``record`` (the engine's journal hook); the wait returns once it is
        committed and applied, or raises StorageError."""
        ticket = _Ticket()
        with self._queued:
            if self._closing:
                raise StorageError("the store is closed")
            self._queue.append((record, ticket))
            self._queued.notify()
        return ticket.wait

    def _commit_loop(self) -> None:
        engine = self._engine
        assert engine is not None
        while True:
            with self._queued:
                while not self._queue and not self._closing:
                    self._queued.wait()
                group, self._queue = self._queue, []
                if not group and self._closing:
                    return
            try:
                self._append([record for record, _ in group])
            except StorageError as exc:
                for record, ticket in group:
                    engine.discard(record)
                    ticket.fail(exc)
                continue
            for record, ticket in group:
                try:
                    result = engine.replay(record)
                except Exception as exc:  # a bug: its writer hears of it, the loop goes on
                    log.exception("write %d stored but not applied", record.sequence)
                    ticket.fail(exc)
                    continue
                try:
                    if record.kind == "erase":
                        self._forget_erased()
                    ticket.done(result)
                except (OSError, sqlite3.Error) as exc:
                    log.error(
                        "erasure %d applied; its files are rewritten at the next start: %s",
                        record.sequence,
                        exc,
                    )
                    ticket.fail(
                        StorageError(
                            f"the erasure is applied but its files are not yet"
                            f" rewritten (done at the next start): {exc}"
                        )
                    )
                self._events_since_checkpoint += _events_in(record)

    def _append(self, records: list[WriteRecord]) -> None:
        """Commit ``records`` in one transaction."""
        rows = [(r.sequence, r.kind, encode(r), _events_in(r)) for r in records]
        with self._db_lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    self._db.executemany(
                        "INSERT INTO writes (sequence, kind, payload, events) VALUES (?, ?, ?, ?)",
                        rows,
                    )
                    self._db.execute("COMMIT")
                except BaseException:
                    if self._db.in_transaction:
                        self._db.execute("ROLLBACK")
                    raise
            except sqlite3.Error as exc:
                log.error("writes %d-%d not stored: %s", rows[0][0], rows[-1][0], exc)
                raise StorageError(f"the write could not be stored: {exc}") from exc
            self.commits += 1
            self.records_committed += len(rows)

    def append(self, record: WriteRecord) -> None:
        """Commit one record directly (tests); the engine's writes use ``submit``."""
        self._append([record])

    def records(self) -> Iterator[WriteRecord]:
        """Every record in the journal, in sequence order."""
        return self._records_after(0)

    def _records_after(self, sequence: int) -> Iterator[WriteRecord]:
        # Read in pages: a journal can hold more than memory should at once.
        last = sequence
        while True:
            with self._db_lock:
                rows = self._db.execute(
                    "SELECT sequence, kind, payload FROM writes WHERE sequence > ?"
                    " ORDER BY sequence LIMIT 256",
                    (last,),
                ).fetchall()
            if not rows:
                return
            for row_sequence, kind, payload in rows:
                yield decode(row_sequence, kind, payload)
            last = rows[-1][0]

    def _tail(self, sequence: int) -> tuple[int, int]:
        """How many writes, and how many events, the journal holds after ``sequence``."""
        with self._db_lock:
            writes, events = self._db.execute(
                "SELECT count(*), coalesce(sum(events), 0) FROM writes WHERE sequence > ?",
                (sequence,),
            ).fetchone()
        return int(writes), int(events)

    def count(self) -> int:
        return self._tail(0)[0]

    def integrity_check(self) -> str:
        with self._db_lock:
            return str(self._db.execute("PRAGMA integrity_check").fetchone()[0])

    def size_bytes(self) -> int:
        """Bytes on disk: the database, its WAL and the checkpoints."""
        files = [self.path / DB_NAME, self.path / f"{DB_NAME}-wal"]
        files += [p for _, p in checkpoint.checkpoints(self.checkpoint_dir)]
        return sum(p.stat().st_size for p in files if p.exists())

    # ------------------------------------------------------------------ checkpoints

    def checkpoint(self) -> Path | None:
        """Write a checkpoint of the engine now and compact the journal behind the
        older kept checkpoint. Returns its path (None when nothing changed)."""
        assert self._engine is not None, "load_into first (and not after close)"
        with self._checkpoint_lock:
            if self._engine.sequence == self._last_checkpoint[0]:
                return None
            started = time.perf_counter()
            self._events_since_checkpoint = 0
            state = self._engine.state()
            try:
                path = checkpoint.write(self.checkpoint_dir, state)
            except OSError as exc:
                log.error("checkpoint at write %d failed: %s", state.sequence, exc)
                raise StorageError(f"the checkpoint could not be written: {exc}") from exc
            self._last_checkpoint = (state.sequence, time.monotonic())
            kept = checkpoint.prune(self.checkpoint_dir, self.keep_checkpoints)
            through = kept[-1] if len(kept) >= self.keep_checkpoints else 0
            if through:
                self._compact(through)
            log.info(
                "checkpoint at write %d: %.1f MB in %.2f s; journal compacted through %d",
                state.sequence,
                path.stat().st_size / 1e6,
                time.perf_counter() - started,
                through,
            )
            return path

    def _compact(self, through: int, vacuum: bool = False) -> None:
        """Delete the journal through ``through``; with ``vacuum``, rewrite the whole
        database and truncate its WAL (an erasure: freed pages keep old bytes), raising
        on failure instead of logging."""
        with self._db_lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                self._db.execute("DELETE FROM writes WHERE sequence <= ?", (through,))
                self._db.execute(
                    "INSERT OR REPLACE INTO settings (name, value) VALUES ('compacted_through', ?)",
                    (through,),
                )
                if vacuum:
                    self._db.execute(
                        "INSERT OR REPLACE INTO settings (name, value) VALUES ('vacuum_pending', 1)"
                    )
                self._db.execute("COMMIT")
                if vacuum:
                    self._vacuum()
                else:
                    self._db.execute("PRAGMA incremental_vacuum")
            except sqlite3.Error as exc:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                if vacuum:
                    raise
                log.error("journal compaction failed (the journal keeps its rows): %s", exc)

    def _vacuum(self) -> None:
        """Rewrite the database without its free pages, then empty the WAL (db lock held)."""
        self._db.execute("VACUUM")
        self._db.execute("DELETE FROM settings WHERE name = 'vacuum_pending'")
        busy, _, _ = self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        if busy:
            log.warning("the WAL could not be truncated now (a reader holds it)")

    # ------------------------------------------------------------------ erasure

    def _forget_erased(self) -> None:
        """After an erasure is applied: a checkpoint of the engine now (without the
        user), every older checkpoint deleted, the journal through it deleted, the
        database rewritten. Each step may be repeated (see ``_finish_erasures``)."""
        assert self._engine is not None
        with self._checkpoint_lock:
            started = time.perf_counter()
            state = self._engine.state()
            checkpoint.write(self.checkpoint_dir, state)
            self._last_checkpoint = (state.sequence, time.monotonic())
            self._events_since_checkpoint = 0
            checkpoint.prune(self.checkpoint_dir, 1)
            self._compact(state.sequence, vacuum=True)
            log.info(
                "erasure at write %d: checkpoint, journal and database rewritten in %.2f s",
                state.sequence,
                time.perf_counter() - started,
            )

    def _finish_erasures(self) -> None:
        """At start-up, finish an erasure a crash interrupted: its journal row is
        deleted last, and the ``vacuum_pending`` setting cleared after the vacuum."""
        with self._db_lock:
            (erasures,) = self._db.execute(
                "SELECT count(*) FROM writes WHERE kind = 'erase'"
            ).fetchone()
        if erasures:
            self._forget_erased()
        elif self._setting("vacuum_pending", 0):
            with self._db_lock:
                self._vacuum()

    def _checkpoint_loop(self) -> None:
        while not self._closing:
            time.sleep(0.5)
            due = self._events_since_checkpoint >= self.checkpoint_events or (
                time.monotonic() - self._last_checkpoint[1] >= self.checkpoint_seconds
            )
            if due and not self._closing:
                with contextlib.suppress(StorageError):  # logged; the journal has it all
                    self.checkpoint()

    def _setting(self, name: str, default: int) -> int:
        with self._db_lock:
            row = self._db.execute("SELECT value FROM settings WHERE name = ?", (name,)).fetchone()
        return default if row is None else int(row[0])

    # ------------------------------------------------------------------ shutdown

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self, final_checkpoint: bool = True) -> None:
        """Stop the journal (queued writes are committed first), take a last checkpoint
        so the next start replays nothing, and release the directory. Idempotent."""
        with self._queued:
            if self._closed:
                return
            self._closed = True
            self._closing = True
            self._queued.notify_all()
        if self._committer is not None:
            self._committer.join()
        if self._checkpointer is not None:
            self._checkpointer.join()
        if final_checkpoint and self._engine is not None:
            with contextlib.suppress(StorageError):  # logged; the journal has it all
                self.checkpoint()
        with self._db_lock:
            self._db.close()
        if self._lock_file is not None:
            self._lock_file.close()
        # Let the engine go with its last reference (it keeps this store's hook, which
        # refuses writes now): the two would otherwise wait for the cycle collector.
        self._engine = None


class _Ticket:
    """One queued write's outcome, waited for by its writer."""

    __slots__ = ("_error", "_event", "_result")

    def __init__(self) -> None:
        self._event = threading.Event()
        self._result: WriteResult | None = None
        self._error: BaseException | None = None

    def done(self, result: WriteResult) -> None:
        self._result = result
        self._event.set()

    def fail(self, error: BaseException) -> None:
        self._error = error
        self._event.set()

    def wait(self) -> WriteResult:
        self._event.wait()
        if self._error is not None:
            raise self._error
        assert self._result is not None
        return self._result


class _ReadAhead:
    """The records of ``items``, produced by a thread from the moment this is made, up
    to ``depth`` ahead of the consumer: the journal is read and decoded (SQLite and
    numpy release the GIL) while the checkpoint is checked and restored, then while
    the records before are applied. An error of the producer is raised to the
    consumer at its place in the sequence; ``close`` (or leaving ``with``) stops the
    producer, also before the consumer is done."""

    def __init__(self, items: Iterator[WriteRecord], depth: int = 2) -> None:
        self._ahead: queue.Queue[tuple[WriteRecord | None, BaseException | None]]
        self._ahead = queue.Queue(depth)
        self._stop = threading.Event()
        self._producer = threading.Thread(
            target=self._produce, args=(items,), name="scoresvc-journal-reader", daemon=True
        )
        self._producer.start()

    def __enter__(self) -> _ReadAhead:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __iter__(self) -> Iterator[WriteRecord]:
        while True:
            item, error = self._ahead.get()
            if error is not None:
                raise error
            if item is None:
                return
            yield item

    def close(self) -> None:
        self._stop.set()
        self._producer.join()

    def _put(self, item: tuple[WriteRecord | None, BaseException | None]) -> bool:
        while not self._stop.is_set():
            with contextlib.suppress(queue.Full):
                self._ahead.put(item, timeout=0.1)
                return True
        return False

    def _produce(self, items: Iterator[WriteRecord]) -> None:
        try:
            for item in items:
                if not self._put((item, None)):
                    return
        except BaseException as exc:  # handed to the consumer, raised there
            self._put((None, exc))
            return
        self._put((None, None))


def _events_in(record: WriteRecord) -> int:
    if record.kind in ("interactions", "log"):
        return sum(len(record.arrays[k]) for k in ("actor", "endorser") if k in record.arrays)
    return 1
