"""Checkpoint files: an ``EngineState`` on disk, atomic, versioned and checksummed.

Layout of ``checkpoint-<sequence>.svck``::

    b"SVCK" | format version (u32) | header length (u64) | JSON header
    | each array's bytes, each starting at a multiple of 64
    | checksum of everything before it: XXH3-128 (BLAKE2b-256 up to version 3)

A checkpoint is written to a temporary file, flushed and fsynced, then renamed into
place and the directory fsynced: a crash leaves either the whole file or none of it.
Reading checks the magic, the version, the sizes and the digest; a file failing any
of them is reported and the next older one is used.

Version 2 keeps all state in arrays (the header's ``meta`` is free for notes); version 1
kept the decay clock, the topics, the aggregation parameters and the request ids in the
header, and is still read (converted on reading).

The checksum guards against accidental damage (a torn write, a bad disk), which a
non-cryptographic 128-bit hash detects as surely as a cryptographic one; anyone able
to alter the file could rewrite an unkeyed digest too. XXH3 checks a file about ten
times faster than BLAKE2b did, and every restart checks one.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import mmap
import os
import struct
import time
from pathlib import Path
from typing import Any

import numpy as np
import xxhash

from ..core.ledger import RequestLedger
from ..core.records import EngineState
from ..core.users import UserIds

log = logging.getLogger("scoresvc.storage.checkpoint")

MAGIC = b"SVCK"
# 3: endorsement slots kept as the pair of each slot (``eslot_pair``), not a slot per pair.
# 4: the checksum is XXH3-128, not BLAKE2b-256.
VERSION = 4
READABLE_VERSIONS = (1, 2, 3, 4)
ALIGN = 64
_PREFIX = struct.Struct("<4sIQ")
_READ_CHUNK = 8 << 20


class CorruptCheckpoint(ValueError):
    """A checkpoint file that is truncated, altered or of an unknown version."""


def file_name(sequence: int) -> str:
    return f"checkpoint-{sequence:020d}.svck"


def checkpoints(directory: Path) -> list[tuple[int, Path]]:
    """``(sequence, path)`` of the checkpoint files in ``directory``, newest first."""
    found = []
    for path in directory.glob("checkpoint-*.svck"):
        try:
            found.append((int(path.stem.split("-", 1)[1]), path))
        except ValueError:
            continue
    return sorted(found, reverse=True)


def write(directory: Path, state: EngineState) -> Path:
    """Write ``state`` atomically; returns the final path."""
    directory.mkdir(parents=True, exist_ok=True)
    arrays = {name: np.ascontiguousarray(a) for name, a in state.arrays.items()}
    header = json.dumps(
        {
            "sequence": state.sequence,
            "meta": state.meta,
            "arrays": [[name, a.dtype.str, list(a.shape)] for name, a in arrays.items()],
        },
        separators=(",", ":"),
    ).encode("utf-8")
    final = directory / file_name(state.sequence)
    temporary = directory / f".{final.name}.tmp"
    digest = _checksum(VERSION)
    try:
        with open(temporary, "wb") as f:

            def put(data: bytes | memoryview) -> None:
                f.write(data)
                digest.update(data)

            put(_PREFIX.pack(MAGIC, VERSION, len(header)) + header)
            position = _PREFIX.size + len(header)
            for a in arrays.values():
                pad = -position % ALIGN
                put(b"\0" * pad)
                put(a.reshape(-1).view(np.uint8).data if a.size else memoryview(b""))
                position += pad + a.nbytes
            f.write(digest.digest())
            f.flush()
            os.fsync(f.fileno())
        os.replace(temporary, final)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    _fsync_directory(directory)
    return final


def _checksum(version: int) -> Any:
    """A new hash object of the checksum files of format ``version`` end with."""
    return xxhash.xxh3_128() if version >= 4 else hashlib.blake2b(digest_size=32)


def _digest_of(f: io.BufferedReader, length: int, name: str, version: int) -> bytes:
    """The checksum of the next ``length`` bytes of ``f``, read a chunk at a time into
    one small buffer (a read error is an ``OSError`` here, not a fault in a mapping)."""
    digest = _checksum(version)
    chunk = memoryview(bytearray(_READ_CHUNK))
    while length:
        got = f.readinto(chunk[: min(length, _READ_CHUNK)])
        if not got:
            raise CorruptCheckpoint(f"{name}: shorter than its size")
        digest.update(chunk[:got])
        length -= got
    return digest.digest()


def read(path: Path) -> EngineState:
    """The state in ``path``; ``CorruptCheckpoint`` if the file does not check out."""
    size = path.stat().st_size
    if size < _PREFIX.size:
        raise CorruptCheckpoint(f"{path.name}: {size} bytes is too short")
    with open(path, "rb") as f:
        magic, version, header_size = _PREFIX.unpack(f.read(_PREFIX.size))
        if magic != MAGIC:
            raise CorruptCheckpoint(f"{path.name}: not a checkpoint (magic {magic!r})")
        if version not in READABLE_VERSIONS:
            raise CorruptCheckpoint(
                f"{path.name}: format version {version}; this scoresvc reads versions"
                f" {', '.join(map(str, READABLE_VERSIONS))}"
            )
        digest_size = _checksum(version).digest_size
        if size < _PREFIX.size + digest_size:
            raise CorruptCheckpoint(f"{path.name}: {size} bytes is too short")
        f.seek(0)
        expected = _digest_of(f, size - digest_size, path.name, version)
        if expected != f.read(digest_size):
            raise CorruptCheckpoint(f"{path.name}: checksum mismatch (truncated or altered)")
        # Checked, then mapped rather than copied into memory of our own: the arrays
        # are views of the page cache the check just read (copy-on-write, so a caller
        # may change them).
        buffer = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_COPY)
    if len(buffer) != size:
        raise CorruptCheckpoint(f"{path.name}: changed while it was read")
    body = memoryview(buffer)[:-digest_size]
    try:
        header = json.loads(bytes(body[_PREFIX.size : _PREFIX.size + header_size]))
        position = _PREFIX.size + header_size
        arrays: dict[str, np.ndarray] = {}
        for name, dtype, shape in header["arrays"]:
            dt = np.dtype(dtype)
            position += -position % ALIGN
            count = int(np.prod(shape, dtype=np.int64))
            arrays[name] = np.frombuffer(buffer, dt, count, position).reshape(shape)
            position += count * dt.itemsize
        if position != len(body):
            raise CorruptCheckpoint(f"{path.name}: {len(body) - position} bytes unaccounted for")
        meta = header["meta"]
        if version == 1:
            arrays, meta = _from_version_1(arrays, meta), {}
        return EngineState(int(header["sequence"]), arrays, meta)
    except (KeyError, TypeError, ValueError) as exc:
        if isinstance(exc, CorruptCheckpoint):
            raise
        raise CorruptCheckpoint(f"{path.name}: bad header: {exc}") from exc


def _from_version_1(arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> dict[str, np.ndarray]:
    """A version 1 state's header fields as the arrays version 2 keeps them in (its
    request ids count as accepted now, so they are remembered for the ledger's age)."""
    was = meta["aggregation"]
    landmark, latest_event = meta["landmark"], meta.get("latest_event")
    # Files from before latest_interaction was kept: the latest event is as late.
    latest_interaction = meta.get("latest_interaction", latest_event)
    topics = UserIds.of(meta["topics"])
    converted = dict(arrays)
    converted["pair_clock"] = np.array(
        [
            np.nan if landmark is None else landmark,
            -np.inf if latest_event is None else latest_event,
            -np.inf if latest_interaction is None else latest_interaction,
        ]
    )
    converted["pair_aggregation"] = np.array(
        [was["half_life_seconds"], *was["kind_weights"], was["endorsement_weight"]], np.float64
    )
    converted["topic_blob"], converted["topic_offsets"] = topics.blob, topics.offsets
    requests = [(rid, tuple(fp), seq, accepted) for rid, fp, seq, accepted in meta["requests"]]
    converted.update(RequestLedger.arrays_of(requests, time.time()))
    return converted


def latest(directory: Path) -> EngineState | None:
    """The newest checkpoint that checks out (older ones when newer are corrupt)."""
    for _, path in checkpoints(directory):
        try:
            return read(path)
        except (CorruptCheckpoint, OSError) as exc:
            log.error("skipping checkpoint %s: %s", path, exc)
    return None


def prune(directory: Path, keep: int) -> list[int]:
    """Delete all but the ``keep`` newest checkpoints (and stray temporary files);
    returns the sequences of those kept, newest first."""
    for stray in directory.glob(".checkpoint-*.tmp"):
        stray.unlink(missing_ok=True)
    found = checkpoints(directory)
    for _, path in found[keep:]:
        path.unlink(missing_ok=True)
    return [sequence for sequence, _ in found[:keep]]


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
