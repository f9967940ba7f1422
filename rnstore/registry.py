"""The workspaces a shared object store serves, as files in the store.

Files kept in the store root::

    workspaces/<key>          a registration: the workspace's .rnstore path
    workspaces/<key>.roots    the roots gc last read there (or the workspace
                              had when it registered), "KIND ID" lines
    workspaces/<key>.gone     when gc first found that workspace gone (Unix time)

`<key>` is the first 32 hex digits of the SHA-256 of the .rnstore path. This
module only reads and writes those files; what they mean for gc (rule 4 of
gc.py) is decided by reachability.py and gc.py.

A workspace keeps in `.rnstore/workspace-id` a random id and the .rnstore
path it last registered ("<32 hex>\n<path>\n"). Every command that creates
a root calls `ensure_registered`: when the recorded path is where the
workspace stands and its registration exists (one read, one stat), nothing
happens; otherwise it was moved, copied or restored, and it registers where
it stands. A copy is told apart from a move by its original: still standing
at the recorded path with the same id, the copy takes a new id. The old
path's registration is left to gc (a moved-away workspace is "gone" and
protects what it held for the grace period), never dropped here: the
original may have made snapshots the copy does not hold.
"""

from __future__ import annotations

import hashlib
import os
import secrets
from pathlib import Path
from typing import Iterable

from .errors import CorruptStoreError
from .fsutil import atomic_write, make_folder, remove_quietly
from .objects import BLOB, SNAPSHOT, TREE, is_object_id

#: The file that marks a folder as an object store (see repo.py's layout).
STORE_MARKER = "rnstore-store"
WORKSPACES = "workspaces"
ROOTS_SUFFIX = ".roots"
GONE_SUFFIX = ".gone"
_KIND_LETTER = {SNAPSHOT: "s", TREE: "t", BLOB: "b"}
_LETTER_KIND = {v: k for k, v in _KIND_LETTER.items()}
_HEX = frozenset("0123456789abcdef")


def registration_path(store_root: Path, dotdir: Path) -> Path:
    key = hashlib.sha256(os.fsencode(dotdir.absolute())).hexdigest()[:32]
    return store_root / WORKSPACES / key


def register(store_root: Path, dotdir: Path, *, durable: bool, shared: bool = False) -> Path:
    """Record that the workspace whose .rnstore folder is `dotdir` uses the
    store (`shared`: a group-shared store, see fsutil.share)."""
    path = registration_path(store_root, dotdir)
    make_folder(path.parent, shared=shared)
    atomic_write(path, os.fsencode(dotdir.absolute()) + b"\n", durable=durable, shared=shared)
    return path


WORKSPACE_ID = "workspace-id"


def read_workspace_id(dotdir: Path) -> tuple[str, bytes] | None:
    """(id, .rnstore path it last registered at), or None if unknown."""
    try:
        lines = (dotdir / WORKSPACE_ID).read_bytes().split(b"\n")
    except (FileNotFoundError, NotADirectoryError):
        return None
    ident = lines[0].decode("ascii", "replace")
    if len(lines) < 2 or len(ident) != 32 or not _HEX.issuperset(ident) or not lines[1]:
        return None  # damaged: registering again is harmless
    return ident, lines[1]


def ensure_registered(store_root: Path, dotdir: Path, *, durable: bool,
                      shared: bool = False) -> tuple[Path, bool]:
    """Register the workspace whose .rnstore folder is `dotdir` where it
    stands now, if it is not (see the module docstring); idempotent. The
    registration's path, and whether it was written now."""
    here = os.fsencode(dotdir.absolute())
    path = registration_path(store_root, dotdir)
    recorded = read_workspace_id(dotdir)
    if recorded is not None and recorded[1] == here and path.is_file():
        return path, False
    ident = recorded[0] if recorded is not None else None
    if recorded is not None and recorded[1] != here:
        original = Path(os.fsdecode(recorded[1]))
        if (original / "HEAD").is_file() and read_workspace_id(original) == (ident, recorded[1]):
            ident = None  # a copy: the original still stands there
    register(store_root, dotdir, durable=durable, shared=shared)
    atomic_write(dotdir / WORKSPACE_ID, f"{ident or secrets.token_hex(16)}\n".encode() + here + b"\n",
                 durable=durable)
    return path, True


def registrations(store_root: Path) -> list[Path]:
    """Registration files of a shared store, sorted."""
    folder = store_root / WORKSPACES
    try:
        names = os.listdir(folder)
    except FileNotFoundError:
        return []
    return sorted(folder / n for n in names if len(n) == 32 and _HEX.issuperset(n))


def registered_dotdir(registration: Path) -> Path:
    """The .rnstore folder a registration names; OSError if it cannot be
    read, CorruptStoreError if it does not hold an absolute path."""
    text = registration.read_bytes()
    dotdir = Path(os.fsdecode(text.rstrip(b"\n")))
    if not text.strip() or not dotdir.is_absolute():
        raise CorruptStoreError(f"the registration {registration} is corrupt")
    return dotdir


def gone_since(registration: Path) -> float | None:
    """When gc first found the workspace gone, if it did."""
    return read_float(_beside(registration, GONE_SUFFIX))


def last_seen_roots(registration: Path) -> tuple[list[tuple[str, str]], float | None]:
    """The (kind, id) roots gc last read in the workspace, and when; None
    for when if gc never read them (nothing is known of what it held).
    OSError or CorruptStoreError when the file cannot be trusted."""
    roots_file = _beside(registration, ROOTS_SUFFIX)
    try:
        lines = roots_file.read_text(encoding="ascii").splitlines()
        seen_at = os.stat(roots_file).st_mtime
    except FileNotFoundError:
        return [], None
    except UnicodeDecodeError:
        raise CorruptStoreError(f"{roots_file} is corrupt") from None
    roots = []
    for line in lines:
        letter, _, oid = line.partition(" ")
        if letter not in _LETTER_KIND or not is_object_id(oid):
            raise CorruptStoreError(f"{roots_file} is corrupt")
        roots.append((_LETTER_KIND[letter], oid))
    return roots, seen_at


def record_roots(registration: Path, roots: Iterable[tuple[str, str]], *, durable: bool,
                 shared: bool = False) -> None:
    """Remember what the (alive) workspace holds, for when it goes away."""
    lines = sorted({f"{_KIND_LETTER[kind]} {oid}\n" for kind, oid in roots})
    atomic_write(_beside(registration, ROOTS_SUFFIX), "".join(lines).encode(), durable=durable,
                 shared=shared)
    remove_quietly(_beside(registration, GONE_SUFFIX))


def mark_gone(registration: Path, now: float, *, shared: bool = False) -> None:
    atomic_write(_beside(registration, GONE_SUFFIX), f"{now:.3f}\n".encode(), durable=False,
                 shared=shared)


def unregister(registration: Path) -> None:
    for path in (registration, _beside(registration, ROOTS_SUFFIX), _beside(registration, GONE_SUFFIX)):
        remove_quietly(path)


def read_float(path: Path) -> float | None:
    try:
        return float(path.read_text(encoding="utf-8").strip())
    except (FileNotFoundError, ValueError):
        return None


def same_folder(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return os.path.abspath(a) == os.path.abspath(b)


def _beside(registration: Path, suffix: str) -> Path:
    return registration.with_name(registration.name + suffix)


__all__ = ["register", "ensure_registered", "read_workspace_id", "registration_path", "registrations", "registered_dotdir", "gone_since",
           "last_seen_roots", "record_roots", "mark_gone", "unregister", "same_folder", "WORKSPACES"]
