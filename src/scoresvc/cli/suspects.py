"""``scoresvc suspects``: the suspect report, from a data directory (read-only) or a
running server, as a table or JSON."""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path
from typing import Any

from ..core.suspects import SuspectKind, SuspectReport, report_of
from ..storage.store import DB_NAME, Store
from . import flags
from .errors import Failed, UsageError

#: --kind's values: the kinds' names in lower case with dashes.
KINDS = tuple(k.name.lower().replace("_", "-") for k in SuspectKind)
_DAY = 86_400.0


def suspects(args: argparse.Namespace) -> int:
    """Print the report: computed here from ``--data-dir``, or asked of ``--address``."""
    if bool(args.data_dir) == bool(args.address):
        raise UsageError("give --data-dir or --address (one of them)")
    kind = SuspectKind[args.kind.upper().replace("-", "_")] if args.kind else None
    report = _offline(args) if args.data_dir else _online(args, kind)
    found = report.of_kind(kind)
    print(_as_json(report, found) if args.json else _table(report, found))
    return 0


def _offline(args: argparse.Namespace) -> SuspectReport:
    if not (Path(args.data_dir) / DB_NAME).exists():
        raise Failed(f"--data-dir {args.data_dir}: no scoresvc data directory there")
    engine = flags.engine(args)
    with Store(args.data_dir, read_only=True) as store:
        store.load_into(engine)
    engine.refresh(time.time())
    p = engine.params
    return report_of(engine, p.maturity_age_seconds, p.damping)


def _online(args: argparse.Namespace, kind: SuspectKind | None) -> SuspectReport:
    return flags.calling(args, lambda c: c.list_suspects(kind), "admin")


def _as_json(report: SuspectReport, found: tuple[Any, ...]) -> str:
    def entry(s: Any) -> dict[str, Any]:
        return {**dataclasses.asdict(s), "kind": s.kind.name.lower().replace("_", "-")}

    return json.dumps(
        {
            "sequence": report.sequence,
            "compute_time": report.compute_time,
            "computation_seconds": report.seconds,
            "suspects": [entry(s) for s in found],
        },
        indent=2,
    )


def _table(report: SuspectReport, found: tuple[Any, ...]) -> str:
    when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(report.compute_time))
    lines = [
        f"{len(found)} suspect clusters at write {report.sequence} ({when},"
        f" computed in {report.seconds:.2f} s); shares of what the beneficiaries receive",
        f"{'kind':19} {'score':>5} {'members':>7} {'benefits':>24} {'volume':>6} "
        f"{'cred':>5} {'young':>5} {'outside':>7} {'recip in/out':>12} {'age d':>6} "
        f"{'span h':>7} {'burst':>5} {'trades':>6}"
        # A served report names its clusters for scoresvc moderate --cluster-id.
        + (" cluster" if any(s.cluster_id for s in found) else ""),
    ]
    for s in found:
        e = s.evidence
        benefits = ",".join(s.beneficiary_ids[:2]) + ("..." if len(s.beneficiary_ids) > 2 else "")
        lines.append(
            f"{s.kind.name.lower().replace('_', '-'):19} {s.score:5.2f} {len(s.member_ids):7d} "
            f"{benefits[:24]:>24} {e.volume_from_cluster:6.2f} "
            f"{e.credibility_from_cluster:5.2f} {e.credibility_from_young:5.2f} "
            f"{e.trust_from_outside:7.2f} "
            f"{e.reciprocity_inside:5.2f} / {e.reciprocity_outside:4.2f} "
            f"{e.median_age_seconds / _DAY:6.1f} {e.first_seen_span_seconds / 3600:7.1f} "
            f"{e.burst_endorsements:5d} {e.cross_kind_trades:6d} {s.cluster_id}".rstrip()
        )
    return "\n".join(lines)
