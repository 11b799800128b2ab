"""Running the alarm manager as its own process against a running instance.

``main(plant_path, instance)`` is what ``petra alarms run`` (and so the supervisor)
calls; ``run_standalone(plant_config, instance, base_dir)`` runs it from a parsed plant,
for tests and tools.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from petra.config._alarms import resolve_dir
from petra.errors import ConfigError, PetraError
from petra.io import run_process, setup_logging
from petra.types import SINK_ALARMS, sink_role

log = logging.getLogger("petra.alarms")


def run_standalone(config: Any, instance: str, base_dir: Path,
                   cpus: Sequence[int] | None = None, log_level: str = "info", *,
                   plant_dir: Path | None = None) -> int:
    """Run the alarm manager until SIGTERM/SIGINT; the exit status for the supervisor.
    Operator actions go to the plant's audit log (``api.audit_file`` relative to
    ``plant_dir``, or the box's default)."""
    from petra.alarms._process import AlarmProcess
    from petra.security import plant_audit_log

    audit = plant_audit_log(getattr(config, "api", None), plant_dir, instance)
    return run_process(lambda seg: AlarmProcess(config, seg, base_dir, audit=audit),
                       instance, sink_role(SINK_ALARMS), cpus, log_level)


def main(plant_path: str, instance: str, cpus: Sequence[int] | None = None,
         log_level: str = "info", *, plant_data: str | None = None) -> int:
    """Run the alarm manager of the plant at ``plant_path`` against ``instance``
    (``plant_data``: see ``petra.config._handed``)."""
    setup_logging(log_level, sink_role(SINK_ALARMS))
    try:
        from petra.config._handed import child_config

        config = child_config(plant_path, plant_data, instance, log)
        if config.alarms is None:
            raise ConfigError("the plant has no alarms: section", file=plant_path)
        return run_standalone(config, instance, resolve_dir(config.alarms, instance,
                                                            plant_path), cpus, log_level,
                              plant_dir=Path(plant_path).resolve().parent)
    except PetraError as exc:
        log.error("event=alarms_failed error=%s", exc)
        return 1
