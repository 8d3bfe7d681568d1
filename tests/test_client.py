"""The typed clients, blocking and asyncio, against a real server on 127.0.0.1 port 0:
results in the domain's types and enums, one error type with decoded details, and a
client that loads neither the engine nor the compiled core."""

from __future__ import annotations

import pytest

from scoresvc.convert import status_from_wire, status_to_wire, time_of, timestamp
from scoresvc.model import AccountStatus
from scoresvc.v1 import score_service_pb2 as pb

# ------------------------------------------------------------------ conversions


@pytest.mark.parametrize(
    ("seconds", "parts"),
    [
        (1_700_000_000.25, (1_700_000_000, 250_000_000)),
        (1.9999999999, (2, 0)),  # rounds up into the next second, not back to 1 s
        (-0.5, (-1, 500_000_000)),
        (0.0, (0, 0)),
    ],
)
def test_timestamps_round_to_the_nearest_nanosecond(seconds, parts):
    stamp = timestamp(seconds)
    assert (stamp.seconds, stamp.nanos) == parts
    assert time_of(stamp) == pytest.approx(seconds, abs=1e-9)


def test_statuses_cross_the_wire_by_name_not_number():
    wire = {
        AccountStatus.NORMAL: pb.ACCOUNT_STATUS_NORMAL,
        AccountStatus.SEED: pb.ACCOUNT_STATUS_SEED,
        AccountStatus.SUSPENDED: pb.ACCOUNT_STATUS_SUSPENDED,
    }
    for status, number in wire.items():
        assert status_to_wire(status) == number
        assert status_from_wire(number) is status
    with pytest.raises(ValueError):
        status_from_wire(pb.ACCOUNT_STATUS_UNSPECIFIED)
