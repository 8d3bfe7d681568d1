"""The model (docs/model.md, steps 1-8) as a data engineer would write it with Polars
and scipy: the strongest peer the benchmarks time the engine against.

* steps 1-3's sums: one lazy Polars query on packed uint64 pair keys (``a << 32 | b``):
  decay, the four per-kind sums, the latest event per endorsement key, and a self-join
  on the swapped key for each pair's reverse volume;
* steps 3-6 per pair in numpy (the gate, budgets, both log terms, ``P``);
* step 7 on scipy's CSR of ``d P^T``, its mat-vec split by rows over threads (scipy
  releases the GIL in it), by normalised power steps stopped by the engine's own
  certificate: every user's residual of ``x = p + d P^T x`` within
  ``1e-8 x_u + 1e-18 |p|`` (docs/model.md, "Why the tolerance holds").

It shares no code with the engine or the oracle: an independent transcription.
"""

from __future__ import annotations

import math
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import polars as pl
import scipy.sparse as sp

from scoresvc.core.events import EventLog
from scoresvc.core.model import AccountStatus, ModelParams

LOW = (1 << 32) - 1
HIGH = 1 << 32
# The engine's certificate (scoresvc.core.solver.SolverSettings).
RELATIVE, ABSOLUTE = 1e-8, 1e-18


@dataclass
class PeerResult:
    """Influence and the explanation sums per user (model.RECEIVED_COLUMNS), and how
    many power steps the certificate took."""

    influence: np.ndarray
    received: np.ndarray
    steps: int
    phases: dict[str, float]


def _decay(column: str, now: float, half_life: float) -> pl.Expr:
    """Step 1: ``2^(-(now - ts) / H)``."""
    return ((pl.col(column) - now) * (math.log(2.0) / half_life)).exp()


def _key(a: str, b: str) -> pl.Expr:
    return pl.col(a).cast(pl.UInt64) * HIGH | pl.col(b).cast(pl.UInt64)


def _pair_query(log: EventLog, now: float, params: ModelParams) -> pl.LazyFrame:
    """Steps 1-3's sums per ordered pair ``key``: ``w1..w4`` (decayed, unweighted by
    kind), ``E`` (live endorsements) and ``V_rev``, the reverse pair's volume."""
    h = params.half_life_seconds
    columns = {"a": log.actor, "b": log.target, "k": log.kind, "ts": log.ts}
    if log.weight is not None:
        columns["m"] = log.weight
    interactions = pl.LazyFrame(columns).with_columns(
        key=_key("a", "b"),
        v=_decay("ts", now, h) * (pl.col("m") if log.weight is not None else 1.0),
    )
    w = interactions.group_by("key").agg(
        pl.col("v").filter(pl.col("k") == kind).sum().alias(f"w{kind}") for kind in (1, 2, 3, 4)
    )
    endorsements = pl.LazyFrame(
        {
            "a": log.endorser,
            "b": log.endorsee,
            "t": log.topic,
            "ts": log.endorse_ts,
            "x": log.retracted,
        }
    ).with_columns(key=_key("a", "b"))
    # The latest event decides each (endorser, endorsee, topic); a retraction wins a tie.
    latest = endorsements.group_by("key", "t").agg(
        pl.col("ts").max(), pl.col("x").filter(pl.col("ts") == pl.col("ts").max()).any()
    )
    e = (
        latest.filter(~pl.col("x"))
        .group_by("key")
        .agg((_decay("ts", now, h) * params.endorsement_weight).sum().alias("E"))
    )
    kw = params.kind_weights
    pairs = (
        w.join(e, on="key", how="full", coalesce=True)
        .with_columns(pl.col("w1", "w2", "w3", "w4", "E").fill_null(0.0))
        .with_columns(
            V=sum(kw[k - 1] * pl.col(f"w{k}") for k in (1, 2, 3, 4)) + pl.col("E"),
        )
    )
    reverse = pairs.select(
        key=(pl.col("key") & LOW) * HIGH + pl.col("key") // HIGH, V_rev=pl.col("V")
    )
    return pairs.join(reverse, on="key", how="left").with_columns(pl.col("V_rev").fill_null(0.0))


def _first_seen_query(log: EventLog) -> pl.LazyFrame:
    """Each user's earliest event (a bulk load's first-seen time without the column)."""
    frames = [
        pl.LazyFrame({"u": users, "ts": times})
        for users, times in (
            (log.actor, log.ts),
            (log.target, log.ts),
            (log.endorser, log.endorse_ts),
            (log.endorsee, log.endorse_ts),
        )
    ]
    return pl.concat(frames).group_by("u").agg(pl.col("ts").min())


def _teleport(status: np.ndarray, first_seen: np.ndarray, now: float, p: ModelParams) -> np.ndarray:
    """Step 7's p in the engine's units: members' maturity, or uniform over members
    when none has any; with seeds, ``alpha 1_S + (1 - alpha) |S| q / sum(q)`` (all on
    the seeds when no member has any maturity)."""
    suspended = status == AccountStatus.SUSPENDED
    seeds = (status == AccountStatus.SEED) & ~suspended
    with np.errstate(invalid="ignore"):
        maturity = np.clip((now - first_seen) / p.maturity_age_seconds, 0.0, 1.0)
    maturity[suspended | np.isnan(maturity)] = 0.0
    if not seeds.any():
        return maturity if maturity.sum() > 0 else (~suspended).astype(np.float64)
    if maturity.sum() <= 0:
        return seeds.astype(np.float64)
    alpha = p.seed_prior_share
    return alpha * seeds + (1.0 - alpha) * seeds.sum() * maturity / maturity.sum()


class _RowSplitMatrix:
    """``A @ c`` with A's rows split into one block per thread (by edge count)."""

    def __init__(self, a: sp.csr_matrix, pool: ThreadPoolExecutor, threads: int) -> None:
        n = a.shape[0]
        cuts = np.searchsorted(a.indptr, np.linspace(0, a.nnz, threads + 1)[1:-1])
        self.bounds = [0, *cuts.tolist(), n]
        self.blocks = []
        for lo, hi in zip(self.bounds[:-1], self.bounds[1:]):
            s, e = a.indptr[lo], a.indptr[hi]
            block = (a.data[s:e], a.indices[s:e], a.indptr[lo : hi + 1] - s)
            self.blocks.append(sp.csr_matrix(block, shape=(hi - lo, a.shape[1]), copy=False))
        self.pool = pool
        self.out = np.empty(n)

    def __matmul__(self, c: np.ndarray) -> np.ndarray:
        def part(i: int) -> None:
            self.out[self.bounds[i] : self.bounds[i + 1]] = self.blocks[i] @ c

        list(self.pool.map(part, range(len(self.blocks))))
        return self.out  # overwritten by the next product


def _solve(a: _RowSplitMatrix, p: np.ndarray, max_steps: int) -> tuple[np.ndarray, int]:
    """Normalised power steps ``c' = A c + (1 - sum(A c)) p / |p|`` until ``x``, ``c``
    scaled so that ``x = p + A x`` holds in sum, has every residual within the
    engine's certificate. Returns ``x`` and the steps taken."""
    mass = float(p.sum())
    if mass == 0:
        return np.zeros(len(p)), 0
    tol_abs = ABSOLUTE * max(mass, 1.0)
    p_norm = p / mass
    c = p_norm.copy()
    for step in range(1, max_steps + 1):
        y = a @ c
        flow = float(y.sum())
        scale = mass / max(1.0 - flow, 1e-300)
        # x = scale c; its residual r = p + A x - x.
        residual = p + scale * (y - c)
        if np.all(np.abs(residual) <= RELATIVE * scale * c + tol_abs):
            return scale * c, step
        c = y + (1.0 - flow) * p_norm
    raise RuntimeError(f"no certificate after {max_steps} power steps")


def _transitions(
    pairs: pl.DataFrame,
    first_seen: np.ndarray,
    suspended: np.ndarray,
    now: float,
    params: ModelParams,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Steps 3-6 per pair: returns source, destination, ``P`` and the explanation sums
    each user received (model.RECEIVED_COLUMNS)."""
    n = len(first_seen)
    key = pairs["key"].to_numpy()
    src = (key >> np.uint64(32)).astype(np.int64)
    dst = (key & np.uint64(LOW)).astype(np.int64)
    kw = params.kind_weights
    W = sum(kw[k - 1] * pairs[f"w{k}"].to_numpy() for k in (1, 2, 3, 4))
    E, V, V_rev = (pairs[c].to_numpy() for c in ("E", "V", "V_rev"))

    # Step 3: the gate reads support from established senders only.
    z = (first_seen <= now - params.maturity_age_seconds).astype(np.float64)
    support = np.bincount(dst, weights=z[src] * V, minlength=n)
    s_src, s_dst = support[src], support[dst]
    with np.errstate(divide="ignore", invalid="ignore"):
        o = np.minimum(
            np.where(s_src > 0, 1.0 - z[dst] * V_rev / s_src, 0.0),
            np.where(s_dst > 0, 1.0 - z[src] * V / s_dst, 0.0),
        )
        matched = np.where(V > 0, np.minimum(V, V_rev) / V, 0.0)
    np.clip(o, 0.0, 1.0, out=o)
    keep = 1.0 - params.reciprocity * matched * (1.0 - o * o)
    del s_src, s_dst, o, matched, V, V_rev

    # Steps 4-6: saturation, budget on the un-penalised sums, P over the normaliser D.
    s = np.log1p(keep * W)
    given = np.bincount(src, weights=E, minlength=n)
    budget = params.endorsement_budget
    beta = np.where(given > budget, budget / np.maximum(given, 1e-300), 1.0)
    budgeted = beta[src] * E
    e = keep * budgeted
    D = np.bincount(src, weights=np.log1p(W) + budgeted, minlength=n)
    D = np.where(D > 0, np.maximum(D, params.min_row_weight), 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        P = np.where(D[src] > 0, (s + e) / D[src], 0.0)
    P[suspended[src] | suspended[dst]] = 0.0
    columns = (W, s, E, e, (1.0 - keep) * (W + E))
    received = np.stack([np.bincount(dst, weights=c, minlength=n) for c in columns], axis=1)
    return src, dst, P, received


def polars_scipy(
    log: EventLog, now: float, params: ModelParams, *, threads: int = 2, max_steps: int = 2000
) -> PeerResult:
    """docs/model.md steps 1-8 on ``log`` at ``now``."""
    clock = _Clock()
    n = log.n_users
    status = np.asarray(log.status)
    suspended = status == AccountStatus.SUSPENDED
    queries = [_pair_query(log, now, params)]
    if log.first_seen is None:
        queries.append(_first_seen_query(log))
    frames = pl.collect_all(queries)
    if log.first_seen is None:
        first_seen = np.full(n, np.inf)
        first_seen[frames[1]["u"].to_numpy()] = frames[1]["ts"].to_numpy()
    else:
        first_seen = np.asarray(log.first_seen, np.float64)
    clock.lap("aggregate")

    src, dst, P, received = _transitions(frames[0], first_seen, suspended, now, params)
    del frames
    # Step 7 in the pull form: rows by destination.
    a = sp.csr_matrix((params.damping * P, (dst, src)), shape=(n, n))
    del P, src, dst
    clock.lap("transitions")
    p = _teleport(status, first_seen, now, params)
    with ThreadPoolExecutor(threads) as pool:
        x, steps = _solve(_RowSplitMatrix(a, pool, threads), p, max_steps)
    clock.lap("solve")

    # Step 8.
    members = ~suspended
    total = float(x[members].sum())
    influence = np.where(members, x * (members.sum() / total if total > 0 else 0.0), 0.0)
    return PeerResult(influence, received, steps, clock.phases)


class _Clock:
    """Seconds per named phase, in order."""

    def __init__(self) -> None:
        self.phases: dict[str, float] = {}
        self.last = time.perf_counter()

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.phases[name] = now - self.last
        self.last = now
