"""push, fetch, pull and clone: snapshots between a workspace and a remote.

push: announce the push (pushes/TOKEN), read the collectors' plans and the
remote's pack indexes, walk what the refs need and pack what the remote
lacks (frames as the local store holds them, no recompression), upload each
pack and then its index, then the snapshot records, then move each ref by
compare-and-swap (exclusive create of its next version), refusing a branch
that would lose remote snapshots and a tag that names another snapshot.

fetch: read the remote's refs and indexes, download what the local store
lacks level by level (snapshots, then trees, then blobs) with ranged reads
of the packs, verify every frame against its id before the local store
sees it, and only then record the remote's branches as refs/remotes/NAME/X.
"""

from __future__ import annotations

import errno
import hashlib
import io
import os
import secrets
import shutil
import tempfile
import threading
from array import array
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import BinaryIO, Callable, ContextManager, Iterable, Iterator

from .. import codec
from ..checkout import FETCHED_PREFIX, FetchedBlobs, checkout, fast_forward
from ..views import ObjectsView, WorkspaceView
from ..errors import CorruptObjectError, InvalidValueError, RnstoreError
from ..objects import BLOB, MODE_TREE, SNAPSHOT, TREE, decode_snapshot, decode_tree
from ..packs import MAX_FRAME, Pack, PackWriter
from ..progress import NO_PROGRESS, Progress
from ..refs import (ANY, HEADS, REMOTES, TAGS, RefClashError, check_ref_name, clashing_ref, short_name,
                    valid_ref_name)
from . import layout, settings
from .backend import RemoteError, ShortReadError, mask_url, open_backend, split_url
from .layout import Location
from .remote import Remote, RemoteRef

#: A remote pack is closed once it holds this many bytes of frames (an
#: upload holds a pack in memory, twice: 16 MiB keeps two uploads at once
#: near 64 MiB; a first push of 30,000 files is still a handful of packs).
PACK_TARGET = 16 << 20
#: Frames larger than this travel in chunks, through temporary files.
LARGE_FRAME = 8 << 20
#: Ranged reads of one pack are merged across gaps up to this size, and
#: kept below READ_LIMIT bytes each, READERS at once: memory stays bounded
#: (a range is held about three times while it is read and verified), and
#: on loopback S3 this reads as fast as 8 ranges of 4 MiB.
READ_GAP = 256 << 10
READ_LIMIT = 2 << 20
READERS = 4
#: The kinds of object whose payloads a fetch keeps, as the remote's index names them: a walk
#: fetches only what it will decode (whatever the index calls it), a clone every object.
_ALL_KINDS = frozenset((BLOB, TREE, SNAPSHOT))
_NOT_BLOBS = frozenset((TREE, SNAPSHOT))


class PushRefusedError(RnstoreError):
    """Some refs were refused (non-fast-forward, tag elsewhere); the rest were pushed."""

    def __init__(self, message: str, result: "TransferResult", **kw):
        super().__init__(message, **kw)
        self.result = result


class CannotFastForwardError(RnstoreError):
    def __init__(self, message: str, result: "TransferResult", **kw):
        super().__init__(message, **kw)
        self.result = result


@dataclass
class RefUpdate:
    ref: str
    old: str | None
    new: str | None
    status: str           # created, updated, forced, deleted, up-to-date, refused
    reason: str = ""


@dataclass
class TransferResult:
    remote: str
    objects: int = 0
    bytes: int = 0
    packs: int = 0
    refs: list[RefUpdate] = field(default_factory=list)
    fast_forwarded: str | None = None   # pull: the snapshot the branch moved to
    path: str | None = None             # clone: the new workspace
    warnings: list[str] = field(default_factory=list)  # clone: nothing checked out, and why

    @property
    def refused(self) -> list[RefUpdate]:
        return [r for r in self.refs if r.status == "refused"]

    def as_json(self) -> dict:
        return asdict(self)


# -- remotes of a workspace ------------------------------------------------------------------

def add_remote(repo: WorkspaceView, name: str, url: str, options: Iterable[str] = ()) -> settings.RemoteSettings:
    settings.check_name(name)
    parsed = settings.parse_options(options)
    if parsed and split_url(url)[0] == "file":  # (they would be recorded, then ignored)
        raise InvalidValueError(f"remote {mask_url(url)} is a local folder, which takes no backend options "
                                f"(given: {', '.join(parsed)})")
    open_backend(url, parsed)  # a bad URL or a missing extra fails now, not at the first push
    with repo.lock():
        remotes = settings.load(repo.dotdir)
        if name in remotes:
            raise InvalidValueError(f"remote '{name}' exists already",
                                    hints=["`rnstore remote remove NAME` first"])
        remotes[name] = settings.RemoteSettings(name, url, parsed)
        settings.save(repo.dotdir, remotes, durable=repo.durable)
    return remotes[name]


def remove_remote(repo: WorkspaceView, name: str) -> None:
    with repo.lock():
        remotes = settings.load(repo.dotdir)
        if name not in remotes:
            settings.get(repo.dotdir, name)  # raises the usual error
        del remotes[name]
        settings.save(repo.dotdir, remotes, durable=repo.durable)
        for ref in repo.refs.list(f"{REMOTES}{name}/"):
            repo.refs.delete(ref)
    shutil.rmtree(repo.dotdir / "remotes" / name, ignore_errors=True)


def list_remotes(repo: WorkspaceView) -> list[settings.RemoteSettings]:
    return sorted(settings.load(repo.dotdir).values(), key=lambda r: r.name)


def open_remote(repo: WorkspaceView, name: str) -> Remote:
    config = settings.get(repo.dotdir, name)
    return Remote(open_backend(config.url, config.options), repo.dotdir / "remotes" / name)


# -- push --------------------------------------------------------------------------------------

def push(repo: WorkspaceView, name: str, refs: Iterable[str] = (), *, force: bool = False,
         progress: Progress = NO_PROGRESS) -> TransferResult:
    """Upload what the remote lacks for `refs` (default: the current
    branch), then move the remote refs. Raises PushRefusedError (after
    pushing the rest) when a ref is refused."""
    remote = open_remote(repo, name)
    targets = _push_targets(repo, refs)
    result = TransferResult(name)
    with _remote_errors(remote):
        remote.ensure()
        marker = remote.begin_push()
        try:
            # After the marker, before the indexes: a collector either sees
            # this push's marker and waits for it, or this push sees its plan.
            condemned = remote.condemned_packs()
            index = remote.load_index(without=condemned)
            current = remote.refs()
            accepted = []
            for ref, new in targets:
                state = current.get(ref) or RemoteRef(ref, 0, None)
                clash = clashing_ref(ref, [r for r, s in current.items() if s.id is not None])
                if clash is not None:  # every fetch and clone of the remote would then fail
                    result.refs.append(RefUpdate(ref, state.id, new, "refused", (
                        f"the remote has {short_name(clash)}: a branch or tag cannot also be a "
                        "folder of others; push it under another name")))
                    continue
                verdict = _verdict(repo, ref, state.id, new, force)
                if verdict in ("refused", "up-to-date"):
                    result.refs.append(RefUpdate(ref, state.id, new, verdict, _why_refused(ref, state.id)
                                                 if verdict == "refused" else ""))
                else:
                    accepted.append((ref, new))
            # history the remote's refs already reach was the remote's to keep or forget:
            # a push never re-creates a record its retention removed (but a tip named)
            settled = _history(repo.store, [state.id for state in current.values() if state.id])
            snapshots = _upload(repo, remote, index, [new for _, new in accepted], result, progress,
                                marker=marker, condemned=condemned, settled=settled)
            _write_records(repo, remote, snapshots)
            for ref, new in accepted:
                result.refs.append(_move_ref(repo, remote, ref, new, force))
            pushed_branches = [u.ref for u in result.refs if u.ref.startswith(HEADS)
                               and u.status in ("created", "updated", "forced", "up-to-date")]
            if pushed_branches:
                remote.set_default_branch(pushed_branches[0])
        finally:
            marker.end()
    _track(repo, name, [(u.ref, u.new) for u in result.refs if u.status != "refused"])
    if result.refused:
        refused = ", ".join(short_name(u.ref) for u in result.refused)
        raise PushRefusedError(f"push to {name} refused for {refused}", result,
                               hints=[u.reason for u in result.refused])
    return result


def _push_targets(repo: WorkspaceView, refs: Iterable[str]) -> list[tuple[str, str]]:
    names = list(refs)
    if not names:
        branch, head = repo.refs.head()
        if branch is None or head is None:
            raise InvalidValueError("nothing to push: HEAD is not a branch with snapshots",
                                    hints=["name the branches or tags to push"])
        return [(branch, head)]
    targets = []
    for name in names:
        candidates = [name] if name.startswith("refs/") else [HEADS + name, TAGS + name]
        for ref in candidates:
            try:
                check_ref_name(ref)
                oid = repo.refs.resolve(ref)
            except InvalidValueError:
                oid = None
            if oid is not None:
                targets.append((ref, oid))
                break
        else:
            raise InvalidValueError(f"no branch or tag named '{name}' to push",
                                    hints=["`rnstore show-ref` lists them"])
    return targets


def _verdict(repo: ObjectsView, ref: str, remote_id: str | None, new: str, force: bool) -> str:
    if remote_id == new:
        return "up-to-date"
    if remote_id is None:
        return "created"
    if force:
        return "forced"
    if ref.startswith(HEADS) and is_ancestor(repo.store, remote_id, new):
        return "updated"
    return "refused"


def _why_refused(ref: str, remote_id: str | None) -> str:
    if ref.startswith(TAGS):
        return (f"tag {short_name(ref)} exists on the remote as {remote_id[:12]}; "
                "tags do not move (force=True replaces it)")
    return (f"the remote branch {short_name(ref)} has snapshots this one lacks; "
            "`rnstore pull` (or fetch) first, or force=True to drop them")


def _move_ref(repo: WorkspaceView, remote: Remote, ref: str, new: str, force: bool) -> RefUpdate:
    """The compare-and-swap loop: a lost race is looked at again, and
    retried only if the ref may still move from its new value to ours."""
    while True:
        state = remote.ref(ref)
        verdict = _verdict(repo, ref, state.id, new, force)
        if verdict == "refused":
            return RefUpdate(ref, state.id, new, "refused", _why_refused(ref, state.id))
        if verdict == "up-to-date":
            return RefUpdate(ref, state.id, new, "up-to-date")
        if remote.swap_ref(state, new):
            return RefUpdate(ref, state.id, new, verdict)


def is_ancestor(store, ancestor: str, descendant: str) -> bool:
    """Whether `ancestor` is `descendant` or one of its (locally held) parents."""
    seen = set()
    queue = deque([descendant])
    while queue:
        oid = queue.popleft()
        if oid == ancestor:
            return True
        if oid in seen or not store.has(oid):
            continue
        seen.add(oid)
        queue.extend(store.get_snapshot(oid).parents)
    return False


def _history(store, tips: list[str]) -> set[str]:
    """The tips and every ancestor of theirs the store holds."""
    seen: set[str] = set()
    queue = deque(tips)
    while queue:
        oid = queue.popleft()
        if oid in seen or not store.has(oid):
            continue
        seen.add(oid)
        queue.extend(store.get_snapshot(oid).parents)
    return seen


def _missing_objects(store, index: dict[str, Location], tips: list[str], settled: set[str] = frozenset()
                     ) -> Iterator[tuple[str, str]]:
    """(id, kind) of every object the tips need that the remote lacks,
    children before the tree or snapshot naming them, in a stable order.
    Every tree is walked, even one the remote holds: the remote holding a
    tree does not prove it holds what the tree names (a collector may have
    kept the tree's pack and deleted another). History stops at `settled`
    snapshots (but the tips): what the remote's refs reached already, kept
    or forgotten there (FORMAT.md "Remotes")."""
    seen: set[str] = set(settled) - set(tips)
    history = deque(tips)
    while history:
        sid = history.popleft()
        if sid in seen or not store.has(sid):
            continue  # history cut short locally (forgotten and collected), or settled
        seen.add(sid)
        snapshot = store.get_snapshot(sid)
        yield from _missing_in_tree(store, index, snapshot.tree, seen)
        if sid not in index:
            yield sid, SNAPSHOT
            history.extend(p for p in snapshot.parents if p not in index)


def _missing_in_tree(store, index, root: str, seen: set[str]) -> Iterator[tuple[str, str]]:
    # Depth first, children first, without recursion (deep trees).
    stack: list[tuple[str, bool]] = [(root, False)]
    while stack:
        tree_id, expanded = stack.pop()
        if expanded:
            if tree_id not in index:
                yield tree_id, TREE
            continue
        if tree_id in seen:
            continue
        seen.add(tree_id)
        stack.append((tree_id, True))
        for entry in reversed(store.get_tree(tree_id).entries):
            if entry.mode == MODE_TREE:
                stack.append((entry.id, False))
            elif entry.id not in seen:
                seen.add(entry.id)
                if entry.id not in index:
                    yield entry.id, BLOB


def _upload(repo: ObjectsView, remote: Remote, index: dict[str, Location], tips: list[str],
            result: TransferResult, progress: Progress, *, marker, condemned: set[str],
            settled: set[str] = frozenset()) -> list[str]:
    """Pack and upload every missing object; the snapshots among them."""
    snapshots: list[str] = []
    progress.start("pushing", unit="object")
    with tempfile.TemporaryDirectory(prefix="rnstore-push-") as folder, \
            ThreadPoolExecutor(2) as pool:
        pending: list[Future] = []
        writer: PackWriter | None = None
        kinds: dict[str, str] = {}
        size = 0
        count = 0

        def close_pack():
            nonlocal writer, kinds, size
            if writer is None:
                return
            path = writer.finish()
            pending.append(pool.submit(_send_pack, remote, path, kinds, result, progress,
                                       marker, condemned))
            while len(pending) > 2:  # at most a few packs on disk, two in flight
                pending.pop(0).result()
            writer, kinds, size = None, {}, 0

        for oid, kind in _missing_objects(repo.store, index, tips, settled):
            if writer is None:
                count += 1
                writer = PackWriter(folder, f"{folder}/.tmp-{count}", fsync=False, eager=True)
            loose = _large_loose_frame(repo.store, oid)
            if loose is not None:  # a large file's frame: copied in chunks, never whole in memory
                with open(loose, "rb") as source:
                    length = os.fstat(source.fileno()).st_size
                    writer.add_file(oid, source, length)
            else:
                # whole: a remote never holds a delta (its base might be elsewhere)
                frame = repo.store.read_frame(oid, whole=True)
                writer.add(oid, frame)
                length = len(frame)
            kinds[oid] = kind
            size += length
            if kind == SNAPSHOT:
                snapshots.append(oid)
            if size >= PACK_TARGET:
                close_pack()
        close_pack()
        for future in pending:
            future.result()
    progress.finish()
    return snapshots


_result_lock = threading.Lock()


def _large_loose_frame(store, oid: str) -> str | None:
    """The loose file of a frame too large to hold in memory, if the store
    keeps one (DiskStore keeps frames over packs.MAX_FRAME loose)."""
    file_of = getattr(store, "file_of", None)
    if file_of is None:
        return None
    try:
        if store.stored_size(oid) <= LARGE_FRAME:
            return None
        path = str(file_of(oid))
    except (OSError, RnstoreError):
        return None
    return None if path.endswith(".pack") else path


def _send_pack(remote: Remote, path: str, kinds: dict[str, str], result: TransferResult,
               progress: Progress, marker, condemned: set[str]) -> None:
    """The pack, then its index: an index never names a pack not fully
    stored. A pack already there (a retried push) is not sent again, unless
    a collector condemned that name: then it goes under another one."""
    marker.refresh_if_due()
    name = os.path.basename(path)[:-len(".pack")]
    if name in condemned:
        name = hashlib.sha256(f"{name} {secrets.token_hex(16)}".encode()).hexdigest()
    entries = [(raw, offset, length, kinds[raw.hex()])
               for raw, offset, length in Pack.open(path).locations()]
    size = os.path.getsize(path)
    known = remote.backend.stat(layout.pack_key(name))
    if known is None or known.size != size:
        remote.backend.put_file(layout.pack_key(name), path)
    remote.backend.put(layout.index_key(name), layout.encode_index(entries))
    os.unlink(path)
    with _result_lock:
        result.objects += len(entries)
        result.bytes += size
        result.packs += 1
    progress.advance(files=len(entries), nbytes=size)


def _write_records(repo: ObjectsView, remote: Remote, snapshots: list[str]) -> None:
    """A record per snapshot pushed: the remote's live set (a record's
    bytes are the snapshot's frame, so listing history needs no pack)."""
    # an exclusive create: a record already there (a retried push) stays as it is
    remote._map(lambda sid: remote.backend.create(layout.SNAPSHOTS + sid,
                                                     repo.store.read_frame(sid, whole=True)),
                snapshots)


# -- fetch -------------------------------------------------------------------------------------

def fetch(repo: WorkspaceView, name: str, refs: Iterable[str] = (), *, progress: Progress = NO_PROGRESS,
          deliver: Callable[[str], ContextManager[Callable[[bytes], None]]] | None = None,
          trees: dict[str, bytes] | None = None) -> TransferResult:
    """Download what the local store lacks for the remote's refs (or only
    `refs`), verified, then record them: branches as refs/remotes/NAME/X,
    tags as local tags where no other tag of that name exists. A fetch into
    an empty store (a clone's) also writes each blob it verifies, but the
    large ones, to `deliver(id)`: a block that takes the payload's chunks
    as they are checked, and fails if the check does; and it puts the
    payloads of the trees and snapshots it verified in `trees`, by id."""
    remote = open_remote(repo, name)
    result = TransferResult(name)
    with _remote_errors(remote):
        remote.require()
        current = {ref: state for ref, state in remote.refs().items() if state.id is not None}
        wanted = _select_refs(current, list(refs))
        # another program may have named a ref so that no local ref can bear its name
        for ref in [ref for ref in wanted if not valid_ref_name(ref)]:
            wanted.remove(ref)
            result.refs.append(RefUpdate(ref, None, current[ref].id, "refused", "not a valid ref name; skipped"))
        # records, like refs, before the indexes: both are written after them
        live = remote.record_ids() | {state.id for state in current.values()}
        tips = [current[r].id for r in wanted]
        with repo.store_lock(shared=True):
            # a new store fetching every ref (a clone) takes every indexed object, each pack read once
            try:
                if not refs and next(iter(repo.store), None) is None:
                    download_everything(repo.store, remote, tips, result, progress, live=live, deliver=deliver,
                                        trees=trees)
                else:
                    download(repo.store, remote, remote.load_index(), tips, result, progress, live=live)
            except CorruptObjectError as exc:
                raise _named_by_ref(exc, name, {r: current[r].id for r in wanted}) from None
            _record_fetched(repo, name, {r: current[r].id for r in wanted}, result,
                            prune=not refs, remote_refs=current)
    return result


def _named_by_ref(exc: CorruptObjectError, name: str, tips: dict[str, str]) -> CorruptObjectError:
    """A remote ref naming an intact object that is no snapshot (a tag on a
    tree: objects.decode_snapshot's "not a snapshot") said as the ref's
    fault, with the way out: without that ref, the others can be fetched.
    A damaged object keeps its own error, which names its pack."""
    refs = [ref for ref, oid in tips.items() if oid == exc.object_id]
    if not refs or not str(exc).endswith(": not a snapshot"):
        return exc
    delete = f"rnstore push --delete {name} {short_name(refs[0])}"
    return exc.reworded(
        f"remote ref {refs[0]} names {exc.object_id}, which is not a snapshot",
        exc.object_id, hints=[f"nothing was recorded; if that ref should not be there, `{delete}` removes "
                              "it, and the others can be fetched"])


def _select_refs(current: dict[str, RemoteRef], names: list[str]) -> list[str]:
    if not names:
        return sorted(current)
    chosen = []
    for name in names:
        candidates = [name] if name.startswith("refs/") else [HEADS + name, TAGS + name]
        found = next((ref for ref in candidates if ref in current), None)
        if found is None:
            raise InvalidValueError(f"the remote has no branch or tag named '{name}'")
        chosen.append(found)
    return chosen


def _record_fetched(repo: WorkspaceView, name: str, fetched: dict[str, str], result: TransferResult, *,
                    prune: bool, remote_refs: dict[str, RemoteRef]) -> None:
    tracked = repo.refs.list(f"{REMOTES}{name}/")
    for ref, oid in sorted(fetched.items()):
        if ref.startswith(HEADS):
            local = f"{REMOTES}{name}/{ref[len(HEADS):]}"
            old = tracked.get(local)
            if old == oid:  # listed, as push lists them: --json names every ref it looked at
                result.refs.append(RefUpdate(local, old, oid, "up-to-date"))
            else:
                _recorded(repo, result, RefUpdate(local, old, oid, "updated" if old else "created"), ANY)
        elif ref.startswith(TAGS):
            old = repo.refs.resolve(ref)
            if old is None:
                _recorded(repo, result, RefUpdate(ref, None, oid, "created"), None)
            elif old == oid:
                result.refs.append(RefUpdate(ref, old, oid, "up-to-date"))
            else:
                result.refs.append(RefUpdate(ref, old, oid, "refused",
                                             f"local tag {short_name(ref)} names {old[:12]}; kept"))
    if prune:
        for local, old in tracked.items():
            branch = HEADS + local[len(f"{REMOTES}{name}/"):]
            if branch not in remote_refs:
                repo.refs.delete(local)
                result.refs.append(RefUpdate(local, old, None, "deleted"))


def _recorded(repo: WorkspaceView, result: TransferResult, update: RefUpdate, expected) -> None:
    """Move a local ref as `update` says and list it; a ref that clashes
    with a local one (the remote holds `main` and `main/x`, which no local
    refs folder can hold both), or whose name is too long for a file here,
    is listed as refused and skipped, so one such ref does not stop the rest."""
    try:
        repo.refs.update(update.ref, update.new, expected)
    except RefClashError as exc:
        update.status, update.reason = "refused", f"{str(exc).split(': ', 1)[-1]}; skipped"
    except OSError as exc:  # a name an object store takes and this file system does not
        if exc.errno != errno.ENAMETOOLONG:
            raise
        update.status, update.reason = "refused", "its name is too long for this file system; skipped"
    result.refs.append(update)


def download(store, remote: Remote, index: dict[str, Location], tips: list[str],
             result: TransferResult, progress: Progress, *, live: set[str]) -> None:
    """Everything the tips reach that `store` lacks, level by level:
    snapshots (and their live parents), trees, then the blobs that are
    missing. Frames are verified before they are stored, and stored
    together as one new pack (frames too large for a pack loose); a
    missing or corrupt one raises before any ref names it, and then the
    pack is dropped.

    A parent is followed only when the remote keeps it `live` (a record or
    a ref names it: a root of remote gc, whole by its rules) or the store
    holds it. A forgotten parent's own frame may outlive its files in a
    pack gc kept for the rest: history ends there, as after a local gc."""
    progress.start("fetching", unit="object")
    with store.verified_pack() as add:
        large = _download_walking(store, remote, index, tips, result, progress, add, live)
    for oid in large:
        _fetch_large_blob(store, remote, oid, index[oid], result, progress)
    progress.finish()


def download_everything(store, remote: Remote, tips: list[str], result: TransferResult,
                        progress: Progress, *, live: set[str],
                        deliver=None, trees: dict[str, bytes] | None = None) -> None:
    """download() into an empty store fetching every ref (a clone): every
    object the remote's indexes list (but snapshots it does not keep
    `live`: they may have lost their files), in large ranges of each pack
    and once, verified and stored; then the tips' closure is checked from
    the verified payloads of the trees and snapshots, not read back from
    the store (and left in `trees` when given, for the checkout). The
    indexes stay as their files, read pack by pack: no Location by id for
    every object (a clone's peak memory)."""
    progress.start("fetching", unit="object")
    large: dict[str, Location] = {}

    indexes = remote.index_files()

    def by_offset(name: str, data: bytes) -> Iterator[tuple[str, Location]]:
        """The pack's objects to read in ranges, in offset order. Only row
        numbers are held for the whole pack: each (id, Location) is made
        when its range is (tens of thousands in one pack of small files)."""
        rows, offsets = array("I"), array("Q")
        for row, (raw, offset, length, kind) in enumerate(layout.index_entries(data, name)):
            if kind == SNAPSHOT and raw.hex() not in live:
                continue
            if length > LARGE_FRAME:
                large.setdefault(raw.hex(), Location(name, offset, length, kind))
            else:
                rows.append(row)
                offsets.append(offset)
        order = sorted(range(len(rows)), key=offsets.__getitem__)
        rows = array("I", [rows[k] for k in order])
        del order, offsets
        for row in rows:
            raw, offset, length, kind = layout.index_entry(data, row)
            yield raw.hex(), Location(name, offset, length, kind)

    def ranges() -> Iterator[tuple[str, int, int, list]]:
        for name, data in sorted(indexes.items()):
            yield from _merged(name, by_offset(name, data))

    with store.verified_pack() as add:
        payloads = _store_frames(store, _read_ranges(remote, ranges(), result, progress, add=add,
                                                     deliver=deliver, keep=_NOT_BLOBS))
    for oid, location in sorted(large.items()):
        _fetch_large_blob(store, remote, oid, location, result, progress)
    if trees is not None:
        trees.update(payloads)
        payloads = trees
    _check_closure(store, remote, tips, live, indexes, payloads)
    progress.finish()


def _download_walking(store, remote: Remote, index: dict[str, Location], tips: list[str],
                      result: TransferResult, progress: Progress, add, live: set[str]) -> list[str]:
    """download() level by level; the large blobs, left to fetch in chunks."""
    # An empty store has nothing: no need to ask it about every object (a
    # miss costs a look at its pack folder).
    has = store.has if next(iter(store), None) is not None else (lambda oid: False)
    seen: set[str] = set()
    level = [(oid, SNAPSHOT) for oid in tips]
    blobs: list[str] = []
    while level:
        todo = []
        for oid, kind in level:
            if oid not in seen:
                seen.add(oid)
                todo.append((oid, kind, has(oid)))
        absent = [(oid, index.get(oid)) for oid, kind, held in todo if not held]
        payloads = {oid: store.get(oid, kind)[1] for oid, kind, held in todo if held}
        payloads.update(_store_frames(store, _fetch_frames(remote, index, absent, result, progress,
                                                           add=add, keep=_ALL_KINDS)))
        level = []
        for oid, kind, _ in todo:
            payload = payloads[oid]
            if kind == SNAPSHOT:
                snapshot = _decoded(decode_snapshot, payload, oid)
                level.append((snapshot.tree, TREE))
                level.extend((p, SNAPSHOT) for p in snapshot.parents if p in live or has(p))
            else:
                for entry in _decoded(decode_tree, payload, oid).entries:
                    if entry.mode == MODE_TREE:
                        level.append((entry.id, TREE))
                    elif entry.id not in seen:
                        seen.add(entry.id)
                        if not has(entry.id):
                            blobs.append(entry.id)
    large = [oid for oid in blobs if oid in index and index[oid].length > LARGE_FRAME]
    small = [(oid, index.get(oid)) for oid in blobs if oid not in large] if large else \
        [(oid, index.get(oid)) for oid in blobs]
    _store_frames(store, _fetch_frames(remote, index, small, result, progress, add=add))
    return large


def _store_frames(store, fetched: Iterator[tuple[str, bytes | None, bytes | None]]) -> dict[str, bytes]:
    """Store loose the frames too large for a pack (the pack took the
    others); the payloads kept, by id."""
    payloads: dict[str, bytes] = {}
    loose = []
    for oid, frame, payload in fetched:
        if frame is not None:
            loose.append((oid, frame))
        if payload is not None:
            payloads[oid] = payload
    store.add_frames(loose)
    return payloads


def _check_closure(store, remote: Remote, tips: list[str], live: set[str], indexes: dict[str, bytes],
                   payloads: dict[str, bytes]) -> None:
    """Every object the tips reach (and the live parents) is stored, where
    download_everything() put every object `indexes` list: snapshots and
    trees decoded from the verified `payloads` it stored (from the store
    when not there), blobs looked up in `indexes` (no file system call for
    each)."""
    def read(oid: str, decode, stored):
        payload = payloads.get(oid)
        if payload is None:
            _require_stored(store, remote, [oid])
            return stored(oid)
        return _decoded(decode, payload, oid)

    seen: set[str] = set()
    blobs: set[str] = set()
    history = list(tips)
    while history:
        sid = history.pop()
        if sid in seen:
            continue
        seen.add(sid)
        snapshot = read(sid, decode_snapshot, store.get_snapshot)
        history.extend(p for p in snapshot.parents if p in live)
        stack = [snapshot.tree]
        while stack:
            tree_id = stack.pop()
            if tree_id in seen:
                continue
            seen.add(tree_id)
            entries = read(tree_id, decode_tree, store.get_tree).entries
            stack.extend(entry.id for entry in entries if entry.mode == MODE_TREE)
            blobs.update(entry.id for entry in entries if entry.mode != MODE_TREE)
    for name, data in indexes.items():
        blobs.difference_update(raw.hex() for raw, _, _, _ in layout.index_entries(data, name))
    _missing_error(remote, sorted(blobs))


def _require_stored(store, remote: Remote, ids: list[str]) -> None:
    _missing_error(remote, [oid for oid in ids if not store.has(oid)])


def _require(remote: Remote, index: dict[str, Location], ids: list[str]) -> None:
    _missing_error(remote, [oid for oid in ids if oid not in index])


def _missing_error(remote: Remote, missing: list[str]) -> None:
    if missing:
        raise RemoteError(f"{remote.describe} is missing object {missing[0]} "
                          f"({len(missing)} missing in all) that its refs need",
                          hints=["push the snapshot again from a machine that has it"])


def _fetch_large_blob(store, remote: Remote, oid: str, location: Location,
                      result: TransferResult, progress: Progress) -> None:
    """A large file's frame, streamed straight into the store's temporary
    file (memory stays bounded), verified from there, and only then
    stored, as it is (nothing is compressed again, nor copied)."""
    key = layout.pack_key(location.pack)

    def download(out: BinaryIO) -> None:
        try:
            remote.backend.get_range_into(key, location.offset, location.offset + location.length, out,
                                          lambda nbytes: progress.advance(nbytes=nbytes))
        except ShortReadError:
            _past_the_end(remote, key, [(oid, location)])
        except FileNotFoundError:
            raise RemoteError(f"{remote.describe}: {key} is gone (a remote gc may have just run)",
                              hints=["run the command again"]) from None

    if store.put_fetched_frame(oid, download, lambda frame: _verified_payload(oid, frame, key, keep=False)):
        with _result_lock:
            result.objects += 1
            result.bytes += location.length


def _decoded(decode, payload: bytes, oid: str):
    try:
        return decode(payload)
    except CorruptObjectError as exc:
        raise CorruptObjectError(f"remote object {oid} is corrupt: {exc}", oid) from None


def _fetch_frames(remote: Remote, index: dict[str, Location], located: list[tuple[str, Location | None]],
                  result: TransferResult, progress: Progress, *, add, keep: frozenset[str] = frozenset()
                  ) -> Iterator[tuple[str, bytes | None, bytes | None]]:
    """Each object read from the packs in merged ranges, several at once,
    in bounded memory, and verified; frames that fit in a pack handed to
    `add` (from the reading threads), the others returned: (id, frame or
    None, payload if its kind in the remote's index is in `keep`)."""
    _require(remote, index, [oid for oid, location in located if location is None])
    yield from _read_ranges(remote, _ranges(located), result, progress, add=add, keep=keep)


def _read_ranges(remote: Remote, ranges: Iterable[tuple[str, int, int, list]], result: TransferResult,
                 progress: Progress, *, add, keep: frozenset[str] = frozenset(), deliver=None
                 ) -> Iterator[tuple[str, bytes | None, bytes | None]]:
    """_fetch_frames() of merged ranges (_ranges), taken from `ranges` as
    they are read; each blob's payload handed to `deliver` when given."""
    with ThreadPoolExecutor(READERS) as pool:
        window: deque[Future] = deque()
        for item in ranges:
            window.append(pool.submit(_read_range, remote, item, keep, add, deliver))
            if len(window) >= READERS:  # bounded memory: at most READERS ranges held
                yield from _collect(window.popleft(), result, progress)
        while window:
            yield from _collect(window.popleft(), result, progress)


def _collect(future: Future, result: TransferResult, progress: Progress):
    frames, size = future.result()
    with _result_lock:
        result.objects += len(frames)
        result.bytes += size
    progress.advance(files=len(frames), nbytes=size)
    return frames


def _ranges(located: list[tuple[str, Location]]) -> list[tuple[str, int, int, list]]:
    by_pack: dict[str, list[tuple[str, Location]]] = {}
    for oid, location in located:
        by_pack.setdefault(location.pack, []).append((oid, location))
    ranges = []
    for pack, items in sorted(by_pack.items()):
        items.sort(key=lambda item: item[1].offset)
        ranges.extend(_merged(pack, items))
    return ranges


def _merged(pack: str, items: Iterable[tuple[str, Location]]) -> Iterator[tuple[str, int, int, list]]:
    """The ranges of `pack` to read (pack, start, end, members) for `items`,
    objects of that pack in offset order: neighbours merged across gaps up
    to READ_GAP, each range kept under READ_LIMIT bytes."""
    start = end = None
    members: list = []
    for oid, location in items:
        if start is not None and (location.offset - end > READ_GAP
                                  or location.offset + location.length - start > READ_LIMIT):
            yield pack, start, end, members
            start, members = None, []
        if start is None:
            start = location.offset
        end = location.offset + location.length
        members.append((oid, location))
    if members:
        yield pack, start, end, members


def _read_range(remote: Remote, item, keep: frozenset[str], add=None, deliver=None
                ) -> tuple[list[tuple[str, bytes | None, bytes | None]], int]:
    """One merged range of a remote pack, each frame verified: ([(id,
    frame, payload if its kind is in `keep`)], bytes read). Frames that fit in a pack go
    to `add` when given (their frame is then None here); each verified
    blob's payload goes to `deliver` when given."""
    pack, start, end, members = item
    key = layout.pack_key(pack)
    try:
        data = remote.backend.get_range(key, start, end)
    except FileNotFoundError:
        raise RemoteError(f"{remote.describe}: {key} is gone (a remote gc may have just run)",
                          hints=["run the command again"]) from None
    except ShortReadError:  # never read whole: a hostile index may name any offset
        _past_the_end(remote, key, members)
    out = []
    packed = []
    size = 0
    view = memoryview(data)  # frames as views of the range: no copy of it held
    for oid, location in members:
        frame = view[location.offset - start:location.offset - start + location.length]
        size += len(frame)
        if deliver is not None and location.kind == BLOB:
            with deliver(oid) as sink:  # written as it is checked (never whole in memory)
                payload = _verified_payload(oid, io.BytesIO(frame), key, location.kind in keep, sink)
        else:
            payload = _verified_payload(oid, io.BytesIO(frame), key, location.kind in keep)
        if add is not None and len(frame) <= MAX_FRAME:
            packed.append((oid, frame))
            frame = None
        out.append((oid, None if frame is None else bytes(frame), payload))
    if packed:
        add(packed)
    return out, size


def _past_the_end(remote: Remote, key: str, members: list[tuple[str, Location]]) -> None:
    """Raise for a range the pack does not hold whole: it is truncated, or
    its index damaged (a frame past its end)."""
    info = remote.backend.stat(key)
    size = info.size if info is not None else 0
    oid = next((oid for oid, location in members if location.offset + location.length > size),
               members[-1][0])
    raise CorruptObjectError(f"remote object {oid} in {key} is corrupt: its index places it past "
                             f"the pack's end ({size} bytes): a truncated pack or a damaged index", oid,
                             hints=["nothing was stored from it; the remote needs the snapshot pushed again"])


def _verified_payload(oid: str, frame: BinaryIO, key: str, keep: bool,
                      sink: Callable[[bytes], None] | None = None) -> bytes | None:
    """Check a fetched frame (in memory, or a large one in a file): one
    whole frame, not a delta, whose payload hashes to `oid`; the payload
    when `keep`, and its chunks to `sink` as they are hashed. Otherwise
    CorruptObjectError, naming the remote pack."""
    try:
        reader = codec.FrameReader(frame, oid)
        digest = hashlib.sha256()
        chunks = [] if keep else None
        for chunk in reader.chunks():  # a delta raises: no base can be read here
            digest.update(chunk)
            if sink is not None:
                sink(chunk)
            if chunks is not None:
                chunks.append(chunk)
        if digest.hexdigest() != oid:
            raise CorruptObjectError("hash mismatch", oid)
    except CorruptObjectError as exc:
        raise CorruptObjectError(f"remote object {oid} in {key} is corrupt: "
                                 f"{str(exc).split(': ', 1)[-1]}", oid,
                                 hints=["nothing was stored from it; the remote needs "
                                        "the snapshot pushed again"]) from None
    return b"".join(chunks) if chunks is not None else None


# -- pull and clone ----------------------------------------------------------------------------

def pull(repo: WorkspaceView, name: str, refs: Iterable[str] = (), *, progress: Progress = NO_PROGRESS
         ) -> TransferResult:
    """fetch, then fast-forward the current branch (and its files) to the
    remote's branch of the same name when the workspace is clean. Never
    merges: otherwise CannotFastForwardError, exit 1, after fetching."""
    branch_ref, head = repo.refs.head()
    if branch_ref is None:
        raise InvalidValueError("HEAD is detached: pull moves a branch",
                                hints=["`rnstore checkout BRANCH` first, or `rnstore fetch`"])
    branch = branch_ref[len(HEADS):]
    result = fetch(repo, name, list(refs) or [branch], progress=progress)
    target = repo.refs.resolve(f"{REMOTES}{name}/{branch}")
    if target is None or target == head:
        return result
    if head is not None and not is_ancestor(repo.store, head, target):
        raise CannotFastForwardError(
            f"cannot fast-forward {branch}: it and {name}/{branch} have both moved on", result,
            hints=[f"fetched {result.objects} objects; `rnstore log {name}/{branch}` shows the "
                   "remote's snapshots; nothing was merged or changed here"])
    status = repo.status()
    if status.staged or status.unstaged:
        raise CannotFastForwardError(
            f"cannot fast-forward {branch}: the workspace has uncommitted changes", result,
            hints=[f"fetched {result.objects} objects into {name}/{branch}; commit or "
                   "restore your changes, then pull again"])
    fast_forward(repo, target, expected=head, progress=progress)
    result.fast_forwarded = target
    return result


def clone_into(repo: WorkspaceView, url: str, *, options: Iterable[str] = (),
               progress: Progress = NO_PROGRESS) -> TransferResult:
    """Fill a new, empty workspace from a remote (Repository.clone makes the
    workspace): remote `origin`, every object fetched and verified, the
    remote's default branch checked out."""
    add_remote(repo, "origin", url, options)
    # the fetch verifies every blob: those it writes out as files here, the
    # checkout moves into place rather than reading them back (one pass)
    fetched = FetchedBlobs(repo.dotdir / f"{FETCHED_PREFIX}{os.getpid()}-{secrets.token_hex(4)}")
    try:
        result = fetch(repo, "origin", progress=progress, deliver=fetched.receive, trees=fetched.trees)
        remote = open_remote(repo, "origin")
        with _remote_errors(remote):
            default = remote.default_branch()
        branches = sorted(r.ref[len(f"{REMOTES}origin/"):] for r in result.refs
                          if r.ref.startswith(REMOTES) and r.new and r.status != "refused")
        branch = default if default in branches else ("main" if "main" in branches else
                                                      (branches[0] if branches else None))
        if branch is not None:
            oid = repo.refs.resolve(f"{REMOTES}origin/{branch}")
            repo.refs.update(HEADS + branch, oid, None)
            repo.refs.set_head_symbolic(HEADS + branch)
            checkout(repo, branch, force=True, progress=progress, fetched=fetched)
        else:
            result.warnings.extend(_nothing_checked_out(repo, result))
    finally:
        fetched.close()
    result.path = str(repo.root)
    return result


def _nothing_checked_out(repo: WorkspaceView, result: TransferResult) -> list[str]:
    """What a clone of a remote without branches says (git: "You appear to
    have cloned an empty repository", "remote HEAD refers to nonexistent ref")."""
    branch = short_name(repo.refs.head()[0] or HEADS + "main")
    tags = sorted(short_name(r.ref) for r in result.refs if r.ref.startswith(TAGS) and r.new)
    if not tags:
        return [f"the remote is empty: nothing was checked out, and {branch} has no snapshot yet"]
    shown = ", ".join(tags[:3]) + (f" and {len(tags) - 3} more" if len(tags) > 3 else "")
    return [f"the remote has no branch, only tags ({shown}): nothing was checked out, and "
            f"{branch} has no snapshot yet; `rnstore checkout {tags[0]}` checks out a tag"]


# -- helpers -----------------------------------------------------------------------------------

def _track(repo: WorkspaceView, name: str, pushed: list[tuple[str, str | None]]) -> None:
    for ref, new in pushed:
        if ref.startswith(HEADS) and new is not None:
            repo.refs.update(f"{REMOTES}{name}/{ref[len(HEADS):]}", new, ANY)


class _remote_errors:
    """A missing bucket or folder, from any call, as one clear error."""

    def __init__(self, remote: Remote):
        self.remote = remote

    def __enter__(self):
        return self

    def __exit__(self, kind, exc, tb):
        if kind is not None and issubclass(kind, FileNotFoundError) and not isinstance(exc, RnstoreError):
            why = " ".join(str(exc).split())[:200]
            raise RemoteError(f"{self.remote.describe} cannot be used: {why}",
                              hints=["check that the bucket or folder exists"]) from None
        return False


__all__ = ["push", "fetch", "pull", "clone_into", "add_remote", "remove_remote", "list_remotes",
           "TransferResult", "RefUpdate", "PushRefusedError", "CannotFastForwardError", "is_ancestor"]
