"""Batch recompute on Dask distributed: the model (docs/model.md) over an event
archive, beyond one machine when it must be.

The job is a chain of map and reduce steps on ``distributed`` futures, numpy arrays
between them (``docs/batch.md`` tells the scaling story):

1. users and topics: each archive partition's distinct ids, merged on the client into
   sorted dictionaries, broadcast to the workers;
2. per interaction partition, the pair sums at ``as_of`` with the engine's compiled
   kernels (``U64Index``, ``accumulate``), split by unordered pair;
3. per unordered-pair bucket (the shuffle that brings a pair and its reverse together):
   sums merged, endorsements resolved (latest event wins), each user's received volume
   from established accounts summed on the client, then reciprocity (steps 1-3) with
   the engine's kernel;
4. per source bucket: saturation, budgets, transition probabilities (steps 4-6) with
   the engine's row kernel (``compute_rows``);
5. per destination range: the edges in the pull form, kept on the workers for the power
   iterations of personalised PageRank (step 7), each iteration one task per range
   running the engine's power step (``ppr_power_step``);
6. on the client: the live distrusts and the share of trust each user keeps (step 8),
   then the iterations again with each source's outgoing trust scaled by it, warm-started
   from the first solution (skipped when nobody is discounted);
7. on the client: influence, scores, percentiles and, optionally, topics.

Scores, percentiles, the teleport vector and topic values come from ``scoresvc.core.scoring``,
as the live service's do; the result is the in-process engine's to rounding. The
tasks themselves are in ``batch.tasks``; ``batch.output`` writes the result.
"""

from __future__ import annotations

import logging
import math
import operator
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..core.engine import Engine, EngineState
from ..core.events import Compaction, EventLog, compacted_interactions, latest_events
from ..core.model import AccountStatus, ModelParams
from ..core.scoring import (
    Distrust,
    established,
    log_scale,
    member_percentiles,
    supported,
    teleport_vector,
    topic_values,
)
from ..storage import archive
from ..storage.archive import Location, Part
from . import tasks

log = logging.getLogger("scoresvc.batch.recompute")

#: Output columns besides user_id, in order.
SCORE_COLUMNS = (
    "influence",
    "score",
    "percentile",
    "credibility",
    "engagement_received",
    "engagement_saturated",
    "endorsements_received",
    "endorsements_effective",
    "reciprocity_removed",
    "teleport_share",
    "distrust_received",
    "trust_kept",
)


@dataclass(frozen=True)
class BatchResult:
    """What ``run`` computed (all in user order of ``user_ids``)."""

    user_ids: np.ndarray
    columns: dict[str, np.ndarray]
    iterations: int
    seconds: float
    topics: dict[str, np.ndarray] | None = None
    state: EngineState | None = None


def _personalised_pagerank(
    flow: Callable[[np.ndarray], np.ndarray],
    teleport: np.ndarray,
    tolerance: float,
    max_iterations: int,
    start: np.ndarray | None = None,
) -> tuple[np.ndarray, int]:
    """Step 7 by power iteration from the teleport vector (``scoring.teleport_vector``)
    or from ``start``: ``flow(c)`` is ``d P^T c`` (one task per destination range);
    what the damping and the suspended lose returns by teleport. Returns the
    credibility (summing to 1, or all 0 with nobody to teleport to) and the iterations
    taken."""
    teleport = teleport.copy()
    if teleport.sum() == 0:
        return np.zeros(len(teleport)), 0
    teleport /= teleport.sum()
    c = teleport.copy() if start is None else start.copy()
    iterations = 0
    for iterations in range(1, max_iterations + 1):  # noqa: B007
        moved = flow(c)
        c_next = moved + (1.0 - moved.sum()) * teleport
        change = float(np.abs(c_next - c).sum())
        c = c_next
        if change < tolerance:
            break
    return c, iterations


def _first_seen(names: np.ndarray, found: Sequence[tuple]) -> np.ndarray:
    """Each user's first-seen time ("Accounts and their age"), as an import sets it:
    the accounts table's column when it has one, else the earliest event."""
    dated = any(explicit for *_, explicit in found)
    first = np.full(len(names), np.inf)
    for ids, _, seen, explicit in found:
        if explicit or not dated:
            np.minimum.at(first, tasks.positions_in(names, ids), seen)
    return first


# ---------------------------------------------------------------------- the job


def run(
    client: Any,
    input_dir: str | Path | Location,
    as_of: float,
    params: ModelParams | None = None,
    *,
    tolerance: float = 1e-13,
    max_iterations: int = 2000,
    topics: bool = False,
    state: bool = False,
    progress: Callable[[str], None] | None = None,
) -> BatchResult:
    """Compute a snapshot of the archive in ``input_dir`` (a local path, resolved here
    so that every worker reads the same files, or a URL of shared storage) at ``as_of``
    on ``client``'s cluster (a ``distributed.Client``). ``CompactionError`` when the
    archive's compacted interactions cannot be read at ``as_of``."""
    p = params or ModelParams()
    started = time.perf_counter()
    say = progress or (lambda message: log.info("%s", message))
    source = Location.of(input_dir)
    compacted = archive.compaction(source)
    if compacted is not None:
        compacted.check(as_of)
    parts = archive.partitions(source)
    workers = max(len(client.scheduler_info().get("workers", {})), 1)
    buckets = max(2 * workers, 2)

    b = _build(client, parts, as_of, p, buckets, compacted)
    n = len(b.names)
    say(f"{n:,} users, {len(b.topics) - 1} topics")
    say(f"graph built in {time.perf_counter() - started:.1f} s")

    # 5. Personalised PageRank, one task per destination range each iteration.
    def flow(c: np.ndarray) -> np.ndarray:
        return b.graph.map(tasks.flow, client.scatter(c, broadcast=True), p.damping)

    teleport = teleport_vector(b.status, b.first_seen, as_of, p)
    credibility, iterations = _personalised_pagerank(flow, teleport, tolerance, max_iterations)
    say(f"credibility after {iterations} iterations")

    # 6. Distrust: the share of trust each user keeps, and the credibility solved again.
    distrust, distrust_records = _distrusts(client, parts, b.names_f, b.topics_f, as_of, p)
    first = credibility
    kept, credibility, more = _discounted(
        distrust, b.status, credibility, flow, teleport, p, tolerance, max_iterations
    )
    if more:
        iterations += more
        say(f"credibility after distrust in {more} more iterations")

    # 7. Scores and the explanation.
    received = b.graph.map(tasks.received)
    inflow = flow(kept * credibility)
    columns = _score_columns(credibility, kept, inflow, received, b.status, distrust.received(n))
    topic_table = engine_state = None
    if topics:
        influence = columns["influence"]
        topic_table = _topic_scores(
            client, b.recip, b.budget, influence, kept, b.status, b.topics, p.topic_min_endorsers
        )
    if state:
        engine_state = _state(
            client, b.recip, b.graph, distrust_records, b.names, b.topics, b.status,
            b.first_seen, as_of, p, first,
        )  # fmt: skip
    return BatchResult(
        b.names, columns, iterations, time.perf_counter() - started, topic_table, engine_state
    )


@dataclass(frozen=True)
class _Built:
    """Steps 1-4 of a job: the dictionaries and the transition graph."""

    names: np.ndarray
    topics: np.ndarray
    first_seen: np.ndarray
    status: np.ndarray
    names_f: Any  # the futures of the dictionaries, broadcast to the workers
    topics_f: Any
    recip: Any  # pair sums after reciprocity, by unordered pair
    budget: Any
    graph: Any  # the pull graph, by destination range


def _build(
    client: Any,
    parts: dict[str, list[Part]],
    as_of: float,
    p: ModelParams,
    buckets: int,
    compacted: Compaction | None,
) -> _Built:
    # 1. Dictionaries of users and topics.
    names, topic_names, first_seen = _dictionaries(client, parts)
    status = _statuses(parts, names)
    names_f = client.scatter(names, broadcast=True)
    topics_f = client.scatter(topic_names, broadcast=True)
    status_f = client.scatter(status, broadcast=True)
    mature_f = client.scatter(
        established(first_seen, as_of, p.maturity_age_seconds), broadcast=True
    )
    n = len(names)
    # 2. Pair sums per partition, split by unordered pair.
    inter, endo = _pair_sums(client, parts, names_f, topics_f, as_of, p, buckets, compacted)

    # 3. The shuffle by unordered pair: reciprocity.
    recip, support_f = _reciprocity_by_pair(client, inter, endo, mature_f, as_of, p, buckets)

    # 4. The shuffle by source: budgets and transitions; then by destination range.
    budget, graph = _transition_graph(client, recip, status_f, support_f, mature_f, p, n, buckets)

    return _Built(names, topic_names, first_seen, status, names_f, topics_f, recip, budget, graph)


def _discounted(
    distrust: Distrust,
    status: np.ndarray,
    credibility: np.ndarray,
    flow: Callable[[np.ndarray], np.ndarray],
    teleport: np.ndarray,
    p: ModelParams,
    tolerance: float,
    max_iterations: int,
) -> tuple[np.ndarray, np.ndarray, int]:
    """Step 8: the share of trust each user keeps and, when anyone keeps less than
    all, the credibility solved again (warm) with each user passing on only that.
    Returns the shares, the credibility and the further iterations."""
    suspended = status == AccountStatus.SUSPENDED
    kept = distrust.kept(np.where(suspended, 0.0, credibility), p.distrust_strength)
    if not (kept < 1.0).any():
        return kept, credibility, 0
    again, more = _personalised_pagerank(
        lambda c: flow(kept * c), teleport, tolerance, max_iterations, start=credibility
    )
    return kept, again, more


def _dictionaries(
    client: Any, parts: dict[str, list[Part]]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Step 1: the sorted user ids and topics ("" first) of every partition, and when
    each user was first seen."""
    found = client.gather(
        [
            client.submit(tasks.distinct, table, part, pure=False)
            for table in archive.TABLES
            for part in parts[table]
        ]
    )
    names = np.unique(np.concatenate([np.zeros(0, dtype=str), *(f[0] for f in found)]))
    topic_names = np.unique(np.concatenate([np.array([""]), *(f[1] for f in found)]))
    return names, topic_names, _first_seen(names, found)


def _statuses(parts: dict[str, list[Part]], names: np.ndarray) -> np.ndarray:
    """Each user's account status, read on the client from the accounts table."""
    status = np.zeros(len(names), np.uint8)
    for part in parts["accounts"]:
        accounts = archive.read_partition("accounts", *part)
        status[tasks.positions_in(names, accounts.user_ids or [])] = np.asarray(accounts.status)
    return status


def _pair_sums(
    client: Any,
    parts: dict[str, list[Part]],
    names_f: Any,
    topics_f: Any,
    as_of: float,
    p: ModelParams,
    buckets: int,
    compacted: Compaction | None,
) -> tuple[list, list]:
    """Step 2: a task per interaction and per endorsement partition."""
    inter = [
        client.submit(
            tasks.interaction_part, part, names_f, as_of, p, buckets, compacted, pure=False
        )
        for part in parts["interactions"]
    ]
    endo = [
        client.submit(tasks.endorsement_part, part, names_f, topics_f, as_of, buckets, pure=False)
        for part in parts["endorsements"]
    ]
    return inter, endo


def _distrusts(
    client: Any,
    parts: dict[str, list[Part]],
    names_f: Any,
    topics_f: Any,
    as_of: float,
    p: ModelParams,
) -> tuple[Distrust, dict[str, np.ndarray]]:
    """Step 8's live distrusts at ``as_of`` (a task per partition, resolved on the
    client: the latest event per distruster, distrusted and topic decides, as for
    endorsements), and each key's deciding event for the serving state."""
    rows = tasks.concat(
        client.gather(
            [
                client.submit(tasks.distrust_part, part, names_f, topics_f, as_of, pure=False)
                for part in parts["distrusts"]
            ]
        )
    )
    if not rows:
        none = np.zeros(0, np.int64)
        rows = {"src": none, "dst": none, "topic": none, "ts": np.zeros(0)}
        rows["retracted"] = np.zeros(0, bool)
    decides = latest_events(
        [rows["src"], rows["dst"], rows["topic"]], rows["ts"], rows["retracted"]
    )
    live = decides[~rows["retracted"][decides]]
    distrust = Distrust.at(
        rows["src"][live], rows["dst"][live], rows["ts"][live], as_of, p.half_life_seconds
    )
    return distrust, {k: v[decides] for k, v in rows.items()}


def _pieces(client: Any, futures: list, b: int) -> list:
    """Piece ``b`` of each task's split output: one side of a shuffle."""
    return [client.submit(operator.getitem, f, b) for f in futures]


def _reciprocity_by_pair(
    client: Any,
    inter: list,
    endo: list,
    mature_f: Any,
    as_of: float,
    p: ModelParams,
    buckets: int,
) -> tuple[list, Any]:
    """Step 3: a task per unordered-pair bucket merges its sums; every user's received
    volume from established accounts (the reciprocity gate's support; ``mature_f``
    says who is established) is summed over buckets on the client and broadcast; then
    a task per bucket applies the penalty. Returns those tasks and the support."""
    merged = [
        client.submit(
            tasks.merge,
            _pieces(client, inter, b),
            _pieces(client, endo, b),
            mature_f,
            as_of,
            p,
            pure=False,
        )
        for b in range(buckets)
    ]
    support = np.sum(
        client.gather([client.submit(operator.getitem, f, "support") for f in merged]), axis=0
    )
    support_f = client.scatter(support, broadcast=True)
    recip = [
        client.submit(
            tasks.reciprocity, merged[b], support_f, mature_f, p.reciprocity, buckets, pure=False
        )
        for b in range(buckets)
    ]
    return recip, support_f


def _transitions_by_source(
    client: Any,
    recip: list,
    status_f: Any,
    support_f: Any,
    mature_f: Any,
    p: ModelParams,
    ranges: np.ndarray,
) -> list:
    """Step 4: a task per source bucket."""
    by_source = [client.submit(operator.getitem, r, "by_source") for r in recip]
    return [
        client.submit(
            tasks.budgets,
            _pieces(client, by_source, b),
            status_f,
            support_f,
            mature_f,
            p,
            ranges,
            pure=False,
        )
        for b in range(len(ranges) - 1)
    ]


def _pull_graphs(client: Any, budget: list, ranges: np.ndarray) -> list:
    """The edges of each destination range, kept on the workers for step 5."""
    by_destination = [client.submit(operator.getitem, f, "by_destination") for f in budget]
    return [
        client.submit(
            tasks.pull_graph,
            _pieces(client, by_destination, b),
            int(ranges[b]),
            int(ranges[b + 1]),
            pure=False,
        )
        for b in range(len(ranges) - 1)
    ]


def _transition_graph(
    client: Any,
    recip: list,
    status_f: Any,
    support_f: Any,
    mature_f: Any,
    p: ModelParams,
    n: int,
    buckets: int,
) -> tuple[list, _DestinationRanges]:
    """Step 4: the shuffle by source (budgets and transitions), then by destination
    range: the pull graph, built and kept on the workers. Returns the budget tasks and
    the graph."""
    from distributed import wait

    ranges = np.linspace(0, n, buckets + 1).astype(np.int64)
    budget = _transitions_by_source(client, recip, status_f, support_f, mature_f, p, ranges)
    graph = _DestinationRanges(client, _pull_graphs(client, budget, ranges), ranges)
    wait(graph.edges)
    return budget, graph


@dataclass(frozen=True)
class _DestinationRanges:
    """The pull graph on the workers, ``edges[b]`` holding the destinations from
    ``ranges[b]`` to ``ranges[b + 1]``."""

    client: Any
    edges: list
    ranges: np.ndarray

    def map(self, task: Callable[..., np.ndarray], *args: Any) -> np.ndarray:
        """``task(edges, lo, hi, *args)`` on every destination range, concatenated."""
        ranges = self.ranges
        return np.concatenate(
            self.client.gather(
                [
                    self.client.submit(
                        task, edges, int(ranges[b]), int(ranges[b + 1]), *args, pure=False
                    )
                    for b, edges in enumerate(self.edges)
                ]
            )
        )


def _score_columns(
    credibility: np.ndarray,
    kept: np.ndarray,
    inflow: np.ndarray,
    received: np.ndarray,
    status: np.ndarray,
    distrust_received: np.ndarray,
) -> dict[str, np.ndarray]:
    """Step 9 on the client: ``SCORE_COLUMNS`` from the credibility, the share of it
    each user keeps (step 8), the flow into each user, the sums each received
    (``tasks.received``) and its distrust received. Influence is ``N kept c / sum(kept
    c)``; ``credibility`` is the kept share of it that sums to 1."""
    suspended = status == AccountStatus.SUSPENDED
    members = np.flatnonzero(~suspended)
    held = np.where(suspended, 0.0, kept * credibility)
    total = float(held.sum())
    share = held / total if total > 0 else np.zeros(len(held))
    influence = members.size * share
    with np.errstate(divide="ignore", invalid="ignore"):
        teleport_share = np.where(credibility > 0, 1.0 - inflow / credibility, 0.0)
    return {
        "influence": influence,
        "score": log_scale(influence, float(influence.max(initial=0.0))),
        "percentile": member_percentiles(influence, ~suspended),
        "credibility": share,
        "engagement_received": received[:, 0],
        "engagement_saturated": received[:, 1],
        "endorsements_received": received[:, 2],
        "endorsements_effective": received[:, 3],
        "reciprocity_removed": received[:, 4],
        "teleport_share": teleport_share,
        "distrust_received": distrust_received,
        "trust_kept": kept,
    }


def _topic_scores(
    client: Any,
    recip: list,
    budget: list,
    influence: np.ndarray,
    kept: np.ndarray,
    status: np.ndarray,
    topic_names: np.ndarray,
    least: int,
) -> dict[str, np.ndarray]:
    """Step 10 on the client: live endorsements are a few percent of the events.
    Suspended users are ranked in no topic, nor users with fewer than ``least``
    credible endorsers there; general endorsements (topic "") count in the overall
    score, not in a topic. A distrusted user's value keeps the share of trust it
    keeps (``kept``)."""
    rows = tasks.concat(
        client.gather([client.submit(operator.getitem, r, "topic_rows") for r in recip])
    )
    betas = tasks.concat(
        client.gather([client.submit(operator.getitem, b, "beta") for b in budget])
    )
    beta = np.ones(len(influence))
    if betas:
        beta[betas["user"]] = betas["beta"]
    src, dst = rows.get("src", np.zeros(0, np.int64)), rows.get("dst", np.zeros(0, np.int64))
    topic, value = rows.get("topic", np.zeros(0, np.int64)), rows.get("value", np.zeros(0))
    ranked = (status[dst] != AccountStatus.SUSPENDED) & (topic_names[topic] != "")
    ranked &= supported(topic, dst, src, influence[src] > 0, least)
    src, dst, topic = src[ranked], dst[ranked], topic[ranked]
    contribution = influence[src] * beta[src] * value[ranked] * kept[dst]
    table = topic_values(topic, dst, contribution, len(influence))
    key_topic, user = table.topics_and_users(len(influence))
    return {
        "user": user,
        "topic": topic_names[key_topic],
        "value": table.value,
        "score": table.scores(),
        "percentile": table.percentile,
    }


def _state(
    client: Any,
    recip: list,
    graph: _DestinationRanges,
    distrusts: dict[str, np.ndarray],
    names: np.ndarray,
    topic_names: np.ndarray,
    status: np.ndarray,
    first_seen: np.ndarray,
    as_of: float,
    p: ModelParams,
    credibility: np.ndarray,
) -> EngineState:
    """The engine state that serves this snapshot and takes new events on top: the
    pair sums as a compacted log at ``as_of`` (of events up to ``as_of``), each
    endorsement and distrust key's deciding event."""
    pairs = tasks.concat([g for g in client.gather(graph.edges) if len(g["src"])])
    records = tasks.concat(
        client.gather([client.submit(operator.getitem, r, "records") for r in recip])
    )
    interactions = compacted_interactions(
        pairs.get("src", np.zeros(0, np.int64)),
        pairs.get("dst", np.zeros(0, np.int64)),
        pairs.get("W", np.zeros((0, 4))),
        np.asarray(p.kind_weights),
        as_of,
    )
    log = EventLog(
        n_users=len(names),
        **interactions,
        endorser=records.get("src", np.zeros(0, np.int64)),
        endorsee=records.get("dst", np.zeros(0, np.int64)),
        topic=records.get("topic", np.zeros(0, np.int64)),
        endorse_ts=records.get("ts", np.zeros(0)),
        retracted=records.get("retracted", np.zeros(0, bool)),
        distruster=distrusts["src"],
        distrusted=distrusts["dst"],
        distrust_topic=distrusts["topic"],
        distrust_ts=distrusts["ts"],
        distrust_retracted=distrusts["retracted"],
        status=status,
        first_seen=first_seen,
        user_ids=names.tolist(),
        topics=topic_names.tolist(),
        compaction=Compaction(as_of, as_of),
    )
    engine = Engine(p, threads=1)
    engine.load_events(log)
    state = engine.state()
    state.arrays["warm_x"] = credibility.copy()
    return state


def parse_time(text: str) -> float:
    """Unix seconds from a number or an RFC 3339 time."""
    try:
        return float(text)
    except ValueError:
        pass
    import datetime

    moment = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.timezone.utc)
    value = moment.timestamp()
    if not math.isfinite(value):
        raise ValueError(f"not a time: {text!r}")
    return value
