"""What reads and writes answer, in domain terms.

The in-process engine and its snapshots return these, and so does the client
(``scoresvc.service.convert`` maps them to and from the proto), so code written against one
works against the other. Statuses are ``model.AccountStatus``; times are unix seconds.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from .model import AccountStatus


class Contributor(NamedTuple):
    """A user whose trust flowed to the scored user."""

    user_id: str
    #: The fraction of the scored user's credibility that came from this user.
    share: float


@dataclass(frozen=True)
class Explanation:
    """Where a score came from; sums are decayed to the snapshot's time."""

    engagement_received: float
    engagement_saturated: float
    endorsements_received: float
    endorsements_effective: float
    reciprocity_removed: float
    teleport_share: float
    top_contributors: tuple[Contributor, ...] = ()
    #: Decayed live distrusts received (a fresh one counts 1).
    distrust_received: float = 0.0
    #: The share of its trust the user keeps after credible users' distrust (1: all).
    trust_kept: float = 1.0
    #: The share of the user's credibility that came from accounts younger than the
    #: maturity age (read from the trust graph: 0 unless contributors were asked for).
    credibility_from_young_accounts: float = 0.0
    #: The share that came from the members of a cluster the latest suspect report
    #: lists the user in, as a member or a beneficiary (0 when it lists it in none).
    credibility_from_own_cluster: float = 0.0
    #: A few plain sentences built from these numbers (``scoresvc.core.wording``).
    summary: tuple[str, ...] = ()


class Contributions(NamedTuple):
    """Where a user's credibility came from, read from the trust graph: the largest
    contributors and the shares from young accounts and from the user's own cluster."""

    top: tuple[Contributor, ...] = ()
    from_young_accounts: float = 0.0
    from_own_cluster: float = 0.0


@dataclass(frozen=True)
class UserScore:
    """One user's score, globally (``topic`` empty) or within a topic."""

    user_id: str
    topic: str
    score: float
    influence: float
    percentile: float
    status: AccountStatus
    explanation: Explanation
    #: The sequence number of the last event the snapshot includes.
    sequence: int
    #: The time the snapshot was evaluated at.
    compute_time: float


class RankedUser(NamedTuple):
    """One row of a ranking."""

    user_id: str
    score: float
    influence: float


@dataclass(frozen=True)
class Ranking:
    """The highest-scoring users, highest first, and the snapshot they come from."""

    users: tuple[RankedUser, ...]
    sequence: int
    compute_time: float


class BatchScoreEntry(NamedTuple):
    """One user's result in a batch; ``found`` is False for a user never seen, whose
    numbers are then 0."""

    user_id: str
    found: bool
    score: float
    influence: float
    percentile: float


@dataclass(frozen=True)
class BatchScores:
    """One entry per requested user, in request order, and the snapshot they come from."""

    entries: tuple[BatchScoreEntry, ...]
    sequence: int
    compute_time: float


@dataclass(frozen=True)
class EndorsementEvent:
    """One entry of an endorsement audit trail."""

    endorser_id: str
    endorsee_id: str
    topic: str
    event_time: float
    #: True for a retraction, False for an endorsement.
    retracted: bool
    #: The sequence number of the write.
    sequence: int
    #: True for the event that decides its endorsement's current state (the latest by
    #: event time; a retraction wins a tie): a back-dated retraction is not one.
    decides_current_state: bool = False
    #: True for a distrust (or its retraction): ``endorser_id`` distrusts ``endorsee_id``.
    distrust: bool = False


class TopicSummary(NamedTuple):
    """A topic and the size of its ranking."""

    topic: str
    #: How many users the topic ranks (endorsed there by enough credible endorsers).
    endorsee_count: int


@dataclass(frozen=True)
class WriteResult:
    """What a write returns: its sequence number, how many events it carried and, for
    an endorsement or retraction, whether the endorsement is live after it (events
    resolve by event time, so a back-dated retraction leaves it live)."""

    sequence: int
    accepted: int = 1
    endorsement_live: bool | None = None


@dataclass(frozen=True)
class Erasure:
    """The receipt of an erasure: the write's sequence, what it removed (interaction
    links: per pair and kind, the decayed sum between the user and another account;
    endorsement and distrust events, retractions included, from the trails) and how
    many accounts went (the user and those it alone brought in)."""

    sequence: int
    interaction_links: int
    endorsement_events: int
    distrust_events: int
    accounts: int

    @property
    def events(self) -> int:
        return self.interaction_links + self.endorsement_events + self.distrust_events
