"""The supervisor: ``petra run`` starts, watches and restarts a plant's processes."""

from petra.errors import InstanceRunningError
from petra.supervisor._children import Child, ChildSpec, ChildState, RestartPolicy
from petra.supervisor._instance import (
    InstanceLock,
    read_state,
    signal_supervisor,
    supervisor_pid,
)
from petra.supervisor._supervisor import Supervisor, main, plan_children
from petra.supervisor._systemd import Notifier

__all__ = [
    "Child",
    "ChildSpec",
    "ChildState",
    "InstanceLock",
    "InstanceRunningError",
    "Notifier",
    "RestartPolicy",
    "Supervisor",
    "main",
    "plan_children",
    "read_state",
    "signal_supervisor",
    "supervisor_pid",
]
