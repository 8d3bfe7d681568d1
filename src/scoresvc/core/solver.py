"""The credibility solver: ``x = p + d P^T x`` (docs/model.md) by residual push, with
warm-started parallel power steps when a refresh changed too much for pushing.

It owns the unnormalised credibility ``x``, its residual ``r`` and the teleport
vector of the last refresh; the graph and the pair table supply ``P``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import _core
from .arrays import grown
from .graph import TrustGraph
from .pairs import PairTable

# A cap on full-refresh power steps; the push finishes whatever is left.
MAX_POWER_STEPS = 500
# Edge passes an incremental refresh may spend pushing before it switches to
# warm-started power steps (see Solver.solve). A pushed edge costs about fifteen times
# a swept one, and on communities of 10^4 to 10^6 users even one fresh event needs 1.5-11
# passes of pushing (docs/model.md): the budget catches only changes that stay local.
PUSH_BUDGET_PASSES = 1 / 64
# The same for the second solve, whose changes stay near the distrusted users.
DISCOUNT_PUSH_BUDGET_PASSES = 0.25


@dataclass(frozen=True)
class SolverSettings:
    """How closely the credibility solver converges (docs/model.md, "Tolerance").

    A node stops being pushed once ``|r_u| <= relative * x_u + absolute * |p|``;
    ``relative = 1e-8`` keeps every node within the model's 1e-5 (docs/model.md) with a margin of
    two orders of magnitude for paths up to thousands of hops deep.
    """

    relative: float = 1e-8
    absolute: float = 1e-18


class Solver:
    """``x``, ``r`` and the teleport vector ``p`` per user; refresh-side state (the
    engine's graph lock)."""

    def __init__(self, settings: SolverSettings, damping: float, threads: int) -> None:
        self.settings = settings
        self.damping = damping
        self.threads = threads
        self.x = np.zeros(0, np.float64)
        self.r = np.zeros(0, np.float64)
        self.teleport = np.zeros(0, np.float64)

    @property
    def nbytes(self) -> int:
        return self.x.nbytes + self.r.nbytes + self.teleport.nbytes

    def grow(self, n: int) -> None:
        self.x = grown(self.x, n, 0.0)
        self.r = grown(self.r, n, 0.0)
        self.teleport = grown(self.teleport, n)

    def detach(self) -> None:
        """Work on a copy of ``x`` from here on: the published snapshot shares it."""
        self.x = self.x.copy()

    def warm_start(self, x: np.ndarray, n: int) -> None:
        """Start from a previous solution ``x`` (e.g. a checkpoint's) for ``n`` users."""
        if len(x):
            self.x = grown(x, n, 0.0).copy()

    def restart(self, n: int) -> None:
        """Forget the solution: the next solve starts from zero."""
        self.x[:n] = 0.0
        self.r[:n] = 0.0

    def scatter(self, rows: np.ndarray, graph: TrustGraph, pairs: PairTable, factor: float) -> None:
        """``r += factor x_a P(a -> .)`` over ``rows``: -d before rows change, +d after,
        which keeps the push invariant exact for the new graph (docs/model.md)."""
        _core.scatter_rows(
            rows=rows,
            start=graph.out.start,
            length=graph.out.length,
            e_pair=graph.out.pair,
            pair_key=pairs.key,
            pair_p=pairs.p,
            x=self.x,
            factor=factor,
            r=self.r,
        )

    def solve(
        self,
        graph: TrustGraph,
        pairs: PairTable,
        n: int,
        teleport: np.ndarray,
        full: bool,
    ) -> tuple[int, int, int]:
        """Bring ``x`` within tolerance of ``x = p + d P^T x`` for the new ``teleport``
        (which becomes the solver's). Teleport changes (ages grow, seeds change)
        enter the residual exactly as ``p_new - p_old``.

        Residual push touches only what moved. Yet a change that reaches the graph's
        core shifts credibility everywhere by more than the tolerance, and push work
        grows like 1/tolerance where power steps grow like log(1/tolerance): so the
        push gets a small budget (``PUSH_BUDGET_PASSES``), and past it the refresh
        takes warm-started parallel power steps. A final push certifies every node.

        Returns (power steps, pushes, edges touched by pushes).
        """
        # The solver keeps ``teleport`` itself, not a copy: the snapshot shares it.
        old_teleport = self.teleport[:n]
        self.teleport = teleport
        tol_abs = self.settings.absolute * max(float(teleport.sum()), 1.0)
        queue, in_queue = np.empty(n, np.int32), np.zeros(n, np.uint8)
        pushes = work = 0
        if not full:
            self.r[:n] += teleport - old_teleport
            budget = int(max(graph.edges(n), n) * PUSH_BUDGET_PASSES)
            pushes, work, done = self._push(
                graph, pairs, self.x[:n], self.r[:n], tol_abs, queue, in_queue, budget
            )
            if done:
                return 0, pushes, work
        steps = self._power_iterate(graph, pairs, self.x[:n], self.r[:n], teleport, tol_abs)
        more_pushes, more_work, _ = self._push(
            graph, pairs, self.x[:n], self.r[:n], tol_abs, queue, in_queue
        )
        return steps, pushes + more_pushes, work + more_work

    def discounted(
        self, graph: TrustGraph, pairs: PairTable, n: int, kept: np.ndarray
    ) -> tuple[np.ndarray, tuple[int, int, int]]:
        """Step 8's second solve, ``x' = p + d P^T diag(kept) x'`` (each user passes on
        only the share of its trust that distrust leaves it), from the solver's ``x``
        without changing it: its residual becomes the new system's by scattering
        ``(kept_a - 1) x_a`` over each discounted row ``a``, and pushing finishes (power
        steps past one edge pass, as in ``solve``). Returns ``x'`` (``x`` itself when
        nobody is discounted) and (power steps, pushes, edges touched)."""
        rows = np.flatnonzero(kept < 1.0).astype(np.int32)
        if rows.size == 0:
            return self.x[:n], (0, 0, 0)
        x, r = self.x[:n].copy(), self.r[:n].copy()
        # The second solve starts within tolerance of the first; so that two builds of
        # the same events agree as closely as their first solves do (property 8), it
        # converges a hundred times tighter, which costs pushes near the distrusted only.
        tol_rel = self.settings.relative / 100
        _core.scatter_rows(
            rows=rows,
            start=graph.out.start,
            length=graph.out.length,
            e_pair=graph.out.pair,
            pair_key=pairs.key,
            pair_p=pairs.p,
            x=x * (kept - 1.0),
            factor=self.damping,
            r=r,
        )
        teleport = self.teleport[:n]
        tol_abs = self.settings.absolute * max(float(teleport.sum()), 1.0)
        queue, in_queue = np.empty(n, np.int32), np.zeros(n, np.uint8)
        budget = int(max(graph.edges(n), n) * DISCOUNT_PUSH_BUDGET_PASSES)
        pushes, work, done = self._push(
            graph, pairs, x, r, tol_abs, queue, in_queue, budget, kept, tol_rel
        )
        if done:
            return x, (0, pushes, work)
        steps = self._power_iterate(graph, pairs, x, r, teleport, tol_abs, kept, tol_rel)
        more_pushes, more_work, _ = self._push(
            graph, pairs, x, r, tol_abs, queue, in_queue, row_scale=kept, tol_rel=tol_rel
        )
        return x, (steps, pushes + more_pushes, work + more_work)

    def _push(
        self,
        graph: TrustGraph,
        pairs: PairTable,
        x: np.ndarray,
        r: np.ndarray,
        tol_abs: float,
        queue: np.ndarray,
        in_queue: np.ndarray,
        budget: int = -1,
        row_scale: np.ndarray | None = None,
        tol_rel: float | None = None,
    ) -> tuple[int, int, bool]:
        return _core.ppr_push(
            start=graph.out.start,
            length=graph.out.length,
            e_pair=graph.out.pair,
            pair_key=pairs.key,
            pair_p=pairs.p,
            damping=self.damping,
            tol_rel=self.settings.relative if tol_rel is None else tol_rel,
            tol_abs=tol_abs,
            x=x,
            r=r,
            queue=queue,
            in_queue=in_queue,
            max_work=budget,
            row_scale=row_scale,
        )

    def _power_iterate(
        self,
        graph: TrustGraph,
        pairs: PairTable,
        x: np.ndarray,
        r: np.ndarray,
        teleport: np.ndarray,
        tol_abs: float,
        row_scale: np.ndarray | None = None,
        tol_rel: float | None = None,
    ) -> int:
        """Warm-started parallel power iteration for a full refresh; leaves ``x`` and
        its exact residual ``r`` for the push, which enforces the per-node bound.

        A full refresh changes every edge, so most residuals start above tolerance and
        a sweep over all edges on both cores beats pushing node by node. Once fewer
        than ``n / 64`` nodes still move, pushing only those is cheaper. ``row_scale``
        discounts what each source passes on (``discounted``).
        """
        n = len(x)
        pull_start, pull_src, pull_w = self._pull_copy(graph, pairs, n, row_scale)
        mass = float(teleport.sum())
        if mass == 0:
            x[:] = 0.0
            r[:] = 0.0
            return 0
        total = float(x.sum())
        # The normalised iterates live in x and r, which are rewritten below anyway:
        # at the build's peak two more arrays of n would be 16 MB a million users.
        c, c_next = x, r
        if total > 0:
            c /= total
        else:
            np.divide(teleport, mass, out=c)
        flow = 0.0
        steps = 0
        for steps in range(1, MAX_POWER_STEPS + 1):  # noqa: B007
            active, flow = _core.ppr_power_step(
                pull_start=pull_start,
                pull_src=pull_src,
                pull_w=pull_w,
                teleport=teleport,
                teleport_scale=1.0 / mass,
                damping=self.damping,
                c=c,
                c_next=c_next,
                tol_rel=self.settings.relative if tol_rel is None else tol_rel,
                tol_abs=tol_abs / mass,
                num_threads=self.threads,
            )
            c, c_next = c_next, c
            if active * 64 <= n:
                break
        # Back to the push's units: l^T x = |p| with l^T c = 1 - flow for sum(c) = 1.
        np.multiply(c, mass / max(1.0 - flow, 1e-300), out=x)
        _core.ppr_residual_pull(
            pull_start=pull_start,
            pull_src=pull_src,
            pull_w=pull_w,
            teleport=teleport,
            damping=self.damping,
            x=x,
            r=r,
            num_threads=self.threads,
        )
        return steps

    def _pull_copy(
        self, graph: TrustGraph, pairs: PairTable, n: int, row_scale: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The in-edges of the first ``n`` users as a contiguous pull CSR (start, source,
        ``P(source -> user)`` times the source's ``row_scale``), for the power steps."""
        pull_start = np.zeros(n + 1, np.int64)
        np.cumsum(graph.inward.length[:n], out=pull_start[1:])
        m = int(pull_start[-1])
        pull_src = np.empty(m, np.int32)
        pull_w = np.empty(m, np.float64)
        _core.gather_pull(
            pull_start=pull_start,
            in_start=graph.inward.start,
            in_pair=graph.inward.pair,
            pair_key=pairs.key,
            pair_p=pairs.p,
            pull_src=pull_src,
            pull_w=pull_w,
            num_threads=self.threads,
        )
        if row_scale is not None:
            pull_w *= row_scale[pull_src]
        return pull_start, pull_src, pull_w
