"""File-system primitives: atomic writes, fsync helpers, lock and state files.

Locks are fcntl.flock locks: the kernel drops them when their holder dies, so a
crashed process never blocks others for good. The holder writes who it is into
the lock file so that a waiter can say whom it waits for.

Lock and state files (HEAD, refs, the index, config, journal entries) are
opened with O_NOFOLLOW and O_NONBLOCK and must be regular files: a symlink
planted in their place is refused, never followed, and a FIFO never hangs.

Files are created 0666 and folders 0777, and the umask decides. In a store
shared by a group (`init --shared=group`, see `share`), what rnstore creates
is made group-writable whatever the umask, and folders setgid, so that what
is made inside them keeps the team's group.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import os
import secrets
import socket
import stat
import sys
import time
from pathlib import Path
from typing import Callable, Iterable

from .errors import CorruptStoreError, LockTimeoutError

TMP_PREFIX = ".tmp-"
#: A file changed this recently may still be being written, and its times
#: may not show the last change yet: far above the coarse clock tick that
#: stamps file times (<= 10 ms).
RACY_NS = 100_000_000


def settled_before(time_ns: int, moment_ns: int) -> bool:
    """Whether a file or folder whose newest time is `time_ns` can have
    changed no later than RACY_NS before `moment_ns`. A time on a whole
    second most likely comes from a coarse clock (FAT's 2 s, 1 s on some
    network and older file systems), which stamps every change within its
    tick with the tick's start: such a time stands for up to 2 s after it."""
    coarse_tick = 2_000_000_000 if time_ns % 1_000_000_000 == 0 else 0
    return time_ns + coarse_tick < moment_ns - RACY_NS
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
#: Opening a state file: never through a symlink, never blocking on a FIFO.
_STATE_FLAGS = os.O_NOFOLLOW | os.O_NONBLOCK | _CLOEXEC
#: A lock file rnstore made holds one line naming its holder; a bigger file
#: (or one with other names) was put there by someone else: locked, not written.
_LOCK_INFO_MAX = 512


def share(fd_or_path: int | str | Path, *, folder: bool = False) -> None:
    """Make a file or folder of a group-shared store writable by the group
    (folders also setgid), whatever the umask: git's core.sharedRepository=group."""
    if isinstance(fd_or_path, int):
        mode = os.fstat(fd_or_path).st_mode
        wanted = stat.S_IMODE(mode) | ((stat.S_IMODE(mode) & 0o700) >> 3)
        if folder:
            wanted |= stat.S_ISGID
        if wanted != stat.S_IMODE(mode):
            os.fchmod(fd_or_path, wanted)
        return
    fd = os.open(fd_or_path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | _CLOEXEC
                 | (os.O_DIRECTORY if folder else 0))
    try:
        share(fd, folder=folder)
    finally:
        os.close(fd)


def make_folder(path: str | Path, *, shared: bool = False, parents: bool = False) -> None:
    """mkdir that tolerates an existing folder; in a group-shared store the
    folders it makes are shared (see `share`)."""
    if parents:
        parent = os.path.dirname(os.fspath(path).rstrip("/"))
        if parent and not os.path.isdir(parent):
            make_folder(parent, shared=shared, parents=True)
    try:
        os.mkdir(path, 0o777)
    except FileExistsError:
        return
    if shared:
        share(path, folder=True)


def unsafe_state_file(path: str | Path, what: str = "") -> CorruptStoreError:
    return CorruptStoreError(
        f"{path} is {what or 'a symlink'}; rnstore never follows symlinks or reads special "
        f"files in place of its own files",
        hints=["remove it (nothing rnstore made is a link there), or restore it from a backup"])


def open_state(path: str | Path, flags: int, mode: int = 0o666) -> int:
    """os.open for a lock or state file: refuses a symlink and anything but
    a regular file."""
    try:
        fd = os.open(path, flags | _STATE_FLAGS, mode)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise unsafe_state_file(path) from None
        if exc.errno == errno.ENXIO:  # a FIFO without a reader, opened for writing
            raise unsafe_state_file(path, "a FIFO") from None
        raise
    try:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), str(path))
        if not stat.S_ISREG(st.st_mode):
            raise unsafe_state_file(path, "not a regular file")
    except BaseException:
        os.close(fd)
        raise
    return fd


class NotRegularFileError(OSError):
    """A FIFO, socket, device or folder where a regular file was expected."""


def open_regular(path: str | bytes | Path, *, follow: bool = True) -> int:
    """A read-only descriptor of a regular file. O_NONBLOCK, so that a FIFO
    (planted, or swapped in since a scan) is refused instead of hanging."""
    return open_regular_stat(path, follow=follow)[0]


def open_regular_stat(path: str | bytes | Path, *, follow: bool = True) -> tuple[int, os.stat_result]:
    """open_regular, with the descriptor's fstat (the one that checked it is
    a regular file: a caller that needs it asks no second time)."""
    flags = os.O_RDONLY | os.O_NONBLOCK | _CLOEXEC | (0 if follow else os.O_NOFOLLOW)
    fd = os.open(path, flags)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise NotRegularFileError(errno.EINVAL, "not a regular file", os.fsdecode(path))
    except BaseException:
        os.close(fd)
        raise
    return fd, st


def read_state(path: str | Path) -> bytes | None:
    """A state file's bytes, or None if it is absent; a symlink or special
    file in its place is a CorruptStoreError."""
    try:
        fd = open_state(path, os.O_RDONLY)
    except (FileNotFoundError, NotADirectoryError):
        return None
    try:
        chunks = []
        while chunk := os.read(fd, 1 << 20):
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def touch_state(path: str | Path) -> None:
    """Create an empty state file if absent (a journal entry), never
    through a symlink."""
    os.close(open_state(path, os.O_WRONLY | os.O_CREAT))


def temp_name_for(path: Path) -> Path:
    """A unique temporary name beside `path`; gc recognises the prefix."""
    return path.with_name(f"{TMP_PREFIX}{path.name}-{os.getpid()}-{secrets.token_hex(4)}")


def temp_writer_pid(name: str) -> int | None:
    """The pid that temp_name_for put second to last in a temporary name."""
    parts = name.split("-")
    return int(parts[-2]) if len(parts) >= 3 and parts[-2].isdigit() else None


#: A leftover younger than this is never taken for a dead process's.
LEFTOVER_AGE = 60.0


def pid_alive(pid: int) -> bool:
    """Whether a process with this id runs here (ours, or one we may not signal)."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # exists, owned by someone else
    return True


def left_by_dead_process(path: Path, pid: str) -> bool:
    """Whether a temporary file or folder named with a process id was left by
    a process that is gone: no such process here, and untouched for a while
    (so that a live writer on another machine sharing the folder, whose pid
    means nothing here, is spared)."""
    if not pid.isdigit() or pid_alive(int(pid)):
        return False
    try:
        return time.time() - os.lstat(path).st_mtime > LEFTOVER_AGE
    except OSError:
        return False


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: Path, data: bytes | Iterable[bytes], *, durable: bool = True,
                 mode: int = 0o666, shared: bool = False) -> None:
    """Replace `path` with `data` (bytes, or chunks of them): readers see the
    old or the new bytes, never a mix, and with `durable` the new bytes
    survive a crash once this returns."""
    tmp = temp_name_for(path)
    try:  # from naming the temporary file on, so Ctrl-C anywhere removes it
        write_new_file(tmp, data, durable=durable, mode=mode, shared=shared)
        os.replace(tmp, path)
    except BaseException:
        remove_quietly(tmp)
        raise
    if durable:
        fsync_dir(path.parent)


_CREATE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | _CLOEXEC


def write_new_file(path: str | Path, data: bytes | Iterable[bytes], *, durable: bool = False,
                   mode: int = 0o666, make_parent: bool = False, shared: bool = False) -> None:
    """Create `path`, which must not exist, holding `data` (bytes, or chunks
    of them); on any failure, Ctrl-C included, nothing is left behind.
    `shared`: in a group-shared store (see `share`)."""
    try:
        fd = os.open(path, _CREATE_FLAGS, mode)
    except FileNotFoundError:
        if not make_parent:
            raise
        make_folder(os.path.dirname(path), shared=shared, parents=True)
        fd = os.open(path, _CREATE_FLAGS, mode)
    # Only from here on is the file ours to remove: a FileExistsError above
    # must leave the existing file alone (a store's marker, say).
    try:
        if shared:
            share(fd)
        for chunk in (data,) if isinstance(data, (bytes, bytearray, memoryview)) else data:
            view = memoryview(chunk)
            while view:
                view = view[os.write(fd, view):]
        if durable:
            os.fsync(fd)
        os.close(fd)
        fd = -1
    except BaseException:
        if fd >= 0:
            os.close(fd)
        remove_quietly(path)
        raise


def remove_quietly(path: Path) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def read_text_or_none(path: Path) -> str | None:
    """A state file's text (see read_state); UnicodeDecodeError if not UTF-8."""
    data = read_state(path)
    return None if data is None else data.decode("utf-8")


_libc_syncfs = None


def sync_filesystem(path: Path) -> None:
    """Flush every dirty page of the file system holding `path` (syncfs(2));
    falls back to a global sync where syncfs is not available."""
    global _libc_syncfs
    if _libc_syncfs is None:
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            _libc_syncfs = libc.syncfs
        except (OSError, AttributeError):
            _libc_syncfs = False
    if not _libc_syncfs:
        os.sync()
        return
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        if _libc_syncfs(fd) != 0:
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err), str(path))
    finally:
        os.close(fd)


def describe_process() -> str:
    command = " ".join(Path(sys.argv[0]).name.split()[:1] + sys.argv[1:2]) if sys.argv else "python"
    return f"pid {os.getpid()} on {socket.gethostname()} ({command})"


class FileLock:
    """An flock-based lock on `path`, exclusive or shared, re-entrant within
    one process for the same mode.

    `wait` is how long to wait for another holder (seconds); `on_wait` is
    called once with a description of the holder when we have to wait.
    """

    _held: dict[tuple[str, bool], list] = {}

    def __init__(
        self,
        path: Path,
        *,
        shared: bool = False,
        wait: float = 600.0,
        on_wait: Callable[[str], None] | None = None,
        what: str = "lock",
        group_shared: bool = False,
    ):
        self.path = Path(path)
        self.group_shared = group_shared
        self.shared = shared
        self.wait = wait
        self.on_wait = on_wait
        self.what = what
        self._key = (str(self.path), shared)

    def __enter__(self) -> "FileLock":
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()

    def acquire(self) -> None:
        held = FileLock._held.get(self._key)
        if held is not None:
            held[1] += 1
            return
        fd, writable = self._open()
        try:
            self._lock(fd)
        except BaseException:
            os.close(fd)
            raise
        if not self.shared and writable:
            info = f"{describe_process()} since {time.strftime('%Y-%m-%d %H:%M:%S')}\n".encode()
            os.ftruncate(fd, 0)
            os.pwrite(fd, info, 0)
        FileLock._held[self._key] = [fd, 1, writable]

    def _open(self) -> tuple[int, bool]:
        """The lock file's descriptor, and whether we may write our name into
        it: only into a file we created, or one that looks like what we
        create (a single link, one short line). Never through a symlink; a
        file we may not write is locked read-only (flock needs no more)."""
        for _ in range(10):
            try:
                fd = open_state(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL)
            except FileExistsError:
                pass
            else:
                if self.group_shared:
                    share(fd)
                return fd, True
            try:
                fd = open_state(self.path, os.O_RDWR)
            except FileNotFoundError:
                continue  # removed since: create it
            except PermissionError:
                try:
                    return open_state(self.path, os.O_RDONLY), False
                except FileNotFoundError:
                    continue
            st = os.fstat(fd)
            return fd, st.st_nlink == 1 and st.st_size <= _LOCK_INFO_MAX
        raise OSError(errno.EAGAIN, "the lock file keeps disappearing", str(self.path))

    def _lock(self, fd: int) -> None:
        operation = (fcntl.LOCK_SH if self.shared else fcntl.LOCK_EX) | fcntl.LOCK_NB
        deadline = time.monotonic() + self.wait
        delay = 0.01
        told = False
        while True:
            try:
                fcntl.flock(fd, operation)
                return
            except OSError as exc:
                if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    raise
            holder = self.holder(fd)
            if time.monotonic() >= deadline:
                raise LockTimeoutError(
                    f"timed out after {self.wait:g}s waiting for the {self.what} "
                    f"({self.path}) held by {holder}",
                    hints=["raise core.lock_wait, or wait for that process to finish"],
                )
            if not told and self.on_wait is not None:
                self.on_wait(f"waiting for the {self.what} held by {holder}")
                told = True
            time.sleep(min(delay, max(0.0, deadline - time.monotonic())))
            delay = min(delay * 2, 0.2)

    @staticmethod
    def holder(fd: int) -> str:
        try:
            text = os.pread(fd, 512, 0).decode("utf-8", "replace").strip()
        except OSError:
            text = ""
        return text or "another process"

    def release(self) -> None:
        held = FileLock._held.get(self._key)
        if held is None:
            return
        held[1] -= 1
        if held[1] > 0:
            return
        del FileLock._held[self._key]
        if not self.shared and held[2]:
            # Forget who held it, so that a later waiter (behind shared
            # holders, which write nothing) does not name this process.
            try:
                os.ftruncate(held[0], 0)
            except OSError:
                pass
        fcntl.flock(held[0], fcntl.LOCK_UN)
        os.close(held[0])
