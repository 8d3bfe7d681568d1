"""Prometheus metrics (``--metrics-port``), in a registry of the server's own.

Counted as they happen: RPCs by method and status code with a latency histogram, and
refresh durations. Read at scrape time from the engine and the store: events accepted,
users, pairs, write sequence, snapshot age, store size on disk; and the standard
``process_*`` metrics of the server's process (CPU, memory, open files, start time).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    ProcessCollector,
    start_http_server,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from ..core.engine import Engine

LATENCY_BUCKETS = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)


class Metrics:
    """The server's metrics; ``observe_call`` and ``observe_refresh`` are the hooks."""

    def __init__(self, engine: Engine, store_bytes: Callable[[], int] | None = None) -> None:
        self.registry = CollectorRegistry()
        self._rpcs = Counter(
            "scoresvc_rpcs",
            "RPCs handled, by method and status code",
            ["method", "code"],
            registry=self.registry,
        )
        self._latency = Histogram(
            "scoresvc_rpc_duration_seconds",
            "RPC handling time, by method",
            ["method"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self._refresh = Histogram(
            "scoresvc_refresh_duration_seconds",
            "Time to refresh the credibility and publish a snapshot",
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self._state = _EngineCollector(engine, store_bytes)
        self.registry.register(self._state)
        # process_* (CPU seconds, resident memory, open files, start time) of this process
        ProcessCollector(registry=self.registry)
        # label lookups cost more than the update: keep the children
        self._children: dict[tuple[str, str], tuple[Any, Any]] = {}

    def observe_call(self, method: str, code: str, seconds: float) -> None:
        child = self._children.get((method, code))
        if child is None:
            child = (self._rpcs.labels(method, code), self._latency.labels(method))
            self._children[(method, code)] = child
        child[0].inc()
        child[1].observe(seconds)

    def watch_store(self, store_bytes: Callable[[], int]) -> None:
        """Report the data directory's size (once the store is open)."""
        self._state.store_bytes = store_bytes

    def observe_refresh(self, seconds: float) -> None:
        self._refresh.observe(seconds)

    def serve(self, port: int, host: str = "127.0.0.1") -> Any:
        """Expose ``/metrics`` over HTTP; returns the server (``.server_port``)."""
        server, _thread = start_http_server(port, addr=host, registry=self.registry)
        return server


class _EngineCollector(Collector):
    def __init__(self, engine: Engine, store_bytes: Callable[[], int] | None) -> None:
        self.engine = engine
        self.store_bytes = store_bytes

    def collect(self) -> Iterator[Any]:
        engine, snapshot = self.engine, self.engine.snapshot
        yield CounterMetricFamily(
            "scoresvc_events_ingested",
            "Interactions and endorsement events accepted",
            value=engine.events_accepted,
        )
        yield GaugeMetricFamily("scoresvc_users", "Users ever seen", value=engine.n_users)
        yield GaugeMetricFamily(
            "scoresvc_pairs", "Distinct ordered pairs with interactions", value=engine.n_pairs
        )
        yield GaugeMetricFamily(
            "scoresvc_write_sequence",
            "Sequence number of the last write applied",
            value=engine.sequence,
        )
        yield GaugeMetricFamily(
            "scoresvc_snapshot_sequence",
            "Last write included in the published snapshot",
            value=snapshot.sequence,
        )
        yield GaugeMetricFamily(
            "scoresvc_snapshot_age_seconds",
            "Seconds since the published snapshot was built",
            value=engine.snapshot_age_seconds,
        )
        if self.store_bytes is not None:
            yield GaugeMetricFamily(
                "scoresvc_store_bytes",
                "Bytes of the data directory on disk",
                value=self.store_bytes(),
            )
