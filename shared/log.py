"""JSON logs with structlog: one line per event, ISO UTC timestamps, bound context."""

from __future__ import annotations

import logging
import sys
from typing import Any

import orjson
import structlog

_configured = False


class _CurrentStderr:
    """Writes to whatever ``sys.stderr`` is now (test runners swap it); a closed stream
    at interpreter shutdown drops the line instead of raising in a service thread."""

    def write(self, data: bytes) -> None:
        try:
            sys.stderr.buffer.write(data)
        except (ValueError, AttributeError):
            pass

    def flush(self) -> None:
        try:
            sys.stderr.flush()
        except ValueError:
            pass


def configure(level: str = "INFO") -> None:
    global _configured
    if _configured:
        return
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(serializer=orjson.dumps),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=structlog.BytesLoggerFactory(_CurrentStderr()),  # type: ignore[arg-type]
        cache_logger_on_first_use=True,
    )
    _configured = True


def get_logger(name: str, **context: Any) -> Any:
    configure()
    return structlog.get_logger(name).bind(service=name, **context)
