"""What the engine hands to storage and takes back: write records, write results (the
one ``results.WriteResult``, shared with the client) and state captures. Storage
imports these, never the engine itself."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from .results import WriteResult
from .users import UserIds

__all__ = ["EngineState", "Journal", "WriteRecord", "WriteResult"]


@dataclass(frozen=True)
class WriteRecord:
    """One accepted write as the engine applies it, with every server-side choice
    (sequence, resolved times, request id) made: what a journal stores and replays.

    ``kind`` is "interactions" (arrays: actor, target, kind, ts and, when any row
    weighs other than 1, weight; users), "endorsement"
    (fields: topic, ts, retract; users: endorser, endorsee), "distrust" (the same
    fields; users: distruster, distrusted), "status" (fields: status;
    users: the user) or "log" (arrays and users of an EventLog bulk load; fields:
    topics and, for a compacted log, ``compaction`` as ``[at, latest_event]``).
    """

    sequence: int
    kind: str
    fields: dict[str, Any]
    arrays: dict[str, np.ndarray]
    users: UserIds
    request_id: str = ""
    fingerprint: tuple[Any, ...] = ()


@dataclass(frozen=True)
class EngineState:
    """What ``Engine.state()`` captures: numpy arrays and JSON-able metadata, as of
    ``sequence``."""

    sequence: int
    arrays: dict[str, np.ndarray]
    meta: dict[str, Any]


#: Queues a record for the journal; the returned wait gives its result (see
#: ``Engine.attach_journal``).
Journal = Callable[[WriteRecord], Callable[[], WriteResult]]
