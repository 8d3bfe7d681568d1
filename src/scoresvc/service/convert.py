"""The proto's messages to and from the domain's results, in one place.

The servicer turns results into responses and the client turns responses back into
the same results (``scoresvc.core.results``). The wire's enums count from an UNSPECIFIED
zero and the domain's do not, so a status crosses only through ``status_to_wire`` and
``status_from_wire``. This module imports the generated stubs and the domain's
vocabulary and nothing else, so a client does not load the engine.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, cast

from google.protobuf import timestamp_pb2

from ..core.change import Cause, ChangePart, ChangeReport
from ..core.history import HistoryPoint
from ..core.model import AccountStatus, seconds_and_nanos
from ..core.moderation import ModerationAction, ModerationKind
from ..core.results import (
    BatchScoreEntry,
    BatchScores,
    Contributor,
    EndorsementEvent,
    Erasure,
    Explanation,
    RankedUser,
    Ranking,
    TopicSummary,
    UserScore,
    WriteResult,
)
from ..core.suspects import Suspect, SuspectEvidence, SuspectKind, SuspectReport
from ..v1 import score_service_pb2 as pb

# ------------------------------------------------------------------ times and enums


def timestamp(seconds: float) -> timestamp_pb2.Timestamp:
    """Unix seconds as a Timestamp (nanos rounded; 1.9999999999 is 2 s, not 1)."""
    whole, nanos = seconds_and_nanos(seconds)
    return timestamp_pb2.Timestamp(seconds=whole, nanos=nanos)


def time_of(stamp: timestamp_pb2.Timestamp) -> float:
    """A Timestamp as unix seconds."""
    return stamp.seconds + stamp.nanos * 1e-9


def seconds_of(message: Any, field: str = "event_time") -> float | None:
    """A Timestamp field as unix seconds, or None (server time) when unset."""
    if not message.HasField(field):
        return None
    return time_of(getattr(message, field))


def status_to_wire(status: int) -> int:
    """A domain ``AccountStatus`` (or its number) as the wire's enum number."""
    return int(status) + 1


def status_from_wire(status: int) -> AccountStatus:
    """The wire's enum number as a domain ``AccountStatus``; ValueError for
    ACCOUNT_STATUS_UNSPECIFIED or an unknown number."""
    if status <= 0:
        raise ValueError(f"{status} is not a known account status")
    return AccountStatus(status - 1)


# ------------------------------------------------------------------ reads


def explanation_to_wire(x: Explanation, e: pb.Explanation) -> None:
    """Fill ``e`` from a domain explanation."""
    e.engagement_received, e.engagement_saturated = x.engagement_received, x.engagement_saturated
    e.endorsements_received = x.endorsements_received
    e.endorsements_effective = x.endorsements_effective
    e.reciprocity_removed = x.reciprocity_removed
    e.teleport_share = x.teleport_share
    e.top_contributors.extend(pb.Contributor(user_id=u, share=w) for u, w in x.top_contributors)
    e.distrust_received, e.trust_kept = x.distrust_received, x.trust_kept
    e.summary.extend(x.summary)
    e.credibility_from_young_accounts = x.credibility_from_young_accounts
    e.credibility_from_own_cluster = x.credibility_from_own_cluster


def explanation_of(e: pb.Explanation) -> Explanation:
    return Explanation(
        engagement_received=e.engagement_received,
        engagement_saturated=e.engagement_saturated,
        endorsements_received=e.endorsements_received,
        endorsements_effective=e.endorsements_effective,
        reciprocity_removed=e.reciprocity_removed,
        teleport_share=e.teleport_share,
        top_contributors=tuple(Contributor(c.user_id, c.share) for c in e.top_contributors),
        distrust_received=e.distrust_received,
        trust_kept=e.trust_kept,
        credibility_from_young_accounts=e.credibility_from_young_accounts,
        credibility_from_own_cluster=e.credibility_from_own_cluster,
        summary=tuple(e.summary),
    )


def score_to_wire(score: UserScore) -> pb.ScoreResponse:
    response = pb.ScoreResponse(
        user_id=score.user_id,
        score=score.score,
        influence=score.influence,
        percentile=score.percentile,
        topic=score.topic,
        sequence=score.sequence,
        compute_time=timestamp(score.compute_time),
        status=cast(Any, status_to_wire(score.status)),
    )
    explanation_to_wire(score.explanation, response.explanation)
    return response


def score_of(response: pb.ScoreResponse) -> UserScore:
    return UserScore(
        user_id=response.user_id,
        topic=response.topic,
        score=response.score,
        influence=response.influence,
        percentile=response.percentile,
        status=status_from_wire(response.status),
        explanation=explanation_of(response.explanation),
        sequence=response.sequence,
        compute_time=time_of(response.compute_time),
    )


def ranked_to_wire(users: Iterable[RankedUser]) -> list[pb.RankedUser]:
    return [pb.RankedUser(user_id=u.user_id, score=u.score, influence=u.influence) for u in users]


def ranking_of(response: pb.TopUsersResponse) -> Ranking:
    return Ranking(
        users=tuple(RankedUser(u.user_id, u.score, u.influence) for u in response.users),
        sequence=response.sequence,
        compute_time=time_of(response.compute_time),
    )


def batch_scores_of(response: pb.BatchScoreResponse) -> BatchScores:
    return BatchScores(
        entries=tuple(
            BatchScoreEntry(e.user_id, e.found, e.score, e.influence, e.percentile)
            for e in response.entries
        ),
        sequence=response.sequence,
        compute_time=time_of(response.compute_time),
    )


def endorsement_to_wire(e: EndorsementEvent) -> pb.EndorsementEvent:
    return pb.EndorsementEvent(
        endorser_id=e.endorser_id,
        endorsee_id=e.endorsee_id,
        topic=e.topic,
        event_time=timestamp(e.event_time),
        retracted=e.retracted,
        sequence=e.sequence,
        decides_current_state=e.decides_current_state,
        distrust=e.distrust,
    )


def endorsement_of(m: pb.EndorsementEvent) -> EndorsementEvent:
    return EndorsementEvent(
        endorser_id=m.endorser_id,
        endorsee_id=m.endorsee_id,
        topic=m.topic,
        event_time=time_of(m.event_time),
        retracted=m.retracted,
        sequence=m.sequence,
        decides_current_state=m.decides_current_state,
        distrust=m.distrust,
    )


def topics_to_wire(topics: Iterable[TopicSummary]) -> list[pb.TopicSummary]:
    return [pb.TopicSummary(topic=t.topic, endorsee_count=t.endorsee_count) for t in topics]


def topic_of(m: pb.TopicSummary) -> TopicSummary:
    return TopicSummary(m.topic, m.endorsee_count)


def suspect_to_wire(s: Suspect, cluster_id: str = "") -> pb.Suspect:
    e = s.evidence
    return pb.Suspect(
        kind=cast(Any, int(s.kind)),
        score=s.score,
        member_ids=s.member_ids,
        beneficiary_ids=s.beneficiary_ids,
        evidence=pb.SuspectEvidence(**{f: getattr(e, f) for f in _EVIDENCE_FIELDS}),
        cluster_id=cluster_id,
    )


def erasure_to_wire(e: Erasure) -> pb.EraseUserResponse:
    return pb.EraseUserResponse(
        sequence=e.sequence,
        events_removed=e.events,
        interaction_links_removed=e.interaction_links,
        endorsement_events_removed=e.endorsement_events,
        distrust_events_removed=e.distrust_events,
        accounts_removed=e.accounts,
    )


def erasure_of(m: pb.EraseUserResponse) -> Erasure:
    return Erasure(
        sequence=m.sequence,
        interaction_links=m.interaction_links_removed,
        endorsement_events=m.endorsement_events_removed,
        distrust_events=m.distrust_events_removed,
        accounts=m.accounts_removed,
    )


def moderation_to_wire(a: ModerationAction) -> pb.ModerationAction:
    return pb.ModerationAction(
        action_id=a.action_id,
        kind=cast(Any, int(a.kind)),
        sequence=a.sequence,
        action_time=timestamp(a.time),
        actor=a.actor,
        reason=a.reason,
        user_ids=a.user_ids,
        pairs=a.pairs,
        endorsement_events=a.endorsement_events,
        distrust_events=a.distrust_events,
        restores=a.restores,
        restored_by=a.restored_by,
    )


def moderation_of(m: pb.ModerationAction) -> ModerationAction:
    return ModerationAction(
        action_id=m.action_id,
        kind=ModerationKind(m.kind),
        sequence=m.sequence,
        time=time_of(m.action_time),
        actor=m.actor,
        reason=m.reason,
        user_ids=tuple(m.user_ids),
        pairs=m.pairs,
        endorsement_events=m.endorsement_events,
        distrust_events=m.distrust_events,
        restores=m.restores,
        restored_by=m.restored_by,
    )


def suspect_of(m: pb.Suspect) -> Suspect:
    return Suspect(
        kind=SuspectKind(m.kind),
        score=m.score,
        member_ids=tuple(m.member_ids),
        beneficiary_ids=tuple(m.beneficiary_ids),
        evidence=SuspectEvidence(**{f: getattr(m.evidence, f) for f in _EVIDENCE_FIELDS}),
        cluster_id=m.cluster_id,
    )


def suspect_report_of(pages: Sequence[pb.ListSuspectsResponse]) -> SuspectReport:
    """The pages of one report (at least one) as the report."""
    last = pages[-1]
    return SuspectReport(
        suspects=tuple(suspect_of(s) for page in pages for s in page.suspects),
        sequence=last.sequence,
        compute_time=time_of(last.compute_time),
        seconds=last.computation_seconds,
    )


#: The evidence's fields, named alike in the domain and on the wire.
_EVIDENCE_FIELDS = tuple(SuspectEvidence.__dataclass_fields__)


def history_point_to_wire(p: HistoryPoint) -> pb.ScoreHistoryPoint:
    # Points are recorded to the microsecond, which a float of unix seconds holds only
    # to about 0.2 us: rounded back, the wire carries the recorded time exactly.
    micros = round(p.time * 1e6)
    record_time = timestamp_pb2.Timestamp(
        seconds=micros // 1_000_000, nanos=micros % 1_000_000 * 1000
    )
    return pb.ScoreHistoryPoint(
        record_time=record_time,
        compute_time=timestamp(p.compute_time),
        sequence=p.sequence,
        status=cast(Any, status_to_wire(p.status)),
        score=p.score,
        influence=p.influence,
        percentile=p.percentile,
        engagement_received=p.engagement_received,
        engagement_saturated=p.engagement_saturated,
        endorsements_received=p.endorsements_received,
        endorsements_effective=p.endorsements_effective,
        reciprocity_removed=p.reciprocity_removed,
        teleport_share=p.teleport_share,
    )


def history_point_of(m: pb.ScoreHistoryPoint, topic: str) -> HistoryPoint:
    return HistoryPoint(
        time=time_of(m.record_time),
        compute_time=time_of(m.compute_time),
        sequence=m.sequence,
        topic=topic,
        status=status_from_wire(m.status),
        score=m.score,
        influence=m.influence,
        percentile=m.percentile,
        engagement_received=m.engagement_received,
        engagement_saturated=m.engagement_saturated,
        endorsements_received=m.endorsements_received,
        endorsements_effective=m.endorsements_effective,
        reciprocity_removed=m.reciprocity_removed,
        teleport_share=m.teleport_share,
    )


# ------------------------------------------------------------------ writes


def write_result_of(response: Any) -> WriteResult:
    """Any write's response: batches say how many events they carried, the rest one."""
    if isinstance(response, pb.RecordInteractionsResponse):
        return WriteResult(response.sequence, response.accepted)
    if isinstance(response, (pb.EndorseResponse, pb.RetractEndorsementResponse)):
        return WriteResult(response.sequence, endorsement_live=response.endorsement_live)
    if isinstance(response, (pb.DistrustResponse, pb.RetractDistrustResponse)):
        # The domain's one flag says whether the write's endorsement or distrust is live.
        return WriteResult(response.sequence, endorsement_live=response.distrust_live)
    return WriteResult(response.sequence)


def change_to_wire(r: ChangeReport) -> pb.ExplainChangeResponse:
    return pb.ExplainChangeResponse(
        user_id=r.user_id,
        from_time=timestamp(r.from_time),
        to_time=timestamp(r.to_time),
        score_before=r.score_before,
        score_after=r.score_after,
        influence_before=r.influence_before,
        influence_after=r.influence_after,
        parts=[
            pb.ChangePart(
                cause=cast(Any, int(p.cause)),
                contributor_id=p.contributor_id,
                influence_change=p.influence_change,
                score_change=p.score_change,
                events=[endorsement_to_wire(e) for e in p.events],
                moderation_action_ids=p.moderation_action_ids,
            )
            for p in r.parts
        ],
        summary=r.summary,
    )


def change_of(m: pb.ExplainChangeResponse) -> ChangeReport:
    return ChangeReport(
        user_id=m.user_id,
        from_time=time_of(m.from_time),
        to_time=time_of(m.to_time),
        score_before=m.score_before,
        score_after=m.score_after,
        influence_before=m.influence_before,
        influence_after=m.influence_after,
        parts=tuple(
            ChangePart(
                Cause(p.cause),
                p.influence_change,
                p.score_change,
                p.contributor_id,
                tuple(endorsement_of(e) for e in p.events),
                tuple(p.moderation_action_ids),
            )
            for p in m.parts
        ),
        summary=tuple(m.summary),
    )
