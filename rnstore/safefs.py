"""A safe file-system layer for writing into a folder that may hold hostile
entries: nothing is written or removed through a path. Every operation goes
through directory descriptors opened one component at a time with
O_NOFOLLOW, so a symlink in the folder (planted, or checked out from a
snapshot such as ``link -> /etc``) is never followed, and nothing outside
the root is touched. checkout.py writes through it.
"""

from __future__ import annotations

import errno
import os
import shutil
import stat
from collections import OrderedDict
from pathlib import Path

from .errors import ConflictError
from .fsutil import temp_name_for

O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
O_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | O_CLOEXEC
O_NEW = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | O_CLOEXEC
O_READ = os.O_RDONLY | os.O_NOFOLLOW | O_CLOEXEC
WRITE_CHUNK = 1 << 20


def write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def ancestors(path: bytes) -> list[bytes]:
    parts = path.split(b"/")
    return [b"/".join(parts[:depth]) for depth in range(1, len(parts))]


def add_ancestors(path: bytes, folders: set[bytes]) -> None:
    """Add the folders above `path` to `folders`, from the nearest up,
    stopping at one already there (its own are then there too): siblings
    cost one lookup each, not one per level."""
    parent = path.rpartition(b"/")[0]
    while parent and parent not in folders:
        folders.add(parent)
        parent = parent.rpartition(b"/")[0]


def split(path: bytes) -> tuple[bytes, bytes]:
    parent, _, name = path.rpartition(b"/")
    return parent, name


def rmdir_quietly(dirs: "Dirs", parent_fd: int, path: bytes, name: bytes) -> bool:
    try:
        os.rmdir(name, dir_fd=parent_fd)
    except OSError:
        return False  # not empty (untracked or ignored content), gone, or not a folder
    dirs.forget(path)
    return True


def prune(dirs: "Dirs", gone: list[bytes], needed: set[bytes]) -> None:
    """Remove the folders that removing `gone` emptied (never the root, never
    one the snapshot needs), deepest first."""
    candidates = {a for path in gone for a in ancestors(path)} - needed
    for folder in sorted(candidates, key=lambda p: (-p.count(b"/"), p)):
        parent, name = split(folder)
        fd = dirs.open(parent)
        if fd is not None:
            rmdir_quietly(dirs, fd, folder, name)


def remove_folder(parent_fd: int, name: bytes, force: bool) -> None:
    """A folder in the way of a file. Without `force` the plan found nothing
    in it but folders, so only empty folders are removed (anything that
    appeared since makes this fail rather than delete it)."""
    if force:
        shutil.rmtree(os.fsdecode(name), dir_fd=parent_fd)
        return
    fd = os.open(name, O_DIR, dir_fd=parent_fd)
    try:
        for child in os.listdir(fd):
            remove_folder(fd, os.fsencode(child), False)
    finally:
        os.close(fd)
    os.rmdir(name, dir_fd=parent_fd)


def place(stage_fd: int, staged: bytes, parent_fd: int, name: bytes) -> None:
    """Rename a staged file or link into place; it replaces a file or link
    (never following it). Across file systems, copy to a temp name first."""
    try:
        os.rename(staged, name, src_dir_fd=stage_fd, dst_dir_fd=parent_fd)
        return
    except OSError as exc:
        if exc.errno != errno.EXDEV:
            raise
    temp = os.fsencode(temp_name_for(Path(os.fsdecode(name[:100]))).name)
    st = os.stat(staged, dir_fd=stage_fd, follow_symlinks=False)
    if stat.S_ISLNK(st.st_mode):
        os.symlink(os.readlink(staged, dir_fd=stage_fd), temp, dir_fd=parent_fd)
    else:
        source = os.open(staged, O_READ, dir_fd=stage_fd)
        try:
            out = os.open(temp, O_NEW, stat.S_IMODE(st.st_mode), dir_fd=parent_fd)
            try:
                while True:
                    chunk = os.read(source, WRITE_CHUNK)
                    if not chunk:
                        break
                    write_all(out, chunk)
            finally:
                os.close(out)
        finally:
            os.close(source)
    try:
        os.rename(temp, name, src_dir_fd=parent_fd, dst_dir_fd=parent_fd)
    except BaseException:
        try:
            os.unlink(temp, dir_fd=parent_fd)
        except OSError:
            pass
        raise


class Dirs:
    """Descriptors of the folders below a root, opened one component at a
    time with O_NOFOLLOW (a symlink or file on the way is refused, never
    followed); the most recently used stay open."""

    CAPACITY = 64

    def __init__(self, root_fd: int):
        self.root_fd = root_fd
        self._open: OrderedDict[bytes, int] = OrderedDict()

    def open(self, folder: bytes, create: bool = False) -> int | None:
        """The folder's descriptor; None if it is absent (or not a real
        folder) and not `create`. With `create`, missing folders are made and
        anything else on the way is a ConflictError."""
        if not folder:
            return self.root_fd
        fd = self._open.get(folder)
        if fd is not None:
            self._open.move_to_end(folder)
            return fd
        # from the deepest folder already open, one component at a time
        parts = folder.split(b"/")
        depth, fd = len(parts) - 1, None
        while depth > 0:
            ancestor = b"/".join(parts[:depth])
            fd = self._open.get(ancestor)
            if fd is not None:
                self._open.move_to_end(ancestor)
                break
            depth -= 1
        if fd is None:
            fd = self.root_fd
        for depth in range(depth + 1, len(parts) + 1):
            path, name = b"/".join(parts[:depth]), parts[depth - 1]
            fd = self._open_one(fd, path, name, create)
            if fd is None:
                return None
        return fd

    def _open_one(self, parent_fd: int, folder: bytes, name: bytes, create: bool) -> int | None:
        try:
            fd = os.open(name, O_DIR, dir_fd=parent_fd)
        except FileNotFoundError:
            if not create:
                return None
            try:
                os.mkdir(name, 0o777, dir_fd=parent_fd)
            except FileExistsError:
                pass
            fd = self._open_checked(folder, name, parent_fd)
        except OSError as exc:
            if exc.errno not in (errno.ELOOP, errno.ENOTDIR):
                raise
            if not create:
                return None
            raise not_a_folder(folder) from None
        self._open[folder] = fd
        while len(self._open) > self.CAPACITY:
            # never the parent just used: it is at the end, with `fd`
            os.close(self._open.popitem(last=False)[1])
        return fd

    @staticmethod
    def _open_checked(folder: bytes, name: bytes, parent_fd: int) -> int:
        try:
            return os.open(name, O_DIR, dir_fd=parent_fd)
        except OSError as exc:
            if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                raise not_a_folder(folder) from None
            raise

    def forget(self, folder: bytes) -> None:
        """Drop the descriptors of a folder that is being removed, and below."""
        for path in [p for p in self._open if p == folder or p.startswith(folder + b"/")]:
            os.close(self._open.pop(path))

    def close(self) -> None:
        while self._open:
            os.close(self._open.popitem()[1])


def not_a_folder(folder: bytes) -> ConflictError:
    return ConflictError(
        f"'{os.fsdecode(folder)}' is not a folder (a symlink or a file appeared there "
        f"during the checkout); refusing to write through it", [os.fsdecode(folder)],
        hints=["remove it and run the checkout again"])


__all__ = ["Dirs", "add_ancestors", "place", "prune", "remove_folder", "rmdir_quietly", "split", "ancestors",
           "write_all", "not_a_folder", "O_DIR", "O_NEW", "O_READ"]
