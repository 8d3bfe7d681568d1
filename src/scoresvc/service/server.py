"""The gRPC server: servicer, health, reflection and the background refresher.

``build_server(address, engine, settings, auth=, tls=, metrics=)`` returns a bound
``ScoreServer`` to ``start``; the CLI and the tests build servers with it. Logging is
configured by the CLI, not here.
"""

from __future__ import annotations

import gc
import importlib.resources
import logging
import math
import ssl
import threading
import time
from collections.abc import Callable
from concurrent import futures
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from google.protobuf import descriptor_pb2
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection, reflection_pb2_grpc

from ..core.engine import Engine
from ..core.snapshot import Snapshot
from ..core.suspects import SuspectWatch
from ..storage.history import CONTRIBUTORS, DEFAULT_INTERVAL_SECONDS, History, HistoryRecorder
from ..v1 import score_service_pb2 as pb
from .auth import Authenticator
from .console import Console, ConsoleEndpoint, tls_context
from .handlers import generic_handler
from .interceptor import CallGuard, CallPolicy
from .metrics import Metrics
from .servicer import ScoreServicer
from .status import RpcError, invalid

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["ScoreService"].full_name
log = logging.getLogger("scoresvc.service.server")


@dataclass(frozen=True)
class ServerSettings:
    """How the server runs (the CLI's flags and SCORESVC_* variables)."""

    # Worker threads for RPCs. Every handler needs the GIL, as does grpcio's poller:
    # on two cores 4 workers served 1.6x the Score QPS of 8 (fewer GIL hand-offs).
    workers: int = 4
    # Shortest gap between refreshes, so a stream of writes is refreshed in batches.
    # Under load the gap grows to four times the last refresh's duration (a refresh takes
    # at most a fifth of the time), never past max_staleness_seconds.
    refresh_gap_seconds: float = 0.05
    # The longest a write waits for a snapshot that includes it.
    max_staleness_seconds: float = 1.0
    # The longest a read with min_sequence waits for its snapshot when the call has no
    # deadline (or a longer one); DEADLINE_EXCEEDED after it.
    max_wait_seconds: float = 30.0
    # Snapshots are evaluated at times rounded down to this step: within a step only
    # changed rows are recomputed; crossing it re-weights every edge (decay is not
    # linear through the saturation log). It is also the longest a snapshot goes
    # without a refresh when nothing is written.
    time_step_seconds: float = 60.0
    max_receive_message_bytes: int = 64 * 1024 * 1024
    grace_seconds: float = 10.0
    # Calls in progress at once; more are refused with RESOURCE_EXHAUSTED by grpcio.
    max_concurrent_rpcs: int = 256
    # Interactions in one RecordInteractions call (INVALID_ARGUMENT past it).
    max_batch_rows: int = 1_000_000
    # Requests per second per caller (token name, or IP address without a token),
    # bursts of twice that; RESOURCE_EXHAUSTED with RetryInfo past it. 0: no limit.
    rate_per_caller: float = 0.0
    # Every user's score is recorded in the history at start-up and this often after.
    history_interval_seconds: float = DEFAULT_INTERVAL_SECONDS


class Refresher:
    """Publishes the engine's snapshots and hands them to reads: refreshes in the
    background within ``refresh_gap`` of a write (and every ``time_step`` regardless),
    and wakes the reads waiting for a sequence (``scoresvc.service.servicer.SnapshotSource``)."""

    def __init__(
        self,
        engine: Engine,
        settings: ServerSettings,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.engine = engine
        self.settings = settings
        self.clock = clock
        self.ready = threading.Event()
        self.on_refresh: Callable[[float], None] | None = None
        self._published = threading.Condition()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="scoresvc-refresher", daemon=True)
        self._last_duration = 0.0
        # The suspect report follows the snapshots in its own thread.
        self.suspects = SuspectWatch(
            engine,
            engine.params.maturity_age_seconds,
            engine.params.damping,
            on_error=lambda error: log.error("suspect report failed", exc_info=error),
        )

    def written(self) -> None:
        """Called after each accepted write."""
        self._wake.set()

    def start(self) -> None:
        self._thread.start()
        self.suspects.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join()
        self.suspects.stop()

    def gap(self) -> float:
        """How long to wait after a write before refreshing."""
        s = self.settings
        return min(s.max_staleness_seconds, max(s.refresh_gap_seconds, 4 * self._last_duration))

    def evaluation_time(self) -> float:
        step = self.settings.time_step_seconds
        now = self.clock()
        return math.floor(now / step) * step if step > 0 else now

    def refresh_now(self) -> None:
        started = time.perf_counter()
        snap = self.engine.refresh(self.evaluation_time())
        self._last_duration = time.perf_counter() - started
        self.suspects.nudge()
        if self.on_refresh is not None:
            self.on_refresh(self._last_duration)
        self._wake_readers()
        log.debug(
            "refreshed to sequence %d in %.1f ms (%s)",
            snap.sequence,
            1000 * (time.perf_counter() - started),
            "full" if snap.stats.get("full") else "incremental",
        )

    def snapshot_for(self, min_sequence: int, context: grpc.ServicerContext) -> Snapshot:
        """The snapshot for a read: the current one, or the first that includes
        ``min_sequence``, waited for within the call's deadline and ``max_wait_seconds``."""
        if not self.ready.is_set():
            raise RpcError(grpc.StatusCode.UNAVAILABLE, "the service is starting", "NOT_READY")
        if min_sequence == 0:  # the page-view path: no lock, no deadline lookup
            return self.engine.snapshot
        if min_sequence < 0:
            raise invalid("min_sequence", "must not be negative")
        if min_sequence > self.engine.sequence:
            raise RpcError(
                grpc.StatusCode.OUT_OF_RANGE,
                f"min_sequence {min_sequence} is ahead of the last write ({self.engine.sequence})",
                "SEQUENCE_AHEAD",
                [("min_sequence", "is ahead of the last accepted write")],
            )
        timeout = self._wait_seconds(context)
        # A caller that goes away ends the wait too: its slot is freed at once.
        context.add_callback(self._wake_readers)
        with self._published:
            ok = self._published.wait_for(
                lambda: self.engine.snapshot.sequence >= min_sequence or not context.is_active(),
                timeout,
            )
        if not context.is_active():
            raise RpcError(grpc.StatusCode.CANCELLED, "the caller went away", "CANCELLED")
        if not ok:
            cap = self.settings.max_wait_seconds
            raise RpcError(
                grpc.StatusCode.DEADLINE_EXCEEDED,
                f"no snapshot includes sequence {min_sequence} yet"
                + (f" (reads wait at most {cap:g} s)" if timeout >= cap else ""),
                "SNAPSHOT_NOT_READY",
            )
        return self.engine.snapshot

    def _wait_seconds(self, context: grpc.ServicerContext) -> float:
        """The call's remaining time, a little early so the answer arrives before the
        deadline, never past the cap: no deadline reads as a practically infinite
        remaining time, which no lock wait accepts."""
        cap = min(self.settings.max_wait_seconds, threading.TIMEOUT_MAX)
        remaining = context.time_remaining()
        if remaining is None or not math.isfinite(remaining):
            return cap
        return max(min(remaining - 0.01, cap), 0.0)

    def _wake_readers(self) -> None:
        with self._published:
            self._published.notify_all()

    def _run(self) -> None:
        step = self.settings.time_step_seconds
        while not self._stop.is_set():
            woken = self._wake.wait(timeout=step if step > 0 else None)
            if self._stop.is_set():
                break
            self._wake.clear()
            if woken and self._stop.wait(self.gap()):  # let a burst gather
                break
            try:
                self.refresh_now()
            except Exception:  # keep serving the last snapshot; the next write retries
                log.exception("refresh failed")


class CommentedReflection(reflection.ReflectionServicer):
    """Server reflection that serves the API's files with their comments.

    grpcio's servicer copies descriptors out of the descriptor pool, which keeps no
    comments. The build writes the protos' descriptor set with them (``scoresvc.v1``'s
    ``scoresvc.protoset``); their source info is grafted onto the pool's copies (the
    same files, so the same element paths), which stay as they were otherwise."""

    def __init__(self, service_names: tuple[str, ...]) -> None:
        super().__init__(service_names)
        data = importlib.resources.files(pb.__package__).joinpath("scoresvc.protoset")
        files = descriptor_pb2.FileDescriptorSet.FromString(data.read_bytes()).file
        self._comments = {f.name: f.source_code_info for f in files}

    def ServerReflectionInfo(self, request_iterator, context):  # type: ignore[no-untyped-def]
        for response in super().ServerReflectionInfo(request_iterator, context):
            if response.HasField("file_descriptor_response"):
                files = response.file_descriptor_response.file_descriptor_proto
                for i, data in enumerate(files):
                    file = descriptor_pb2.FileDescriptorProto.FromString(data)
                    if file.name in self._comments:
                        file.source_code_info.CopyFrom(self._comments[file.name])
                        files[i] = file.SerializeToString()
            yield response


@dataclass(frozen=True)
class Tls:
    """Serve TLS with this PEM certificate chain and private key; with ``client_ca``
    (PEM), require client certificates it signed."""

    certificate_chain: bytes
    private_key: bytes
    client_ca: bytes | None = None

    @classmethod
    def from_files(cls, certificate_chain: str, private_key: str, client_ca: str = "") -> Tls:
        return cls(
            Path(certificate_chain).read_bytes(),
            Path(private_key).read_bytes(),
            Path(client_ca).read_bytes() if client_ca else None,
        )

    def https(self) -> ssl.SSLContext:
        """The same certificate (and client CA) for the console's HTTPS."""
        return tls_context(self.certificate_chain, self.private_key, self.client_ca)

    def credentials(self) -> grpc.ServerCredentials:
        return grpc.ssl_server_credentials(
            [(self.private_key, self.certificate_chain)],
            root_certificates=self.client_ca,
            require_client_auth=self.client_ca is not None,
        )


@dataclass(frozen=True)
class MetricsEndpoint:
    """Where Prometheus reads ``/metrics`` over HTTP (port 0 picks a free one)."""

    port: int = 0
    host: str = "127.0.0.1"


class ScoreServer:
    """A ScoreService on one address with health and reflection, built by
    ``build_server``."""

    def __init__(
        self,
        engine: Engine,
        address: str,
        settings: ServerSettings | None = None,
        *,
        authenticator: Authenticator | None = None,
        credentials: grpc.ServerCredentials | None = None,
        metrics: Metrics | None = None,
        history: History | None = None,
    ) -> None:
        """``authenticator`` None: no auth; ``credentials``: TLS (else plaintext);
        ``metrics``: count calls and refreshes there; ``history``: record scores there
        (None: in a temporary directory of the server's own, removed at ``stop``)."""
        self.engine = engine
        self.settings = settings or ServerSettings()
        self.authenticator = authenticator
        self.refresher = Refresher(engine, self.settings)
        self._owns_history = history is None
        self.history = History.temporary() if history is None else history
        self.recorder = HistoryRecorder(
            self.history,
            lambda: engine.top_inflows(CONTRIBUTORS),
            self.settings.history_interval_seconds,
        )
        self.metrics = metrics
        if metrics is not None:
            self.refresher.on_refresh = metrics.observe_refresh
        self.health = health.HealthServicer()
        self._grpc = self._grpc_server(authenticator)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self._grpc)
        reflection_pb2_grpc.add_ServerReflectionServicer_to_server(
            CommentedReflection((SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME)),
            self._grpc,
        )
        for name in ("", SERVICE_NAME):
            self.health.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)
        if credentials is None:
            self.port = self._grpc.add_insecure_port(address)
        else:
            self.port = self._grpc.add_secure_port(address, credentials)
        if self.port == 0:
            raise OSError(f"could not bind {address}")
        self.address = address.rsplit(":", 1)[0] + f":{self.port}"
        self.metrics_port = 0
        self._metrics_http: Any = None
        self.console: Console | None = None

    def serve_metrics(self, endpoint: MetricsEndpoint) -> None:
        """Serve ``/metrics`` at ``endpoint`` (its port in ``metrics_port``) until ``stop``."""
        if self.metrics is None:
            raise ValueError("a server built without metrics has none to serve")
        self._metrics_http = self.metrics.serve(endpoint.port, endpoint.host)
        self.metrics_port = self._metrics_http.server_port
        log.info("metrics on http://%s:%d/metrics", endpoint.host, self.metrics_port)

    def serve_console(self, endpoint: ConsoleEndpoint, tls: Tls | None = None) -> Console:
        """Serve the console at ``endpoint`` (its port in ``console.port``) until
        ``stop``, with the API's authenticator, and HTTPS with ``tls``."""
        https = None if tls is None else tls.https()
        self.console = Console(self.refresher, self.history, self.authenticator, https)
        self.console.start(endpoint)
        log.info(
            "console on %s://%s:%d/", "https" if https else "http", endpoint.host, self.console.port
        )
        return self.console

    def _grpc_server(self, auth: Authenticator | None) -> grpc.Server:
        """The gRPC server with the ScoreService, each call behind the call guard."""
        s = self.settings
        guard = CallGuard(
            CallPolicy(
                authenticator=auth,
                rate_per_caller=s.rate_per_caller,
                observer=None if self.metrics is None else self.metrics.observe_call,
            )
        )
        server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=s.workers, thread_name_prefix="scoresvc-rpc"),
            options=[
                ("grpc.max_receive_message_length", s.max_receive_message_bytes),
                ("grpc.so_reuseport", 0),
            ],
            maximum_concurrent_rpcs=s.max_concurrent_rpcs,
        )
        servicer = ScoreServicer(self.refresher, s.max_batch_rows, self.history)
        server.add_generic_rpc_handlers((generic_handler(servicer, guard),))
        return server

    def start(self, *, ready: bool = True) -> ScoreServer:
        """Start serving. With ``ready=False`` health stays NOT_SERVING (and writes
        and reads answer UNAVAILABLE) until ``mark_ready`` (after a replay)."""
        self._grpc.start()
        self.refresher.start()
        if ready:
            self.mark_ready()
        return self

    def mark_ready(self) -> None:
        self.refresher.refresh_now()
        self.refresher.suspects.compute_now()
        # The loaded engine is a large, long-lived heap (ids, dicts): keep the cyclic
        # GC from walking it on every full collection.
        gc.freeze()
        self.refresher.ready.set()
        self.recorder.start()  # the start-up point, then one every interval
        for name in ("", SERVICE_NAME):
            self.health.set(name, health_pb2.HealthCheckResponse.SERVING)
        log.info("serving on %s", self.address)

    def stop(self, grace: float | None = None) -> None:
        """Stop taking calls, let in-flight ones finish within ``grace`` seconds, then
        stop serving the console, refreshing and serving metrics."""
        self.health.enter_graceful_shutdown()
        grace = self.settings.grace_seconds if grace is None else grace
        self._grpc.stop(grace).wait()
        if self.console is not None:
            self.console.stop()
        self.recorder.stop()
        if self._owns_history:
            self.history.close()
        self.refresher.stop()
        if self._metrics_http is not None:
            self._metrics_http.shutdown()
            self._metrics_http.server_close()

    def wait(self) -> None:
        self._grpc.wait_for_termination()


def build_server(
    address: str,
    engine: Engine | None = None,
    settings: ServerSettings | None = None,
    *,
    auth: Authenticator | None = None,
    tls: Tls | None = None,
    metrics: MetricsEndpoint | None = None,
    history: History | None = None,
    console: ConsoleEndpoint | None = None,
) -> ScoreServer:
    """A ScoreServer bound to ``address`` (port 0 picks one: see ``.port``), not yet
    started, serving ``engine`` (a new one by default).

    ``auth`` None: no authentication; ``tls`` None: plaintext; ``metrics``: count
    calls and refreshes (``.metrics``) and serve them there from now until ``stop``
    (``.metrics_port``); ``history``: record every user's score there (at start-up and
    every ``settings.history_interval_seconds``) and answer ScoreHistory from it (None:
    a temporary one, removed at ``stop``); ``console``: serve the console there from now
    until ``stop`` (``.console.port``), with ``auth`` and ``tls`` as the API."""
    engine = Engine() if engine is None else engine
    server = ScoreServer(
        engine,
        address,
        settings,
        authenticator=auth,
        credentials=None if tls is None else tls.credentials(),
        metrics=None if metrics is None else Metrics(engine),
        history=history,
    )
    if metrics is not None:
        server.serve_metrics(metrics)
    if console is not None:
        server.serve_console(console, tls)
    return server
