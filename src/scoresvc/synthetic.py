"""A seeded synthetic community: power-law actors and targets, mixed kinds, 90 days of
timestamps and a share of endorsements. Feeds ``scoresvc demo`` and the benchmarks.
"""

from __future__ import annotations

import numpy as np

from .core.events import EventLog
from .core.model import SECONDS_PER_DAY

#: Share of LIKE, MENTION, REPLY, RESHARE among interactions.
KIND_MIX = (0.6, 0.15, 0.15, 0.1)
TOPICS = (
    "",
    "python",
    "rust",
    "databases",
    "distributed-systems",
    "ml",
    "security",
    "frontend",
    "devops",
    "design",
)


def _power_law(rng: np.random.Generator, n: int, users: int, skew: float) -> np.ndarray:
    """Ids whose frequency falls off as a power of popularity rank (skew > 1 is
    heavier-tailed), shuffled so popular users are spread over the id range."""
    rank = (users * rng.random(n) ** skew).astype(np.int64)
    return rng.permutation(users)[np.minimum(rank, users - 1)]


def _uniform_hash(x: np.ndarray) -> np.ndarray:
    """A deterministic uniform [0, 1) per value (splitmix64 finaliser)."""
    x = x.astype(np.uint64)
    x ^= x >> np.uint64(33)
    x *= np.uint64(0xFF51AFD7ED558CCD)
    x ^= x >> np.uint64(33)
    x *= np.uint64(0xC4CEB9FE1A85EC53)
    x ^= x >> np.uint64(33)
    return (x >> np.uint64(11)).astype(np.float64) / 2.0**53


def _circle_targets(
    rng: np.random.Generator, actor: np.ndarray, users: int, size: int, skew: float
) -> np.ndarray:
    """Each actor's own few regular contacts (popular users more often): people
    engage mostly with the same circle, which is what makes pairs repeat."""
    slot = rng.integers(0, size, len(actor)).astype(np.uint64)
    u = _uniform_hash(actor.astype(np.uint64) * np.uint64(size) + slot)
    rank = np.minimum((users * u**skew).astype(np.int64), users - 1)
    return rng.permutation(users)[rank]


def community(
    n_events: int,
    n_users: int,
    *,
    seed: int = 0,
    end: float = 1_767_225_600.0,
    days: float = 90.0,
    endorsement_share: float = 0.02,
    retraction_share: float = 0.05,
    circle_size: int = 5,
    circle_share: float = 0.88,
    reply_share: float = 0.3,
) -> EventLog:
    """``n_events`` events (interactions plus ``endorsement_share`` endorsement events)
    over ``n_users`` users, timestamps in the ``days`` before ``end``.

    Actors are power-law active; ``circle_share`` of their interactions go to a
    circle of ``circle_size`` regular contacts, the rest to power-law popular
    targets; ``reply_share`` of the circle's interactions go the other way (contacts
    engage back, so pairs are reciprocated, as in real communities).
    """
    if n_users < 2:
        raise ValueError("a community needs at least two users")
    rng = np.random.default_rng(seed)
    n_endorse = round(n_events * endorsement_share)
    n_interact = n_events - n_endorse

    def pairs(
        n: int, actor_skew: float, target_skew: float, circle_share: float
    ) -> tuple[np.ndarray, np.ndarray]:
        actor = _power_law(rng, n, n_users, actor_skew)
        target = _power_law(rng, n, n_users, target_skew)
        in_circle = rng.random(n) < circle_share
        target[in_circle] = _circle_targets(
            rng, actor[in_circle], n_users, circle_size, target_skew
        )
        back = in_circle & (rng.random(n) < reply_share)
        actor[back], target[back] = target[back], actor[back].copy()
        same = actor == target
        target[same] = (target[same] + 1 + rng.integers(0, n_users - 1, same.sum())) % n_users
        return actor, target

    actor, target = pairs(n_interact, 4.0, 3.0, circle_share)
    endorser, endorsee = pairs(n_endorse, 1.5, 3.0, 0.0)
    start = end - days * SECONDS_PER_DAY
    kind = rng.choice(np.arange(1, 5, dtype=np.int8), size=n_interact, p=KIND_MIX)
    return EventLog(
        n_users=n_users,
        actor=actor,
        target=target,
        kind=kind,
        ts=rng.uniform(start, end, n_interact),
        endorser=endorser,
        endorsee=endorsee,
        topic=rng.integers(0, len(TOPICS), n_endorse),
        endorse_ts=rng.uniform(start, end, n_endorse),
        retracted=rng.random(n_endorse) < retraction_share,
        user_ids=[f"user{i:07d}" for i in range(n_users)],
        topics=list(TOPICS),
    )


def early_hubs(log: EventLog, count: int, days: float = 7.0) -> list[str]:
    """The ``count`` best-connected users (most events given or received) among those
    active in the first ``days`` of ``log``: natural seed accounts, established early
    and well known."""
    assert log.user_ids is not None
    users = np.concatenate([log.actor, log.target, log.endorser, log.endorsee])
    times = np.concatenate([log.ts, log.ts, log.endorse_ts, log.endorse_ts])
    if len(times) == 0:
        return []
    early = np.unique(users[times < times.min() + days * SECONDS_PER_DAY])
    degree = np.bincount(users, minlength=log.n_users)
    ranked = early[np.argsort(-degree[early], kind="stable")]
    return [log.user_ids[u] for u in ranked[:count]]
