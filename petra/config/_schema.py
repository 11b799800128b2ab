"""The JSON Schema of the plant format, generated from the models for editors.

``tools/gen_schema.py`` writes it to ``docs/schema/plant.schema.json``; a test checks the
committed file equals a fresh generation, so the schema cannot fall behind the models.
It describes structure only (types, allowed values, ranges of single keys); references
between signals and blocks and the other semantic rules are checked by ``petra check``.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel, PlainSerializer

from petra.config._models import OWN_MODELS, PlantConfig

SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
SCHEMA_ID = "https://petra.invalid/schema/plant.schema.json"


def plant_json_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of a plant file."""
    schema = PlantConfig.model_json_schema(mode="validation")
    for model in OWN_MODELS:
        props = (schema if model is PlantConfig else schema["$defs"][model.__name__])
        _serialized_defaults(model, props["properties"])
    schema["title"] = "Petra plant configuration"
    schema["description"] = (
        "One YAML file per plant. Reference: docs/config.md. Semantic rules (references, "
        "one writer per signal, loops) are checked by `petra check`.")
    return {"$schema": SCHEMA_DIALECT, "$id": SCHEMA_ID, **schema}


def render_schema() -> str:
    """The schema as the committed file holds it (stable key order, final newline)."""
    return json.dumps(plant_json_schema(), indent=2, ensure_ascii=False) + "\n"


def _serialized_defaults(model: type[BaseModel], props: dict[str, Any]) -> None:
    """Write defaults as a user writes them: a duration default is ``"10ms"``, not the
    nanoseconds the model holds (a bare number in the file means milliseconds)."""
    for name, field in model.model_fields.items():
        for meta in field.metadata:
            if isinstance(meta, PlainSerializer) and name in props and "default" in props[name]:
                props[name]["default"] = meta.func(field.default)  # type: ignore[call-arg]
