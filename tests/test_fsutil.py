"""fsutil.py: atomic writes and flock-based lock files, across real processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from rnstore.errors import LockTimeoutError
from rnstore.fsutil import TMP_PREFIX, FileLock, atomic_write, temp_name_for


# -- atomic_write ------------------------------------------------------------------------

def test_atomic_write_creates_and_replaces(tmp_path):
    path = tmp_path / "f"
    atomic_write(path, b"one")
    assert path.read_bytes() == b"one"
    inode = path.stat().st_ino
    atomic_write(path, b"two, longer")
    assert path.read_bytes() == b"two, longer"
    assert path.stat().st_ino != inode  # a new file renamed over, never rewritten in place
    atomic_write(path, b"")
    assert path.read_bytes() == b""
    assert os.listdir(tmp_path) == ["f"]


def test_atomic_write_mode_and_non_durable(tmp_path):
    path = tmp_path / "f"
    atomic_write(path, b"x", durable=False, mode=0o600)
    assert path.read_bytes() == b"x"
    assert path.stat().st_mode & 0o777 == 0o600 & ~_umask()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_atomic_write_failure_leaves_old_content_and_no_temp(tmp_path):
    path = tmp_path / "f"
    atomic_write(path, b"old")

    class Exploding:
        def __len__(self):
            return 3

        def __getitem__(self, item):
            raise RuntimeError("disk on fire")

    with pytest.raises((RuntimeError, TypeError)):
        atomic_write(path, Exploding())  # type: ignore[arg-type]
    assert path.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["f"]


def test_atomic_write_into_missing_folder_fails_cleanly(tmp_path):
    with pytest.raises(FileNotFoundError):
        atomic_write(tmp_path / "nowhere" / "f", b"x")


def test_temp_names_are_unique_and_recognisable(tmp_path):
    names = {temp_name_for(tmp_path / "HEAD") for _ in range(100)}
    assert len(names) == 100
    assert all(n.name.startswith(TMP_PREFIX + "HEAD-") and n.parent == tmp_path for n in names)


# -- FileLock --------------------------------------------------------------------------------

HOLDER = textwrap.dedent("""
    import sys
    from rnstore.fsutil import FileLock
    lock = FileLock(sys.argv[1], shared=sys.argv[2] == "shared")
    lock.acquire()
    print("locked", flush=True)
    sys.stdin.read()       # hold until the test closes our stdin
    lock.release()
    print("released", flush=True)
""")


class Holder:
    """Another process holding a lock until told to let go."""

    def __init__(self, path: Path, *, shared: bool = False):
        self.proc = subprocess.Popen(
            [sys.executable, "-c", HOLDER, str(path), "shared" if shared else "exclusive"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout.readline() == "locked\n"

    @property
    def pid(self) -> int:
        return self.proc.pid

    def release(self) -> None:
        self.proc.stdin.close()
        assert self.proc.stdout.readline() == "released\n"
        self.proc.wait(timeout=30)

    def kill(self) -> None:
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)
        self.proc.stdin.close()
        self.proc.stdout.close()


@pytest.fixture
def holders():
    started: list[Holder] = []

    def start(path, **kw):
        holder = Holder(path, **kw)
        started.append(holder)
        return holder

    yield start
    for holder in started:
        if holder.proc.poll() is None:
            holder.proc.kill()
            holder.proc.wait()


def test_lock_is_exclusive_across_processes_and_names_its_holder(tmp_path, holders):
    path = tmp_path / "lock"
    holder = holders(path)
    told = []
    lock = FileLock(path, wait=0.3, on_wait=told.append, what="workspace lock")
    with pytest.raises(LockTimeoutError) as info:
        lock.acquire()
    message = str(info.value)
    assert f"pid {holder.pid}" in message
    assert "workspace lock" in message and str(path) in message
    assert info.value.hints
    assert len(told) == 1 and f"pid {holder.pid}" in told[0]
    holder.release()
    with FileLock(path, wait=5):
        pass


def test_waiter_gets_the_lock_once_the_holder_lets_go(tmp_path, holders):
    path = tmp_path / "lock"
    holder = holders(path)
    waiter = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent("""
            import sys
            from rnstore.fsutil import FileLock
            with FileLock(sys.argv[1], wait=60, on_wait=lambda m: print("waiting", flush=True)):
                print("got it", flush=True)
        """), str(path)], stdout=subprocess.PIPE, text=True)
    try:
        assert waiter.stdout.readline() == "waiting\n"
        holder.release()
        assert waiter.stdout.readline() == "got it\n"
        assert waiter.wait(timeout=30) == 0
    finally:
        if waiter.poll() is None:
            waiter.kill()
            waiter.wait()
        waiter.stdout.close()


def test_lock_of_a_killed_process_does_not_block(tmp_path, holders):
    path = tmp_path / "lock"
    holder = holders(path)
    holder.kill()
    with FileLock(path, wait=5):
        pass


def test_shared_locks_coexist_and_block_exclusive(tmp_path, holders):
    path = tmp_path / "store.lock"
    reader = holders(path, shared=True)
    with FileLock(path, shared=True, wait=0.2):
        pass
    with pytest.raises(LockTimeoutError):
        FileLock(path, wait=0.2).acquire()
    reader.release()
    with FileLock(path, wait=5):
        pass


def test_exclusive_holder_blocks_shared(tmp_path, holders):
    path = tmp_path / "store.lock"
    holders(path)
    with pytest.raises(LockTimeoutError):
        FileLock(path, shared=True, wait=0.2).acquire()


def test_a_released_holder_is_not_named_later(tmp_path, holders):
    """An exclusive holder that let go must not be named as the holder when
    a later waiter is blocked by shared holders (which write nothing)."""
    path = tmp_path / "store.lock"
    first = holders(path)
    first.release()
    holders(path, shared=True)
    with pytest.raises(LockTimeoutError) as info:
        FileLock(path, wait=0.2).acquire()
    assert f"pid {first.pid}" not in str(info.value)


def test_reentrant_within_a_process(tmp_path):
    path = tmp_path / "lock"
    outer = FileLock(path, wait=0.2)
    inner = FileLock(path, wait=0.2)
    with outer:
        with inner:
            pass
        # still held after the inner release: another process cannot take it
        probe = subprocess.run(
            [sys.executable, "-c",
             "import sys; from rnstore.fsutil import FileLock\n"
             "try:\n FileLock(sys.argv[1], wait=0.1).acquire()\n"
             "except Exception as e: print(type(e).__name__)", str(path)],
            capture_output=True, text=True, timeout=60)
        assert probe.stdout.strip() == "LockTimeoutError"
    with FileLock(path, wait=0.2):
        pass


def test_release_without_acquire_is_harmless(tmp_path):
    FileLock(tmp_path / "lock").release()
