"""HEAD, branches and tags, and the journal of live snapshots.

Refs are files under `refs/` holding one id; HEAD holds `ref: refs/heads/NAME`
or an id. Every change is a compare-and-swap made under the workspace lock and
written with an atomic rename, so two writers never silently lose an update.

The journal is the folder `snapshots/`: one empty file per live snapshot,
named by its id. Adding and dropping are single atomic file operations, so
they need no lock and concurrent commits never collide.
"""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path
from typing import Callable, Iterator

from .errors import CorruptStoreError, InvalidValueError, RefConflictError
from .fsutil import (FileLock, atomic_write, fsync_dir, make_folder, read_text_or_none, touch_state,
                     unsafe_state_file)
from .objects import is_object_id

HEADS = "refs/heads/"
TAGS = "refs/tags/"
#: What `fetch` records of a remote's branches: refs/remotes/NAME/BRANCH.
REMOTES = "refs/remotes/"
HEAD = "HEAD"
#: Pass as `expected` to update unconditionally.
ANY = object()

_BAD_REF_CHARS = re.compile(r"[\x00-\x20\x7f~^:?*\[\\]")


def check_ref_name(name: str) -> None:
    """git check-ref-format's rules, for a full name such as refs/heads/x."""
    bad = (
        not name.startswith("refs/")
        or name.endswith(("/", ".", ".lock"))
        or ".." in name
        or "@{" in name
        or "//" in name
        or _BAD_REF_CHARS.search(name)
        or any(part.startswith(".") or not part for part in name.split("/"))
        or len(name.split("/")) < 3
    )
    if bad:
        raise InvalidValueError(f"'{name}' is not a valid ref name")


def valid_ref_name(name: str) -> bool:
    """check_ref_name as a question."""
    try:
        check_ref_name(name)
    except InvalidValueError:
        return False
    return True


def branch_ref(name: str) -> str:
    ref = name if name.startswith("refs/") else HEADS + name
    check_ref_name(ref)
    return ref


def tag_ref(name: str) -> str:
    if name.startswith("refs/") and not name.startswith(TAGS):  # `tag -d refs/heads/main` deleted a branch
        raise InvalidValueError(f"'{name}' is not a tag: tags are {TAGS}NAME")
    ref = name if name.startswith(TAGS) else TAGS + name
    check_ref_name(ref)
    return ref


def short_name(ref: str) -> str:
    for prefix in (HEADS, TAGS):
        if ref.startswith(prefix):
            return ref[len(prefix):]
    return ref


class RefStore:
    def __init__(self, dotdir: Path, lock: Callable[[], FileLock], *, durable: bool = True,
                 group_shared: bool = False):
        self.dotdir = dotdir
        self.lock = lock
        self.durable = durable
        self.group_shared = group_shared  # a group-shared store's tags (fsutil.share)

    # -- reading --------------------------------------------------------------------

    def _path(self, ref: str) -> Path:
        if ref != HEAD:
            check_ref_name(ref)
            check_no_symlink_between(self.dotdir, ref.rsplit("/", 1)[0])
        return self.dotdir / ref

    def read_raw(self, ref: str) -> str | None:
        try:
            text = read_text_or_none(self._path(ref))
        except IsADirectoryError:
            return None  # a folder of refs (refs/tags/a for refs/tags/a/b), not a ref
        except UnicodeDecodeError:
            raise CorruptStoreError(f"{ref} is corrupt: not text") from None
        return None if text is None else text.strip()

    def head(self) -> tuple[str | None, str | None]:
        """(branch ref or None when detached, snapshot id or None when unborn)."""
        raw = self.read_raw(HEAD)
        if raw is None:
            raise CorruptStoreError(f"HEAD is missing in {self.dotdir}")
        if raw.startswith("ref: "):
            ref = raw[5:]
            try:
                check_ref_name(ref)
            except InvalidValueError:
                raise CorruptStoreError(f"HEAD is corrupt: it names the invalid ref '{ref[:80]}'") from None
            if not ref.startswith(HEADS):  # a commit would move a tag of the store, or any ref
                raise CorruptStoreError(f"HEAD is corrupt: it names '{ref[:80]}', which is not a branch")
            return ref, self.resolve(ref)
        if not is_object_id(raw):
            raise CorruptStoreError(f"HEAD is corrupt: '{raw[:80]}'")
        return None, raw

    def resolve(self, ref: str) -> str | None:
        """A ref's id; None if the ref does not exist. Follows HEAD."""
        if ref == HEAD:
            return self.head()[1]
        raw = self.read_raw(ref)
        if raw is None:
            return None
        if not is_object_id(raw):
            raise CorruptStoreError(f"ref {ref} is corrupt: '{raw[:80]}'")
        return raw

    def list(self, prefix: str = "refs/") -> dict[str, str]:
        """Every ref below `prefix` with its id, sorted by name."""
        found: dict[str, str] = {}
        base = self.dotdir / "refs"

        def unreadable(error: OSError) -> None:
            raise CorruptStoreError(f"cannot read the refs folder: {error}")

        for folder, dirs, files in os.walk(base, onerror=unreadable):
            dirs.sort()
            for name in files:
                ref = Path(folder, name).relative_to(self.dotdir).as_posix()
                try:
                    check_ref_name(ref)
                except InvalidValueError:
                    continue  # a leftover (a .tmp- or .lock file), not a ref
                if ref.startswith(prefix):
                    value = self.resolve(ref)
                    if value is not None:
                        found[ref] = value
        return dict(sorted(found.items()))

    # -- writing --------------------------------------------------------------------

    def _current(self, ref: str) -> str | None:
        if ref == HEAD:
            raw = self.read_raw(HEAD)
            if raw is not None and raw.startswith("ref: "):
                return self.resolve(raw[5:])
            return raw
        return self.resolve(ref)

    def _target(self, ref: str) -> str:
        """Updating HEAD while it is attached updates its branch, as in git."""
        if ref == HEAD:
            raw = self.read_raw(HEAD) or ""
            if raw.startswith("ref: "):
                return raw[5:]
        return ref

    def _check_expected(self, ref: str, expected: object) -> None:
        if expected is ANY:
            return
        current = self._current(ref)
        if current != expected:
            raise RefConflictError(
                f"ref {ref} is at {current or 'nothing'}, expected {expected or 'nothing'}",
                hints=["another process moved it; look again and retry"],
            )

    def update(self, ref: str, new_id: str, expected: object = ANY, *, follow_head: bool = True) -> None:
        """Point `ref` at `new_id` if it is now at `expected` (None: absent).
        With `follow_head` False, HEAD itself is detached at `new_id`."""
        if not is_object_id(new_id):
            raise InvalidValueError(f"'{new_id}' is not a full object id")
        with self.lock():
            self._check_expected(ref, expected)
            target = self._target(ref) if follow_head else ref
            path = self._path(target)
            try:
                make_folder(path.parent, shared=self.group_shared, parents=True)
                atomic_write(path, (new_id + "\n").encode(), durable=self.durable,
                             shared=self.group_shared)
            except (NotADirectoryError, FileExistsError, IsADirectoryError):
                raise _clash(self.dotdir, target) from None

    def delete(self, ref: str, expected: object = ANY) -> None:
        if ref == HEAD:
            raise InvalidValueError("HEAD cannot be deleted")
        with self.lock():
            self._check_expected(ref, expected)
            path = self._path(ref)
            if not path.exists():
                raise InvalidValueError(f"ref {ref} does not exist")
            os.unlink(path)
            if self.durable:
                fsync_dir(path.parent)

    def set_head_symbolic(self, ref: str) -> None:
        check_ref_name(ref)
        if not ref.startswith(HEADS):
            raise InvalidValueError(f"HEAD can only be attached to a branch (refs/heads/...), not '{ref}'")
        with self.lock():
            atomic_write(self._path(HEAD), f"ref: {ref}\n".encode(), durable=self.durable)

    def symbolic_head(self) -> str | None:
        return self.head()[0]


def check_no_symlink_between(dotdir: Path, folder: str) -> None:
    """Refuse a symlink (or a file) at any folder of `folder` (relative to
    `dotdir`, '/'-separated): what rnstore writes inside its folder must
    never land elsewhere."""
    path = dotdir
    for part in folder.split("/"):
        path = path / part
        try:
            mode = os.lstat(path).st_mode
        except FileNotFoundError:
            return  # made when written, by us
        if stat.S_ISLNK(mode):
            raise unsafe_state_file(path)


class RefClashError(InvalidValueError):
    """A ref that cannot be made because another ref is its folder, or
    lies below it (`main` and `main/x`)."""


def clashing_ref(ref: str, others) -> str | None:
    """A ref among `others` that `ref` cannot live beside, as a file and a
    folder of the same name (`main` and `main/x`); None if none."""
    below = ref + "/"
    parts = ref.split("/")
    above = {"/".join(parts[:depth]) for depth in range(2, len(parts))}
    return next((other for other in others if other in above or other.startswith(below)), None)


def _clash(dotdir: Path, ref: str) -> InvalidValueError:
    """A ref whose name is a folder of other refs, or lies below a ref."""
    parts = ref.split("/")
    for depth in range(2, len(parts)):
        prefix = "/".join(parts[:depth])
        if (dotdir / prefix).is_file():
            return RefClashError(
                f"cannot create {ref}: {prefix} exists, and a ref cannot also be a folder of refs",
                hints=[f"delete {short_name(prefix)} first, or choose another name"])
    return RefClashError(
        f"cannot create {ref}: refs below it exist ({ref}/...), and a ref cannot also be a folder",
        hints=["choose another name"])


class Journal:
    """The set of live snapshots: `<dotdir>/snapshots/<id>`, one empty file each."""

    def __init__(self, folder: Path, *, durable: bool = True):
        self.folder = folder
        self.durable = durable

    def add(self, snapshot_id: str) -> None:
        check_no_symlink_between(self.folder.parent, self.folder.name)
        self.folder.mkdir(exist_ok=True)
        touch_state(self.folder / snapshot_id)
        if self.durable:
            fsync_dir(self.folder)

    def discard(self, snapshot_id: str) -> bool:
        try:
            os.unlink(self.folder / snapshot_id)
        except FileNotFoundError:
            return False
        if self.durable:
            fsync_dir(self.folder)
        return True

    def __contains__(self, snapshot_id: str) -> bool:
        return (self.folder / snapshot_id).exists()

    def __iter__(self) -> Iterator[str]:
        try:
            names = os.listdir(self.folder)
        except FileNotFoundError:
            return iter(())
        return iter(sorted(n for n in names if is_object_id(n)))
