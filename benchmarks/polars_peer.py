"""The model (docs/model.md, steps 1-8) as a data engineer would write it with Polars
and scipy: the strongest peer the benchmarks time the engine against.

* steps 1-3's sums: the interactions' decayed, kind-weighted volumes go into one COO
  matrix indexed (target, source), whose conversion to CSR is the group-by (scipy's
  counting sort by row, sorted sources and summed duplicates, in C++ in one pass); the
  live endorsements (the latest event per endorsement key, by a lazy Polars query)
  enter it with weight 0 so that their pairs exist, and find their pairs by one sorted
  search. The CSR's order (rows by destination) is step 7's pull form, so ``P`` fills
  its values without another conversion; each pair's reverse is found through the
  transpose's counting sort;
* steps 3-6 per pair in numpy (the gate, budgets, both log terms, ``P``);
* step 7 by normalised power steps ``c' = A c + (1 - sum(A c)) p / |p|`` from the
  teleport vector, with ``A = d P^T`` split into one row block per thread (scipy's
  mat-vec releases the GIL), each thread checking its own rows against the engine's
  certificate: every user's residual of ``x = p + d P^T x`` within
  ``1e-8 x_u + 1e-18 |p|`` (docs/model.md, "Why the tolerance holds").

It shares no code with the engine or the oracle: an independent transcription.
"""

from __future__ import annotations

import functools
import itertools
import math
import operator
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import polars as pl
import scipy.sparse as sp

from scoresvc.core.events import EventLog
from scoresvc.core.model import AccountStatus, ModelParams

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


def _decay(ts: np.ndarray, now: float, half_life: float) -> np.ndarray:
    """Step 1: ``2^(-(now - ts) / H)``."""
    return np.exp((ts - now) * (math.log(2.0) / half_life))


def _live_endorsements(log: EventLog, now: float, params: ModelParams) -> pl.DataFrame:
    """Each live endorsement's endorser ``a``, endorsee ``b`` and decayed weight ``e``,
    in the order of the key ``b n + a``: the latest event decides each (endorser,
    endorsee, topic); a retraction wins a tie."""
    events = pl.LazyFrame(
        {
            "a": log.endorser,
            "b": log.endorsee,
            "t": log.topic,
            "ts": log.endorse_ts,
            "x": log.retracted,
        }
    ).with_columns(retracted_at=pl.when("x").then("ts").otherwise(-math.inf))
    latest = events.group_by("a", "b", "t").agg(pl.col("ts", "retracted_at").max())
    decay = ((pl.col("ts") - now) * (math.log(2.0) / params.half_life_seconds)).exp()
    return (
        latest.filter(pl.col("retracted_at") < pl.col("ts"))
        .select("a", "b", e=decay * params.endorsement_weight)
        .sort("b", "a")
        .collect()
    )


@dataclass
class _Pairs:
    """Every ordered pair with events, in rows by destination with sources sorted
    (the CSR of step 7's pull form): ``key = dst n + src`` increases; ``W`` sums the
    decayed, kind-weighted interactions and ``E`` the live endorsements."""

    indptr: np.ndarray
    src: np.ndarray
    dst: np.ndarray
    key: np.ndarray
    W: np.ndarray
    E: np.ndarray

    @classmethod
    def of(cls, log: EventLog, now: float, params: ModelParams) -> _Pairs:
        """Steps 1-3's sums. Converting the events' COO matrix to CSR is the group-by:
        scipy's counting sort by row, sorted sources and summed duplicates in one C++
        pass. Live endorsements enter it with weight 0, so that their pairs exist."""
        n, m = log.n_users, log.n_interactions
        live = _live_endorsements(log, now, params)
        index = np.int32 if n < 2**31 else np.int64
        rows, columns = np.empty(m + len(live), index), np.empty(m + len(live), index)
        rows[:m], rows[m:] = log.target, live["b"].to_numpy()
        columns[:m], columns[m:] = log.actor, live["a"].to_numpy()
        values = np.zeros(m + len(live))
        kind_weight = np.array((0.0, *params.kind_weights))
        np.multiply(
            _decay(log.ts, now, params.half_life_seconds), kind_weight[log.kind], out=values[:m]
        )
        if log.weight is not None:
            values[:m] *= log.weight
        sums = sp.coo_array((values, (rows, columns)), shape=(n, n)).tocsr()
        del rows, columns, values
        dst = np.repeat(np.arange(n, dtype=index), np.diff(sums.indptr))
        key = dst.astype(np.int64)
        key *= n
        key += sums.indices
        # Sorted endorsement keys find their pairs in one sweep.
        where = np.searchsorted(
            key, live["b"].to_numpy().astype(np.int64) * n + live["a"].to_numpy()
        )
        E = np.bincount(where, weights=live["e"].to_numpy(), minlength=len(key))
        return cls(sums.indptr, sums.indices, dst, key, sums.data, E)

    def reverse_volume(self, V: np.ndarray, pool: ThreadPoolExecutor, threads: int) -> np.ndarray:
        """``V`` of each pair's reverse pair (0: none). The transpose's counting sort
        lists the pairs by source: at its key (b, a) sits pair b -> a, the reverse of
        the pair at our key (b, a). Both key lists are sorted; each thread searches
        for one run of ours."""
        n, nnz = len(self.indptr) - 1, len(self.key)
        position = np.arange(nnz, dtype=np.int32 if nnz < 2**31 else np.int64)
        t = sp.csr_array((position, self.src, self.indptr), shape=(n, n), copy=False).T.tocsr()
        t_keys = np.repeat(np.arange(n, dtype=np.int64), np.diff(t.indptr))
        t_keys *= n  # in place: a fresh array of pair length costs its page faults
        t_keys += t.indices
        V_rev = np.empty(nnz)

        def search(run: slice) -> None:
            keys = self.key[run]
            at = np.searchsorted(t_keys, keys)
            at[at == nnz] = 0
            V_rev[run] = np.where(t_keys[at] == keys, V[t.data[at]], 0.0)

        cuts = np.linspace(0, nnz, threads + 1).astype(np.int64).tolist()
        list(pool.map(search, itertools.starmap(slice, itertools.pairwise(cuts))))
        return V_rev


def _first_seen(log: EventLog) -> np.ndarray:
    """Each user's earliest event (a bulk load's first-seen time without the column)."""
    first_seen = np.full(log.n_users, np.inf)
    for users, times in (
        (log.actor, log.ts),
        (log.target, log.ts),
        (log.endorser, log.endorse_ts),
        (log.endorsee, log.endorse_ts),
    ):
        np.minimum.at(first_seen, users, times)
    return first_seen


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


def _kept(pairs: _Pairs, V: np.ndarray, V_rev: np.ndarray, z: np.ndarray, r: float) -> np.ndarray:
    """Step 3: the share of each pair's volume that the reciprocity discount ``r``
    leaves, given the independent-support gate (support counts established senders
    only: ``z``). In place where it can be: each temporary is fresh memory to fault in."""
    src, dst = pairs.src, pairs.dst
    zv = z[src] * V
    support = np.bincount(dst, weights=zv, minlength=len(z))
    s_src, s_dst = support[src], support[dst]
    with np.errstate(divide="ignore", invalid="ignore"):
        o = z[dst] * V_rev
        o /= s_src
        np.subtract(1.0, o, out=o)
        o[s_src <= 0] = 0.0
        zv /= s_dst
        np.subtract(1.0, zv, out=zv)
        zv[s_dst <= 0] = 0.0
        np.minimum(o, zv, out=o)
        matched = np.minimum(V, V_rev)
        matched /= V
        matched[V <= 0] = 0.0
    np.clip(o, 0.0, 1.0, out=o)
    # keep = 1 - r matched (1 - o^2)
    np.multiply(o, o, out=o)
    np.subtract(1.0, o, out=o)
    o *= matched
    o *= -r
    o += 1.0
    return o


def _budgets(
    pairs: _Pairs, suspended: np.ndarray, params: ModelParams
) -> tuple[np.ndarray, np.ndarray]:
    """Steps 5-6 on the un-penalised sums: each pair's budgeted endorsement weight, and
    per source ``1 / D`` (0 for an empty or suspended row; D at least kappa)."""
    n = len(suspended)
    given = np.bincount(pairs.src, weights=pairs.E, minlength=n)
    budget = params.endorsement_budget
    beta = np.where(given > budget, budget / np.maximum(given, 1e-300), 1.0)
    budgeted = beta[pairs.src]
    budgeted *= pairs.E
    row = np.log1p(pairs.W)
    row += budgeted
    D = np.bincount(pairs.src, weights=row, minlength=n)
    inverse = np.zeros(n)
    np.divide(1.0, np.maximum(D, params.min_row_weight), out=inverse, where=D > 0)
    inverse[suspended] = 0.0
    return budgeted, inverse


def _transitions(
    pairs: _Pairs,
    first_seen: np.ndarray,
    suspended: np.ndarray,
    now: float,
    params: ModelParams,
    pool: ThreadPoolExecutor,
    threads: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Steps 3-6 per pair (in ``pairs``' order): returns ``P`` and the explanation
    sums each user received (model.RECEIVED_COLUMNS)."""
    n = len(first_seen)
    src, dst, W, E = pairs.src, pairs.dst, pairs.W, pairs.E
    V = W + E
    z = (first_seen <= now - params.maturity_age_seconds).astype(np.float64)
    keep = _kept(pairs, V, pairs.reverse_volume(V, pool, threads), z, params.reciprocity)
    del V
    budgeted, inverse = _budgets(pairs, suspended, params)

    # Steps 4 and 6: saturation, and P = (s + e) / D.
    s = keep * W
    np.log1p(s, out=s)
    e = keep * budgeted
    P = s + e
    P *= inverse[src]
    if suspended.any():
        P[suspended[dst]] = 0.0
    # (1 - keep)(W + E): the volume step 3 discounted.
    np.subtract(1.0, keep, out=keep)
    keep *= W + E
    received = np.empty((n, 5))
    for i, column in enumerate((W, s, E, e, keep)):
        received[:, i] = np.bincount(dst, weights=column, minlength=n)
    return P, received


class _PowerSteps:
    """Normalised power steps ``c' = A c + (1 - sum(A c)) p / |p|`` on ``A``'s rows
    split into one block per thread (by edge count). Each thread multiplies its
    block, then checks and advances its own rows, so the vector work is shared too."""

    def __init__(self, a: sp.csr_array, p: np.ndarray, pool: ThreadPoolExecutor, threads: int):
        n = a.shape[0]
        cuts = np.searchsorted(a.indptr, np.linspace(0, a.nnz, threads + 1)[1:-1])
        bounds = [0, *cuts.tolist(), n]
        self.spans = [slice(lo, hi) for lo, hi in itertools.pairwise(bounds)]
        self.blocks = []
        for rows in self.spans:
            s, e = a.indptr[rows.start], a.indptr[rows.stop]
            block = (a.data[s:e], a.indices[s:e], a.indptr[rows.start : rows.stop + 1] - s)
            self.blocks.append(sp.csr_array(block, shape=(rows.stop - rows.start, n), copy=False))
        self.pool = pool
        self.p = p
        self.mass = float(p.sum())
        self.p_norm = p / self.mass if self.mass > 0 else p.copy()
        self.tol_abs = ABSOLUTE * max(self.mass, 1.0)

    def solve(self, max_steps: int) -> tuple[np.ndarray, int]:
        """``x``, ``c`` scaled so that ``x = p + A x`` holds in sum, once every
        residual is within the engine's certificate; and the steps taken."""
        if self.mass == 0:
            return np.zeros(len(self.p)), 0
        c, c_next = self.p_norm.copy(), np.empty_like(self.p_norm)
        for step in range(1, max_steps + 1):
            products = list(self.pool.map(operator.matmul, self.blocks, itertools.repeat(c)))
            flow = math.fsum(float(y.sum()) for y in products)
            advance = functools.partial(self._advance, c=c, c_next=c_next, flow=flow)
            if all(list(self.pool.map(advance, self.spans, products))):
                return self.mass / (1.0 - flow) * c, step
            c, c_next = c_next, c
        raise RuntimeError(f"no certificate after {max_steps} power steps")

    def _advance(
        self, rows: slice, y: np.ndarray, c: np.ndarray, c_next: np.ndarray, flow: float
    ) -> bool:
        """Whether ``x = scale c`` (``scale = |p| / (1 - flow)``) has its residual
        ``p + A x - x`` within the certificate on ``rows``; and ``c_next`` there."""
        scale = self.mass / max(1.0 - flow, 1e-300)
        c_rows = c[rows]
        residual = y - c_rows
        residual *= scale
        residual += self.p[rows]
        np.abs(residual, out=residual)
        bound = c_rows * (RELATIVE * scale)
        bound += self.tol_abs
        settled = bool(np.all(residual <= bound))
        np.multiply(self.p_norm[rows], 1.0 - flow, out=c_next[rows])
        c_next[rows] += y
        return settled


def polars_scipy(
    log: EventLog, now: float, params: ModelParams, *, threads: int = 2, max_steps: int = 2000
) -> PeerResult:
    """docs/model.md steps 1-8 on ``log`` at ``now``."""
    clock = _Clock()
    n = log.n_users
    status = np.asarray(log.status)
    suspended = status == AccountStatus.SUSPENDED
    pairs = _Pairs.of(log, now, params)
    if log.first_seen is None:
        first_seen = _first_seen(log)
    else:
        first_seen = np.asarray(log.first_seen, np.float64)
    clock.lap("aggregate")

    with ThreadPoolExecutor(threads) as pool:
        P, received = _transitions(pairs, first_seen, suspended, now, params, pool, threads)
        # Step 7 in the pull form: the pairs' rows are by destination already.
        P *= params.damping
        a = sp.csr_array((P, pairs.src, pairs.indptr), shape=(n, n), copy=False)
        del P, pairs
        clock.lap("transitions")
        p = _teleport(status, first_seen, now, params)
        x, steps = _PowerSteps(a, p, pool, threads).solve(max_steps)
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
