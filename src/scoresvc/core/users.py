"""User ids: the columnar form batches carry them in, and the table that gives each a
dense number.

Ids travel as UTF-8 bytes with offsets (``UserIds``): that is how they sit on the
wire and in the journal, and a batch of 100k known ids is looked up in the compiled
table without building a Python string for any of them. The table keeps them so
too, and decodes an id to a string only when a reader asks for it.
"""

from __future__ import annotations

import itertools
import operator
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import overload

import numpy as np

from .. import _core
from .arrays import grown

#: The longest id accepted, in bytes of UTF-8 (the contract's limit).
MAX_ID_BYTES = 128

_CONTINUATION_MASK, _CONTINUATION = 0xC0, 0x80


@dataclass(frozen=True, eq=False)
class UserIds:
    """A column of user ids: id ``i`` is ``blob[offsets[i]:offsets[i + 1]]`` (UTF-8).

    ``strings`` holds the same ids as ``str`` when the caller had them, so they are
    not decoded again.
    """

    blob: np.ndarray  # uint8
    offsets: np.ndarray  # int64, one more than there are ids
    strings: Sequence[str] | None = None

    @classmethod
    def of(cls, strings: Sequence[str]) -> UserIds:
        """Encode ``strings``; lone surrogates are kept (``surrogatepass``) so that
        ``invalid()`` reports them instead of this raising."""
        ascii_ids = cls._of_ascii(strings)
        if ascii_ids is not None:
            return ascii_ids
        try:
            encoded = [s.encode("utf-8", "surrogatepass") for s in strings]
        except AttributeError:  # not a str: encoded empty, so reported as missing
            encoded = [
                s.encode("utf-8", "surrogatepass") if isinstance(s, str) else b"" for s in strings
            ]
        offsets = np.zeros(len(encoded) + 1, np.int64)
        np.cumsum(np.fromiter(map(len, encoded), np.int64, len(encoded)), out=offsets[1:])
        blob = np.frombuffer(b"".join(encoded), np.uint8)
        return cls(blob, offsets, strings)

    @classmethod
    def _of_ascii(cls, strings: Sequence[str]) -> UserIds | None:
        """``of`` in one encode when every id is ASCII (a character is then a byte), else
        None."""
        try:
            text = "".join(strings)
        except TypeError:  # not all str
            return None
        blob = text.encode("utf-8", "surrogatepass")
        if len(blob) != len(text):
            return None
        offsets = np.zeros(len(strings) + 1, np.int64)
        np.cumsum(np.fromiter(map(len, strings), np.int64, len(strings)), out=offsets[1:])
        return cls(np.frombuffer(blob, np.uint8), offsets, strings)

    @classmethod
    def empty(cls) -> UserIds:
        return cls(np.zeros(0, np.uint8), np.zeros(1, np.int64), [])

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def decoded(self, positions: np.ndarray | None = None) -> list[str]:
        """The ids at ``positions`` (all by default) as strings; they must be valid."""
        if self.strings is not None:
            if positions is None:
                return list(self.strings)
            return [self.strings[int(j)] for j in positions]
        if positions is None:  # the bytes of these ids only (a view may start late)
            raw = self.blob[self.offsets[0] : self.offsets[-1]].tobytes()
            bounds = (self.offsets - self.offsets[0]).tolist()
            return [raw[a:b].decode("utf-8") for a, b in itertools.pairwise(bounds)]
        raw = self.blob.tobytes()
        bounds = self.offsets.tolist()
        return [raw[bounds[j] : bounds[j + 1]].decode("utf-8") for j in positions.tolist()]

    def invalid(self) -> tuple[np.ndarray, np.ndarray]:
        """Positions of ids that are empty or too long, and of ids that are not UTF-8."""
        lengths = self.lengths()
        bad_length = np.flatnonzero((lengths == 0) | (lengths > MAX_ID_BYTES))
        raw = self.blob.tobytes()
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError:
            bounds = self.offsets.tolist()
            bad_text = [j for j in range(len(self)) if not _is_utf8(raw[bounds[j] : bounds[j + 1]])]
            return bad_length, np.asarray(bad_text, np.int64)
        # The whole is valid UTF-8, so each id is too unless it starts inside a
        # character (character boundaries are exactly the non-continuation bytes).
        starts = self.offsets[:-1][lengths > 0]
        inside = (self.blob[starts] & _CONTINUATION_MASK) == _CONTINUATION
        return bad_length, np.flatnonzero(lengths > 0)[inside]

    def digest_into(self, h: object) -> None:
        """Feed the ids to a hashlib object (request fingerprints)."""
        h.update(self.offsets.tobytes())  # type: ignore[attr-defined]
        h.update(self.blob.tobytes())  # type: ignore[attr-defined]


def _is_utf8(raw: bytes) -> bool:
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


class IdArena(Sequence[str]):
    """Every id's UTF-8 bytes in one growing arena (id ``i`` is
    ``blob[offsets[i]:offsets[i + 1]]``) with its hash, read as a sequence of
    strings decoded on access: a bulk load of millions of ids builds no Python
    object for any of them.

    Appended to under the ingest lock; readers on other threads see a prefix, as the
    count is raised only once the bytes are in and arrays are only ever replaced by
    longer copies.
    """

    def __init__(self, hashes: np.ndarray, offsets: np.ndarray, blob: np.ndarray) -> None:
        self.hash = hashes
        self.offsets = offsets
        self.blob = blob
        self._n = len(offsets) - 1

    @classmethod
    def empty(cls) -> IdArena:
        return cls(np.zeros(0, np.uint64), np.zeros(1, np.int64), np.zeros(0, np.uint8))

    def __len__(self) -> int:
        return self._n

    @overload
    def __getitem__(self, i: int) -> str: ...

    @overload
    def __getitem__(self, i: slice) -> list[str]: ...

    def __getitem__(self, i: int | slice) -> str | list[str]:
        n = self._n  # first: any arrays read after it hold the first n ids
        if isinstance(i, slice):
            start, stop, step = i.indices(n)
            if step != 1:
                return [self[j] for j in range(start, stop, step)]
            return self._decoded(start, max(start, stop))
        i = operator.index(i)
        j = i + n if i < 0 else i
        if not 0 <= j < n:
            raise IndexError(f"user {i} of {n}")
        offsets = self.offsets
        return self.blob[offsets[j] : offsets[j + 1]].tobytes().decode("utf-8")

    def __iter__(self) -> Iterator[str]:
        return iter(self._decoded(0, self._n))

    def __eq__(self, other: object) -> bool:
        """Equal to a list of the same ids, as the list it replaces was."""
        if isinstance(other, IdArena | list):
            return list(self) == list(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]  # (mutable, as a list)

    def _decoded(self, start: int, stop: int) -> list[str]:
        return UserIds(self.blob, self.offsets[start : stop + 1]).decoded()

    @property
    def nbytes(self) -> int:
        n = self._n
        return int(8 * n + 8 * (n + 1) + self.offsets[n])

    def write(self, users: UserIds, positions: np.ndarray, hashes: np.ndarray, every: bool) -> int:
        """Write the ids of ``users`` at ``positions`` (``every``: all of them, in order)
        after the published ones, unseen by readers until ``publish``; returns the count
        to publish. A write not published is overwritten by the next."""
        first = self._n
        n = first + len(positions)
        starts, ends = users.offsets[positions], users.offsets[positions + 1]
        lengths = ends - starts
        used = int(self.offsets[first])
        need = used + int(lengths.sum())
        self.hash = grown(self.hash, n)
        self.offsets = grown(self.offsets, n + 1)
        self.blob = grown(self.blob, need)
        self.hash[first:n] = hashes
        np.cumsum(lengths, out=self.offsets[first + 1 : n + 1])
        self.offsets[first + 1 : n + 1] += used
        if every:
            self.blob[used:need] = users.blob[users.offsets[0] : users.offsets[-1]]
        else:
            # Gather the new ids' bytes: one index array over the source blob.
            take = np.repeat(starts - self.offsets[first:n], lengths) + np.arange(used, need)
            self.blob[used:need] = users.blob[take]
        return n

    def publish(self, n: int) -> None:
        """Show readers the ids written up to ``n``."""
        self._n = n

    def arrays(self) -> dict[str, np.ndarray]:
        """The arena as arrays (for checkpoints): hashes, offsets and the bytes."""
        n = self._n
        return {
            "user_hash": self.hash[:n].copy(),
            "user_offsets": self.offsets[: n + 1].copy(),
            "user_blob": self.blob[: self.offsets[n]].copy(),
        }


class IdIndex(Mapping[str, int]):
    """The dense number of each id in ``ids`` (which only grows), for readers who ask
    by string: a dict built on first use and caught up with the ids added since, so a
    bulk load of millions of ids does not build it (the engine itself looks ids up as
    bytes)."""

    def __init__(self, ids: Sequence[str]) -> None:
        self._ids = ids
        self._numbers: dict[str, int] = {}
        self._lock = threading.Lock()

    def _current(self) -> dict[str, int]:
        numbers = self._numbers
        if len(numbers) < len(self._ids):
            with self._lock:  # readers may catch up at once; each id is added once
                known, n = len(numbers), len(self._ids)
                numbers.update(zip(self._ids[known:n], range(known, n)))
        return numbers

    def __getitem__(self, user_id: str) -> int:
        return self._current()[user_id]

    def get(self, user_id: str, default: int | None = None) -> int | None:  # type: ignore[override]
        return self._current().get(user_id, default)

    def __contains__(self, user_id: object) -> bool:
        return user_id in self._current()

    def __iter__(self) -> Iterator[str]:
        return iter(self._current())

    def __len__(self) -> int:
        return len(self._ids)


class UserTable:
    """Every user ever seen, numbered densely in order of first appearance.

    ``ids`` is the arena of their UTF-8 bytes, indexed by ``_core.BytesIndex`` for
    the engine, which looks ids up as bytes; ``index`` maps them back from strings
    for readers (built when first read). Ids are only ever added (by the engine,
    under its ingest lock).
    """

    def __init__(self, ids: IdArena | None = None) -> None:
        self.ids = IdArena.empty() if ids is None else ids
        self.index = IdIndex(self.ids)
        self._lookup = _core.BytesIndex()
        self._lookup.add_ids(self.ids.hash, 0, len(self.ids))

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def nbytes(self) -> int:
        return int(self._lookup.nbytes + self.ids.nbytes)

    def find(self, users: UserIds) -> np.ndarray:
        """Dense ids of ``users`` as int32, -1 where unknown."""
        hashes = np.empty(len(users), np.uint64)
        _core.hash_ids(users.blob, users.offsets, hashes)
        return self._find(users, hashes)

    def register(self, users: UserIds) -> np.ndarray:
        """Dense ids of ``users`` (int64), adding the unknown ones (valid ids only)."""
        hashes = np.empty(len(users), np.uint64)
        _core.hash_ids(users.blob, users.offsets, hashes)
        dense = self._find(users, hashes).astype(np.int64)
        new = np.flatnonzero(dense < 0)
        if len(new) == 0:
            return dense
        every = len(new) == len(users)  # all of them (a bulk load), in order
        first = len(self.ids)
        ordered = np.sort(hashes[new])  # (a sort: far faster than np.unique's hashing)
        if not (ordered[1:] == ordered[:-1]).any():  # distinct hashes: distinct ids
            dense[new] = np.arange(first, first + len(new))
            chosen = new
        else:
            # The same new id may appear twice in the batch: number each once, in order.
            names = users.decoded(new)
            numbers = {name: first + i for i, name in enumerate(dict.fromkeys(names))}
            dense[new] = np.fromiter(map(numbers.__getitem__, names), np.int64, len(names))
            chosen = new[np.unique(dense[new] - first, return_index=True)[1]]
            every = every and len(chosen) == len(new)
        n = self.ids.write(users, chosen, hashes[chosen], every)
        self._lookup.add_ids(self.ids.hash, first, n)  # (a failure here publishes nothing)
        self.ids.publish(n)
        return dense

    def arrays(self) -> dict[str, np.ndarray]:
        """The table as arrays (for checkpoints): hashes, offsets and the bytes."""
        return self.ids.arrays()

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> UserTable:
        return cls(
            IdArena(
                arrays["user_hash"].copy(),
                arrays["user_offsets"].copy(),
                arrays["user_blob"].copy(),
            )
        )

    def _find(self, users: UserIds, hashes: np.ndarray) -> np.ndarray:
        out = np.empty(len(users), np.int32)
        ids = self.ids
        self._lookup.lookup_ids(
            hashes, users.blob, users.offsets, ids.hash, ids.blob, ids.offsets, out
        )
        return out
