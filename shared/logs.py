"""Structured logging: JSON lines by default, readable text on a terminal.

``task_id`` / ``event_id`` come from ``log_context`` (a contextvar, so each asyncio task keeps
its own) or from ``extra=``; every record carries them when known.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import sys
import time
from collections.abc import Iterator

_context: contextvars.ContextVar[dict[str, str]] = contextvars.ContextVar(
    "reachlive_log_context",
    default={},  # noqa: B039 - never mutated, always replaced
)

# Attributes every LogRecord has; anything else came from ``extra=`` and is worth printing.
_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}


@contextlib.contextmanager
def log_context(**fields: object) -> Iterator[None]:
    """Attach fields (e.g. ``event_id=...``) to every record logged inside the block."""
    token = _context.set({**_context.get(), **{k: str(v) for k, v in fields.items() if v is not None}})
    try:
        yield
    finally:
        try:
            _context.reset(token)
        except ValueError:
            # Finalised in another Context (a coroutine closed by the GC or at loop close):
            # the block's own Context is gone, so there is nothing to restore.
            pass


def bind(**fields: object) -> None:
    """Attach fields for the rest of the current context (e.g. a connection's task)."""
    _context.set({**_context.get(), **{k: str(v) for k, v in fields.items() if v is not None}})


def _fields(record: logging.LogRecord) -> dict[str, object]:
    out: dict[str, object] = dict(_context.get())
    for key, value in vars(record).items():
        if key not in _STANDARD and not key.startswith("_"):
            out[key] = value
    return out


class JsonFormatter(logging.Formatter):
    def __init__(self, service: str = "") -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, object] = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if self.service:
            doc["service"] = self.service
        doc.update(_fields(record))
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        return json.dumps(doc, default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        when = time.strftime("%H:%M:%S", time.localtime(record.created))
        extra = " ".join(f"{k}={v}" for k, v in _fields(record).items())
        line = f"{when} {record.levelname:<7} {record.name}: {record.getMessage()}"
        if extra:
            line += f"  [{extra}]"
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


def setup_logging(fmt: str = "auto", level: str = "INFO", service: str = "") -> None:
    """Configure the root logger once per process (called by each entry point)."""
    use_text = fmt == "text" or (fmt == "auto" and sys.stderr.isatty())
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(TextFormatter() if use_text else JsonFormatter(service))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("websockets", "celery.redirected", "kombu", "amqp"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
