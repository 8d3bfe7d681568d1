"""``scoresvc serve`` and ``demo``: the server the flags describe, run until a
signal and drained; the data directory it serves from."""

from __future__ import annotations

import argparse
import contextlib
import logging
import shutil
import signal
import socket
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from ..batch import output as batch_output
from ..core.engine import Engine, EngineState
from ..core.model import AccountStatus
from ..service.auth import Authenticator, TokenStore
from ..service.console import ConsoleEndpoint
from ..service.server import MetricsEndpoint, ScoreServer, build_server
from ..storage import checkpoint
from ..storage.history import HISTORY_DIR, History
from ..storage.store import CHECKPOINT_DIR, DB_NAME, Store
from ..synthetic import community, early_hubs
from . import flags
from .errors import Failed, UsageError
from .logs import JsonFormatter, log

LOOPBACK = ("127.0.0.1", "::1", "[::1]", "localhost")


def _server(args: argparse.Namespace, engine: Engine, history: History) -> ScoreServer:
    """The server the flags describe (auth, TLS, metrics), its port bound."""
    # The console shares the API's tokens: either on another machine's reach needs them.
    exposed = [h for h in _served_hosts(args) if not (h in LOOPBACK or h.startswith("127."))]
    required = bool(exposed) and not args.insecure_no_auth
    authenticator = None
    if args.data_dir:
        authenticator = Authenticator(TokenStore(args.data_dir), required=required)
    if required and (authenticator is None or len(authenticator) == 0):
        raise UsageError(
            f"serving {exposed[0]} needs tokens: create one with 'scoresvc token create"
            f" --data-dir DIR --name NAME --role ROLE', or pass --insecure-no-auth"
        )
    if exposed and args.insecure_no_auth and (authenticator is None or not len(authenticator)):
        log.warning(
            "*** --insecure-no-auth: anyone who can reach %s may read and write scores ***",
            exposed[0],
        )
    tls = flags.tls(args)
    metrics = None
    if args.metrics_port:
        metrics = MetricsEndpoint(args.metrics_port, args.metrics_host)
        _check_port(args.metrics_host, args.metrics_port, "--metrics-host, --metrics-port")
    console = None
    if args.console_port:
        console = ConsoleEndpoint(args.console_port, args.console_host)
        _check_port(args.console_host, args.console_port, "--console-host, --console-port")
    address = f"{args.host}:{args.port}"
    _check_port(args.host, args.port, "--host, --port")
    try:
        return build_server(
            address,
            engine,
            flags.settings(args),
            auth=authenticator,
            tls=tls,
            metrics=metrics,
            history=history,
            console=console,
        )
    except (OSError, RuntimeError):  # grpcio says only that it could not bind
        raise Failed(
            f"cannot listen on {address} (--host, --port): the port is in use"
            " or the address is not this machine's"
        ) from None


def _served_hosts(args: argparse.Namespace) -> list[str]:
    """The addresses the API and the console (when on) listen on."""
    return [args.host] + ([args.console_host] if args.console_port else [])


def _check_port(host: str, port: int, flag_names: str) -> None:
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
        raise Failed(f"cannot listen on {host}:{port} ({flag_names}): {exc.strerror}") from None


def _run(server: ScoreServer, prepare: Callable[[], None], log_format: str) -> int:
    """Serve until SIGTERM or SIGINT, then drain in-flight calls. ``prepare`` runs after
    the port is bound (health says NOT_SERVING until it returns); "listening on" is
    printed once it has, and a failure of it is raised here after the server stopped."""
    stopping = threading.Event()
    failed: list[BaseException] = []
    received: list[int] = []

    def on_signal(signum: int, _frame: object) -> None:
        # Only a list append here: a handler runs in the main thread between any two
        # bytecodes, and setting an Event (or logging) could wait for a lock that very
        # thread holds, inside Event.wait, and never return.
        received.append(signum)

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
    while not received and not stopping.wait(0.1):
        pass  # the signal handler cannot wake the wait (above): look at it ten times a second
    if received:
        log.info("received %s, draining", signal.Signals(received[0]).name)
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
        line = JsonFormatter().format(record)
    else:
        line = f"scoresvc {message}"
    print(line, flush=True)


# ---------------------------------------------------------------------- the data directory


def _holdings(data_dir: str) -> str:
    """The events a data directory holds, in words ('' when it holds none)."""
    path = Path(data_dir)
    writes = 0
    if (path / DB_NAME).exists():
        try:
            with Store(path, read_only=True) as existing:
                writes = existing.count()
        except sqlite3.Error as exc:
            raise Failed(f"cannot read the data directory {data_dir}: {exc}") from None
    kept = [sequence for sequence, _ in checkpoint.checkpoints(path / CHECKPOINT_DIR) if sequence]
    held = [f"{writes:,} journaled writes"] if writes else []
    held += [f"a checkpoint of writes 1-{kept[0]:,}"] if kept else []
    return " and ".join(held)


@contextlib.contextmanager
def empty_data_dir(data_dir: str, durability: str, refusal: str) -> Iterator[Store]:
    """``data_dir`` opened (created if missing) for a command that starts it afresh:
    refused, with nothing written, if it holds any event; removed again if the command
    fails and it was created here. ``refusal`` says what to do instead."""
    held = _holdings(data_dir)
    if held:
        raise Failed(f"the data directory {data_dir} holds {held}: {refusal}")
    path = Path(data_dir)
    created = next((p for p in [path, *path.parents][::-1] if not p.exists()), None)
    try:
        with Store(path, durability) as store:
            held = _holdings(data_dir)  # checked again now that it is locked
            if held:
                raise Failed(f"the data directory {data_dir} holds {held}: {refusal}")
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
        with empty_data_dir(
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
    directory = batch_output.state_dir(args.snapshot)
    state = checkpoint.latest(directory)
    if state is None:
        raise UsageError(
            f"{directory} holds no state: run 'scoresvc batch' with --out {args.snapshot}"
        )
    log.info("serving the batch snapshot %s (write %d)", args.snapshot, state.sequence)
    return state


# ---------------------------------------------------------------------- the commands


def _log_anchoring(engine: Engine) -> None:
    """Say at start-up what anchors trust (docs/model.md, step 7)."""
    seeds = engine.n_seeds
    if seeds:
        log.info("trust is anchored in %d seed accounts and in accounts' age", seeds)
        return
    log.warning(
        "no seed accounts: trust is anchored in accounts' age alone; seed accounts"
        " (SetAccountStatus ACCOUNT_STATUS_SEED) are the strongest defence against fake"
        " accounts"
    )


def _serve(
    args: argparse.Namespace,
    snapshot: EngineState | None = None,
    populate: Callable[[Engine], None] | None = None,
) -> int:
    """Serve the data directory (locked before the port is bound), loaded in the
    background, then populated; closed (with a checkpoint) at shutdown."""
    engine = flags.engine(args)
    store = _store(args, snapshot)
    loading = threading.Event()
    loaded = threading.Event()
    history = None
    try:
        history = _history(args)
        server = _server(args, engine, history)

        def prepare() -> None:
            loading.set()
            _load(store, engine, snapshot)
            loaded.set()
            if populate is not None:
                populate(engine)
            _log_anchoring(engine)
            if store is not None and server.metrics is not None:
                server.metrics.watch_store(store.size_bytes)

        return _run(server, prepare, args.log_format)
    finally:
        # A load still running in the background owns the store until the process ends.
        if store is not None and (loaded.is_set() or not loading.is_set()):
            store.close()
        if history is not None:
            history.close()


def _history(args: argparse.Namespace) -> History:
    """The score history: in the data directory, or in a temporary one removed at exit."""
    if not args.data_dir:
        return History.temporary(args.history_retention)
    return History(Path(args.data_dir) / HISTORY_DIR, args.history_retention)


def serve(args: argparse.Namespace) -> int:
    return _serve(args, _batch_snapshot(args))


def demo(args: argparse.Namespace) -> int:
    """Serve a seeded synthetic community so scores mean something at once. With a
    data directory the community is generated once and replayed afterwards."""

    def populate(engine: Engine) -> None:
        started = time.perf_counter()
        if engine.sequence == 0:
            community_ = community(args.events, args.users, seed=args.seed, end=time.time())
            # The seeds ride in the one bulk write, so the community is write 1.
            assert community_.user_ids is not None and community_.status is not None
            index = {uid: i for i, uid in enumerate(community_.user_ids)}
            for uid in early_hubs(community_, args.seeds):
                community_.status[index[uid]] = AccountStatus.SEED
            engine.load_events(community_)
        engine.refresh()
        top = engine.snapshot.top(3)
        log.info(
            "demo community: %d users ready in %.1f s; try user %s",
            engine.n_users,
            time.perf_counter() - started,
            top[0][0] if top else "-",
        )

    return _serve(args, populate=populate)
