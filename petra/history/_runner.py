"""Running the history sink as its own process against a running instance.

``main(plant_path, instance)`` is what ``petra history run`` (and so the supervisor)
calls; ``run_standalone(cfg, instance, base_dir)`` runs it from a parsed ``history:``
section, for tests and tools.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from petra.config._history import HistoryConfig
from petra.errors import ConfigError, PetraError
from petra.history._status import resolve_dir
from petra.io import run_process, setup_logging
from petra.types import SINK_HISTORY, sink_role

log = logging.getLogger("petra.history")


def run_standalone(cfg: HistoryConfig, instance: str, base_dir: Path,
                   cpus: Sequence[int] | None = None, log_level: str = "info") -> int:
    """Run the history sink until SIGTERM/SIGINT; the exit status for the supervisor."""
    from petra.history._sink import HistorySink

    return run_process(lambda seg: HistorySink(cfg, seg, base_dir), instance,
                       sink_role(SINK_HISTORY), cpus, log_level)


def main(plant_path: str, instance: str, cpus: Sequence[int] | None = None,
         log_level: str = "info", *, plant_data: str | None = None) -> int:
    """Run the history sink of the plant at ``plant_path`` against ``instance``
    (``plant_data``: see ``petra.config._handed``)."""
    setup_logging(log_level, sink_role(SINK_HISTORY))
    try:
        from petra.config._handed import child_config

        cfg = child_config(plant_path, plant_data, instance, log).history
        if cfg is None:
            raise ConfigError("the plant has no history: section", file=plant_path)
        return run_standalone(cfg, instance, resolve_dir(cfg, instance, plant_path), cpus,
                              log_level)
    except PetraError as exc:
        log.error("event=history_failed error=%s", exc)
        return 1
