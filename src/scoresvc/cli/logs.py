"""Log lines on stderr: text, or one JSON object a line, times in RFC 3339 UTC."""

from __future__ import annotations

import argparse
import datetime
import json
import logging
import sys
from typing import Any

log = logging.getLogger("scoresvc")


def _timestamp(record: logging.LogRecord) -> str:
    """RFC 3339 in UTC to the millisecond: 2026-01-02T03:04:05.678Z."""
    moment = datetime.datetime.fromtimestamp(record.created, datetime.timezone.utc)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class _TextFormatter(logging.Formatter):
    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return _timestamp(record)


class JsonFormatter(logging.Formatter):
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


def setup(args: argparse.Namespace) -> None:
    """The root logger as ``--log-level`` and ``--log-format`` ask."""
    handler = logging.StreamHandler(sys.stderr)
    if getattr(args, "log_format", "text") == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(_TextFormatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    logging.basicConfig(level=getattr(logging, args.log_level), handlers=[handler], force=True)
