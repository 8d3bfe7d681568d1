"""Write sequencing: every accepted write gets the next number, is journaled before it
is applied (when a journal is attached), and a repeated request id gets the first
answer (``RequestLedger``). The engine supplies what applying a record means.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable
from typing import Any

from .ledger import RequestLedger
from .records import Journal, WriteRecord
from .results import WriteResult

#: Applies a numbered record to the state (the lock held): events accepted, and for an
#: endorsement or distrust event whether it is live after it.
Apply = Callable[[WriteRecord], tuple[int, bool | None]]


class Sequencer:
    """The ingest lock, the sequence numbers, the journal and the request ledger."""

    def __init__(self, apply: Apply) -> None:
        self.lock = threading.Lock()  # the engine's ingest lock
        self.requests = RequestLedger()
        self.sequence = 0  # of the last write applied
        self.assigned = 0  # of the last write given a number (applied or journaling)
        self.events_accepted = 0  # since this process started
        self.journal: Journal | None = None
        # Records handed to the journal and not yet applied or discarded: checks of
        # later writes count them (an endorser's daily limit).
        self.in_flight: dict[int, WriteRecord] = {}
        # Weakly: the engine owns this sequencer, and a cycle through its bound method
        # would keep a dropped engine's memory until the collector finds it.
        self._apply_to_state = weakref.WeakMethod(apply)  # type: ignore[arg-type]

    def write(
        self,
        request_id: str,
        fingerprint: tuple[Any, ...],
        make_record: Callable[[int], WriteRecord],
    ) -> WriteResult:
        """Give ``make_record`` the next sequence number (under the lock, where it may
        check the state and raise), journal and apply the record, and wait for it
        outside the lock; a repeated request id gets the first answer."""
        with self.lock:
            wait = self.requests.answer(request_id, fingerprint) if request_id else None
            if wait is None:
                record = make_record(self.assigned + 1)
                if self.journal is None:
                    return self.apply(record)
                wait = self.journal(record)
                self.in_flight[record.sequence] = record
                self.assigned = record.sequence
                if request_id:
                    self.requests.queue(request_id, fingerprint, wait)
        return wait()

    def replay(self, record: WriteRecord) -> WriteResult:
        """Apply a journaled write: at start-up, and as the journal commits each one."""
        with self.lock:
            if record.sequence <= self.sequence:
                raise ValueError(f"record {record.sequence} is not after sequence {self.sequence}")
            return self.apply(record)

    def discard(self, record: WriteRecord) -> None:
        """Forget a queued write the journal could not store (it is never applied)."""
        with self.lock:
            self.in_flight.pop(record.sequence, None)
            if record.request_id:
                self.requests.forget(record.request_id)

    def apply(self, record: WriteRecord) -> WriteResult:
        """Apply a numbered record (the lock held)."""
        try:
            apply = self._apply_to_state()
            if apply is None:
                raise RuntimeError("the engine applying the writes was dropped")
            accepted, live = apply(record)
        finally:
            self.in_flight.pop(record.sequence, None)
        self.sequence = record.sequence
        self.assigned = max(self.assigned, record.sequence)
        self.events_accepted += accepted
        result = WriteResult(record.sequence, accepted, live)
        if record.request_id:
            self.requests.remember(record.request_id, record.fingerprint, result)
        return result

    def restart_at(self, sequence: int) -> None:
        """Continue after ``sequence`` (a restored state's)."""
        self.sequence = self.assigned = sequence
