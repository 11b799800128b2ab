"""cffi API-mode build of the C core into the private extension ``petra._native``.

The headers in ``csrc/`` are the single source of declarations: the text between each
header's CFFI-BEGIN and CFFI-END markers is given to cdef as is (``petra.h`` first,
then the others by name). Every ``csrc/*.c`` is compiled in.
"""

from __future__ import annotations

from pathlib import Path

from cffi import FFI

ROOT = Path(__file__).resolve().parent.parent
CSRC = ROOT / "csrc"
SOURCES = sorted(p.name for p in CSRC.glob("*.c"))
BEGIN, END = "/* CFFI-BEGIN */", "/* CFFI-END */"


def _headers() -> list[Path]:
    others = sorted(p for p in CSRC.glob("*.h") if p.name != "petra.h")
    return [CSRC / "petra.h", *others]


def _declarations() -> str:
    parts = []
    for header in _headers():
        text = header.read_text()
        if BEGIN not in text:
            continue
        parts.append(text[text.index(BEGIN) + len(BEGIN) : text.index(END)])
    return "\n".join(parts)


ffibuilder = FFI()
ffibuilder.cdef(_declarations())
ffibuilder.set_source(
    "petra._native",
    "".join(f'#include "{h.name}"\n' for h in _headers() if BEGIN in h.read_text()),
    sources=[str((CSRC / s).relative_to(ROOT)) for s in SOURCES],
    include_dirs=[str(CSRC.relative_to(ROOT))],
    extra_compile_args=["-std=c11", "-O2", "-Wall", "-Wextra", "-fno-strict-aliasing"],
    libraries=["m"],
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
