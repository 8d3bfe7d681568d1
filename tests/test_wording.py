"""The readable explanation: each sentence states the explanation's own figures, rounded;
a part that rounds to zero is never mentioned; at most five sentences, most telling first."""

from __future__ import annotations

import re

from hypothesis import given
from hypothesis import strategies as st

from scoresvc.core.results import Contributor, Explanation
from scoresvc.core.wording import duration, summary

DAY = 86_400.0

# What each part's sentence is recognised by, in the order they are said.
PHRASES = {
    "distrust": "distrust you",
    "contributors": "accounts that give you the most",
    "single_contributor": None,  # "... comes from ana."
    "own_cluster": "flagged as possibly gaming",
    "young": "accounts less than",
    "own_account": "your own account",
    "returned": "returned the favour",
    "saturated": "Repeated engagement",
}


def explanation(**parts: object) -> Explanation:
    numbers: dict[str, object] = dict(
        engagement_received=0.0,
        engagement_saturated=0.0,
        endorsements_received=0.0,
        endorsements_effective=0.0,
        reciprocity_removed=0.0,
        teleport_share=0.0,
    )
    numbers.update(parts)
    return Explanation(**numbers)  # type: ignore[arg-type]


def figures(sentence: str) -> list[int]:
    return [int(f) for f in re.findall(r"\d+", sentence)]


def test_the_contributors_sentence_names_their_share_count_and_the_largest():
    e = explanation(
        teleport_share=0.38,
        top_contributors=(
            Contributor("ana", 0.31),
            Contributor("bo", 0.15),
            Contributor("cy", 0.1),
            Contributor("dee", 0.06),
        ),
    )
    said = summary(e, 30 * DAY)
    assert said[0] == (
        "62% of your standing comes from the 4 accounts that give you the most; "
        "the largest is ana (31%)."
    )
    assert said[1] == (
        "38% of your standing comes from your own account (its age, or its being a seed "
        "account), not from others."
    )
    assert len(said) == 2


def test_a_largest_contributor_under_half_a_percent_is_not_named():
    e = explanation(top_contributors=tuple(Contributor(u, 0.004) for u in "abc"))
    assert summary(e, 30 * DAY) == (
        "1% of your standing comes from the 3 accounts that give you the most.",
    )


def test_one_contributor_is_named_alone():
    e = explanation(top_contributors=(Contributor("ana", 0.5),))
    assert summary(e, 30 * DAY) == ("50% of your standing comes from ana.",)


def test_young_accounts_are_said_with_the_maturity_age():
    e = explanation(credibility_from_young_accounts=0.35)
    assert summary(e, 30 * DAY) == (
        "35% of your standing comes from accounts less than 30 days old.",
    )
    assert "less than 1 hour old" in summary(e, 3600.0)[0]


def test_distrust_returned_favours_and_saturation_are_said_with_their_figures():
    e = explanation(
        distrust_received=2.0,
        trust_kept=0.4,
        engagement_received=80.0,
        endorsements_received=20.0,
        reciprocity_removed=25.0,
        engagement_saturated=8.0,
    )
    assert summary(e, 30 * DAY) == (
        "Accounts others trust distrust you: you keep 40% of your trust.",
        "25% of the engagement and endorsements you received was not counted because you "
        "returned the favour to those who gave it.",
        "Repeated engagement from the same accounts counts less each time: after that and "
        "returned favours, the engagement you received counts as 10% of its volume.",
    )


def test_nothing_to_say_is_no_sentence():
    assert summary(explanation(), 30 * DAY) == ()
    assert summary(explanation(credibility_from_young_accounts=0.004), 30 * DAY) == ()


def test_durations_use_the_largest_whole_unit():
    assert [duration(s) for s in (30 * DAY, DAY, 7200.0, 60.0, 1.0, 45.0)] == [
        "30 days",
        "1 day",
        "2 hours",
        "1 minute",
        "1 second",
        "45 seconds",
    ]


# ---------------------------------------------------------------------- properties

share = st.one_of(st.just(0.0), st.floats(0.0, 0.0049), st.floats(0.0, 1.0))
ids = st.text("abcdefghijklmnopqrstuvwxyz", min_size=1, max_size=6)


@st.composite
def explanations(draw: st.DrawFn) -> Explanation:
    n = draw(st.integers(0, 5))
    weights = draw(st.lists(st.floats(0.001, 1.0), min_size=n, max_size=n))
    total = draw(share)
    scale = total / sum(weights) if weights else 0.0
    top = sorted((w * scale for w in weights), reverse=True)
    names = draw(st.lists(ids, min_size=n, max_size=n, unique=True))
    engagement = draw(st.one_of(st.just(0.0), st.floats(0.0, 1e4)))
    endorsements = draw(st.one_of(st.just(0.0), st.floats(0.0, 1e3)))
    distrust = draw(st.one_of(st.just(0.0), st.floats(0.0, 50.0)))
    return explanation(
        engagement_received=engagement,
        engagement_saturated=engagement * draw(st.one_of(st.just(1.0), share)),
        endorsements_received=endorsements,
        endorsements_effective=endorsements * draw(share),
        reciprocity_removed=(engagement + endorsements) * draw(share),
        teleport_share=draw(share),
        top_contributors=tuple(Contributor(u, s) for u, s in zip(names, top)),
        distrust_received=distrust,
        trust_kept=draw(share) if distrust > 0 else 1.0,
        credibility_from_young_accounts=draw(share),
        credibility_from_own_cluster=draw(share),
    )


def expected_figures(e: Explanation, maturity: float) -> dict[str, list[int]]:
    """Each part that is not zero once rounded, with the figures its sentence states,
    in the order they are said: the test's own reading of the explanation."""
    out: dict[str, list[int]] = {}
    if e.distrust_received > 0 and round(100 * e.trust_kept) < 100:
        out["distrust"] = [round(100 * e.trust_kept)]
    total = round(100 * sum(c.share for c in e.top_contributors))
    if len(e.top_contributors) == 1 and total > 0:
        out["single_contributor"] = [total]
    elif e.top_contributors and total > 0:
        largest = round(100 * e.top_contributors[0].share)
        out["contributors"] = [total, len(e.top_contributors), largest][: 3 if largest else 2]
    if round(100 * e.credibility_from_own_cluster) > 0:
        out["own_cluster"] = [round(100 * e.credibility_from_own_cluster)]
    if round(100 * e.credibility_from_young_accounts) > 0:
        age = figures(duration(maturity))
        out["young"] = [round(100 * e.credibility_from_young_accounts), *age]
    if round(100 * e.teleport_share) > 0:
        out["own_account"] = [round(100 * e.teleport_share)]
    received = e.engagement_received + e.endorsements_received
    if received > 0 and round(100 * e.reciprocity_removed / received) > 0:
        out["returned"] = [round(100 * e.reciprocity_removed / received)]
    if e.engagement_received > 0:
        counted = round(100 * e.engagement_saturated / e.engagement_received)
        if counted < 100:
            out["saturated"] = [counted]
    return out


def part_of(sentence: str, e: Explanation) -> str:
    for part, phrase in PHRASES.items():
        if phrase is not None and phrase in sentence:
            return part
    assert len(e.top_contributors) == 1 and sentence.endswith(f"{e.top_contributors[0][0]}.")
    return "single_contributor"


@given(explanations(), st.sampled_from([30 * DAY, 7 * DAY, DAY, 3600.0, 90.0]))
def test_each_sentence_states_its_parts_figures_and_no_zero_part_is_said(e, maturity):
    said = summary(e, maturity)
    expected = expected_figures(e, maturity)
    assert len(said) <= 5
    assert [part_of(s, e) for s in said] == list(expected)[:5]
    for sentence in said:
        part = part_of(sentence, e)
        assert figures(sentence) == expected[part], sentence
        # What is kept may be nothing; a share said to come from somewhere never is.
        if part not in ("distrust", "saturated"):
            assert not re.search(r"(?<!\d)0%", sentence), sentence
