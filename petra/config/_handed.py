"""A child's plant config: the supervisor's validated copy, or the plant file itself.

Under ``petra run`` every child (driver, sink, api, alarms, history) is started with
``--plant-data``: the plant artefact the supervisor wrote (``petra._artefact``), whose
``config`` section is the validated config without its ``signals:`` and ``blocks:``
(no child reads them: signals come from the segment's directory, blocks are the
scan's). A child validates that section again with the same models (a few hundred
lines of JSON, not the whole plant) and so never trusts the file blindly. When the
artefact is missing, unreadable, made for another instance or plant file, or its
section does not validate, the child says why in its log and loads the plant file,
as ``petra driver PLANT NAME`` typed by hand always does.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from pydantic import ValidationError

from petra._artefact import ArtefactError, read_artefact
from petra.config._models import PlantConfig

CONFIG_SECTION = "config"
_LEFT_OUT: dict[str, list[object]] = {"signals": [], "blocks": []}


def config_section(config: PlantConfig) -> bytes | None:
    """The ``config`` section for ``config``: JSON of it without signals and blocks.
    None when that does not load back to the same config (the children then load the
    plant file): a handed config is never a different one."""
    slim = config.model_copy(update=_LEFT_OUT)
    text = json.dumps(slim.model_dump(mode="json"), separators=(",", ":"))
    try:
        back = PlantConfig.model_validate(json.loads(text))
    except ValidationError:
        return None
    return text.encode() if back == slim else None


def handed_config(raw: bytes) -> PlantConfig:
    """The config of a ``config`` section, validated; ValueError when it is not one."""
    try:
        return PlantConfig.model_validate(json.loads(raw))
    except ValidationError as exc:
        raise ValueError(f"its config does not validate ({exc.error_count()} errors, "
                         f"first: {exc.errors()[0]['msg']})") from None


def child_config(plant_path: str, plant_data: str | None, instance: str | None,
                 log: logging.Logger) -> PlantConfig:
    """The config a child runs: from the artefact at ``plant_data`` when it is usable
    for ``instance`` and this plant file, else (logged) from the plant file."""
    if plant_data is not None:
        try:
            art = read_artefact(Path(plant_data), instance=instance,
                                plant=str(Path(plant_path).absolute()))
            config = handed_config(art.section(CONFIG_SECTION))
        except (ArtefactError, ValueError) as exc:
            log.warning("event=plant_data_unusable path=%s error=%r action=load_file",
                        plant_data, str(exc))
        else:
            log.info("event=plant_from_artefact path=%s source_hash=%s", plant_data,
                      art.source_hash[:16])
            return config
    from petra.config._plant import load_plant

    return load_plant(plant_path).config
