"""petra-top's write action: an operator sets a writable signal from the live view.

The value is typed as text and read as the plant file reads values
(:func:`petra.config.parse_scalar`); the write goes through the one authorised write
path, :func:`petra.security.authorised_write` (role, then :meth:`Segment.write_checked`,
which refuses a read-only signal, a value of the wrong type, NaN/inf and anything
outside the signal's min/max, then an audit record naming the local user), exactly as
``petra write``, MQTT commands and the API do. The sampler stays read-only: each write attaches
read-write for that one write (an operator action, not a hot path), so a restarted
instance is written to, never a stale mapping.
"""

from __future__ import annotations

from petra.cli._access import instance_audit
from petra.config import parse_scalar
from petra.errors import SignalTypeError
from petra.security import authorised_write, local_principal
from petra.shm import Segment, Value


def parse_for(name: str, text: str) -> Value:
    """The value ``text`` stands for; SignalTypeError (a PetraError) when it is none."""
    try:
        return parse_scalar(text)
    except ValueError as exc:
        raise SignalTypeError(f"signal {name!r}: {exc}") from None


class SignalWriter:
    """Writes values typed by an operator into one instance."""

    def __init__(self, instance: str) -> None:
        self.instance = instance

    def write(self, name: str, text: str) -> Value:
        """Parse and write; returns the value written. Raises a PetraError subclass
        (SignalNotWritableError, SignalTypeError, ValueOutOfRangeError, ...) when the
        write is refused; nothing is written then."""
        value = parse_for(name, text)
        audit = instance_audit(self.instance)
        audit.check_writable()
        with Segment.attach(self.instance) as seg:
            authorised_write(seg, local_principal("top"), name, value, audit)
        return value
