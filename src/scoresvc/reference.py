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
    credibility: np.ndarray  # phi c of step 9, normalised to sum to 1 over members
    trust_kept: np.ndarray  # phi of step 8, shape (users,)
    distrust_received: np.ndarray  # decayed live distrusts received, shape (users,)
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
        if self.trust_kept[user] <= 0:
            return []
        into = np.flatnonzero((self.pair_dst == user) & (self.transition > 0))
        contribution = self.damping * self.credibility[self.pair_src[into]] * self.transition[into]
        keep = contribution > 0
        into, contribution = into[keep], contribution[keep]
        order = np.lexsort((self.pair_src[into], -contribution))[:k]
        # The shares are of what the user received, before its own discount.
        cu = self.credibility[user] / self.trust_kept[user]
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
    users = np.concatenate(
        [log.actor, log.target, log.endorser, log.endorsee, log.distruster, log.distrusted]
    )
    times = np.concatenate(
        [log.ts, log.ts, log.endorse_ts, log.endorse_ts, log.distrust_ts, log.distrust_ts]
    )
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
    """Step 9's mapping to 1-100: ``1 + 99 ln(1 + v) / ln(1 + v_max)``."""
    top = values.max(initial=0.0)
    if top <= 0:
        return np.ones_like(values)
    return 1.0 + 99.0 * (np.log1p(values) / np.log1p(top))


@dataclass
class Pairs:
    """Every ordered (a, b) with an interaction or a live endorsement, sorted by code
    ``a * n + b``, and which pair each event falls in."""

    n_users: int
    src: np.ndarray
    dst: np.ndarray
    reverse: np.ndarray  # index of (b, a), meaningful where has_reverse
    has_reverse: np.ndarray
    of_interaction: np.ndarray  # pair of each interaction
    of_endorsement: np.ndarray  # pair of each live endorsement

    def to_targets(self, per_pair: np.ndarray) -> np.ndarray:
        """Sum of a per-pair value over each user's in-pairs."""
        return np.bincount(self.dst, weights=per_pair, minlength=self.n_users)

    def from_sources(self, per_pair: np.ndarray) -> np.ndarray:
        """Sum of a per-pair value over each user's out-pairs."""
        return np.bincount(self.src, weights=per_pair, minlength=self.n_users)


def index_pairs(log: EventLog, live: np.ndarray) -> Pairs:
    """Step 2's pairs: every ordered (a, b) that has an interaction or a live
    endorsement, with its reverse (b, a) where that is a pair too."""
    n = log.n_users
    src_all = np.concatenate([log.actor, log.endorser[live]])
    dst_all = np.concatenate([log.target, log.endorsee[live]])
    pair_code, pair_of = np.unique(src_all * n + dst_all, return_inverse=True)
    n_pairs = len(pair_code)
    src, dst = pair_code // n, pair_code % n
    rev_code = dst * n + src
    rev = np.searchsorted(pair_code, rev_code)
    rev[rev >= n_pairs] = 0
    has_rev = pair_code[rev] == rev_code if n_pairs else np.zeros(0, bool)
    return Pairs(
        n_users=n,
        src=src,
        dst=dst,
        reverse=rev,
        has_reverse=has_rev,
        of_interaction=pair_of[: log.n_interactions],
        of_endorsement=pair_of[log.n_interactions :],
    )


def decayed_pair_sums(
    log: EventLog, live: np.ndarray, pairs: Pairs, now: float, p: ModelParams
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Steps 1-2, decay and pair sums: ``W_k(a->b)`` per kind, ``E(a->b)`` summed over
    topics, and each live endorsement's decayed value (kept per topic for step 10)."""
    half_life = p.half_life_seconds
    W = np.zeros((len(pairs.src), 4))
    weights = np.asarray(p.kind_weights)
    decay = np.exp2(-(now - log.ts) / half_life)
    counts = 1.0 if log.weight is None else log.weight
    np.add.at(
        W,
        (pairs.of_interaction, log.kind.astype(np.int64) - 1),
        weights[log.kind - 1] * decay * counts,
    )
    endorse_value = p.endorsement_weight * np.exp2(-(now - log.endorse_ts[live]) / half_life)
    E = np.bincount(pairs.of_endorsement, weights=endorse_value, minlength=len(pairs.src))
    return W, E, endorse_value


def reciprocity(
    W: np.ndarray,
    E: np.ndarray,
    pairs: Pairs,
    first_seen: np.ndarray,
    now: float,
    p: ModelParams,
) -> tuple[np.ndarray, np.ndarray]:
    """Step 3, reciprocity: ``W'_k`` and ``E'``, each pair's matched volume across all
    kinds removed as far as its ends lack support from established others."""
    src, dst = pairs.src, pairs.dst
    V = W.sum(axis=1) + E
    V_rev = np.where(pairs.has_reverse, V[pairs.reverse], 0.0)
    established = (first_seen <= now - p.maturity_age_seconds).astype(np.float64)
    support = pairs.to_targets(established[src] * V)
    with np.errstate(divide="ignore", invalid="ignore"):
        own_src = np.where(support[src] > 0, 1.0 - established[dst] * V_rev / support[src], 0.0)
        own_dst = np.where(support[dst] > 0, 1.0 - established[src] * V / support[dst], 0.0)
        independent = np.clip(np.minimum(own_src, own_dst), 0.0, 1.0)
        matched = np.where(V > 0, np.minimum(V, V_rev) / V, 0.0)
    removed_share = p.reciprocity * matched * (1.0 - independent**2)
    return W * (1.0 - removed_share)[:, None], E * (1.0 - removed_share)


def saturation(W_pen: np.ndarray) -> np.ndarray:
    """Step 4, saturation: the engagement edge ``s(a->b) = ln(1 + sum_k W'_k(a->b))``."""
    return np.log1p(W_pen.sum(axis=1))


def budget(
    E: np.ndarray, E_pen: np.ndarray, pairs: Pairs, p: ModelParams
) -> tuple[np.ndarray, np.ndarray]:
    """Step 5, budget: ``beta_a`` on the un-penalised sums, and the endorsement edge."""
    given = pairs.from_sources(E)
    beta = np.where(
        given > p.endorsement_budget, p.endorsement_budget / np.maximum(given, 1e-300), 1.0
    )
    return beta, beta[pairs.src] * E_pen


def trust_graph(
    W: np.ndarray,
    E: np.ndarray,
    s: np.ndarray,
    e: np.ndarray,
    beta: np.ndarray,
    pairs: Pairs,
    suspended: np.ndarray,
    p: ModelParams,
) -> tuple[np.ndarray, np.ndarray]:
    """Step 6, trust graph: ``g = s + e`` and ``P(a->b) = g(a->b) / D_a``."""
    src = pairs.src
    g = s + e
    # The normaliser uses weights before the penalty, so what it removes leaks.
    D = pairs.from_sources(np.log1p(W.sum(axis=1)) + beta[src] * E)
    # ... and is at least kappa, so an old only-link passes little.
    D = np.where(D > 0, np.maximum(D, p.min_row_weight), 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        P = np.where(D[src] > 0, g / D[src], 0.0)
    # Suspended accounts pass no trust, and trust sent to them is lost.
    P[suspended[src] | suspended[pairs.dst]] = 0.0
    return g, P


def solve_credibility(
    P: np.ndarray,
    pairs: Pairs,
    teleport: np.ndarray,
    p: ModelParams,
    tolerance: float,
    max_iterations: int,
) -> tuple[np.ndarray, int]:
    """Step 7, credibility: personalised PageRank anchored in the teleport vector."""
    return personalised_pagerank(
        lambda c: p.damping * pairs.to_targets(P * c[pairs.src]),
        teleport,
        tolerance,
        max_iterations,
    )


def live_distrusts(log: EventLog, now: float, p: ModelParams) -> tuple[np.ndarray, ...]:
    """Step 8's live distrusts: (distruster, distrusted, decayed weight), the deciding
    event of each (distruster, distrusted, topic) being a distrust."""
    winners = latest_endorsement_events(
        log.distruster, log.distrusted, log.distrust_topic, log.distrust_ts, log.distrust_retracted
    )
    live = winners[~log.distrust_retracted[winners]]
    weight = 2.0 ** (-(now - log.distrust_ts[live]) / p.half_life_seconds)
    return log.distruster[live], log.distrusted[live], weight


def trust_kept(
    c: np.ndarray, distrusts: tuple[np.ndarray, ...], n_users: int, p: ModelParams
) -> np.ndarray:
    """Step 8, the share of trust each user keeps: ``phi = c / (c + gamma X)``, where
    ``X_u`` sums each distruster's credibility over its distrusts (by weight, divided
    by at least 1)."""
    src, dst, weight = distrusts
    given = np.bincount(src, weights=weight, minlength=n_users)
    share = weight / np.maximum(given[src], 1.0)
    X = np.bincount(dst, weights=c[src] * share, minlength=n_users)
    denominator = c + p.distrust_strength * X
    return np.where(denominator > 0, c / np.where(denominator > 0, denominator, 1.0), 1.0)


def solve_discounted(
    P: np.ndarray,
    pairs: Pairs,
    teleport: np.ndarray,
    phi: np.ndarray,
    p: ModelParams,
    tolerance: float,
    max_iterations: int,
) -> tuple[np.ndarray, int]:
    """Step 8, credibility again with each user passing on ``phi`` of what it holds."""
    return personalised_pagerank(
        lambda c: p.damping * pairs.to_targets(P * (phi * c)[pairs.src]),
        teleport,
        tolerance,
        max_iterations,
    )


def influence_and_score(
    c: np.ndarray, phi: np.ndarray, suspended: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Step 9, influence and score: ``I_u = N phi_u c_u / sum(phi c)``, its 1-100 score
    and percentile."""
    members = np.flatnonzero(~suspended)
    kept = np.where(suspended, 0.0, phi * c)
    total = kept.sum()
    influence = members.size * kept / total if total > 0 else np.zeros(len(c))
    return influence, _log_scale(influence), _rank_lower(influence, members)


def received_sums(
    W: np.ndarray,
    W_pen: np.ndarray,
    E: np.ndarray,
    E_pen: np.ndarray,
    s: np.ndarray,
    e: np.ndarray,
    pairs: Pairs,
) -> np.ndarray:
    """Explanation: what each user received (columns as model.RECEIVED_COLUMNS)."""
    received = np.zeros((pairs.n_users, 5))
    received[:, 0] = pairs.to_targets(W.sum(axis=1))
    received[:, 1] = pairs.to_targets(s)
    received[:, 2] = pairs.to_targets(E)
    received[:, 3] = pairs.to_targets(e)
    received[:, 4] = pairs.to_targets((W - W_pen).sum(axis=1) + (E - E_pen))
    return received


def teleport_shares(
    P: np.ndarray, credibility: np.ndarray, phi: np.ndarray, pairs: Pairs, damping: float
) -> np.ndarray:
    """Explanation: the share of each user's credibility that came by teleport."""
    with np.errstate(divide="ignore", invalid="ignore"):
        inflow = damping * pairs.to_targets(P * (phi * credibility)[pairs.src])
        return np.where(credibility > 0, 1.0 - inflow / credibility, 0.0)


TopicTable = dict[int, dict[int, float]]


def topic_scores(
    log: EventLog,
    live: np.ndarray,
    endorse_value: np.ndarray,
    E: np.ndarray,
    E_pen: np.ndarray,
    beta: np.ndarray,
    influence: np.ndarray,
    pairs: Pairs,
    phi: np.ndarray,
    p: ModelParams,
) -> tuple[TopicTable, TopicTable, TopicTable]:
    """Step 10, topic scores: per topic, value (times the endorsee's ``phi``), 1-100
    score and percentile of each user with at least ``K`` distinct credible endorsers
    there, suspended users in none."""
    suspended = np.asarray(log.status) == AccountStatus.SUSPENDED
    src, dst = pairs.src, pairs.dst
    # Each live endorsement carries its pair's reciprocity discount E'/E.
    with np.errstate(divide="ignore", invalid="ignore"):
        pair_discount = np.where(E > 0, E_pen / E, 0.0)
    topic_value: TopicTable = {}
    topic_score: TopicTable = {}
    topic_percentile: TopicTable = {}
    for t in np.unique(log.topic[live]):
        in_topic = (log.topic[live] == t) & ~suspended[log.endorsee[live]]
        if not in_topic.any():
            continue
        at = pairs.of_endorsement[in_topic]
        contribution = (
            influence[src[at]] * beta[src[at]] * endorse_value[in_topic] * (pair_discount[at])
        )
        value = phi * np.bincount(dst[at], weights=contribution, minlength=pairs.n_users)
        credible = influence[src[at]] > 0  # a suspended endorser has none
        # One live endorsement per (endorser, endorsee, topic): pairs count endorsers.
        endorsers = np.bincount(dst[at][credible], minlength=pairs.n_users)
        users = np.flatnonzero(endorsers >= p.topic_min_endorsers)
        if len(users) == 0:
            continue
        mapped = _log_scale(value[users])
        pct = _rank_lower(value, users)
        topic_value[int(t)] = {int(u): float(value[u]) for u in users}
        topic_score[int(t)] = {int(u): float(m) for u, m in zip(users, mapped)}
        topic_percentile[int(t)] = {int(u): float(pct[u]) for u in users}
    return topic_value, topic_score, topic_percentile


def compute(
    log: EventLog,
    now: float,
    params: ModelParams | None = None,
    *,
    tolerance: float = 1e-12,
    max_iterations: int = 2000,
) -> ReferenceSnapshot:
    """Evaluate the model on ``log`` at time ``now``, step by step."""
    p = params or ModelParams()
    status = np.asarray(log.status)
    suspended = status == AccountStatus.SUSPENDED
    first_seen = first_seen_times(log)
    live = live_endorsements(log)
    pairs = index_pairs(log, live)
    W, E, endorse_value = decayed_pair_sums(log, live, pairs, now, p)  # 1-2
    W_pen, E_pen = reciprocity(W, E, pairs, first_seen, now, p)  # 3
    s = saturation(W_pen)  # 4
    beta, e = budget(E, E_pen, pairs, p)  # 5
    g, P = trust_graph(W, E, s, e, beta, pairs, suspended, p)  # 6
    teleport = teleport_prior(status, first_seen, now, p)  # 7
    c, iterations = solve_credibility(P, pairs, teleport, p, tolerance, max_iterations)
    distrusts = live_distrusts(log, now, p)  # 8
    phi = trust_kept(np.where(suspended, 0.0, c), distrusts, log.n_users, p)
    if (phi < 1).any():
        c, more = solve_discounted(P, pairs, teleport, phi, p, tolerance, max_iterations)
        iterations += more
    influence, score, percentile = influence_and_score(c, phi, suspended)  # 9
    topic_value, topic_score, topic_percentile = topic_scores(  # 10
        log, live, endorse_value, E, E_pen, beta, influence, pairs, phi, p
    )
    return ReferenceSnapshot(
        time=now,
        n_users=log.n_users,
        pair_src=pairs.src,
        pair_dst=pairs.dst,
        interaction_sums=W,
        endorsement_sums=E,
        interaction_penalised=W_pen,
        endorsement_penalised=E_pen,
        engagement_edge=s,
        budget_factor=beta,
        endorsement_edge=e,
        trust_edge=g,
        transition=P,
        credibility=influence / max(int((~suspended).sum()), 1),
        trust_kept=phi,
        distrust_received=np.bincount(distrusts[1], weights=distrusts[2], minlength=log.n_users),
        influence=influence,
        score=score,
        percentile=percentile,
        received=received_sums(W, W_pen, E, E_pen, s, e, pairs),
        teleport_share=teleport_shares(P, c, phi, pairs, p.damping),
        topic_value=topic_value,
        topic_score=topic_score,
        topic_percentile=topic_percentile,
        iterations=iterations,
        damping=p.damping,
    )
