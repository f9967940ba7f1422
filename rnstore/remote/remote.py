"""One remote, seen through its Backend: its refs, its pack indexes (with a
local cache), its snapshot records, and the markers that let a collector
run beside pushers. The rules these methods follow are FORMAT.md's
"Remotes" section; push and fetch (transfer.py) are built on them.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from ..errors import CorruptStoreError
from ..fsutil import atomic_write, remove_quietly
from ..objects import is_object_id
from . import layout
from .backend import Backend, RemoteError, RetryingBackend
from .layout import Location

#: Parallel requests (S3 answers in tens of milliseconds; latency, not
#: bandwidth, is what parallel requests hide).
PARALLEL = 8


@dataclass(frozen=True)
class RemoteRef:
    ref: str
    version: int          # the highest version key; the next update creates version + 1
    id: str | None        # None: deleted (a tombstone version)


#: A pending-push marker or a gc plan not rewritten for this long belongs to
#: a dead push or collector (remote gc, collect.py, removes it then).
STALE = 15 * 60


class Remote:
    def __init__(self, backend: RetryingBackend, cache: Path | None = None):
        self.backend = backend
        self.cache = cache  # <dotdir>/remotes/NAME, or None (no index cache)
        self.describe = backend.describe

    # -- the marker --------------------------------------------------------------------------

    def exists(self) -> bool:
        return self.backend.stat(layout.MARKER) is not None

    def require(self) -> None:
        """RemoteError unless the prefix holds an rnstore remote of this
        format (a reader refuses a version it does not know)."""
        try:
            marker = self.backend.get(layout.MARKER)
        except FileNotFoundError:
            raise RemoteError(f"{self.describe} holds no rnstore remote",
                              hints=["`rnstore push` to it creates one; check the URL"]) from None
        self._check_format(marker)

    def ensure(self) -> None:
        """Make the prefix an rnstore remote (idempotent)."""
        info = self.backend.stat(layout.MARKER)
        if info is None:
            self.backend.create(layout.MARKER, layout.MARKER_TEXT)
            return
        self._check_format(self.backend.get(layout.MARKER))

    def _check_format(self, marker: bytes) -> None:
        if marker != layout.MARKER_TEXT:
            raise RemoteError(f"{self.describe} holds an rnstore remote of another format")

    # -- refs -------------------------------------------------------------------------------

    def refs(self) -> dict[str, RemoteRef]:
        """Every ref's latest version (deleted ones included, with id None):
        one listing, then one read per ref, in parallel."""
        latest: dict[str, int] = {}
        sizes: dict[str, int] = {}
        for key, info in self.backend.list(layout.REFS).items():
            parsed = layout.parse_ref_key(key)
            if parsed is not None and parsed[1] > latest.get(parsed[0], -1):
                latest[parsed[0]] = parsed[1]
                sizes[parsed[0]] = info.size
        return dict(zip(sorted(latest), self._map(
            lambda ref: self._read_ref(ref, latest[ref], sizes[ref]), sorted(latest))))

    def _read_ref(self, ref: str, version: int, size: int) -> RemoteRef:
        key = layout.ref_version_key(ref, version)
        if size > layout.REF_VERSION_LIMIT:
            raise layout.damaged_ref(key, f"{size} bytes, where a ref version takes a few hundred")
        try:
            data = self.backend.get(key)
        except FileNotFoundError:
            # listed, then gone: a collector trimmed it once a newer version
            # appeared (it never deletes a ref's latest), so look again
            return self.ref(ref)
        return RemoteRef(ref, version, layout.decode_ref(data, key))

    def ref(self, ref: str) -> RemoteRef:
        """One ref's latest version (version 0 and id None if it never existed)."""
        sizes: dict[int, int] = {}  # version -> its key's size
        for key, info in self.backend.list(ref + "/").items():
            parsed = layout.parse_ref_key(key)
            if parsed is not None and parsed[0] == ref:
                sizes[parsed[1]] = info.size
        if not sizes:
            return RemoteRef(ref, 0, None)
        latest = max(sizes)
        return self._read_ref(ref, latest, sizes[latest])

    def swap_ref(self, current: RemoteRef, new_id: str | None) -> bool:
        """Compare-and-swap: create the ref's next version, which only one
        writer can do. False if another writer created it first."""
        key = layout.ref_version_key(current.ref, current.version + 1)
        if self.backend.create(key, layout.encode_ref(new_id, current.id, _who())):
            return True
        # the winner's version is listed once its create returned; a key in
        # the way that never lists (a folder) would make the writer lose for ever
        if self.ref(current.ref).version <= current.version:
            raise CorruptStoreError(f"remote key {key} is in the way: it exists but is not a ref version")
        return False

    def default_branch(self) -> str | None:
        """The branch HEAD names; None when there is none (or HEAD is too
        large to be one: a hostile remote's, never read)."""
        info = self.backend.stat(layout.HEAD)
        if info is None or info.size > layout.REF_VERSION_LIMIT:
            return None
        try:
            text = self.backend.get(layout.HEAD).decode("utf-8", "replace").strip()
        except FileNotFoundError:
            return None
        return text[5:] if text.startswith("ref: refs/heads/") else None

    def set_default_branch(self, ref: str) -> None:
        """The first branch pushed becomes the default (created once)."""
        if self.backend.stat(layout.HEAD) is None:
            self.backend.create(layout.HEAD, f"ref: {ref}\n".encode())

    # -- pack indexes --------------------------------------------------------------------------

    def pack_names(self) -> set[str]:
        return {name for name in (layout.pack_name_of(key, layout.INDEX, layout.INDEX_SUFFIX)
                                  for key in self.backend.list(layout.INDEX)) if name}

    def load_index(self, *, without: set[str] = frozenset()) -> dict[str, Location]:
        """id -> where the remote holds it, from every pack index (read from
        the local cache when there, else downloaded and cached). Packs in
        `without` (condemned by a collector) are left out."""
        index: dict[str, Location] = {}
        for name, data in sorted(self.index_files(without=without).items()):
            for raw, offset, length, kind in layout.index_entries(data, name):
                index.setdefault(raw.hex(), Location(name, offset, length, kind))
        return index

    def load_pack_indexes(self, *, without: set[str] = frozenset(), cached: bool = True
                          ) -> dict[str, dict[str, Location]]:
        """pack name -> (id -> Location) of every indexed pack but `without`;
        with `cached` False, every index is read from the remote (gc must
        see the damage others would see, not an intact local copy)."""
        return {name: layout.decode_index(data, name)
                for name, data in self.index_files(without=without, cached=cached).items()}

    def index_files(self, *, without: set[str] = frozenset(), cached: bool = True) -> dict[str, bytes]:
        """pack name -> its index file, checked (layout.index_entries reads
        it), of every indexed pack but `without`: about 50 bytes an object,
        where a Location by id takes several times that (a clone's way)."""
        names = sorted(self.pack_names() - set(without))
        folder = self.cache / "index" if self.cache is not None and cached else None
        if folder is not None:
            folder.mkdir(parents=True, exist_ok=True)
            keep = set(names) | set(without)
            for entry in os.listdir(folder):  # packs a collector deleted
                if entry.endswith(layout.INDEX_SUFFIX) and entry[:-len(layout.INDEX_SUFFIX)] not in keep:
                    remove_quietly(folder / entry)
        found = self._map(lambda name: self._index_file(name, folder), names)
        return {name: data for name, data in zip(names, found) if data is not None}

    def _index_file(self, name: str, folder: Path | None) -> bytes | None:
        cached = folder / (name + layout.INDEX_SUFFIX) if folder is not None else None
        if cached is not None:
            try:
                data = cached.read_bytes()
                layout.index_entries(data, name)
                return data
            except (FileNotFoundError, CorruptStoreError):
                pass
        try:
            data = self.backend.get(layout.index_key(name))
        except FileNotFoundError:
            return None  # deleted by a collector since the listing
        layout.index_entries(data, name)
        if cached is not None:
            atomic_write(cached, data, durable=False)
        return data

    # -- snapshot records ----------------------------------------------------------------------

    def record_ids(self) -> set[str]:
        return {key[len(layout.SNAPSHOTS):] for key in self.backend.list(layout.SNAPSHOTS)
                if is_object_id(key[len(layout.SNAPSHOTS):])}

    # -- collector plans and pending pushes (see FORMAT.md "Remote gc") -------------------------

    def condemned_packs(self) -> set[str]:
        condemned: set[str] = set()
        for key in self.backend.list(layout.PLANS):
            if key.endswith(".plan"):
                try:
                    condemned.update(json.loads(self.backend.get(key))["packs"])
                except FileNotFoundError:
                    continue  # finished since the listing
                except (ValueError, KeyError, TypeError, RecursionError):
                    raise CorruptStoreError(
                        f"remote gc plan {key} is damaged: which packs it condemns is unknown, so "
                        "pushes stop until it is gone", hints=[
                            f"a collector that crashed left it; `rnstore gc --remote` removes it once "
                            f"it is {STALE // 60:.0f} minutes old (or delete the key by hand if no "
                            "gc is running)"]) from None
        return condemned

    def begin_push(self) -> "PushMarker":
        """Announce a push in progress (see FORMAT.md "Remote gc")."""
        marker = PushMarker(self.backend, f"{layout.PUSHES}{secrets.token_hex(12)}")
        marker.refresh()
        return marker

    # -- helpers ------------------------------------------------------------------------------

    def _map(self, function, items) -> list:
        items = list(items)
        if len(items) <= 1:
            return [function(item) for item in items]
        with ThreadPoolExecutor(min(PARALLEL, len(items))) as pool:
            return list(pool.map(function, items))


class PushMarker:
    """pushes/TOKEN: written before a push reads the remote's indexes,
    rewritten while it runs (a collector takes a marker not rewritten for
    collect.PUSH_STALE seconds for a dead push's), removed when its refs
    are written."""

    #: Rewrite the marker when it is older than this (well below PUSH_STALE).
    REFRESH = 120.0

    def __init__(self, backend: Backend, key: str):
        self.backend, self.key = backend, key
        self._written = 0.0
        self._lock = threading.Lock()

    def refresh(self) -> None:
        self.backend.put(self.key, json.dumps({"by": _who()}).encode() + b"\n")
        self._written = time.monotonic()

    def refresh_if_due(self) -> None:
        with self._lock:
            if time.monotonic() - self._written > self.REFRESH:
                self.refresh()

    def end(self) -> None:
        self.backend.delete(self.key)


def _who() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


__all__ = ["Remote", "RemoteRef", "Backend"]
