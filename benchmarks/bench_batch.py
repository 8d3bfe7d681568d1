"""The batch engine on a local Dask cluster beside the in-process engine, in one run.

    python benchmarks/bench_batch.py                       # 10M events, 1M users, 2 workers
    python benchmarks/bench_batch.py --events 1e6 --users 1e5

All three compute the snapshot of the same archive (a community exported as Parquet) at
the same time: the in-process engine imports it and refreshes; the batch engine reads it
on --workers local worker processes; the Polars + scipy peer (``polars_peer``) reads it
on this machine with the archive reader and computes the model in one process. Reports
seconds, ratios and the largest relative difference in influence from the engine's (its
solver stops at 1e-8 relative per user), and where the batch's time goes: wall time per
phase of the job, and the workers' time per task kind (compute and transfers, from
Dask's task stream).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from polars_peer import polars_scipy

from scoresvc.batch import recompute as batch
from scoresvc.core.engine import Engine
from scoresvc.core.events import EventLog
from scoresvc.core.model import ModelParams
from scoresvc.storage import archive
from scoresvc.synthetic import community


def _one_log(directory: Path) -> EventLog:
    """The archive as one event log, read with the archive reader (chunks, each naming
    its own users, merged on sorted user ids)."""
    chunks = list(archive.read(directory))
    names = np.unique(np.concatenate([np.asarray(c.user_ids, dtype=str) for c in chunks]))
    topics = np.unique(np.concatenate([np.asarray(c.topics, dtype=str) for c in chunks]))

    def dense(chunk: EventLog, column: np.ndarray) -> np.ndarray:
        return np.searchsorted(names, np.asarray(chunk.user_ids, dtype=str))[column]

    status = np.zeros(len(names), np.uint8)
    first_seen = np.full(len(names), np.inf)
    columns: dict[str, list[np.ndarray]] = {}
    for c in chunks:
        if not (c.n_interactions or c.n_endorsement_events):  # accounts
            at = dense(c, np.arange(c.n_users))
            status[at] = np.asarray(c.status)
            if c.first_seen is not None:
                first_seen[at] = c.first_seen
        spelled = np.searchsorted(topics, np.asarray(c.topics, dtype=str))
        weight = np.ones(c.n_interactions) if c.weight is None else c.weight
        for name, values in (
            ("actor", dense(c, c.actor)),
            ("target", dense(c, c.target)),
            ("kind", c.kind),
            ("ts", c.ts),
            ("weight", weight),
            ("endorser", dense(c, c.endorser)),
            ("endorsee", dense(c, c.endorsee)),
            ("topic", spelled[c.topic] if len(c.topic) else c.topic),
            ("endorse_ts", c.endorse_ts),
            ("retracted", c.retracted),
        ):
            columns.setdefault(name, []).append(values)
    return EventLog(
        n_users=len(names),
        **{name: np.concatenate(parts) for name, parts in columns.items()},
        status=status,
        first_seen=first_seen,
        user_ids=names.tolist(),
        topics=topics.tolist(),
    )


def _peer(directory: Path, as_of: float) -> tuple[list[str], np.ndarray, dict[str, float]]:
    """The Polars + scipy peer on the archive: user ids, influence, seconds by phase."""
    started = time.perf_counter()
    log = _one_log(directory)
    read = time.perf_counter() - started
    result = polars_scipy(log, as_of, ModelParams())
    assert log.user_ids is not None
    return log.user_ids, result.influence, {"read archive": read, **result.phases}


class _Phases:
    """Wall time of the batch job's phases, from its progress messages."""

    MARKS = (("users", "dictionaries"), ("graph built", "pair sums to pull graph"))
    MARKS += (("credibility after", "PageRank iterations"),)

    def __init__(self) -> None:
        self.last = time.perf_counter()
        self.seconds: dict[str, float] = {}

    def __call__(self, message: str) -> None:
        for mark, phase in self.MARKS:
            if mark in message:
                now = time.perf_counter()
                self.seconds[phase] = now - self.last
                self.last = now

    def finish(self) -> None:
        self.seconds["scores and explanation"] = time.perf_counter() - self.last


def _worker_time(stream: list[dict]) -> dict[str, dict[str, float]]:
    """Seconds the workers spent per task kind, by action (compute, transfer, ...)."""
    from dask.utils import key_split

    out: dict[str, dict[str, float]] = {}
    for task in stream:
        kind = out.setdefault(key_split(task["key"]), {})
        for span in task.get("startstops", ()):
            action = span["action"]
            kind[action] = kind.get(action, 0.0) + span["stop"] - span["start"]
    return out


def _worst(got: np.ndarray, expected: np.ndarray) -> float:
    difference = np.abs(got - expected) / np.maximum(np.abs(expected), 1e-300)
    return float(difference[expected > 0].max(initial=0.0))


def run(users: int, events: int, workers: int) -> dict:
    from distributed import Client, LocalCluster, get_task_stream

    now = time.time()
    source = Engine()
    source.load_events(community(events, users, seed=1, end=now))
    with tempfile.TemporaryDirectory(prefix="scoresvc-batch-") as tmp:
        manifest = archive.export(source, Path(tmp) / "archive")
        del source
        as_of = manifest["compacted_at"]

        started = time.perf_counter()
        engine = Engine()
        archive.import_into(engine, Path(tmp) / "archive")
        snap = engine.refresh(as_of)
        in_process = time.perf_counter() - started
        want = dict(zip(snap.user_ids, snap.influence))
        del engine

        started = time.perf_counter()
        peer_ids, peer_influence, peer_phases = _peer(Path(tmp) / "archive", as_of)
        peer_seconds = time.perf_counter() - started

        cluster = LocalCluster(
            n_workers=workers, threads_per_worker=1, dashboard_address=":0", processes=True
        )
        with Client(cluster) as client:
            phases = _Phases()
            with get_task_stream(client) as stream:
                started = time.perf_counter()
                result = batch.run(client, Path(tmp) / "archive", as_of, progress=phases)
                distributed_seconds = time.perf_counter() - started
                phases.finish()
        cluster.close()
    got = result.columns["influence"]
    expected = np.array([want[u] for u in result.user_ids.tolist()])
    return {
        "setup": {"users": users, "events": events, "workers": workers},
        "in_process_seconds": in_process,
        "batch_seconds": distributed_seconds,
        "peer_seconds": peer_seconds,
        "ratio": distributed_seconds / in_process,
        "batch_over_peer": distributed_seconds / peer_seconds,
        "iterations": result.iterations,
        "worst_relative_difference": _worst(got, expected),
        "peer_worst_relative_difference": _worst(
            peer_influence, np.array([want[u] for u in peer_ids])
        ),
        "batch_phases": phases.seconds,
        "batch_worker_seconds": _worker_time(stream.data),
        "peer_phases": peer_phases,
    }


def table(r: dict) -> str:
    s = r["setup"]
    lines = [
        f"{s['events']:,} events, {s['users']:,} users, {s['workers']} local workers",
        f"in-process engine (import + refresh) {r['in_process_seconds']:8.2f} s",
        f"Polars + scipy peer (read + compute) {r['peer_seconds']:8.2f} s  ("
        + ", ".join(f"{k} {v:.2f}" for k, v in r["peer_phases"].items())
        + ")",
        f"batch on Dask                        {r['batch_seconds']:8.2f} s"
        f"  ({r['ratio']:.2f}x the engine, {r['batch_over_peer']:.2f}x the peer;"
        f" {r['iterations']} power iterations)",
        "  wall time by phase: " + ", ".join(f"{k} {v:.2f}" for k, v in r["batch_phases"].items()),
        f"  worker time by task (of {s['workers']} x {r['batch_seconds']:.2f} s):",
    ]
    by_task = sorted(r["batch_worker_seconds"].items(), key=lambda kv: -sum(kv[1].values()))
    for task, actions in by_task:
        spent = ", ".join(f"{a} {v:.2f}" for a, v in sorted(actions.items()))
        lines.append(f"    {task:32} {spent}")
    lines.append(
        f"worst relative difference in influence: batch {r['worst_relative_difference']:.1e},"
        f" peer {r['peer_worst_relative_difference']:.1e}"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=float, default=1_000_000)
    parser.add_argument("--events", type=float, default=10_000_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    r = run(int(args.users), int(args.events), args.workers)
    print(table(r))
    if args.json:
        args.json.write_text(json.dumps(r, indent=2))
    return r


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
