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
6. on the client: influence, scores, percentiles (step 8) and, optionally, topics.

Scores, percentiles, the teleport vector and topic values come from ``scoresvc.core.scoring``,
as the live service's do; the result is the in-process engine's to rounding.
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

from .. import _core
from ..core.engine import Engine, EngineState
from ..core.events import (
    Compaction,
    EventLog,
    compacted_interactions,
    deciding_endorsements,
    earliest_events,
)
from ..core.model import AccountStatus, ModelParams, channel_of
from ..core.pairs import pack_pairs, reversed_pairs, unpack_pairs
from ..core.scoring import (
    established,
    log_scale,
    member_percentiles,
    supported,
    teleport_vector,
    topic_values,
)
from ..storage import archive
from ..storage.archive import Location, Part

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


# ---------------------------------------------------------------------- reading


def _distinct(table: str, part: Part) -> tuple[np.ndarray, np.ndarray, np.ndarray, bool]:
    """The user ids and topics a partition names, sorted; when each id was first seen
    by the partition (its first-seen column, else its earliest event) and whether the
    partition has a first-seen column."""
    events = archive.read_partition(table, *part)
    ids, inverse = np.unique(np.asarray(events.user_ids, dtype=str), return_inverse=True)
    seen = events.first_seen
    if seen is None:
        seen = earliest_events(
            len(events.user_ids or []),
            events.actor,
            events.target,
            events.ts,
            events.endorser,
            events.endorsee,
            events.endorse_ts,
        )
    first = np.full(len(ids), np.inf)
    np.minimum.at(first, inverse.reshape(-1), seen)
    return (
        ids,
        np.unique(np.asarray(events.topics, dtype=str)),
        first,
        events.first_seen is not None,
    )


def _global(names: np.ndarray, local: Sequence[str]) -> np.ndarray:
    """Positions in the sorted dictionary ``names`` of a partition's own ids."""
    return np.searchsorted(names, np.asarray(local, dtype=str)).astype(np.int64)


# ---------------------------------------------------------------------- steps


def _bucket_of(a: np.ndarray, b: np.ndarray, buckets: int) -> np.ndarray:
    """The bucket of the unordered pair {a, b}: both directions land together."""
    lo, hi = np.minimum(a, b).astype(np.uint64), np.maximum(a, b).astype(np.uint64)
    mixed = (lo * np.uint64(0x9E3779B97F4A7C15)) ^ (hi * np.uint64(0xC2B2AE3D27D4EB4F))
    return ((mixed >> np.uint64(29)) % np.uint64(buckets)).astype(np.int64)


def _split(bucket: np.ndarray, buckets: int, arrays: dict[str, np.ndarray]) -> list[dict]:
    order = np.argsort(bucket, kind="stable")
    bounds = np.searchsorted(bucket[order], np.arange(buckets + 1))
    return [
        {k: v[order[bounds[i] : bounds[i + 1]]] for k, v in arrays.items()} for i in range(buckets)
    ]


def _aggregate_pairs(keys: np.ndarray, channel: np.ndarray, value: np.ndarray) -> tuple:
    """Sum ``value`` per (key, channel) with the engine's hash index and accumulator
    (at landmark = evaluation time, the weights are already decayed: ts = L)."""
    index = _core.U64Index()
    stored = np.zeros(max(len(keys), 1), np.uint64)
    slots = np.empty(len(keys), np.int32)
    index.get_or_insert(keys, stored, slots)
    n = len(index)
    sums = np.zeros((max(n, 1), 4))
    _core.accumulate(
        pair=slots,
        channel=channel,
        ts=np.zeros(len(keys)),
        count=value,
        channel_weight=np.ones(4),
        landmark=0.0,
        half_life=1.0,
        pair_fd=sums,
    )
    return stored[:n].copy(), sums[:n]


def _interaction_part(
    part: Part,
    names: np.ndarray,
    as_of: float,
    params: ModelParams,
    buckets: int,
    compacted: Compaction | None,
) -> list[dict]:
    """Step 2: one partition's pair sums at ``as_of``, split by unordered pair. Events
    after ``as_of`` are left out; compacted sums count when their events are not."""
    events = archive.read_partition("interactions", *part)
    reach = events.ts if compacted is None else compacted.event_times(events.ts)
    keep = reach <= as_of
    lookup = _global(names, events.user_ids or [])
    a, b = lookup[events.actor[keep]], lookup[events.target[keep]]
    channel = channel_of(events.kind[keep])
    count = 1.0 if events.weight is None else events.weight[keep]
    value = (
        np.asarray(params.kind_weights)[channel]
        * count
        * np.exp2((events.ts[keep] - as_of) / params.half_life_seconds)
    )
    keys, sums = _aggregate_pairs(pack_pairs(a, b), channel, value)
    src, dst = unpack_pairs(keys)
    return _split(_bucket_of(src, dst, buckets), buckets, {"key": keys, "W": sums})


def _endorsement_part(
    part: Part, names: np.ndarray, topics: np.ndarray, as_of: float, buckets: int
) -> list[dict]:
    events = archive.read_partition("endorsements", *part)
    keep = events.endorse_ts <= as_of
    lookup = _global(names, events.user_ids or [])
    a, b = lookup[events.endorser[keep]], lookup[events.endorsee[keep]]
    arrays = {
        "src": a,
        "dst": b,
        "topic": _global(topics, events.topics)[events.topic[keep]],
        "ts": events.endorse_ts[keep],
        "retracted": events.retracted[keep],
    }
    return _split(_bucket_of(a, b, buckets), buckets, arrays)


def _concat(pieces: Sequence[dict]) -> dict[str, np.ndarray]:
    pieces = [p for p in pieces if p]
    if not pieces:
        return {}
    return {k: np.concatenate([p[k] for p in pieces]) for k in pieces[0]}


def _merge(
    interactions: Sequence[dict],
    endorsements: Sequence[dict],
    mature: np.ndarray,
    as_of: float,
    params: ModelParams,
) -> dict[str, Any]:
    """Step 2 for one unordered-pair bucket: merged sums and live endorsements, and
    the volume each user receives from the bucket's pairs sent by established
    accounts (``mature``, 1 per established user; summed over buckets, the
    reciprocity gate's support)."""
    inter = _concat(interactions)
    endo = _concat(endorsements)
    keys = inter.get("key", np.zeros(0, np.uint64))
    W_parts = inter.get("W", np.zeros((0, 4)))
    # The same pair from several partitions: merge with the same kernels.
    if len(keys):
        keys, W = _aggregate_pairs(
            np.repeat(keys, 4),
            np.tile(np.arange(4, dtype=np.int8), len(keys)),
            W_parts.reshape(-1),
        )
    else:
        W = W_parts
    winners = _winners(endo)
    live = winners[~endo["retracted"][winners]] if len(winners) else winners
    if len(live):
        e_keys = pack_pairs(endo["src"][live], endo["dst"][live])
        e_value = params.endorsement_weight * np.exp2(
            (endo["ts"][live] - as_of) / params.half_life_seconds
        )
    else:
        e_keys, e_value = np.zeros(0, np.uint64), np.zeros(0)
    all_keys = np.union1d(keys, e_keys)
    W_all = np.zeros((len(all_keys), 4))
    W_all[np.searchsorted(all_keys, keys)] = W
    E = np.bincount(
        np.searchsorted(all_keys, e_keys), weights=e_value, minlength=len(all_keys)
    ).astype(np.float64)  # bincount of nothing is integer
    src, dst = unpack_pairs(all_keys)
    volume = (W_all.sum(axis=1) + E) * mature[src]
    return {
        "keys": all_keys,
        "W": W_all,
        "E": E,
        "e_keys": e_keys,
        "e_value": e_value,
        "endo": endo,
        "winners": winners,
        "live": live,
        "support": np.bincount(dst, weights=volume, minlength=len(mature)),
    }


def _reciprocity(
    merged: dict[str, Any], support: np.ndarray, mature: np.ndarray, rho: float, buckets: int
) -> dict[str, Any]:
    """Step 3 for one unordered-pair bucket, with the engine's kernel: each pair with
    its reverse's sums and the share reciprocity keeps (``kept_shares``, reading every
    user's received volume from established accounts ``support`` and which are
    established, ``mature``); the pairs split by source bucket for step 4."""
    all_keys, W_all, E = merged["keys"], merged["W"], merged["E"]
    endo, winners, live = merged["endo"], merged["winners"], merged["live"]
    rev_keys = reversed_pairs(all_keys)
    rev = np.searchsorted(all_keys, rev_keys)
    rev[rev >= len(all_keys)] = 0
    has_rev = all_keys[rev] == rev_keys if len(all_keys) else np.zeros(0, bool)
    src, dst = unpack_pairs(all_keys)
    kept = np.empty(len(all_keys))
    _core.kept_shares(
        pairs=np.arange(len(all_keys), dtype=np.int32),
        pair_key=all_keys,
        pair_fd=np.ascontiguousarray(W_all),
        pair_rev=np.where(has_rev, rev, -1).astype(np.int32),
        pair_eslot=np.arange(len(all_keys), dtype=np.int32),
        e_sum=E,
        support=support,
        mature=mature,
        rho=rho,
        out=kept,
    )
    raw = W_all.sum(axis=1)
    pairs = {
        "src": src,
        "dst": dst,
        "key": all_keys,
        "W": W_all,
        "W_rev": np.where(has_rev[:, None], W_all[rev], 0.0),
        "E": E,
        "E_rev": np.where(has_rev, E[rev], 0.0),
        "has_rev": has_rev,
        "raw": raw,
        "s": np.log1p(raw * kept),
        "E_pen": E * kept,
        "removed": (raw + E) * (1.0 - kept),
    }
    live_pair = np.searchsorted(all_keys, merged["e_keys"])
    records = (
        {k: endo[k][winners] for k in ("src", "dst", "topic", "ts", "retracted")}
        if len(winners)
        else {}
    )
    topic_rows = {
        "src": endo["src"][live] if len(live) else np.zeros(0, np.int64),
        "dst": endo["dst"][live] if len(live) else np.zeros(0, np.int64),
        "topic": endo["topic"][live] if len(live) else np.zeros(0, np.int64),
        "value": merged["e_value"] * kept[live_pair],
    }
    by_source = _split(src % buckets, buckets, pairs)
    return {"by_source": by_source, "records": records, "topic_rows": topic_rows}


def _winners(endo: dict[str, np.ndarray]) -> np.ndarray:
    """Each (endorser, endorsee, topic) key's deciding event, live or retracted."""
    if not endo:
        return np.zeros(0, np.int64)
    return deciding_endorsements(
        endo["src"], endo["dst"], endo["topic"], endo["ts"], endo["retracted"]
    )


def _budgets(
    pieces: Sequence[dict],
    status: np.ndarray,
    support: np.ndarray,
    mature: np.ndarray,
    params: ModelParams,
    ranges: np.ndarray,
) -> dict[str, Any]:
    """Step 4: one source bucket's saturation, budgets and transition probabilities,
    by the engine's own row kernel (``_core.compute_rows``); the edges split by
    destination range for the iterations.

    The kernel reads a pair's reverse through ``pair_rev``: each pair's reverse sums
    (carried from step 3) sit after the pairs as a ghost row the kernel only reads.
    """
    pairs = _concat(pieces)
    if not pairs:
        return {"by_destination": [{} for _ in range(len(ranges) - 1)], "beta": {}}
    order = np.argsort(pairs["src"], kind="stable")
    pairs = {k: v[order] for k, v in pairs.items()}
    src, dst, m = pairs["src"], pairs["dst"], len(pairs["src"])
    sources, first, count = np.unique(src, return_index=True, return_counts=True)
    ghost = np.arange(m, 2 * m, dtype=np.int32)
    pair_p = np.zeros(2 * m)
    beta = np.ones(len(sources))
    _core.compute_rows(
        rows=np.arange(len(sources), dtype=np.int32),
        start=first.astype(np.int32),
        length=count.astype(np.int32),
        e_pair=np.arange(m, dtype=np.int32),
        pair_key=np.concatenate([pairs["key"], reversed_pairs(pairs["key"])]),
        pair_fd=np.ascontiguousarray(np.concatenate([pairs["W"], pairs["W_rev"]])),
        pair_rev=np.where(pairs["has_rev"], ghost, -1).astype(np.int32),
        pair_eslot=np.arange(2 * m, dtype=np.int32),
        e_sum=np.concatenate([pairs["E"], pairs["E_rev"]]),
        support=support,
        mature=mature,
        status=np.ascontiguousarray(status[sources], dtype=np.uint8),
        scale=1.0,  # the sums are already decayed to the evaluation time
        rho=params.reciprocity,
        budget=params.endorsement_budget,
        min_weight=params.min_row_weight,
        pair_p=pair_p,
        beta=beta,
        out_d=np.zeros(len(sources)),
        beta_changed=np.zeros(len(sources), np.uint8),
        num_threads=1,
    )
    P = pair_p[:m]
    P[status[dst] == AccountStatus.SUSPENDED] = 0.0  # trust sent to them is lost
    edges = {
        "src": src,
        "dst": dst,
        "P": P,
        "raw": pairs["raw"],
        "s": pairs["s"],
        "E": pairs["E"],
        "e": np.repeat(beta, count) * pairs["E_pen"],
        "removed": pairs["removed"],
        "W": pairs["W"],
    }
    part = np.searchsorted(ranges, dst, side="right") - 1
    return {
        "by_destination": _split(part, len(ranges) - 1, edges),
        "beta": {"user": sources, "beta": beta},
    }


def _pull_graph(pieces: Sequence[dict], lo: int, hi: int) -> dict[str, np.ndarray]:
    """A destination range's edges, with the pull arrays of the engine's power step:
    for node ``v``, its in-edges' sources and ``P`` at ``pull_start[v]:pull_start[v+1]``."""
    edges = _concat(pieces)
    if not edges:
        edges = {"src": np.zeros(0, np.int64), "dst": np.zeros(0, np.int64), "P": np.zeros(0)}
    order = np.lexsort((edges["src"], edges["dst"]))
    edges = {k: v[order] for k, v in edges.items()}
    pull_start = np.zeros(hi - lo + 1, np.int64)
    np.cumsum(np.bincount(edges["dst"] - lo, minlength=hi - lo), out=pull_start[1:])
    edges["pull_start"] = pull_start
    edges["pull_src"] = edges["src"].astype(np.int32)
    return edges


def _flow(graph: dict[str, np.ndarray], lo: int, hi: int, c: np.ndarray, damping: float):
    """Step 5, one iteration on one destination range: ``d sum_a P(a->b) c_a``, by the
    engine's power step (with no teleport on the range, its output is the flow)."""
    out = np.empty(hi - lo)
    _core.ppr_power_step(
        pull_start=graph["pull_start"],
        pull_src=graph["pull_src"],
        pull_w=graph["P"],
        teleport=np.zeros(hi - lo),
        damping=damping,
        c=c,
        c_next=out,
        tol_rel=0.0,
        tol_abs=0.0,
        num_threads=1,
    )
    return out


def _personalised_pagerank(
    flow: Callable[[np.ndarray], np.ndarray],
    teleport: np.ndarray,
    tolerance: float,
    max_iterations: int,
) -> tuple[np.ndarray, int]:
    """Step 7 by power iteration from the teleport vector (``scoring.teleport_vector``):
    ``flow(c)`` is ``d P^T c`` (one task per destination range); what the damping and
    the suspended lose returns by teleport. Returns the credibility (summing to 1, or
    all 0 with nobody to teleport to) and the iterations taken."""
    teleport = teleport.copy()
    if teleport.sum() == 0:
        return np.zeros(len(teleport)), 0
    teleport /= teleport.sum()
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


def _first_seen(names: np.ndarray, found: Sequence[tuple]) -> np.ndarray:
    """Each user's first-seen time ("Accounts and their age"), as an import sets it:
    the accounts table's column when it has one, else the earliest event."""
    dated = any(explicit for *_, explicit in found)
    first = np.full(len(names), np.inf)
    for ids, _, seen, explicit in found:
        if explicit or not dated:
            np.minimum.at(first, _global(names, ids), seen)
    return first


def _received(edges: dict[str, np.ndarray], lo: int, hi: int) -> np.ndarray:
    out = np.zeros((hi - lo, 5))
    if len(edges["dst"]) == 0:
        return out
    at = edges["dst"] - lo
    for column, values in enumerate(
        (edges["raw"], edges["s"], edges["E"], edges["e"], edges["removed"])
    ):
        out[:, column] = np.bincount(at, weights=values, minlength=hi - lo)
    return out


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
    from distributed import wait

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

    # 1. Dictionaries of users and topics.
    names, topic_names, first_seen = _dictionaries(client, parts)
    n = len(names)
    say(f"{n:,} users, {len(topic_names) - 1} topics")
    status = _statuses(parts, names)
    names_f = client.scatter(names, broadcast=True)
    topics_f = client.scatter(topic_names, broadcast=True)
    status_f = client.scatter(status, broadcast=True)
    mature_f = client.scatter(
        established(first_seen, as_of, p.maturity_age_seconds), broadcast=True
    )

    # 2. Pair sums per partition, split by unordered pair.
    inter, endo = _pair_sums(client, parts, names_f, topics_f, as_of, p, buckets, compacted)

    # 3. The shuffle by unordered pair: reciprocity.
    recip, support_f = _reciprocity_by_pair(client, inter, endo, mature_f, as_of, p, buckets)

    # 4. The shuffle by source: budgets and transitions; then by destination range.
    ranges = np.linspace(0, n, buckets + 1).astype(np.int64)
    budget = _transitions_by_source(client, recip, status_f, support_f, mature_f, p, ranges)
    graph = _DestinationRanges(client, _pull_graphs(client, budget, ranges), ranges)
    wait(graph.edges)
    say(f"graph built in {time.perf_counter() - started:.1f} s")

    # 5. Personalised PageRank, one task per destination range each iteration.
    def flow(c: np.ndarray) -> np.ndarray:
        return graph.map(_flow, client.scatter(c, broadcast=True), p.damping)

    teleport = teleport_vector(status, first_seen, as_of, p)
    credibility, iterations = _personalised_pagerank(flow, teleport, tolerance, max_iterations)
    say(f"credibility after {iterations} iterations")

    # 6. Scores and the explanation.
    received = graph.map(_received)
    columns = _score_columns(credibility, flow(credibility), received, status)
    topic_table = None
    if topics:
        influence = columns["influence"]
        topic_table = _topic_scores(
            client, recip, budget, influence, status, topic_names, p.topic_min_endorsers
        )
    engine_state = None
    if state:
        engine_state = _state(
            client,
            recip,
            graph.edges,
            names,
            topic_names,
            status,
            first_seen,
            as_of,
            p,
            credibility,
        )
    return BatchResult(
        names, columns, iterations, time.perf_counter() - started, topic_table, engine_state
    )


def _dictionaries(
    client: Any, parts: dict[str, list[Part]]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Step 1: the sorted user ids and topics ("" first) of every partition, and when
    each user was first seen."""
    found = client.gather(
        [
            client.submit(_distinct, table, part, pure=False)
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
        status[_global(names, accounts.user_ids or [])] = np.asarray(accounts.status)
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
        client.submit(_interaction_part, part, names_f, as_of, p, buckets, compacted, pure=False)
        for part in parts["interactions"]
    ]
    endo = [
        client.submit(_endorsement_part, part, names_f, topics_f, as_of, buckets, pure=False)
        for part in parts["endorsements"]
    ]
    return inter, endo


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
            _merge,
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
            _reciprocity, merged[b], support_f, mature_f, p.reciprocity, buckets, pure=False
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
            _budgets,
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
            _pull_graph,
            _pieces(client, by_destination, b),
            int(ranges[b]),
            int(ranges[b + 1]),
            pure=False,
        )
        for b in range(len(ranges) - 1)
    ]


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
    credibility: np.ndarray, inflow: np.ndarray, received: np.ndarray, status: np.ndarray
) -> dict[str, np.ndarray]:
    """Step 6 on the client: ``SCORE_COLUMNS`` from the credibility, the flow into each
    user and the sums each received (``_received``)."""
    suspended = status == AccountStatus.SUSPENDED
    members = np.flatnonzero(~suspended)
    influence = np.where(suspended, 0.0, members.size * credibility)
    with np.errstate(divide="ignore", invalid="ignore"):
        teleport_share = np.where(credibility > 0, 1.0 - inflow / credibility, 0.0)
    return {
        "influence": influence,
        "score": log_scale(influence, float(influence.max(initial=0.0))),
        "percentile": member_percentiles(influence, ~suspended),
        "credibility": credibility,
        "engagement_received": received[:, 0],
        "engagement_saturated": received[:, 1],
        "endorsements_received": received[:, 2],
        "endorsements_effective": received[:, 3],
        "reciprocity_removed": received[:, 4],
        "teleport_share": teleport_share,
    }


def _topic_scores(
    client: Any,
    recip: list,
    budget: list,
    influence: np.ndarray,
    status: np.ndarray,
    topic_names: np.ndarray,
    least: int,
) -> dict[str, np.ndarray]:
    """Step 9 on the client: live endorsements are a few percent of the events.
    Suspended users are ranked in no topic, nor users with fewer than ``least``
    credible endorsers there; general endorsements (topic "") count in the overall
    score, not in a topic."""
    rows = _concat(client.gather([client.submit(operator.getitem, r, "topic_rows") for r in recip]))
    betas = _concat(client.gather([client.submit(operator.getitem, b, "beta") for b in budget]))
    beta = np.ones(len(influence))
    if betas:
        beta[betas["user"]] = betas["beta"]
    src, dst = rows.get("src", np.zeros(0, np.int64)), rows.get("dst", np.zeros(0, np.int64))
    topic, value = rows.get("topic", np.zeros(0, np.int64)), rows.get("value", np.zeros(0))
    ranked = (status[dst] != AccountStatus.SUSPENDED) & (topic_names[topic] != "")
    ranked &= supported(topic, dst, src, influence[src] > 0, least)
    src, dst, topic = src[ranked], dst[ranked], topic[ranked]
    contribution = influence[src] * beta[src] * value[ranked]
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
    edges: list,
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
    endorsement key's latest event."""
    pairs = _concat([g for g in client.gather(edges) if len(g["src"])])
    records = _concat(client.gather([client.submit(operator.getitem, r, "records") for r in recip]))
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


# ---------------------------------------------------------------------- output


def write_scores(result: BatchResult, out: str | Path | Location) -> list[Location]:
    """Write the scores (and topic scores, and the serving state when computed) to a
    local path or a URL of shared storage."""
    pa, pq = archive.pyarrow_modules()
    scores = Location.of(out)
    table = {"user_id": pa.array(result.user_ids.tolist(), pa.string())}
    table.update({k: pa.array(result.columns[k]) for k in SCORE_COLUMNS})
    with scores.open_write() as f:
        pq.write_table(pa.table(table), f, compression="zstd")
    written = [scores]
    if result.topics is not None:
        t = result.topics
        stem = scores.name.removesuffix(scores.suffix)
        path = scores.sibling(stem + ".topics.parquet")
        with path.open_write() as f:
            pq.write_table(
                pa.table(
                    {
                        "user_id": pa.array(result.user_ids[t["user"]].tolist(), pa.string()),
                        "topic": pa.array(t["topic"].tolist(), pa.string()),
                        "value": pa.array(t["value"]),
                        "score": pa.array(t["score"]),
                        "percentile": pa.array(t["percentile"]),
                    }
                ),
                f,
            )
        written.append(path)
    if result.state is not None:
        written.append(_write_state(result.state, scores.sibling(scores.name + ".state")))
    return written


def _write_state(state: EngineState, directory: Location) -> Location:
    """A checkpoint of ``state`` in ``directory``: written in place when local (atomic,
    synced), else written locally and copied up whole."""
    from ..storage import checkpoint

    if not directory.is_url:
        return Location.of(checkpoint.write(Path(directory.text), state))
    import tempfile

    with tempfile.TemporaryDirectory() as local:
        written = checkpoint.write(Path(local), state)
        target = directory.join(written.name)
        with open(written, "rb") as source, target.open_write() as f:
            while chunk := source.read(1 << 24):
                f.write(chunk)
    return target


def state_dir(scores: str | Path) -> Path:
    """Where a batch run keeps the state that ``serve --snapshot`` loads."""
    scores = Path(scores)
    return scores.with_name(scores.name + ".state")


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
