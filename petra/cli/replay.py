"""``petra replay``: placeholder (implemented in the next commit)."""

from __future__ import annotations

from typing import Any


def register(sub: Any) -> None:
    sub.add_parser("replay", help="replay recorded inputs through a plant")
