"""petra-bench: jitter measurement and real-time fitness checks for a box.

The ``petra-bench`` command is :func:`main`; subcommands live in private modules
(``_doctor``, and ``_jitter`` when present) registered in ``_main.SUBCOMMANDS``.
"""

from petra.bench._doctor import (
    DOCTOR_SCHEMA_VERSION,
    CheckResult,
    Doctor,
    Probe,
    SystemProbe,
    TrialResult,
    Verdict,
)
from petra.bench._main import main

__all__ = [
    "DOCTOR_SCHEMA_VERSION",
    "CheckResult",
    "Doctor",
    "Probe",
    "SystemProbe",
    "TrialResult",
    "Verdict",
    "main",
]
