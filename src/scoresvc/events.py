"""Raw events as numpy columns with dense user and topic ids.

The common currency of the numpy reference, the synthetic generator, the engine's
bulk loaders and (later) export and the batch engine.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .model import AccountStatus


def _ints(values: object) -> np.ndarray:
    return np.ascontiguousarray(values, dtype=np.int64)


@dataclass
class EventLog:
    """Interactions, endorsement events and account statuses of ``n_users`` users.

    User ``i`` is named ``user_ids[i]``; topic ``j`` is ``topics[j]`` (0 is general).
    ``weight[i]``, when given, makes interaction ``i`` count that many times (a
    compacted log's interactions carry fractional weights; raw ones count once).
    """

    n_users: int
    actor: np.ndarray = field(default_factory=lambda: _ints([]))
    target: np.ndarray = field(default_factory=lambda: _ints([]))
    kind: np.ndarray = field(default_factory=lambda: np.empty(0, np.int8))
    ts: np.ndarray = field(default_factory=lambda: np.empty(0, np.float64))
    endorser: np.ndarray = field(default_factory=lambda: _ints([]))
    endorsee: np.ndarray = field(default_factory=lambda: _ints([]))
    topic: np.ndarray = field(default_factory=lambda: _ints([]))
    endorse_ts: np.ndarray = field(default_factory=lambda: np.empty(0, np.float64))
    retracted: np.ndarray = field(default_factory=lambda: np.empty(0, bool))
    status: np.ndarray | None = None
    user_ids: list[str] | None = None
    topics: list[str] = field(default_factory=lambda: [""])
    weight: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.actor = _ints(self.actor)
        self.target = _ints(self.target)
        self.kind = np.ascontiguousarray(self.kind, dtype=np.int8)
        self.ts = np.ascontiguousarray(self.ts, dtype=np.float64)
        self.endorser = _ints(self.endorser)
        self.endorsee = _ints(self.endorsee)
        self.topic = _ints(self.topic)
        self.endorse_ts = np.ascontiguousarray(self.endorse_ts, dtype=np.float64)
        self.retracted = np.ascontiguousarray(self.retracted, dtype=bool)
        if self.weight is not None:
            self.weight = np.ascontiguousarray(self.weight, dtype=np.float64)
        if self.status is None:
            self.status = np.full(self.n_users, AccountStatus.NORMAL, np.uint8)
        if self.user_ids is None:
            self.user_ids = [f"u{i}" for i in range(self.n_users)]

    @property
    def n_interactions(self) -> int:
        return len(self.actor)

    @property
    def n_endorsement_events(self) -> int:
        return len(self.endorser)


def compacted_interactions(
    src: np.ndarray, dst: np.ndarray, sums: np.ndarray, kind_weights: np.ndarray, at: float
) -> dict[str, np.ndarray]:
    """Interactions that rebuild decayed pair sums exactly: per pair and kind with a
    positive sum ``sums[p, k]`` (decayed to ``at``), one interaction at ``at`` of
    weight ``sums[p, k] / kind_weights[k]``. EventLog keyword arguments."""
    weight = sums / np.asarray(kind_weights)
    pair, channel = np.nonzero(weight > 0)
    return {
        "actor": np.asarray(src)[pair],
        "target": np.asarray(dst)[pair],
        "kind": (channel + 1).astype(np.int8),
        "ts": np.full(len(pair), at),
        "weight": weight[pair, channel],
    }
