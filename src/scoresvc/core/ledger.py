"""The request ledger: the answer given to each request id (AIP-155), so a retry gets
the first answer and is applied once.

A request is remembered by a digest of its fingerprint (what the request asked for),
so a reused id with other content is caught. The ledger keeps the requests of the last
``max_age_seconds`` (wall clock, at acceptance), at most ``max_entries`` of them: a
retry after that is a new request.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import numpy as np

from .errors import Conflict
from .results import WriteResult
from .users import UserIds

DEFAULT_MAX_AGE_SECONDS = 86_400.0
DEFAULT_MAX_ENTRIES = 1_000_000
_DIGEST_SIZE = 16
# WriteResult.endorsement_live as stored: None, False, True.
_LIVE_CODES = {None: -1, False: 0, True: 1}
_LIVE_VALUES = {-1: None, 0: False, 1: True}


def digest_batch(users: UserIds, *columns: np.ndarray) -> str:
    """A fingerprint of a batch's content, for a request's fingerprint."""
    h = hashlib.blake2b(digest_size=_DIGEST_SIZE)
    users.digest_into(h)
    for column in columns:
        h.update(np.ascontiguousarray(column).tobytes())
    return h.hexdigest()


def _key(fingerprint: tuple[Any, ...]) -> bytes:
    """A fixed-size digest of a fingerprint (JSON-able, as the journal stores it)."""
    text = json.dumps(list(fingerprint), separators=(",", ":"))
    return hashlib.blake2b(text.encode("utf-8"), digest_size=_DIGEST_SIZE).digest()


class RequestLedger:
    """Request ids answered (applied) and queued (journaling, not yet applied).

    Callers hold the engine's ingest lock.
    """

    def __init__(
        self,
        max_age_seconds: float = DEFAULT_MAX_AGE_SECONDS,
        max_entries: int = DEFAULT_MAX_ENTRIES,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.max_age_seconds = max_age_seconds
        self.max_entries = max_entries
        self._clock = clock
        # request id -> (fingerprint digest, sequence, accepted, accepted at, endorsement
        # live), oldest first
        self._done: OrderedDict[str, tuple[bytes, int, int, float, bool | None]] = OrderedDict()
        self._queued: dict[str, tuple[bytes, Callable[[], WriteResult]]] = {}

    def __len__(self) -> int:
        return len(self._done)

    def __contains__(self, request_id: str) -> bool:
        return request_id in self._done

    def answer(
        self, request_id: str, fingerprint: tuple[Any, ...]
    ) -> Callable[[], WriteResult] | None:
        """How to answer a request id seen before (applied, or queued in the journal);
        None when it is new. ``Conflict`` when it was used for a different request."""
        key = _key(fingerprint)
        done = self._done.get(request_id)
        if done is not None:
            self._check(request_id, done[0], key)
            result = WriteResult(done[1], done[2], done[4])
            return lambda: result
        queued = self._queued.get(request_id)
        if queued is None:
            return None
        self._check(request_id, queued[0], key)
        return queued[1]

    @staticmethod
    def _check(request_id: str, seen: bytes, key: bytes) -> None:
        if seen != key:
            raise Conflict(f"request_id {request_id!r} was used for a different request")

    def queue(
        self, request_id: str, fingerprint: tuple[Any, ...], wait: Callable[[], WriteResult]
    ) -> None:
        """Remember a request being journaled: a retry meanwhile waits for it too."""
        self._queued[request_id] = (_key(fingerprint), wait)

    def forget(self, request_id: str) -> None:
        """Drop a queued request the journal could not store."""
        self._queued.pop(request_id, None)

    def forget_naming(self, names: Callable[[str], bool]) -> None:
        """Drop the answered requests whose id ``names`` matches (an erasure: a
        client may have put the user's id in its request ids)."""
        for request_id in [r for r in self._done if names(r)]:
            del self._done[request_id]

    def remember(self, request_id: str, fingerprint: tuple[Any, ...], result: WriteResult) -> None:
        """Record an applied request's answer, and forget the oldest ones."""
        self._queued.pop(request_id, None)
        now = self._clock()
        self._done[request_id] = (
            _key(fingerprint),
            result.sequence,
            result.accepted,
            now,
            result.endorsement_live,
        )
        self._evict(now)

    def _evict(self, now: float) -> None:
        done = self._done
        while done and (
            len(done) > self.max_entries
            or next(iter(done.values()))[3] < now - self.max_age_seconds
        ):
            done.popitem(last=False)

    def arrays(self) -> dict[str, np.ndarray]:
        """The answered requests as arrays (for checkpoints)."""
        ids = UserIds.of(list(self._done))
        entries = list(self._done.values())
        digests = b"".join(e[0] for e in entries)
        return {
            "request_id_blob": ids.blob.copy(),
            "request_id_offsets": ids.offsets,
            "request_fingerprint": np.frombuffer(digests, np.uint8).reshape(-1, _DIGEST_SIZE),
            "request_sequence": np.array([e[1] for e in entries], np.int64),
            "request_accepted": np.array([e[2] for e in entries], np.int64),
            "request_time": np.array([e[3] for e in entries], np.float64),
            "request_live": np.array([_LIVE_CODES[e[4]] for e in entries], np.int8),
        }

    def restore(self, arrays: dict[str, np.ndarray]) -> None:
        """Take the answered requests in ``arrays`` (from ``arrays()``)."""
        ids = UserIds(arrays["request_id_blob"], arrays["request_id_offsets"]).decoded()
        # Checkpoints from before it was kept: unknown.
        live = arrays.get("request_live", np.full(len(ids), -1, np.int8)).tolist()
        self._done = OrderedDict(
            zip(
                ids,
                zip(
                    (bytes(row) for row in arrays["request_fingerprint"]),
                    arrays["request_sequence"].tolist(),
                    arrays["request_accepted"].tolist(),
                    arrays["request_time"].tolist(),
                    (_LIVE_VALUES[code] for code in live),
                ),
            )
        )
        self._evict(self._clock())

    @staticmethod
    def arrays_of(
        entries: list[tuple[str, tuple[Any, ...], int, int]], at: float
    ) -> dict[str, np.ndarray]:
        """Arrays for answered requests ``(id, fingerprint, sequence, accepted)``,
        accepted at ``at`` (reading older checkpoints, which kept fingerprints)."""
        ledger = RequestLedger(clock=lambda: at)
        for request_id, fingerprint, sequence, accepted in entries:
            ledger.remember(request_id, tuple(fingerprint), WriteResult(sequence, accepted))
        return ledger.arrays()
