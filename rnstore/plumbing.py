"""The plumbing: one library function per plumbing command. Porcelain is
built from these. None of them prints; they return values or stream bytes."""

from __future__ import annotations

import os
import socket
import subprocess
from dataclasses import dataclass
from datetime import datetime, timezone
from itertools import chain
from pathlib import Path
from typing import BinaryIO, Iterable, Iterator, Mapping

from ._version import __version__
from .errors import (AmbiguousRevisionError, BadInputError, CorruptObjectError, InvalidValueError,
                     MissingObjectError, RnstoreError, UnknownRevisionError)
from .index import Index, IndexEntry
from .objects import (BLOB, MODE_TREE, SNAPSHOT, TREE, Snapshot, Tree, TreeEntry, is_object_id,
                      kind_of_mode, parse_mode, HASH_CHUNK, hash_stream)
from .quoting import unquote_path
from .refs import ANY, HEAD, HEADS, check_ref_name
from .revparse import is_stored_tree, resolve_entry, resolve_snapshot, resolve_tree, rev_parse
from .trees import FlatEntry, iter_tree
from .views import HistoryView, WorkspaceView

#: Metadata keys rnstore records itself; --meta may not override them.
RESERVED_META = ("user", "host", "rnstore_version", "git_commit", "files", "bytes")


# -- hash-object ------------------------------------------------------------------------

def hash_object(repo: WorkspaceView | None, path: str | None, *, write: bool,
                stdin: BinaryIO | None = None) -> str:
    """The blob id of a file (or of stdin); with `write`, store the blob.
    Without `write` no workspace is needed (pass repo=None)."""
    if not write:
        if path is None:
            return hash_stream(stdin)
        return _hash_file(path)
    with repo.store_lock(shared=True), repo.store.batch():
        if path is not None:
            return repo.store.put_file(Path(path))[0]
        return _put_unsized(repo.store, stdin)


def hash_objects(repo: WorkspaceView | None, paths: Iterable[str], *, write: bool) -> Iterator[str]:
    """The blob id of each file `paths` names, in order (`hash-object
    --stdin-paths`). Without `write`, each id as soon as it is known (no
    workspace needed: repo=None). With `write`, every file is stored in one
    batch (one pack, one sync), and the ids come once all of them are
    durable: an id is never handed out before its object can be read."""
    if not write:
        for path in paths:
            yield _hash_file(path)
        return
    with repo.store_lock(shared=True), repo.store.batch():
        ids = [repo.store.put_file(Path(path))[0] for path in paths]
    yield from ids


def _hash_file(path: str) -> str:
    with open(path, "rb") as fh:
        return hash_stream(fh)


def _put_unsized(store, source: BinaryIO) -> str:
    """Stdin has no size up front: spool it to a temporary file first."""
    import tempfile  # only hash-object --stdin spools; rev-parse loads this module
    with tempfile.TemporaryFile() as spool:
        for chunk in iter(lambda: source.read(HASH_CHUNK), b""):
            spool.write(chunk)
        size = spool.tell()
        spool.seek(0)
        return store.put_stream(spool, size)


# -- cat-file ---------------------------------------------------------------------------

@dataclass(frozen=True)
class ObjectInfo:
    id: str
    kind: str
    size: int


def object_info(repo: HistoryView, rev: str) -> ObjectInfo:
    oid = rev_parse(repo, rev)
    kind, size = repo.store.header(oid)
    return ObjectInfo(oid, kind, size)


def object_exists(repo: HistoryView, rev: str) -> bool:
    try:
        rev_parse(repo, rev)
        return True
    except (UnknownRevisionError, MissingObjectError):
        return False


def cat_file(repo: HistoryView, rev: str, expected_kind: str | None = None) -> Iterator[bytes]:
    """An object's payload, exactly, in verified chunks."""
    info = object_info(repo, rev)
    if expected_kind is not None and info.kind != expected_kind:
        raise InvalidValueError(f"'{rev}' is a {info.kind}, not a {expected_kind}")
    return _payload(repo, info)


def _payload(repo: HistoryView, info: ObjectInfo) -> Iterator[bytes]:
    if info.kind == BLOB:
        return repo.store.iter_blob(info.id)
    # Decoded like every other reader does, so a non-canonical tree or
    # snapshot is refused as corrupt; a valid one re-encodes to its payload.
    decoded = repo.store.get_tree(info.id) if info.kind == TREE else repo.store.get_snapshot(info.id)
    return iter([decoded.encode()])


def _verified_object(repo: HistoryView, oid: str) -> tuple[ObjectInfo, Iterable[bytes]]:
    """An object's info and payload, verified before anything is returned.
    A blob small enough to hold is read once (cat-file --batch reads
    thousands); anything else, or a damaged first copy, the general way."""
    from .store import BUFFERED_BLOB  # loads zstandard, which rev-parse does without
    try:
        with repo.store.open_object(oid, verify=True) as reader:
            if reader.kind == BLOB and reader.size <= BUFFERED_BLOB:
                return ObjectInfo(oid, BLOB, reader.size), (reader.read_all(BUFFERED_BLOB),)
    except CorruptObjectError:
        pass  # another stored copy may be intact: the general way finds it, or raises
    info = ObjectInfo(oid, *repo.store.header(oid))
    chunks = _payload(repo, info)
    first = next(chunks, None)  # the whole payload is verified before its first chunk comes
    return info, (() if first is None else chain((first,), chunks))


#: git's words for a request that names no object, and for one that names several.
MISSING, AMBIGUOUS = "missing", "ambiguous"


@dataclass(frozen=True)
class BatchReply:
    """cat_file_batch's answer to one request: the object's `info` (and,
    when contents were asked for, its verified `payload` chunks), or a
    `status` (MISSING, AMBIGUOUS), or the `error` that a damaged object or
    ref raised."""
    request: str
    info: ObjectInfo | None = None
    payload: Iterable[bytes] = ()
    status: str | None = None
    error: RnstoreError | None = None


def cat_file_batch(repo: HistoryView, requests: Iterable[str], *,
                   contents: bool) -> Iterator[BatchReply]:
    """One reply per request (an id, a unique id prefix or any revision,
    REV:PATH included), in order; a request that fails does not stop the
    others (`cat-file --batch`, `--batch-check`). Without `contents` only
    the header is read, as `cat-file -s` does. With it, the payload is
    verified before the reply is made (a large blob in a first pass), so a
    damaged object is an `error` reply and never partial bytes. A reply's
    payload must be consumed before the next reply is asked for."""
    for request in requests:
        try:
            reply = _batch_reply(repo, request, contents)
        except AmbiguousRevisionError:
            reply = BatchReply(request, status=AMBIGUOUS)
        except (BadInputError, MissingObjectError):  # as git: any name that resolves to nothing
            reply = BatchReply(request, status=MISSING)
        except RnstoreError as exc:  # a damaged object, or tree on the way to REV:PATH, a corrupt ref
            reply = BatchReply(request, error=exc)
        yield reply


def _batch_reply(repo: HistoryView, request: str, contents: bool) -> BatchReply:
    if is_object_id(request):  # most requests of a script: read at once, with no look-up first
        try:
            return BatchReply(request, *_read_for_batch(repo, request, contents))
        except MissingObjectError:
            pass  # rev_parse has the last word (a ref could bear that name)
    return BatchReply(request, *_read_for_batch(repo, rev_parse(repo, request), contents))


def _read_for_batch(repo: HistoryView, oid: str, contents: bool) -> tuple[ObjectInfo, Iterable[bytes]]:
    if contents:
        return _verified_object(repo, oid)
    return ObjectInfo(oid, *repo.store.header(oid)), ()


def read_snapshot(repo: HistoryView, rev: str) -> tuple[str, Snapshot]:
    oid = resolve_snapshot(repo, rev)
    return oid, repo.store.get_snapshot(oid)


# -- ls-tree / ls-files / manifest --------------------------------------------------------

@dataclass(frozen=True)
class Listed:
    mode: str
    kind: str
    id: str
    path: bytes
    size: int


def ls_tree(repo: HistoryView, treeish: str, path: str | None = None, *,
            recursive: bool = False) -> list[Listed]:
    """Entries of a tree; with `path`, that entry, or a folder's entries."""
    if path and ":" in treeish:
        raise InvalidValueError("give either TREE-ISH:PATH or TREE-ISH PATH, not both")
    tree_id = resolve_tree(repo, treeish)
    prefix = b""
    if path:
        entry = resolve_entry(repo, f"{treeish}:{path}")
        clean = os.fsencode(path).strip(b"/")
        if entry.mode != MODE_TREE:
            return [Listed(entry.mode, entry.kind, entry.id, clean, entry.size)]
        tree_id, prefix = entry.id, clean + b"/"
    # Recursive listings show leaves: files, links and empty folders.
    return [Listed(e.mode, kind_of_mode(e.mode), e.id, e.path, e.size)
            for e in iter_tree(repo.store, tree_id, prefix, recursive=recursive)]


def ls_files(repo: WorkspaceView) -> list[IndexEntry]:
    return list(repo.read_index())


def manifest(repo: HistoryView, rev: str) -> dict:
    """Every file and link of a snapshot, flat (empty folders left out)."""
    snapshot_id, snapshot = read_snapshot(repo, rev)
    files = [
        {"path": os.fsdecode(e.path), "sha256": e.id, "size": e.size, "mode": e.mode}
        for e in iter_tree(repo.store, snapshot.tree)
        if e.mode != MODE_TREE
    ]
    return {"snapshot": snapshot_id, "files": files}


# -- write-tree / read-tree / mktree ---------------------------------------------------

def write_tree(repo: WorkspaceView, index: Index | None = None, *, base: str | None = None,
               store=None) -> str:
    """Store the trees for the index (read from disk unless given); the
    root tree id. `base` (see trees.build_tree) is only for a caller that
    holds the store lock until a ref names the result, as commit does.
    The index's folder ids are brought up to date (in memory). `store`:
    what the trees are put through (commit's notes them), repo.store by default."""
    index = repo.read_index() if index is None else index
    # The index is a root, so gc spares its blobs: no need to refresh them.
    with repo.store_lock(shared=True), repo.store.batch():
        return index.build_tree(repo.store if store is None else store, base=base)


def read_tree(repo: WorkspaceView, treeish: str) -> int:
    """Replace the index with a tree's entries (stat cache cold); the count."""
    # Under the store lock: the snapshot could be forgotten and collected
    # between reading its tree and the index (a root) naming its blobs.
    with repo.lock(), repo.store_lock(shared=True):
        tree_id = resolve_tree(repo, treeish)
        entries = [IndexEntry(e.path, e.mode, e.id, e.size) for e in iter_tree(repo.store, tree_id)]
        repo.write_index(Index(entries))
    return len(entries)


def mktree(repo: WorkspaceView, lines: Iterable[str], *, quoted: bool = True) -> str:
    """One tree from `ls-tree` lines (`MODE TYPE ID<TAB>NAME`, optionally with
    a size column as `ls-tree -l` prints). Every object must exist. `quoted`:
    a NAME in double quotes is unquoted as `ls-tree` quotes it."""
    entries = []
    for number, line in enumerate(lines, 1):
        line = line.rstrip("\n") if quoted else line
        if not line:
            continue
        meta, tab, name = line.partition("\t")
        fields = meta.split()
        if not tab or len(fields) not in (3, 4):
            raise InvalidValueError(f"line {number}: expected 'MODE TYPE ID<TAB>NAME'")
        mode = parse_mode(fields[0])
        if fields[1] != kind_of_mode(mode):
            raise InvalidValueError(f"line {number}: mode {mode} is a {kind_of_mode(mode)}, not a {fields[1]}")
        oid = fields[2]
        if not repo.store.has(oid):
            raise MissingObjectError(f"line {number}: object {oid} is missing", oid)
        kind, size = repo.store.header(oid)
        if kind == BLOB and fields[1] == TREE and is_stored_tree(repo.store, oid):
            kind = TREE  # a file whose bytes are this tree's encoding was stored first
        if kind != fields[1]:
            raise InvalidValueError(f"line {number}: object {oid} is a {kind}, not a {fields[1]}")
        if kind == TREE:
            size = repo.store.get_tree(oid).total_size
        raw_name = os.fsencode(name)
        entries.append(TreeEntry(unquote_path(raw_name) if quoted else raw_name, mode, oid, size))
    try:
        tree = Tree.from_entries(entries)
    except CorruptObjectError as exc:
        raise InvalidValueError(str(exc).replace(" in tree", "")) from None
    with repo.store_lock(shared=True), repo.store.batch():
        return repo.store.put_tree(tree)


# -- commit-tree ----------------------------------------------------------------------

def utc_now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def utc_iso(seconds: float | None) -> str | None:
    """A Unix time as ISO 8601 UTC, as every time field rnstore prints."""
    if seconds is None:
        return None
    return datetime.fromtimestamp(seconds, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_meta(pairs) -> dict[str, str]:
    """Metadata from "KEY=VALUE" strings or a dict ({"lr": 0.1}); values are
    stored as text (True as "true", None as "")."""
    if isinstance(pairs, Mapping):
        items = [(str(key), meta_text(value)) for key, value in pairs.items()]
        if any(not key.strip() or "=" in key for key, _ in items):
            raise InvalidValueError("metadata keys must be non-empty and hold no '='")
    else:
        items = []
        for pair in pairs:
            key, eq, value = pair.partition("=")
            if not eq or not key.strip():
                raise InvalidValueError(f"metadata is given as KEY=VALUE, not '{pair}'")
            items.append((key, value))
    meta = {}
    for key, value in items:
        if key in RESERVED_META:
            raise InvalidValueError(f"metadata key '{key}' is recorded by rnstore itself")
        meta[key] = value
    return meta


def meta_text(value) -> str:
    """A metadata value as text: True -> "true", 0.1 -> "0.1", None -> ""."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def git_commit_of(folder: Path) -> str | None:
    """The git commit checked out at `folder`, if it lies in a git repository."""
    for candidate in (folder, *folder.parents):
        if (candidate / ".git").exists():
            break
    else:
        return None
    try:
        result = subprocess.run(["git", "-C", str(folder), "rev-parse", "HEAD"],
                                capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    commit = result.stdout.strip()
    return commit if result.returncode == 0 and commit else None


def count_files(store, tree_id: str) -> int:
    return sum(1 for e in iter_tree(store, tree_id) if e.mode != MODE_TREE)


def snapshot_meta(repo: WorkspaceView, tree_id: str, extra: dict[str, str], *,
                  files: int | None = None) -> dict[str, str]:
    meta = {
        "user": repo.config.get("user.name"),
        "host": socket.gethostname(),
        "rnstore_version": __version__,
        "workspace": str(repo.root),
        "files": str(count_files(repo.store, tree_id) if files is None else files),
        "bytes": str(repo.store.get_tree(tree_id).total_size),
    }
    commit = git_commit_of(repo.root)
    if commit:
        meta["git_commit"] = commit
    meta.update(extra)
    return meta


def commit_tree(repo: WorkspaceView, tree: str, parents: Iterable[str], message: str,
                meta_pairs: Iterable[str] = (), *, files: int | None = None) -> str:
    """Make a snapshot of a tree and add it to the live set; moves no ref."""
    tree_id = resolve_tree(repo, tree)
    parent_ids = tuple(resolve_snapshot(repo, p) for p in parents)
    snapshot = Snapshot(tree_id, parent_ids, utc_now(), message,
                        snapshot_meta(repo, tree_id, parse_meta(meta_pairs), files=files))
    return store_snapshot(repo, snapshot)


def store_snapshot(repo: WorkspaceView, snapshot: Snapshot) -> str:
    """Write a snapshot durably, then journal it: it is live from here on."""
    with repo.store_lock(shared=True):
        repo.ensure_registered()
        with repo.store.batch():
            if not repo.store.freshen(snapshot.tree):
                raise MissingObjectError(f"tree {snapshot.tree} is missing", snapshot.tree)
            snapshot_id = repo.store.put_snapshot(snapshot)
        repo.journal.add(snapshot_id)
    return snapshot_id


# -- refs -------------------------------------------------------------------------------

def full_ref_name(name: str) -> str:
    """`update-ref` names: HEAD, refs/..., or a bare name meaning a branch."""
    if name == HEAD or name.startswith("refs/"):
        if name != HEAD:
            check_ref_name(name)
        return name
    name = HEADS + name
    check_ref_name(name)
    return name


def update_ref(repo: HistoryView, ref: str, new: str, old: str | None = None, *,
               require_old: bool = False) -> str:
    """Point a ref at a snapshot; with `old` (or `require_old` and old None,
    meaning 'must not exist'), only if it is there now."""
    target = resolve_snapshot(repo, new)
    expected = ANY
    if require_old:
        expected = None if old in (None, "", "0" * 64) else rev_parse(repo, old)
    with repo.store_lock(shared=True):
        repo.ensure_registered()
        repo.refs.update(full_ref_name(ref), target, expected)
    return target


def delete_ref(repo: HistoryView, ref: str, old: str | None = None) -> None:
    expected = ANY if old is None else rev_parse(repo, old)
    repo.refs.delete(full_ref_name(ref), expected)


def symbolic_ref(repo: HistoryView, ref: str | None = None) -> str | None:
    """Read HEAD's branch ref (None when detached), or attach HEAD to `ref`."""
    if ref is None:
        return repo.refs.symbolic_head()
    repo.refs.set_head_symbolic(full_ref_name(ref))
    return ref


def show_ref(repo: HistoryView) -> dict[str, str]:
    return repo.refs.list()


__all__ = [
    "hash_object", "hash_objects", "object_info", "object_exists", "cat_file", "cat_file_batch",
    "BatchReply", "MISSING", "AMBIGUOUS", "ls_tree", "ls_files",
    "manifest", "write_tree", "read_tree", "mktree", "commit_tree", "update_ref",
    "delete_ref", "symbolic_ref", "show_ref", "rev_parse", "SNAPSHOT", "FlatEntry",
]
