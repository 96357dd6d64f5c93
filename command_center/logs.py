"""Log output: JSON lines for a collector in production, readable lines in the demo (``observability.log_format``).

A JSON line holds the time (UTC, ISO 8601), level, logger and message, the ids bound for the task that wrote
it (``core.log_context``: ``unit_id``, ``connection_id``, ``query_id``, ``request_id``), the fields of an
access-log line (``http``), and the exception's traceback when there is one. Chinese text stays readable
(UTF-8, not ``\\u`` escapes).
"""

from __future__ import annotations

import datetime
import logging
import sys
from typing import Any, Literal

import orjson
from aiohttp.http_exceptions import BadHttpMessage

from core import log_context

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class JsonFormatter(logging.Formatter):
    """One JSON object a line."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": datetime.datetime.fromtimestamp(record.created, datetime.UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            **log_context.current(),
        }
        http = getattr(record, "http", None)
        if http is not None:
            line["http"] = http
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(line, default=str).decode()


class TextFormatter(logging.Formatter):
    """The readable line, with the bound ids appended (``[unit_id=… query_id=…]``) when there are any."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        fields = log_context.current()
        if not fields:
            return text
        ids = " ".join(f"{k}={v}" for k, v in fields.items())
        head, newline, rest = text.partition("\n")  # ids on the message line, not after a traceback
        return f"{head} [{ids}]{newline}{rest}"


def configure_logging(log_format: Literal["json", "text"], level: int = logging.INFO) -> None:
    """Send every log record to standard error in the chosen format (replacing handlers set before)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)


class UnparsableRequests(logging.Filter):
    """aiohttp logs a request it could not parse (a header without a colon, a line too long) at ERROR with a
    traceback. It is the client's fault, answered 400, and the access log has its line: here it becomes one
    INFO line naming the client and the kind of mistake, so a client sending garbage cannot fill the log with
    tracebacks, nor put what it sent there. (Traffic that is not HTTP at all, TLS on the plain port, aiohttp
    already logs at DEBUG.)"""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, BadHttpMessage) and record.levelno >= logging.ERROR:
            client = record.args[0] if isinstance(record.args, tuple) and record.args else "unknown"
            # The kind of mistake only: aiohttp's message quotes the offending line, which may hold a credential
            # (an ``Authorization`` line without its colon), and no secret goes into a log.
            record.msg, record.args = "unparsable request from %s (answered 400): %s", (client, type(exc).__name__)
            record.levelno, record.levelname = logging.INFO, logging.getLevelName(logging.INFO)
            record.exc_info, record.exc_text = None, None
        return True


def quiet_unparsable_requests() -> None:
    """Install ``UnparsableRequests`` on aiohttp's server logger (once, however many apps are built)."""
    server = logging.getLogger("aiohttp.server")
    if not any(isinstance(f, UnparsableRequests) for f in server.filters):
        server.addFilter(UnparsableRequests())
