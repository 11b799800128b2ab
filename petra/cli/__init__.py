"""Command-line entry points: ``petra`` (subcommands), ``petra-top``, ``petra-bench``."""

from petra.cli._main import main

__all__ = ["main"]
