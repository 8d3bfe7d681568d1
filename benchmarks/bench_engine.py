"""The engine against its peers, in one run (ratios, not absolute times).

    python benchmarks/bench_engine.py                       # 10M events, 1M users
    python benchmarks/bench_engine.py --events 1e6 --users 1e5 --peers duckdb

(a) full build from raw events, beside Polars + scipy, DuckDB and the numpy oracle, in
    --rounds alternating rounds in this process (engine, peers, engine, peers...; the
    peers not in --alternate run in the first round only): medians and each one's
    ratio to the engine; the peak resident memory the engine's build and each peer in
    --alternate add, each measured in a fresh process;
(b) refresh after --new-events new events, beside the fastest peer's full recompute;
(c) resident engine state per distinct pair.
Every peer's influence is checked against the engine's within the model's tolerance (docs/model.md).
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import gc
import json
import subprocess
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

# The full build at least 2x the fastest peer, a refresh after new events at least 10x
# its recompute, and resident state no larger per pair than before the cold build path.
TARGETS = {"build": 2.0, "refresh": 10.0, "bytes_per_pair": 95.7}


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


def _bytes_in_status(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise OSError(f"no {field} in /proc/self/status")


def _release_freed_memory() -> None:
    """Hand memory freed by earlier runs back to the system (glibc keeps freed heap
    pages), so that the next run's peak counts what it allocates itself."""
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def _measured(fn, *args):  # type: ignore[no-untyped-def]
    """``fn(*args)``, its seconds and the peak resident memory it added (bytes): the
    kernel's high-water mark, reset before the call (Linux); None where unavailable."""
    _release_freed_memory()
    try:
        Path("/proc/self/clear_refs").write_text("5")
        before: int | None = _bytes_in_status("VmRSS")
    except OSError:
        before = None
    started = time.perf_counter()
    out = fn(*args)
    seconds = time.perf_counter() - started
    extra = None if before is None else _bytes_in_status("VmHWM") - before
    return out, seconds, extra


def _build(log: EventLog, now: float, params: ModelParams, threads: int) -> tuple[Engine, dict]:
    """The engine's full build (load_events then refresh), timed by phase."""
    engine = Engine(params, threads=threads)
    started = time.perf_counter()
    engine.load_events(log)
    loaded = time.perf_counter()
    engine.refresh(now)
    return engine, {"load_events": loaded - started, "refresh": time.perf_counter() - loaded}


def _influence(out: object) -> np.ndarray:
    return np.asarray(getattr(out, "influence", out))


def _rounds(
    log: EventLog,
    everything: EventLog,
    now: float,
    params: ModelParams,
    threads: int,
    peers: list[str],
    alternate: set[str],
    rounds: int,
) -> tuple[Engine, list[dict], dict[str, list[dict]], dict[str, np.ndarray]]:
    """Alternating rounds in this process: the engine's full build, then each peer;
    peers not in ``alternate`` run in the first round only. Returns the last round's
    engine, the runs and each peer's influence from its first run."""
    builds: list[dict] = []
    runs: dict[str, list[dict]] = {name: [] for name in peers}
    influence: dict[str, np.ndarray] = {}
    engine = None
    for round_ in range(rounds):
        engine = None  # the previous round's engine is gone before the build is measured
        (engine, phases), seconds = _timed(_build, log, now, params, threads)
        builds.append({"seconds": seconds, "phases": phases})
        for name in peers:
            if round_ and name not in alternate:
                continue
            out, seconds = _timed(PEERS[name], everything, now, params)
            runs[name].append(
                {
                    "seconds": seconds,
                    "phases": getattr(out, "phases", None),
                    "steps": getattr(out, "steps", None),
                }
            )
            influence.setdefault(name, _influence(out))
            del out
    assert engine is not None
    return engine, builds, runs, influence


def _summary(runs: list[dict], builds: list[dict]) -> dict:
    """Medians over rounds; for a peer timed every round, engine/peer per round."""
    seconds = [r["seconds"] for r in runs]
    phases = [r["phases"] for r in runs if r.get("phases")]
    out = {
        "seconds": float(np.median(seconds)),
        "seconds_all": seconds,
        "rounds": len(runs),
        "phases": {k: float(np.median([p[k] for p in phases])) for k in phases[0]}
        if phases
        else None,
        "steps": runs[0].get("steps"),
    }
    if len(runs) == len(builds):
        out["engine_over_peer"] = [b["seconds"] / r["seconds"] for b, r in zip(builds, runs)]
    return out


def _inputs(events: int, users: int, new_events: int, seed: int) -> tuple:
    """The community, the burst of new events, both together, and the evaluation time."""
    log = community(events, users, seed=seed)
    now = float(log.ts.max()) + 1.0
    burst = community(new_events, users, seed=seed + 1, end=now, days=1.0)
    return log, burst, _concat(log, burst), now


def _warm_up(contenders: list[str], seed: int, threads: int) -> None:
    """One run of each contender (``engine`` or a peer) on a tiny community, so that
    one-off start-up costs (imports, thread pools) fall outside what is measured."""
    params = ModelParams()
    tiny, _, everything, now = _inputs(1000, 100, 10, seed)
    for name in contenders:
        if name == "engine":
            _build(tiny, now, params, threads)
        else:
            PEERS[name](everything, now, params)


def _memory_of(contender: str, events: int, users: int, new_events: int, seed: int, threads: int):  # type: ignore[no-untyped-def]
    """The peak resident memory ``contender`` (``engine`` or a peer) adds to this process,
    after a warm-up run on a tiny community (so one-off start-up costs are not counted)."""
    params = ModelParams()
    _warm_up([contender], seed, threads)
    log, _, everything, now = _inputs(events, users, new_events, seed)
    if contender == "engine":
        return _measured(_build, log, now, params, threads)[2]
    return _measured(PEERS[contender], everything, now, params)[2]


def _peak_in_fresh_process(
    contender: str, events: int, users: int, new_events: int, seed: int, threads: int
) -> float | None:
    """``_memory_of`` in a process of its own: allocators keep freed memory and give
    it back later (Polars' jemalloc after a delay), which blurs figures taken in one
    process after another contender ran."""
    argv = [
        *("--events", str(events), "--users", str(users), "--new-events", str(new_events)),
        *("--seed", str(seed), "--threads", str(threads), "--memory-of", contender),
    ]
    done = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), *argv],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(done.stdout.splitlines()[-1])["extra_bytes"]


def run(
    events: int,
    users: int,
    new_events: int,
    peers: list[str],
    threads: int,
    seed: int,
    rounds: int = 1,
    alternate: frozenset[str] = frozenset(),
    measure_memory: bool = True,
) -> dict:
    params = ModelParams()
    # The peers recompute everything the engine holds after the refresh below.
    log, burst, everything, now = _inputs(events, users, new_events, seed)

    _warm_up(["engine", *peers], seed, threads)
    engine, builds, runs, influence = _rounds(
        log, everything, now, params, threads, peers, set(alternate), rounds
    )
    build = _summary(builds, builds)
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
    dense = np.array([ours.user_index[u] for u in everything.user_ids])
    mine = ours.influence[dense]
    results: dict[str, dict] = {}
    for name in peers:
        theirs = influence[name]
        difference = np.abs(theirs - mine)
        worst = float(
            np.max(difference / np.maximum(np.abs(theirs), 1e-300) * (difference > 1e-15 * users))
        )
        results[name] = {**_summary(runs[name], builds), "worst_relative_difference": worst}

    # Peak memory of the engine and of the peers timed every round, each on its own.
    setup = (events, users, new_events, seed, threads)
    build["extra_bytes"] = _peak_in_fresh_process("engine", *setup) if measure_memory else None
    for name in peers:
        measured = measure_memory and name in alternate
        results[name]["extra_bytes"] = _peak_in_fresh_process(name, *setup) if measured else None

    fastest = min((r["seconds"] for r in results.values()), default=float("nan"))
    return {
        "events": events,
        "users": users,
        "pairs": pairs,
        "edges": cold_stats["edges"],
        "threads": threads,
        "rounds": rounds,
        "build_seconds": build["seconds"],
        "build": build,
        "build_stats": cold_stats,
        "refresh_seconds": refresh_s,
        "refresh_stats": refresh_stats,
        "time_moved_refresh_seconds": moved_s,
        "time_moved_stats": moved_stats,
        "memory": memory,
        "bytes_per_pair": sum(memory.values()) / max(pairs, 1),
        "peers": results,
        "build_ratio": fastest / build["seconds"],
        "refresh_ratio": fastest / refresh_s,
    }


def _megabytes(value: float | None) -> str:
    return "" if value is None else f"{value / 1e6:+,.0f}"


def _phases(r: dict) -> str:
    text = ", ".join(f"{k} {v:.3f}" for k, v in (r["phases"] or {}).items())
    return text + (f" ({r['steps']} power steps)" if r.get("steps") else "")


def table(r: dict) -> str:
    build = r["build"]
    lines = [
        f"{r['events']:,} events, {r['users']:,} users, {r['pairs']:,} pairs, "
        f"{r['threads']} threads, {r['rounds']} alternating rounds (medians; peak extra"
        " memory in a fresh process each)",
        f"{'full build / recompute':32} {'seconds':>9} {'rounds':>6} {'peer/engine':>11}"
        f" {'peak extra MB':>13}",
        f"{'scoresvc engine':32} {build['seconds']:9.3f} {build['rounds']:6d} {1.0:10.2f}x"
        f" {_megabytes(build['extra_bytes']):>13}  ({_phases(build)})",
    ]
    for name, peer in r["peers"].items():
        per_round = peer.get("engine_over_peer")
        lines.append(
            f"{'peer: ' + name:32} {peer['seconds']:9.3f} {peer['rounds']:6d}"
            f" {peer['seconds'] / build['seconds']:10.2f}x {_megabytes(peer['extra_bytes']):>13}"
            f"  (max rel diff {peer['worst_relative_difference']:.1e}"
            + (
                f"; engine/peer per round {min(per_round):.2f}-{max(per_round):.2f}"
                if per_round and len(per_round) > 1
                else ""
            )
            + ")"
        )
        if peer["phases"]:
            lines.append(f"{'':32} {_phases(peer)}")
    ok = lambda got, want: "ok" if got >= want else "MISS"  # noqa: E731
    lines.append(f"{'job':44} {'seconds':>9} {'ratio':>9} {'target':>8}")
    lines.append(
        f"{'(a) full build, scoresvc':44} {r['build_seconds']:9.3f} "
        f"{r['build_ratio']:8.1f}x {'>=2x':>8} {ok(r['build_ratio'], TARGETS['build'])}"
    )
    lines.append(
        f"{'(b) refresh after new events, scoresvc':44} {r['refresh_seconds']:9.4f} "
        f"{r['refresh_ratio']:8.1f}x {'>=10x':>8} {ok(r['refresh_ratio'], TARGETS['refresh'])}"
    )
    lines.append(
        f"{'    refresh after time moved (full, warm)':44} {r['time_moved_refresh_seconds']:9.3f}"
    )
    bpp = r["bytes_per_pair"]
    lines.append(
        f"{'(c) resident bytes per distinct pair':44} {bpp:9.1f} {'':>9} {'<=95.7':>8} "
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
    parser.add_argument("--peers", default="polars,duckdb,numpy")
    parser.add_argument(
        "--rounds", type=int, default=5, help="alternating rounds of the engine's build and peers"
    )
    parser.add_argument(
        "--alternate", default="polars", help="peers timed every round (the rest: the first)"
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument(
        "--no-memory", action="store_true", help="skip the peak memory runs (fresh processes)"
    )
    parser.add_argument("--memory-of", help=argparse.SUPPRESS)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    if args.memory_of:
        setup = (int(args.events), int(args.users), int(args.new_events), args.seed, args.threads)
        extra = _memory_of(args.memory_of, *setup)
        print(json.dumps({"extra_bytes": extra}))
        return {"extra_bytes": extra}
    peers = [p for p in args.peers.split(",") if p]
    result = run(
        int(args.events),
        int(args.users),
        int(args.new_events),
        peers,
        args.threads,
        args.seed,
        max(args.rounds, 1),
        frozenset(p for p in args.alternate.split(",") if p),
        not args.no_memory,
    )
    print(table(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2, default=float))
    return result


if __name__ == "__main__":
    main()
