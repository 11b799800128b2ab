"""The supervisor's start-up judgement (pure logic of ``Child``): progress, not a clock."""

from __future__ import annotations

from petra.supervisor import Child, ChildSpec, ChildState, RestartPolicy

POLICY = RestartPolicy(startup_grace_s=2.0, startup_cap_s=30.0, start_attempts=3)


def state(c: Child) -> ChildState:
    """The state, read through a call (mypy would keep a narrowed literal otherwise)."""
    return c.state


def child() -> Child:
    c = Child(ChildSpec("scan", ("petra", "scan")), POLICY)
    c.note_start(0.0, 100, is_restart=False)
    return c


def test_beats_keep_a_long_start_alive_until_the_cap() -> None:
    c = child()
    for t in range(1, 30):  # a beat every second: never stalled
        assert c.start_stuck(t * 1_000_000_000, float(t), beating=True) is None
    assert c.start_stuck(30_000_000_000, 30.0, beating=True) is None
    reason = c.start_stuck(31_000_000_000, 31.0, beating=True)
    assert reason == "not ready after 30 s (the start-up cap)"


def test_no_new_beat_for_the_grace_is_stuck() -> None:
    c = child()
    assert c.start_stuck(5, 1.0, beating=True) is None
    assert c.start_stuck(5, 2.9, beating=True) is None
    assert c.start_stuck(5, 3.5, beating=True) == "no start-up progress for 2 s"


def test_before_the_first_beat_cpu_time_is_progress() -> None:
    c = child()
    assert c.start_stuck(10, 1.5, beating=False) is None
    assert c.start_stuck(20, 3.0, beating=False) is None  # still importing
    assert c.start_stuck(20, 5.5, beating=False) == "no heartbeat and no CPU time for 2 s"


def test_failed_starts_in_a_row_mark_failed_with_the_reason() -> None:
    c = child()
    c.note_exit(1.0, -9, "no start-up progress for 2 s")
    assert state(c) is ChildState.BACKOFF
    c.note_start(2.0, 101, is_restart=True)
    c.note_exit(3.0, 1, "exit status 1")
    assert state(c) is ChildState.BACKOFF
    c.note_start(4.0, 102, is_restart=True)
    c.note_exit(5.0, -9, "no start-up progress for 2 s")
    assert state(c) is ChildState.FAILED
    assert c.last_reason == ("never became ready (3 starts in a row); last: no start-up "
                             "progress for 2 s")


def test_a_ready_child_starts_its_count_again() -> None:
    c = child()
    c.note_exit(1.0, 1, "exit status 1")
    c.note_start(2.0, 101, is_restart=True)
    c.note_exit(3.0, 1, "exit status 1")
    c.note_start(4.0, 102, is_restart=True)
    c.note_healthy(5.0)  # became ready: a later crash is a crash, not a failed start
    c.note_exit(6.0, -9, "killed by SIGKILL")
    assert state(c) is ChildState.BACKOFF
    assert c.failed_starts == 0


def test_a_child_seen_ready_only_at_its_reap_is_not_a_failed_start() -> None:
    """The supervisor reads a dead child's last heartbeat state when it reaps it: one
    that reported RUNNING and was killed before the next tick had started fine."""
    c = child()
    for k in range(4):  # more than start_attempts, fewer than the restart budget
        c.note_ready()  # what _reap does when the record says RUNNING or DEGRADED
        c.note_exit(1.0 + 2 * k, -9, "killed by SIGKILL")
        assert state(c) is ChildState.BACKOFF, k
        assert c.failed_starts == 0
        c.note_start(2.0 + 2 * k, 101 + k, is_restart=True)
