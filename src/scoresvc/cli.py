"""``scoresvc``: serve, demo, export, import, batch, token.

Every flag can also be set with an environment variable: ``--time-step`` is
``SCORESVC_TIME_STEP`` and so on; a flag on the command line wins.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import logging
import math
import os
import shutil
import signal
import socket
import sqlite3
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

from . import __version__
from .batch import recompute as batch
from .core.engine import Engine, EngineState
from .core.errors import ScoreError
from .core.model import AccountStatus, ModelParams
from .service.auth import ROLES, Authenticator, TokenStore
from .service.server import MetricsEndpoint, ScoreServer, ServerSettings, Tls, build_server
from .storage import archive, checkpoint
from .storage.archive import ArchiveError
from .storage.store import CHECKPOINT_DIR, DB_NAME, SYNCHRONOUS, Store, StoreSettings
from .synthetic import community

log = logging.getLogger("scoresvc")


class _Parser(argparse.ArgumentParser):
    """Usage errors as one line naming the flag (exit status 2), not a usage dump."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message} (see {self.prog} --help)\n")


@dataclass(frozen=True)
class _FromEnv:
    """A flag's value taken from its environment variable, converted after parsing so
    a bad variable is reported by name (and never breaks ``--help``)."""

    variable: str
    raw: str
    kind: Callable[[str], Any]
    choices: Sequence[str] | None

    def value(self) -> Any:
        try:
            value = self.kind(self.raw)
        except (ValueError, argparse.ArgumentTypeError) as exc:
            raise _UsageError(f"{self.variable}={self.raw!r}: {_reason(exc)}") from None
        if self.choices is not None and value not in self.choices:
            raise _UsageError(f"{self.variable}={self.raw!r}: not one of {', '.join(self.choices)}")
        return value


def _reason(exc: Exception) -> str:
    if isinstance(exc, argparse.ArgumentTypeError):
        return str(exc)
    return f"not a valid value ({exc})"


def _variable(flag: str) -> str:
    return "SCORESVC_" + flag.lstrip("-").upper().replace("-", "_")


def _add(
    parser: argparse.ArgumentParser,
    flag: str,
    kind: Callable[[str], Any],
    default: object,
    doc: str,
    choices: Sequence[str] | None = None,
) -> None:
    variable = _variable(flag)
    raw = os.environ.get(variable)
    shown = f", default {default}" if default not in ("", None) else ""
    listed = f": one of {', '.join(choices)}" if choices else ""
    parser.add_argument(
        flag,
        type=kind,
        choices=choices,
        metavar=flag.lstrip("-").upper().replace("-", "_"),
        default=default if raw is None else _FromEnv(variable, raw, kind, choices),
        help=f"{doc}{listed} (env {variable}{shown})",
    )


def _from_environment(args: argparse.Namespace) -> None:
    """Convert the values that came from environment variables (see ``_FromEnv``)."""
    for name, value in vars(args).items():
        if isinstance(value, _FromEnv):
            setattr(args, name, value.value())


def _whole(low: int, high: int | None = None) -> Callable[[str], int]:
    """A whole number from ``low`` (to ``high``)."""

    def whole(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < low or (high is not None and value > high):
            bounds = f"from {low} to {high}" if high is not None else f"at least {low}"
            raise argparse.ArgumentTypeError(f"{value} is out of range ({bounds})")
        return value

    return whole


def _number(low: float, *, above: bool = False) -> Callable[[str], float]:
    """A finite number at least ``low`` (above it with ``above``)."""

    def number(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if not math.isfinite(value) or value < low or (above and value == low):
            bounds = f"{'above' if above else 'at least'} {low:g}"
            raise argparse.ArgumentTypeError(f"{text} is out of range ({bounds})")
        return value

    return number


def _path(text: str) -> str:
    """A local path made absolute here, where it was typed (a URL or '' stays as is):
    export's file URIs, Dask workers and log lines then all mean the same file."""
    if not text or "://" in text:
        return text
    return os.path.abspath(os.path.expanduser(text))


def _level(text: str) -> str:
    return text.upper()


PORT = _whole(0, 65535)
LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def _server_flags(parser: argparse.ArgumentParser, data_dir: str) -> None:
    defaults = ServerSettings()
    storage = StoreSettings()
    _add(parser, "--host", str, "127.0.0.1", "address to listen on")
    _add(parser, "--data-dir", _path, data_dir, "where writes are stored ('' keeps them in memory)")
    _add(
        parser,
        "--durability",
        str,
        storage.durability,
        "full: a write survives power loss; normal: it survives a process crash",
        DURABILITY,
    )
    _add(
        parser,
        "--checkpoint-events",
        _whole(1),
        storage.checkpoint_events,
        "checkpoint the state after this many events (restarts replay less)",
    )
    _add(
        parser,
        "--checkpoint-seconds",
        _number(0, above=True),
        storage.checkpoint_seconds,
        "checkpoint the state at least this often while writes arrive",
    )
    _add(parser, "--port", PORT, 50051, "port to listen on (0 picks a free one)")
    _add(parser, "--workers", _whole(1), defaults.workers, "RPC worker threads")
    _add(
        parser,
        "--time-step",
        _number(0, above=True),
        defaults.time_step_seconds,
        "snapshots are evaluated at times rounded to this many seconds",
    )
    _add(
        parser,
        "--refresh-gap",
        _number(0),
        defaults.refresh_gap_seconds,
        "shortest gap between refreshes, in seconds",
    )
    _add(
        parser,
        "--max-staleness",
        _number(0),
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
        _whole(1),
        defaults.max_receive_message_bytes,
        "largest request accepted, in bytes",
    )
    _add(
        parser,
        "--grace",
        _number(0),
        defaults.grace_seconds,
        "seconds in-flight calls get to finish on SIGTERM",
    )
    _add(parser, "--log-format", str, "text", "text, or json (one object a line)", ("text", "json"))
    _add(parser, "--tls-cert", _path, "", "PEM certificate chain: serve TLS")
    _add(parser, "--tls-key", _path, "", "PEM private key of --tls-cert")
    _add(parser, "--tls-client-ca", _path, "", "PEM CA bundle: require client certificates")
    _add(parser, "--metrics-port", PORT, 0, "serve Prometheus metrics on this port (0: off)")
    _add(parser, "--metrics-host", str, MetricsEndpoint().host, "address of the metrics endpoint")
    _add(
        parser,
        "--max-concurrent-rpcs",
        _whole(1),
        defaults.max_concurrent_rpcs,
        "calls in progress at once (more: RESOURCE_EXHAUSTED)",
    )
    _add(
        parser,
        "--max-batch-rows",
        _whole(1),
        defaults.max_batch_rows,
        "interactions in one RecordInteractions call",
    )
    _add(
        parser,
        "--rate-limit",
        _number(0),
        defaults.rate_per_caller,
        "requests per second per caller, bursts of twice that (0: no limit)",
    )
    parser.add_argument(
        "--insecure-no-auth",
        action="store_true",
        default=os.environ.get(_variable("insecure-no-auth"), "").lower() in ("1", "true", "yes"),
        help="serve a non-loopback address without tokens (env SCORESVC_INSECURE_NO_AUTH)",
    )
    _offline_flags(parser)


def _offline_flags(parser: argparse.ArgumentParser, log_level: str = "INFO") -> None:
    """What every command that builds an engine shares with serve."""
    _add(
        parser,
        "--daily-endorsement-limit",
        _whole(0),
        ModelParams().daily_endorsement_limit,
        "endorsements per endorser per 24 hours (0 turns the limit off)",
    )
    _add(
        parser,
        "--topic-min-endorsers",
        _whole(1),
        ModelParams().topic_min_endorsers,
        "distinct endorsers with credibility a user needs to be ranked in a topic",
    )
    _add(parser, "--threads", _whole(1), os.cpu_count() or 1, "threads of the parallel kernels")
    _log_flags(parser, log_level)


def _log_flags(parser: argparse.ArgumentParser, log_level: str) -> None:
    _add(parser, "--log-level", _level, log_level, "logging level", LEVELS)


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
DURABILITY = tuple(SYNCHRONOUS)


class _UsageError(Exception):
    """A configuration the CLI refuses, with what to do instead (exit status 2)."""


class _Failed(Exception):
    """An operation that could not be done as asked (exit status 1)."""


def _read_flag_file(args: argparse.Namespace, name: str) -> bytes:
    path = getattr(args, name)
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise _Failed(f"--{name.replace('_', '-')} {path}: {exc.strerror}") from None


def _tls(args: argparse.Namespace) -> Tls | None:
    if not (args.tls_cert or args.tls_key):
        if args.tls_client_ca:
            raise _UsageError("--tls-client-ca needs --tls-cert and --tls-key")
        return None
    if not (args.tls_cert and args.tls_key):
        raise _UsageError("--tls-cert and --tls-key go together")
    client_ca = _read_flag_file(args, "tls_client_ca") if args.tls_client_ca else None
    return Tls(_read_flag_file(args, "tls_cert"), _read_flag_file(args, "tls_key"), client_ca)


def _server(args: argparse.Namespace, engine: Engine) -> ScoreServer:
    """The server the flags describe (auth, TLS, metrics), its port bound."""
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
    tls = _tls(args)
    metrics = None
    if args.metrics_port:
        metrics = MetricsEndpoint(args.metrics_port, args.metrics_host)
        _check_port(args.metrics_host, args.metrics_port, "--metrics-host, --metrics-port")
    address = f"{args.host}:{args.port}"
    _check_port(args.host, args.port, "--host, --port")
    try:
        return build_server(
            address, engine, _settings(args), auth=authenticator, tls=tls, metrics=metrics
        )
    except (OSError, RuntimeError):  # grpcio says only that it could not bind
        raise _Failed(
            f"cannot listen on {address} (--host, --port): the port is in use"
            " or the address is not this machine's"
        ) from None


def _check_port(host: str, port: int, flags: str) -> None:
    """grpcio tells of a port it cannot bind only in a log line of its own: try first."""
    if port == 0:
        return
    try:
        family, kind, proto, _, where = socket.getaddrinfo(
            host.strip("[]"), port, type=socket.SOCK_STREAM
        )[0]
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as grpcio does
            probe.bind(where)
    except OSError as exc:
        raise _Failed(f"cannot listen on {host}:{port} ({flags}): {exc.strerror}") from None


def _engine(args: argparse.Namespace) -> Engine:
    return Engine(_params(args), threads=args.threads)


def _params(args: argparse.Namespace) -> ModelParams:
    """The model's parameters the shared flags set (``_offline_flags``)."""
    return ModelParams(
        daily_endorsement_limit=args.daily_endorsement_limit,
        topic_min_endorsers=args.topic_min_endorsers,
    )


def _run(server: ScoreServer, prepare: Callable[[], None], log_format: str) -> int:
    """Serve until SIGTERM or SIGINT, then drain in-flight calls. ``prepare`` runs after
    the port is bound (health says NOT_SERVING until it returns); "listening on" is
    printed once it has, and a failure of it is raised here after the server stopped."""
    stopping = threading.Event()
    failed: list[BaseException] = []

    def on_signal(signum: int, _frame: object) -> None:
        log.info("received %s, draining", signal.Signals(signum).name)
        stopping.set()

    def start() -> None:
        try:
            prepare()
            server.mark_ready()
        except BaseException as exc:
            failed.append(exc)
            stopping.set()
            return
        _announce(server.address, log_format)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    server.start(ready=False)
    threading.Thread(target=start, name="scoresvc-start", daemon=True).start()
    stopping.wait()
    server.stop()
    if failed:
        raise failed[0]
    log.info("stopped")
    return 0


def _announce(address: str, log_format: str) -> None:
    """The line scripts (and tests) wait for on stdout: the server is serving, on this
    address (port 0 picks one). A JSON object under ``--log-format json``."""
    message = f"listening on {address}"
    if log_format == "json":
        record = log.makeRecord(
            log.name, logging.INFO, __file__, 0, message, (), None, extra={"address": address}
        )
        line = _JsonFormatter().format(record)
    else:
        line = f"scoresvc {message}"
    print(line, flush=True)


def _holdings(data_dir: str) -> str:
    """The events a data directory holds, in words ('' when it holds none)."""
    path = Path(data_dir)
    writes = 0
    if (path / DB_NAME).exists():
        try:
            with Store(path, read_only=True) as existing:
                writes = existing.count()
        except sqlite3.Error as exc:
            raise _Failed(f"cannot read the data directory {data_dir}: {exc}") from None
    kept = [sequence for sequence, _ in checkpoint.checkpoints(path / CHECKPOINT_DIR) if sequence]
    held = [f"{writes:,} journaled writes"] if writes else []
    held += [f"a checkpoint of writes 1-{kept[0]:,}"] if kept else []
    return " and ".join(held)


@contextlib.contextmanager
def _empty_data_dir(data_dir: str, durability: str, refusal: str) -> Iterator[Store]:
    """``data_dir`` opened (created if missing) for a command that starts it afresh:
    refused, with nothing written, if it holds any event; removed again if the command
    fails and it was created here. ``refusal`` says what to do instead."""
    held = _holdings(data_dir)
    if held:
        raise _Failed(f"the data directory {data_dir} holds {held}: {refusal}")
    path = Path(data_dir)
    created = next((p for p in [path, *path.parents][::-1] if not p.exists()), None)
    try:
        with Store(path, durability) as store:
            held = _holdings(data_dir)  # checked again now that it is locked
            if held:
                raise _Failed(f"the data directory {data_dir} holds {held}: {refusal}")
            yield store
    except BaseException:
        if created is not None:
            shutil.rmtree(created, ignore_errors=True)
        raise


def _store(args: argparse.Namespace, snapshot: EngineState | None = None) -> Store | None:
    """The data directory opened and locked, not loaded (None: in memory), with
    ``snapshot`` (a batch run's state) written as its starting point when given."""
    if not args.data_dir:
        return None
    if snapshot is not None:
        with _empty_data_dir(
            args.data_dir, args.durability, "--snapshot needs an empty data directory"
        ) as empty:
            checkpoint.write(empty.checkpoint_dir, snapshot)
    return Store(
        args.data_dir,
        args.durability,
        checkpoint_events=args.checkpoint_events,
        checkpoint_seconds=args.checkpoint_seconds,
    )


def _load(store: Store | None, engine: Engine, snapshot: EngineState | None) -> None:
    if store is None:
        log.warning("no --data-dir: writes are kept in memory only")
        if snapshot is not None:
            engine.restore(snapshot)
        return
    store.load_into(engine, lambda done, total: log.info("replaying writes: %d of %d", done, total))


def _open_store(
    args: argparse.Namespace, engine: Engine, snapshot: EngineState | None = None
) -> Store | None:
    """The data directory opened and loaded into ``engine`` (None: in memory)."""
    store = _store(args, snapshot)
    _load(store, engine, snapshot)
    return store


def _batch_snapshot(args: argparse.Namespace) -> EngineState | None:
    """The state a batch run wrote beside ``--snapshot`` (None without the flag)."""
    if not getattr(args, "snapshot", ""):
        return None
    directory = batch.state_dir(args.snapshot)
    state = checkpoint.latest(directory)
    if state is None:
        raise _UsageError(
            f"{directory} holds no state: run 'scoresvc batch' with --out {args.snapshot}"
        )
    log.info("serving the batch snapshot %s (write %d)", args.snapshot, state.sequence)
    return state


def _serve(
    args: argparse.Namespace,
    snapshot: EngineState | None = None,
    populate: Callable[[Engine], None] | None = None,
) -> int:
    """Serve the data directory (locked before the port is bound), loaded in the
    background, then populated; closed (with a checkpoint) at shutdown."""
    engine = _engine(args)
    store = _store(args, snapshot)
    loading = threading.Event()
    loaded = threading.Event()
    try:
        server = _server(args, engine)

        def prepare() -> None:
            loading.set()
            _load(store, engine, snapshot)
            loaded.set()
            if populate is not None:
                populate(engine)
            if store is not None and server.metrics is not None:
                server.metrics.watch_store(store.size_bytes)

        return _run(server, prepare, args.log_format)
    finally:
        # A load still running in the background owns the store until the process ends.
        if store is not None and (loaded.is_set() or not loading.is_set()):
            store.close()


def serve(args: argparse.Namespace) -> int:
    return _serve(args, _batch_snapshot(args))


def demo(args: argparse.Namespace) -> int:
    """Serve a seeded synthetic community so scores mean something at once. With a
    data directory the community is generated once and replayed afterwards."""

    def populate(engine: Engine) -> None:
        started = time.perf_counter()
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

    return _serve(args, populate=populate)


class _ProgressBars:
    """A tqdm bar per table for export and import, on stderr when it is a terminal;
    otherwise a log line per table as it completes."""

    def __init__(self, verb: str) -> None:
        from tqdm import tqdm

        self._tqdm = tqdm
        self._verb = verb
        self._bars: dict[str, Any] = {}
        self._plain = not sys.stderr.isatty()

    def __call__(self, table: str, done: int, total: int) -> None:
        if self._plain:
            if done == total:
                log.info("%s %s: %d rows", self._verb, table, done)
            return
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
    if not (Path(args.data_dir) / DB_NAME).exists():
        raise _Failed(f"--data-dir {args.data_dir}: no scoresvc data directory there")
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
    """Import an archive into a new data directory, or one that holds no events (no
    server may be running on it). The archive is read into memory first and becomes
    the directory's first checkpoint: a failed import writes nothing."""
    engine = _engine(args)
    refusal = "import only into a new data directory, or one that holds no events"
    with _empty_data_dir(args.data_dir, args.durability, refusal) as store:
        bars = _ProgressBars("import")
        try:
            applied = archive.import_into(engine, args.input, bars)
        finally:
            bars.close()
        if engine.sequence:
            checkpoint.write(store.checkpoint_dir, engine.state())
    log.info(
        "imported %d events from %s into %s (writes 1-%d)",
        applied,
        args.input,
        args.data_dir,
        engine.sequence,
    )
    return 0


def token(args: argparse.Namespace) -> int:
    """Create, list or revoke the bearer tokens of a data directory."""
    tokens = TokenStore(args.data_dir)
    if args.action in ("create", "revoke") and not args.name:
        raise _UsageError(f"{args.action} needs --name (who the token is for)")
    if args.action == "create":
        created = tokens.create(args.name, args.role)
        print(f"token for {args.name!r} ({args.role}); shown once, store it now:")
        print(created)
    elif args.action == "list":
        entries = tokens.entries()
        if not entries:
            print(f"no tokens in {args.data_dir}: the server there takes calls without one")
        for entry in entries:
            created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(entry["created"]))
            print(f"{entry['name']}\t{entry['role']}\t{entry['id']}\t{created}")
    elif not tokens.revoke(args.name):
        raise _UsageError(f"no token named {args.name!r}")
    else:
        print(f"revoked {args.name!r}")
    return 0


def _timestamp(record: logging.LogRecord) -> str:
    """RFC 3339 in UTC to the millisecond: 2026-01-02T03:04:05.678Z."""
    moment = datetime.datetime.fromtimestamp(record.created, datetime.timezone.utc)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class _TextFormatter(logging.Formatter):
    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return _timestamp(record)


class _JsonFormatter(logging.Formatter):
    """One JSON object a line: time, level, logger, message, and a call's fields."""

    FIELDS = ("method", "code", "caller", "ms", "request_id", "address")

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": _timestamp(record),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        out.update({k: getattr(record, k) for k in self.FIELDS if hasattr(record, k)})
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out)


def _logging(args: argparse.Namespace) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if getattr(args, "log_format", "text") == "json":
        handler.setFormatter(_JsonFormatter())
    else:
        handler.setFormatter(_TextFormatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    logging.basicConfig(level=getattr(logging, args.log_level), handlers=[handler], force=True)


def batch_(args: argparse.Namespace) -> int:
    """Recompute every score from an archive on Dask distributed."""
    try:
        from distributed import Client, LocalCluster
    except ImportError:
        raise _UsageError(f"batch needs Dask: {DISTRIBUTED_EXTRA}") from None
    from tqdm import tqdm

    # Dask's own INFO lines (each worker joining and leaving) are not ours to print.
    quiet = max(logging.WARNING, logging.getLogger().level)
    logging.getLogger("distributed").setLevel(quiet)
    as_of = args.as_of if args.as_of is not None else time.time()
    steps = tqdm(
        desc="batch",
        unit=" steps",
        file=sys.stderr,
        mininterval=0.5,
        disable=not sys.stderr.isatty(),
    )
    with contextlib.ExitStack() as cleanup:
        cleanup.callback(steps.close)
        if args.scheduler:
            client = cleanup.enter_context(Client(args.scheduler))
        else:
            cluster = cleanup.enter_context(
                LocalCluster(
                    n_workers=args.local_workers,
                    threads_per_worker=1,
                    dashboard_address=":0",
                    silence_logs=quiet,
                )
            )
            client = cleanup.enter_context(Client(cluster))

        def progress(message: str) -> None:
            steps.set_postfix_str(message)
            steps.update()
            log.info("%s", message)

        result = batch.run(
            client,
            args.input,
            as_of,
            _params(args),
            tolerance=args.tolerance,
            topics=args.topics,
            state=True,
            progress=progress,
        )
        written = batch.write_scores(result, args.out)
    log.info(
        "%d users scored at %s in %.1f s (%d iterations): %s",
        len(result.user_ids),
        time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(as_of)),
        result.seconds,
        result.iterations,
        ", ".join(str(w) for w in written),
    )
    return 0


def _as_of(text: str) -> float:
    try:
        return batch.parse_time(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a time (RFC 3339, e.g. 2026-01-02T03:04:05Z, or unix seconds)"
        ) from None


DISTRIBUTED_EXTRA = "pip install 'scoresvc[distributed]' (or '.[distributed]' in a checkout)"


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="scoresvc", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"scoresvc {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    p_serve = commands.add_parser("serve", help="serve the ScoreService API")
    _server_flags(p_serve, "scoresvc-data")
    _add(p_serve, "--snapshot", _path, "", "serve a batch run's scores.parquet, then new events")
    p_serve.set_defaults(run=serve)
    p_demo = commands.add_parser("demo", help="serve a seeded synthetic community")
    _server_flags(p_demo, "")
    _add(p_demo, "--users", _whole(2), 20_000, "users in the demo community")
    _add(p_demo, "--events", _whole(0), 400_000, "events in the demo community")
    _add(p_demo, "--seeds", _whole(0), 0, "how many of the first users are seed accounts")
    _add(p_demo, "--seed", _whole(0), 7, "random seed of the generator")
    p_demo.set_defaults(run=demo)
    p_export = commands.add_parser("export", help="export every event as Parquet or CSV")
    _add(p_export, "--data-dir", _path, "scoresvc-data", "the data directory to export")
    _add(p_export, "--out", _path, "scoresvc-export", "directory to write the archive to")
    _add(p_export, "--format", str, "parquet", "csv is for small data", ("parquet", "csv"))
    _offline_flags(p_export)
    p_export.set_defaults(run=export_)
    p_import = commands.add_parser("import", help="import an archive into a new data directory")
    _add(p_import, "--data-dir", _path, "scoresvc-data", "the data directory to import into")
    _add(p_import, "--input", _path, "scoresvc-export", "the archive directory to read")
    _add(p_import, "--durability", str, StoreSettings().durability, "as for serve", DURABILITY)
    _offline_flags(p_import)
    p_import.set_defaults(run=import_)
    p_batch = commands.add_parser(
        "batch",
        help="recompute every score on Dask from an archive (the distributed extra)",
        description="Recompute every score from an archive on Dask distributed. Needs the"
        f" distributed extra: {DISTRIBUTED_EXTRA}.",
    )
    _add(p_batch, "--input", _path, "scoresvc-export", "the archive directory (scoresvc export)")
    _add(p_batch, "--as-of", _as_of, None, "evaluation time, RFC 3339 or unix seconds (now)")
    _add(p_batch, "--out", _path, "scores.parquet", "the scores file to write")
    _add(p_batch, "--scheduler", str, "", "a Dask scheduler, tcp://HOST:PORT")
    _add(p_batch, "--local-workers", _whole(1), 2, "without --scheduler: local worker processes")
    p_batch.add_argument("--topics", action="store_true", help="also write topic scores")
    _add(
        p_batch,
        "--tolerance",
        _number(0, above=True),
        1e-13,
        "stop iterating when the L1 change is below",
    )
    _offline_flags(p_batch)
    p_batch.set_defaults(run=batch_)
    p_token = commands.add_parser("token", help="manage bearer tokens")
    p_token.add_argument("action", choices=["create", "list", "revoke"])
    _add(p_token, "--data-dir", _path, "scoresvc-data", "the data directory the tokens guard")
    _add(p_token, "--name", str, "", "who the token is for (needed by create and revoke)")
    p_token.add_argument(
        "--role", choices=ROLES, default="reader", help="create: the role (default reader)"
    )
    _log_flags(p_token, "WARNING")
    p_token.set_defaults(run=token)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run a command. Ordinary mistakes are one line on stderr naming the flag or
    variable: exit status 2 for usage, 1 for what failed at run time."""
    parser = _parser()
    args = parser.parse_args(argv)
    prog = f"scoresvc {args.command}"
    try:
        _from_environment(args)
    except _UsageError as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return 2
    _logging(args)
    try:
        return int(args.run(args))
    except _UsageError as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return 2
    except (_Failed, ScoreError, ArchiveError, OSError) as exc:
        log.debug("%s failed", prog, exc_info=True)
        print(f"{prog}: {_one_line(exc)}", file=sys.stderr)
        return 1
    except ValueError as exc:  # a value the engine or token store refused
        print(f"{prog}: {exc}", file=sys.stderr)
        return 2


def _one_line(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.filename is not None:
        return f"{exc.filename}: {exc.strerror}"
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


if __name__ == "__main__":
    sys.exit(main())
