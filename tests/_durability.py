"""Recording, in process, the order in which a command creates, fsyncs,
renames and removes files, and checking it against FORMAT.md's "Read and
write ordering" rules.

A kill -9 test cannot see a missing fsync (the page cache survives the
process), so this wraps the real calls instead: os.open (creating), the file
objects' open (creating), os.fsync, syncfs (fsutil.sync_filesystem), os.replace
and os.rename, os.unlink. Each wrapper records an event and then makes the
real call; nothing is faked. Linux only (fds are named through /proc).
"""

from __future__ import annotations

import builtins
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

from rnstore import fsutil


@dataclass(frozen=True)
class Event:
    op: str             # create, mkdir, fsync, syncfs, rename, unlink
    path: str           # for rename: the new name
    source: str = ""    # for rename: the old name
    size: int = -1      # for fsync and rename: the file's size then


@dataclass
class Recorder:
    events: list[Event] = field(default_factory=list)
    #: file sizes as of each syncfs, by event position
    synced_sizes: dict[int, dict[str, int]] = field(default_factory=dict)

    def ops(self, op: str) -> list[tuple[int, Event]]:
        return [(i, e) for i, e in enumerate(self.events) if e.op == op]

    def clear(self) -> None:
        self.events.clear()
        self.synced_sizes.clear()


def _absolute(path, dir_fd=None) -> str:
    path = os.fsdecode(path)
    if dir_fd is not None and not os.path.isabs(path):
        path = os.path.join(os.readlink(f"/proc/self/fd/{dir_fd}"), path)
    return os.path.abspath(path)


def _sizes_below(folder: str) -> dict[str, int]:
    sizes = {}
    for parent, _, names in os.walk(folder):
        for name in names:
            path = os.path.join(parent, name)
            try:
                sizes[path] = os.lstat(path).st_size
            except FileNotFoundError:
                pass
    return sizes


def record_durability(monkeypatch, watched: Path) -> Recorder:
    """Start recording what happens to files below `watched`."""
    recorder = Recorder()
    watched_prefix = str(Path(watched).resolve()) + "/"
    events = recorder.events
    real_open, real_fopen, real_fsync = os.open, builtins.open, os.fsync
    real_replace, real_rename, real_unlink = os.replace, os.rename, os.unlink
    real_mkdir = os.mkdir
    real_syncfs = fsutil.sync_filesystem

    def inside(path: str) -> bool:
        return path.startswith(watched_prefix)

    def wrapped_open(path, flags, mode=0o777, *, dir_fd=None):
        fd = real_open(path, flags, mode, dir_fd=dir_fd)
        if flags & os.O_CREAT and isinstance(path, (str, bytes, os.PathLike)):
            name = _absolute(path, dir_fd)
            if inside(name):
                events.append(Event("create", name))
        return fd

    def wrapped_fopen(file, mode="r", *args, **kwargs):
        handle = real_fopen(file, mode, *args, **kwargs)
        if isinstance(file, (str, bytes, os.PathLike)) and any(m in mode for m in "wxa"):
            name = _absolute(file)
            if inside(name):
                events.append(Event("create", name))
        return handle

    def wrapped_fsync(fd):
        real_fsync(fd)
        fd = fd if isinstance(fd, int) else fd.fileno()
        name = os.readlink(f"/proc/self/fd/{fd}")
        if inside(name + "/"):
            events.append(Event("fsync", name, size=os.fstat(fd).st_size))

    def wrapped_syncfs(path):
        real_syncfs(path)
        recorder.synced_sizes[len(events)] = _sizes_below(watched_prefix)
        events.append(Event("syncfs", _absolute(path)))

    def renamer(real):
        def wrapped(src, dst, *, src_dir_fd=None, dst_dir_fd=None):
            real(src, dst, src_dir_fd=src_dir_fd, dst_dir_fd=dst_dir_fd)
            name = _absolute(dst, dst_dir_fd)
            if inside(name):
                events.append(Event("rename", name, _absolute(src, src_dir_fd),
                                    size=os.lstat(name).st_size))
        return wrapped

    def wrapped_unlink(path, *, dir_fd=None):
        real_unlink(path, dir_fd=dir_fd)
        name = _absolute(path, dir_fd)
        if inside(name):
            events.append(Event("unlink", name))

    def wrapped_mkdir(path, mode=0o777, *, dir_fd=None):
        real_mkdir(path, mode, dir_fd=dir_fd)
        name = _absolute(path, dir_fd)
        if inside(name):
            events.append(Event("mkdir", name))

    monkeypatch.setattr(os, "mkdir", wrapped_mkdir)
    monkeypatch.setattr(os, "open", wrapped_open)
    monkeypatch.setattr(builtins, "open", wrapped_fopen)
    monkeypatch.setattr(os, "fsync", wrapped_fsync)
    monkeypatch.setattr(os, "replace", renamer(real_replace))
    monkeypatch.setattr(os, "rename", renamer(real_rename))
    monkeypatch.setattr(os, "unlink", wrapped_unlink)
    monkeypatch.setattr(os, "remove", wrapped_unlink)
    # Modules that imported sync_filesystem by name hold their own binding.
    for module in list(sys.modules.values()):
        if getattr(module, "__name__", "").startswith("rnstore") and \
                getattr(module, "sync_filesystem", None) is real_syncfs:
            monkeypatch.setattr(module, "sync_filesystem", wrapped_syncfs)
    return recorder


# -- the rules ---------------------------------------------------------------------------

def _last_create_before(events: list[Event], path: str, end: int) -> int:
    for i in range(end - 1, -1, -1):
        if events[i].op == "create" and events[i].path == path:
            return i
    return -1


def _synced_before_rename(recorder: Recorder, at: int) -> bool:
    """The renamed file's bytes were made durable (an fsync of it, or a
    syncfs), after it was created and after its last byte was written."""
    events = recorder.events
    rename = events[at]
    size = rename.size
    for i in range(at - 1, _last_create_before(events, rename.source, at), -1):
        event = events[i]
        if event.op == "fsync" and event.path == rename.source:
            return event.size == size
        if event.op == "syncfs":
            return recorder.synced_sizes[i].get(rename.source) == size
    return False


def _folder_synced(recorder: Recorder, folder: str, start: int, end: int) -> bool:
    return any(e.op == "syncfs" or (e.op == "fsync" and e.path == folder)
               for e in recorder.events[start:end])


@dataclass
class Layout:
    """Where a workspace keeps what the rules speak of."""
    dotdir: Path
    objects: Path

    @property
    def references(self) -> tuple[str, ...]:
        """Files whose writing makes objects reachable: the journal, refs,
        HEAD, the index."""
        d = str(self.dotdir.resolve())
        return (d + "/snapshots/", d + "/refs/", d + "/HEAD", d + "/index")


def _is_reference(event: Event, layout: Layout) -> bool:
    if event.op not in ("create", "rename"):
        return False
    return any(event.path == r or (r.endswith("/") and event.path.startswith(r))
               for r in layout.references) and "/.tmp-" not in event.path


def _deadline(recorder: Recorder, layout: Layout, start: int) -> int:
    """The first event from `start` on that makes objects reachable or
    removes a stored object (gc removes an old pack only once the new one
    is durable); the end when there is none."""
    objects = str(layout.objects.resolve()) + "/"
    for i in range(start, len(recorder.events)):
        event = recorder.events[i]
        if _is_reference(event, layout) or (event.op == "unlink" and event.path.startswith(objects)
                                            and "/.tmp-" not in event.path):
            return i
    return len(recorder.events)


def check_write_rules(recorder: Recorder, layout: Layout) -> list[str]:
    """Every breach of FORMAT.md's rules 1, 2, 4 and 5 in what was recorded,
    as readable lines (empty: all kept)."""
    problems = []
    objects = str(layout.objects.resolve())
    dotdir = str(layout.dotdir.resolve())
    events = recorder.events
    for at, event in recorder.ops("rename"):
        if event.path.startswith(objects + "/"):
            # Rules 1 and 2: a whole object or pack, durable, then renamed; its
            # folders durable before anything makes it reachable.
            if os.path.basename(event.source)[:5] != ".tmp-":
                problems.append(f"{event.path} was not written under a temporary name")
            if not _synced_before_rename(recorder, at):
                problems.append(f"{event.path} was renamed into place before its bytes were durable")
            deadline = _deadline(recorder, layout, at + 1)
            folder = os.path.dirname(event.path)
            folders = {folder}
            if any(e.op == "mkdir" and e.path == folder for e in events[:at]):
                folders.add(os.path.dirname(folder))  # a new folder's own entry
            for folder in sorted(folders):
                if not _folder_synced(recorder, folder, at + 1, deadline):
                    problems.append(f"{folder} was not fsynced after {event.path} was renamed "
                                    f"into it and before event {deadline} ({_describe(events, deadline)})")
        elif event.path in (dotdir + "/HEAD", dotdir + "/index", dotdir + "/config") \
                or event.path.startswith(dotdir + "/refs/"):
            # Rule 5: a temporary file, fsynced, renamed, the folder fsynced
            # before anything else is published.
            if not os.path.basename(event.source).startswith(".tmp-"):
                problems.append(f"{event.path} was not written under a temporary name")
            if not _synced_before_rename(recorder, at):
                problems.append(f"{event.path} was renamed over before its bytes were durable")
            deadline = _deadline(recorder, layout, at + 1)
            if not _folder_synced(recorder, os.path.dirname(event.path), at + 1, deadline):
                problems.append(f"the folder of {event.path} was not fsynced before event {deadline} "
                                f"({_describe(events, deadline)})")
    for at, event in recorder.ops("create"):
        if event.path.startswith(dotdir + "/snapshots/"):
            # Rule 4: the journal entry durable before any ref names the snapshot.
            deadline = _deadline(recorder, layout, at + 1)
            if not _folder_synced(recorder, os.path.dirname(event.path), at + 1, deadline):
                problems.append(f"journal entry {event.path} was not durable before event {deadline} "
                                f"({_describe(events, deadline)})")
    return problems


def _describe(events: list[Event], at: int) -> str:
    return "the end" if at >= len(events) else f"{events[at].op} {events[at].path}"
