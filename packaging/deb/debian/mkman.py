"""Write man pages for the installed commands from their own ``--help`` output.

Run at package build time with the bundled interpreter, so each page says exactly
what the packaged command accepts (a hand-written page would drift from the CLI).
The commands are called through their entry points (the scripts' shebangs already
name the installed path, which does not exist yet at build time).
Usage: PYTHON -I mkman.py OUTDIR VERSION DATE
"""

from __future__ import annotations

import re
import subprocess
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
        if line.startswith((".", "'")):
            line = "\\&" + line
        out.append(line)
    return "\n".join(out)


def helptext(name: str, *args: str) -> str:
    code = (f"import sys; from {ENTRY_POINTS[name]} import main; "
            f"sys.argv[0] = {name!r}; sys.exit(main())")
    done = subprocess.run([sys.executable, "-I", "-c", code, *args, "--help"],
                          capture_output=True, text=True, check=True,
                          env={"COLUMNS": "80", "PATH": "/usr/bin:/bin"})
    return done.stdout.rstrip()


def subcommands(text: str) -> list[str]:
    """Subcommand names: argparse lists them under a ``COMMAND`` metavar (or a
    ``{a,b,c}`` choice list), indented one level deeper than the metavar."""
    m = re.search(r"\{([a-z][a-z0-9_,-]*)\}", text)
    if m:
        return m.group(1).split(",")
    found = re.search(r"^  COMMAND\n((?:    \S.*\n?)+)", text, re.M)
    if not found:
        return []
    return [line.split()[0] for line in found.group(1).splitlines()]


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
    outdir.mkdir(parents=True, exist_ok=True)
    for name in COMMANDS:
        (outdir / f"{name}.1").write_text(page(name, version, date))
    return 0


if __name__ == "__main__":
    sys.exit(main())
