"""Write man pages for the installed commands from their own ``--help`` output.

Run at package build time with the bundled interpreter, so each page says exactly
what the packaged command accepts (a hand-written page would drift from the CLI).
The commands' entry points are called in this process with ``--help`` (the scripts'
shebangs already name the installed path, which does not exist yet at build time).
Usage: PYTHON -I mkman.py OUTDIR VERSION DATE
"""

from __future__ import annotations

import contextlib
import importlib
import io
import os
import re
import sys
from pathlib import Path

COMMANDS = {
    "petra": "real-time automation runtime: run, check and reload a plant",
    "petra-top": "live, read-only monitor of a running Petra plant",
    "petra-bench": "real-time fitness checks and scan latency benchmarks for Petra",
}
ENTRY_POINTS = {"petra": "petra.cli", "petra-top": "petra.top", "petra-bench": "petra.bench"}
FILES = {
    "petra": [
        ("/etc/petra/plant.yaml", "the plant run by petra.service (the demo as installed)"),
        ("/etc/petra/NAME.yaml", "the plant run by petra@NAME.service"),
        ("/etc/petra/credentials/", "secrets handed to the services (LoadCredential=)"),
        ("/var/lib/petra/", "the service's data: write-ahead log, Parquet files"),
        ("/run/petra/", "lock and state files of running instances"),
        ("/dev/shm/petra.INSTANCE", "the shared signal table of a running instance"),
    ],
    "petra-top": [("/dev/shm/petra.INSTANCE", "the segment it reads (group petra may)")],
    "petra-bench": [("/etc/security/limits.d/petra.conf", "real-time limits of group petra")],
}


def roff(text: str) -> str:
    """Escape text for a no-fill block: backslashes, and control characters at line start."""
    out = []
    for line in text.replace("\\", "\\e").splitlines():
        out.append("\\&" + line if line.startswith((".", "'")) else line)
    return "\n".join(out)


def helptext(name: str, *args: str) -> str:
    """What ``name *args --help`` prints (argparse prints, then exits 0)."""
    main = importlib.import_module(ENTRY_POINTS[name]).main
    out = io.StringIO()
    argv0, sys.argv[0] = sys.argv[0], name  # argparse's default program name
    try:
        with contextlib.redirect_stdout(out):
            main([*args, "--help"])
    except SystemExit as exc:
        if exc.code not in (0, None):
            raise
    finally:
        sys.argv[0] = argv0
    return out.getvalue().rstrip()


def subcommands(text: str) -> list[str]:
    """Subcommand names: argparse lists them under a ``COMMAND`` metavar (or a
    ``{a,b,c}`` choice list), indented one level deeper than the metavar."""
    m = re.search(r"\{([a-z][a-z0-9_,-]*)\}", text)
    if m:
        return m.group(1).split(",")
    lines = text.splitlines()
    if "  COMMAND" not in lines:
        return []
    names = []
    for line in lines[lines.index("  COMMAND") + 1:]:
        if not line.startswith("    "):
            break
        if not line[4].isspace():  # a name; deeper lines continue its description
            names.append(line.split()[0])
    return names


def page(name: str, version: str, date: str) -> str:
    main = helptext(name)
    parts = [f'.TH {name.upper()} 1 "{date}" "petra {version}" "Petra"',
             ".SH NAME", f"{name} \\- {COMMANDS[name]}",
             ".SH USAGE", ".nf", roff(main), ".fi"]
    subs = subcommands(main)
    if subs:
        parts.append(".SH SUBCOMMANDS")
        for sub in subs:
            parts += [".SS " + sub, ".nf", roff(helptext(name, sub)), ".fi"]
    parts.append(".SH FILES")
    for path, what in FILES[name]:
        parts += [".TP", f"\\fI{path}\\fR", what]
    parts += [".SH SEE ALSO",
              ", ".join(f"\\fB{n}\\fR(1)" for n in COMMANDS if n != name) + "; "
              "/usr/share/doc/petra/operations.md and realtime.md"]
    return "\n".join(parts) + "\n"


def main() -> int:
    outdir, version, date = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
    os.environ["COLUMNS"] = "80"  # argparse wraps to the terminal; a page has no terminal
    outdir.mkdir(parents=True, exist_ok=True)
    for name in COMMANDS:
        (outdir / f"{name}.1").write_text(page(name, version, date))
    return 0


if __name__ == "__main__":
    sys.exit(main())
