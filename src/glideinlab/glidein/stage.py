"""Writer of the signed staging areas glideins download from (factory ``main``/``entry``, frontend
``client``/``client_group``).

A stage is a flat directory served over plain HTTP; integrity comes from signatures, not from the
transport.  The root of trust is the sha256 of the stage's signature file, which travels to the glidein on
its command line (``-sign``, ``-signentry``, ``-clientsign``, ``-clientsigngroup``) next to the name of the
description file (``-descript`` ...).  The glidein (``startup.py``) downloads the description, the
signature it names, checks the signature's sha256 against the command line and then every other file
against the signature.

Staged names
    Every file is staged under a content-addressed name: its logical name with ``.<first 16 hex digits of
    its sha256>`` inserted before the last extension (``check_disk.sh`` -> ``check_disk.3f2a9c0d1e2b4a5c.sh``,
    ``README`` -> ``README.3f2a9c0d1e2b4a5c``).  The signature file is the one exception: it is named after
    the hash of the entries it lists for the other files (it cannot contain its own hash).  A name therefore
    never changes content, so rewriting a stage never alters a file a glidein may be downloading.

Formats (ASCII, one record per line, ``\\n``-terminated)
    description ``description.<h>.cfg``: ``<kind> <staged name>`` for the kinds ``signature``,
        ``file_list`` and ``consts_file``.
    signature ``signature.<h>.sha256``: ``<sha256 hex>  <staged name>`` (two spaces, ``sha256sum -c``
        compatible) for every file of the stage, the description last.
    file list ``file_list.<h>.lst``: ``<logical name> <type>`` with type ``regular`` or ``exec``, in the
        order the glidein runs the ``exec`` ones (each as ``<file> <glidein_config path>``).
    constants ``constants.<h>.cfg``: ``<KEY> <VALUE>`` (value = rest of the line, may be empty); they
        become ``glidein_config`` lines, later stages overriding earlier ones.

Writing is idempotent (same input, same names, nothing rewritten) and atomic for readers: each file goes
to a temporary name and is renamed into place, leaves first, the signature next and the description last.
Files of older stages stay until :func:`remove_unreferenced` finds them unreferenced and old.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

#: logical names of the stage's own files; user files may not take them
RESERVED_NAMES = frozenset({"description.cfg", "signature.sha256", "file_list.lst", "constants.cfg"})
#: the glidein's standard validation scripts, shipped as package data next to this module
STANDARD_FILES_DIR = Path(__file__).with_name("files")
#: the glidein program the factory submits as the job's executable
STARTUP_SCRIPT = Path(__file__).with_name("startup.py")

_LOGICAL_NAME = re.compile(r"[A-Za-z0-9_]([A-Za-z0-9_.+-]*[A-Za-z0-9_+-])?")
_CONSTANT_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_DIGEST_CHARS = 16
_STAGED_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.+-]*\.[0-9a-f]{16}(\.[A-Za-z0-9_+-]+)?")
_TEMP_PREFIX = ".tmp-"


class StageError(ValueError):
    """Input a stage cannot be written from; ``str(err)`` is one line."""


@dataclass(frozen=True)
class StageRef:
    """What a glidein needs to trust a stage: the description's staged name and the signature's sha256."""

    descript: str
    sign: str


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def staged_name(logical: str, digest: str) -> str:
    """``name.ext`` -> ``name.<digest[:16]>.ext`` (``name`` -> ``name.<digest[:16]>``)."""
    stem, dot, ext = logical.rpartition(".")
    tag = digest[:_DIGEST_CHARS]
    return f"{stem}.{tag}.{ext}" if dot and stem else f"{logical}.{tag}"


def write_stage(base_dir: Path, files: Mapping[str, bytes], *, executable: Iterable[str] = (),
                constants: Mapping[str, str] | None = None) -> StageRef:
    """Write (or confirm) a stage in ``base_dir``; ``files`` order is the file list order.

    ``executable`` names the files the glidein runs as validation scripts; ``constants`` become its
    ``glidein_config`` lines.  Every file of the written stage gets a fresh mtime, so an active stage
    never looks old to :func:`remove_unreferenced`.
    """
    executable = set(executable)
    _check_inputs(files, executable, constants or {})
    base_dir = Path(base_dir)
    base_dir.mkdir(parents=True, exist_ok=True)

    staged: dict[str, bytes] = {}  # staged name -> content, in signature order
    for logical, content in files.items():
        staged[staged_name(logical, sha256_hex(content))] = bytes(content)
    file_list = "".join(f"{name} {'exec' if name in executable else 'regular'}\n" for name in files).encode()
    consts = "".join(f"{key} {value}\n" for key, value in (constants or {}).items()).encode()
    file_list_name = staged_name("file_list.lst", sha256_hex(file_list))
    consts_name = staged_name("constants.cfg", sha256_hex(consts))
    staged[file_list_name] = file_list
    staged[consts_name] = consts

    leaf_entries = "".join(f"{sha256_hex(content)}  {name}\n" for name, content in staged.items())
    signature_name = staged_name("signature.sha256", sha256_hex(leaf_entries.encode()))
    description = (f"signature {signature_name}\nfile_list {file_list_name}\nconsts_file {consts_name}\n").encode()
    description_name = staged_name("description.cfg", sha256_hex(description))
    signature = (leaf_entries + f"{sha256_hex(description)}  {description_name}\n").encode()

    for name, content in staged.items():
        _place(base_dir, name, content)
    _place(base_dir, signature_name, signature)
    _place(base_dir, description_name, description)
    return StageRef(descript=description_name, sign=sha256_hex(signature))


def referenced_files(base_dir: Path, ref: StageRef) -> set[str]:
    """Staged names a stage consists of: its description, its signature and everything signed."""
    description = (Path(base_dir) / ref.descript).read_text()
    names = {ref.descript}
    for line in description.splitlines():
        kind, _, name = line.partition(" ")
        if kind == "signature":
            names.add(name)
            for entry in (Path(base_dir) / name).read_text().splitlines():
                names.add(entry.split("  ", 1)[1])
    return names


def remove_unreferenced(base_dir: Path, keep: Iterable[StageRef], max_age_seconds: float,
                        now: float | None = None) -> list[str]:
    """Delete staged files (and stale temporaries) of ``base_dir`` that no stage in ``keep`` references
    and that were not touched for ``max_age_seconds``; returns the names removed, sorted.

    Only this directory's own files are considered (an entry's ``entry_<e>/`` stage is cleaned
    separately), and only names this module produces, so nothing else served from it is touched.
    """
    now = time.time() if now is None else now
    base_dir = Path(base_dir)
    referenced: set[str] = set()
    for ref in keep:
        referenced |= referenced_files(base_dir, ref)
    removed = []
    for path in base_dir.iterdir():
        name = path.name
        ours = _STAGED_NAME.fullmatch(name) or name.startswith(_TEMP_PREFIX)
        if not ours or name in referenced or not path.is_file():
            continue
        if now - path.stat().st_mtime > max_age_seconds:
            path.unlink(missing_ok=True)
            removed.append(name)
    return sorted(removed)


def standard_validation_scripts() -> dict[str, bytes]:
    """The glidein's standard validation scripts (``glidein/files/*.sh``) for the factory's main stage."""
    return {path.name: path.read_bytes() for path in sorted(STANDARD_FILES_DIR.glob("*.sh"))}


def _check_inputs(files: Mapping[str, bytes], executable: set[str], constants: Mapping[str, str]) -> None:
    for name, content in files.items():
        if not isinstance(name, str) or not _LOGICAL_NAME.fullmatch(name):
            raise StageError(f"file name {name!r} must be letters, digits and '_.+-', not start or end with "
                             "'.' (no '/', no spaces)")
        if name in RESERVED_NAMES:
            raise StageError(f"file name {name!r} is reserved for the stage's own files")
        if not isinstance(content, (bytes, bytearray)):
            raise StageError(f"content of {name} must be bytes, got {type(content).__name__}")
    unknown = sorted(executable - set(files))
    if unknown:
        raise StageError(f"executable names files that are not staged: {', '.join(unknown)}")
    for key, value in constants.items():
        if not isinstance(key, str) or not _CONSTANT_KEY.fullmatch(key):
            raise StageError(f"constant name {key!r} must be a letter or '_' then letters, digits or '_'")
        if not isinstance(value, str) or "\n" in value or "\r" in value:
            raise StageError(f"constant {key} must be a one-line string, got {value!r}")


def _place(base_dir: Path, name: str, content: bytes) -> None:
    """Make ``base_dir/name`` hold ``content``: keep an identical file (touching it), else write a
    temporary and rename it into place so a reader sees the old file or the whole new one."""
    path = base_dir / name
    try:
        if path.read_bytes() == content:
            os.utime(path)
            return
    except FileNotFoundError:
        pass
    fd, temporary = tempfile.mkstemp(prefix=_TEMP_PREFIX, dir=base_dir)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(content)
        os.chmod(temporary, 0o644)  # served by an HTTP server that may run as another user
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
