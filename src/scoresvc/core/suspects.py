"""Suspect reports: clusters of accounts that look like gaming, with the evidence.

The model already neutralises much of what gamers do (docs/model.md); what it cannot
judge (accounts aged in advance, endorsements bought from real users, circles trading
across kinds) is left to moderators, and this report shows them where to look. It is
computed from one refresh's state (the pair sums, the trust graph, first-seen times,
the endorsement trail, the snapshot's credibility) by ``detect``, off the read path:
``SuspectWatch`` recomputes it in its own thread after refreshes.

Kinds (docs/gaming.md, "Suspect reports"):

* a **sybil farm**: three or more accounts the trust of the community never reaches
  (no path from its most credible accounts), each sending most of its volume to the
  same few users (its beneficiaries), first seen within a day of each other or
  engaging each other; **fresh** when most are younger than the maturity age;
* a **closed ring**: such accounts that send their volume only among themselves;
* a **trading circle**: three or more users who each endorse others of the group and
  are paid back in any kind, where those endorsements are a real share of what each
  receives (not one endorsement among thousands to a popular user);
* an **endorsement burst**: many distinct endorsers endorsing one user within an hour,
  far above that user's own rate.

Cost: O(pairs + trail) array passes plus O(pairs touching a cluster) per cluster.
"""

from __future__ import annotations

import enum
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Protocol

import numpy as np

from .arrays import distinct
from .model import AccountStatus

if TYPE_CHECKING:  # the client reads these types without loading the engine's parts
    from .snapshot import Snapshot


class SuspectKind(enum.IntEnum):
    """What a cluster looks like (numbered as the wire's ``SuspectKind``)."""

    SYBIL_FARM_FRESH = 1
    SYBIL_FARM_AGED = 2
    CLOSED_RING = 3
    TRADING_CIRCLE = 4
    ENDORSEMENT_BURST = 5


@dataclass(frozen=True)
class SuspectEvidence:
    """Numbers a person can check, at the report's snapshot (sums decayed to it).

    Shares are of the beneficiaries' totals: ``credibility_from_cluster`` is
    ``sum d c_a P(a->u)`` over members ``a`` and beneficiaries ``u`` over
    ``sum c_u``; ``credibility_from_young`` the same from every account younger than
    the maturity age; ``volume_from_cluster`` the members' share of the volume
    (interactions and endorsements, before reciprocity) the beneficiaries receive.
    ``reciprocity_inside`` / ``_outside``: the matched share ``sum min(V(a->b),
    V(b->a)) / sum V(a->b)`` over the members' pairs among themselves / with others.
    ``trust_from_outside``: the share of the members' credibility that arrives over
    links from non-members (0 when they have none). Ages are at the snapshot's time;
    ``first_seen_span_seconds`` spans the middle 80% of the members' first-seen times.
    ``burst_endorsements``: the most endorsement events the beneficiaries received
    within ``burst_window_seconds`` of event time. ``cross_kind_trades``: pairs in
    the cluster where an endorsement was repaid with interactions only.
    """

    credibility_from_cluster: float
    credibility_from_young: float
    volume_from_cluster: float
    reciprocity_inside: float
    reciprocity_outside: float
    trust_from_outside: float
    median_age_seconds: float
    first_seen_span_seconds: float
    burst_endorsements: int
    burst_window_seconds: float
    cross_kind_trades: int


@dataclass(frozen=True)
class Suspect:
    """One cluster: its kind, how suspicious (0-1, for ranking), its members, the users
    it benefits, and the evidence."""

    kind: SuspectKind
    score: float
    member_ids: tuple[str, ...]
    beneficiary_ids: tuple[str, ...]
    evidence: SuspectEvidence
    #: The id ``ListSuspects`` gives it, for ``SuspendCluster`` and
    #: ``InvalidateBetween`` while its report is kept (empty in a report computed here).
    cluster_id: str = ""

    @cached_property
    def members(self) -> frozenset[str]:
        return frozenset(self.member_ids)


@dataclass(frozen=True)
class SuspectReport:
    """The clusters of one snapshot, most suspicious first."""

    suspects: tuple[Suspect, ...]
    #: The sequence number of the last write the snapshot includes.
    sequence: int
    #: The snapshot's time.
    compute_time: float
    #: How long the report took to compute.
    seconds: float

    def cluster_of(self, user_id: str) -> frozenset[str]:
        """The members of every cluster that lists the user as a member or a
        beneficiary (empty when none does): the user's own cluster."""
        found = self._clusters.get(user_id, ())
        if len(found) == 1:
            return self.suspects[found[0]].members
        return frozenset().union(*(self.suspects[i].members for i in found))

    @cached_property
    def _clusters(self) -> dict[str, tuple[int, ...]]:
        """Per user, the clusters listing it: linear in the report's size (a set of
        members per user would be quadratic in a farm's size)."""
        listed: dict[str, tuple[int, ...]] = {}
        for i, s in enumerate(self.suspects):
            for user_id in {*s.member_ids, *s.beneficiary_ids}:
                listed[user_id] = (*listed.get(user_id, ()), i)
        return listed

    def of_kind(self, kind: SuspectKind | None) -> tuple[Suspect, ...]:
        if kind is None:
            return self.suspects
        return tuple(s for s in self.suspects if s.kind == kind)


@dataclass(frozen=True)
class SuspectSettings:
    """The detector's thresholds (docs/gaming.md says how they were chosen)."""

    min_members: int = 3
    #: The most credible users the reachability search starts from.
    roots: int = 10
    #: A farm's members' first-seen times within this span (middle 80%) ...
    farm_span_seconds: float = 86_400.0
    #: ... unless they engage each other: this many internal pairs per member.
    internal_pairs_per_member: float = 1.0
    #: Share of the members' volume sent to the cluster (beneficiaries or members).
    min_dedication: float = 0.8
    #: Share of the beneficiaries' received volume that comes from the members.
    min_volume_share: float = 0.2
    #: An endorsement counts towards a trade when it is this share of the endorsee's.
    trade_endorsement_share: float = 0.02
    min_trade_density: float = 0.5
    #: Share of a circle's endorsements received that come from inside it.
    min_trade_inside: float = 0.3
    burst_window_seconds: float = 3_600.0
    min_burst: int = 10
    #: A burst is this many times the endorsee's own rate over its trail, at least.
    burst_over_rate: float = 5.0


# ---------------------------------------------------------------------- the graph


class _Graph:
    """One snapshot's pairs with per-pair volumes and credibility contributions,
    indexed by source and by destination."""

    def __init__(
        self, arrays: Mapping[str, np.ndarray], n: int, credibility: np.ndarray, d: float
    ) -> None:
        src, dst = arrays["src"], arrays["dst"]
        keep = (src < n) & (dst < n)
        self.n = n
        self.src, self.dst = src[keep], dst[keep]
        w = arrays["interaction_sums"][keep] if len(src) else np.zeros((0, 4))
        self.w = w.sum(axis=1) if len(w) else np.zeros(0)
        self.e = arrays["endorsement_sums"][keep] if len(src) else np.zeros(0)
        self.v = self.w + self.e
        p = arrays["transition"][keep] if len(src) else np.zeros(0)
        self.contribution = d * credibility[self.src] * p
        self.by_src = np.argsort(self.src, kind="stable")
        self.by_dst = np.argsort(self.dst, kind="stable")
        self.src_start = np.searchsorted(self.src[self.by_src], np.arange(n + 1))
        self.dst_start = np.searchsorted(self.dst[self.by_dst], np.arange(n + 1))
        self.v_in = np.bincount(self.dst, self.v, n)
        self.v_out = np.bincount(self.src, self.v, n)
        self.e_in = np.bincount(self.dst, self.e, n)
        # The reverse of each pair (its index, -1 when none), for reciprocity.
        key = self.src.astype(np.int64) * n + self.dst
        order = np.argsort(key)
        rkey = self.dst.astype(np.int64) * n + self.src
        at = np.minimum(np.searchsorted(key[order], rkey), max(len(key) - 1, 0))
        self.rev = np.full(len(key), -1, np.int64)
        if len(key):
            self.rev = np.where(key[order][at] == rkey, order[at], -1)
        self.v_back = np.where(self.rev >= 0, self.v[np.maximum(self.rev, 0)], 0.0)

    def pairs_from(self, users: np.ndarray) -> np.ndarray:
        return _gather(self.by_src, self.src_start, users)

    def pairs_into(self, users: np.ndarray) -> np.ndarray:
        return _gather(self.by_dst, self.dst_start, users)

    def reached(self, roots: np.ndarray) -> np.ndarray:
        """Users with a path (pairs of any volume) from ``roots``."""
        seen = np.zeros(self.n, bool)
        seen[roots] = True
        frontier = roots
        while len(frontier):
            nxt = self.dst[self.pairs_from(frontier)]
            frontier = distinct(nxt[~seen[nxt]])
            seen[frontier] = True
        return seen


def _gather(order: np.ndarray, start: np.ndarray, users: np.ndarray) -> np.ndarray:
    """The pair indexes of ``users``' rows in a CSR given as (order, row starts)."""
    lo, hi = start[users], start[users + 1]
    length = hi - lo
    before = np.cumsum(length) - length
    return order[np.repeat(lo - before, length) + np.arange(int(length.sum()))]


def _components(n: int, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Connected-component labels (the smallest user of each) over edges ``a - b``."""
    label = np.arange(n)
    while True:
        low = np.minimum(label[a], label[b])
        before = label.copy()
        np.minimum.at(label, a, low)
        np.minimum.at(label, b, low)
        label = label[label]
        if np.array_equal(label, before):
            return label


# ---------------------------------------------------------------------- detection


@dataclass
class _Cluster:
    kind: SuspectKind
    members: np.ndarray
    beneficiaries: np.ndarray


@dataclass(frozen=True)
class _Context:
    graph: _Graph
    credibility: np.ndarray
    first_seen: np.ndarray
    young: np.ndarray
    now: float
    maturity_age: float
    trail_endorser: np.ndarray
    trail_endorsee: np.ndarray
    trail_ts: np.ndarray
    settings: SuspectSettings


def _unreached_clusters(ctx: _Context, status: np.ndarray) -> list[_Cluster]:
    """Farms and rings: accounts no path from the most credible users reaches, linked
    to their main targets and to each other."""
    g, s = ctx.graph, ctx.settings
    members = np.flatnonzero(status != AccountStatus.SUSPENDED)
    roots = members[np.argsort(-ctx.credibility[members], kind="stable")[: s.roots]]
    candidate = ~g.reached(roots) & (g.v_out > 0) & (status != AccountStatus.SUSPENDED)
    pick = np.flatnonzero(candidate[g.src])
    if len(pick) == 0:
        return []
    # Each candidate's main target: its pair of largest volume.
    order = pick[np.lexsort((-g.v[pick], g.src[pick]))]
    first = np.ones(len(order), bool)
    first[1:] = g.src[order][1:] != g.src[order][:-1]
    main = order[first]
    internal = pick[candidate[g.dst[pick]]]
    a = np.concatenate([g.src[main], g.src[internal]])
    b = np.concatenate([g.dst[main], g.dst[internal]])
    label = _components(g.n, a, b)
    touched = distinct(np.concatenate([a, b]))
    clusters = []
    size = np.bincount(label[touched[candidate[touched]]], minlength=g.n)
    for root in np.flatnonzero(size >= s.min_members):
        group = touched[label[touched] == root]
        inside, outside = group[candidate[group]], group[~candidate[group]]
        kind = SuspectKind.CLOSED_RING
        if len(outside):
            fresh = np.median(ctx.now - ctx.first_seen[inside]) < ctx.maturity_age
            kind = SuspectKind.SYBIL_FARM_FRESH if fresh else SuspectKind.SYBIL_FARM_AGED
        cluster = _Cluster(kind, inside, outside if len(outside) else inside)
        if _looks_coordinated(ctx, cluster):
            clusters.append(cluster)
    return clusters


def _looks_coordinated(ctx: _Context, c: _Cluster) -> bool:
    """Dedicated members, first seen together or engaging each other, and (for a farm)
    a real share of what the beneficiaries receive."""
    g, s = ctx.graph, ctx.settings
    out = g.pairs_from(c.members)
    in_cluster = np.zeros(g.n, bool)
    in_cluster[c.members] = True
    in_cluster[c.beneficiaries] = True
    sent = g.v[out].sum()
    if sent <= 0 or g.v[out][in_cluster[g.dst[out]]].sum() < s.min_dedication * sent:
        return False
    is_member = np.zeros(g.n, bool)
    is_member[c.members] = True
    internal = int(is_member[g.dst[out]].sum())
    together = _span(ctx.first_seen[c.members]) <= s.farm_span_seconds
    if not together and internal < s.internal_pairs_per_member * len(c.members):
        return False
    if c.kind == SuspectKind.CLOSED_RING:
        return internal >= s.internal_pairs_per_member * len(c.members)
    received = g.v_in[c.beneficiaries].sum()
    from_members = g.v[out][np.isin(g.dst[out], c.beneficiaries)].sum()
    return bool(received > 0 and from_members >= s.min_volume_share * received)


def _span(first_seen: np.ndarray) -> float:
    seen = first_seen[np.isfinite(first_seen)]
    if len(seen) == 0:
        return 0.0
    low, high = np.quantile(seen, [0.1, 0.9])
    return float(high - low)


def _trading_circles(ctx: _Context) -> list[_Cluster]:
    """Dense groups of pairs where an endorsement that counts for its endorsee was paid
    back in any kind."""
    g, s = ctx.graph, ctx.settings
    with np.errstate(divide="ignore", invalid="ignore"):
        share = np.where(g.e_in[g.dst] > 0, g.e / g.e_in[g.dst], 0.0)
    traded = np.flatnonzero((g.e > 0) & (g.v_back > 0) & (share >= s.trade_endorsement_share))
    if len(traded) == 0:
        return []
    a = np.minimum(g.src[traded], g.dst[traded])
    b = np.maximum(g.src[traded], g.dst[traded])
    edges = distinct(a.astype(np.int64) * g.n + b)
    a, b = edges // g.n, edges % g.n
    label = _components(g.n, a, b)
    clusters = []
    touched = distinct(np.concatenate([a, b]))
    size = np.bincount(label[touched], minlength=g.n)
    n_edges = np.bincount(label[a], minlength=g.n)
    for root in np.flatnonzero(size >= s.min_members):
        k = size[root]
        if n_edges[root] < s.min_trade_density * k * (k - 1) / 2:
            continue
        group = touched[label[touched] == root]
        into = g.pairs_into(group)
        from_inside = g.e[into][np.isin(g.src[into], group)].sum()
        if from_inside >= s.min_trade_inside * g.e_in[group].sum():
            clusters.append(_Cluster(SuspectKind.TRADING_CIRCLE, group, group))
    return clusters


def _bursts(ctx: _Context) -> list[_Cluster]:
    """Per endorsee, the window of ``burst_window_seconds`` holding most endorsement
    events, when it holds enough distinct endorsers and far more than the endorsee's
    own rate outside it (over at least 30 days)."""
    s, endorsee, ts = ctx.settings, ctx.trail_endorsee, ctx.trail_ts
    if len(ts) == 0:
        return []
    w = s.burst_window_seconds
    counts = _window_counts(endorsee, ts, w)
    size = int(endorsee.max()) + 1
    best = np.zeros(size, np.int64)
    np.maximum.at(best, endorsee, counts)
    last = np.full(size, -np.inf)
    np.maximum.at(last, endorsee, ts)
    first = np.full(size, np.inf)
    np.minimum.at(first, endorsee, ts)
    with np.errstate(invalid="ignore"):
        span = np.maximum(np.nan_to_num(last - first), 30 * 86_400.0)
    rate = (np.bincount(endorsee, minlength=size) - best) * w / span
    hot = np.flatnonzero((best >= s.min_burst) & (best >= s.burst_over_rate * rate))
    clusters = []
    for u in hot:
        i = int(np.flatnonzero((endorsee == u) & (counts == best[u]))[0])
        who = distinct(ctx.trail_endorser[i : i + best[u]])
        if len(who) >= s.min_burst:
            clusters.append(_Cluster(SuspectKind.ENDORSEMENT_BURST, who, np.array([u])))
    return clusters


def _window_counts(key: np.ndarray, ts: np.ndarray, window: float) -> np.ndarray:
    """For events sorted by (key, ts): how many of the same key fall in
    ``[ts, ts + window)`` of each."""
    t0 = float(ts.min())
    # One sortable axis: keys far apart in time, so windows never cross them.
    spread = float(ts.max()) - t0 + 2 * window + 1.0
    axis = key.astype(np.float64) * spread + (ts - t0)
    return np.searchsorted(axis, axis + window, side="left") - np.arange(len(axis))


# ---------------------------------------------------------------------- evidence


def _share(part: float, whole: float) -> float:
    return float(part / whole) if whole > 0 else 0.0


def _evidence(ctx: _Context, c: _Cluster) -> SuspectEvidence:
    g, s = ctx.graph, ctx.settings
    member = np.zeros(g.n, bool)
    member[c.members] = True
    benefit = np.zeros(g.n, bool)
    benefit[c.beneficiaries] = True
    into_b = g.pairs_into(c.beneficiaries)
    from_members = member[g.src[into_b]]
    credibility_b = float(ctx.credibility[c.beneficiaries].sum())
    touching = distinct(np.concatenate([g.pairs_from(c.members), g.pairs_into(c.members)]))
    inside = member[g.src[touching]] & member[g.dst[touching]]
    matched = np.minimum(g.v[touching], g.v_back[touching])
    into_m = g.pairs_into(c.members)
    seen = ctx.first_seen[c.members]
    ages = ctx.now - seen[np.isfinite(seen)]
    in_b = benefit[ctx.trail_endorsee]
    times = np.sort(ctx.trail_ts[in_b])
    w = s.burst_window_seconds
    burst = np.searchsorted(times, times + w) - np.arange(len(times))
    group = g.src[touching], g.dst[touching]
    both = (member | benefit)[group[0]] & (member | benefit)[group[1]]
    back = g.rev[touching]
    repaid = (g.e[touching] > 0) & (back >= 0)
    safe = np.maximum(back, 0)
    repaid &= (g.e[safe] == 0) & (g.w[safe] > 0) & both
    return SuspectEvidence(
        credibility_from_cluster=_share(g.contribution[into_b][from_members].sum(), credibility_b),
        credibility_from_young=_share(
            g.contribution[into_b][ctx.young[g.src[into_b]]].sum(), credibility_b
        ),
        volume_from_cluster=_share(g.v[into_b][from_members].sum(), g.v_in[c.beneficiaries].sum()),
        reciprocity_inside=_share(matched[inside].sum(), g.v[touching][inside].sum()),
        reciprocity_outside=_share(matched[~inside].sum(), g.v[touching][~inside].sum()),
        trust_from_outside=_share(
            g.contribution[into_m][~member[g.src[into_m]]].sum(),
            ctx.credibility[c.members].sum(),
        ),
        median_age_seconds=float(np.median(ages)) if len(ages) else 0.0,
        first_seen_span_seconds=_span(seen),
        burst_endorsements=int(burst.max()) if len(burst) else 0,
        burst_window_seconds=w,
        cross_kind_trades=int(repaid.sum()),
    )


def _score(kind: SuspectKind, e: SuspectEvidence) -> float:
    """How suspicious, 0-1: how much of what the beneficiaries receive the cluster
    gives, times how closed it is (trading circles: how much of it is paid back)."""
    given = max(e.volume_from_cluster, e.credibility_from_cluster)
    if kind == SuspectKind.TRADING_CIRCLE:
        return e.reciprocity_inside * given
    return given * (1.0 - e.trust_from_outside)


# ---------------------------------------------------------------------- the report


def detect(
    snapshot: Snapshot,
    arrays: Mapping[str, np.ndarray],
    maturity_age_seconds: float,
    damping: float,
    settings: SuspectSettings | None = None,
) -> SuspectReport:
    """The suspect report of one refresh: ``snapshot`` and the ``arrays`` read beside
    it (``Engine.evidence_arrays``)."""
    started = time.perf_counter()
    s = settings or SuspectSettings()
    n = snapshot.n_users
    credibility = snapshot.credibility
    first_seen = np.asarray(arrays["first_seen"], np.float64)[:n]
    retracted = np.asarray(arrays["trail_retracted"], bool)
    endorsee = arrays["trail_endorsee"][~retracted].astype(np.int64)
    order = np.lexsort((arrays["trail_ts"][~retracted], endorsee))
    ctx = _Context(
        graph=_Graph(arrays, n, credibility, damping),
        credibility=credibility,
        first_seen=first_seen,
        young=first_seen > snapshot.time - maturity_age_seconds,
        now=snapshot.time,
        maturity_age=maturity_age_seconds,
        trail_endorser=arrays["trail_endorser"][~retracted].astype(np.int64)[order],
        trail_endorsee=endorsee[order],
        trail_ts=arrays["trail_ts"][~retracted][order],
        settings=s,
    )
    clusters = _unreached_clusters(ctx, snapshot.status) if n else []
    clusters += _trading_circles(ctx) if n else []
    claimed = np.zeros(n, bool)
    for c in clusters:
        claimed[c.members] = True
    # A burst from a farm already listed is part of that farm's evidence.
    clusters += [b for b in _bursts(ctx) if claimed[b.members].mean() < 0.5]
    ids = snapshot.user_ids
    suspects = []
    for c in clusters:
        evidence = _evidence(ctx, c)
        suspects.append(
            Suspect(
                kind=c.kind,
                score=_score(c.kind, evidence),
                member_ids=tuple(ids[u] for u in c.members),
                beneficiary_ids=tuple(ids[u] for u in c.beneficiaries),
                evidence=evidence,
            )
        )
    suspects.sort(key=lambda x: (-x.score, -len(x.member_ids), x.member_ids[:1]))
    return SuspectReport(
        tuple(suspects), snapshot.sequence, snapshot.time, time.perf_counter() - started
    )


class _EngineLike(Protocol):
    """What ``SuspectWatch`` reads of the engine (``scoresvc.core.engine.Engine``)."""

    @property
    def snapshot(self) -> Snapshot: ...

    def evidence_arrays(self) -> tuple[Snapshot, dict[str, np.ndarray]]: ...


def report_of(
    engine: _EngineLike,
    maturity_age_seconds: float,
    damping: float,
    settings: SuspectSettings | None = None,
) -> SuspectReport:
    """The report of the engine's latest refresh."""
    snapshot, arrays = engine.evidence_arrays()
    return detect(snapshot, arrays, maturity_age_seconds, damping, settings)


class SuspectWatch:
    """Keeps the suspect report of the latest refresh, computed in its own thread
    (``nudge`` after each refresh), never on a reader's path. After each report it
    waits at least four times as long as the report took (and ``min_gap_seconds``),
    so the report costs at most a fifth of a core. The last ``keep`` reports stay
    readable by sequence, so a caller paging through one keeps its pages."""

    def __init__(
        self,
        engine: _EngineLike,
        maturity_age_seconds: float,
        damping: float,
        settings: SuspectSettings | None = None,
        *,
        min_gap_seconds: float = 1.0,
        keep: int = 4,
        on_error: Callable[[BaseException], None] | None = None,
    ) -> None:
        self._compute = lambda: report_of(engine, maturity_age_seconds, damping, settings)
        self._engine = engine
        self._min_gap = min_gap_seconds
        self._keep = keep
        self._on_error = on_error
        self._reports: dict[int, SuspectReport] = {}
        self._latest: SuspectReport | None = None
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="scoresvc-suspects", daemon=True)

    @property
    def latest(self) -> SuspectReport | None:
        return self._latest

    def report(self, sequence: int) -> SuspectReport | None:
        """A kept report by its snapshot's sequence (None when it is gone)."""
        return self._reports.get(sequence)

    def nudge(self) -> None:
        self._wake.set()

    def compute_now(self) -> SuspectReport:
        """Compute and keep the report of the latest refresh in the calling thread (at
        start-up, so the first call finds one)."""
        report = self._compute()
        self._keep_report(report)
        return report

    def _keep_report(self, report: SuspectReport) -> None:
        with self._lock:
            self._reports[report.sequence] = report
            while len(self._reports) > self._keep:
                del self._reports[next(iter(self._reports))]
            self._latest = report

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join()

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait()
            self._wake.clear()
            if self._stop.is_set():
                return
            snap, latest = self._engine.snapshot, self._latest
            if latest is not None and (latest.sequence, latest.compute_time) == (
                snap.sequence,
                snap.time,
            ):
                continue
            try:
                report = self._compute()
            except Exception as error:  # keep the last report; the next refresh retries
                if self._on_error is not None:
                    self._on_error(error)
                continue
            self._keep_report(report)
            if self._stop.wait(max(self._min_gap, 4 * report.seconds)):
                return
