"""The scoring rules every producer of scores shares (docs/model.md, steps 7-10): the
teleport vector (accounts' maturity and the seeds), influence to the 1-100 score,
percentiles, and per-topic values.

The engine, the live snapshot and the batch job all read these, so the service and a
batch run cannot drift apart. The numpy oracle (``scoresvc.reference``) keeps its own
transcription of the specification: tests compare two independent implementations,
and production never imports the oracle.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .arrays import distinct, lex_order
from .model import AccountStatus, ModelParams


def maturity(status: np.ndarray, first_seen: np.ndarray, now: float, age: float) -> np.ndarray:
    """Step 7's maturity of each member at ``now``: its age since first seen over the
    maturity age, capped at 1 (0 when first seen at ``now`` or later, or never); 0
    for the suspended."""
    grown = np.clip((now - np.asarray(first_seen, np.float64)) / age, 0.0, 1.0)
    return np.where(status != AccountStatus.SUSPENDED, grown, 0.0)


def established(first_seen: np.ndarray, now: float, age: float) -> np.ndarray:
    """Step 3's ``m`` at ``now``: 1 for each account first seen at or before
    ``now - age`` (whose support counts in the reciprocity gate), else 0."""
    return (np.asarray(first_seen, np.float64) <= now - age).astype(np.uint8)


def teleport_vector(
    status: np.ndarray, first_seen: np.ndarray, now: float, params: ModelParams
) -> np.ndarray:
    """Step 7's p at ``now``, unnormalised (any positive multiple gives the same
    credibility): without seeds each member's maturity, or 1 on every member when
    none has any; with seeds ``alpha`` on each non-suspended seed plus
    ``(1 - alpha) |S|`` shared in proportion to maturity (the seeds alone when no
    member has any)."""
    members = status != AccountStatus.SUSPENDED
    seeds = members & (status == AccountStatus.SEED)
    grown = maturity(status, first_seen, now, params.maturity_age_seconds)
    total = float(grown.sum())
    n_seeds = int(seeds.sum())
    if n_seeds == 0:
        return grown if total > 0 else members.astype(np.float64)
    if total <= 0:
        return seeds.astype(np.float64)
    alpha = params.seed_prior_share
    return alpha * seeds + (1.0 - alpha) * n_seeds * (grown / total)


def log_scale(values: np.ndarray, top: float) -> np.ndarray:
    """Step 9's mapping to 1-100: ``1 + 99 ln(1 + v) / ln(1 + v_max)``."""
    if top <= 0:
        return np.ones_like(values)
    # The ratio first, so the top user's is exactly 1 (99 v / v can round below 99);
    # clipped, since a value computed apart from the top may round a hair past it.
    return np.clip(1.0 + 99.0 * (np.log1p(values) / np.log1p(top)), 1.0, 100.0)


def log_scale_one(value: float, top: float) -> float:
    """``log_scale`` for one value, without numpy's per-call cost (a hot path)."""
    if top <= 0:
        return 1.0
    return min(100.0, max(1.0, 1.0 + 99.0 * (math.log1p(value) / math.log1p(top))))


def lower_share(values: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """For each element, the percentage of its group with a strictly lower value."""
    if values.size == 0:
        return np.zeros(0)
    order = np.lexsort((values, groups))
    v, g = values[order], groups[order]
    index = np.arange(len(v))
    new_group = np.ones(len(v), bool)
    new_group[1:] = g[1:] != g[:-1]
    new_run = new_group.copy()
    new_run[1:] |= v[1:] != v[:-1]
    group_start = np.maximum.accumulate(np.where(new_group, index, 0))
    run_start = np.maximum.accumulate(np.where(new_run, index, 0))
    ends = np.flatnonzero(np.append(new_group[1:], True))
    size = np.repeat(ends - np.flatnonzero(new_group) + 1, ends - np.flatnonzero(new_group) + 1)
    out = np.empty(len(v))
    out[order] = 100.0 * (run_start - group_start) / size
    return out


def member_percentiles(values: np.ndarray, members: np.ndarray) -> np.ndarray:
    """Each member's percentile among ``members`` (a boolean mask); 0 for the rest."""
    out = np.zeros(len(values))
    out[members] = lower_share(values[members], np.zeros(int(members.sum()), np.int64))
    return out


def supported(
    topic: np.ndarray, user: np.ndarray, endorser: np.ndarray, credible: np.ndarray, least: int
) -> np.ndarray:
    """Step 10's support rule over live topic endorsements (one row each): which rows
    are from a credible endorser (``credible``: credibility above 0) to a user whom
    at least ``least`` distinct credible endorsers endorse in that topic."""
    out = np.zeros(len(topic), bool)
    rows = np.flatnonzero(credible)
    if len(rows) == 0:
        return out
    width = int(user.max()) + 1
    key = np.asarray(topic, np.int64)[rows] * width + user[rows]
    who = np.asarray(endorser, np.int64)[rows]
    # Distinct (key, endorser) pairs in one sort, then endorsers counted per key.
    span = int(who.max()) + 1
    if int(key.max()) < 2**62 // span:  # both in one int64: one plain sort
        both = distinct(key * span + who)
        k = both // span
    else:
        order = lex_order((who, key))
        k, e = key[order], who[order]
        first = np.ones(len(k), bool)
        first[1:] = (k[1:] != k[:-1]) | (e[1:] != e[:-1])
        k = k[first]
    # k is sorted: its runs are the keys, their lengths the endorsers counted.
    starts = np.flatnonzero(np.r_[True, k[1:] != k[:-1]])
    counts = np.diff(np.r_[starts, len(k)])
    out[rows[np.isin(key, k[starts[counts >= least]])]] = True
    return out


@dataclass(frozen=True)
class TopicValues:
    """Step 10's per-(topic, user) values, sorted by ``key = topic * n_users + user``."""

    keys: np.ndarray
    value: np.ndarray
    percentile: np.ndarray  # within the key's topic
    bounds: dict[int, tuple[int, int, float]]  # topic -> (lo, hi, max value)

    def topics_and_users(self, n_users: int) -> tuple[np.ndarray, np.ndarray]:
        n = max(n_users, 1)
        return self.keys // n, self.keys % n

    def scores(self) -> np.ndarray:
        """Every value's 1-100 score, its topic's maximum scoring 100."""
        out = np.empty(len(self.value))
        for lo, hi, top in self.bounds.values():
            out[lo:hi] = log_scale(self.value[lo:hi], top)
        return out


def topic_values(
    topic: np.ndarray, user: np.ndarray, contribution: np.ndarray, n_users: int
) -> TopicValues:
    """Sum each endorsement's ``contribution`` per (topic, endorsee), with the topic's
    maximum (its 100) and each value's percentile within its topic."""
    keys, inverse = np.unique(topic * n_users + user, return_inverse=True)
    value = np.bincount(inverse, weights=contribution, minlength=len(keys))
    key_topic = keys // max(n_users, 1)
    bounds: dict[int, tuple[int, int, float]] = {}
    if len(keys):
        starts = np.flatnonzero(np.r_[True, key_topic[1:] != key_topic[:-1]])
        ends = np.r_[starts[1:], len(keys)]
        tops = np.maximum.reduceat(value, starts)
        bounds = {
            int(key_topic[s]): (int(s), int(e), float(m)) for s, e, m in zip(starts, ends, tops)
        }
    return TopicValues(keys, value, lower_share(value, key_topic), bounds)


@dataclass(frozen=True)
class Distrust:
    """Step 8's live distrusts at one time: who distrusts whom and each one's decayed
    weight (``2^(-(t - ts)/H)``: a fresh distrust weighs 1)."""

    src: np.ndarray
    dst: np.ndarray
    weight: np.ndarray

    @classmethod
    def at(cls, src: np.ndarray, dst: np.ndarray, ts: np.ndarray, now: float, half_life: float):
        ts = np.asarray(ts, np.float64)
        return cls(
            np.asarray(src, np.int64), np.asarray(dst, np.int64), np.exp2((ts - now) / half_life)
        )

    def received(self, n: int) -> np.ndarray:
        """Each user's decayed distrust received (the explanation's sum)."""
        return np.bincount(self.dst, weights=self.weight, minlength=n)

    def kept(self, credibility: np.ndarray, strength: float) -> np.ndarray:
        """Step 8's ``phi``: the share of its trust each user keeps, ``c / (c + gamma X)``
        with ``X`` the credibility its distrusters spend on it. Each distruster splits
        its credibility over its distrusts (in proportion to their weights, the whole of
        it on one fresh distrust). One step: the distrusters' credibility is the trust
        graph's alone, so distrusting one's accusers changes nothing they spend.
        ``credibility`` may be in any units (``phi`` is scale-free); 0 for the
        suspended."""
        n = len(credibility)
        if len(self.src) == 0 or strength == 0:
            return np.ones(n)
        c = np.asarray(credibility, np.float64)
        given = np.bincount(self.src, weights=self.weight, minlength=n)
        share = self.weight / np.maximum(given[self.src], 1.0)
        spent = np.bincount(self.dst, weights=c[self.src] * share, minlength=n)
        total = c + strength * spent
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(total > 0, c / total, 1.0)
