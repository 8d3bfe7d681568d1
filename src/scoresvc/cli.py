"""``scoresvc``: serve, demo, export, import, batch, token.

Every flag can also be set with an environment variable: ``--time-step`` is
``SCORESVC_TIME_STEP`` and so on; a flag on the command line wins.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import grpc

from . import archive, batch, checkpoint
from .auth import ROLES, Authenticator, TokenStore
from .engine import Engine, EngineState
from .metrics import Metrics
from .model import AccountStatus, ModelParams
from .server import ScoreServer, ServerSettings
from .store import Store
from .synthetic import community

log = logging.getLogger("scoresvc")


def _env(name: str, default: object) -> object:
    return os.environ.get("SCORESVC_" + name.upper().replace("-", "_"), default)


def _add(parser: argparse.ArgumentParser, flag: str, kind: type, default: object, doc: str) -> None:
    value = _env(flag.lstrip("-"), default)
    parser.add_argument(
        flag,
        type=kind,
        default=kind(value) if value is not None else None,
        help=f"{doc} (env SCORESVC_{flag.lstrip('-').upper().replace('-', '_')},"
        f" default {default})",
    )


def _server_flags(parser: argparse.ArgumentParser, data_dir: str) -> None:
    defaults = ServerSettings()
    params = ModelParams()
    _add(parser, "--host", str, "127.0.0.1", "address to listen on")
    _add(parser, "--data-dir", str, data_dir, "where writes are stored ('' keeps them in memory)")
    _add(
        parser,
        "--durability",
        str,
        "full",
        "full: a write survives power loss; normal: it survives a process crash",
    )
    _add(
        parser,
        "--checkpoint-events",
        int,
        5_000_000,
        "checkpoint the state after this many events (restarts replay less)",
    )
    _add(
        parser,
        "--checkpoint-seconds",
        float,
        600.0,
        "checkpoint the state at least this often while writes arrive",
    )
    _add(parser, "--port", int, 50051, "port to listen on (0 picks a free one)")
    _add(parser, "--workers", int, defaults.workers, "RPC worker threads")
    _add(parser, "--threads", int, os.cpu_count() or 1, "threads of the parallel kernels")
    _add(
        parser,
        "--time-step",
        float,
        defaults.time_step_seconds,
        "snapshots are evaluated at times rounded to this many seconds",
    )
    _add(
        parser,
        "--refresh-gap",
        float,
        defaults.refresh_gap_seconds,
        "shortest gap between refreshes, in seconds",
    )
    _add(
        parser,
        "--max-staleness",
        float,
        defaults.max_staleness_seconds,
        "longest a write waits for a snapshot that includes it, in seconds",
    )
    _add(
        parser,
        "--max-wait",
        float,
        defaults.max_wait_seconds,
        "longest a read with min_sequence waits for its snapshot, in seconds",
    )
    _add(
        parser,
        "--max-message-bytes",
        int,
        defaults.max_receive_message_bytes,
        "largest request accepted, in bytes",
    )
    _add(
        parser,
        "--grace",
        float,
        defaults.grace_seconds,
        "seconds in-flight calls get to finish on SIGTERM",
    )
    _add(
        parser,
        "--daily-endorsement-limit",
        int,
        params.daily_endorsement_limit,
        "endorsements per endorser per 24 hours (0 turns the limit off)",
    )
    _add(parser, "--log-level", str, "INFO", "logging level")
    _add(parser, "--log-format", str, "text", "text, or json (one object a line)")
    _add(parser, "--tls-cert", str, "", "PEM certificate chain: serve TLS")
    _add(parser, "--tls-key", str, "", "PEM private key of --tls-cert")
    _add(parser, "--tls-client-ca", str, "", "PEM CA bundle: require client certificates")
    _add(parser, "--metrics-port", int, 0, "serve Prometheus metrics on this port (0: off)")
    _add(parser, "--metrics-host", str, "127.0.0.1", "address of the metrics endpoint")
    _add(
        parser,
        "--max-concurrent-rpcs",
        int,
        defaults.max_concurrent_rpcs,
        "calls in progress at once (more: RESOURCE_EXHAUSTED)",
    )
    _add(
        parser,
        "--max-batch-rows",
        int,
        defaults.max_batch_rows,
        "interactions in one RecordInteractions call",
    )
    _add(
        parser,
        "--rate-limit",
        float,
        defaults.rate_per_caller,
        "requests per second per caller, bursts of twice that (0: no limit)",
    )
    parser.add_argument(
        "--insecure-no-auth",
        action="store_true",
        default=str(_env("insecure-no-auth", "")).lower() in ("1", "true", "yes"),
        help="serve a non-loopback address without tokens (env SCORESVC_INSECURE_NO_AUTH)",
    )


def _offline_flags(parser: argparse.ArgumentParser) -> None:
    """What the commands that build an engine without serving share with serve."""
    _add(
        parser,
        "--daily-endorsement-limit",
        int,
        ModelParams().daily_endorsement_limit,
        "as for serve",
    )
    _add(parser, "--threads", int, os.cpu_count() or 1, "threads of the parallel kernels")
    _add(parser, "--log-level", str, "INFO", "logging level")


def _settings(args: argparse.Namespace) -> ServerSettings:
    return ServerSettings(
        workers=args.workers,
        refresh_gap_seconds=args.refresh_gap,
        max_staleness_seconds=args.max_staleness,
        max_wait_seconds=args.max_wait,
        time_step_seconds=args.time_step,
        max_receive_message_bytes=args.max_message_bytes,
        grace_seconds=args.grace,
        max_concurrent_rpcs=args.max_concurrent_rpcs,
        max_batch_rows=args.max_batch_rows,
        rate_per_caller=args.rate_limit,
    )


LOOPBACK = ("127.0.0.1", "::1", "[::1]", "localhost")


class _UsageError(Exception):
    """A configuration the CLI refuses, with what to do instead."""


def _server(args: argparse.Namespace, engine: Engine) -> ScoreServer:
    """The server the flags describe: auth, TLS, metrics."""
    loopback = args.host in LOOPBACK or args.host.startswith("127.")
    required = not loopback and not args.insecure_no_auth
    authenticator = None
    if args.data_dir:
        authenticator = Authenticator(TokenStore(args.data_dir), required=required)
    if required and (authenticator is None or len(authenticator) == 0):
        raise _UsageError(
            f"serving {args.host} needs tokens: create one with 'scoresvc token create"
            f" --data-dir DIR --name NAME --role ROLE', or pass --insecure-no-auth"
        )
    if not loopback and args.insecure_no_auth and (authenticator is None or not len(authenticator)):
        log.warning(
            "*** --insecure-no-auth: anyone who can reach %s may read and write scores ***",
            args.host,
        )
    credentials = None
    if args.tls_cert or args.tls_key:
        if not (args.tls_cert and args.tls_key):
            raise _UsageError("--tls-cert and --tls-key go together")
        client_ca = Path(args.tls_client_ca).read_bytes() if args.tls_client_ca else None
        credentials = grpc.ssl_server_credentials(
            [(Path(args.tls_key).read_bytes(), Path(args.tls_cert).read_bytes())],
            root_certificates=client_ca,
            require_client_auth=client_ca is not None,
        )
    elif args.tls_client_ca:
        raise _UsageError("--tls-client-ca needs --tls-cert and --tls-key")
    metrics = Metrics(engine) if args.metrics_port else None
    server = ScoreServer(
        engine,
        f"{args.host}:{args.port}",
        _settings(args),
        authenticator=authenticator,
        credentials=credentials,
        metrics=metrics,
    )
    if metrics is not None:
        endpoint = metrics.serve(args.metrics_port, args.metrics_host)
        log.info("metrics on http://%s:%d/metrics", args.metrics_host, endpoint.server_port)
    return server


def _engine(args: argparse.Namespace) -> Engine:
    return Engine(
        ModelParams(daily_endorsement_limit=args.daily_endorsement_limit), threads=args.threads
    )


def _run(server: ScoreServer, prepare: Callable[[], None]) -> int:
    """Serve until SIGTERM or SIGINT, then drain in-flight calls. ``prepare`` runs
    after the port is bound (health says NOT_SERVING until it returns)."""
    stopping = threading.Event()
    failed: list[BaseException] = []

    def on_signal(signum: int, _frame: object) -> None:
        log.info("received %s, draining", signal.Signals(signum).name)
        stopping.set()

    def start() -> None:
        try:
            prepare()
            server.mark_ready()
        except Exception as exc:
            log.exception("start-up failed")
            failed.append(exc)
            stopping.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    server.start(ready=False)
    # The port line is for scripts (and tests) that start the server on port 0.
    print(f"scoresvc listening on {server.address}", flush=True)
    threading.Thread(target=start, name="scoresvc-start", daemon=True).start()
    stopping.wait()
    server.stop()
    log.info("stopped")
    return 1 if failed else 0


def _open_store(
    args: argparse.Namespace, engine: Engine, snapshot: EngineState | None = None
) -> Store | None:
    """The data directory opened and loaded into ``engine`` (None: in memory), with
    ``snapshot`` (a batch run's state) as its starting point when given."""
    if not args.data_dir:
        log.warning("no --data-dir: writes are kept in memory only")
        if snapshot is not None:
            engine.restore(snapshot)
        return None
    if snapshot is not None:
        with Store(args.data_dir) as empty:
            checkpoint.write(empty.checkpoint_dir, snapshot)
    store = Store(
        args.data_dir,
        args.durability,
        checkpoint_events=args.checkpoint_events,
        checkpoint_seconds=args.checkpoint_seconds,
    )
    store.load_into(engine, lambda done, total: log.info("replaying writes: %d of %d", done, total))
    return store


def _batch_snapshot(args: argparse.Namespace) -> EngineState | None:
    """The state a batch run wrote beside ``--snapshot`` (None without the flag),
    checked before the server starts: the data directory must hold nothing yet."""
    if not getattr(args, "snapshot", ""):
        return None
    if args.data_dir and Path(args.data_dir).exists():
        with Store(args.data_dir) as existing:
            if existing.count() or checkpoint.checkpoints(existing.checkpoint_dir):
                raise _UsageError(
                    f"--snapshot needs an empty data directory; {args.data_dir} holds data"
                )
    directory = batch.state_dir(args.snapshot)
    state = checkpoint.latest(directory)
    if state is None:
        raise _UsageError(
            f"{directory} holds no state: run 'scoresvc batch' with --out {args.snapshot}"
        )
    log.info("serving the batch snapshot %s (write %d)", args.snapshot, state.sequence)
    return state


def serve(args: argparse.Namespace) -> int:
    engine = _engine(args)
    snapshot = _batch_snapshot(args)
    server = _server(args, engine)
    stores: list[Store] = []

    def prepare() -> None:
        store = _open_store(args, engine, snapshot)
        if store is not None:
            stores.append(store)
            if server.metrics is not None:
                server.metrics.watch_store(store.size_bytes)

    try:
        return _run(server, prepare)
    finally:
        for store in stores:
            store.close()


def demo(args: argparse.Namespace) -> int:
    """Serve a seeded synthetic community so scores mean something at once. With a
    data directory the community is generated once and replayed afterwards."""
    engine = _engine(args)
    server = _server(args, engine)

    def load() -> None:
        started = time.perf_counter()
        _open_store(args, engine)
        if engine.sequence == 0:
            community_ = community(args.events, args.users, seed=args.seed, end=time.time())
            engine.load_events(community_)
            assert community_.user_ids is not None
            for uid in community_.user_ids[: args.seeds]:
                engine.set_status(uid, AccountStatus.SEED)
        engine.refresh()
        top = engine.snapshot.top(3)
        log.info(
            "demo community: %d users ready in %.1f s; try user %s",
            engine.n_users,
            time.perf_counter() - started,
            top[0][0] if top else "-",
        )

    return _run(server, load)


class _ProgressBars:
    """A tqdm bar per table for export and import (on stderr; plain when not a TTY)."""

    def __init__(self, verb: str) -> None:
        from tqdm import tqdm

        self._tqdm = tqdm
        self._verb = verb
        self._bars: dict[str, Any] = {}

    def __call__(self, table: str, done: int, total: int) -> None:
        bar = self._bars.get(table)
        if bar is None:
            bar = self._tqdm(
                desc=f"{self._verb} {table}",
                total=total if total >= 0 else None,
                unit=" rows",
                unit_scale=True,
                file=sys.stderr,
                mininterval=0.5,
            )
            self._bars[table] = bar
        bar.update(done - bar.n)
        if total >= 0 and bar.total != total:
            bar.total = total
            bar.refresh()

    def close(self) -> None:
        for bar in self._bars.values():
            bar.close()


def export_(args: argparse.Namespace) -> int:
    """Export every event of a data directory (a running server may keep serving)."""
    engine = _engine(args)
    with Store(args.data_dir, read_only=True) as store:
        store.load_into(engine)
    bars = _ProgressBars("export")
    try:
        manifest = archive.export(engine, args.out, args.format, bars)
    finally:
        bars.close()
    rows = ", ".join(f"{t['rows']:,} {name}" for name, t in manifest["tables"].items())
    log.info("exported write %d to %s: %s", manifest["sequence"], args.out, rows)
    return 0


def import_(args: argparse.Namespace) -> int:
    """Import an archive into a data directory (no server may be running on it)."""
    engine = _engine(args)
    store = Store(args.data_dir, args.durability)
    bars = _ProgressBars("import")
    try:
        store.load_into(engine)
        before = engine.sequence
        applied = archive.import_into(engine, args.input, bars)
    finally:
        bars.close()
        store.close()  # with a checkpoint: the next start replays nothing
    log.info(
        "imported %d events from %s as writes %d-%d",
        applied,
        args.input,
        before + 1,
        engine.sequence,
    )
    return 0


def token(args: argparse.Namespace) -> int:
    """Create, list or revoke the bearer tokens of a data directory."""
    tokens = TokenStore(args.data_dir)
    if args.action == "create":
        created = tokens.create(args.name, args.role)
        print(f"token for {args.name!r} ({args.role}); shown once, store it now:")
        print(created)
    elif args.action == "list":
        for entry in tokens.entries():
            created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(entry["created"]))
            print(f"{entry['name']}\t{entry['role']}\t{entry['id']}\t{created}")
    elif not tokens.revoke(args.name):
        raise _UsageError(f"no token named {args.name!r}")
    else:
        print(f"revoked {args.name!r}")
    return 0


class _JsonFormatter(logging.Formatter):
    """One JSON object a line: time, level, logger, message, and a call's fields."""

    FIELDS = ("method", "code", "caller", "ms", "request_id")

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        out.update({k: getattr(record, k) for k in self.FIELDS if hasattr(record, k)})
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out)


def batch_(args: argparse.Namespace) -> int:
    """Recompute every score from an archive on Dask distributed."""
    try:
        from distributed import Client, LocalCluster
    except ImportError:
        raise _UsageError("batch needs Dask: pip install 'scoresvc[distributed]'") from None
    from tqdm import tqdm

    as_of = batch.parse_time(args.as_of) if args.as_of else time.time()
    if args.scheduler:
        client = Client(args.scheduler)
        cluster = None
    else:
        cluster = LocalCluster(
            n_workers=args.local_workers, threads_per_worker=1, dashboard_address=":0"
        )
        client = Client(cluster)
    steps = tqdm(desc="batch", unit=" steps", file=sys.stderr, mininterval=0.5)
    try:

        def progress(message: str) -> None:
            steps.set_postfix_str(message)
            steps.update()
            log.info("%s", message)

        result = batch.run(
            client,
            args.input,
            as_of,
            ModelParams(daily_endorsement_limit=args.daily_endorsement_limit),
            tolerance=args.tolerance,
            topics=args.topics,
            state=True,
            progress=progress,
        )
        written = batch.write_scores(result, args.out)
    finally:
        steps.close()
        client.close()
        if cluster is not None:
            cluster.close()
    log.info(
        "%d users scored at %s in %.1f s (%d iterations): %s",
        len(result.user_ids),
        time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(as_of)),
        result.seconds,
        result.iterations,
        ", ".join(str(w) for w in written),
    )
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="scoresvc", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    p_serve = commands.add_parser("serve", help="serve the ScoreService API")
    _server_flags(p_serve, "scoresvc-data")
    _add(p_serve, "--snapshot", str, "", "serve a batch run's scores.parquet, then new events")
    p_serve.set_defaults(run=serve)
    p_demo = commands.add_parser("demo", help="serve a seeded synthetic community")
    _server_flags(p_demo, "")
    _add(p_demo, "--users", int, 20_000, "users in the demo community")
    _add(p_demo, "--events", int, 400_000, "events in the demo community")
    _add(p_demo, "--seeds", int, 0, "how many of the first users are seed accounts")
    _add(p_demo, "--seed", int, 7, "random seed of the generator")
    p_demo.set_defaults(run=demo)
    p_export = commands.add_parser("export", help="export every event as Parquet or CSV")
    _add(p_export, "--data-dir", str, "scoresvc-data", "the data directory to export")
    _add(p_export, "--out", str, "scoresvc-export", "directory to write the archive to")
    _add(p_export, "--format", str, "parquet", "parquet, or csv for small data")
    _offline_flags(p_export)
    p_export.set_defaults(run=export_)
    p_import = commands.add_parser("import", help="import an archive into a data directory")
    _add(p_import, "--data-dir", str, "scoresvc-data", "the data directory to import into")
    _add(p_import, "--input", str, "scoresvc-export", "the archive directory to read")
    _add(p_import, "--durability", str, "full", "as for serve")
    _offline_flags(p_import)
    p_import.set_defaults(run=import_)
    p_batch = commands.add_parser("batch", help="recompute every score on Dask from an archive")
    _add(p_batch, "--input", str, "scoresvc-export", "the archive directory (scoresvc export)")
    _add(p_batch, "--as-of", str, "", "evaluation time, RFC 3339 or unix seconds (default now)")
    _add(p_batch, "--out", str, "scores.parquet", "the scores file to write")
    _add(p_batch, "--scheduler", str, "", "a Dask scheduler, tcp://HOST:PORT")
    _add(p_batch, "--local-workers", int, 2, "without --scheduler: local worker processes")
    p_batch.add_argument("--topics", action="store_true", help="also write topic scores")
    _add(p_batch, "--tolerance", float, 1e-13, "stop iterating when the L1 change is below")
    _offline_flags(p_batch)
    p_batch.set_defaults(run=batch_)
    p_token = commands.add_parser("token", help="manage bearer tokens")
    p_token.add_argument("action", choices=["create", "list", "revoke"])
    _add(p_token, "--data-dir", str, "scoresvc-data", "the data directory the tokens guard")
    _add(p_token, "--name", str, "", "who the token is for (create, revoke)")
    p_token.add_argument("--role", choices=ROLES, default="reader", help="create: the role")
    _add(p_token, "--log-level", str, "WARNING", "logging level")
    p_token.set_defaults(run=token)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    handler = logging.StreamHandler(sys.stderr)
    if getattr(args, "log_format", "text") == "json":
        handler.setFormatter(_JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    logging.basicConfig(
        level=getattr(logging, str(args.log_level).upper(), logging.INFO), handlers=[handler]
    )
    try:
        return int(args.run(args))
    except (_UsageError, ValueError) as exc:
        print(f"scoresvc {args.command}: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
