"""petra.types mirrors the C declarations: the two must never drift.

The vocabulary is pure Python (so ``petra check`` runs without the C core); the same
numbers live in ``csrc/petra.h`` and ``csrc/layout.h``. This test reads the C side
through the compiled extension's own declarations.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from petra import _core, types
from petra.types import Quality, SignalType, Substatus

ROOT = Path(__file__).resolve().parents[2]


def _enum_values(prefix: str) -> dict[str, int]:
    return {name[len(prefix):]: int(getattr(_core.lib, name))
            for name in dir(_core.lib) if name.startswith(prefix)}


def test_signal_types_match() -> None:
    assert _enum_values("PETRA_T_") == {t.name: int(t) for t in SignalType}


def test_qualities_match() -> None:
    assert _enum_values("PETRA_Q_") == {q.name: int(q) for q in Quality}
    assert tuple(sorted(Quality, key=int)) == types.QUALITIES


def test_substatus_codes_match() -> None:
    assert _enum_values("PETRA_SUB_") == {s.name: int(s) for s in Substatus}


def test_size_limits_match_the_directory_and_heartbeat_records() -> None:
    ffi = _core.ffi
    sigdef = dict(ffi.typeof("petra_sigdef_t").fields)
    # each text field keeps one byte for its NUL terminator
    assert sigdef["name"].type.length == types.NAME_MAX_BYTES + 1
    assert sigdef["unit"].type.length == types.UNIT_MAX_BYTES + 1
    assert sigdef["owner"].type.length == types.OWNER_MAX_BYTES + 1
    hb = dict(ffi.typeof("petra_hb_out_t").fields)
    assert hb["role"].type.length == types.ROLE_MAX_BYTES + 1
    assert hb["counters"].type.length == types.HB_COUNTERS
    # a driver's role must fit the owner field of the directory
    assert len(types.driver_role("x" * types.DRIVER_NAME_MAX)) <= types.OWNER_MAX_BYTES


def test_directory_flags_match() -> None:
    assert _enum_values("PETRA_FLAG_") == {
        name[len("FLAG_"):]: value for name, value in vars(types).items()
        if name.startswith("FLAG_")}


def test_vocabulary_imports_nothing_native() -> None:
    code = ("import sys; sys.modules['petra._native'] = None\n"
            "import petra.types, petra.errors, petra.config, petra.blocks\n"
            "bad = sorted(m for m in sys.modules if m in ('numpy', 'cffi', 'posix_ipc',"
            " 'petra.shm', 'petra._core'))\n"
            "print(','.join(bad))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert out.stdout.strip() == ""
