"""Secrets come from a file, a systemd credential or the environment; never from the
plant file, never into a log line or an error message.

:class:`Secret` holds the bytes and prints as ``Secret(***)``, so an accidental
``log.info("%s", cfg)`` or a traceback shows nothing. :func:`read_secret` looks, in
order, at an explicit file, at ``$CREDENTIALS_DIRECTORY/<credential>`` (systemd's
``LoadCredential=``), then at an environment variable; errors name where it looked.
"""

from __future__ import annotations

import os
from pathlib import Path

from petra.security._errors import SecretError

MIN_SECRET_BYTES = 32


class Secret:
    """A secret value that never shows itself in ``str``/``repr``."""

    __slots__ = ("_value",)

    def __init__(self, value: bytes) -> None:
        self._value = value

    def reveal(self) -> bytes:
        return self._value

    def __repr__(self) -> str:
        return "Secret(***)"

    __str__ = __repr__

    def __len__(self) -> int:
        return len(self._value)


def read_secret(*, file: str | os.PathLike[str] | None = None, env: str | None = None,
                credential: str | None = None, min_bytes: int = MIN_SECRET_BYTES
                ) -> Secret | None:
    """The first secret found (file, systemd credential, environment), stripped of a
    trailing newline; None when none of them is configured or present. A configured
    file that cannot be read, or a secret shorter than ``min_bytes``, is an error."""
    value: bytes | None = None
    where = ""
    if file is not None:
        where = f"file {os.fspath(file)}"
        try:
            value = Path(file).read_bytes()
        except OSError as exc:
            raise SecretError(f"cannot read the secret {where}: {exc.strerror}") from None
    elif credential and os.environ.get("CREDENTIALS_DIRECTORY"):
        path = Path(os.environ["CREDENTIALS_DIRECTORY"]) / credential
        if path.is_file():
            where = f"systemd credential {credential}"
            value = path.read_bytes()
    if value is None and env is not None and env in os.environ:
        where = f"environment variable {env}"
        value = os.environ[env].encode()
    if value is None:
        return None
    value = value.rstrip(b"\r\n")
    if len(value) < min_bytes:
        raise SecretError(f"the secret from {where} is shorter than {min_bytes} bytes")
    return Secret(value)
