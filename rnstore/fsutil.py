"""File-system primitives: atomic writes, fsync helpers and lock files.

Locks are fcntl.flock locks: the kernel drops them when their holder dies, so a
crashed process never blocks others for good. The holder writes who it is into
the lock file so that a waiter can say whom it waits for.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import os
import secrets
import socket
import sys
import time
from pathlib import Path
from typing import Callable, Iterable

from .errors import LockTimeoutError

TMP_PREFIX = ".tmp-"
#: A file changed this recently may still be being written, and its times
#: may not show the last change yet: far above the coarse clock tick that
#: stamps file times (<= 10 ms).
RACY_NS = 100_000_000


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
                 mode: int = 0o644) -> None:
    """Replace `path` with `data` (bytes, or chunks of them): readers see the
    old or the new bytes, never a mix, and with `durable` the new bytes
    survive a crash once this returns."""
    tmp = temp_name_for(path)
    try:  # from naming the temporary file on, so Ctrl-C anywhere removes it
        write_new_file(tmp, data, durable=durable, mode=mode)
        os.replace(tmp, path)
    except BaseException:
        remove_quietly(tmp)
        raise
    if durable:
        fsync_dir(path.parent)


_CREATE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)


def write_new_file(path: str | Path, data: bytes | Iterable[bytes], *, durable: bool = False,
                   mode: int = 0o644, make_parent: bool = False) -> None:
    """Create `path`, which must not exist, holding `data` (bytes, or chunks
    of them); on any failure, Ctrl-C included, nothing is left behind."""
    fd = -1
    try:
        try:
            fd = os.open(path, _CREATE_FLAGS, mode)
        except FileNotFoundError:
            if not make_parent:
                raise
            os.makedirs(os.path.dirname(path), exist_ok=True)
            fd = os.open(path, _CREATE_FLAGS, mode)
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
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None


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
    ):
        self.path = Path(path)
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
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            self._lock(fd)
        except BaseException:
            os.close(fd)
            raise
        if not self.shared:
            info = f"{describe_process()} since {time.strftime('%Y-%m-%d %H:%M:%S')}\n".encode()
            os.ftruncate(fd, 0)
            os.pwrite(fd, info, 0)
        FileLock._held[self._key] = [fd, 1]

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
        if not self.shared:
            # Forget who held it, so that a later waiter (behind shared
            # holders, which write nothing) does not name this process.
            try:
                os.ftruncate(held[0], 0)
            except OSError:
                pass
        fcntl.flock(held[0], fcntl.LOCK_UN)
        os.close(held[0])
