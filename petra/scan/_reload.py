"""The scan's one helper thread: hot reloads, one at a time, away from the loop.

A SIGHUP used to start a new thread per signal that nobody joined. Now the scan owns
exactly one worker for its whole life: started before the loop, stopped and joined
when the scan stops. Requests that arrive while a reload runs are not dropped and not
run in parallel: they collapse into one more reload after it (the file may have
changed again meanwhile).

Talking to the worker without a lock
------------------------------------
The loop thread may run SCHED_FIFO on its own CPU while the worker runs SCHED_OTHER
elsewhere; a lock they shared would let the worker, preempted while holding it, stall
the loop (priority inversion). So nothing is shared under a lock. The signal handler
bumps a counter only it writes (``requested``) and writes one byte to a non-blocking
pipe; the worker sleeps in ``select`` on that pipe, drains it and compares the counter
with what it has served. A full pipe loses no request: the bytes already in it wake
the worker, which reads the counter, not the bytes. The loop reports a swap the same
way (``swaps``) but without a byte, see :meth:`ReloadWorker.swapped`. The GIL is the
one thing they still share; :func:`petra.scan._rt.bound_threads` shortens its switch
interval so the loop gets it back within 0.2 ms.

Failure
-------
A reload that fails for any reason is logged (``event=reload_failed``) and counted
(``ScanCounter.RELOADS_FAILED``), so the supervisor, which waits on the counters, gets
an answer to every reload it asked for. Should the worker itself die of a bug, that is
logged at once (``event=reload_worker_failed``), the scan keeps running its current
program, and every later request is answered with a failed reload instead of silence.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import threading
from collections.abc import Callable

log = logging.getLogger("petra.scan")

JOIN_TIMEOUT_S = 10.0
SWAP_POLL_S = 0.02


class ReloadWorker:
    """Runs ``reload(worker)`` on its own thread each time a reload is requested.

    ``reload`` does the work and the bookkeeping (it is the scan's); it may call
    :meth:`wait_swapped` and pass :meth:`cancelled` and :attr:`wake_fd` to a blocking
    step so that :meth:`stop` interrupts it. ``on_dead`` is called (from the signal
    handler's thread) for a request that arrives after the worker died.
    """

    def __init__(self, reload: Callable[[ReloadWorker], None],
                 on_dead: Callable[[], None], avoid_cpu: int | None = None) -> None:
        self._reload = reload
        self._on_dead = on_dead
        self.avoid_cpu = avoid_cpu
        self._r, self._w = os.pipe()
        os.set_blocking(self._r, False)
        os.set_blocking(self._w, False)
        self._thread: threading.Thread | None = None
        self._stopping = False
        self.requested = 0      # written by the requesting thread only
        self._served = 0        # worker only
        self.swaps = 0          # written by the loop thread only
        self.failure: BaseException | None = None

    @property
    def wake_fd(self) -> int:
        return self._r

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    # ------------------------------------------------------------ any thread, no lock
    def request(self) -> None:
        """Ask for a reload (safe in a signal handler)."""
        if self.failure is not None:
            self._on_dead()
            return
        self.requested += 1
        self._poke()

    def swapped(self) -> None:
        """Tell the worker the loop swapped the program in (called by the loop, in the
        swap cycle). No wake-up byte: a worker woken now would want the GIL while the
        loop runs that cycle in Python; it notices within :data:`SWAP_POLL_S`, almost
        always while the loop sleeps."""
        self.swaps += 1

    def _poke(self) -> None:
        fd = self._w
        if fd < 0:
            return  # stopped: nobody listens any more
        with contextlib.suppress(BlockingIOError):  # full: wake-ups are pending already
            os.write(fd, b"!")

    # ------------------------------------------------------------ owner
    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError("the reload worker runs already")
        self._thread = threading.Thread(target=self._main, name="petra-reload", daemon=True)
        self._thread.start()

    def stop(self) -> bool:
        """Stop the worker (interrupting a reload) and join it; False if it would not.
        Idempotent."""
        self._stopping = True
        self._poke()
        if self._thread is not None:
            self._thread.join(JOIN_TIMEOUT_S)
            if self._thread.is_alive():
                log.error("event=reload_worker_stuck join_timeout_s=%.0f", JOIN_TIMEOUT_S)
                return False
        # The write end first and as -1 before closing: a signal handler running in
        # between must not write into a reused descriptor number.
        w, self._w = self._w, -1
        if w >= 0:
            os.close(w)
            os.close(self._r)
        return True

    # ------------------------------------------------------------ worker side
    def cancelled(self) -> bool:
        """Drain the wake-up pipe; true once :meth:`stop` was called."""
        try:
            while os.read(self._r, 512):
                pass
        except BlockingIOError:
            pass
        return self._stopping

    def _wait(self, timeout: float | None = None) -> None:
        select.select([self._r], [], [], timeout)
        self.cancelled()

    def wait_swapped(self, before: int) -> bool:
        """Block until the loop reports a swap after ``before`` swaps; False if stopped
        first."""
        while self.swaps == before:
            if self._stopping:
                return False
            self._wait(SWAP_POLL_S)
        return True

    def _main(self) -> None:
        self._leave_scan_cpu()
        try:
            while not self._stopping:
                if self.requested == self._served:
                    self._wait()
                    continue
                self._served = self.requested
                self._reload(self)
        except BaseException as exc:  # a bug in the worker itself: said, never silent
            self.failure = exc
            log.critical("event=reload_worker_failed error=%r", exc, exc_info=exc)

    def _leave_scan_cpu(self) -> None:
        """This thread runs anywhere but the scan's CPU (it is SCHED_OTHER already:
        it was started before the loop thread took SCHED_FIFO)."""
        cpus = set(range(os.cpu_count() or 1))
        if self.avoid_cpu is None or len(cpus) < 2:
            return
        try:
            os.sched_setaffinity(0, cpus - {self.avoid_cpu})
        except OSError as exc:
            log.warning("event=reload_worker_affinity error=%r", str(exc))
