"""The suspect report, measured: planted attacks found, honest users flagged.

    python benchmarks/bench_suspects.py                          # 50k users, 500k events
    python benchmarks/bench_suspects.py --users 5000 --events 50000 --instances 2
    python benchmarks/bench_suspects.py --bitcoin-alpha PATH/bitcoin-alpha
    python benchmarks/bench_suspects.py --moderation             # and invalidate each cluster

Builds the synthetic community of ``bench_gaming.py`` (no seeds), plants the attack
suite's fresh and aged farms, closed rings and trading circles (its own builders, each
aimed at its own median target, ``--instances`` of each), refreshes, and reads the
report (``scoresvc.core.suspects.detect``): the share of planted clusters found (a
reported cluster covers at least half the accounts the attack names: the accounts it
created, the honest accounts that took part, the target), the share of honest users
flagged (named by any cluster, as member or beneficiary), and what the report costs.
On Bitcoin Alpha (positive ratings as endorsements, as ``bench_realworld.py`` loads
them): the share of flagged labelled users labelled fraudulent, against the base rate.

With ``--moderation``, every reported cluster is then invalidated (its members and
beneficiaries, as ``InvalidateBetween`` with its ``cluster_id`` does) and each planted
attack's beneficiaries (the target; a ring's own accounts) are read three times, as
median percentiles among the community's users: in a community that never saw the
attack (the attackers' accounts there, as old, having done nothing), attacked, and
after the invalidations.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from bench_gaming import (
    NOW,
    Base,
    Community,
    Moves,
    Picker,
    farm,
    ring,
    star,
    sybils_endorse,
    trade,
)
from bench_realworld import Network

from scoresvc.core.engine import Engine
from scoresvc.core.model import AccountStatus, ModelParams
from scoresvc.core.suspects import SuspectReport, SuspectSettings, report_of

#: What is planted: (name, builder, the kind the report should call it).
PLANTED = (
    ("fresh-farm-10", sybils_endorse(10), "SYBIL_FARM_FRESH"),
    ("fresh-star-10", star(10), "SYBIL_FARM_FRESH"),
    ("fresh-farm-100", sybils_endorse(100), "SYBIL_FARM_FRESH"),
    ("backdated-farm-100", farm(100, 60.0, False, seed=100), "SYBIL_FARM_FRESH"),
    ("aged-farm-10", farm(10, 60.0, True, seed=10), "SYBIL_FARM_AGED"),
    ("aged-farm-100", farm(100, 60.0, True, seed=100), "SYBIL_FARM_AGED"),
    ("ring-20", ring(20, False), "CLOSED_RING"),
    ("ring-50", ring(50, False), "CLOSED_RING"),
    ("trade-10-cross", trade(10, True), "TRADING_CIRCLE"),
    ("trade-10", trade(10, False), "TRADING_CIRCLE"),
)


def _report(engine: Engine, params: ModelParams) -> SuspectReport:
    return report_of(engine, params.maturity_age_seconds, params.damping, SuspectSettings())


def _flagged(report: SuspectReport) -> set[str]:
    return {u for s in report.suspects for u in (*s.member_ids, *s.beneficiary_ids)}


#: Attacks whose beneficiaries are their own accounts (no target).
_OWN_BENEFIT = ("CLOSED_RING",)

Planted = tuple[str, str, set[str], list[str]]


def plant(c: Community, instances: int, seed: int) -> list[Planted]:
    """Every planted attack in one copy of the community; returns (name, expected
    kind, accounts named, the users it benefits) per instance, and leaves the engine
    in ``c.planted``."""
    engine = c.engine(c.bases[0].state)
    picker = Picker(c.pools, seed)
    combined = Moves("all", c.params.daily_endorsement_limit)
    planted = []
    targets = iter(c.targets)
    for name, build, kind in PLANTED:
        for i in range(instances):
            moves = Moves(f"{name}-{i}", c.params.daily_endorsement_limit)
            target = next(targets)
            build(moves, picker, target, i)
            named = {target, *moves.fresh}
            named |= {e[1] for e in moves.endorsements} | {e[2] for e in moves.endorsements}
            named |= {e[1] for e in moves.interactions} | {e[2] for e in moves.interactions}
            gains = list(moves.fresh) if kind in _OWN_BENEFIT else [target]
            planted.append((f"{name}-{i}", kind, named, gains))
            combined.interactions += moves.interactions
            combined.endorsements += moves.endorsements
            combined.fresh += moves.fresh
    combined.apply(engine)
    engine.refresh(NOW)
    c.planted = engine  # type: ignore[attr-defined]
    return planted


def synthetic(args: argparse.Namespace) -> dict[str, Any]:
    params = ModelParams()
    instances = args.instances
    c = Community(
        args.users, args.events, len(PLANTED) * instances, 1, args.seed, params, args.threads
    )
    clean = c.engine(c.bases[0].state)
    clean.refresh(NOW)
    clean_report = _report(clean, params)
    planted = plant(c, instances, args.seed + 1)
    started = time.perf_counter()
    report = _report(c.planted, params)  # type: ignore[attr-defined]
    seconds = time.perf_counter() - started
    named = set().union(*(p[2] for p in planted))
    honest = set(c.ids) - named
    flagged = _flagged(report)
    found: dict[str, dict[str, Any]] = {}
    for name, kind, accounts, _ in planted:
        best = max(
            report.suspects,
            key=lambda s: len(accounts & {*s.member_ids, *s.beneficiary_ids}),
            default=None,
        )
        covered = 0 if best is None else len(accounts & {*best.member_ids, *best.beneficiary_ids})
        hit = covered >= len(accounts) / 2
        found[name] = {
            "found": hit,
            "kind": kind,
            "reported_kind": best.kind.name if hit and best else None,
            "covered": covered / len(accounts),
        }
    by_kind: dict[str, list[bool]] = {}
    for r in found.values():
        by_kind.setdefault(r["kind"], []).append(r["found"])
    moderation = invalidated(c, report, planted) if args.moderation else None
    return {
        "moderation": moderation,
        "users": args.users,
        "events": args.events,
        "planted": len(planted),
        "recall": float(np.mean([r["found"] for r in found.values()])),
        "recall_by_kind": {k: float(np.mean(v)) for k, v in by_kind.items()},
        "kind_right": float(
            np.mean([r["reported_kind"] == r["kind"] for r in found.values() if r["found"]] or [0])
        ),
        "honest_flagged_share": len(flagged & honest) / len(honest),
        "clean_flagged_share": len(_flagged(clean_report)) / len(c.ids),
        "clusters": len(report.suspects),
        "clean_clusters": len(clean_report.suspects),
        "report_seconds": seconds,
        "clean_report_seconds": clean_report.seconds,
        "attacks": found,
    }


def invalidated(c: Community, report: SuspectReport, planted: list[Planted]) -> dict[str, Any]:
    """Invalidate every reported cluster in the attacked community and read each
    attack's beneficiaries never attacked, attacked and after (median percentiles)."""
    attacked: Engine = c.planted  # type: ignore[attr-defined]
    snap, arrays = attacked.evidence_arrays()
    # The community that never saw the attacks: their accounts exist, as old, idle.
    witness = c.engine(c.bases[0].state)
    fresh = {u for *_, gains in planted for u in gains} | {
        u for _, _, named, _ in planted for u in named
    }
    for u in sorted(fresh - set(c.ids)):
        first_seen = float(arrays["first_seen"][snap.user_index[u]])
        witness.set_status(u, AccountStatus.NORMAL, now=first_seen)
    sides = {"before": _base(c, witness), "attacked": _base(c, attacked)}
    started = time.perf_counter()
    skipped = 0
    for s in report.suspects:
        users = list(dict.fromkeys((*s.member_ids, *s.beneficiary_ids)))
        if len(users) > 1000:  # InvalidateBetween's limit
            skipped += 1
            continue
        attacked.invalidate_between(users, actor="bench", reason=s.kind.name, now=NOW)
    sides["after"] = _base(c, attacked)
    seconds = time.perf_counter() - started
    rows: dict[str, dict[str, list[float]]] = {}
    for name, _, _, gains in planted:
        row = rows.setdefault(name.rsplit("-", 1)[0], {side: [] for side in sides})
        for side, base in sides.items():
            row[side].append(float(np.median(base.percentile(gains))))
    return {
        "clusters_invalidated": len(report.suspects) - skipped,
        "clusters_skipped": skipped,
        "seconds": seconds,
        "attacks": {
            name: {
                **{side: float(np.median(v)) for side, v in row.items()},
                "largest_gap_after": float(
                    np.max(np.abs(np.subtract(row["after"], row["before"])))
                ),
                "instances": len(row["before"]),
            }
            for name, row in rows.items()
        },
    }


def _base(c: Community, engine: Engine) -> Base:
    """Percentiles among the community's users in ``engine`` refreshed now."""
    snap = engine.refresh(NOW)
    dense = np.array([snap.user_index[u] for u in c.ids])
    return Base("", None, snap, snap.influence[dense])  # type: ignore[arg-type]


def bitcoin_alpha(path: Path) -> dict[str, Any]:
    """Flagged users among the labelled, against the base rate of fraud."""
    net = Network.read(path, NOW)
    params = ModelParams()
    engine = Engine(params, threads=2)
    engine.load_events(net.event_log("endorsements"))
    engine.refresh(net.now)
    report = _report(engine, params)
    fraud = {net.ids[u] for u, ok in zip(net.labelled, net.benign) if not ok}
    labelled = {net.ids[u] for u in net.labelled}
    flagged = _flagged(report) & labelled
    members = {u for s in report.suspects for u in s.member_ids} & labelled
    return {
        "users": len(net.users),
        "clusters": len(report.suspects),
        "clusters_by_kind": _by_kind(report),
        "flagged_labelled": len(flagged),
        "flagged_fraud_share": len(flagged & fraud) / len(flagged) if flagged else None,
        "members_labelled": len(members),
        "members_fraud_share": len(members & fraud) / len(members) if members else None,
        "base_rate": len(fraud) / len(labelled),
        "report_seconds": report.seconds,
    }


def _by_kind(report: SuspectReport) -> dict[str, int]:
    counts: dict[str, int] = {}
    for s in report.suspects:
        counts[s.kind.name] = counts.get(s.kind.name, 0) + 1
    return counts


def table(result: dict[str, Any]) -> str:
    lines = []
    s = result.get("synthetic")
    if s:
        lines += [
            f"{s['users']:,} users, {s['events']:,} events, {s['planted']} planted clusters",
            f"recall {s['recall']:.1%} ("
            + ", ".join(f"{k} {v:.0%}" for k, v in s["recall_by_kind"].items())
            + f"), kind right {s['kind_right']:.0%}",
            f"honest users flagged {s['honest_flagged_share']:.2%}"
            f" ({s['clean_flagged_share']:.2%} of the community without attacks,"
            f" {s['clean_clusters']} clusters)",
            f"report: {s['report_seconds']:.2f} s with the attacks,"
            f" {s['clean_report_seconds']:.2f} s without",
        ]
        lines += [
            f"  {'MISSED ' if not r['found'] else ''}{n}: {r}"
            for n, r in s["attacks"].items()
            if not r["found"] or r["reported_kind"] != r["kind"]
        ]
    m = s and s.get("moderation")
    if m:
        lines.append(
            f"invalidated {m['clusters_invalidated']} clusters in {m['seconds']:.2f} s; "
            "beneficiaries' median percentile: never attacked / attacked / after"
        )
        lines += [
            f"  {name:20} {r['before']:6.1f} {r['attacked']:6.1f} {r['after']:6.1f}"
            f"  (largest gap after {r['largest_gap_after']:.2f})"
            for name, r in m["attacks"].items()
        ]
    b = result.get("bitcoin_alpha")
    if b:
        lines.append(
            f"Bitcoin Alpha: {b['clusters']} clusters {b['clusters_by_kind']}, "
            f"{b['flagged_labelled']} labelled users flagged, "
            f"fraudulent {b['flagged_fraud_share']} (members {b['members_fraud_share']}) "
            f"vs base rate {b['base_rate']:.3f}; {b['report_seconds']:.2f} s"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=lambda s: int(float(s)), default=50_000)
    parser.add_argument("--events", type=lambda s: int(float(s)), default=500_000)
    parser.add_argument("--instances", type=int, default=5, help="of each planted attack")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--bitcoin-alpha", type=Path, help="directory of network.csv, labels.csv")
    parser.add_argument("--no-synthetic", action="store_true")
    parser.add_argument(
        "--moderation",
        action="store_true",
        help="then invalidate every reported cluster and read the beneficiaries again",
    )
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    result: dict[str, Any] = {}
    if not args.no_synthetic:
        result["synthetic"] = synthetic(args)
    if args.bitcoin_alpha:
        result["bitcoin_alpha"] = bitcoin_alpha(args.bitcoin_alpha)
    print(table(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
