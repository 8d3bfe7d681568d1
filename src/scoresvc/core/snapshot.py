"""Immutable score snapshots: what readers see between refreshes.

A snapshot holds per-user arrays computed by one ``Engine.refresh``; it is swapped in
whole, so a reader holding one never sees a half-built state. Scores and percentiles
are derived on demand from influence (O(1) and O(log n) per user).
"""

from __future__ import annotations

import bisect
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Any

import numpy as np

from .. import _core
from .arrays import sorted_order
from .errors import NotFound
from .model import AccountStatus, ModelParams, seconds_and_nanos
from .results import Contributions, Explanation, RankedUser, TopicSummary, UserScore
from .scoring import log_scale, log_scale_one, supported, topic_values
from .topics import normalize_topic
from .wording import summary

_SUSPENDED = int(AccountStatus.SUSPENDED)
_STATUSES = tuple(AccountStatus)
_NO_CONTRIBUTIONS = Contributions()
#: How many members the ranking needs before its sort splits over two threads, which
#: pays for starting one (about 0.1 ms against 30-40 ms for a million).
PARALLEL_SORT_MIN = 1 << 16


@dataclass(frozen=True, eq=False)
class Snapshot:
    time: float
    sequence: int
    n_users: int
    user_ids: Sequence[str]
    user_index: Mapping[str, int]
    topic_index: Mapping[str, int]
    status: np.ndarray
    # The solver's x, shared with the engine: a refresh works on a copy, so this one
    # is never written again. credibility = x / mass for members, 0 when suspended.
    x: np.ndarray
    members: int  # users not suspended: influence = members * credibility
    influence_max: float
    ranking: np.ndarray  # members by credibility, ascending
    received: np.ndarray
    teleport: np.ndarray  # p per user, in the units of x (0 when suspended)
    mass: float  # the sum of x over members
    topic_keys: np.ndarray  # topic * n_users + user, sorted
    topic_value: np.ndarray
    topic_percentile: np.ndarray
    topic_bounds: Mapping[int, tuple[int, int, float]]  # topic -> (lo, hi, max value)
    stats: Mapping[str, Any] = field(default_factory=dict)
    # Users who receive live distrust (sorted), with their decayed distrust received
    # and the share of trust they keep (step 8); x is already discounted by it.
    distrusted: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    distrust_received: np.ndarray = field(default_factory=lambda: np.zeros(0))
    trust_kept: np.ndarray = field(default_factory=lambda: np.zeros(0))
    # The age under which an account is young (the explanation's young share).
    maturity_age_seconds: float = ModelParams.maturity_age_seconds

    @classmethod
    def empty(
        cls,
        user_ids: Sequence[str],
        user_index: Mapping[str, int],
        topic_index: Mapping[str, int],
    ) -> Snapshot:
        f8, i4 = np.zeros(0), np.zeros(0, np.int32)
        return cls(
            time=0.0,
            sequence=0,
            n_users=0,
            user_ids=user_ids,
            user_index=user_index,
            topic_index=topic_index,
            status=np.zeros(0, np.uint8),
            x=f8,
            members=0,
            influence_max=0.0,
            ranking=i4,
            received=np.zeros((0, 5)),
            teleport=f8,
            mass=0.0,
            topic_keys=np.zeros(0, np.int64),
            topic_value=f8,
            topic_percentile=f8,
            topic_bounds={},
        )

    @property
    def nbytes(self) -> int:
        arrays = (
            self.status,
            self.x,
            self.ranking,
            self.received,
            self.teleport,
            self.topic_keys,
            self.topic_value,
            self.topic_percentile,
            self.distrusted,
            self.distrust_received,
            self.trust_kept,
        )
        return sum(a.nbytes for a in arrays)

    @property
    def credibility(self) -> np.ndarray:
        """Credibility of every user (a new array): sums to 1 over members."""
        if self.mass <= 0:
            return np.zeros(self.n_users)
        return np.where(self.status != AccountStatus.SUSPENDED, self.x, 0.0) / self.mass

    @property
    def influence(self) -> np.ndarray:
        """Influence of every user (a new array): 1.0 is the average member."""
        return self.credibility * self.members

    @property
    def teleport_share(self) -> np.ndarray:
        """Per user, the share of credibility that came from the teleport vector."""
        kept = np.ones(self.n_users)
        kept[self.distrusted] = self.trust_kept
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(self.x > 0, kept * self.teleport / self.x, 0.0)

    def credibility_of(self, u: int) -> float:
        if self.mass <= 0 or self.status[u] == _SUSPENDED:
            return 0.0
        return float(self.x[u]) / self.mass

    def influence_of(self, u: int) -> float:
        return self.credibility_of(u) * self.members

    def user(self, user_id: str) -> int:
        """Dense id of a user this snapshot scores; ``NotFound`` otherwise."""
        u = self.user_index.get(user_id)
        if u is None or u >= self.n_users:
            raise NotFound(f"user {user_id!r} has never been seen", "user_id")
        return u

    def percentile(self, u: int) -> float:
        """The percentage of members with strictly lower influence."""
        n = len(self.ranking)
        if n == 0 or self.status[u] == _SUSPENDED:
            return 0.0
        return 100.0 * _core.rank_of(self.ranking, self.x, float(self.x[u])) / n

    def percentiles(self, users: np.ndarray) -> np.ndarray:
        """``percentile`` for many users: a binary search each over the ranking (no
        sorted copy of the values is kept)."""
        out = np.zeros(len(users))
        if len(self.ranking) == 0 or len(users) == 0:
            return out
        below = np.empty(len(users), np.int64)
        _core.count_below(self.ranking, self.x, self.x[users].astype(np.float64), below)
        out[:] = 100.0 * below / len(self.ranking)
        out[self.status[users] == _SUSPENDED] = 0.0
        return out

    @cached_property
    def time_parts(self) -> tuple[int, int]:
        """The snapshot time as (seconds, nanos), for wire timestamps."""
        return seconds_and_nanos(self.time)

    def explanation(self, u: int, contributions: Contributions = _NO_CONTRIBUTIONS) -> Explanation:
        """The user's explanation with its summary; ``contributions`` are what
        ``Engine.contributions`` read from the trust graph (none by default)."""
        r = self.received[u].tolist()
        distrust, kept = self.distrust_of(u)
        numbers = Explanation(
            engagement_received=r[0],
            engagement_saturated=r[1],
            endorsements_received=r[2],
            endorsements_effective=r[3],
            reciprocity_removed=r[4],
            teleport_share=self.teleport_share_of(u),
            top_contributors=contributions.top,
            distrust_received=distrust,
            trust_kept=kept,
            credibility_from_young_accounts=contributions.from_young_accounts,
            credibility_from_own_cluster=contributions.from_own_cluster,
        )
        return replace(numbers, summary=summary(numbers, self.maturity_age_seconds))

    def distrust_of(self, u: int) -> tuple[float, float]:
        """The user's decayed distrust received and the share of trust it keeps."""
        i = int(np.searchsorted(self.distrusted, u))
        if i < len(self.distrusted) and self.distrusted[i] == u:
            return float(self.distrust_received[i]), float(self.trust_kept[i])
        return 0.0, 1.0

    def received_x(self, u: int) -> float:
        """What the user received before its own distrust discount (``x / kept``): the
        whole its contributors' and the teleport's shares are of."""
        kept = self.distrust_of(u)[1]
        return float(self.x[u]) / kept if kept > 0 else 0.0

    def teleport_share_of(self, u: int) -> float:
        x = self.received_x(u)
        return float(self.teleport[u]) / x if x > 0 else 0.0

    def score(
        self,
        user_id: str,
        topic: str = "",
        contributions: Contributions = _NO_CONTRIBUTIONS,
    ) -> UserScore:
        u = self.user(user_id)
        explanation = self.explanation(u, contributions)
        topic = normalize_topic(topic)
        if topic:
            value, pct, top = self._topic_entry(u, topic)
            score = log_scale_one(value, top)
            influence = value
        else:
            influence = self.influence_of(u)
            score = log_scale_one(influence, self.influence_max)
            pct = self.percentile(u)
        return UserScore(
            user_id=user_id,
            topic=topic,
            score=score,
            influence=influence,
            percentile=pct,
            status=_STATUSES[self.status[u]],
            explanation=explanation,
            sequence=self.sequence,
            compute_time=self.time,
        )

    def scores(
        self, user_ids: Sequence[str], topic: str = ""
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Vectorised ``score`` for many users: (found, score, influence, percentile),
        zeros where a user is not in this snapshot."""
        index = self.user_index
        dense = np.fromiter((index.get(u, -1) for u in user_ids), np.int64, len(user_ids))
        found = (dense >= 0) & (dense < self.n_users)
        users = dense[found]
        score = np.zeros(len(dense))
        influence = np.zeros(len(dense))
        percentile = np.zeros(len(dense))
        topic = normalize_topic(topic)
        if topic:
            entries = [self._topic_entry(int(u), topic) for u in users]
            top = entries[0][2] if entries else 0.0
            values = np.array([e[0] for e in entries])
            influence[found] = values
            percentile[found] = [e[1] for e in entries]
            score[found] = log_scale(values, top)
        elif self.mass > 0:
            member = self.status[users] != _SUSPENDED
            values = np.where(member, self.x[users], 0.0) * (self.members / self.mass)
            influence[found] = values
            score[found] = log_scale(values, self.influence_max)
            percentile[found] = self.percentiles(users)
        else:
            score[found] = 1.0
        return found, score, influence, percentile

    def top(self, limit: int, topic: str = "") -> list[RankedUser]:
        """The ``limit`` highest users, highest first."""
        topic = normalize_topic(topic)
        if topic:
            t = self.topic_index.get(topic)
            if t is None or t not in self.topic_bounds:
                return []
            lo, hi, top = self.topic_bounds[t]
            values = self.topic_value[lo:hi]
            users = self.topic_keys[lo:hi] - t * self.n_users
            best = np.lexsort((users, -values))[:limit]
            return [
                RankedUser(
                    self.user_ids[int(users[i])], log_scale_one(values[i], top), float(values[i])
                )
                for i in best
            ]
        best = self.ranking[::-1][:limit]
        return [
            RankedUser(
                self.user_ids[int(u)],
                log_scale_one(self.influence_of(u), self.influence_max),
                self.influence_of(u),
            )
            for u in best
        ]

    @cached_property
    def ranked_topics(self) -> tuple[list[str], list[int]]:
        """The topics that rank anyone (the general topic aside), sorted by name, and
        how many users each ranks."""
        # A copy first: the engine adds topics to the index while readers read.
        named = sorted(
            (name, self.topic_bounds[t][1] - self.topic_bounds[t][0])
            for name, t in list(self.topic_index.items())
            if name and t in self.topic_bounds
        )
        return [name for name, _ in named], [count for _, count in named]

    def topics_after(self, after: str, limit: int) -> tuple[list[TopicSummary], bool]:
        """Up to ``limit`` ranked topics named after ``after`` (sorted by name), with
        their ranked users, and whether more follow."""
        names, counts = self.ranked_topics
        lo = bisect.bisect_right(names, after)
        hi = min(lo + limit, len(names))
        page = [TopicSummary(n, c) for n, c in zip(names[lo:hi], counts[lo:hi])]
        return page, hi < len(names)

    def _topic_entry(self, u: int, topic: str) -> tuple[float, float, float]:
        t = self.topic_index.get(topic)
        if t is None or t not in self.topic_bounds:
            return 0.0, 0.0, 0.0
        lo, hi, top = self.topic_bounds[t]
        key = t * self.n_users + u
        i = lo + int(np.searchsorted(self.topic_keys[lo:hi], key))
        if i < hi and self.topic_keys[i] == key:
            return float(self.topic_value[i]), float(self.topic_percentile[i]), top
        return 0.0, 0.0, top


def ranking_order(values: np.ndarray, threads: int = 1) -> np.ndarray:
    """``sorted_order(values)``, the stable ascending order; with ``threads`` > 1
    and ``PARALLEL_SORT_MIN`` values or more, its two halves sort at once (numpy's
    sort lets go of the GIL) and one pass merges them."""
    if threads < 2 or len(values) < PARALLEL_SORT_MIN:
        return sorted_order(values)
    values = np.ascontiguousarray(values, np.float64)
    half = len(values) // 2
    with ThreadPoolExecutor(1) as pool:
        upper = pool.submit(_sorted_run, values, half, len(values))
        lower, lower_values = _sorted_run(values, 0, half)
        upper_order, upper_values = upper.result()
    order = np.empty(len(values), np.int64)
    _core.merge_orders(lower_values, lower, upper_values, upper_order, order)
    return order


def _sorted_run(values: np.ndarray, start: int, stop: int) -> tuple[np.ndarray, np.ndarray]:
    """The stable order of ``values[start:stop]`` (as positions in ``values``) and
    the values in it."""
    order = sorted_order(values[start:stop])
    ordered = values[start:stop][order]
    order += start
    return order, ordered


def _ranking(
    previous: Snapshot, influence: np.ndarray, members: np.ndarray, threads: int
) -> np.ndarray:
    """Members by influence, ascending; equal ones in the order of the previous
    ranking, then by user (the order that is stable across refreshes)."""
    n = len(influence)
    seen = np.zeros(n, bool)
    prev = previous.ranking[previous.ranking < n]
    prev = prev[members[prev]]
    seen[prev] = True
    perm = np.concatenate([prev, np.flatnonzero(members & ~seen).astype(np.int32)])
    return perm[ranking_order(influence[perm], threads)]


def build_snapshot(
    *,
    previous: Snapshot,
    time: float,
    sequence: int,
    user_ids: Sequence[str],
    user_index: Mapping[str, int],
    topics: Mapping[str, int],
    status: np.ndarray,
    x: np.ndarray,
    teleport: np.ndarray,
    received: np.ndarray,
    topic_records: Mapping[str, np.ndarray],
    topic_min_endorsers: int,
    stats: Mapping[str, Any],
    distrust: Mapping[str, np.ndarray] | None = None,
    maturity_age_seconds: float = ModelParams.maturity_age_seconds,
    threads: int = 1,
) -> Snapshot:
    """Normalise the solver's ``x`` (discounted by distrust) into credibility and
    influence, and index topics (a user is ranked in a topic with
    ``topic_min_endorsers`` credible endorsers; a distrusted user's topic value keeps
    the share of trust it keeps). ``distrust``: ``users``, ``received``, ``kept``
    (``Snapshot.distrusted`` and its companions); ``threads``: how many the ranking's
    sort may use."""
    n = len(status)
    members = status != AccountStatus.SUSPENDED
    n_members = int(members.sum())
    mass = float(x[members].sum())
    influence = (np.where(members, x, 0.0) / mass if mass > 0 else np.zeros(n)) * n_members
    ranking = _ranking(previous, x, members, threads)

    # A suspended user is ranked in no topic (it scores 1 there, as it does globally),
    # nor is one without enough credible endorsers there.
    src, dst, on = topic_records["src"], topic_records["dst"], topic_records["topic"]
    ranked = (status[dst] != _SUSPENDED) & supported(
        on, dst, src, influence[src] > 0, topic_min_endorsers
    )
    contribution = influence[src[ranked]] * topic_records["weight"][ranked]
    distrusted = np.zeros(0, np.int64) if distrust is None else distrust["users"]
    if len(distrusted):
        kept = np.ones(n)
        kept[distrusted] = distrust["kept"]  # type: ignore[index]
        contribution *= kept[dst[ranked]]
    topic = topic_values(on[ranked], dst[ranked], contribution, n)
    return Snapshot(
        time=time,
        sequence=sequence,
        n_users=n,
        user_ids=user_ids,
        user_index=user_index,
        topic_index=topics,
        status=status,
        x=x,
        members=n_members,
        influence_max=float(influence.max(initial=0.0)),
        ranking=ranking.astype(np.int32),
        received=received,
        teleport=teleport,
        mass=mass,
        topic_keys=topic.keys,
        topic_value=topic.value,
        topic_percentile=topic.percentile,
        topic_bounds=topic.bounds,
        stats=dict(stats),
        maturity_age_seconds=maturity_age_seconds,
        **(
            {}
            if distrust is None
            else {
                "distrusted": distrust["users"],
                "distrust_received": distrust["received"],
                "trust_kept": distrust["kept"],
            }
        ),
    )
