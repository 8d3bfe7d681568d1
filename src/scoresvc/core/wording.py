"""An explanation a person can read: a few plain sentences built from its numbers.

``summary`` is the one place they are worded. Each sentence states one part of the
explanation as a whole percentage, rounded from the explanation's own figure; a part
that rounds to zero is not mentioned, and at most ``MAX_SENTENCES`` are said, the ones
that tell most about gaming or about where the standing came from first.
"""

from __future__ import annotations

from collections.abc import Callable

from .change import Cause, ChangePart, ScoreChange
from .results import Explanation

MAX_SENTENCES = 5

_UNITS = (("day", 86400.0), ("hour", 3600.0), ("minute", 60.0), ("second", 1.0))


def percent(share: float) -> int:
    """A share (0-1) as the whole percentage a sentence states."""
    return round(100.0 * share)


def duration(seconds: float) -> str:
    """``seconds`` in the largest unit it holds at least once: "30 days", "1 hour"."""
    for name, size in _UNITS:
        if seconds >= size or size == 1.0:
            count = round(seconds / size)
            return f"{count} {name}" + ("" if count == 1 else "s")
    raise AssertionError("unreachable")


def _distrust(e: Explanation, _: float) -> str | None:
    kept = percent(e.trust_kept)
    if e.distrust_received <= 0 or kept >= 100:
        return None
    return f"Accounts others trust distrust you: you keep {kept}% of your trust."


def _contributors(e: Explanation, _: float) -> str | None:
    top = e.top_contributors
    total = percent(sum(c.share for c in top))
    if not top or total <= 0:
        return None
    if len(top) == 1:
        return f"{total}% of your standing comes from {top[0].user_id}."
    said = f"{total}% of your standing comes from the {len(top)} accounts that give you the most"
    largest = percent(top[0].share)
    if largest <= 0:
        return said + "."
    return f"{said}; the largest is {top[0].user_id} ({largest}%)."


def _own_cluster(e: Explanation, _: float) -> str | None:
    share = percent(e.credibility_from_own_cluster)
    if share <= 0:
        return None
    return (
        f"{share}% of your standing comes from a group of accounts flagged as possibly "
        "gaming the score, which you belong to or benefit from."
    )


def _young(e: Explanation, maturity_age_seconds: float) -> str | None:
    share = percent(e.credibility_from_young_accounts)
    if share <= 0:
        return None
    return (
        f"{share}% of your standing comes from accounts less than "
        f"{duration(maturity_age_seconds)} old."
    )


def _own_account(e: Explanation, _: float) -> str | None:
    share = percent(e.teleport_share)
    if share <= 0:
        return None
    return (
        f"{share}% of your standing comes from your own account (its age, or its being "
        "a seed account), not from others."
    )


def _returned(e: Explanation, _: float) -> str | None:
    received = e.engagement_received + e.endorsements_received
    share = percent(e.reciprocity_removed / received) if received > 0 else 0
    if share <= 0:
        return None
    return (
        f"{share}% of the engagement and endorsements you received was not counted "
        "because you returned the favour to those who gave it."
    )


def _saturated(e: Explanation, _: float) -> str | None:
    if e.engagement_received <= 0:
        return None
    counted = percent(e.engagement_saturated / e.engagement_received)
    if counted >= 100:
        return None
    return (
        "Repeated engagement from the same accounts counts less each time: after that and "
        f"returned favours, the engagement you received counts as {counted}% of its volume."
    )


#: Most telling first: what a moderator would look at, then where the standing came
#: from, then what the model discounted.
_SENTENCES: tuple[Callable[[Explanation, float], str | None], ...] = (
    _distrust,
    _contributors,
    _own_cluster,
    _young,
    _own_account,
    _returned,
    _saturated,
)


def summary(e: Explanation, maturity_age_seconds: float) -> tuple[str, ...]:
    """At most ``MAX_SENTENCES`` plain sentences saying where the explained score came
    from; ``maturity_age_seconds`` is the age under which an account counts as young."""
    said = (sentence(e, maturity_age_seconds) for sentence in _SENTENCES)
    return tuple(s for s in said if s is not None)[:MAX_SENTENCES]


# ---------------------------------------------------------------------- changes

_CAUSE_WORDS = {
    Cause.OWN_ACCOUNT: "your own account's share (its age, or its being a seed)",
    Cause.OTHER_CONTRIBUTORS: "accounts that were not among your largest contributors",
    Cause.DISTRUST: "distrust from accounts others trust",
    Cause.STATUS: "your account's status",
    Cause.TOP_OF_RANKING: "the top of the ranking moving (every score is scaled to it)",
}


def _actions(ids: tuple[int, ...]) -> str:
    listed = ", ".join(f"#{a}" for a in ids)
    return f"moderation action{'s' if len(ids) > 1 else ''} {listed}"


def _part_words(part: ChangePart) -> str:
    if part.cause == Cause.CONTRIBUTOR_LINK:
        return f"what links you to {part.contributor_id} (events, decay, retractions)"
    if part.cause == Cause.CONTRIBUTOR_STANDING:
        return f"{part.contributor_id}'s own standing"
    if part.cause == Cause.MODERATION:
        return (
            "a moderator setting aside or restoring what passed between you and "
            f"{part.contributor_id} ({_actions(part.moderation_action_ids)})"
        )
    if part.cause == Cause.STATUS and part.moderation_action_ids:
        return f"your account's status ({_actions(part.moderation_action_ids)})"
    return _CAUSE_WORDS[part.cause]


def change_summary(change: ScoreChange, parts: int = MAX_SENTENCES - 1) -> list[str]:
    """The change in plain sentences: the whole, then its largest parts (those that
    round to at least 0.1 of a score point), each with its share of the score change
    rounded to a tenth."""
    before, after = change.before.score, change.after.score
    delta = after - before
    if round(delta, 1) == 0:
        lines = [f"Your score stayed at {after:.1f}."]
    else:
        verb = "rose" if delta > 0 else "fell"
        lines = [f"Your score {verb} from {before:.1f} to {after:.1f} ({delta:+.1f})."]
    for part in change.parts[:parts]:
        points = round(part.score_change, 1)
        if points == 0:
            continue
        words = _part_words(part)
        lines.append(f"{words[0].upper()}{words[1:]}: {points:+.1f}.")
    return lines
