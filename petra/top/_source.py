"""The live view's data source: one instance, followed across restarts.

A :class:`Sampler` reads one mapping of one segment. When the instance stops, the
segment's name goes away but the mapping stays readable (frozen at its last values);
when the plant is started again, a *new* segment appears under the same name. The
live view should say the first and follow the second, so :class:`InstanceSource`
looks at the name each refresh (``stat`` of ``/dev/shm/petra.<instance>``: present or
not, and which inode) and attaches a fresh sampler when the inode changed.

It also reads, once per attach, what the plant file says about each signal
(descriptions, min/max) for the detail pane: the supervisor's state file names the
plant file, relative to the supervisor's working directory when it was given so.
Any failure there only leaves the descriptions empty.

Only the sampler it holds reads the segment; this class decides which segment.
"""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path

from petra.errors import PetraError
from petra.shm import segment_name
from petra.top._sampler import Clock, Sampler, SignalMeta
from petra.top._snapshot import SignalDetail, Snapshot

log = logging.getLogger("petra.top")

SHM_DIR = Path("/dev/shm")


def _identity(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_dev, st.st_ino)


def plant_meta(instance: str) -> dict[str, SignalMeta]:
    """Descriptions and limits from the running plant's file; empty when unknown."""
    try:
        from petra.config import load_plant
        from petra.supervisor import read_state

        state = read_state(instance)
        path = Path(str(state["plant"]))
        if not path.is_absolute():
            path = Path(os.readlink(f"/proc/{int(state['pid'])}/cwd")) / path
        plant = load_plant(path)
    except (PetraError, OSError, KeyError, ValueError, TypeError) as exc:
        log.debug("event=plant_meta_unavailable instance=%s error=%r", instance, str(exc))
        return {}
    return {s.name: SignalMeta(description=s.description, minimum=s.min, maximum=s.max)
            for s in plant.config.signals}


class InstanceSource:
    """Samples an instance by name, re-attaching when it is restarted."""

    def __init__(self, instance: str, *, clock: Clock | None = None,
                 sampler: Sampler | None = None, shm_dir: Path = SHM_DIR) -> None:
        """Attach now (raises what :meth:`Sampler.attach` raises) unless ``sampler``
        is given (tests hand one in)."""
        self.instance = instance
        self._clock = clock
        self._path = shm_dir / segment_name(instance).lstrip("/")
        self._id = _identity(self._path)
        self._sampler = sampler if sampler is not None else self._attach()
        self.reattached = 0
        """How many times a restarted instance was followed."""

    def _attach(self) -> Sampler:
        return Sampler.attach(self.instance, clock=self._clock, meta=plant_meta(self.instance))

    @property
    def sampler(self) -> Sampler:
        return self._sampler

    def present(self) -> bool:
        """Whether the segment we show is still the instance's (not removed, not
        replaced by a newer one we failed to attach)."""
        return self._id is not None and _identity(self._path) == self._id

    def _follow(self) -> None:
        now = _identity(self._path)
        if now is None or now == self._id:
            return
        try:
            fresh = self._attach()
        except PetraError as exc:  # still being created, or not ours to read
            log.debug("event=reattach_failed instance=%s error=%r", self.instance, str(exc))
            return
        old, self._sampler, self._id = self._sampler, fresh, now
        self.reattached += 1
        with contextlib.suppress(PetraError):
            old.close()

    def sample(self) -> Snapshot:
        self._follow()
        return self._sampler.sample()

    def detail(self, name: str) -> SignalDetail:
        return self._sampler.detail(name)

    def close(self) -> None:
        self._sampler.close()
