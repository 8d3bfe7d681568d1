"""Flags: the parser, environment variables, value types, the flag groups the
commands share, and what the flags describe (settings, TLS, an engine).

Every flag can also be set with an environment variable: ``--time-step`` is
``SCORESVC_TIME_STEP`` and so on; a flag on the command line wins.
"""

from __future__ import annotations

import argparse
import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import grpc

from ..batch import recompute as batch
from ..client import ScoreClient, ScoreServiceError
from ..core.engine import Engine
from ..core.model import ModelParams
from ..service.console import ConsoleEndpoint
from ..service.server import MetricsEndpoint, ServerSettings, Tls
from ..storage.history import DEFAULT_RETENTION_SECONDS
from ..storage.store import SYNCHRONOUS, StoreSettings
from .errors import Failed, UsageError


class Parser(argparse.ArgumentParser):
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
            raise UsageError(f"{self.variable}={self.raw!r}: {_reason(exc)}") from None
        if self.choices is not None and value not in self.choices:
            raise UsageError(f"{self.variable}={self.raw!r}: not one of {', '.join(self.choices)}")
        return value


def _reason(exc: Exception) -> str:
    if isinstance(exc, argparse.ArgumentTypeError):
        return str(exc)
    return f"not a valid value ({exc})"


def _variable(flag: str) -> str:
    return "SCORESVC_" + flag.lstrip("-").upper().replace("-", "_")


def add(
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


def from_environment(args: argparse.Namespace) -> None:
    """Convert the values that came from environment variables (see ``_FromEnv``)."""
    for name, value in vars(args).items():
        if isinstance(value, _FromEnv):
            setattr(args, name, value.value())


# ---------------------------------------------------------------------- value types


def whole(low: int, high: int | None = None) -> Callable[[str], int]:
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


def number(low: float, *, above: bool = False) -> Callable[[str], float]:
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


def path(text: str) -> str:
    """A local path made absolute here, where it was typed (a URL or '' stays as is):
    export's file URIs, Dask workers and log lines then all mean the same file."""
    if not text or "://" in text:
        return text
    return os.path.abspath(os.path.expanduser(text))


def _level(text: str) -> str:
    return text.upper()


def as_of(text: str) -> float:
    try:
        return batch.parse_time(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a time (RFC 3339, e.g. 2026-01-02T03:04:05Z, or unix seconds)"
        ) from None


PORT = whole(0, 65535)
LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
DURABILITY = tuple(SYNCHRONOUS)


# ---------------------------------------------------------------------- flag groups


def server_flags(parser: argparse.ArgumentParser, data_dir: str) -> None:
    """The flags of serve and demo (``data_dir``: where writes go by default)."""
    _network_flags(parser)
    _storage_flags(parser, data_dir)
    _history_flags(parser)
    _freshness_flags(parser)
    _limit_flags(parser)
    _security_flags(parser)
    _observability_flags(parser)
    offline_flags(parser)


def _network_flags(parser: argparse.ArgumentParser) -> None:
    defaults = ServerSettings()
    add(parser, "--host", str, "127.0.0.1", "address to listen on")
    add(parser, "--port", PORT, 50051, "port to listen on (0 picks a free one)")
    add(parser, "--workers", whole(1), defaults.workers, "RPC worker threads")
    add(
        parser,
        "--grace",
        number(0),
        defaults.grace_seconds,
        "seconds in-flight calls get to finish on SIGTERM",
    )


def _storage_flags(parser: argparse.ArgumentParser, data_dir: str) -> None:
    storage = StoreSettings()
    add(parser, "--data-dir", path, data_dir, "where writes are stored ('' keeps them in memory)")
    add(
        parser,
        "--durability",
        str,
        storage.durability,
        "full: a write survives power loss; normal: it survives a process crash",
        DURABILITY,
    )
    add(
        parser,
        "--checkpoint-events",
        whole(1),
        storage.checkpoint_events,
        "checkpoint the state after this many events (restarts replay less)",
    )
    add(
        parser,
        "--checkpoint-seconds",
        number(0, above=True),
        storage.checkpoint_seconds,
        "checkpoint the state at least this often while writes arrive",
    )


def _history_flags(parser: argparse.ArgumentParser) -> None:
    add(
        parser,
        "--history-interval",
        number(0, above=True),
        ServerSettings().history_interval_seconds,
        "record every user's score at start-up and this often after, in seconds",
    )
    add(
        parser,
        "--history-retention",
        number(0, above=True),
        DEFAULT_RETENTION_SECONDS,
        "keep recorded scores this long, in seconds (90 days)",
    )


def _freshness_flags(parser: argparse.ArgumentParser) -> None:
    """When snapshots are taken, and how long writes and reads wait for them."""
    defaults = ServerSettings()
    add(
        parser,
        "--time-step",
        number(0, above=True),
        defaults.time_step_seconds,
        "snapshots are evaluated at times rounded to this many seconds",
    )
    add(
        parser,
        "--refresh-gap",
        number(0),
        defaults.refresh_gap_seconds,
        "shortest gap between refreshes, in seconds",
    )
    add(
        parser,
        "--max-staleness",
        number(0),
        defaults.max_staleness_seconds,
        "longest a write waits for a snapshot that includes it, in seconds",
    )
    add(
        parser,
        "--max-wait",
        float,
        defaults.max_wait_seconds,
        "longest a read with min_sequence waits for its snapshot, in seconds",
    )


def _limit_flags(parser: argparse.ArgumentParser) -> None:
    defaults = ServerSettings()
    add(
        parser,
        "--max-message-bytes",
        whole(1),
        defaults.max_receive_message_bytes,
        "largest request accepted, in bytes",
    )
    add(
        parser,
        "--max-concurrent-rpcs",
        whole(1),
        defaults.max_concurrent_rpcs,
        "calls in progress at once (more: RESOURCE_EXHAUSTED)",
    )
    add(
        parser,
        "--max-batch-rows",
        whole(1),
        defaults.max_batch_rows,
        "interactions in one RecordInteractions call",
    )
    add(
        parser,
        "--rate-limit",
        number(0),
        defaults.rate_per_caller,
        "requests per second per caller, bursts of twice that (0: no limit)",
    )


def _security_flags(parser: argparse.ArgumentParser) -> None:
    add(parser, "--tls-cert", path, "", "PEM certificate chain: serve TLS")
    add(parser, "--tls-key", path, "", "PEM private key of --tls-cert")
    add(parser, "--tls-client-ca", path, "", "PEM CA bundle: require client certificates")
    parser.add_argument(
        "--insecure-no-auth",
        action="store_true",
        default=os.environ.get(_variable("insecure-no-auth"), "").lower() in ("1", "true", "yes"),
        help="serve a non-loopback address without tokens (env SCORESVC_INSECURE_NO_AUTH)",
    )


def _observability_flags(parser: argparse.ArgumentParser) -> None:
    add(parser, "--log-format", str, "text", "text, or json (one object a line)", ("text", "json"))
    add(parser, "--metrics-port", PORT, 0, "serve Prometheus metrics on this port (0: off)")
    add(parser, "--metrics-host", str, MetricsEndpoint().host, "address of the metrics endpoint")
    add(parser, "--console-port", PORT, 0, "serve the read-only web console on this port (0: off)")
    add(parser, "--console-host", str, ConsoleEndpoint().host, "address of the web console")


def offline_flags(parser: argparse.ArgumentParser, log_level: str = "INFO") -> None:
    """What every command that builds an engine shares with serve."""
    add(
        parser,
        "--daily-endorsement-limit",
        whole(0),
        ModelParams().daily_endorsement_limit,
        "endorsements per endorser per 24 hours (0 turns the limit off)",
    )
    add(
        parser,
        "--topic-min-endorsers",
        whole(1),
        ModelParams().topic_min_endorsers,
        "distinct endorsers with credibility a user needs to be ranked in a topic",
    )
    add(
        parser,
        "--distrust-strength",
        number(0.0),
        ModelParams().distrust_strength,
        "units of trust one unit of credible distrust cancels (0 ignores distrust)",
    )
    add(parser, "--threads", whole(1), os.cpu_count() or 1, "threads of the parallel kernels")
    log_flags(parser, log_level)


def log_flags(parser: argparse.ArgumentParser, log_level: str) -> None:
    add(parser, "--log-level", _level, log_level, "logging level", LEVELS)


# ---------------------------------------------------------------------- what flags describe


def settings(args: argparse.Namespace) -> ServerSettings:
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
        history_interval_seconds=args.history_interval,
    )


def _read_flag_file(args: argparse.Namespace, name: str) -> bytes:
    path = getattr(args, name)
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise Failed(f"--{name.replace('_', '-')} {path}: {exc.strerror}") from None


def tls(args: argparse.Namespace) -> Tls | None:
    if not (args.tls_cert or args.tls_key):
        if args.tls_client_ca:
            raise UsageError("--tls-client-ca needs --tls-cert and --tls-key")
        return None
    if not (args.tls_cert and args.tls_key):
        raise UsageError("--tls-cert and --tls-key go together")
    client_ca = _read_flag_file(args, "tls_client_ca") if args.tls_client_ca else None
    return Tls(_read_flag_file(args, "tls_cert"), _read_flag_file(args, "tls_key"), client_ca)


def client_tls_flags(parser: argparse.ArgumentParser) -> None:
    """How a command that calls ``--address`` reaches a service that serves TLS."""
    parser.add_argument(
        "--tls", action="store_true", help="connect with TLS, trusting the system's CAs"
    )
    add(parser, "--tls-ca", path, "", "PEM CA bundle to trust instead: connect with TLS")
    add(parser, "--tls-client-cert", path, "", "PEM certificate chain for mutual TLS")
    add(parser, "--tls-client-key", path, "", "PEM private key of --tls-client-cert")


def connect(args: argparse.Namespace) -> ScoreClient:
    """A client of ``--address`` with ``--token``, over TLS when a TLS flag is given."""
    return ScoreClient(args.address, token=args.token or None, credentials=_credentials(args))


T = TypeVar("T")


def calling(
    args: argparse.Namespace,
    call: Callable[[ScoreClient], T],
    role: str,
    fields: Mapping[str, str] | None = None,
) -> T:
    """``call(client)`` against ``--address`` with a ``--token`` of ``role``; the
    service's refusal as one line naming the flags (``fields``: the request's fields as
    the flags that set them)."""
    with connect(args) as client:
        try:
            return call(client)
        except ScoreServiceError as error:
            raise Failed(_refusal(error, args.address, role, fields or {})) from None


def _refusal(error: ScoreServiceError, address: str, role: str, fields: Mapping[str, str]) -> str:
    if error.code.name == "UNAVAILABLE" and not error.reason:
        return f"cannot reach a scoresvc service at {address} (--address): {error.message}"
    if error.code.name in ("UNAUTHENTICATED", "PERMISSION_DENIED"):
        return f"{error.code.name}: {error.message} (--token: a token with the {role} role)"
    named = ", ".join(dict.fromkeys(_flag_of(field, fields) for field, _ in error.field_violations))
    return f"{error.code.name}: {error.message}" + (f" ({named})" if named else "")


def _flag_of(field: str, fields: Mapping[str, str]) -> str:
    """``user_ids[2]`` is ``--users`` (its third value) when ``fields`` maps it."""
    name, _, index = field.partition("[")
    if name not in fields:
        return field
    return f"{fields[name]} (value {int(index.rstrip(']')) + 1})" if index else fields[name]


def _credentials(args: argparse.Namespace) -> grpc.ChannelCredentials | None:
    if bool(args.tls_client_cert) != bool(args.tls_client_key):
        raise UsageError("--tls-client-cert and --tls-client-key go together")
    if not (args.tls or args.tls_ca or args.tls_client_cert):
        return None
    mine = args.tls_client_cert != ""
    return grpc.ssl_channel_credentials(
        root_certificates=_read_flag_file(args, "tls_ca") if args.tls_ca else None,
        private_key=_read_flag_file(args, "tls_client_key") if mine else None,
        certificate_chain=_read_flag_file(args, "tls_client_cert") if mine else None,
    )


def engine(args: argparse.Namespace) -> Engine:
    return Engine(params(args), threads=args.threads)


def params(args: argparse.Namespace) -> ModelParams:
    """The model's parameters the shared flags set (``offline_flags``)."""
    return ModelParams(
        daily_endorsement_limit=args.daily_endorsement_limit,
        topic_min_endorsers=args.topic_min_endorsers,
        distrust_strength=args.distrust_strength,
    )
