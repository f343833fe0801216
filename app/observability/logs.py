"""Structured logs: one JSON object a line, each carrying the request id of the request that caused it."""

from __future__ import annotations

import json
import logging
from contextvars import ContextVar
from datetime import UTC, datetime

from app.config import Settings

request_id: ContextVar[str | None] = ContextVar("request_id", default=None)

_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime", "taskName"}
SERVER_LOGGERS = ("", "uvicorn", "uvicorn.error", "journey")


class JSONFormatter(logging.Formatter):
    """`{"ts", "level", "logger", "message", "request_id", ...extra fields}` on one line."""

    def format(self, record: logging.LogRecord) -> str:
        """The record as a JSON line."""
        out = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        rid = getattr(record, "request_id", None) or request_id.get()
        if rid:
            out["request_id"] = rid
        for key, value in vars(record).items():
            if key not in _STANDARD and key not in out and not key.startswith("_") and key != "color_message":
                out[key] = value
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False, default=str)


def configure_logging(settings: Settings) -> None:
    """With JOURNEY_LOG_FORMAT=json (the default), every server log line is JSON; our access log replaces uvicorn's."""
    logging.getLogger("uvicorn.access").disabled = True
    if settings.log_format != "json":
        return
    formatter = JSONFormatter()
    root = logging.getLogger()
    if not root.handlers:
        root.addHandler(logging.StreamHandler())
    root.setLevel(min(root.level or logging.INFO, logging.INFO))
    for name in SERVER_LOGGERS:
        for handler in logging.getLogger(name).handlers:
            handler.setFormatter(formatter)
