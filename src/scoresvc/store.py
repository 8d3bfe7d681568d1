"""The embedded durable store: a write-ahead journal in SQLite (WAL mode).

Every accepted write is one row, committed before the engine applies it and before
the caller is answered; start-up replays the rows in sequence order. Durability:

* ``full`` (default): ``synchronous=FULL``; a commit is on disk before it returns, so
  an acknowledged write survives power loss (as far as the disk honours fsync).
* ``normal``: ``synchronous=NORMAL`` in WAL mode; commits survive a crash of the
  process, but the last ones may be lost if the machine loses power.

Not here yet (issue 4): checkpoints of the aggregated state with compaction of the
journal, group commit across concurrent writers, export and import.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import struct
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from .engine import Engine, WriteRecord
from .errors import StorageError
from .users import UserIds

log = logging.getLogger("scoresvc.store")

DB_NAME = "scoresvc.db"
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


class Store:
    """A data directory holding the journal of every accepted write."""

    def __init__(self, data_dir: str | Path, durability: str = "full") -> None:
        if durability not in SYNCHRONOUS:
            raise ValueError("durability must be 'full' or 'normal'")
        self.path = Path(data_dir)
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(
                self.path / DB_NAME, isolation_level=None, check_same_thread=False
            )
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute(f"PRAGMA synchronous={SYNCHRONOUS[durability]}")
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS writes ("
                " sequence INTEGER PRIMARY KEY, kind TEXT NOT NULL, payload BLOB NOT NULL)"
            )
        except (OSError, sqlite3.Error) as exc:
            raise StorageError(f"cannot open the data directory {self.path}: {exc}") from exc
        self._lock = threading.Lock()
        self.durability = durability

    def append(self, record: WriteRecord) -> None:
        """Commit one write (called by the engine before it applies the write)."""
        payload = encode(record)
        with self._lock:
            try:
                self._db.execute(
                    "INSERT INTO writes (sequence, kind, payload) VALUES (?, ?, ?)",
                    (record.sequence, record.kind, payload),
                )
            except sqlite3.Error as exc:
                log.error("write %d not stored: %s", record.sequence, exc)
                raise StorageError(f"the write could not be stored: {exc}") from exc

    def records(self) -> Iterator[WriteRecord]:
        with self._lock:
            rows = self._db.execute(
                "SELECT sequence, kind, payload FROM writes ORDER BY sequence"
            ).fetchall()
        for sequence, kind, payload in rows:
            yield decode(sequence, kind, payload)

    def count(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT count(*) FROM writes").fetchone()[0])

    def integrity_check(self) -> str:
        with self._lock:
            return str(self._db.execute("PRAGMA integrity_check").fetchone()[0])

    def replay_into(
        self, engine: Engine, progress: Callable[[int, int], None] | None = None
    ) -> int:
        """Apply every stored write to a fresh engine, then journal new ones here."""
        total = self.count()
        started = time.perf_counter()
        done = 0
        for record in self.records():
            engine.replay(record)
            done += 1
            if progress is not None and (done % 1000 == 0 or done == total):
                progress(done, total)
        engine.attach_journal(self.append)
        log.info(
            "replayed %d writes from %s in %.1f s", done, self.path, time.perf_counter() - started
        )
        return done

    def close(self) -> None:
        with self._lock:
            self._db.close()
