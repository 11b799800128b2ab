"""Structured logging: one line per event, ``key=value`` pairs, to stderr.

journald (or a terminal) receives lines like
``2026-11-29T14:02:03.123Z INFO petra.scan role=scan pid=812 event=scan_start ...``.
Callers log ``event=name`` followed by their own ``key=value`` pairs; secrets never go
into a log call.
"""

from __future__ import annotations

import logging
import os
import sys
import time

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING,
           "error": logging.ERROR}


class _Formatter(logging.Formatter):
    def __init__(self, role: str) -> None:
        super().__init__()
        self.role = role

    def format(self, record: logging.LogRecord) -> str:
        ts = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        msg = record.getMessage().replace("\n", "\\n")
        line = (f"{ts}.{int(record.msecs):03d}Z {record.levelname} {record.name} "
                f"role={self.role} pid={os.getpid()} {msg}")
        if record.exc_info:
            exc = self.formatException(record.exc_info).replace("\n", "\\n")
            line += f" exc={exc!r}"
        return line


def setup_logging(level: str = "info", role: str = "petra") -> None:
    """Configure the root logger for a Petra process (idempotent)."""
    lvl = _LEVELS.get(level.lower())
    if lvl is None:
        raise ValueError(f"log level {level!r} is not one of {', '.join(_LEVELS)}")
    root = logging.getLogger()
    for h in list(root.handlers):
        if getattr(h, "_petra", False):
            root.removeHandler(h)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_Formatter(role))
    handler._petra = True  # type: ignore[attr-defined]  # marks our own handler
    root.addHandler(handler)
    root.setLevel(lvl)
