"""The request ledger: a request id answers the same while it is remembered, and the
ledger forgets the oldest ids past its age and count."""

from __future__ import annotations

import numpy as np
import pytest

from scoresvc.core.errors import Conflict
from scoresvc.core.ledger import RequestLedger
from scoresvc.core.records import WriteResult


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_a_remembered_request_answers_the_same_and_a_changed_one_conflicts():
    ledger = RequestLedger()
    ledger.remember("r1", ("status", "ana", 2), WriteResult(7, 1))
    answer = ledger.answer("r1", ("status", "ana", 2))
    assert answer is not None and answer() == WriteResult(7, 1)
    with pytest.raises(Conflict):
        ledger.answer("r1", ("status", "ana", 3))
    assert ledger.answer("r2", ("status", "ana", 2)) is None


def test_the_ledger_forgets_the_oldest_requests_past_its_count():
    ledger = RequestLedger(max_entries=3)
    for i in range(5):
        ledger.remember(f"r{i}", ("n", i), WriteResult(i + 1))
    assert [f"r{i}" in ledger for i in range(5)] == [False, False, True, True, True]
    assert ledger.answer("r0", ("n", 0)) is None


def test_the_ledger_forgets_requests_older_than_its_age():
    clock = Clock(1000.0)
    ledger = RequestLedger(max_age_seconds=60.0, clock=clock)
    ledger.remember("old", ("n", 1), WriteResult(1))
    clock.now += 30
    ledger.remember("newer", ("n", 2), WriteResult(2))
    clock.now += 31
    ledger.remember("newest", ("n", 3), WriteResult(3))
    assert "old" not in ledger and "newer" in ledger and "newest" in ledger


def test_the_ledger_round_trips_through_arrays_and_ages_while_stored():
    clock = Clock(1000.0)
    ledger = RequestLedger(max_age_seconds=60.0, clock=clock)
    ledger.remember("a", ("interactions", "0f" * 16), WriteResult(1, 3))
    clock.now += 50
    ledger.remember("é", ("endorse", "ana", "bo", "", None), WriteResult(2))
    arrays = ledger.arrays()
    assert all(isinstance(a, np.ndarray) for a in arrays.values())
    clock.now += 20  # "a" is 70 s old by now
    again = RequestLedger(max_age_seconds=60.0, clock=clock)
    again.restore(arrays)
    assert "a" not in again
    answer = again.answer("é", ("endorse", "ana", "bo", "", None))
    assert answer is not None and answer() == WriteResult(2)
