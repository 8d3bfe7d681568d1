"""Score history on disk: every user's numbers at regular times, kept for a while.

Layout of ``<data-dir>/history/``::

    users.svhu                      the history's user table: row i is the i-th user
                                    ever recorded (ids only grow, so rows never move)
    point-<unix microseconds>.svhp  one point: every user's numbers then, by row

Both are array files::

    magic (b"SVHU" or b"SVHP") | format version (u32) | header length (u64)
    | JSON header (what the file holds, each array's dtype, shape and offset)
    | each array's bytes, each starting at a multiple of 64

A point holds, per row of the user table as it was then: ``status`` (u1; 255 for a
user not seen yet), ``influence`` (f8, so the score, derived from it and the point's
top influence, is exact), ``percentile`` (f4), ``received`` (f4, the snapshot's
explanation sums, columns named in the header), ``teleport_share`` (f4), and for
``ExplainChange`` the share of trust it keeps (``trust_kept``, f4) and its
``CONTRIBUTORS`` largest in-flows ``d I_a P(a->u)`` (``contributor_rows``, i4 rows of
the user table, -1 past the last; ``contributor_flow``, f8): 89 bytes a user. Per
topic it holds the topic's ranked users (u4 rows, sorted), their values (f8) and
percentiles (f4): 16 bytes a ranked (topic, user) entry. Reads fetch only
the bytes of the one user asked for (``os.pread``, a binary search within a topic),
so no point is ever read whole into memory.

Every file is written to a temporary name, fsynced, renamed into place and its
directory fsynced; the user table is replaced before the point that needs its new
rows. A crash mid-write leaves the points completed before it, whole, and at most a
``.tmp`` file (removed at the next start) and user-table rows no point uses yet.

An erasure (``History.erase``) zeroes the user's row, and every reference to it as a
contributor, in every point, and overwrites its id in the user table with an empty
tombstone, each file rewritten atomically, the table last. ``erasing.json`` (the
user's salted digest, never the id) is written first and removed last: a start that
finds it finishes the erasure.
"""

from __future__ import annotations

import bisect
import contextlib
import json
import logging
import math
import os
import re
import shutil
import struct
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from ..core import erasure
from ..core.change import Standing
from ..core.history import HistoryPoint
from ..core.model import RECEIVED_COLUMNS, AccountStatus
from ..core.scoring import log_scale_one
from ..core.snapshot import Snapshot
from ..core.topics import normalize_topic
from ..core.users import UserIds
from .checkpoint import _fsync_directory

log = logging.getLogger("scoresvc.storage.history")

HISTORY_DIR = "history"
USERS_FILE = "users.svhu"
ERASING_FILE = "erasing.json"
USERS_MAGIC = b"SVHU"
POINT_MAGIC = b"SVHP"
VERSION = 1
ALIGN = 64
ABSENT = 255  # status of a user the point precedes
DEFAULT_INTERVAL_SECONDS = 86_400.0
DEFAULT_RETENTION_SECONDS = 90 * 86_400.0
#: In-flows recorded per user and point: ExplainChange names these contributors.
CONTRIBUTORS = 4
_PREFIX = struct.Struct("<4sIQ")
_POINT_NAME = re.compile(r"^point-(\d{20})\.svhp$")
_STATUSES = tuple(AccountStatus)


class CorruptHistory(ValueError):
    """A history file that is truncated or of an unknown format."""


def point_name(micros: int) -> str:
    return f"point-{micros:020d}.svhp"


# ---------------------------------------------------------------------- array files


def _write_arrays(path: Path, magic: bytes, meta: dict[str, Any], arrays: dict[str, Any]) -> None:
    """``arrays`` and ``meta`` to ``path``, atomically (temporary file, fsync, rename,
    directory fsync)."""
    arrays = {name: np.ascontiguousarray(a) for name, a in arrays.items()}
    layout, offset = [], 0  # offsets from the data's start, the aligned end of the header
    for name, a in arrays.items():
        layout.append([name, a.dtype.str, list(a.shape), offset])
        offset += a.nbytes + (-a.nbytes % ALIGN)
    header = json.dumps(
        {**meta, "arrays": layout, "data_bytes": offset}, separators=(",", ":")
    ).encode("utf-8")
    temporary = path.with_name(f".{path.name}.tmp")
    try:
        with open(temporary, "wb") as f:
            f.write(_PREFIX.pack(magic, VERSION, len(header)) + header)
            f.write(b"\0" * (-(_PREFIX.size + len(header)) % ALIGN))
            for a in arrays.values():
                f.write(a.reshape(-1).view(np.uint8).data if a.size else b"")
                f.write(b"\0" * (-a.nbytes % ALIGN))
            f.flush()
            os.fsync(f.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    _fsync_directory(path.parent)


@dataclass(frozen=True)
class _Layout:
    """An array file's header: its meta and where each array lies."""

    meta: dict[str, Any]
    arrays: dict[str, tuple[np.dtype, tuple[int, ...], int]]  # name -> dtype, shape, position

    def element(self, fd: int, name: str, row: int) -> np.ndarray:
        """Row ``row`` of array ``name`` (a scalar's array, or one row of a 2-D array)."""
        dtype, shape, position = self.arrays[name]
        width = int(np.prod(shape[1:], dtype=np.int64)) if len(shape) > 1 else 1
        size = dtype.itemsize * width
        data = os.pread(fd, size, position + row * size)
        if len(data) != size:
            raise CorruptHistory(f"{name}: shorter than its header says")
        return np.frombuffer(data, dtype, width)


def _layout(fd: int, name: str, magic: bytes) -> _Layout:
    prefix = os.pread(fd, _PREFIX.size, 0)
    if len(prefix) != _PREFIX.size:
        raise CorruptHistory(f"{name}: too short")
    found, version, header_size = _PREFIX.unpack(prefix)
    if found != magic or version != VERSION:
        raise CorruptHistory(f"{name}: not a version {VERSION} {magic.decode()} file")
    try:
        meta = json.loads(os.pread(fd, header_size, _PREFIX.size))
    except ValueError:
        raise CorruptHistory(f"{name}: unreadable header") from None
    start = _PREFIX.size + header_size
    start += -start % ALIGN
    size = os.fstat(fd).st_size
    if size != start + meta["data_bytes"]:
        raise CorruptHistory(f"{name}: {size} bytes, not {start + meta['data_bytes']}")
    arrays = {n: (np.dtype(d), tuple(shape), start + at) for n, d, shape, at in meta["arrays"]}
    return _Layout(meta, arrays)


def _read_array(fd: int, layout: _Layout, name: str) -> np.ndarray:
    dtype, shape, position = layout.arrays[name]
    count = int(np.prod(shape, dtype=np.int64))
    data = os.pread(fd, count * dtype.itemsize, position)
    return np.frombuffer(data, dtype, count).reshape(shape)


def _read_users(path: Path) -> list[str]:
    with open(path, "rb") as f:
        layout = _layout(f.fileno(), path.name, USERS_MAGIC)
        blob = _read_array(f.fileno(), layout, "blob")
        offsets = _read_array(f.fileno(), layout, "offsets")
    return UserIds(blob, offsets).decoded()


# ---------------------------------------------------------------------- the history


class History:
    """The score history kept in ``directory``: ``record`` a snapshot, read one user's
    ``points``. Points older than ``retention_seconds`` are dropped as new ones come.
    Safe to read from many threads while one records."""

    def __init__(
        self,
        directory: str | Path,
        retention_seconds: float = DEFAULT_RETENTION_SECONDS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.directory = Path(directory)
        self.retention_seconds = retention_seconds
        self.clock = clock
        self.directory.mkdir(parents=True, exist_ok=True)
        for leftover in self.directory.glob(".*.tmp"):  # a write a crash interrupted
            leftover.unlink(missing_ok=True)
        users = self.directory / USERS_FILE
        self._ids: list[str] = _read_users(users) if users.exists() else []
        self._row = {user_id: i for i, user_id in enumerate(self._ids) if user_id}
        self._points = sorted(_point_micros(self.directory))  # microseconds, ascending
        self._layouts: dict[int, _Layout] = {}
        self._lock = threading.Lock()  # the lists above
        self._recording = threading.Lock()  # one record at a time
        self._recorded = threading.Condition(self._lock)
        self._temporary = False
        self._erased_through = 0  # snapshots before this sequence are not recorded
        self.drop_expired()
        self._finish_erasure()

    @classmethod
    def temporary(cls, retention_seconds: float = DEFAULT_RETENTION_SECONDS) -> History:
        """A history in a new temporary directory, removed by ``close`` (a server
        without a data directory)."""
        history = cls(tempfile.mkdtemp(prefix="scoresvc-history-"), retention_seconds)
        history._temporary = True
        return history

    def close(self) -> None:
        if self._temporary:
            shutil.rmtree(self.directory, ignore_errors=True)

    # ------------------------------------------------------------------ writing

    def record(
        self, snap: Snapshot, at: float | None = None, inflows: Inflows | None = None
    ) -> float:
        """Record every user of ``snap`` as a point at ``at`` (now by default; a time
        at or before the last point's is moved just after it), with each user's largest
        ``inflows`` (``Engine.top_inflows``: sources and flows) when given. Returns the
        point's time (NaN: nothing recorded, ``snap`` predates an erasure)."""
        with self._recording:
            if snap.sequence < self._erased_through:
                return math.nan
            micros = round((self.clock() if at is None else at) * 1e6)
            with self._lock:
                if self._points:
                    micros = max(micros, self._points[-1] + 1)
            rows = self._rows_for(snap)
            meta, arrays = _point_arrays(snap, rows, len(self._ids), micros)
            arrays.update(_contributor_arrays(snap, rows, len(self._ids), inflows))
            _write_arrays(self.directory / point_name(micros), POINT_MAGIC, meta, arrays)
            with self._lock:
                self._points.append(micros)
                self._recorded.notify_all()
        self.drop_expired()
        return micros / 1e6

    def _rows_for(self, snap: Snapshot) -> np.ndarray:
        """Each of ``snap``'s users' row in the user table, adding the new ones (and
        storing the grown table before any point uses it)."""
        ids = snap.user_ids[: snap.n_users]  # decoded once; not the ids added since
        rows = np.fromiter((self._row.get(u, -1) for u in ids), np.int64, len(ids))
        new = np.flatnonzero(rows < 0)
        if len(new):
            added = [ids[i] for i in new.tolist()]
            table = UserIds.of(self._ids + added)
            _write_arrays(
                self.directory / USERS_FILE,
                USERS_MAGIC,
                {"users": len(table)},
                {"blob": table.blob, "offsets": table.offsets},
            )
            with self._lock:
                rows[new] = np.arange(len(self._ids), len(self._ids) + len(added))
                self._row.update(zip(added, rows[new].tolist()))
                self._ids.extend(added)
        return rows

    # ------------------------------------------------------------------ erasure

    def erase(self, user_id: str, erase: Callable[[], int]) -> int:
        """Erase ``user_id`` from the history around ``erase`` (the engine's erasure,
        returning its sequence; nothing is recorded meanwhile, nor any snapshot from
        before it after). Returns the sequence."""
        with self._recording:
            salt = os.urandom(16)
            marker = {"salt": salt.hex(), "digest": erasure.digest(user_id, salt)}
            _write_bytes(self.directory / ERASING_FILE, json.dumps(marker).encode())
            try:
                sequence = erase()
            except BaseException:  # refused (unknown user, say): nothing to finish
                (self.directory / ERASING_FILE).unlink(missing_ok=True)
                raise
            self._erased_through = max(self._erased_through, sequence)
            self._forget(user_id)
        return sequence

    def _finish_erasure(self) -> None:
        """Finish an erasure a crash interrupted (``erasing.json`` still there)."""
        marker = self.directory / ERASING_FILE
        if not marker.exists():
            return
        found = json.loads(marker.read_text())
        row = erasure.find(self._ids, bytes.fromhex(found["salt"]), found["digest"])
        if row is None:  # the table, written last, has it no more
            marker.unlink()
            _fsync_directory(self.directory)
        else:
            self._forget(self._ids[row])

    def _forget(self, user_id: str) -> None:
        """Zero ``user_id``'s row in every point, then tombstone it in the table."""
        row = self._row.get(user_id)
        if row is not None:
            with self._lock:
                points = list(self._points)
            for micros in points:
                _erase_row(self.directory / point_name(micros), row)
                with self._lock:
                    self._layouts.pop(micros, None)
            with self._lock:
                ids = [*self._ids[:row], "", *self._ids[row + 1 :]]
                table = UserIds.of(ids)
                _write_arrays(
                    self.directory / USERS_FILE,
                    USERS_MAGIC,
                    {"users": len(table)},
                    {"blob": table.blob, "offsets": table.offsets},
                )
                self._ids = ids
                del self._row[user_id]
        (self.directory / ERASING_FILE).unlink(missing_ok=True)
        _fsync_directory(self.directory)

    def drop_expired(self, now: float | None = None) -> int:
        """Remove the points older than the retention; returns how many."""
        cutoff = round(((self.clock() if now is None else now) - self.retention_seconds) * 1e6)
        with self._lock:
            cut = bisect.bisect_left(self._points, cutoff)
            expired, self._points = self._points[:cut], self._points[cut:]
            for micros in expired:
                self._layouts.pop(micros, None)
        for micros in expired:
            (self.directory / point_name(micros)).unlink(missing_ok=True)
        if expired:
            _fsync_directory(self.directory)
        return len(expired)

    def wait_for_points(self, count: int, timeout: float) -> bool:
        """Until at least ``count`` points are kept (False after ``timeout`` seconds)."""
        with self._recorded:
            return self._recorded.wait_for(lambda: len(self._points) >= count, timeout)

    # ------------------------------------------------------------------ reading

    def times(self) -> list[float]:
        """The kept points' times, oldest first."""
        with self._lock:
            return [m / 1e6 for m in self._points]

    def knows(self, user_id: str) -> bool:
        with self._lock:
            return user_id in self._row

    def points(
        self,
        user_id: str,
        topic: str = "",
        start: float | None = None,
        end: float | None = None,
        limit: int | None = None,
    ) -> list[HistoryPoint]:
        """``user_id``'s points from ``start`` to ``end`` (inclusive, to the nearest
        microsecond; None: unbounded), oldest first, at most ``limit``; points from
        before the user was seen are left out."""
        topic = normalize_topic(topic)
        with self._lock:
            row = self._row.get(user_id)
            lo = 0 if start is None else bisect.bisect_left(self._points, _micros(start))
            hi = len(self._points)
            if end is not None:
                hi = bisect.bisect_right(self._points, _micros(end))
            selected = self._points[lo:hi]
        out: list[HistoryPoint] = []
        if row is None:
            return out
        for micros in selected:
            point = self._read_point(micros, row, topic)
            if point is not None:
                out.append(point)
                if limit is not None and len(out) == limit:
                    break
        return out

    def standing(self, user_id: str, at: float) -> Standing | None:
        """The user's numbers at the latest point at or before ``at`` that has the
        user, as a change reads them (its recorded largest contributors only); None
        when there is no such point."""
        with self._lock:
            row = self._row.get(user_id)
            candidates = self._points[: bisect.bisect_right(self._points, _micros(at))]
        if row is None:
            return None
        for micros in reversed(candidates):
            found = self._with_point(
                micros, lambda fd, layout: _standing_of(fd, layout, row, self._ids)
            )
            if found is not None:
                return replace(found, influence_of=partial(self._influence_at, micros))
        return None

    def _influence_at(self, micros: int, user_id: str) -> float | None:
        """A user's influence at a point (None when the point does not have it)."""
        row = self._row.get(user_id)

        def read(fd: int, layout: _Layout) -> float | None:
            if row is None or row >= layout.meta["users"]:
                return None
            if int(layout.element(fd, "status", row)[0]) == ABSENT:
                return None
            return float(layout.element(fd, "influence", row)[0])

        return self._with_point(micros, read)

    def _with_point(self, micros: int, read: Callable[[int, _Layout], Any]) -> Any:
        """``read(fd, layout)`` of a point (None if the retention dropped it)."""
        name = point_name(micros)
        try:
            fd = os.open(self.directory / name, os.O_RDONLY)
        except FileNotFoundError:  # dropped by the retention meanwhile
            return None
        try:
            layout = self._layouts.get(micros)
            if layout is None:
                layout = _layout(fd, name, POINT_MAGIC)
                with self._lock:
                    self._layouts[micros] = layout
            return read(fd, layout)
        finally:
            os.close(fd)

    def _read_point(self, micros: int, row: int, topic: str) -> HistoryPoint | None:
        return self._with_point(micros, lambda fd, layout: _point_of(fd, layout, row, topic))


def _write_bytes(path: Path, data: bytes) -> None:
    """``data`` to ``path`` atomically."""
    temporary = path.with_name(f".{path.name}.tmp")
    with open(temporary, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(temporary, path)
    _fsync_directory(path.parent)


def _erase_row(path: Path, row: int) -> None:
    """Rewrite the point at ``path`` with user-table row ``row`` absent: its numbers
    zeroed, its topic entries and its references as a contributor removed."""
    try:
        f = open(path, "rb")  # noqa: SIM115
    except FileNotFoundError:  # dropped by the retention meanwhile
        return
    with f:
        layout = _layout(f.fileno(), path.name, POINT_MAGIC)
        arrays = {name: _read_array(f.fileno(), layout, name).copy() for name in layout.arrays}
    meta = {k: v for k, v in layout.meta.items() if k not in ("arrays", "data_bytes")}
    has_row = row < meta["users"]
    if has_row:
        arrays["status"][row] = ABSENT
        for name in ("influence", "percentile", "received", "teleport_share"):
            arrays[name][row] = 0
    if "contributor_rows" in arrays:
        named = arrays["contributor_rows"] == row
        if has_row:
            arrays["trust_kept"][row] = 1
            named[row] = True
        arrays["contributor_rows"][named] = -1
        arrays["contributor_flow"][named] = 0
    keep = arrays["topic_rows"] != row
    topics, at = {}, 0
    for name, (lo, hi, top) in meta["topics"].items():
        size = int(keep[lo:hi].sum())
        topics[name] = [at, at + size, top]
        at += size
    meta["topics"] = topics
    for name in ("topic_rows", "topic_value", "topic_percentile"):
        arrays[name] = arrays[name][keep]
    _write_arrays(path, POINT_MAGIC, meta, arrays)


def _point_micros(directory: Path) -> Iterator[int]:
    for path in directory.glob("point-*.svhp"):
        found = _POINT_NAME.match(path.name)
        if found:
            yield int(found.group(1))


#: Per user, the largest in-flows: sources (dense ids, -1 past the last) and flows.
Inflows = tuple[np.ndarray, np.ndarray]


def _contributor_arrays(
    snap: Snapshot, rows: np.ndarray, users: int, inflows: Inflows | None
) -> dict[str, np.ndarray]:
    """A point's ``trust_kept`` and contributor columns, by user-table row."""
    kept = np.ones(users, np.float32)
    kept[rows[snap.distrusted]] = snap.trust_kept
    sources = np.full((users, CONTRIBUTORS), -1, np.int32)
    flows = np.zeros((users, CONTRIBUTORS))
    if inflows is not None:
        dense, flow = inflows[0][:, :CONTRIBUTORS], inflows[1][:, :CONTRIBUTORS]
        width = dense.shape[1]
        sources[rows, :width] = np.where(dense >= 0, rows[np.maximum(dense, 0)], -1)
        flows[rows, :width] = flow
    return {"trust_kept": kept, "contributor_rows": sources, "contributor_flow": flows}


def _micros(seconds: float) -> int:
    """A bound to the nearest microsecond, the resolution points are recorded at: a
    double holds today's times to about 0.24 us, so a point's own time, passed through
    one (or through a Timestamp rounded from one), still names that point."""
    return round(seconds * 1e6)


def _point_arrays(
    snap: Snapshot, rows: np.ndarray, users: int, micros: int
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """A point's header and columns: ``snap``'s users at their table ``rows``."""
    n = snap.n_users
    status = np.full(users, ABSENT, np.uint8)
    status[rows] = snap.status[:n]
    influence = np.zeros(users)
    influence[rows] = snap.influence
    percentile = np.zeros(users, np.float32)
    percentile[rows] = snap.percentiles(np.arange(n))
    received = np.zeros((users, snap.received.shape[1]), np.float32)
    received[rows] = snap.received[:n]
    teleport = np.zeros(users, np.float32)
    teleport[rows] = snap.teleport_share[:n]
    arrays: dict[str, np.ndarray] = {
        "status": status,
        "influence": influence,
        "percentile": percentile,
        "received": received,
        "teleport_share": teleport,
    }
    topics: dict[str, list[float]] = {}
    topic_rows, values, percentiles = [], [], []
    at = 0
    for name, t in sorted(list(snap.topic_index.items())):  # a copy: the engine adds topics
        if not name or t not in snap.topic_bounds:
            continue
        lo, hi, top = snap.topic_bounds[t]
        ranked = rows[snap.topic_keys[lo:hi] - t * n]
        order = np.argsort(ranked, kind="stable")
        topic_rows.append(ranked[order].astype(np.uint32))
        values.append(snap.topic_value[lo:hi][order])
        percentiles.append(snap.topic_percentile[lo:hi][order].astype(np.float32))
        topics[name] = [at, at + hi - lo, float(top)]
        at += hi - lo
    arrays["topic_rows"] = np.concatenate(topic_rows) if topic_rows else np.zeros(0, np.uint32)
    arrays["topic_value"] = np.concatenate(values) if values else np.zeros(0)
    arrays["topic_percentile"] = (
        np.concatenate(percentiles) if percentiles else np.zeros(0, np.float32)
    )
    meta = {
        "time_micros": micros,
        "compute_time": snap.time,
        "sequence": snap.sequence,
        "users": users,
        "influence_max": snap.influence_max,
        "received_columns": list(RECEIVED_COLUMNS),
        "topics": topics,
    }
    return meta, arrays


class _Rows(Sequence[int]):
    """A topic's sorted user rows, read a row at a time (for a binary search)."""

    def __init__(self, fd: int, layout: _Layout, lo: int, hi: int) -> None:
        self.fd, self.layout, self.lo, self.hi = fd, layout, lo, hi

    def __len__(self) -> int:
        return self.hi - self.lo

    def __getitem__(self, i: Any) -> Any:
        return int(self.layout.element(self.fd, "topic_rows", self.lo + i)[0])


def _point_of(fd: int, layout: _Layout, row: int, topic: str) -> HistoryPoint | None:
    meta = layout.meta
    if row >= meta["users"]:
        return None
    status = int(layout.element(fd, "status", row)[0])
    if status == ABSENT:
        return None
    received = layout.element(fd, "received", row)
    sums = {c: _shortest(v) for c, v in zip(meta["received_columns"], received)}
    if topic:
        lo, hi, top = meta["topics"].get(topic, (0, 0, 0.0))
        rows = _Rows(fd, layout, int(lo), int(hi))
        i = bisect.bisect_left(rows, row)
        value = percentile = 0.0
        if i < len(rows) and rows[i] == row:
            value = float(layout.element(fd, "topic_value", int(lo) + i)[0])
            percentile = _shortest(layout.element(fd, "topic_percentile", int(lo) + i)[0])
        influence, score = value, log_scale_one(value, top)
    else:
        influence = float(layout.element(fd, "influence", row)[0])
        score = log_scale_one(influence, meta["influence_max"])
        percentile = _shortest(layout.element(fd, "percentile", row)[0])
    return HistoryPoint(
        time=meta["time_micros"] / 1e6,
        compute_time=meta["compute_time"],
        sequence=meta["sequence"],
        topic=topic,
        status=_STATUSES[status],
        score=score,
        influence=influence,
        percentile=percentile,
        engagement_received=sums.get("engagement_received", 0.0),
        engagement_saturated=sums.get("engagement_saturated", 0.0),
        endorsements_received=sums.get("endorsements_received", 0.0),
        endorsements_effective=sums.get("endorsements_effective", 0.0),
        reciprocity_removed=sums.get("reciprocity_removed", 0.0),
        teleport_share=_shortest(layout.element(fd, "teleport_share", row)[0]),
    )


def _standing_of(fd: int, layout: _Layout, row: int, ids: Sequence[str]) -> Standing | None:
    """One user's ``Standing`` at a point (None before the user was seen); a point
    recorded without contributors has none."""
    meta = layout.meta
    if row >= meta["users"]:
        return None
    status = int(layout.element(fd, "status", row)[0])
    if status == ABSENT:
        return None
    influence = float(layout.element(fd, "influence", row)[0])
    kept, contributors = 1.0, {}
    if "contributor_rows" in layout.arrays:
        kept = float(layout.element(fd, "trust_kept", row)[0])
        sources = layout.element(fd, "contributor_rows", row)
        flows = layout.element(fd, "contributor_flow", row)
        for a, f in zip(sources.tolist(), flows.tolist()):
            if a >= 0 and f > 0:
                contributors[ids[a]] = (f, float(layout.element(fd, "influence", a)[0]))
    share = float(layout.element(fd, "teleport_share", row)[0])
    return Standing(
        # The time the recorded numbers were evaluated at (the snapshot's), as the
        # later side of a change is: a point may be recorded after it.
        time=meta["compute_time"],
        status=_STATUSES[status],
        influence=influence,
        influence_max=meta["influence_max"],
        kept=kept,
        teleport=share * influence / kept if kept > 0 else 0.0,
        contributors=contributors,
        complete=False,
    )


def _shortest(value: np.float32) -> float:
    """A float32 as the shortest decimal that reads back as it (99.95, not
    99.94999694824219): what was stored, without digits it never had."""
    return float(str(value))


# ---------------------------------------------------------------------- recording


class HistoryRecorder:
    """Records ``snapshot()`` (a snapshot and its users' largest in-flows, as
    ``Engine.top_inflows`` returns them) into ``history`` at start and every
    ``interval_seconds`` after, in a thread of its own (never on a read's path)."""

    def __init__(
        self,
        history: History,
        snapshot: Callable[[], tuple[Snapshot, np.ndarray, np.ndarray]],
        interval_seconds: float = DEFAULT_INTERVAL_SECONDS,
    ) -> None:
        if interval_seconds <= 0:
            raise ValueError("the history interval must be above 0 seconds")
        self.history = history
        self.snapshot = snapshot
        self.interval_seconds = interval_seconds
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="scoresvc-history", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def _run(self) -> None:
        due = time.monotonic()
        while not self._stop.is_set():
            try:
                started = time.perf_counter()
                snap, *inflows = self.snapshot()
                at = self.history.record(snap, inflows=(inflows[0], inflows[1]))
                log.debug(
                    "history: recorded %d users at %.6f in %.1f ms",
                    snap.n_users,
                    at,
                    1000 * (time.perf_counter() - started),
                )
            except Exception:  # a full disk, say: the next interval tries again
                log.exception("recording the score history failed")
            due += self.interval_seconds
            now = time.monotonic()
            if due < now:  # a recording longer than the interval: skip the missed ones
                due = now + self.interval_seconds - (now - due) % self.interval_seconds
            if self._stop.wait(due - now):
                return


# ---------------------------------------------------------------------- archives

ARCHIVE_DIR = HISTORY_DIR
ARCHIVE_INDEX = "index.json"


def export_to(history_dir: Path, out: Path) -> int:
    """Copy the history in ``history_dir`` (a server may be recording into it) to
    ``out/history``, with an index of its files; returns the points copied."""
    # The points are listed before the user table is copied: the table only grows, and
    # is replaced before a point needing new rows appears, so it holds all their rows.
    points = sorted(_point_micros(history_dir))
    if not points:
        return 0
    target = out / ARCHIVE_DIR
    target.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(history_dir / USERS_FILE, target / USERS_FILE)
    copied = []
    for micros in points:
        with contextlib.suppress(FileNotFoundError):  # dropped meanwhile by the retention
            shutil.copyfile(history_dir / point_name(micros), target / point_name(micros))
            copied.append(point_name(micros))
    index = {"files": [USERS_FILE, *copied]}
    (target / ARCHIVE_INDEX).write_text(json.dumps(index, indent=2) + "\n")
    return len(copied)


def import_from(archive: Path, history_dir: Path) -> int:
    """Copy an archive's history (``export_to``) into ``history_dir``, checking each
    file, each written atomically; returns the points copied (0: none in the archive)."""
    source = archive / ARCHIVE_DIR
    index = source / ARCHIVE_INDEX
    if not index.exists():
        return 0
    names = json.loads(index.read_text())["files"]
    history_dir.mkdir(parents=True, exist_ok=True)
    for name in names:  # the user table first, as export listed it
        path = source / name
        magic = USERS_MAGIC if name == USERS_FILE else POINT_MAGIC
        if name != USERS_FILE and not _POINT_NAME.match(name):
            raise CorruptHistory(f"{path}: not a history file name")
        with open(path, "rb") as f:
            _layout(f.fileno(), str(path), magic)
        temporary = history_dir / f".{name}.tmp"
        shutil.copyfile(path, temporary)
        with open(temporary, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(temporary, history_dir / name)
    _fsync_directory(history_dir)
    return max(len(names) - 1, 0)
