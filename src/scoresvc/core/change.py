"""Why a score changed: the exact split of a change of influence and score into its
causes (docs/model.md, "What a change explains").

A user's influence is ``I_u = phi_u (T_u + sum_a F_a)`` in influence units: ``phi_u``
the share of trust it keeps (step 8), ``T_u`` its teleport share and ``F_a = d I_a
P(a->u)`` what each in-neighbour sends. Between two times the change splits exactly
(a product's change is ``x1 y1 - x0 y0 = x1 (y1 - y0) + (x1 - x0) y0``):

* its own distrust: ``(phi1 - phi0) H0`` with ``H = I / phi``;
* its own account (the teleport share: age and seed status): ``phi1 (T1 - T0)``;
* per contributor known at both times: ``phi1 (F1 - F0)``, of which the contributor's
  standing is ``phi1 (I_a1 - I_a0) d P(a->u)`` and the link the rest;
* the other contributors (those not recorded at one of the times): what is left of
  ``phi1 (H1 - H0)``.

The score ``1 + 99 ln(1 + I) / ln(1 + I_max)`` changes by what the influence did at the
new top (shared among the parts above in proportion to their influence) plus the
rescaling when the top of the ranking moved. The parts sum to the whole.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace

from .model import AccountStatus
from .results import EndorsementEvent
from .scoring import log_scale_one


class Cause(enum.IntEnum):
    """What moved a part of a change (numbers match the proto's ChangeCause)."""

    OWN_ACCOUNT = 1  # the user's own account: age, seed status
    CONTRIBUTOR_STANDING = 2  # a contributor's own influence changed
    CONTRIBUTOR_LINK = 3  # what links the contributor to the user changed
    OTHER_CONTRIBUTORS = 4  # contributors not recorded at one of the two times
    DISTRUST = 5  # the share of its trust the user keeps changed
    STATUS = 6  # the user was suspended, or its suspension lifted
    TOP_OF_RANKING = 7  # the score's scale moved with the top influence
    MODERATION = 8  # a link a moderator invalidated or restored in the interval


@dataclass(frozen=True)
class Standing:
    """One user's numbers at one time, as a change reads them.

    ``contributors`` maps a contributor's id to (``F_a`` in influence units, ``I_a``),
    for every in-neighbour when ``complete``, else for the largest recorded ones;
    ``influence_of`` gives any other user's influence then, where it is known."""

    time: float
    status: AccountStatus
    influence: float
    influence_max: float
    kept: float
    teleport: float
    contributors: Mapping[str, tuple[float, float]]
    complete: bool
    influence_of: Callable[[str], float | None] | None = None

    def contributor(self, user_id: str) -> tuple[float, float | None]:
        """(``F_a``, ``I_a``) of any user: a user sending nothing has ``F_a`` 0 and
        its influence where known (None where not)."""
        found = self.contributors.get(user_id)
        if found is not None:
            return found
        return 0.0, None if self.influence_of is None else self.influence_of(user_id)

    @property
    def score(self) -> float:
        return log_scale_one(self.influence, self.influence_max)

    @property
    def received(self) -> float:
        """``H = I / phi`` (what the contributors and the baseline give, undiscounted)."""
        if self.kept > 0:
            return self.influence / self.kept
        return self.teleport + sum(f for f, _ in self.contributors.values())


@dataclass(frozen=True)
class ChangePart:
    cause: Cause
    influence_change: float
    score_change: float
    contributor_id: str = ""
    #: The endorsements and distrusts between the contributor and the user in the
    #: interval, as the audit trail has them (for link changes).
    events: tuple[EndorsementEvent, ...] = ()
    #: The moderation actions behind a MODERATION part (the invalidations and restores
    #: covering the pair) or a STATUS part (the suspensions naming the user), oldest first.
    moderation_action_ids: tuple[int, ...] = ()


@dataclass(frozen=True)
class ScoreChange:
    user_id: str
    before: Standing
    after: Standing
    #: Largest first (by score change, then influence change).
    parts: tuple[ChangePart, ...]

    @property
    def score_change(self) -> float:
        return self.after.score - self.before.score

    @property
    def influence_change(self) -> float:
        return self.after.influence - self.before.influence


def explain_change(user_id: str, before: Standing, after: Standing) -> ScoreChange:
    """Split ``after - before`` into its causes (parts summing to the whole)."""
    suspended = AccountStatus.SUSPENDED
    if (before.status == suspended) != (after.status == suspended):
        parts = [(Cause.STATUS, "", after.influence - before.influence)]
    else:
        parts = _influence_parts(before, after)
    # The score at the new scale, then the scale's move.
    moved = log_scale_one(after.influence, after.influence_max) - log_scale_one(
        before.influence, after.influence_max
    )
    rescaled = log_scale_one(before.influence, after.influence_max) - before.score
    total = after.influence - before.influence
    out = [
        ChangePart(cause, part, moved * part / total if total else 0.0, who)
        for cause, who, part in parts
        if part != 0.0
    ]
    if total == 0.0 and moved != 0.0:  # rounding at the scale's cap
        out.append(ChangePart(Cause.OTHER_CONTRIBUTORS, 0.0, moved))
    if rescaled != 0.0:
        out.append(ChangePart(Cause.TOP_OF_RANKING, 0.0, rescaled))
    out.sort(key=lambda p: (-abs(p.score_change), -abs(p.influence_change), p.contributor_id))
    return ScoreChange(user_id, before, after, tuple(out))


def _influence_parts(before: Standing, after: Standing) -> list[tuple[Cause, str, float]]:
    k0, k1 = before.kept, after.kept
    h0, h1 = before.received, after.received
    parts = [
        (Cause.DISTRUST, "", (k1 - k0) * h0),
        (Cause.OWN_ACCOUNT, "", k1 * (after.teleport - before.teleport)),
    ]
    # Contributors known at both times: a complete side knows every in-neighbour (an
    # absent one sends nothing); a recorded side knows its largest ones only.
    first, second = set(before.contributors), set(after.contributors)
    if after.complete:
        named = first | second if before.complete else first
    else:
        named = second if before.complete else first & second
    known0 = known1 = 0.0
    for a in sorted(named):
        f0, i0 = before.contributor(a)
        f1, i1 = after.contributor(a)
        known0, known1 = known0 + f0, known1 + f1
        # d P(a->u): from the later time where it sends anything, else the earlier; a
        # standing not known at one time is taken as unchanged (all goes to the link).
        if i0 is None or i1 is None:
            standing = 0.0
        else:
            rate = f1 / i1 if f1 > 0 and i1 > 0 else (f0 / i0 if i0 > 0 else 0.0)
            standing = k1 * (i1 - i0) * rate
        parts.append((Cause.CONTRIBUTOR_STANDING, a, standing))
        parts.append((Cause.CONTRIBUTOR_LINK, a, k1 * (f1 - f0) - standing))
    others0 = h0 - before.teleport - known0
    others1 = h1 - after.teleport - known1
    parts.append((Cause.OTHER_CONTRIBUTORS, "", k1 * (others1 - others0)))
    return parts


def moderated(
    change: ScoreChange,
    links: Mapping[str, Sequence[int]],
    suspensions: Sequence[int] = (),
) -> ScoreChange:
    """``change`` naming moderation: each link part whose contributor has actions in
    ``links`` (invalidations or restores covering it and the user in the interval) is
    a MODERATION part listing them, and a STATUS part lists ``suspensions`` (the
    SuspendCluster actions naming the user). Only labels change: the parts' values,
    and so their sum, stay exactly as they were."""

    def named(p: ChangePart) -> ChangePart:
        if p.cause == Cause.CONTRIBUTOR_LINK and links.get(p.contributor_id):
            return replace(
                p, cause=Cause.MODERATION, moderation_action_ids=tuple(links[p.contributor_id])
            )
        if p.cause == Cause.STATUS and suspensions:
            return replace(p, moderation_action_ids=tuple(suspensions))
        return p

    return replace(change, parts=tuple(named(p) for p in change.parts))


@dataclass(frozen=True)
class ChangeReport:
    """A change as readers get it (``ExplainChange``): the two sides' times, scores
    and influence, the parts (link parts with their events) and plain sentences."""

    user_id: str
    from_time: float
    to_time: float
    score_before: float
    score_after: float
    influence_before: float
    influence_after: float
    parts: tuple[ChangePart, ...]
    summary: tuple[str, ...] = ()


def report_of(
    change: ScoreChange,
    events: Mapping[str, Sequence[EndorsementEvent]],
    summary: Sequence[str],
) -> ChangeReport:
    """``change`` for readers, each link part (moderated or not) with
    ``events[contributor]``."""
    parts = tuple(
        replace(p, events=tuple(events.get(p.contributor_id, ())))
        if p.cause in (Cause.CONTRIBUTOR_LINK, Cause.MODERATION)
        else p
        for p in change.parts
    )
    b, a = change.before, change.after
    return ChangeReport(
        change.user_id,
        b.time,
        a.time,
        b.score,
        a.score,
        b.influence,
        a.influence,
        parts,
        tuple(summary),
    )
