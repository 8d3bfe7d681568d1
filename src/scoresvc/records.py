"""What the engine hands to storage and takes back: write records, write results and
state captures. Storage imports these, never the engine itself."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from .users import UserIds


@dataclass(frozen=True)
class WriteRecord:
    """One accepted write as the engine applies it, with every server-side choice
    (sequence, resolved times, request id) made: what a journal stores and replays.

    ``kind`` is "interactions" (arrays: actor, target, kind, ts; users), "endorsement"
    (fields: endorser, endorsee, topic, ts, retract, received_at), "status" (fields:
    user, status) or "log" (arrays and users of an EventLog bulk load).
    """

    sequence: int
    kind: str
    fields: dict[str, Any]
    arrays: dict[str, np.ndarray]
    users: UserIds
    request_id: str = ""
    fingerprint: tuple[Any, ...] = ()


@dataclass(frozen=True)
class WriteResult:
    """What a write returns: its sequence number and how many events it carried."""

    sequence: int
    accepted: int = 1


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
