"""The plant artefact: the plant the supervisor validated, once, for all its children.

Why
---
``petra run`` loads and validates the plant file before anything starts (located
errors come from there). Every child then needs part of the same plant: the scan its
compact form, a driver its ``drivers:`` entry, the api its ``api:`` section. Loading
the file again in each child parsed and validated every signal of the plant once per
process (100k signals: seconds each, all at once on a small box) to use a few lines of
it. So the supervisor writes what it accepted to one file in the instance's runtime
directory, and each child reads its section from there.

The file
--------
One line ``petra-plant-artefact FORMAT SHA256\\n``, then a JSON header line, then the
sections' bytes one after another. The SHA-256 covers everything after the first line;
the header names the instance, the plant file (absolute path), the SHA-256 of the
plant text that was validated (the key: which content this is) and where each
section lies. A section is whatever its reader expects: the scan's is
:mod:`marshal` (``petra.scan._plant``), the config's is JSON validated again by the
models in the child.

Trust
-----
The file is written atomically (temporary file, then rename) with owner-only
permissions; a reader refuses it unless it is a regular file owned by the same user
and writable by nobody else, no larger than :data:`MAX_BYTES`, of this format, and
its digest matches. A truncated, corrupted or hand-edited file is refused with
:class:`ArtefactError` saying why (its caller then loads the plant file itself and
logs it). The digest is not a signature: whoever may write the plant file may write
this one too; it guards against accidents (a torn or stale or edited file), not
against the plant's own user. Nothing here imports more than the standard library:
the scan reads this file and must stay small.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from petra.errors import PetraError

MAGIC = b"petra-plant-artefact"
FORMAT = 1
MAX_BYTES = 1 << 30
"""Refused above this size (a 1M-signal plant's artefact is a few hundred MB)."""
_HEADER_MAX = 1 << 16


class ArtefactError(PetraError):
    """The artefact cannot be used; the message says why."""


@dataclass(frozen=True)
class Artefact:
    """What :func:`write_artefact` writes and :func:`read_artefact` gives back."""

    instance: str
    plant: str        # the plant file, absolute
    source_hash: str  # SHA-256 of the plant text that was validated (Plant.text_hash)
    sections: Mapping[str, bytes]

    def section(self, name: str) -> bytes:
        try:
            return self.sections[name]
        except KeyError:
            raise ArtefactError(f"the artefact has no {name!r} section") from None


def write_artefact(path: Path, art: Artefact) -> None:
    """Write ``art`` to ``path`` atomically, readable and writable by the owner only."""
    offsets: dict[str, list[int]] = {}
    at = 0
    for name, body in art.sections.items():
        offsets[name] = [at, len(body)]
        at += len(body)
    header = json.dumps({"instance": art.instance, "plant": art.plant,
                         "source_hash": art.source_hash, "sections": offsets},
                        separators=(",", ":")).encode() + b"\n"
    digest = hashlib.sha256(header)
    for body in art.sections.values():
        digest.update(body)
    tmp = path.with_name(path.name + ".tmp")
    tmp.unlink(missing_ok=True)  # O_EXCL below: never write through a planted link
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(b"%s %d %s\n" % (MAGIC, FORMAT, digest.hexdigest().encode()))
            f.write(header)
            for body in art.sections.values():
                f.write(body)
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def read_artefact(path: Path, *, instance: str | None = None,
                  plant: str | None = None) -> Artefact:
    """Read and check the artefact at ``path``; :class:`ArtefactError` when it is
    missing, not ours, torn, edited, of another format, or made for another instance
    or plant file than asked for."""
    raw = _read_own_file(path)
    first, sep, rest = raw.partition(b"\n")
    parts = first.split(b" ")
    if not sep or len(parts) != 3 or parts[0] != MAGIC:
        raise ArtefactError("not a plant artefact (no header line)")
    if parts[1] != str(FORMAT).encode():
        raise ArtefactError(f"artefact format {parts[1][:16]!r}, this version reads {FORMAT}")
    if hashlib.sha256(rest).hexdigest().encode() != parts[2]:
        raise ArtefactError("the artefact's checksum does not match its content "
                            "(torn or edited)")
    head, sep, body = rest.partition(b"\n")
    try:
        if not sep or len(head) > _HEADER_MAX:
            raise ValueError("no header")
        meta = json.loads(head)
        art = Artefact(instance=_text(meta, "instance"), plant=_text(meta, "plant"),
                       source_hash=_text(meta, "source_hash"),
                       sections=_sections(meta.get("sections"), body))
    except (ValueError, TypeError, AttributeError) as exc:
        raise ArtefactError(f"the artefact's header is unreadable ({exc})") from None
    if instance is not None and art.instance != instance:
        raise ArtefactError(f"made for instance {art.instance!r}, not {instance!r}")
    if plant is not None and art.plant != plant:
        raise ArtefactError(f"made from {art.plant}, not {plant}")
    return art


def _read_own_file(path: Path) -> bytes:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
    except OSError as exc:
        raise ArtefactError(f"cannot open {path}: {exc.strerror}") from None
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(f.fileno())
        if not stat.S_ISREG(st.st_mode):
            raise ArtefactError(f"{path} is not a regular file")
        if st.st_uid != os.geteuid() or st.st_mode & 0o022:
            raise ArtefactError(f"{path} is not owned by this user alone "
                                f"(uid {st.st_uid}, mode {stat.S_IMODE(st.st_mode):o})")
        if st.st_size > MAX_BYTES:
            raise ArtefactError(f"{path} is larger than {MAX_BYTES} bytes")
        return f.read(MAX_BYTES + 1)


def _text(meta: object, key: str) -> str:
    if not isinstance(meta, dict) or not isinstance(meta.get(key), str):
        raise ValueError(f"no {key}")
    value: str = meta[key]
    return value


def _sections(spec: object, body: bytes) -> dict[str, bytes]:
    if not isinstance(spec, dict):
        raise ValueError("no sections")
    out: dict[str, bytes] = {}
    for name, where in spec.items():
        if not (isinstance(where, list) and len(where) == 2
                and all(type(v) is int and v >= 0 for v in where)
                and where[0] + where[1] <= len(body)):
            raise ValueError(f"section {name!r} lies outside the file")
        out[name] = body[where[0]:where[0] + where[1]]
    return out
