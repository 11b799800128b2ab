"""Which instance a ``petra read`` / ``petra write`` means.

Both take the instance as ``--instance NAME`` or as their first word when that word is
the name of a running instance (``petra write demo plant.start=true``); without either,
the only running instance. Kept free of the C core at import time, like every
subcommand module, so ``petra check`` runs on a box without it.
"""

from __future__ import annotations

from collections.abc import Sequence

from petra.errors import PetraError


class UsageError(PetraError):
    """The command line does not say what to do (exit status 2)."""


def split_instance(words: Sequence[str], requested: str | None, running: Sequence[str],
                   *, is_instance: bool) -> tuple[str, list[str]]:
    """(instance, the remaining words). ``is_instance``: whether the first word may be
    the instance (its caller knows the word is not an argument of its own)."""
    rest = list(words)
    if requested:
        return requested, rest
    if rest and is_instance and rest[0] in running:
        return rest[0], rest[1:]
    if len(running) == 1:
        return running[0], rest
    if not running:
        raise PetraError("no running Petra instance (no /dev/shm/petra.* segment); start "
                         "one with `petra run plant.yaml`")
    raise UsageError(f"{len(running)} instances are running ({', '.join(running)}); "
                     "name one first or with --instance")
