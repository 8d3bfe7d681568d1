"""The numpy reference of the scoring model: the oracle the compiled core is tested
against. Written for clarity, recomputing everything from raw events on every call;
each step is numbered as in docs/model.md.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .core.events import EventLog
from .core.model import AccountStatus, ModelParams


@dataclass
class ReferenceSnapshot:
    time: float
    n_users: int
    pair_src: np.ndarray
    pair_dst: np.ndarray
    interaction_sums: np.ndarray  # W_k(a->b), shape (pairs, 4)
    endorsement_sums: np.ndarray  # E(a->b), shape (pairs,)
    interaction_penalised: np.ndarray  # W'_k(a->b)
    endorsement_penalised: np.ndarray  # E'(a->b)
    engagement_edge: np.ndarray  # s(a->b)
    budget_factor: np.ndarray  # beta_a, shape (users,)
    endorsement_edge: np.ndarray  # e(a->b)
    trust_edge: np.ndarray  # g(a->b)
    transition: np.ndarray  # P(a->b)
    credibility: np.ndarray
    influence: np.ndarray
    score: np.ndarray
    percentile: np.ndarray
    received: np.ndarray  # shape (users, 5), model.RECEIVED_COLUMNS
    teleport_share: np.ndarray
    topic_value: dict[int, dict[int, float]]
    topic_score: dict[int, dict[int, float]]
    topic_percentile: dict[int, dict[int, float]]
    iterations: int
    damping: float

    def top_contributors(self, user: int, k: int) -> list[tuple[int, float]]:
        """The k sources contributing most ``d c_a P(a->u)``, with their share of c_u."""
        into = np.flatnonzero((self.pair_dst == user) & (self.transition > 0))
        contribution = (
            self.damping * self.credibility[self.pair_src[into]] * (self.transition[into])
        )
        keep = contribution > 0
        into, contribution = into[keep], contribution[keep]
        order = np.lexsort((self.pair_src[into], -contribution))[:k]
        cu = self.credibility[user]
        return [(int(self.pair_src[into[i]]), float(contribution[i] / cu)) for i in order]


def latest_endorsement_events(
    endorser: np.ndarray,
    endorsee: np.ndarray,
    topic: np.ndarray,
    ts: np.ndarray,
    retracted: np.ndarray,
) -> np.ndarray:
    """Indexes of the event that decides each (endorser, endorsee, topic): the latest
    by time, a retraction beating an endorsement at the same second. Order of arrival
    does not matter."""
    if len(endorser) == 0:
        return np.empty(0, np.int64)
    order = np.lexsort((retracted, ts, topic, endorsee, endorser))
    key = np.stack([endorser, endorsee, topic])[:, order]
    last = np.ones(len(order), bool)
    last[:-1] = np.any(key[:, 1:] != key[:, :-1], axis=0)
    return np.sort(order[last])


def live_endorsements(log: EventLog) -> np.ndarray:
    """Indexes of the endorsement events that are live: their key's deciding event
    (``latest_endorsement_events``) is an endorsement, not a retraction."""
    winners = latest_endorsement_events(
        log.endorser, log.endorsee, log.topic, log.endorse_ts, log.retracted
    )
    return winners[~log.retracted[winners]]


def first_seen_times(log: EventLog) -> np.ndarray:
    """ "Accounts and their age" (docs/model.md): the log's first-seen times, or each
    user's earliest event in the log (inf for a user with none)."""
    if log.first_seen is not None:
        return np.asarray(log.first_seen, np.float64)
    users = np.concatenate([log.actor, log.target, log.endorser, log.endorsee])
    times = np.concatenate([log.ts, log.ts, log.endorse_ts, log.endorse_ts])
    first = np.full(log.n_users, np.inf)
    np.minimum.at(first, users, times)
    return first


def teleport_prior(
    status: np.ndarray, first_seen: np.ndarray, now: float, p: ModelParams
) -> np.ndarray:
    """Step 7's p (summing to 1, or all 0 when there is no member): the maturity prior
    of members, uniform over members when no member has any maturity; with seeds,
    ``alpha`` of it uniform over the non-suspended seeds and the rest by maturity (all
    on the seeds when no member has any maturity)."""
    suspended = status == AccountStatus.SUSPENDED
    seeds = (status == AccountStatus.SEED) & ~suspended
    age = np.maximum(now - first_seen, 0.0)
    maturity = np.where(suspended, 0.0, np.minimum(age / p.maturity_age_seconds, 1.0))
    if maturity.sum() > 0:
        prior = maturity / maturity.sum()
    elif seeds.any():
        prior = seeds / seeds.sum()
    elif (~suspended).any():
        prior = (~suspended) / (~suspended).sum()
    else:
        return np.zeros(len(status))
    if not seeds.any():
        return prior
    alpha = p.seed_prior_share
    return alpha * seeds / seeds.sum() + (1.0 - alpha) * prior


def personalised_pagerank(
    flow: Callable[[np.ndarray], np.ndarray],
    teleport: np.ndarray,
    tolerance: float,
    max_iterations: int,
) -> tuple[np.ndarray, int]:
    """Step 7 (docs/model.md) by plain power iteration from the teleport vector
    ``teleport`` (summing to 1): ``flow(c)`` is ``d P^T c``; what the damping and the
    suspended lose returns by teleport. Returns the credibility (summing to 1, or all 0
    with nobody to teleport to) and the iterations taken."""
    if teleport.sum() == 0:
        return np.zeros(len(teleport)), 0
    c = teleport.copy()
    iterations = 0
    for iterations in range(1, max_iterations + 1):  # noqa: B007
        moved = flow(c)
        c_next = moved + (1.0 - moved.sum()) * teleport
        change = float(np.abs(c_next - c).sum())
        c = c_next
        if change < tolerance:
            break
    return c, iterations


def _rank_lower(values: np.ndarray, members: np.ndarray) -> np.ndarray:
    """Percentage of ``members`` with a strictly lower value, for each member."""
    out = np.zeros(len(values))
    if members.size == 0:
        return out
    sorted_values = np.sort(values[members])
    out[members] = 100.0 * np.searchsorted(sorted_values, values[members], "left") / (members.size)
    return out


def _log_scale(values: np.ndarray) -> np.ndarray:
    """Step 8's mapping to 1-100: ``1 + 99 ln(1 + v) / ln(1 + v_max)``."""
    top = values.max(initial=0.0)
    if top <= 0:
        return np.ones_like(values)
    return 1.0 + 99.0 * np.log1p(values) / np.log1p(top)


def compute(
    log: EventLog,
    now: float,
    params: ModelParams | None = None,
    *,
    tolerance: float = 1e-12,
    max_iterations: int = 2000,
) -> ReferenceSnapshot:
    """Evaluate the model on ``log`` at time ``now``."""
    p = params or ModelParams()
    n = log.n_users
    half_life = p.half_life_seconds
    status = np.asarray(log.status)
    suspended = status == AccountStatus.SUSPENDED

    # Pairs: every ordered (a, b) with an interaction or a live endorsement.
    live = live_endorsements(log)
    src_all = np.concatenate([log.actor, log.endorser[live]])
    dst_all = np.concatenate([log.target, log.endorsee[live]])
    pair_code, pair_of = np.unique(src_all * n + dst_all, return_inverse=True)
    n_pairs = len(pair_code)
    src, dst = pair_code // n, pair_code % n
    of_interaction = pair_of[: log.n_interactions]
    of_endorsement = pair_of[log.n_interactions :]
    rev_code = dst * n + src
    rev = np.searchsorted(pair_code, rev_code)
    rev[rev >= n_pairs] = 0
    has_rev = pair_code[rev] == rev_code if n_pairs else np.zeros(0, bool)

    # 1-2. Decayed pair sums per kind, and endorsements summed over topics.
    W = np.zeros((n_pairs, 4))
    weights = np.asarray(p.kind_weights)
    decay = np.exp2(-(now - log.ts) / half_life)
    counts = 1.0 if log.weight is None else log.weight
    np.add.at(
        W, (of_interaction, log.kind.astype(np.int64) - 1), weights[log.kind - 1] * decay * counts
    )
    endorse_value = p.endorsement_weight * np.exp2(-(now - log.endorse_ts[live]) / half_life)
    E = np.bincount(of_endorsement, weights=endorse_value, minlength=n_pairs)

    # 3. Reciprocity, per pair across all kinds, gated by independent support: what a
    # user receives from established accounts (first seen at least M before now).
    V = W.sum(axis=1) + E
    V_rev = np.where(has_rev, V[rev], 0.0)
    established = (first_seen_times(log) <= now - p.maturity_age_seconds).astype(np.float64)
    support = np.bincount(dst, weights=established[src] * V, minlength=n)
    with np.errstate(divide="ignore", invalid="ignore"):
        own_src = np.where(support[src] > 0, 1.0 - established[dst] * V_rev / support[src], 0.0)
        own_dst = np.where(support[dst] > 0, 1.0 - established[src] * V / support[dst], 0.0)
        independent = np.clip(np.minimum(own_src, own_dst), 0.0, 1.0)
        matched = np.where(V > 0, np.minimum(V, V_rev) / V, 0.0)
    removed_share = p.reciprocity * matched * (1.0 - independent**2)
    W_pen = W * (1.0 - removed_share)[:, None]
    E_pen = E * (1.0 - removed_share)

    # 4. Saturation.
    s = np.log1p(W_pen.sum(axis=1))

    # 5. Budget, on the un-penalised sums.
    given = np.bincount(src, weights=E, minlength=n)
    beta = np.where(
        given > p.endorsement_budget, p.endorsement_budget / np.maximum(given, 1e-300), 1.0
    )
    e = beta[src] * E_pen

    # 6. Trust graph; the normaliser uses weights before the penalty.
    g = s + e
    D = np.bincount(src, weights=np.log1p(W.sum(axis=1)) + beta[src] * E, minlength=n)
    # ... and is at least kappa, so an old only-link passes little.
    D = np.where(D > 0, np.maximum(D, p.min_row_weight), 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        P = np.where(D[src] > 0, g / D[src], 0.0)
    # Suspended accounts pass no trust, and trust sent to them is lost.
    P[suspended[src] | suspended[dst]] = 0.0

    # 7. Credibility: personalised PageRank by plain power iteration from p, which
    # anchors trust in accounts by age (and in the seeds).
    teleport = teleport_prior(status, first_seen_times(log), now, p)
    credibility, iterations = personalised_pagerank(
        lambda c: p.damping * np.bincount(dst, weights=P * c[src], minlength=n),
        teleport,
        tolerance,
        max_iterations,
    )

    # 8. Influence and score.
    members = np.flatnonzero(~suspended)
    influence = np.where(suspended, 0.0, members.size * credibility)
    score = _log_scale(influence)
    percentile = _rank_lower(influence, members)

    # Explanation: what each user received.
    received = np.zeros((n, 5))
    received[:, 0] = np.bincount(dst, weights=W.sum(axis=1), minlength=n)
    received[:, 1] = np.bincount(dst, weights=s, minlength=n)
    received[:, 2] = np.bincount(dst, weights=E, minlength=n)
    received[:, 3] = np.bincount(dst, weights=e, minlength=n)
    removed = (W - W_pen).sum(axis=1) + (E - E_pen)
    received[:, 4] = np.bincount(dst, weights=removed, minlength=n)
    with np.errstate(divide="ignore", invalid="ignore"):
        inflow = p.damping * np.bincount(dst, weights=P * credibility[src], minlength=n)
        teleport_share = np.where(credibility > 0, 1.0 - inflow / credibility, 0.0)

    # 9. Topic scores: each live endorsement carries its pair's reciprocity discount;
    # a topic ranks the users it has at least topic_min_endorsers distinct endorsers
    # with credibility for, suspended users in no topic.
    with np.errstate(divide="ignore", invalid="ignore"):
        pair_discount = np.where(E > 0, E_pen / E, 0.0)
    topic_value: dict[int, dict[int, float]] = {}
    topic_score: dict[int, dict[int, float]] = {}
    topic_percentile: dict[int, dict[int, float]] = {}
    for t in np.unique(log.topic[live]):
        in_topic = (log.topic[live] == t) & ~suspended[log.endorsee[live]]
        if not in_topic.any():
            continue
        pairs = of_endorsement[in_topic]
        contribution = (
            influence[src[pairs]]
            * beta[src[pairs]]
            * endorse_value[in_topic]
            * (pair_discount[pairs])
        )
        value = np.bincount(dst[pairs], weights=contribution, minlength=n)
        credible = influence[src[pairs]] > 0  # a suspended endorser has none
        # One live endorsement per (endorser, endorsee, topic): pairs count endorsers.
        endorsers = np.bincount(dst[pairs][credible], minlength=n)
        users = np.flatnonzero(endorsers >= p.topic_min_endorsers)
        if len(users) == 0:
            continue
        mapped = _log_scale(value[users])
        pct = _rank_lower(value, users)
        topic_value[int(t)] = {int(u): float(value[u]) for u in users}
        topic_score[int(t)] = {int(u): float(m) for u, m in zip(users, mapped)}
        topic_percentile[int(t)] = {int(u): float(pct[u]) for u in users}

    return ReferenceSnapshot(
        time=now,
        n_users=n,
        pair_src=src,
        pair_dst=dst,
        interaction_sums=W,
        endorsement_sums=E,
        interaction_penalised=W_pen,
        endorsement_penalised=E_pen,
        engagement_edge=s,
        budget_factor=beta,
        endorsement_edge=e,
        trust_edge=g,
        transition=P,
        credibility=credibility,
        influence=influence,
        score=score,
        percentile=percentile,
        received=received,
        teleport_share=teleport_share,
        topic_value=topic_value,
        topic_score=topic_score,
        topic_percentile=topic_percentile,
        iterations=iterations,
        damping=p.damping,
    )
