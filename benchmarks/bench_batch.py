"""The batch engine on a local Dask cluster beside the in-process engine, in one run.

    python benchmarks/bench_batch.py                       # 10M events, 1M users, 2 workers
    python benchmarks/bench_batch.py --events 1e6 --users 1e5

Both compute the snapshot of the same archive (a community exported as Parquet) at the
same time: the in-process engine imports it and refreshes; the batch engine reads it on
--workers local worker processes. Reports seconds, their ratio and the largest relative
difference in influence (the engine's solver stops at 1e-8 relative per user).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from scoresvc.batch import recompute as batch
from scoresvc.core.engine import Engine
from scoresvc.storage import archive
from scoresvc.synthetic import community


def run(users: int, events: int, workers: int) -> dict:
    from distributed import Client, LocalCluster

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

        cluster = LocalCluster(
            n_workers=workers, threads_per_worker=1, dashboard_address=":0", processes=True
        )
        with Client(cluster) as client:
            started = time.perf_counter()
            result = batch.run(client, Path(tmp) / "archive", as_of)
            distributed_seconds = time.perf_counter() - started
        cluster.close()
    got = result.columns["influence"]
    expected = np.array([want[u] for u in result.user_ids.tolist()])
    difference = np.abs(got - expected) / np.maximum(np.abs(expected), 1e-300)
    return {
        "setup": {"users": users, "events": events, "workers": workers},
        "in_process_seconds": in_process,
        "batch_seconds": distributed_seconds,
        "ratio": distributed_seconds / in_process,
        "iterations": result.iterations,
        "worst_relative_difference": float(difference[expected > 0].max(initial=0.0)),
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=float, default=1_000_000)
    parser.add_argument("--events", type=float, default=10_000_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    r = run(int(args.users), int(args.events), args.workers)
    s = r["setup"]
    print(
        f"{s['events']:,} events, {s['users']:,} users, {s['workers']} local workers\n"
        f"in-process engine (import + refresh) {r['in_process_seconds']:8.2f} s\n"
        f"batch on Dask                        {r['batch_seconds']:8.2f} s"
        f"  ({r['ratio']:.2f}x; {r['iterations']} power iterations)\n"
        f"worst relative difference in influence {r['worst_relative_difference']:.1e}"
    )
    if args.json:
        args.json.write_text(json.dumps(r, indent=2))
    return r


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
