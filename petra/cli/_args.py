"""Argument types shared by the subcommands: each refuses a bad value at parse time, so
the user gets one line and exit status 2 instead of a traceback from deep inside.

Validating here is also a security rule: an instance name becomes part of file names
(``/dev/shm/petra.<instance>``, the lock, the state file), so ``../x`` must never get
past the parser.
"""

from __future__ import annotations

import argparse
import sys
from typing import NoReturn

from petra.errors import InvalidNameError
from petra.types import validate_instance_name

LOG_LEVELS = ("debug", "info", "warning", "error")
HEALTH_OFF = "off"


class Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose usage errors are one line: ``PROG: error: MESSAGE
    (see PROG --help)``, exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def instance_name(text: str) -> str:
    """An instance name that passes the naming rule (``--instance``)."""
    try:
        validate_instance_name(text)
    except InvalidNameError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def health_address(text: str) -> str:
    """``HOST:PORT`` (``[V6]:PORT`` for IPv6; port 0..65535, 0 picks a free one) or
    ``off``; returned normalised as ``HOST:PORT``."""
    if text == HEALTH_OFF:
        return text
    host, sep, port = text.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not sep or not host or not port.isascii() or not port.isdigit():
        raise argparse.ArgumentTypeError(
            f"expected HOST:PORT (e.g. 127.0.0.1:9120, [::1]:9120) or 'off', got {text!r}")
    if int(port) > 65535:
        raise argparse.ArgumentTypeError(f"port {port} is not 0..65535 in {text!r}")
    if any(c.isspace() or c in "/[]" for c in host):
        raise argparse.ArgumentTypeError(f"host {host!r} in {text!r} is not a host name "
                                         "or address")
    return f"{host}:{int(port)}"


def add_log_level(p: argparse.ArgumentParser, default: str | None) -> None:
    """``--log-level`` with the levels :func:`petra.logs.setup_logging` knows."""
    p.add_argument("--log-level", default=default, choices=LOG_LEVELS,
                   help=f"one of {', '.join(LOG_LEVELS)}"
                        + ("" if default is None else f" (default {default})")
                        + ("" if default is not None else " (default: the plant's log_level)"))


def fail(prog: str, message: str, status: int = 1) -> int:
    """Print ``prog: message`` on stderr and return ``status`` (for ``return fail(...)``)."""
    print(f"{prog}: {message}", file=sys.stderr)
    return status
