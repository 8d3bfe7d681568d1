"""The trust graph of the last refresh: each user's out-pairs and in-pairs as slack
CSRs, the budget factors ``beta``, and the marks of what changed since.

The graph is refresh-side state (the engine's graph lock); ``Changes`` is written by
ingest (the ingest lock) and read by the refresh while it holds both.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import _core
from .arrays import grown
from .model import ModelParams
from .pairs import PairTable

#: The most threads a full refresh gives a block of sums each (explanation sums in
#: ``compute_rows``, received volumes in ``update_support``).
_MAX_SUM_BLOCKS = 8
#: A filled CSR has room for 1/FILL_ROOM more entries: a row that gains an edge
#: moves to the end with twice its length, and the first burst after a cold build
#: moves many (10,000 events on the 5M-pair benchmark move 1.7% of the entries).
#: Without the room that burst copies the whole array to grow it, in each direction.
FILL_ROOM = 32


class SlackCSR:
    """Rows of pair slots with room to grow in place: row ``a`` is
    ``pair[start[a] : start[a] + length[a]]`` inside a block of ``cap[a]``; a row that
    outgrows its block moves to the end (``used`` entries are taken)."""

    def __init__(self) -> None:
        self.start = np.zeros(0, np.int32)
        self.length = np.zeros(0, np.int32)
        self.cap = np.zeros(0, np.int32)
        self.pair = np.zeros(0, np.int32)
        self.used = 0

    @property
    def row_nbytes(self) -> int:
        return self.start.nbytes + self.length.nbytes + self.cap.nbytes

    def grow(self, n: int) -> None:
        self.start = grown(self.start, n)
        self.length = grown(self.length, n)
        self.cap = grown(self.cap, n)

    def row(self, a: int) -> np.ndarray:
        s = self.start[a]
        return self.pair[s : s + self.length[a]]

    def rows(self, rows: np.ndarray) -> np.ndarray:
        """The slots of the given rows, concatenated."""
        start = self.start[rows].astype(np.int64)
        length = self.length[rows].astype(np.int64)
        before = np.cumsum(length) - length
        return self.pair[np.repeat(start - before, length) + np.arange(int(length.sum()))]

    def fill(self, pair_key: np.ndarray, source: bool, n: int, threads: int) -> None:
        """Make an empty CSR a plain one (no slack in its rows) of the pairs
        ``pair_key`` by source (else by destination), ``n`` rows, in one parallel
        counting sort; the array keeps room at its end for the rows the next bursts
        move there (``FILL_ROOM``)."""
        assert self.used == 0, "fill needs an empty CSR"
        m = len(pair_key)
        self.pair = np.empty(m + m // FILL_ROOM, np.int32)
        _core.csr_fill(
            pair_key, 32 if source else 0, self.start[:n], self.length[:n], self.pair[:m], threads
        )
        self.cap[:n] = self.length[:n]
        self.used = m

    def insert(self, rows: np.ndarray, pairs: np.ndarray, n: int) -> None:
        """Append ``pairs[i]`` to row ``rows[i]`` (``n`` rows in all)."""
        if len(rows) == 0:
            return
        ordered = np.sort(rows)
        first = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
        per_row = np.diff(np.r_[first, len(ordered)]).astype(np.int64)
        touched = np.ascontiguousarray(ordered[first], np.int32)
        while True:
            used = _core.csr_reserve(
                touched, per_row, self.start, self.length, self.cap, self.pair, self.used
            )
            if used >= 0:
                break
            self.pair = grown(self.pair, -used)
        self.used = used
        _core.csr_insert(rows, pairs, self.start, self.length, self.pair)
        self._compact_if_sparse(n)

    def _compact_if_sparse(self, n: int) -> None:
        """Rewrite without holes once moved rows left half of it empty."""
        length = self.length[:n]
        live = int(length.sum())
        if self.used < 1024 or live * 2 > self.used:
            return
        start = self.start[:n]
        new_start = np.zeros_like(start)
        np.cumsum(length[:-1], out=new_start[1:])
        take = np.repeat(start - new_start, length) + np.arange(live)
        self.pair = self.pair[take].copy()
        start[:] = new_start
        self.cap[:n] = length
        self.used = live


class TrustGraph:
    """Out- and in-CSR over the pair table's slots, and ``beta`` per user, as of the
    refresh at ``time``; ``n_users`` and ``n_pairs`` are how many it covers."""

    def __init__(self) -> None:
        self.out = SlackCSR()
        self.inward = SlackCSR()
        self.beta = np.zeros(0, np.float64)
        # Volume each user receives from established senders, forward-decayed, and
        # which senders were established at the last refresh: the reciprocity gate's
        # inputs.
        self.support = np.zeros(0, np.float64)
        self.mature = np.zeros(0, np.uint8)
        self.n_users = 0
        self.n_pairs = 0
        self.time: float | None = None

    @property
    def edge_nbytes(self) -> int:
        return self.out.pair.nbytes + self.inward.pair.nbytes

    @property
    def node_nbytes(self) -> int:
        return (
            self.out.row_nbytes
            + self.inward.row_nbytes
            + self.beta.nbytes
            + self.support.nbytes
            + self.mature.nbytes
        )

    def grow(self, n: int) -> None:
        if n == self.n_users:
            return
        self.out.grow(n)
        self.inward.grow(n)
        self.beta = grown(self.beta, n, 1.0)
        self.support = grown(self.support, n, 0.0)
        self.mature = grown(self.mature, n, 0)
        self.n_users = n

    def insert_new_edges(self, pairs: PairTable, threads: int = 1) -> None:
        """Add the pairs created since the last refresh."""
        first, last = self.n_pairs, pairs.n
        if last == first:
            return
        if first == 0:  # a new graph: plain CSRs at once
            self.out.fill(pairs.key[:last], True, self.n_users, threads)
            self.inward.fill(pairs.key[:last], False, self.n_users, threads)
            self.n_pairs = last
            return
        src, dst = pairs.src_dst(slice(first, last), np.int32)
        slots = np.arange(first, last, dtype=np.int32)
        self.out.insert(src, slots, self.n_users)
        self.inward.insert(dst, slots, self.n_users)
        self.n_pairs = last

    def table(self, pairs: PairTable) -> dict[str, np.ndarray]:
        """One entry per pair: decayed sums at the refresh's time, ``P(a->b)`` and
        ``beta`` per user (pair sums include any write accepted since the refresh)."""
        m, n = self.n_pairs, self.n_users
        if self.time is None or pairs.landmark is None:
            return {"src": np.zeros(0, np.int64), "dst": np.zeros(0, np.int64)}
        scale = pairs.decay_to(self.time)
        src, dst = pairs.src_dst(slice(0, m))
        return {
            "src": src,
            "dst": dst,
            "interaction_sums": pairs.fd[:m] * scale,
            "endorsement_sums": pairs.endorsement_sums(np.arange(m)) * scale,
            "transition": pairs.p[:m].copy(),
            "budget_factor": self.beta[:n].copy(),
        }

    def edges(self, n: int) -> int:
        """How many edges the first ``n`` users send."""
        return int(self.out.length[:n].sum())

    def update_support(
        self,
        changes: Changes,
        pairs: PairTable,
        mature: np.ndarray,
        everyone: bool,
        threads: int,
    ) -> None:
        """Recompute the received volume from established senders (``mature``, 1 per
        user established now) of the targets marked in ``changes`` and of those whose
        senders became established or stopped being since the last refresh (of
        everyone when ``everyone``: the landmark moved or the graph is new), and mark
        for recomputation the rows and sums whose reciprocity gate reads a volume that
        moved. Call after ``insert_new_edges``, before the marks are taken; with
        ``everyone`` the refresh must be a full one."""
        n = self.n_users
        flipped = np.flatnonzero(self.mature[:n] != mature)
        self.mature[:n] = mature
        if everyone and threads <= _MAX_SUM_BLOCKS:
            # Every row and sum is recomputed anyway: no marks, and the pairs stream.
            self.support[:n] = 0.0
            _core.all_in_volumes(
                pair_key=pairs.key[: self.n_pairs],
                pair_fd=pairs.fd,
                **pairs.endorsements(),
                mature=self.mature,
                support=self.support[:n],
                support_more=np.zeros((threads - 1, n)),
                num_threads=threads,
            )
            return
        if everyone:
            targets = np.arange(n, dtype=np.int32)
        else:
            marked = changes.targets[:n].copy()
            marked[pairs.src_dst(self.out.rows(flipped))[1]] = 1
            targets = np.flatnonzero(marked).astype(np.int32)
        moved = np.zeros(n, np.uint8)
        _core.in_volumes(
            targets=targets,
            in_start=self.inward.start,
            in_length=self.inward.length,
            in_pair=self.inward.pair,
            pair_key=pairs.key,
            pair_fd=pairs.fd,
            **pairs.endorsements(),
            mature=self.mature,
            support=self.support,
            moved=moved,
            num_threads=threads,
        )
        if everyone:  # a full refresh: every row and sum is recomputed anyway
            return
        _core.mark_partners(
            users=np.flatnonzero(moved).astype(np.int32),
            start=self.out.start,
            length=self.out.length,
            e_pair=self.out.pair,
            pair_key=pairs.key,
            pair_rev=pairs.rev,
            row_dirty=changes.rows,
            target_dirty=changes.targets,
        )

    def compute_rows(
        self,
        rows: np.ndarray,
        pairs: PairTable,
        status: np.ndarray,
        scale: float,
        params: ModelParams,
        threads: int,
        with_sums: bool = False,
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """Recompute ``P`` and ``beta`` of ``rows`` (docs/model.md, steps 3-6) from the pair sums
        times ``scale``; returns 1 where a user's ``beta`` changed and, ``with_sums``
        (``rows`` must then be every user and every pair in the graph), the
        explanation sums of every user from the same passes over the pairs in slot
        order (see ``received``), or None when it leaves them to ``received``."""
        n = self.n_users
        beta_changed = np.zeros(n, np.uint8)
        # What both kernels read of a row's pairs and of the model.
        weights: dict[str, Any] = {
            "pair_key": pairs.key,
            "pair_fd": pairs.fd,
            "pair_rev": pairs.rev,
            **pairs.endorsements(),
            "support": self.support,
            "mature": self.mature,
            "status": status,
            "scale": scale,
            "rho": params.reciprocity,
            "budget": params.endorsement_budget,
            "min_weight": params.min_row_weight,
        }
        # A block of sums per thread (56 bytes a user each): on many cores the second
        # pass costs less than the blocks.
        if with_sums and threads <= _MAX_SUM_BLOCKS:
            received = np.zeros((n, 5))
            _core.compute_all_rows(
                **weights,
                pair_p=pairs.p[: self.n_pairs],
                beta=self.beta[:n],
                out_d=np.empty(n),
                beta_changed=beta_changed,
                row_sums=np.zeros((threads, n, 2)),
                received=received,
                received_more=np.zeros((threads - 1, n, 5)),
                num_threads=threads,
            )
            return beta_changed, received
        _core.compute_rows(
            rows=rows,
            start=self.out.start,
            length=self.out.length,
            e_pair=self.out.pair,
            **weights,
            pair_p=pairs.p,
            beta=self.beta,
            out_d=np.empty(n),
            beta_changed=beta_changed,
            num_threads=threads,
        )
        return beta_changed, None

    def received(
        self,
        previous: np.ndarray,
        changed: np.ndarray,
        beta_changed: np.ndarray,
        full: bool,
        pairs: PairTable,
        scale: float,
        rho: float,
        threads: int,
    ) -> np.ndarray:
        """The explanation sums per user, recomputed for the targets marked ``changed``
        and those of the users whose ``beta`` changed (all when ``full``); the others
        are taken from ``previous``."""
        n = self.n_users
        received = np.zeros((n, 5))
        if full:
            targets = np.arange(n, dtype=np.int32)
        else:
            received[: len(previous)] = previous
            changed[self.targets_of(np.flatnonzero(beta_changed), pairs)] = 1
            targets = np.flatnonzero(changed).astype(np.int32)
        _core.received_sums(
            targets=targets,
            in_start=self.inward.start,
            in_length=self.inward.length,
            in_pair=self.inward.pair,
            pair_key=pairs.key,
            pair_fd=pairs.fd,
            pair_rev=pairs.rev,
            **pairs.endorsements(),
            support=self.support,
            mature=self.mature,
            beta=self.beta,
            scale=scale,
            rho=rho,
            received=received,
            num_threads=threads,
        )
        return received

    def targets_of(self, sources: np.ndarray, pairs: PairTable) -> np.ndarray:
        """The users the ``sources`` send to (with repeats)."""
        if len(sources) == 0:
            return np.zeros(0, np.int64)
        return pairs.src_dst(self.out.rows(sources))[1]

    def top_in_edges(
        self, u: int, pairs: PairTable, x: np.ndarray, damping: float, limit: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """The ``limit`` sources sending most credibility to ``u``, and how much."""
        return _core.top_in_edges(
            u=u,
            in_start=self.inward.start,
            in_length=self.inward.length,
            in_pair=self.inward.pair,
            pair_key=pairs.key,
            pair_p=pairs.p,
            credibility=x,
            damping=damping,
            k=limit,
        )

    def in_flows(
        self, u: int, pairs: PairTable, x: np.ndarray, damping: float
    ) -> tuple[np.ndarray, np.ndarray]:
        """Every in-neighbour ``a`` of ``u`` and the credibility it sends,
        ``d x_a P(a->u)`` (as ``top_in_edges``, unsorted): O(in-degree)."""
        slots = self.inward.row(u)
        sources = (pairs.key[slots] >> np.uint64(32)).astype(np.int64)
        return sources, damping * x[sources] * pairs.p[slots]


class Changes:
    """Per user, whether its out-row must be recomputed and whether its explanation
    sums changed, since the last refresh."""

    def __init__(self) -> None:
        self.rows = np.zeros(0, np.uint8)
        self.targets = np.zeros(0, np.uint8)

    @property
    def nbytes(self) -> int:
        return self.rows.nbytes + self.targets.nbytes

    def grow(self, n: int) -> None:
        self.rows = grown(self.rows, n)
        self.targets = grown(self.targets, n)

    def mark_all(self, n: int) -> None:
        self.rows = np.ones(n, np.uint8)
        self.targets = np.ones(n, np.uint8)

    def mark_pairs(self, slots: np.ndarray, pairs: PairTable) -> None:
        """The pairs at ``slots`` changed: their sources' rows, and both ends' sums."""
        _core.mark_dirty(
            pair=slots,
            pair_key=pairs.key,
            pair_rev=pairs.rev,
            row_dirty=self.rows,
            target_dirty=self.targets,
        )

    def take_rows(self, n: int, full: bool) -> np.ndarray:
        """The rows to recompute (all when ``full``), clearing their marks."""
        if full:
            self.rows[:n] = 0
            return np.arange(n, dtype=np.int32)
        rows = np.flatnonzero(self.rows[:n]).astype(np.int32)
        self.rows[rows] = 0
        return rows

    def take_targets(self, n: int) -> np.ndarray:
        """A copy of the target marks of the first ``n`` users, clearing them."""
        targets = self.targets[:n].copy()
        self.targets[:n] = 0
        return targets
