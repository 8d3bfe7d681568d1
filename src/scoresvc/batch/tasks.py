"""What the batch job (``recompute``) runs on the workers: each task a module-level
function (Dask sends it by reference) from numpy arrays to numpy arrays, with the
engine's compiled kernels.

- per archive partition: its distinct ids (step 1) and its pair sums at ``as_of``,
  split by unordered pair (step 2), or its distrust events;
- per unordered-pair bucket: the merge and reciprocity (steps 2-3);
- per source bucket: saturation, budgets and transitions (steps 4-6);
- per destination range: the pull graph, one power iteration's flow (step 7) and the
  sums each user received.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .. import _core
from ..core.events import Compaction, deciding_endorsements, earliest_events
from ..core.model import AccountStatus, ModelParams, channel_of
from ..core.pairs import dense_endorsements, pack_pairs, reversed_pairs, unpack_pairs
from ..storage import archive
from ..storage.archive import Part

# ---------------------------------------------------------------------- reading


def distinct(table: str, part: Part) -> tuple[np.ndarray, np.ndarray, np.ndarray, bool]:
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
            events.distruster,
            events.distrusted,
            events.distrust_ts,
        )
    first = np.full(len(ids), np.inf)
    np.minimum.at(first, inverse.reshape(-1), seen)
    return (
        ids,
        np.unique(np.asarray(events.topics, dtype=str)),
        first,
        events.first_seen is not None,
    )


def positions_in(names: np.ndarray, local: Sequence[str]) -> np.ndarray:
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


def interaction_part(
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
    lookup = positions_in(names, events.user_ids or [])
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


def endorsement_part(
    part: Part, names: np.ndarray, topics: np.ndarray, as_of: float, buckets: int
) -> list[dict]:
    events = archive.read_partition("endorsements", *part)
    keep = events.endorse_ts <= as_of
    lookup = positions_in(names, events.user_ids or [])
    a, b = lookup[events.endorser[keep]], lookup[events.endorsee[keep]]
    arrays = {
        "src": a,
        "dst": b,
        "topic": positions_in(topics, events.topics)[events.topic[keep]],
        "ts": events.endorse_ts[keep],
        "retracted": events.retracted[keep],
    }
    return _split(_bucket_of(a, b, buckets), buckets, arrays)


def distrust_part(
    part: Part, names: np.ndarray, topics: np.ndarray, as_of: float
) -> dict[str, np.ndarray]:
    """Step 8's events of one partition up to ``as_of``, in the dictionaries' indexes:
    few beside the others (judged, not engaged), so they are resolved on the client."""
    events = archive.read_partition("distrusts", *part)
    keep = events.distrust_ts <= as_of
    lookup = positions_in(names, events.user_ids or [])
    return {
        "src": lookup[events.distruster[keep]],
        "dst": lookup[events.distrusted[keep]],
        "topic": positions_in(topics, events.topics)[events.distrust_topic[keep]],
        "ts": events.distrust_ts[keep],
        "retracted": events.distrust_retracted[keep],
    }


def concat(pieces: Sequence[dict]) -> dict[str, np.ndarray]:
    pieces = [p for p in pieces if p]
    if not pieces:
        return {}
    return {k: np.concatenate([p[k] for p in pieces]) for k in pieces[0]}


def merge(
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
    inter = concat(interactions)
    endo = concat(endorsements)
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


def reciprocity(
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
        **dense_endorsements(E),
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


def budgets(
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
    pairs = concat(pieces)
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
        **dense_endorsements(np.concatenate([pairs["E"], pairs["E_rev"]])),
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


def pull_graph(pieces: Sequence[dict], lo: int, hi: int) -> dict[str, np.ndarray]:
    """A destination range's edges, with the pull arrays of the engine's power step:
    for node ``v``, its in-edges' sources and ``P`` at ``pull_start[v]:pull_start[v+1]``."""
    edges = concat(pieces)
    if not edges:
        edges = {"src": np.zeros(0, np.int64), "dst": np.zeros(0, np.int64), "P": np.zeros(0)}
    order = np.lexsort((edges["src"], edges["dst"]))
    edges = {k: v[order] for k, v in edges.items()}
    pull_start = np.zeros(hi - lo + 1, np.int64)
    np.cumsum(np.bincount(edges["dst"] - lo, minlength=hi - lo), out=pull_start[1:])
    edges["pull_start"] = pull_start
    edges["pull_src"] = edges["src"].astype(np.int32)
    return edges


def flow(graph: dict[str, np.ndarray], lo: int, hi: int, c: np.ndarray, damping: float):
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


def received(edges: dict[str, np.ndarray], lo: int, hi: int) -> np.ndarray:
    """The explanation sums each destination in ``lo:hi`` received over its in-edges:
    engagement raw and saturated, endorsements raw and effective, reciprocity removed."""
    out = np.zeros((hi - lo, 5))
    if len(edges["dst"]) == 0:
        return out
    at = edges["dst"] - lo
    for column, values in enumerate(
        (edges["raw"], edges["s"], edges["E"], edges["e"], edges["removed"])
    ):
        out[:, column] = np.bincount(at, weights=values, minlength=hi - lo)
    return out
