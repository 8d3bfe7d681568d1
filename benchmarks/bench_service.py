"""Load harness: the server in one process, an asyncio client in another, on loopback.

    python benchmarks/bench_service.py                    # 1M users, 10M events loaded
    python benchmarks/bench_service.py --users 1e5 --events 1e6 --seconds 5

Each figure sits beside the same harness against a trivial servicer (constant
answers, same grpcio settings) measured in the same run: the ceiling grpcio sets on
this machine. Targets: Score >= 80% of the trivial QPS with p99 <= 2x its p99;
columnar ingest >= 2M interactions/s; row ingest >= 300k/s.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import statistics
import sys
import time
from pathlib import Path

import grpc
import numpy as np

from scoresvc.v1 import score_service_pb2 as pb
from scoresvc.v1 import score_service_pb2_grpc as pb_grpc

TARGETS = {"score_qps_ratio": 0.8, "score_p99_ratio": 2.0, "columns": 2e6, "rows": 3e5}


class TrivialServicer(pb_grpc.ScoreServiceServicer):
    """Constant answers: what grpcio alone costs per call here."""

    def Score(self, request, context):  # type: ignore[no-untyped-def]
        return pb.ScoreResponse(user_id=request.user_id, score=50.0, influence=1.0)

    def BatchScore(self, request, context):  # type: ignore[no-untyped-def]
        return pb.BatchScoreResponse(
            entries=[
                pb.BatchScoreEntry(user_id=u, found=True, score=50.0) for u in request.user_ids
            ]
        )

    def RecordInteractions(self, request, context):  # type: ignore[no-untyped-def]
        n = len(request.interactions) or len(request.columns.kind)
        return pb.RecordInteractionsResponse(accepted=n, sequence=1)


def _serve(kind: str, users: int, events: int, ready: mp.Queue) -> None:  # type: ignore[type-arg]
    from concurrent import futures

    from scoresvc.core.engine import Engine
    from scoresvc.service.server import ServerSettings, build_server
    from scoresvc.synthetic import community

    settings = ServerSettings()
    if kind == "trivial":
        server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=settings.workers),
            options=[("grpc.max_receive_message_length", settings.max_receive_message_bytes)],
        )
        pb_grpc.add_ScoreServiceServicer_to_server(TrivialServicer(), server)
        port = server.add_insecure_port("127.0.0.1:0")
        server.start()
        ready.put(port)
        server.wait_for_termination()
        return
    engine = Engine()
    log = community(events, users, seed=1, end=time.time())
    engine.load_events(log)
    real = build_server("127.0.0.1:0", engine, settings)
    real.start()
    ready.put(real.port)
    real.wait()


def _start(kind: str, users: int, events: int) -> tuple[mp.Process, str]:
    ctx = mp.get_context("spawn")
    ready: mp.Queue = ctx.Queue()  # type: ignore[type-arg]
    proc = ctx.Process(target=_serve, args=(kind, users, events, ready), daemon=True)
    proc.start()
    port = ready.get(timeout=600)
    return proc, f"127.0.0.1:{port}"


async def _load(call, make, seconds: float, concurrency: int) -> tuple[list[float], int]:  # type: ignore[no-untyped-def]
    """``concurrency`` workers calling back to back for ``seconds``; latencies in s."""
    latencies: list[float] = []
    deadline = time.perf_counter() + seconds
    count = 0

    async def worker(w: int) -> None:
        nonlocal count
        i = w
        while time.perf_counter() < deadline:
            request = make(i)
            started = time.perf_counter()
            await call(request)
            latencies.append(time.perf_counter() - started)
            count += 1
            i += concurrency

    await asyncio.gather(*(worker(w) for w in range(concurrency)))
    return latencies, count


def _percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


async def _measure(address: str, users: int, seconds: float, concurrency: int) -> dict:
    rng = np.random.default_rng(0)
    names = sorted({f"user{i:07d}" for i in rng.integers(0, users, 100_000)})
    out: dict[str, float] = {}
    async with grpc.aio.insecure_channel(
        address, options=[("grpc.max_send_message_length", 64 * 1024 * 1024)]
    ) as channel:
        stub = pb_grpc.ScoreServiceStub(channel)
        await stub.Score(pb.ScoreRequest(user_id=names[0]))  # warm the channel
        await _load(
            stub.Score, lambda i: pb.ScoreRequest(user_id=names[i % len(names)]), 1.0, concurrency
        )
        lat, n = await _load(
            stub.Score,
            lambda i: pb.ScoreRequest(user_id=names[i % len(names)]),
            seconds,
            concurrency,
        )
        out.update(
            score_qps=n / seconds,
            score_p50_ms=1e3 * _percentile(lat, 50),
            score_p99_ms=1e3 * _percentile(lat, 99),
        )

        batch = 1000
        lat, n = await _load(
            stub.BatchScore,
            lambda i: pb.BatchScoreRequest(user_ids=names[(i * batch) % 99_000 :][:batch]),
            seconds,
            max(concurrency // 8, 1),
        )
        out["batch_scores_per_second"] = n * batch / seconds

        now = time.time()
        row_batch = 1000
        m = len(names)
        rows_pool = [
            [
                pb.Interaction(
                    actor_id=names[(j * 7 + k) % m],
                    target_id=names[(j * 7 + k + 1 + (j + k) % (m - 1)) % m],
                    kind=1 + (k % 4),
                )
                for k in range(row_batch)
            ]
            for j in range(20)
        ]
        for rows in rows_pool:
            for m in rows:
                m.event_time.FromSeconds(int(now))
        lat, n = await _load(
            stub.RecordInteractions,
            lambda i: pb.RecordInteractionsRequest(interactions=rows_pool[i % len(rows_pool)]),
            seconds,
            4,
        )
        out["row_ingest_per_second"] = n * row_batch / seconds

        col_batch = 200_000
        pool = sorted(set(names))
        columns = pb.InteractionColumns(
            user_ids=pool,
            actor_index=rng.integers(0, len(pool), col_batch).astype("<u4").tobytes(),
            target_index=((rng.integers(1, len(pool), col_batch)) % len(pool))
            .astype("<u4")
            .tobytes(),
            kind=rng.integers(1, 5, col_batch).astype(np.uint8).tobytes(),
            event_time_seconds=np.full(col_batch, now - 1.0).astype("<f8").tobytes(),
        )
        actor = np.frombuffer(columns.actor_index, "<u4")
        target = np.frombuffer(columns.target_index, "<u4")
        fixed = target.copy()
        fixed[actor == target] = (fixed[actor == target] + 1) % len(pool)
        columns.target_index = fixed.astype("<u4").tobytes()
        request = pb.RecordInteractionsRequest(columns=columns)
        lat, n = await _load(stub.RecordInteractions, lambda i: request, seconds, 2)
        out["column_ingest_per_second"] = n * col_batch / seconds
    return out


def run(users: int, events: int, seconds: float, concurrency: int, rounds: int) -> dict:
    """Both servers up at once, measured in alternating rounds; medians reported, so
    drift in this shared machine's speed does not masquerade as a ratio."""
    servers = {kind: _start(kind, users, events) for kind in ("trivial", "scoresvc")}
    samples: dict[str, list[dict]] = {kind: [] for kind in servers}
    try:
        for _ in range(rounds):
            for kind, (_, address) in servers.items():
                samples[kind].append(asyncio.run(_measure(address, users, seconds, concurrency)))
    finally:
        for proc, _ in servers.values():
            proc.terminate()
            proc.join(10)
    results: dict[str, dict] = {
        kind: {key: statistics.median(s[key] for s in runs) for key in runs[0]}
        for kind, runs in samples.items()
    }
    real, trivial = results["scoresvc"], results["trivial"]
    results["ratios"] = {
        "score_qps": real["score_qps"] / trivial["score_qps"],
        "score_p99": real["score_p99_ms"] / trivial["score_p99_ms"],
        "batch": real["batch_scores_per_second"] / trivial["batch_scores_per_second"],
        "rows": real["row_ingest_per_second"] / trivial["row_ingest_per_second"],
        "columns": real["column_ingest_per_second"] / trivial["column_ingest_per_second"],
    }
    results["setup"] = {
        "users": users,
        "events": events,
        "seconds": seconds,
        "concurrency": concurrency,
        "rounds": rounds,
    }
    return results


def table(r: dict) -> str:
    real, trivial, ratio = r["scoresvc"], r["trivial"], r["ratios"]
    ok = lambda good: "ok" if good else "MISS"  # noqa: E731
    rows = [
        f"{r['setup']['users']:,} users loaded, {r['setup']['concurrency']} in flight, "
        f"median of {r['setup']['rounds']} alternating rounds",
        f"{'measure':34} {'scoresvc':>12} {'trivial':>12} {'ratio':>7}  target",
        f"{'Score QPS':34} {real['score_qps']:12,.0f} {trivial['score_qps']:12,.0f} "
        f"{ratio['score_qps']:7.2f}  >=0.80 {ok(ratio['score_qps'] >= TARGETS['score_qps_ratio'])}",
        f"{'Score p50 ms':34} {real['score_p50_ms']:12.2f} {trivial['score_p50_ms']:12.2f}",
        f"{'Score p99 ms':34} {real['score_p99_ms']:12.2f} {trivial['score_p99_ms']:12.2f} "
        f"{ratio['score_p99']:7.2f}  <=2.0 {ok(ratio['score_p99'] <= TARGETS['score_p99_ratio'])}",
        f"{'BatchScore scores/s':34} {real['batch_scores_per_second']:12,.0f} "
        f"{trivial['batch_scores_per_second']:12,.0f} {ratio['batch']:7.2f}",
        f"{'RecordInteractions rows/s':34} {real['row_ingest_per_second']:12,.0f} "
        f"{trivial['row_ingest_per_second']:12,.0f} {ratio['rows']:7.2f}  >=300k "
        f"{ok(real['row_ingest_per_second'] >= TARGETS['rows'])}",
        f"{'RecordInteractions columnar/s':34} {real['column_ingest_per_second']:12,.0f} "
        f"{trivial['column_ingest_per_second']:12,.0f} {ratio['columns']:7.2f}  >=2M "
        f"{ok(real['column_ingest_per_second'] >= TARGETS['columns'])}",
    ]
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=float, default=1_000_000)
    parser.add_argument("--events", type=float, default=10_000_000)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    result = run(int(args.users), int(args.events), args.seconds, args.concurrency, args.rounds)
    print(table(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).parent))
    main()
