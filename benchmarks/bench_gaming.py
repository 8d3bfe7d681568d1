"""Attacks on the score, measured: what gamers gain and what it costs them.

    python benchmarks/bench_gaming.py                        # 50k users, 500k events
    python benchmarks/bench_gaming.py --users 2000 --events 20000 --only sybil
    python benchmarks/bench_gaming.py --compare-params '{"endorsement_weight": 2.0}'

Builds a synthetic community (``scoresvc.synthetic.community``) in the in-process
engine, once without seeds (the default deployment) and once with seed accounts, picks
median honest targets and applies each attack of docs/gaming.md to a copy of the built
state (``Engine.state`` / ``restore``: faster than rebuilding from the event log; both
are timed). For each attack and configuration: the median over the targets of their
percentile among honest users before and after, the median percentile of the accounts
the attacker created, and the cost per target in accounts and actions.

Every write goes through the engine's public API with explicit event and arrival times
(``now=``), so whatever the engine does with account age, decay or rate limits applies.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from ranking import share_strictly_below, spearman

from scoresvc.core.engine import Engine, EngineState
from scoresvc.core.errors import RateLimited
from scoresvc.core.model import SECONDS_PER_DAY, AccountStatus, InteractionKind, ModelParams
from scoresvc.synthetic import community

NOW = 1_767_225_600.0  # the community's last day ends here; attacks happen now
LIKE, MENTION, REPLY, RESHARE = (int(k) for k in InteractionKind)


# ---------------------------------------------------------------------- moves


@dataclass
class Moves:
    """What an attack does, as events with the time each claims (``ts``) and the time
    it reaches the service (``arrival``): applied in arrival order."""

    label: str
    daily_limit: int
    interactions: list[tuple[float, str, str, int, float]] = field(default_factory=list)
    endorsements: list[tuple[float, str, str, str, float, bool]] = field(default_factory=list)
    distrusts: list[tuple[float, str, str, float]] = field(default_factory=list)
    fresh: list[str] = field(default_factory=list)
    _given: dict[str, int] = field(default_factory=dict)

    def account(self) -> str:
        """A new account the attacker creates."""
        name = f"{self.label}-{len(self.fresh)}"
        self.fresh.append(name)
        return name

    def accounts(self, n: int) -> list[str]:
        return [self.account() for _ in range(n)]

    def interact(
        self, actor: str, target: str, kind: int, ts: float = NOW, arrival: float | None = None
    ) -> None:
        self.interactions.append((ts if arrival is None else arrival, actor, target, kind, ts))

    def endorse(
        self,
        endorser: str,
        endorsee: str,
        topic: str = "",
        ts: float | None = None,
        retract: bool = False,
        arrival: float | None = None,
    ) -> None:
        """Without ``ts``, as late as the daily limit allows: an endorser's k-th
        endorsement goes ``k // limit`` days (and a second) before now. It arrives
        when it claims to happen unless ``arrival`` says otherwise (back-dating)."""
        if ts is None:
            k = self._given.get(endorser, 0)
            self._given[endorser] = k + 1
            days = k // self.daily_limit if self.daily_limit > 0 else 0
            ts = NOW - days * (SECONDS_PER_DAY + 1.0)
        when = ts if arrival is None else arrival
        self.endorsements.append((when, endorser, endorsee, topic, ts, retract))

    def distrust(self, distruster: str, distrusted: str, ts: float = NOW) -> None:
        self.distrusts.append((ts, distruster, distrusted, ts))

    @property
    def actions(self) -> int:
        return len(self.interactions) + len(self.endorsements) + len(self.distrusts)

    def apply(self, engine: Engine) -> None:
        """Write everything; interactions arriving together go in one batch."""
        writes: list[tuple[float, int, Any]] = [(a, 0, e) for a, *e in self.interactions]
        writes += [(a, 1, e) for a, *e in self.endorsements]
        writes += [(a, 2, e) for a, *e in self.distrusts]
        writes.sort(key=lambda w: (w[0], w[1]))
        batch: list[tuple[str, str, int, float]] = []
        for i, (arrival, what, event) in enumerate(writes):
            if what == 0:
                batch.append(tuple(event))  # type: ignore[arg-type]
                nxt = writes[i + 1] if i + 1 < len(writes) else None
                if nxt is None or nxt[1] != 0 or nxt[0] != arrival:
                    engine.record_interactions(batch, now=arrival)
                    batch = []
            elif what == 1:
                _endorse(engine, *event, arrival=arrival)
            else:
                distruster, distrusted, ts = event
                engine.distrust(distruster, distrusted, "", ts, now=arrival)


def _endorse(
    engine: Engine,
    endorser: str,
    endorsee: str,
    topic: str,
    ts: float,
    retract: bool,
    arrival: float,
) -> None:
    """One endorsement event; an honest account whose own endorsements already fill
    the day's limit endorses a day earlier (it has the time)."""
    for _ in range(30):
        try:
            if retract:
                engine.retract(endorser, endorsee, topic, ts, now=arrival)
            else:
                engine.endorse(endorser, endorsee, topic, ts, now=arrival)
            return
        except RateLimited:
            ts -= SECONDS_PER_DAY + 1.0
            arrival -= SECONDS_PER_DAY + 1.0
    raise RuntimeError(f"{endorser} could not endorse {endorsee} within 30 days")


# ---------------------------------------------------------------------- accounts


class Picker:
    """Distinct honest accounts of each kind for one attack (shuffled, fixed seed).
    A pool smaller than an attack needs (tiny smoke runs) is reused from the start."""

    def __init__(self, pools: dict[str, list[str]], seed: int) -> None:
        rng = np.random.default_rng(seed)
        self._pools = {k: [v[i] for i in rng.permutation(len(v))] for k, v in pools.items()}
        self._next = dict.fromkeys(pools, 0)
        self.reused = False

    def take(self, pool: str, n: int) -> list[str]:
        accounts = self._pools[pool]
        start = self._next[pool]
        self._next[pool] = start + n
        self.reused |= start + n > len(accounts)
        return [accounts[(start + i) % len(accounts)] for i in range(n)]


# ---------------------------------------------------------------------- attacks

Build = Callable[[Moves, Picker, str, int], None]


@dataclass(frozen=True)
class Attack:
    """One row of the table. ``build`` adds the moves aimed at one target.

    ``subject`` is who the attack is meant to lift: the target, or the accounts the
    attacker creates (rings and pairs, measured by the fresh accounts' percentile).
    ``topic``: the target is read in that topic instead of globally.
    """

    name: str
    description: str
    build: Build
    subject: str = "target"
    topic: str | None = None
    honest: bool = False


def sybils_endorse(n: int, reply: bool = False, ts: float = NOW) -> Build:
    """n fresh accounts endorse the target now, claiming time ``ts``."""

    def build(m: Moves, p: Picker, target: str, i: int) -> None:
        for s in m.accounts(n):
            m.endorse(s, target, ts=ts, arrival=NOW)
            if reply:
                m.interact(target, s, REPLY)

    return build


def launder(n: int) -> Build:
    """Each sybil gets one like from an honest account (bought), then endorses."""

    def build(m: Moves, p: Picker, target: str, i: int) -> None:
        for s, fan in zip(m.accounts(n), p.take("median", n)):
            m.interact(fan, s, LIKE)
            m.endorse(s, target)

    return build


def star(n: int) -> Build:
    def build(m: Moves, p: Picker, target: str, i: int) -> None:
        for s in m.accounts(n):
            m.endorse(s, target)
            m.interact(s, target, RESHARE)

    return build


def loop(n: int) -> Build:
    """target -> s1 -> ... -> sN -> target, each link an endorsement and a reshare."""

    def build(m: Moves, p: Picker, target: str, i: int) -> None:
        chain = [target, *m.accounts(n), target]
        for a, b in itertools.pairwise(chain):
            m.endorse(a, b)
            m.interact(a, b, RESHARE)

    return build


def farm(n: int, age_days: float, arrived_then: bool, seed: int) -> Build:
    """N accounts that engage only each other (3 others each, at times over
    ``age_days``), then endorse the target now. ``arrived_then``: the events reached
    the service when they claim to have happened (an aged farm); otherwise they all
    arrive now, back-dated."""

    def build(m: Moves, p: Picker, target: str, i: int) -> None:
        rng = np.random.default_rng(seed + i)
        members = m.accounts(n)
        for j, s in enumerate(members):
            for _ in range(3 if n > 1 else 0):
                other = members[(j + 1 + int(rng.integers(n - 1))) % n]
                ts = NOW - SECONDS_PER_DAY * float(rng.uniform(1.0, age_days))
                # Arrival at the end of the event's day, so a day's events share a batch.
                arrival = NOW - SECONDS_PER_DAY * np.floor((NOW - ts) / SECONDS_PER_DAY)
                kind = (LIKE, REPLY)[int(rng.integers(2))]
                m.interact(s, other, kind, ts=ts, arrival=arrival if arrived_then else NOW)
            m.endorse(s, target)

    return build


def ring(r: int, honest_inbound: bool) -> Build:
    """R fresh accounts, each endorsing and resharing the next three (mod R)."""

    def build(m: Moves, p: Picker, target: str, i: int) -> None:
        members = m.accounts(r)
        for j, s in enumerate(members):
            for step in range(1, min(3, r - 1) + 1):
                m.endorse(s, members[(j + step) % r])
                m.interact(s, members[(j + step) % r], RESHARE)
        if honest_inbound:
            for s, fan in zip(members, p.take("median", r)):
                m.interact(fan, s, LIKE)

    return build


def pair_reply(m: Moves, p: Picker, target: str, i: int) -> None:
    a, b = m.accounts(2)
    m.interact(a, b, REPLY)
    m.interact(b, a, REPLY)


def trade(k: int, across_kinds: bool) -> Build:
    """The target and k-1 median accounts trade favours pairwise. Same kind: every
    pair endorses both ways. Across kinds: in each pair the earlier member (in a fixed
    order, the target in the middle) endorses and the other repays with a reply."""

    def build(m: Moves, p: Picker, target: str, i: int) -> None:
        group = p.take("median", k - 1)
        group.insert(k // 2, target)
        for x, a in enumerate(group):
            for b in group[x + 1 :]:
                m.endorse(a, b)
                if across_kinds:
                    m.interact(b, a, REPLY)
                else:
                    m.endorse(b, a)

    return build


def endorse_everyone(n: int) -> Build:
    """The target endorses n accounts (as fast as the daily limit lets it)."""

    def build(m: Moves, p: Picker, target: str, i: int) -> None:
        for other in p.take("median", n):
            m.endorse(target, other)

    return build


def bought(pool: str, n: int) -> Build:
    def build(m: Moves, p: Picker, target: str, i: int) -> None:
        for endorser in p.take(pool, n):
            m.endorse(endorser, target)

    return build


def one_fan_volume(n: int) -> Build:
    """One median account engages n times over 30 days (likes, replies, reshares)."""

    def build(m: Moves, p: Picker, target: str, i: int) -> None:
        (fan,) = p.take("median", 1)
        kinds = (LIKE, REPLY, RESHARE)
        for j in range(n):
            m.interact(fan, target, kinds[j % 3], ts=NOW - 30 * SECONDS_PER_DAY * j / n)

    return build


def burst_then_silence(n: int, days: float) -> Build:
    """n accounts endorsed the target ``days`` ago (arriving then); nothing since."""
    then = NOW - days * SECONDS_PER_DAY

    def build(m: Moves, p: Picker, target: str, i: int) -> None:
        for s in m.accounts(n):
            m.endorse(s, target, ts=then)

    return build


def churn(n: int, days: int) -> Build:
    """n accounts endorse, retract and endorse again, once a day, ending live."""

    def build(m: Moves, p: Picker, target: str, i: int) -> None:
        for s in m.accounts(n):
            for d in range(days, 0, -1):
                m.endorse(s, target, ts=NOW - d * SECONDS_PER_DAY)
                m.endorse(s, target, ts=NOW - d * SECONDS_PER_DAY + 3600, retract=True)
            m.endorse(s, target, ts=NOW)

    return build


#: Spellings of "python" that NFKC, case folding and trimming make the same topic.
PYTHON_VARIANTS = (" Python", "PYTHON", "Python ", "\uff50\uff59\uff54\uff48\uff4f\uff4e", "pYthon")


def squatted_topic(attack: str, i: int) -> str:
    """The topic the squatting attack on target ``i`` endorses in."""
    if attack == "squat-new":
        return f"squat{i}"
    if attack == "squat-variant":
        return PYTHON_VARIANTS[i % len(PYTHON_VARIANTS)]
    return "python"


def squat(n: int) -> Build:
    """n fresh accounts endorse the target in a topic (``squatted_topic``)."""

    def build(m: Moves, p: Picker, target: str, i: int) -> None:
        for s in m.accounts(n):
            m.endorse(s, target, topic=squatted_topic(m.label, i))

    return build


def smear(n: int, ring: bool = False) -> Build:
    """n fresh accounts distrust the target (and, as a ring, endorse each other)."""

    def build(m: Moves, p: Picker, target: str, i: int) -> None:
        fresh = m.accounts(n)
        for k, s in enumerate(fresh):
            m.distrust(s, target)
            if ring:
                m.endorse(s, fresh[(k + 1) % n])

    return build


def bought_smear(pool: str, n: int) -> Build:
    """n established accounts of the pool distrust the target (real users paid to)."""

    def build(m: Moves, p: Picker, target: str, i: int) -> None:
        for distruster in p.take(pool, n):
            m.distrust(distruster, target)

    return build


def honest_engagement(n: int, kinds: tuple[int, ...]) -> Build:
    def build(m: Moves, p: Picker, target: str, i: int) -> None:
        for fan in p.take("median", n):
            for kind in kinds:
                m.interact(fan, target, kind)

    return build


def attacks() -> list[Attack]:
    rows = [
        Attack("sybil-10", "10 fresh accounts endorse the target", sybils_endorse(10)),
        Attack("sybil-100", "100 fresh accounts endorse the target", sybils_endorse(100)),
        Attack("sybil-10-reply", "... and the target replies to each", sybils_endorse(10, True)),
        Attack("sybil-100-reply", "... and the target replies to each", sybils_endorse(100, True)),
        Attack("pair-reply", "two fresh accounts reply to each other once", pair_reply, "fresh"),
        Attack("sybil-1", "1 fresh account endorses the target, dated today", sybils_endorse(1)),
        Attack("sybil-1-1970", "the same endorsement dated 1970", sybils_endorse(1, ts=0.0)),
    ]
    for k in (2, 10, 50):
        rows.append(Attack(f"trade-{k}", f"{k} users trade endorsements", trade(k, False)))
        rows.append(
            Attack(f"trade-{k}-cross", f"{k} users trade endorsements for replies", trade(k, True))
        )
    rows.append(
        Attack("endorse-everyone", "the target endorses 1000 users", endorse_everyone(1000))
    )
    for r in (20, 50, 200):
        rows.append(
            Attack(f"ring-{r}", f"closed ring of {r} fresh accounts", ring(r, False), "fresh")
        )
        rows.append(
            Attack(
                f"ring-{r}-inbound",
                "... each member liked once by an honest account",
                ring(r, True),
                "fresh",
            )
        )
    rows.append(Attack("one-fan-volume", "one median fan engages 1000 times", one_fan_volume(1000)))
    for n in (10, 100, 1000):
        rows += [
            Attack(f"star-{n}", f"{n} sybils endorse and reshare the target", star(n)),
            Attack(f"loop-{n}", f"target -> {n} sybils -> target, endorse + reshare", loop(n)),
            Attack(
                f"launder-{n}",
                f"{n} sybils, each liked once by an honest account, endorse",
                launder(n),
            ),
            Attack(
                f"aged-{n}",
                f"{n} accounts 60 days old, engaging only each other, endorse",
                farm(n, 60.0, True, seed=n),
            ),
        ]
    rows += [
        Attack(
            "backdated-100",
            "aged-100 created today, events dated 60 days back",
            farm(100, 60.0, False, seed=100),
        ),
        Attack(
            "bought-median-10", "10 endorsements bought from median accounts", bought("median", 10)
        ),
        Attack("bought-top10-1", "1 endorsement bought from a top-10% account", bought("top10", 1)),
        Attack(
            "bought-top10-10", "10 endorsements bought from top-10% accounts", bought("top10", 10)
        ),
        Attack("bought-seed-1", "one seed account endorses the target once", bought("seeds", 1)),
        Attack(
            "burst-90d",
            "100 fresh accounts endorsed 90 days ago, then silence",
            burst_then_silence(100, 90.0),
        ),
        Attack("churn-10", "10 fresh accounts re-endorse daily for 30 days", churn(10, 30)),
        Attack(
            "squat-new", "2 fresh accounts endorse the target in a new topic", squat(2), topic="own"
        ),
        Attack(
            "squat-python",
            "10 fresh accounts endorse the target in 'python'",
            squat(10),
            topic="python",
        ),
        Attack(
            "squat-variant",
            "10 fresh accounts endorse it in 'PYTHON', ' Python', ...",
            squat(10),
            topic="python",
        ),
        Attack("smear-20", "20 fresh accounts distrust the target", smear(20)),
        Attack("smear-ring-20", "... and endorse each other in a ring", smear(20, ring=True)),
        Attack(
            "smear-median-1",
            "1 distrust bought from a median account (report only)",
            bought_smear("median", 1),
        ),
        Attack(
            "smear-median-10",
            "10 distrusts bought from median accounts (report only)",
            bought_smear("median", 10),
        ),
        Attack("fans-50", "50 median fans like once", honest_engagement(50, (LIKE,)), honest=True),
        Attack(
            "like-reshare-20",
            "20 median users like and reshare",
            honest_engagement(20, (LIKE, RESHARE)),
            honest=True,
        ),
    ]
    for n in (10, 100, 1000):
        rows.append(
            Attack(
                f"likes-{n}",
                f"{n} median users like once (laundering's yardstick)",
                honest_engagement(n, (LIKE,)),
                honest=True,
            )
        )
    return rows


# ---------------------------------------------------------------------- bounds

#: The issue's targets per configuration (default, seeded); None: reported only.
FRESH_SYBIL = {"max_gain": (5.0, 2.0), "max_fresh": (10.0, None)}
FRESH_RING = {"max_fresh": (10.0, 2.0)}
NAMED_BOUNDS: dict[str, dict[str, tuple[float | None, float | None]]] = {
    "trade-2": {"max_gain": (5.0, 5.0)},
    "trade-2-cross": {"max_gain": (5.0, 5.0)},
    "trade-10-cross": {"max_gain": (15.0, 15.0)},
    "bought-seed-1": {"max_after": (None, 95.0)},
    "fans-50": {"min_after": (90.0, 90.0)},
    "smear-20": {"max_loss": (5.0, 2.0)},
    "smear-ring-20": {"max_loss": (5.0, 2.0)},
    "like-reshare-20": {"min_after": (90.0, 90.0)},
}


def bounds(name: str) -> dict[str, tuple[float | None, float | None]]:
    """The issue's targets for an attack: gains of fresh sybils (any shape), fresh
    members of rings and pairs, trades and one bribed seed; what honest fans keep."""
    if name in NAMED_BOUNDS:
        return NAMED_BOUNDS[name]
    if name.startswith(("ring-", "pair-")):
        return FRESH_RING
    if name.startswith(("sybil-", "star-", "loop-", "backdated-", "burst-", "churn-")):
        return FRESH_SYBIL
    return {}


def verdict(attack: Attack, config: int, r: dict, rows: dict[str, dict]) -> str:
    """ "ok" or "MISS" against the issue's target for this row, "" when it has none."""
    checks = []
    name = ("default", "seeded")[config]
    for key, limits in bounds(attack.name).items():
        limit = limits[config]
        if limit is None:
            continue
        value = {
            "max_gain": r["gain"],
            "max_loss": None if r["gain"] is None else -r["gain"],
            "max_fresh": r["fresh"],
            "max_after": r["after"],
            "min_after": r["after"],
        }[key]
        if value is not None:
            checks.append(value >= limit if key == "min_after" else value <= limit)
    if attack.name.startswith("launder-") and config == 1:
        yardstick = rows.get("likes-" + attack.name.split("-")[1], {}).get(name)
        if yardstick:
            checks.append(r["gain"] <= yardstick["gain"])
    return "" if not checks else ("ok" if all(checks) else "MISS")


# ---------------------------------------------------------------------- community


@dataclass
class Base:
    """One built configuration: its engine state and latest snapshot."""

    name: str
    state: EngineState
    snapshot: Any
    honest: np.ndarray  # honest users' influence, in community order

    def percentile(self, users: list[str]) -> np.ndarray:
        dense = np.array([self.snapshot.user_index[u] for u in users])
        return share_strictly_below(self.honest, self.snapshot.influence[dense])


class Community:
    """The synthetic community built in both configurations, with its targets, seeds
    and pools of honest accounts (median: 40th-60th percentile; top10: 90th-99th)."""

    def __init__(
        self,
        users: int,
        events: int,
        n_targets: int,
        n_seeds: int,
        seed: int,
        params: ModelParams,
        threads: int,
    ) -> None:
        self.params, self.threads = params, threads
        self.log = community(events, users, seed=seed, end=NOW)
        self.ids: list[str] = list(self.log.user_ids or [])
        engine = Engine(params, threads=threads)
        engine.load_events(self.log)
        default = self._base("default", engine)
        # What a copy costs each way (the first build also warms up the thread pool).
        started = time.perf_counter()
        rebuilt = Engine(params, threads=threads)
        rebuilt.load_events(self.log)
        rebuilt.refresh(NOW)
        self.rebuild_seconds = time.perf_counter() - started
        started = time.perf_counter()
        self.engine(default.state).refresh(NOW)
        self.restore_seconds = time.perf_counter() - started
        pct = default.percentile(self.ids)
        rng = np.random.default_rng(seed)
        top = np.argsort(-default.honest)[: max(users // 100, 2 * n_seeds)]
        self.seeds = [self.ids[i] for i in rng.choice(top, n_seeds, replace=False)]
        self.bases = (default, self.seeded(default.state, self.seeds))
        pct_seeded = self.bases[1].percentile(self.ids)
        taken = set(self.seeds)
        closeness = np.abs(pct - 50) + np.abs(pct_seeded - 50)
        order = [i for i in np.argsort(closeness, kind="stable") if self.ids[i] not in taken]
        self.targets = [self.ids[i] for i in order[:n_targets]]
        taken |= set(self.targets)
        band = lambda lo, hi: [  # noqa: E731
            u for u, q in zip(self.ids, pct) if lo <= q <= hi and u not in taken
        ]
        self.pools = {"median": band(40, 60), "top10": band(90, 99), "seeds": self.seeds}

    def _base(self, name: str, engine: Engine) -> Base:
        snapshot = engine.refresh(NOW)
        dense = np.array([snapshot.user_index[u] for u in self.log.user_ids or []])
        return Base(name, engine.state(), snapshot, snapshot.influence[dense])

    def seeded(self, state: EngineState, seeds: list[str]) -> Base:
        engine = self.engine(state)
        for s in seeds:
            engine.set_status(s, AccountStatus.SEED)
        return self._base("seeded", engine)

    def engine(self, state: EngineState) -> Engine:
        """A copy of a built configuration, ready for an attack."""
        engine = Engine(self.params, threads=self.threads)
        engine.restore(state)
        return engine


# ---------------------------------------------------------------------- measuring


def measure(c: Community, base: Base, attack: Attack, seed: int) -> dict[str, Any]:
    """Apply the attack to every target in a copy of ``base`` and read the standings."""
    started = time.perf_counter()
    engine = c.engine(base.state)
    moves = Moves(attack.name, c.params.daily_endorsement_limit)
    picker = Picker(c.pools, seed)
    for i, target in enumerate(c.targets):
        attack.build(moves, picker, target, i)
    moves.apply(engine)
    snap = engine.refresh(NOW)
    dense = np.array([snap.user_index[u] for u in c.ids])
    after_base = Base(base.name, base.state, snap, snap.influence[dense])
    if attack.topic is None:
        before = base.percentile(c.targets)
        after = after_base.percentile(c.targets)
        leads = None
    else:
        # Read where users look (the squatted topic, or "python" for its variants).
        squatted = [squatted_topic(attack.name, i) for i in range(len(c.targets))]
        read = squatted if attack.topic == "own" else [attack.topic] * len(c.targets)
        before = np.array([base.snapshot.scores([t], tp)[3][0] for t, tp in zip(c.targets, read)])
        after = np.array([snap.scores([t], tp)[3][0] for t, tp in zip(c.targets, read)])
        leads = sum(
            bool(top) and top[0].user_id == t
            for t, tp in zip(c.targets, squatted)
            for top in [snap.top(1, tp)]
        )
    fresh = after_base.percentile(moves.fresh) if moves.fresh else np.zeros(0)
    return {
        "before": float(np.median(before)),
        "after": float(np.median(after)),
        "gain": float(np.median(after - before)),
        "fresh": float(np.median(fresh)) if len(fresh) else None,
        "fresh_p90": float(np.quantile(fresh, 0.9)) if len(fresh) else None,
        "leads_topic": leads,
        "accounts": len(moves.fresh) / len(c.targets),
        "actions": moves.actions / len(c.targets),
        "pools_reused": picker.reused,
        "seconds": time.perf_counter() - started,
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    params = _params(args.params)
    c = Community(
        args.users, args.events, args.targets, args.seeds, args.seed, params, args.threads
    )
    rows: dict[str, dict[str, Any]] = {}
    for a in attacks():
        if args.only and not any(s in a.name for s in args.only.split(",")):
            continue
        row: dict[str, Any] = {
            "description": a.description,
            "subject": a.subject,
            "honest": a.honest,
            "topic": a.topic,
        }
        for base in c.bases:
            row[base.name] = measure(c, base, a, args.seed + 1)
        rows[a.name] = row
    for a in attacks():
        for config, name in enumerate(("default", "seeded")):
            if a.name in rows and name in rows[a.name]:
                rows[a.name][name]["verdict"] = verdict(a, config, rows[a.name][name], rows)
    result = {
        "users": args.users,
        "events": args.events,
        "targets": c.targets,
        "seeds": len(c.seeds),
        "params": _as_dict(params),
        "targets_before": {b.name: b.percentile(c.targets).tolist() for b in c.bases},
        "spearman_seeded_vs_default": spearman(c.bases[0].honest, c.bases[1].honest),
        "copy_seconds": {"rebuild": c.rebuild_seconds, "restore": c.restore_seconds},
        "attacks": rows,
    }
    result.update(_comparisons(args, c))
    return result


def _comparisons(args: argparse.Namespace, c: Community) -> dict[str, Any]:
    """Spearman of the honest ranking against other parameters or a saved run."""
    out: dict[str, Any] = {}
    mine = {b.name: b.honest for b in c.bases}
    if args.save_influence:
        np.savez(args.save_influence, users=args.users, events=args.events, seed=args.seed, **mine)
    if args.compare_params:
        other = _params(args.compare_params)
        engine = Engine(other, threads=args.threads)
        engine.load_events(c.log)
        them = Community.__new__(Community)
        them.params, them.threads, them.log = other, args.threads, c.log
        default = them._base("default", engine)
        seeded = them.seeded(default.state, c.seeds)
        out["spearman_vs_compare_params"] = {
            "default": spearman(mine["default"], default.honest),
            "seeded": spearman(mine["seeded"], seeded.honest),
        }
    if args.compare_influence:
        saved = np.load(args.compare_influence)
        same = (int(saved["users"]), int(saved["events"]), int(saved["seed"])) == (
            args.users,
            args.events,
            args.seed,
        )
        if not same:
            raise SystemExit("--compare-influence was saved from a different community")
        out["spearman_vs_saved"] = {k: spearman(mine[k], saved[k]) for k in mine}
    return out


def _params(text: str | None) -> ModelParams:
    """ModelParams with the JSON object's fields overridden (lists become tuples)."""
    given = json.loads(text) if text else {}
    known = {f.name for f in fields(ModelParams)}
    unknown = set(given) - known
    if unknown:
        raise SystemExit(f"unknown ModelParams fields: {', '.join(sorted(unknown))}")
    return ModelParams(**{k: tuple(v) if isinstance(v, list) else v for k, v in given.items()})


def _as_dict(params: ModelParams) -> dict[str, Any]:
    return {f.name: getattr(params, f.name) for f in fields(params)}


# ---------------------------------------------------------------------- output


def _cell(r: dict[str, Any], subject: str) -> Iterator[str]:
    if subject == "fresh":
        yield f"{'-':>17}"
    else:
        yield f"{r['before']:5.1f} -> {r['after']:5.1f} {r['gain']:+5.1f}"
    yield f"{r['fresh']:6.1f}" if r["fresh"] is not None else f"{'-':>6}"
    yield f"{r.get('verdict', ''):>4}"


def table(result: dict[str, Any]) -> str:
    lines = [
        f"{result['users']:,} users, {result['events']:,} events, "
        f"{len(result['targets'])} median targets, {result['seeds']} seeds; "
        "percentiles among honest users, medians over the targets",
        f"{'attack':18} {'acc':>6} {'actions':>8} | {'default: before -> after gain':>29} "
        f"| {'seeded: before -> after gain':>29}",
        f"{'':18} {'':>6} {'':>8} | {'target':>17} {'fresh':>6} {'':>4} "
        f"| {'target':>17} {'fresh':>6} {'':>4}",
    ]
    for name, row in result["attacks"].items():
        d = row["default"]
        cells = [" ".join(_cell(row[b], row["subject"])) for b in ("default", "seeded")]
        extra = ""
        if d["leads_topic"] is not None:
            leads = (d["leads_topic"], row["seeded"]["leads_topic"])
            extra = f"  leads the squatted topic: {leads[0]}, {leads[1]}"
        lines.append(
            f"{name:18} {d['accounts']:6.0f} {d['actions']:8.0f} | {cells[0]} | {cells[1]}{extra}"
        )
    lines.append(
        f"Spearman of honest users' ranking, seeded vs default: "
        f"{result['spearman_seeded_vs_default']:.3f}"
    )
    for key in ("spearman_vs_compare_params", "spearman_vs_saved"):
        if key in result:
            lines.append(f"{key}: " + ", ".join(f"{k} {v:.3f}" for k, v in result[key].items()))
    copy = result["copy_seconds"]
    lines.append(
        f"a copy of the built community, refreshed: restore {copy['restore']:.2f} s, "
        f"rebuild from the event log {copy['rebuild']:.2f} s"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=lambda s: int(float(s)), default=50_000)
    parser.add_argument("--events", type=lambda s: int(float(s)), default=500_000)
    parser.add_argument("--targets", type=int, default=5)
    parser.add_argument("--seeds", type=int, default=40)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--only", help="comma-separated parts of attack names to run")
    parser.add_argument("--params", help="ModelParams overrides as JSON")
    parser.add_argument("--compare-params", help="ModelParams overrides to rank against")
    parser.add_argument("--save-influence", type=Path, help="save the honest influence (.npz)")
    parser.add_argument("--compare-influence", type=Path, help="rank against a saved .npz")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    result = run(args)
    print(table(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
