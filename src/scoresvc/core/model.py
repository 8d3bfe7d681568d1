"""The scoring model's vocabulary and parameters (docs/model.md).

Shared by the compiled engine and the numpy reference so both read the same numbers.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass

import numpy as np

SECONDS_PER_DAY = 86_400.0

#: What a user received, as the explanation reports it (columns of
#: ``Snapshot.received`` and ``ReferenceSnapshot.received``).
RECEIVED_COLUMNS = (
    "engagement_received",
    "engagement_saturated",
    "endorsements_received",
    "endorsements_effective",
    "reciprocity_removed",
)


class InteractionKind(enum.IntEnum):
    """How an actor engaged with a target's content (numbers match the proto)."""

    LIKE = 1
    MENTION = 2
    REPLY = 3
    RESHARE = 4


def channel_of(kind: np.ndarray) -> np.ndarray:
    """Each ``InteractionKind``'s pair channel: its column (0-3) in the pair sums, in
    ``ModelParams.kind_weights`` and in ``InteractionKind`` listed in order."""
    # Narrowed before the subtraction: a batch may hold tens of millions of rows.
    channel = np.asarray(kind).astype(np.int8)
    channel -= InteractionKind.LIKE
    return channel


def kind_of(channel: np.ndarray) -> np.ndarray:
    """The ``InteractionKind`` of each pair channel (``channel_of`` undone)."""
    return (np.asarray(channel) + InteractionKind.LIKE).astype(np.int8)


class AccountStatus(enum.IntEnum):
    """Operator-set account status. SUSPENDED = 2 is also the core's constant."""

    NORMAL = 0
    SEED = 1
    SUSPENDED = 2


@dataclass(frozen=True)
class ModelParams:
    """The reference model's parameters; the defaults are docs/model.md's."""

    half_life_seconds: float = 30 * SECONDS_PER_DAY
    # Base weights of LIKE, MENTION, REPLY, RESHARE.
    kind_weights: tuple[float, float, float, float] = (1.0, 1.5, 2.0, 3.0)
    endorsement_weight: float = 5.0
    # Share of a pair's matched volume removed, across every kind (step 3), before
    # the independent-support gate.
    reciprocity: float = 1.0
    # kappa: a row's normaliser is at least one fresh like's weight, ln 2 (step 6), so
    # an old only-link passes less than a fresh one.
    min_row_weight: float = math.log(2.0)
    endorsement_budget: float = 50.0
    damping: float = 0.85
    max_future_skew_seconds: float = 300.0
    daily_endorsement_limit: int = 20
    # The limit counts endorsements of this much event time before the newest event.
    endorsement_limit_horizon_seconds: float = 90 * SECONDS_PER_DAY
    # A topic ranks a user endorsed in it by at least this many distinct endorsers
    # with credibility (step 10): one account alone cannot claim a topic.
    topic_min_endorsers: int = 2
    # Teleport (step 7): an account's share ramps from 0 when first seen to full at
    # this age; with seeds, the seeds' part of the teleport vector.
    maturity_age_seconds: float = 30 * SECONDS_PER_DAY
    seed_prior_share: float = 0.15
    # gamma (step 8): how many units of trust one unit of credible distrust cancels.
    distrust_strength: float = 16.0

    def __post_init__(self) -> None:
        if self.half_life_seconds <= 0:
            raise ValueError("half_life_seconds must be positive")
        if not 0.0 < self.damping < 1.0:
            raise ValueError("damping must be in (0, 1)")
        if self.endorsement_limit_horizon_seconds < SECONDS_PER_DAY:
            raise ValueError("endorsement_limit_horizon_seconds must be at least a day")
        if self.topic_min_endorsers < 1:
            raise ValueError("topic_min_endorsers must be at least 1")
        if self.endorsement_budget <= 0:
            raise ValueError("endorsement_budget must be positive")
        if not 0.0 <= self.reciprocity <= 1.0:
            raise ValueError("reciprocity must be in [0, 1]")
        if not 0.0 <= self.min_row_weight < math.inf:
            raise ValueError("min_row_weight must be finite and not negative")
        if self.maturity_age_seconds <= 0:
            raise ValueError("maturity_age_seconds must be positive")
        if not 0.0 <= self.seed_prior_share <= 1.0:
            raise ValueError("seed_prior_share must be in [0, 1]")
        if not 0.0 <= self.distrust_strength < math.inf:
            raise ValueError("distrust_strength must be finite and not negative")

    def channel_weights(self) -> np.ndarray:
        """Base weight per pair channel: the four kinds, then endorsements."""
        return np.array([*self.kind_weights, self.endorsement_weight], dtype=np.float64)


def seconds_and_nanos(seconds: float) -> tuple[int, int]:
    """Unix seconds as whole seconds and nanoseconds, the nanos rounded (1.9999999999 is
    2 s, not 1 s 999999999 ns): the one split of a time for the wire."""
    whole = math.floor(seconds)
    nanos = round((seconds - whole) * 1e9)
    if nanos >= 1_000_000_000:
        return whole + 1, nanos - 1_000_000_000
    return whole, nanos
