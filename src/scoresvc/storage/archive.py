"""Event archives: what ``scoresvc export`` writes and ``scoresvc import`` (and the
batch engine) read.

An archive is a directory of four tables and a manifest::

    accounts.parquet      user_id, status (NORMAL, SEED, SUSPENDED), first_seen_seconds
                          (when the account was first seen; inf: not yet): every user
    interactions.parquet  actor_id, target_id, kind (LIKE ...), event_time_seconds, weight
    endorsements.parquet  endorser_id, endorsee_id, topic, event_time_seconds, retracted
    distrusts.parquet     distruster_id, distrusted_id, topic, event_time_seconds,
                          retracted (docs/model.md, step 8; absent from older archives,
                          which then hold no distrust)
    manifest.json         format, version, tables and row counts, the compaction time
                          and the latest event folded into the compacted interactions
    moderation.json       the moderation trail (docs/model.md, "Moderation") and what
                          its invalidations in force set aside (absent when none)
    history/              the score history's files and an index (written and read by
                          ``scoresvc.storage.history``; absent when there is none)

or the same tables as ``.csv`` (for small data; needs nothing beyond the standard
library). Parquet needs pyarrow, a dependency of scoresvc.

Interactions covered by a checkpoint exist only as decayed sums, so an export writes
the compacted log (``Engine.compacted_log``): one row per (actor, target, kind) at the
compaction time, ``weight`` being how many events at that time weigh the same. They
read exactly at any time from the latest event folded in (``events.Compaction``). The
endorsement and distrust trails are exported whole, except the events an invalidation
in force set aside: the tables hold only what counts (so the batch engine, which reads
them, leaves out what moderation set aside), and ``moderation.json`` carries the
set-aside weight and events beside, so an import can still list and restore them.
Importing an archive rebuilds the same scores.

Accounts keep their age through an archive: where the accounts table has
``first_seen_seconds`` (every export's does), it dates the accounts and events do not;
an archive without it (written by hand, or by an older scoresvc) dates each account
by its earliest event in the archive (docs/model.md, "Accounts and their age").

An archive is read from a local directory or from shared storage by URL (``s3://``,
``gs://``, ``hdfs://``, ``file://``: pyarrow's file systems), so that every worker of a
cluster reads the same files (``Location``).
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import os
import posixpath
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np

from ..core.arrays import distinct
from ..core.engine import Engine
from ..core.events import Compaction, EventLog
from ..core.model import AccountStatus, InteractionKind, channel_of, kind_of
from ..core.moderation import ModerationAction
from ..core.topics import normalize_topics

FORMAT = "scoresvc-archive"
VERSION = 1
TABLES = ("accounts", "interactions", "endorsements", "distrusts")
KIND_NAMES = [k.name for k in InteractionKind]  # index = model.channel_of(kind)
STATUS_NAMES = [s.name for s in AccountStatus]  # index = status
#: Rows per chunk read or written: bounds memory whatever the archive's size.
CHUNK_ROWS = 1_000_000

MODERATION_FILE = "moderation.json"
#: Columns of moderation.json that hold users (positions in its ``user_ids``).
MODERATION_USER_COLUMNS = (
    "i_actor",
    "i_target",
    "e_endorser",
    "e_endorsee",
    "d_distruster",
    "d_distrusted",
)
#: The type of each moderation.json column, by its name after the table prefix.
MODERATION_DTYPES = {
    "action": np.int64,
    "actor": np.int64,
    "target": np.int64,
    "kind": np.int8,
    "weight": np.float64,
    "endorser": np.int64,
    "endorsee": np.int64,
    "distruster": np.int64,
    "distrusted": np.int64,
    "topic": np.int64,
    "ts": np.float64,
    "retracted": np.uint8,
}

Progress = Callable[[str, int, int], None]  # (table, rows done, rows in all)


class ArchiveError(ValueError):
    """An archive that cannot be read: missing files, unknown columns or values."""


def pyarrow_modules() -> Any:
    """``(pyarrow, pyarrow.parquet)``, or a clear error naming the extra to install."""
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError as exc:  # pragma: no cover - the extra is in the test install
        raise ArchiveError(
            "Parquet needs pyarrow (a dependency of scoresvc): pip install pyarrow"
        ) from exc
    return pa, pq


# ---------------------------------------------------------------------- locations

_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


@dataclass(frozen=True)
class Location:
    """A file or directory that every process of a cluster names alike: a local path
    made absolute where it is given (a worker resolves a relative one in its own
    working directory), or a URL of shared storage opened through pyarrow's file
    systems. Local paths need nothing beyond the standard library."""

    text: str

    @classmethod
    def of(cls, where: str | Path | Location) -> Location:
        if isinstance(where, Location):
            return where
        text = os.fspath(where)
        return cls(text if _URL.match(text) else os.path.abspath(text))

    @property
    def is_url(self) -> bool:
        return bool(_URL.match(self.text))

    @property
    def name(self) -> str:
        return posixpath.basename(self.text.rstrip("/"))

    @property
    def suffix(self) -> str:
        return posixpath.splitext(self.name)[1]

    def __str__(self) -> str:
        return self.text

    def join(self, name: str) -> Location:
        if self.is_url:
            return Location(self.text.rstrip("/") + "/" + name)
        return Location(os.path.join(self.text, name))

    def sibling(self, name: str) -> Location:
        """The location named ``name`` in the same directory."""
        if self.is_url:
            return Location(self.text.rstrip("/").rsplit("/", 1)[0] + "/" + name)
        return Location(os.path.join(os.path.dirname(self.text), name))

    def filesystem(self) -> tuple[Any, str]:
        """``(pyarrow file system, path in it)`` of a URL."""
        try:
            from pyarrow import fs
        except ImportError as exc:  # pragma: no cover - the extra is in the test install
            raise ArchiveError(
                f"{self}: URLs need pyarrow: pip install 'scoresvc[parquet]'"
            ) from exc
        try:
            return fs.FileSystem.from_uri(self.text)
        except (ValueError, OSError) as exc:  # unknown scheme, or no such bucket
            raise ArchiveError(f"{self}: {exc}") from exc

    def exists(self) -> bool:
        if not self.is_url:
            return os.path.exists(self.text)
        from pyarrow import fs

        filesystem, path = self.filesystem()
        return bool(filesystem.get_file_info(path).type != fs.FileType.NotFound)

    def open_read(self) -> IO[bytes]:
        """The file for reading, seekable (as Parquet needs)."""
        if not self.is_url:
            return open(self.text, "rb")
        filesystem, path = self.filesystem()
        return filesystem.open_input_file(path)  # type: ignore[no-any-return]

    def open_write(self) -> IO[bytes]:
        """The file for writing, its directory created first."""
        if not self.is_url:
            os.makedirs(os.path.dirname(self.text), exist_ok=True)
            return open(self.text, "wb")
        filesystem, path = self.filesystem()
        filesystem.create_dir(posixpath.dirname(path), recursive=True)
        return filesystem.open_output_stream(path)  # type: ignore[no-any-return]

    def read_text(self) -> str:
        with self.open_read() as f:
            return f.read().decode("utf-8")


# ---------------------------------------------------------------------- export


def export(
    engine: Engine, directory: str | Path, fmt: str = "parquet", progress: Progress | None = None
) -> dict[str, Any]:
    """Write everything ``engine`` holds to ``directory`` as an archive; returns the
    manifest."""
    if fmt not in ("parquet", "csv"):
        raise ValueError("format must be 'parquet' or 'csv'")
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    log, at = engine.compacted_log()
    assert log.compaction is not None and log.first_seen is not None
    names = np.asarray(log.user_ids, dtype=object)
    topics = np.asarray(log.topics, dtype=object)
    tables: dict[str, dict[str, np.ndarray]] = {
        "accounts": {
            "user_id": names,
            "status": np.asarray(STATUS_NAMES, dtype=object)[log.status],
            "first_seen_seconds": log.first_seen,
        },
        "interactions": {
            "actor_id": names[log.actor],
            "target_id": names[log.target],
            "kind": np.asarray(KIND_NAMES, dtype=object)[channel_of(log.kind)],
            "event_time_seconds": log.ts,
            "weight": log.weight if log.weight is not None else np.ones(len(log.actor)),
        },
        "endorsements": {
            "endorser_id": names[log.endorser],
            "endorsee_id": names[log.endorsee],
            "topic": topics[log.topic],
            "event_time_seconds": log.endorse_ts,
            "retracted": log.retracted,
        },
        "distrusts": {
            "distruster_id": names[log.distruster],
            "distrusted_id": names[log.distrusted],
            "topic": topics[log.distrust_topic],
            "event_time_seconds": log.distrust_ts,
            "retracted": log.distrust_retracted,
        },
    }
    manifest: dict[str, Any] = {
        "format": FORMAT,
        "version": VERSION,
        "sequence": engine.sequence,
        "exported_at": time.time(),
        "compacted_at": at,
        "latest_compacted_event": log.compaction.latest_event,
        "tables": {},
    }
    for name, columns in tables.items():
        rows = len(next(iter(columns.values())))
        path = out / f"{name}.{fmt}"
        (_write_parquet if fmt == "parquet" else _write_csv)(path, name, columns, progress)
        manifest["tables"][name] = {"file": path.name, "rows": rows}
    moderation = _moderation_document(engine, at)
    if moderation["actions"]:
        (out / MODERATION_FILE).write_text(json.dumps(moderation) + "\n")
        manifest["moderation"] = {"file": MODERATION_FILE, "actions": len(moderation["actions"])}
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def _moderation_document(engine: Engine, at: float) -> dict[str, Any]:
    """The moderation trail and what its invalidations in force set aside, as JSON:
    columns of lists, users and topics by name (only those the columns name)."""
    actions, ids, topics, arrays = engine.moderation_export(at)
    user_columns = [k for k in MODERATION_USER_COLUMNS if len(arrays[k])]
    used = distinct(np.concatenate([np.zeros(0, np.int64), *(arrays[k] for k in user_columns)]))
    position = {int(u): i for i, u in enumerate(used.tolist())}
    columns: dict[str, list[Any]] = {}
    for name, values in arrays.items():
        if name in MODERATION_USER_COLUMNS:
            columns[name] = [position[int(u)] for u in values.tolist()]
        else:
            columns[name] = values.tolist()
    return {
        "actions": [a.to_json() for a in actions],
        "compacted_at": at,
        "user_ids": [ids[u] for u in used.tolist()],
        "topics": topics,
        "columns": columns,
    }


def _import_moderation(engine: Engine, directory: Location) -> int:
    """Apply the archive's ``moderation.json`` (if any); returns the actions added."""
    path = directory.join(MODERATION_FILE)
    if not path.exists():
        return 0
    doc = json.loads(path.read_text())
    arrays = {
        name: np.asarray(values, dtype=MODERATION_DTYPES[name.split("_", 1)[1]])
        for name, values in doc["columns"].items()
    }
    actions = [ModerationAction.from_json(a) for a in doc["actions"]]
    engine.import_moderation(actions, doc["user_ids"], doc["topics"], arrays, doc["compacted_at"])
    return len(actions)


def _chunks(rows: int) -> Iterator[slice]:
    for start in range(0, max(rows, 1), CHUNK_ROWS):
        yield slice(start, min(start + CHUNK_ROWS, rows))


def _write_parquet(
    path: Path, name: str, columns: dict[str, np.ndarray], progress: Progress | None
) -> None:
    pa, pq = pyarrow_modules()
    rows = len(next(iter(columns.values())))
    schema = pa.schema(
        [
            (
                column,
                pa.string()
                if values.dtype == object
                else pa.bool_()
                if values.dtype == bool
                else pa.float64(),
            )
            for column, values in columns.items()
        ]
    )
    # Ids repeat: dictionary encoding stores each once per row group.
    with pq.ParquetWriter(path, schema, use_dictionary=True, compression="zstd") as writer:
        for part in _chunks(rows):
            writer.write_table(
                pa.table(
                    {c: pa.array(v[part], type=schema.field(c).type) for c, v in columns.items()},
                    schema=schema,
                )
            )
            if progress is not None:
                progress(name, part.stop, rows)


def _write_csv(
    path: Path, name: str, columns: dict[str, np.ndarray], progress: Progress | None
) -> None:
    rows = len(next(iter(columns.values())))
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(columns)
        for part in _chunks(rows):
            values = [
                [repr(float(x)) for x in v[part]] if v.dtype == np.float64 else v[part].tolist()
                for v in columns.values()
            ]
            writer.writerows(zip(*values))
            if progress is not None:
                progress(name, part.stop, rows)


# ---------------------------------------------------------------------- import


def manifest(directory: str | Path | Location) -> dict[str, Any] | None:
    """The archive's manifest (None for tables without one), checked for its format."""
    path = Location.of(directory).join("manifest.json")
    if not path.exists():
        return None
    found: dict[str, Any] = json.loads(path.read_text())
    if found.get("format") != FORMAT or found.get("version") != VERSION:
        raise ArchiveError(
            f"{path}: not a {FORMAT} version {VERSION} manifest"
            f" ({found.get('format')!r} version {found.get('version')!r})"
        )
    return found


def compaction(directory: str | Path | Location) -> Compaction | None:
    """What the archive's interactions hold when they are compacted sums (an export's),
    None when they are events at their own times."""
    found = manifest(directory)
    if found is None or found.get("compacted_at") is None:
        return None
    return Compaction(float(found["compacted_at"]), found.get("latest_compacted_event"))


def table_files(directory: str | Path | Location) -> dict[str, Location]:
    """The archive's table files by table name (from its manifest when it has one)."""
    base = Location.of(directory)
    found = manifest(base)
    if found is not None:
        files = {name: base.join(t["file"]) for name, t in found["tables"].items()}
    else:
        files = {}
        for name in TABLES:
            for ext in ("parquet", "csv"):
                if base.join(f"{name}.{ext}").exists():
                    files[name] = base.join(f"{name}.{ext}")
    if not files:
        raise ArchiveError(f"{base}: no accounts, interactions or endorsements tables")
    return files


def read(directory: str | Path | Location, progress: Progress | None = None) -> Iterator[EventLog]:
    """The archive in ``directory`` as event logs of at most ``CHUNK_ROWS`` rows each:
    accounts first, then interactions, endorsements and distrusts. Each log names only the users
    it uses (``user_ids``), so chunks stay small whatever the number of users."""
    files = table_files(directory)
    compacted = compaction(directory)
    dated = False  # the accounts table dates every account: events must not
    for name in TABLES:
        path = files.get(name)
        if path is None:
            continue
        for columns, done, total in _read_table(path):
            log = _convert(name, path, columns)
            if name == "interactions":
                log.compaction = compacted
            if name == "accounts":
                dated = dated or log.first_seen is not None
            elif dated:
                log.first_seen = np.full(log.n_users, np.inf)
            yield log
            if progress is not None:
                progress(name, done, total)


Part = tuple[Location, int | None]  # a table file and its Parquet row group (None: CSV)


def partitions(directory: str | Path | Location) -> dict[str, list[Part]]:
    """Each table's partitions for parallel readers: a Parquet row group each, or a
    whole CSV file."""
    out: dict[str, list[Part]] = {name: [] for name in TABLES}
    for name, path in table_files(directory).items():
        if path.suffix == ".parquet":
            _, pq = pyarrow_modules()
            with path.open_read() as f:
                groups = pq.ParquetFile(f).metadata.num_row_groups
            out[name] = [(path, g) for g in range(groups)]
        else:
            out[name] = [(path, None)]
    return out


def read_partition(table: str, path: Location, group: int | None) -> EventLog:
    """One partition (from ``partitions``) of a table as an event log."""
    if group is None:
        chunks = [columns for columns, _, _ in _read_table(path)]
        if not chunks:
            return EventLog(n_users=0, user_ids=[])
        columns = {k: np.concatenate([c[k] for c in chunks]) for k in chunks[0]}
        return _convert(table, path, columns)
    _, pq = pyarrow_modules()
    with path.open_read() as f:
        return _convert(table, path, _arrow_columns(pq.ParquetFile(f).read_row_group(group)))


def _convert(table: str, path: Location, columns: dict[str, Any]) -> EventLog:
    try:
        return _CONVERT[table](columns)
    except (KeyError, ValueError) as exc:
        raise ArchiveError(f"{path}: {exc}") from exc


def _arrow_columns(batch: Any) -> dict[str, Any]:
    """Columns of an Arrow batch or table: strings stay Arrow arrays (encoded in C++ by
    ``_dense`` and ``_codes``), numbers and flags become numpy."""
    pa, _ = pyarrow_modules()
    columns = {}
    for name, values in zip(batch.schema.names, batch.columns):
        if isinstance(values, pa.ChunkedArray):
            values = values.combine_chunks()
        if pa.types.is_dictionary(values.type):
            values = values.cast(values.type.value_type)
        if pa.types.is_string(values.type) or pa.types.is_large_string(values.type):
            columns[name] = values
        else:
            columns[name] = values.to_numpy(zero_copy_only=False)
    return columns


def _read_table(path: Location) -> Iterator[tuple[dict[str, Any], int, int]]:
    """Chunks of a table: Parquet strings as Arrow arrays, CSV as object arrays."""
    if path.suffix == ".parquet":
        _, pq = pyarrow_modules()
        with path.open_read() as f:
            table = pq.ParquetFile(f)
            total = table.metadata.num_rows
            done = 0
            for batch in table.iter_batches(batch_size=CHUNK_ROWS):
                done += batch.num_rows
                yield _arrow_columns(batch), done, total
        return
    if path.suffix != ".csv":
        raise ArchiveError(f"{path}: not a .parquet or .csv table")
    with path.open_read() as raw, io.TextIOWrapper(raw, newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if header is None:
            return
        chunk: list[list[str]] = []
        done = 0
        for row in reader:
            chunk.append(row)
            if len(chunk) == CHUNK_ROWS:
                done += len(chunk)
                yield _csv_columns(header, chunk), done, -1
                chunk = []
        done += len(chunk)
        yield _csv_columns(header, chunk), done, done


def _csv_columns(header: list[str], rows: list[list[str]]) -> dict[str, np.ndarray]:
    columns = list(zip(*rows)) if rows else [() for _ in header]
    return {name: np.asarray(values, dtype=object) for name, values in zip(header, columns)}


def _encoded(values: Any) -> tuple[list[str], np.ndarray]:
    """The distinct strings of a column in order of first use, and each row's index."""
    if isinstance(values, np.ndarray):  # CSV: object arrays
        joined = [str(v) for v in values.tolist()]
        names = list(dict.fromkeys(joined))
        index = dict(zip(names, range(len(names))))
        return names, np.fromiter(map(index.__getitem__, joined), np.int64, len(joined))
    import pyarrow.compute as pc

    encoded = pc.dictionary_encode(values)  # hashed in C++, no Python string per row
    return encoded.dictionary.to_pylist(), encoded.indices.to_numpy().astype(np.int64)


def _dense(*id_columns: Any) -> tuple[list[str], list[np.ndarray]]:
    """Dictionary-encode id columns together: the distinct ids in order of first use,
    and each column's indexes into them."""
    if all(isinstance(c, np.ndarray) for c in id_columns):
        joined: Any = np.concatenate(id_columns)
    else:
        pa, _ = pyarrow_modules()
        joined = pa.concat_arrays([c.cast(pa.string()) for c in id_columns])
    names, codes = _encoded(joined)
    bounds = np.cumsum([0] + [len(c) for c in id_columns])
    return names, [codes[a:b] for a, b in itertools.pairwise(bounds)]


def _codes(values: Any, names: list[str], column: str) -> np.ndarray:
    """Indexes into ``names`` of a column's values (each distinct value looked up once)."""
    distinct, at = _encoded(values)
    lookup = {name: i for i, name in enumerate(names)}
    unknown = [v for v in distinct if v not in lookup]
    if unknown:
        raise ValueError(f"{column}: unknown value {unknown[0]!r} (one of {names})")
    return np.asarray([lookup[v] for v in distinct], np.int64)[at] if len(at) else at


def _floats(values: np.ndarray, column: str) -> np.ndarray:
    out = np.asarray(values, dtype=np.float64)
    if not np.isfinite(out).all():
        raise ValueError(f"{column}: times and weights must be finite numbers")
    return out


def _first_seen(values: np.ndarray | None) -> np.ndarray | None:
    """The accounts' first-seen times: numbers, inf for an account not seen yet."""
    if values is None:
        return None
    out = np.asarray(values, dtype=np.float64)
    if np.isnan(out).any() or (out == -np.inf).any():
        raise ValueError("first_seen_seconds: times must be numbers (inf: not seen yet)")
    return out


def _accounts(c: dict[str, np.ndarray]) -> EventLog:
    users, (codes,) = _dense(c["user_id"])
    if len(users) != len(codes):
        raise ValueError("user_id: an account is listed twice")
    status = _codes(c["status"], STATUS_NAMES, "status").astype(np.uint8)
    first_seen = _first_seen(c.get("first_seen_seconds"))
    return EventLog(n_users=len(users), user_ids=users, status=status, first_seen=first_seen)


def _interactions(c: dict[str, np.ndarray]) -> EventLog:
    users, (actor, target) = _dense(c["actor_id"], c["target_id"])
    weight = c.get("weight")
    return EventLog(
        n_users=len(users),
        user_ids=users,
        actor=actor,
        target=target,
        kind=kind_of(_codes(c["kind"], KIND_NAMES, "kind")),
        ts=_floats(c["event_time_seconds"], "event_time_seconds"),
        weight=None if weight is None else _floats(weight, "weight"),
    )


def _vouches(c: dict[str, np.ndarray], giver: str, receiver: str) -> dict[str, Any]:
    """An endorsements or distrusts table (users in columns ``giver`` and ``receiver``)
    as users, topics and the events' columns."""
    users, (src, dst) = _dense(c[giver], c[receiver])
    spelled, (spelling,) = _dense(c["topic"])
    # Topics as the service names them: spellings of one topic become one topic.
    topics, merged = normalize_topics(spelled)
    retracted = c["retracted"]
    if retracted.dtype == object:  # CSV: True / False as text
        retracted = _codes(retracted, ["False", "True"], "retracted").astype(bool)
    return {
        "users": users,
        "topics": topics or [""],
        "src": src,
        "dst": dst,
        "topic": merged[spelling] if len(spelling) else spelling,
        "ts": _floats(c["event_time_seconds"], "event_time_seconds"),
        "retracted": retracted,
    }


def _endorsements(c: dict[str, np.ndarray]) -> EventLog:
    v = _vouches(c, "endorser_id", "endorsee_id")
    return EventLog(
        n_users=len(v["users"]),
        user_ids=v["users"],
        endorser=v["src"],
        endorsee=v["dst"],
        topic=v["topic"],
        endorse_ts=v["ts"],
        retracted=v["retracted"],
        topics=v["topics"],
    )


def _distrusts(c: dict[str, np.ndarray]) -> EventLog:
    v = _vouches(c, "distruster_id", "distrusted_id")
    return EventLog(
        n_users=len(v["users"]),
        user_ids=v["users"],
        distruster=v["src"],
        distrusted=v["dst"],
        distrust_topic=v["topic"],
        distrust_ts=v["ts"],
        distrust_retracted=v["retracted"],
        topics=v["topics"],
    )


_CONVERT: dict[str, Callable[[dict[str, np.ndarray]], EventLog]] = {
    "accounts": _accounts,
    "interactions": _interactions,
    "endorsements": _endorsements,
    "distrusts": _distrusts,
}


def import_into(engine: Engine, directory: str | Path, progress: Progress | None = None) -> int:
    """Apply the archive in ``directory`` to ``engine``, one write per chunk (each
    journaled when the engine has a store). Returns the events applied."""
    applied = 0
    for log in read(directory, progress):
        if log.n_interactions or log.n_endorsement_events or log.n_distrust_events or log.n_users:
            applied += engine.load_events(log).accepted
    _import_moderation(engine, Location.of(directory))
    return applied
