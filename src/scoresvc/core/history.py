"""Score history in domain terms: one user's score as recorded at one time.

``scoresvc.storage.history`` records and reads these; the service and the client
(``ScoreHistory``) return them. Times are unix seconds.
"""

from __future__ import annotations

from dataclasses import dataclass

from .model import AccountStatus


@dataclass(frozen=True)
class HistoryPoint:
    """A user's score, globally (``topic`` empty) or in a topic, at ``time``."""

    #: When the point was recorded.
    time: float
    #: The time the recorded snapshot was evaluated at.
    compute_time: float
    #: The sequence number of the last event the recorded snapshot includes.
    sequence: int
    topic: str
    status: AccountStatus
    score: float
    #: Influence, or for a topic point the user's value in the topic.
    influence: float
    #: Globally, or among the topic's ranked users (0 when not ranked there).
    percentile: float
    # The explanation's sums (global, also on topic points), as in ``Explanation``.
    engagement_received: float
    engagement_saturated: float
    endorsements_received: float
    endorsements_effective: float
    reciprocity_removed: float
    teleport_share: float
