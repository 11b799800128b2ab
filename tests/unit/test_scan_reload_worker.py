"""The scan's reload worker: one owned thread, requests collapsed, every failure said."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable

import pytest

from petra.scan._reload import ReloadWorker


def wait_for(cond: Callable[[], object], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.01)


def test_requests_during_a_reload_collapse_into_one_more() -> None:
    runs: list[int] = []
    gate = threading.Event()

    def reload(worker: ReloadWorker) -> None:
        runs.append(worker.requested)
        if len(runs) == 1:
            gate.wait(10)

    w = ReloadWorker(reload, on_dead=lambda: None)
    threads_before = threading.active_count()
    w.start()
    try:
        w.request()
        wait_for(lambda: runs)
        for _ in range(50):  # a burst of SIGHUPs while the first reload runs
            w.request()
        assert threading.active_count() == threads_before + 1  # one worker, whatever comes
        gate.set()
        wait_for(lambda: len(runs) == 2)
        time.sleep(0.2)
        assert len(runs) == 2  # not 51, and not 1: the file may have changed again
        assert runs[1] == 51
    finally:
        assert w.stop()
    assert threading.active_count() == threads_before


def test_stop_interrupts_a_reload_that_waits_for_its_swap() -> None:
    outcome: list[bool] = []

    def reload(worker: ReloadWorker) -> None:
        outcome.append(worker.wait_swapped(worker.swaps))  # the loop never swaps

    w = ReloadWorker(reload, on_dead=lambda: None)
    w.start()
    w.request()
    time.sleep(0.2)
    t0 = time.monotonic()
    assert w.stop()
    assert time.monotonic() - t0 < 2
    assert outcome == [False]
    assert not w.alive


def test_a_swap_reported_by_the_loop_reaches_the_waiting_reload() -> None:
    outcome: list[bool] = []

    def reload(worker: ReloadWorker) -> None:
        outcome.append(worker.wait_swapped(worker.swaps))

    w = ReloadWorker(reload, on_dead=lambda: None)
    w.start()
    try:
        w.request()
        time.sleep(0.1)
        w.swapped()  # what the engine's on_swap callback does, on the loop thread
        wait_for(lambda: outcome)
        assert outcome == [True]
    finally:
        w.stop()


def test_a_dead_worker_is_logged_and_answers_every_later_request(
        caplog: pytest.LogCaptureFixture) -> None:
    refused: list[int] = []

    def reload(worker: ReloadWorker) -> None:
        raise RuntimeError("bug in the reload path")

    w = ReloadWorker(reload, on_dead=lambda: refused.append(1))
    w.start()
    with caplog.at_level(logging.CRITICAL, logger="petra.scan"):
        w.request()
        wait_for(lambda: not w.alive)
    assert isinstance(w.failure, RuntimeError)
    assert any("event=reload_worker_failed" in r.getMessage() for r in caplog.records)
    w.request()
    w.request()
    assert refused == [1, 1]  # no request goes unanswered
    assert w.stop()


def test_stop_is_idempotent_and_a_late_request_is_harmless() -> None:
    w = ReloadWorker(lambda worker: None, on_dead=lambda: None)
    w.start()
    assert w.stop()
    assert w.stop()
    w.request()  # a SIGHUP after the scan stopped: no write into a closed descriptor
    w.swapped()


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs two CPUs")
def test_the_worker_runs_off_the_scan_cpu() -> None:
    seen: list[set[int]] = []
    scan_cpu = min(os.sched_getaffinity(0))

    def reload(worker: ReloadWorker) -> None:
        seen.append(os.sched_getaffinity(0))  # this thread's own mask

    w = ReloadWorker(reload, on_dead=lambda: None, avoid_cpu=scan_cpu)
    w.start()
    try:
        w.request()
        wait_for(lambda: seen)
    finally:
        w.stop()
    assert scan_cpu not in seen[0]
    assert scan_cpu in os.sched_getaffinity(0)  # the caller's thread is untouched
