"""Log output: the journal with structured fields when systemd started us, else logfmt or JSON lines on stderr.

Structured fields travel as upper-case attributes of a record (log.warning(..., extra={"COLLECTOR": "tcp"})):
journal fields as they are, lower-cased keys in logfmt and JSON.
"""

import json
import logging
import sys
import time

from .systemd_support import journal_handler

LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warn": logging.WARNING, "error": logging.ERROR}
_LEVEL_NAMES = {logging.DEBUG: "debug", logging.INFO: "info", logging.WARNING: "warn", logging.ERROR: "error",
                logging.CRITICAL: "error"}


def _timestamp(record: logging.LogRecord) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z"


def _fields(record: logging.LogRecord) -> dict:
    fields = {
        "ts": _timestamp(record),
        "level": _LEVEL_NAMES.get(record.levelno, "info"),
        "logger": record.name,
        "msg": record.getMessage(),
    }
    fields.update((k.lower(), str(v)) for k, v in record.__dict__.items() if k.isupper())
    if record.exc_info and record.levelno <= logging.DEBUG:
        fields["exc"] = logging.Formatter().formatException(record.exc_info)
    return fields


def _logfmt_value(value: str) -> str:
    if value and not any(ch in value for ch in ' ="\\\n\t'):
        return value
    return json.dumps(value)


class LogfmtFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return " ".join(f"{k}={_logfmt_value(v)}" for k, v in _fields(record).items())


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return json.dumps(_fields(record))


def setup(level: str, fmt: str) -> None:
    """Route every log record of the process to the journal, or to stderr in the given format."""
    handler = journal_handler()
    if handler is None:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(JsonFormatter() if fmt == "json" else LogfmtFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(LEVELS[level])
