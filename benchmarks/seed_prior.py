"""How much of the teleport vector the seeds get (``ModelParams.seed_prior_share``):
the measurement behind its default (docs/model.md, "Choices and reasons").

On a synthetic community with seed accounts, for each share: how far one seed's
endorsement lifts a median user, and how far fresh accounts endorsing a median user
(with ``--replies``, the target replying to each) lift it. Percentiles are among the
honest users, the median over the targets; the attack is refreshed an hour after it.

    python benchmarks/seed_prior.py --users 50000 --events 1000000
"""

from __future__ import annotations

import argparse
import math
import statistics
import time

import numpy as np

from scoresvc.core.engine import Engine
from scoresvc.core.model import AccountStatus, InteractionKind, ModelParams
from scoresvc.synthetic import community, early_hubs

END = 1_767_225_600.0
HOUR = 3600.0


def _honest_percentile(snap, honest: np.ndarray, user: str) -> float:
    influence = snap.influence
    value = influence[snap.user_index[user]]
    return 100.0 * float((influence[honest] < value).mean())


def _build(log, seeds: list[str], share: float) -> Engine:
    engine = Engine(ModelParams(seed_prior_share=share))
    engine.load_events(log)
    for uid in seeds:
        engine.set_status(uid, AccountStatus.SEED, now=END)
    return engine


def _seed_endorses(engine: Engine, seeds: list[str], targets: list[str]) -> None:
    for seed, target in zip(seeds, targets):
        engine.endorse(seed, target, "", END, now=END)


def _fresh_farm(engine: Engine, targets: list[str], size: int, replies: bool) -> None:
    for t, target in enumerate(targets):
        for i in range(size):
            sybil = f"sybil-{t}-{i}"
            engine.endorse(sybil, target, "", END, now=END)
            if replies:
                rows = [(target, sybil, InteractionKind.REPLY, END)]
                engine.record_interactions(rows, now=END)


def main(argv: list[str] | None = None) -> dict[str, dict[str, float]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=50_000)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--seeds", type=int, default=40)
    parser.add_argument("--targets", type=int, default=5)
    parser.add_argument("--shares", type=float, nargs="+", default=[0.25, 0.5, 0.75, 1.0])
    parser.add_argument("--farms", type=int, nargs="+", default=[10, 100])
    parser.add_argument("--replies", action="store_true", help="the target replies to each")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    log = community(args.events, args.users, seed=1, end=END)
    assert log.user_ids is not None
    seeds = early_hubs(log, args.seeds)
    base = _build(log, seeds, 0.5).refresh(END + HOUR)
    honest = np.ones(base.n_users, bool)
    order = np.argsort(base.influence)
    middle = order[len(order) // 2 - args.targets // 2 :][: args.targets * 3]
    targets = [base.user_ids[u] for u in middle if base.user_ids[u] not in seeds][: args.targets]
    results: dict[str, dict[str, float]] = {}
    print(f"{log.n_users:,} users, {args.seeds} seeds, {len(targets)} median targets")
    print(
        f"{'share':>6} {'base':>6} {'1 seed':>7}"
        + "".join(f" {f'{n} fresh':>9}" for n in args.farms)
    )
    for share in [None, *args.shares]:
        chosen = [] if share is None else seeds
        row: dict[str, float] = {}
        engine = _build(log, chosen, share or 0.0)
        before = engine.refresh(END + HOUR)
        row["base"] = statistics.median(_honest_percentile(before, honest, t) for t in targets)
        row["one_seed"] = math.nan
        if chosen:
            _seed_endorses(engine, seeds[-len(targets) :], targets)
            snap = engine.refresh(END + HOUR)
            row["one_seed"] = statistics.median(
                _honest_percentile(snap, honest, t) for t in targets
            )
        for size in args.farms:
            engine = _build(log, chosen, share or 0.0)
            _fresh_farm(engine, targets, size, args.replies)
            snap = engine.refresh(END + HOUR)
            mask = np.zeros(snap.n_users, bool)
            mask[: base.n_users] = True
            row[f"fresh_{size}"] = statistics.median(
                _honest_percentile(snap, mask, t) for t in targets
            )
        label = "none" if share is None else f"{share:g}"
        results[label] = row
        print(
            f"{label:>6} {row['base']:>6.1f} {row['one_seed']:>7.1f}"
            + "".join(f" {row[f'fresh_{n}']:>9.1f}" for n in args.farms)
        )
    print(f"({time.perf_counter() - started:.0f} s)")
    return results


if __name__ == "__main__":
    main()
