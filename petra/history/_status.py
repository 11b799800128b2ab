"""Where the history lives on disk, its alarms, and the status file other processes read.

The history sink writes ``<dir>/status.json`` about once a second (atomically: a
temporary file renamed over the old one): WAL figures, active alarms and, per
destination, its state, confirmed position, lag in samples, backlog in bytes and the
time of its last success. Per-destination figures do not fit the eight counters of a
heartbeat record; the supervisor's ``/metrics`` reads this file at scrape time and
``petra history status`` prints it.
"""

from __future__ import annotations

import enum
import json
import os
import secrets
from pathlib import Path
from typing import Any

from petra.config._history import HistoryConfig

STATUS_FILE = "status.json"
EPOCH_FILE = "epoch"


class Alarm(enum.IntFlag):
    """Bits of the history's alarm mask (heartbeat counter ALARMS, status file)."""

    DISK_FULL = 1  # the WAL cannot append (ENOSPC): samples are held in memory
    QUOTA = 2  # the WAL reached quota_bytes: its oldest segment was dropped
    JOURNAL_LOST = 4  # journal entries were lost (the sink fell a ring behind)
    DESTINATION_DOWN = 8  # a destination is failing (its backlog grows in the WAL)
    HOLD_FULL = 16  # the memory hold for a full disk is full: the journal is not read

    def names(self) -> list[str]:
        return [a.name.lower() for a in Alarm if a & self and a.name is not None]


def resolve_dir(cfg: HistoryConfig, instance: str, plant_path: str | Path | None) -> Path:
    """``history.dir`` with ``{instance}`` filled in; a relative path is taken relative
    to the plant file's directory (children do not run in the caller's directory)."""
    path = Path(cfg.dir.format(instance=instance))
    if not path.is_absolute():
        base = Path(plant_path).resolve().parent if plant_path is not None else Path.cwd()
        path = base / path
    return path


def load_epoch(directory: Path) -> str:
    """A random id made once per history directory (part of ClickHouse dedup tokens,
    so a box whose WAL was wiped never reuses a token)."""
    path = directory / EPOCH_FILE
    try:
        text = path.read_text(encoding="ascii").strip()
        if text:
            return text
    except FileNotFoundError:
        pass
    directory.mkdir(parents=True, exist_ok=True)
    text = secrets.token_hex(6)
    tmp = path.with_name(f".{EPOCH_FILE}.tmp")
    with open(tmp, "w", encoding="ascii") as fh:
        fh.write(text + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    return text


def write_status(directory: Path, doc: dict[str, Any]) -> None:
    """Replace the status file (no fsync: it is rewritten every second)."""
    path = directory / STATUS_FILE
    tmp = path.with_name(f".{STATUS_FILE}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(doc, separators=(",", ":")), encoding="utf-8")
    os.replace(tmp, path)


def read_status(directory: Path) -> dict[str, Any] | None:
    """The last status the history sink wrote, or None (none yet, or unreadable)."""
    try:
        doc = json.loads((directory / STATUS_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None
