"""The engine against its peers, in one run (ratios, not absolute times).

    python benchmarks/bench_engine.py                       # 10M events, 1M users
    python benchmarks/bench_engine.py --events 1e6 --users 1e5 --peers duckdb

(a) full build from raw events, beside DuckDB and the numpy oracle;
(b) refresh after --new-events new events, beside the fastest peer's full recompute;
(c) resident engine state per distinct pair.
Every peer's influence is checked against the engine's within the model's tolerance (docs/model.md).
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from peers import PEERS

from scoresvc.core.engine import Engine
from scoresvc.core.events import EventLog
from scoresvc.core.model import ModelParams
from scoresvc.synthetic import community

TARGETS = {"build": 2.0, "refresh": 20.0, "bytes_per_pair": 100.0}


def _timed(fn, *args, **kwargs):  # type: ignore[no-untyped-def]
    gc.collect()
    started = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - started


def _concat(a: EventLog, b: EventLog) -> EventLog:
    return EventLog(
        n_users=a.n_users,
        actor=np.concatenate([a.actor, b.actor]),
        target=np.concatenate([a.target, b.target]),
        kind=np.concatenate([a.kind, b.kind]),
        ts=np.concatenate([a.ts, b.ts]),
        endorser=np.concatenate([a.endorser, b.endorser]),
        endorsee=np.concatenate([a.endorsee, b.endorsee]),
        topic=np.concatenate([a.topic, b.topic]),
        endorse_ts=np.concatenate([a.endorse_ts, b.endorse_ts]),
        retracted=np.concatenate([a.retracted, b.retracted]),
        status=a.status,
        user_ids=a.user_ids,
        topics=a.topics,
    )


def _compact(log: EventLog) -> EventLog:
    """The same events naming only the users they touch, as a real batch would."""
    used, inverse = np.unique(
        np.concatenate([log.actor, log.target, log.endorser, log.endorsee]), return_inverse=True
    )
    m, k = log.n_interactions, log.n_endorsement_events
    assert log.user_ids is not None
    return EventLog(
        n_users=len(used),
        actor=inverse[:m],
        target=inverse[m : 2 * m],
        kind=log.kind,
        ts=log.ts,
        endorser=inverse[2 * m : 2 * m + k],
        endorsee=inverse[2 * m + k :],
        topic=log.topic,
        endorse_ts=log.endorse_ts,
        retracted=log.retracted,
        user_ids=[log.user_ids[i] for i in used],
        topics=log.topics,
    )


def run(
    events: int, users: int, new_events: int, peers: list[str], threads: int, seed: int
) -> dict:
    params = ModelParams()
    log = community(events, users, seed=seed)
    now = float(log.ts.max()) + 1.0
    burst = community(new_events, users, seed=seed + 1, end=now, days=1.0)

    engine = Engine(params, threads=threads)

    def build() -> None:
        engine.load_events(log)
        engine.refresh(now)

    _, build_s = _timed(build)
    cold_stats = dict(engine.snapshot.stats)
    memory = engine.memory_bytes()
    pairs = engine.n_pairs

    batch = _compact(burst)

    def refresh() -> None:
        engine.load_events(batch)
        engine.refresh(now)

    _, refresh_s = _timed(refresh)
    refresh_stats = dict(engine.snapshot.stats)
    _, moved_s = _timed(engine.refresh, now + 60.0)
    moved_stats = dict(engine.snapshot.stats)
    engine.refresh(now)  # back to the peers' evaluation time for the check

    ours = engine.snapshot
    everything = _concat(log, burst)
    dense = np.array([ours.user_index[u] for u in everything.user_ids])
    results: dict[str, dict] = {}
    for name in peers:
        influence, seconds = _timed(PEERS[name], everything, now, params)
        mine = ours.influence[dense]
        worst = float(
            np.max(
                np.abs(influence - mine)
                / np.maximum(np.abs(influence), 1e-300)
                * (np.abs(influence - mine) > 1e-15 * users)
            )
        )
        results[name] = {"seconds": seconds, "worst_relative_difference": worst}

    fastest = min((r["seconds"] for r in results.values()), default=float("nan"))
    return {
        "events": events,
        "users": users,
        "pairs": pairs,
        "edges": cold_stats["edges"],
        "threads": threads,
        "build_seconds": build_s,
        "build_stats": cold_stats,
        "refresh_seconds": refresh_s,
        "refresh_stats": refresh_stats,
        "time_moved_refresh_seconds": moved_s,
        "time_moved_stats": moved_stats,
        "memory": memory,
        "bytes_per_pair": sum(memory.values()) / max(pairs, 1),
        "peers": results,
        "build_ratio": fastest / build_s,
        "refresh_ratio": fastest / refresh_s,
    }


def table(r: dict) -> str:
    lines = [
        f"{r['events']:,} events, {r['users']:,} users, {r['pairs']:,} pairs, "
        f"{r['threads']} threads",
        f"{'job':44} {'seconds':>9} {'ratio':>9} {'target':>8}",
    ]
    for name, peer in r["peers"].items():
        lines.append(
            f"{'full recompute: ' + name:44} {peer['seconds']:9.3f} {'':>9} {'':>8}"
            f"  (max rel diff {peer['worst_relative_difference']:.1e})"
        )
    ok = lambda got, want: "ok" if got >= want else "MISS"  # noqa: E731
    lines.append(
        f"{'(a) full build, scoresvc':44} {r['build_seconds']:9.3f} "
        f"{r['build_ratio']:8.1f}x {'>=2x':>8} {ok(r['build_ratio'], TARGETS['build'])}"
    )
    lines.append(
        f"{'(b) refresh after new events, scoresvc':44} {r['refresh_seconds']:9.4f} "
        f"{r['refresh_ratio']:8.1f}x {'>=20x':>8} {ok(r['refresh_ratio'], TARGETS['refresh'])}"
    )
    lines.append(
        f"{'    refresh after time moved (full, warm)':44} {r['time_moved_refresh_seconds']:9.3f}"
    )
    bpp = r["bytes_per_pair"]
    lines.append(
        f"{'(c) resident bytes per distinct pair':44} {bpp:9.1f} {'':>9} {'<=100':>8} "
        f"{'ok' if bpp <= TARGETS['bytes_per_pair'] else 'MISS'}"
    )
    lines.append(
        "    by part: "
        + ", ".join(f"{k} {v / max(r['pairs'], 1):.1f}" for k, v in r["memory"].items())
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=float, default=10_000_000)
    parser.add_argument("--users", type=float, default=1_000_000)
    parser.add_argument("--new-events", type=float, default=10_000)
    parser.add_argument("--peers", default="duckdb,numpy")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    peers = [p for p in args.peers.split(",") if p]
    result = run(
        int(args.events), int(args.users), int(args.new_events), peers, args.threads, args.seed
    )
    print(table(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2, default=float))
    return result


if __name__ == "__main__":
    main()
