"""A workspace: its layout on disk, its config, and the pieces built on it.

    WORKSPACE/
      .rnstore/
        config        JSON settings (see config.py)
        HEAD          "ref: refs/heads/main" or a snapshot id
        refs/heads/   branches, one file per name holding an id
        refs/tags/    tags, likewise
        snapshots/    the journal of live snapshots: an empty file per id
        index         the staging area (see index.py)
        lock          the workspace lock (refs, index and journal writers)
        objects/      the object store, unless the workspace uses a shared one
        store.lock    the store lock (writers shared, gc exclusive)

A shared object store (`init --objects PATH`) holds `objects/`, `store.lock`,
the store-wide tags (`refs/tags/`, changed under `tags.lock`; see tags.py)
and `workspaces/`, where every workspace using it registers its `.rnstore`
folder so that gc from any of them protects the roots of all. A shared
workspace's tags are the store's; `.rnstore/workspace-id` records where it
was last registered (registry.py).
"""

from __future__ import annotations

import os
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Union

from . import registry
from .config import OBJECTS_KEY, Config
from .errors import CorruptStoreError, InvalidValueError, NotAWorkspaceError
from .fsutil import FileLock, atomic_write, make_folder, read_state, share, write_new_file
from .index import Index
from .refs import HEADS, Journal, RefStore, branch_ref
from .registry import STORE_MARKER
from .tags import TAGS_LOCK, WorkspaceRefs, store_tag_refs

if TYPE_CHECKING:  # store.py loads zstandard: only commands that touch objects pay for it
    from .store import ObjectStore

DOTDIR = ".rnstore"
STORE_FORMAT = "rnstore object store, format 1\n"
#: The marker's second line in a store shared by a group (`init --shared=group`).
SHARED_GROUP = "shared group\n"
#: `init --shared` values: let the umask decide, or make everything group-writable.
SHARED_MODES = ("umask", "group")
#: What an object store folder holds (see the layout above).
STORE_ENTRIES = {STORE_MARKER, "objects", "workspaces", "store.lock", "gc.last", "refs", "tags.lock"}

DEFAULT_IGNORE = """\
# rnstore ignore rules (gitignore syntax). Edit freely; --no-ignore bypasses them.
# Python caches and virtual environments
__pycache__/
*.py[cod]
.venv/
venv/
env/
.tox/
.nox/
.mypy_cache/
.pytest_cache/
.ruff_cache/
.ipynb_checkpoints/
# data, datasets and model checkpoints
data/
datasets/
checkpoints/
*.pth
*.pt
*.ckpt
*.h5
*.safetensors
# build products
dist/
build/
*.egg-info/
# logs and run outputs
logs/
outputs/
wandb/
mlruns/
*.log
# editors and operating systems
.idea/
.vscode/
*.swp
.DS_Store
# version control
.git/
"""


def disk_store(repo: "Repository") -> "ObjectStore":
    """The object store a workspace's config names: `objects/` in its store
    folder (its own .rnstore, or the shared store), as compression.level,
    core.fsync and the store's marker (shared by a group) say."""
    from .store import DiskStore  # zstandard loads only when objects are touched
    return DiskStore(repo.store_root / "objects", level=repo.config.get("compression.level"),
                     fsync=repo.durable, group_shared=repo.group_shared)


#: A store, or what opens one for a workspace when it is first needed.
StoreSource = Union["ObjectStore", Callable[["Repository"], "ObjectStore"]]


class Repository:
    """An open workspace. Library code reports through `notify` (a callable
    taking one line) and never prints.

    `store` is its object store: any ObjectStore (a MemoryStore, say), or a
    callable that opens one on first use (default: disk_store, the one the
    config names). Workspace files (refs, index, journal, locks, config) are
    always on disk at `dotdir`."""

    def __init__(self, root: Path, dotdir: Path, *, store: StoreSource = disk_store,
                 notify: Callable[[str], None] | None = None):
        self.root = root
        self.dotdir = dotdir
        self.notify = notify or (lambda line: None)
        self.config = Config(dotdir / "config")
        shared = self.config.raw(OBJECTS_KEY)
        self.store_root = checked_store_root(shared, self.config.path) if shared else dotdir
        self.shared_store = bool(shared)
        self._store_source = store

    # -- opening -------------------------------------------------------------------

    @classmethod
    def open(cls, path: str | os.PathLike | None = None, **kw) -> "Repository":
        """The workspace containing `path` (default: the current folder),
        found by walking up; RNSTORE_DIR names the .rnstore folder directly."""
        explicit = os.environ.get("RNSTORE_DIR")
        if explicit:
            dotdir = Path(explicit).absolute()
            if not (dotdir / "HEAD").is_file():
                raise NotAWorkspaceError(f"RNSTORE_DIR={explicit} is not an rnstore folder")
            return cls(dotdir.parent, dotdir, **kw)
        start = Path(path or ".").absolute()
        for folder in (start, *start.parents):
            dotdir = folder / DOTDIR
            if (dotdir / "HEAD").is_file():
                return cls(folder, dotdir, **kw)
        raise NotAWorkspaceError(
            f"not an rnstore workspace (or any parent up to /): {start}",
            hints=["run `rnstore init` to make one here"])

    @classmethod
    def init(cls, path: str | os.PathLike = ".", *, objects: str | os.PathLike | None = None,
             branch: str = "main", default_ignore: bool = True, shared: str = "umask",
             **kw) -> "Repository":
        """Make a workspace at `path`; on an existing workspace, change nothing
        (but `shared="group"` still makes its store group-shared).
        `shared`: "umask" (files 0666, folders 0777, less the umask) or
        "group" (group-writable and setgid whatever the umask, as git's
        core.sharedRepository=group)."""
        if shared not in SHARED_MODES:
            raise InvalidValueError(f"--shared must be one of {', '.join(SHARED_MODES)}, not '{shared}'")
        root = Path(path).absolute()
        dotdir = root / DOTDIR
        if (dotdir / "HEAD").is_file():
            repo = cls(root, dotdir, **kw)
            if shared == "group" and not repo.group_shared:
                prepare_store(repo.store_root, fresh_ok=repo.shared_store, group=True)
            return repo
        head_ref = branch_ref(branch)
        objects = objects or os.environ.get("RNSTORE_OBJECTS")
        root.mkdir(parents=True, exist_ok=True)
        dotdir.mkdir(exist_ok=True)
        for sub in ("refs/heads", "refs/tags", "snapshots"):
            (dotdir / sub).mkdir(parents=True, exist_ok=True)
        config = Config(dotdir / "config")
        if objects:
            store_root = Path(objects).absolute()
            if os.path.normpath(store_root) == "/":
                raise InvalidValueError("the root folder / cannot be an object store")
            prepare_store(store_root, group=shared == "group")
            config.values[OBJECTS_KEY] = str(store_root)
        else:
            prepare_store(dotdir, fresh_ok=False, group=shared == "group")
        config.save()
        if default_ignore and not (root / ".rnignore").exists():
            atomic_write(root / ".rnignore", DEFAULT_IGNORE.encode())
        # HEAD last: its presence is what makes the folder a workspace.
        atomic_write(dotdir / "HEAD", f"ref: {head_ref}\n".encode())
        repo = cls(root, dotdir, **kw)
        repo.ensure_registered()
        return repo

    def workspace_at(self, dotdir: Path) -> "Repository":
        """Another workspace (one a shared store also serves), opened as this
        one is: gc, du and fsck read its roots."""
        return type(self)(dotdir.parent, dotdir)

    # -- parts -----------------------------------------------------------------------

    @cached_property
    def durable(self) -> bool:
        return self.config.get("core.fsync")

    @cached_property
    def lock_wait(self) -> float:
        return self.config.get("core.lock_wait")

    @cached_property
    def group_shared(self) -> bool:
        """Whether the store is shared by a group (`init --shared=group`)."""
        return _store_marker(self.store_root) == STORE_FORMAT + SHARED_GROUP

    @cached_property
    def store(self) -> "ObjectStore":
        source = self._store_source
        return source(self) if callable(source) else source

    @cached_property
    def local_refs(self) -> RefStore:
        """The refs in this workspace's .rnstore folder."""
        return RefStore(self.dotdir, self.lock, durable=self.durable)

    @cached_property
    def store_tags(self) -> RefStore | None:
        """The shared store's tags (None with a store of its own)."""
        if not self.shared_store:
            return None
        return store_tag_refs(self.store_root, self.tags_lock, durable=self.durable,
                              group_shared=self.group_shared)

    @cached_property
    def refs(self) -> RefStore | WorkspaceRefs:
        """HEAD, branches and tags as commands see them: a shared store's
        workspace finds its tags in the store (tags.py)."""
        if self.store_tags is None:
            return self.local_refs
        return WorkspaceRefs(self.local_refs, self.store_tags)

    @cached_property
    def journal(self) -> Journal:
        return Journal(self.dotdir / "snapshots", durable=self.durable)

    @property
    def index_path(self) -> Path:
        return self.dotdir / "index"

    def lock(self) -> FileLock:
        """The workspace lock: refs, index and journal change under it."""
        return FileLock(self.dotdir / "lock", wait=self.lock_wait, on_wait=self.notify,
                        what="workspace lock")

    def tags_lock(self) -> FileLock:
        """A shared store's tag lock: store-wide tags change under it."""
        return FileLock(self.store_root / TAGS_LOCK, wait=self.lock_wait, on_wait=self.notify,
                        what="tag lock", group_shared=self.group_shared)

    def store_lock(self, *, shared: bool) -> FileLock:
        """Writers hold it shared while they add objects and publish them;
        gc holds it exclusively while it marks and deletes."""
        return FileLock(self.store_root / "store.lock", shared=shared, wait=self.lock_wait,
                        on_wait=self.notify, what="store lock", group_shared=self.group_shared)

    def read_index(self) -> Index:
        return Index.load(self.index_path)

    def write_index(self, index: Index) -> None:
        index.write(self.index_path, durable=self.durable)

    def current_branch(self) -> str | None:
        ref = self.refs.symbolic_head()
        return ref[len(HEADS):] if ref and ref.startswith(HEADS) else ref

    # -- the Python API: each method is one library function, imported when
    # first called so that `import rnstore` stays cheap ----------------------

    def add(self, paths=(".",), **options):
        """Stage additions, changes and deletions under `paths`; an AddResult.
        Options: dry_run, force, excludes, no_ignore, ignore_errors, progress, cwd."""
        from .staging import add
        return add(self, paths, **options)

    def status(self, **options):
        """Staged, unstaged and untracked paths; a Status. Options: excludes, no_ignore."""
        from .staging import status
        return status(self, **options)

    def commit(self, message: str, **options):
        """Snapshot the index and move the branch; a CommitResult. Options:
        all (stage everything first), meta (["K=V", ...]), allow_empty, progress."""
        from .history import commit
        return commit(self, message, **options)

    def snapshot(self, message: str, **options):
        """Stage everything and commit, in one call; a CommitResult."""
        from .history import snapshot
        return snapshot(self, message, **options)

    def log(self, rev: str | None = None, **options):
        """History from `rev` (default HEAD), newest first; a Log. Options: limit, all."""
        from .history import log
        return log(self, rev, **options)

    def tag(self, name: str, rev: str = "HEAD", **options) -> str:
        """Bind a tag to a snapshot (force=True moves it); the snapshot id."""
        from .history import tag
        return tag(self, name, rev, **options)

    def checkout(self, rev: str, paths=None, **options):
        """Make the workspace (or `target`, or only `paths`) match `rev`; a
        CheckoutResult. Options: target, force, progress."""
        from .checkout import checkout
        return checkout(self, rev, paths, **options)

    def export(self, rev: str, output, **options):
        """Write a snapshot as zip, tar, tar.gz, tar.zst or a folder; an
        ExportResult. Options: format, paths, progress."""
        from .export import export
        return export(self, rev, output, **options)

    def forget(self, revs=(), **options):
        """Drop snapshots from the live set; a ForgetResult. Options:
        keep_last, keep_within, dry_run."""
        from .forget import forget
        return forget(self, revs, **options)

    def gc(self, **options):
        """Delete what no root reaches; GcStats. Options: dry_run, prune, auto, progress."""
        from .gc import gc
        return gc(self, **options)

    def du(self, revs=(), **options):
        """Space used by the store and each live snapshot; DuStats."""
        from .du import du
        return du(self, revs, **options)

    def fsck(self, **options):
        """Verify every object, ref, journal entry and the index; an FsckResult.
        Options: quick, progress."""
        from .fsck import fsck
        return fsck(self, **options)

    # -- shared stores ---------------------------------------------------------------

    def registration_path(self) -> Path:
        return registry.registration_path(self.store_root, self.dotdir)

    def register(self) -> Path:
        """Record this workspace in its shared store; the registration's path."""
        return registry.register(self.store_root, self.dotdir, durable=self.durable,
                                 shared=self.group_shared)

    def ensure_registered(self) -> None:
        """Make sure the shared store knows this workspace where it stands
        now (moved, copied or restored since it last registered): called by
        every command that creates a root. Cheap when nothing changed."""
        if self.shared_store:
            with self.store_lock(shared=True):
                path, new = registry.ensure_registered(self.store_root, self.dotdir, durable=self.durable,
                                                       shared=self.group_shared)
                if new:
                    # What it holds now, as gc would record it: if it is deleted
                    # before any gc reads it, gc still knows (gc.py, rule 4).
                    from .reachability import workspace_roots  # rare (a workspace registering anew): rev-parse skips it
                    roots = workspace_roots(self, lambda kind, oid, detail: None)
                    registry.record_roots(path, [(r.kind, r.id) for r in roots], durable=self.durable,
                                          shared=self.group_shared)


def _store_marker(store_root: Path) -> str | None:
    try:
        data = read_state(store_root / STORE_MARKER)
    except OSError:
        return None
    return None if data is None else data.decode("utf-8", "replace")


def checked_store_root(value: str, config_path: Path) -> Path:
    """The store a workspace's `core.objects` names, if it may be one: an
    absolute path to a store, or to an empty or new folder. A hostile
    config (`/`, a folder of user files) must not make commands create
    store files there."""
    def refuse(why: str) -> CorruptStoreError:
        return CorruptStoreError(
            f"core.objects in {config_path} names {value[:200]!r}, {why}",
            hints=["fix core.objects in that file to name the shared object store"])

    root = Path(value)
    if not root.is_absolute():
        raise refuse("which is not an absolute path")
    if os.path.normpath(value) == "/":
        raise refuse("the root folder, which is never an object store")
    if _store_marker(root) is None:
        try:
            names = os.listdir(root)
        except FileNotFoundError:
            names = []  # a new folder: made when first written
        except NotADirectoryError:
            raise refuse("which is not a folder") from None
        except OSError as exc:
            raise refuse(f"which cannot be read ({exc.strerror})") from None
        if any(name not in STORE_ENTRIES for name in names):
            raise refuse("which is not an rnstore object store (it holds other files)")
    return root


def prepare_store(store_root: Path, *, fresh_ok: bool = True, group: bool = False) -> None:
    """Create (or check) an object store's folder. A shared store must be a
    new or empty folder or an existing store (`fresh_ok`), so that
    `init --objects ~/src` by mistake never claims a folder of user files.
    With `group`, the store becomes group-shared (see fsutil.share): its
    marker says so, and what is already there is shared."""
    if store_root.exists() and not store_root.is_dir():
        raise InvalidValueError(f"{store_root} exists and is not a folder")
    marker = store_root / STORE_MARKER
    foreign = store_root.is_dir() and [
        p for p in store_root.iterdir() if p.name not in STORE_ENTRIES]
    # (entries a racing `init --objects` may have made count as a store's own)
    if fresh_ok and foreign and not marker.exists():
        raise InvalidValueError(
            f"{store_root} is not empty and is not an rnstore object store",
            hints=["give an empty or new folder, or an existing shared store"])
    # The marker first: a second `init --objects` racing this one must find
    # a store, not a non-empty folder without a marker.
    make_folder(store_root, shared=group, parents=True)
    if group:  # first: what is made inside then takes its group
        share(store_root, folder=True)
    content = STORE_FORMAT + (SHARED_GROUP if group else "")
    try:
        write_new_file(marker, content.encode(), durable=True, shared=group)
    except FileExistsError:
        if group and _store_marker(store_root) != content:
            atomic_write(marker, content.encode(), shared=True)
    make_folder(store_root / "objects", shared=group)
    if fresh_ok:  # a shared store: its tags live here (tags.py)
        make_folder(store_root / "refs" / "tags", shared=group, parents=True)
    if group:
        _share_all(store_root)


def _share_all(store_root: Path) -> None:
    """Make what is already in a store group-shared; what others own and
    we cannot change is left to them (or an admin)."""
    for folder, dirs, files in os.walk(store_root):
        for path, is_folder in [(folder, True)] + [(os.path.join(folder, f), False) for f in files]:
            try:
                share(path, folder=is_folder)
            except OSError:
                pass

