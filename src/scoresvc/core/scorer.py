"""The refresh side of the engine: the trust graph, the credibility solver and the
latest published snapshot, which turn the pair sums into scores (docs/model.md, steps
3-10). Every method runs under the engine's graph lock; the ingest state it reads is
handed to it (``update_rows`` under the ingest lock too).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from .change import Standing
from .graph import TrustGraph
from .ingest import IngestState
from .model import AccountStatus, ModelParams
from .pairs import PairTable
from .scoring import Distrust, established, teleport_vector
from .snapshot import Snapshot, build_snapshot
from .solver import Solver, SolverSettings


@dataclass(frozen=True)
class RowUpdate:
    """What a refresh read and recomputed under the ingest lock."""

    sequence: int
    n: int
    status: np.ndarray
    teleport: np.ndarray
    full: bool
    rows: int
    received: np.ndarray
    topic_records: dict[str, np.ndarray]
    distrust: Distrust


class Scorer:
    """The trust graph, the credibility solver and the latest snapshot."""

    def __init__(
        self, params: ModelParams, settings: SolverSettings, threads: int, empty: Snapshot
    ) -> None:
        self.params, self.settings, self.threads = params, settings, threads
        self.graph = TrustGraph()
        self.solver = Solver(settings, params.damping, threads)
        self.snapshot = empty
        self.published_at = time.time()

    def restart(self) -> None:
        """Forget the graph and the solution (the ingest state was replaced): the next
        refresh builds them anew, cold."""
        self.graph = TrustGraph()
        self.solver = Solver(self.settings, self.params.damping, self.threads)

    def update_rows(self, ingest: IngestState, now: float, sequence: int) -> RowUpdate:
        """Bring the graph's rows up to ``ingest``'s pair sums at ``now`` and read what
        the snapshot needs of it, as of write ``sequence`` (the ingest lock held)."""
        p, graph, solver = self.params, self.graph, self.solver
        pairs, n = ingest.pairs, len(ingest.users)
        pairs.keep_landmark_near(now)
        graph.grow(n)
        solver.grow(n)
        status = ingest.status[:n].copy()
        teleport = teleport_vector(status, ingest.first_seen[:n], now, p)
        # A user lost its teleport share (seeds changed, or the first member matured):
        # a warm start would leave traces of trust at users nothing anchored reaches
        # any more, which the model wants at exactly 0. Rare, so solve from scratch.
        lost = (solver.teleport[:n] > 0) & (teleport == 0)
        unanchored = (teleport == 0) & (status != AccountStatus.SUSPENDED)
        cold = bool(lost.any() and unanchored.any())
        if cold:
            solver.restart(n)
        moved = pairs.take_landmark_moved()
        full = cold or graph.time != now or moved or graph.n_users == 0
        graph.insert_new_edges(pairs, self.threads)
        mature = established(ingest.first_seen[:n], now, p.maturity_age_seconds)
        graph.update_support(
            ingest.changes, pairs, mature, moved or graph.time is None, self.threads
        )
        rows = ingest.changes.take_rows(n, full)
        scale = pairs.decay_to(now)
        if not full:
            solver.scatter(rows, graph, pairs, -p.damping)
        beta_changed, received = graph.compute_rows(
            rows, pairs, ingest.status, scale, p, self.threads, with_sums=full
        )
        if not full:
            solver.scatter(rows, graph, pairs, p.damping)
        targets = ingest.changes.take_targets(n)
        if received is None:
            received = graph.received(
                self.snapshot.received,
                targets,
                beta_changed,
                full,
                pairs,
                scale,
                p.reciprocity,
                self.threads,
            )
        return RowUpdate(
            sequence=sequence,
            n=n,
            status=status,
            teleport=teleport,
            full=full,
            rows=len(rows),
            received=received,
            topic_records=ingest.book.topic_records(
                pairs, graph.beta, scale, graph.support, graph.mature, p.reciprocity
            ),
            distrust=Distrust.at(*ingest.distrust.live(), now, p.half_life_seconds),
        )

    def publish(
        self, update: RowUpdate, ingest: IngestState, now: float, previous: Snapshot, started: float
    ) -> Snapshot:
        """Solve the credibility for ``update`` (steps 7-8), build the snapshot on
        ``previous`` (its ranking a warm start for the sort) and publish it."""
        self.graph.time = now
        sweeps, pushes, work = self.solver.solve(
            self.graph, ingest.pairs, update.n, update.teleport, update.full
        )
        x, distrust, second = self._discount(update, ingest)
        snapshot = build_snapshot(
            previous=previous,
            time=now,
            sequence=update.sequence,
            user_ids=ingest.users.ids,
            user_index=ingest.users.index,
            topics=ingest.book.topic_index,
            status=update.status,
            x=x,
            teleport=update.teleport,
            received=update.received,
            topic_records=update.topic_records,
            topic_min_endorsers=self.params.topic_min_endorsers,
            distrust=distrust,
            maturity_age_seconds=self.params.maturity_age_seconds,
            threads=self.threads,
            stats={
                "full": update.full,
                "rows": update.rows,
                "sweeps": sweeps,
                "pushes": pushes,
                "edge_work": work,
                "distrust_sweeps": second[0],
                "distrust_pushes": second[1],
                "distrust_edge_work": second[2],
                "edges": self.graph.edges(update.n),
                "seconds": time.perf_counter() - started,
            },
        )
        self.snapshot = snapshot
        self.published_at = time.time()
        return snapshot

    def _discount(
        self, update: RowUpdate, ingest: IngestState
    ) -> tuple[np.ndarray, dict[str, np.ndarray], tuple[int, int, int]]:
        """Step 8: the share of trust each user keeps after credible users' distrust,
        the credibility solved again with what the distrusted pass on discounted, and
        each user's own credibility discounted. Returns the discounted ``x``, the
        distrusted users with their distrust received and share kept, and the second
        solve's (power steps, pushes, edges touched)."""
        n, solver = update.n, self.solver
        credible = np.where(update.status == AccountStatus.SUSPENDED, 0.0, solver.x[:n])
        kept = update.distrust.kept(credible, self.params.distrust_strength)
        x, work = solver.discounted(self.graph, ingest.pairs, n, kept)
        received = update.distrust.received(n)
        users = np.flatnonzero(received > 0)
        view = {"users": users, "received": received[users], "kept": kept[users]}
        return (x * kept if (kept < 1.0).any() else x), view, work

    def standing(self, user_id: str, pairs: PairTable) -> Standing:
        """``Engine.standing``."""
        snap = self.snapshot
        u = snap.user(user_id)
        sources, flow = self.graph.in_flows(u, pairs, snap.x, self.params.damping)
        unit = snap.members / snap.mass if snap.mass > 0 else 0.0
        ids, influence = snap.user_ids, snap.influence_of
        contributors = {
            ids[a]: (f * unit, influence(a))
            for a, f in zip(sources.tolist(), flow.tolist())
            if f > 0
        }
        kept = snap.distrust_of(u)[1]
        return Standing(
            time=snap.time,
            status=AccountStatus(int(snap.status[u])),
            influence=snap.influence_of(u),
            influence_max=snap.influence_max,
            kept=kept,
            teleport=float(snap.teleport[u]) * unit,
            contributors=contributors,
            complete=True,
            influence_of=lambda user: snap.influence_of(snap.user(user)),
        )

    def transitions(self, pairs: PairTable) -> tuple[Snapshot, np.ndarray, np.ndarray, np.ndarray]:
        """The latest snapshot and its graph's pairs: sources, targets and ``P``
        (copies, for reading without the lock)."""
        m = self.graph.n_pairs
        src, dst = pairs.src_dst(slice(0, m))
        return self.snapshot, src, dst, pairs.p[:m].copy()


def largest_inflows(
    snap: Snapshot, src: np.ndarray, dst: np.ndarray, p: np.ndarray, limit: int, damping: float
) -> tuple[np.ndarray, np.ndarray]:
    """Per user of ``snap``, its ``limit`` largest in-flows ``d I_a P(a->u)`` (in
    influence units) over the pairs ``src -> dst`` with transitions ``p``, largest
    first: sources (``-1`` past the last) and flows, shape (users, limit)."""
    n = snap.n_users
    keep = (src < n) & (dst < n) & (p > 0)
    src, dst = src[keep], dst[keep]
    flow = damping * snap.influence[src] * p[keep]
    order = np.lexsort((-flow, dst))
    src, dst, flow = src[order], dst[order], flow[order]
    starts = np.searchsorted(dst, np.arange(n))
    rank = np.arange(len(dst)) - starts[dst]
    take = rank < limit
    sources = np.full((n, limit), -1, np.int64)
    flows = np.zeros((n, limit))
    sources[dst[take], rank[take]] = src[take]
    flows[dst[take], rank[take]] = flow[take]
    return sources, flows
