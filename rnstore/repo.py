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
import shlex
import shutil
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterable, Mapping, Union

from . import registry
from .config import OBJECTS_KEY, Config
from .errors import CorruptStoreError, InvalidValueError, NotAWorkspaceError
from .fsutil import FileLock, atomic_write, make_folder, read_state, share, write_new_file
from .index import Index
from .progress import NO_PROGRESS, Progress
from .refs import HEADS, Journal, RefStore, branch_ref
from .registry import STORE_MARKER
from .tags import TAGS_LOCK, WorkspaceRefs, store_tag_refs

if TYPE_CHECKING:  # store.py loads zstandard: only commands that touch objects pay for it
    from .store import ObjectStore

#: Snapshot metadata as the API takes it: {"lr": 0.1} or ["lr=0.1"].
Meta = Union[Mapping[str, object], Iterable[str]]


def _path_or_none(path: str | os.PathLike | None) -> Path | None:
    return None if path is None else Path(path)


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
    compression.large_level, core.fsync and the store's marker (shared by a
    group) say."""
    from .store import DiskStore  # zstandard loads only when objects are touched
    return DiskStore(repo.store_root / "objects", level=repo.config.get("compression.level"),
                     large_level=repo.config.get("compression.large_level"),
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
        _check_store_format(self.store_root)
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
    def clone(cls, url: str, directory: str | os.PathLike, *, options: Iterable[str] = (),
              nested: bool = False, progress: Progress = NO_PROGRESS):
        """A new workspace in `directory` (new or empty) from a remote: remote
        `origin`, every object verified, the remote's default branch checked
        out; a TransferResult. Inside another workspace only when `nested`,
        as `init`. When it fails, the folder is left as it was found."""
        from .remote.transfer import clone_into  # remote modules load when a remote is used (start-up)
        target = Path(os.path.abspath(directory))  # `..` resolved, as the user means it
        if target.exists() and (not target.is_dir() or any(target.iterdir())):
            if _unfinished_clone(target):
                remove = f"rm -rf {shlex.quote(str(directory))}"
                raise InvalidValueError(
                    f"{directory} holds a clone that did not finish (it was killed); nothing was changed",
                    hints=[f"if nothing in it is yours, remove it (`{remove}`) and clone again"])
            raise InvalidValueError(f"{directory} exists and is not an empty folder")
        made = not target.exists()
        try:
            return clone_into(cls.init(target, default_ignore=False, nested=nested), url,
                              options=options, progress=progress)
        except BaseException:
            if made:
                shutil.rmtree(target, ignore_errors=True)
            else:
                for entry in list(target.iterdir()):
                    shutil.rmtree(entry, ignore_errors=True) if entry.is_dir() else entry.unlink()
            raise

    @classmethod
    def init(cls, path: str | os.PathLike = ".", *, objects: str | os.PathLike | None = None,
             branch: str = "main", default_ignore: bool = True, shared: str = "umask",
             nested: bool = False, **kw) -> "Repository":
        """Make a workspace at `path`; on an existing workspace, change nothing
        (but `shared="group"` still makes its store group-shared).
        `shared`: "umask" (files 0666, folders 0777, less the umask) or
        "group" (group-writable and setgid whatever the umask, as git's
        core.sharedRepository=group). Inside another workspace, refuse
        unless `nested` (the outer one would otherwise store the inner one's
        files, and commands run below it would silently switch workspaces)."""
        if shared not in SHARED_MODES:
            raise InvalidValueError(f"'{shared}' is no way to share a store: give {' or '.join(SHARED_MODES)}")
        root = Path(os.path.abspath(path))  # `..` resolved: ../sibling is not inside .
        dotdir = root / DOTDIR
        if (dotdir / "HEAD").is_file():
            repo = cls(root, dotdir, **kw)
            if shared == "group" and not repo.group_shared:
                prepare_store(repo.store_root, fresh_ok=repo.shared_store, group=True)
            return repo
        outer = next((folder for folder in root.parents if (folder / DOTDIR / "HEAD").is_file()), None)
        if outer is not None and not nested:
            raise InvalidValueError(
                f"{root} is inside the workspace {outer}",
                hints=["pass nested=True to make a workspace inside it anyway; add the "
                       "folder to the outer workspace's .rnignore so its snapshots skip it"])
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

    def add(self, paths: Iterable[str | os.PathLike] = (".",), *, dry_run: bool = False,
            force: bool = False, excludes: Iterable[str] = (), no_ignore: bool = False,
            ignore_errors: bool = False, strict_ignore: bool = False,
            progress: Progress = NO_PROGRESS, cwd: str | os.PathLike | None = None):
        """Stage additions, changes and deletions under `paths` (relative to
        `cwd`, default the current folder); an AddResult. `force` ignores the
        size limits; `ignore_errors` skips unreadable files; `strict_ignore`
        makes a bad .rnignore pattern an error instead of a warning."""
        from .staging import add
        return add(self, paths, dry_run=dry_run, force=force, excludes=excludes,
                   no_ignore=no_ignore, ignore_errors=ignore_errors, strict_ignore=strict_ignore,
                   progress=progress, cwd=_path_or_none(cwd))

    def status(self, *, excludes: Iterable[str] = (), no_ignore: bool = False,
               ignored: bool = False, strict_ignore: bool = False):
        """Staged, unstaged and untracked paths; a Status. With `ignored`,
        also what the ignore rules hide."""
        from .staging import status
        return status(self, excludes=excludes, no_ignore=no_ignore, ignored=ignored,
                      strict_ignore=strict_ignore)

    def commit(self, message: str, *, all: bool = False, meta: Meta = (),
               allow_empty: bool = False, force: bool = False, excludes: Iterable[str] = (),
               no_ignore: bool = False, ignore_errors: bool = False,
               strict_ignore: bool = False, progress: Progress = NO_PROGRESS):
        """Snapshot the index and move the branch; a CommitResult. `all`
        stages the whole workspace first (with `force`, `excludes`,
        `no_ignore`, `ignore_errors` as for add). `meta` is a dict
        ({"lr": 0.1}) or "KEY=VALUE" strings. Nothing to commit raises
        NothingToCommitError unless `allow_empty`."""
        from .history import commit
        return commit(self, message, all=all, meta=meta, allow_empty=allow_empty,
                      progress=progress, add_options=dict(
                          force=force, excludes=excludes, no_ignore=no_ignore,
                          ignore_errors=ignore_errors, strict_ignore=strict_ignore))

    def snapshot(self, message: str, *, meta: Meta = (), allow_empty: bool = False,
                 force: bool = False, excludes: Iterable[str] = (), no_ignore: bool = False,
                 ignore_errors: bool = False, strict_ignore: bool = False,
                 progress: Progress = NO_PROGRESS):
        """Stage everything and commit, in one call; a CommitResult. On
        unchanged code it returns the current snapshot with `unchanged`
        True instead of raising (a training script can call it at every
        launch); `allow_empty` makes a new snapshot anyway."""
        from .history import snapshot
        return snapshot(self, message, meta=meta, allow_empty=allow_empty, progress=progress,
                        add_options=dict(force=force, excludes=excludes, no_ignore=no_ignore,
                                         ignore_errors=ignore_errors, strict_ignore=strict_ignore))

    def log(self, rev: str | None = None, *, limit: int | None = None, all: bool = False,
            grep: str | None = None, meta: Meta | None = None,
            paths: Iterable[str | os.PathLike] | None = None,
            cwd: str | os.PathLike | None = None):
        """History from `rev` (default HEAD), newest first; a Log, which
        iterates over its entries. `all`: every live or tagged snapshot.
        Filters: `grep` (in the message, any case), `meta` (every pair must
        match), `paths` (snapshots that changed them); `limit` counts those."""
        from .history import log
        return log(self, rev, limit=limit, all=all, grep=grep, meta=meta, paths=paths,
                   cwd=_path_or_none(cwd))

    def tag(self, name: str, rev: str = "HEAD", *, force: bool = False) -> str:
        """Bind a tag to a snapshot (`force` moves it); the snapshot id."""
        from .history import tag
        return tag(self, name, rev, force=force)

    def checkout(self, rev: str | None, paths: Iterable[str | os.PathLike] | None = None, *,
                 target: str | os.PathLike | None = None, force: bool = False,
                 skip_missing: bool = False, progress: Progress = NO_PROGRESS,
                 cwd: str | os.PathLike | None = None):
        """Make the workspace (or `target`, or only `paths`) match `rev`; with
        `rev` None, restore `paths` from the index. A CheckoutResult."""
        from .checkout import checkout
        return checkout(self, rev, paths, target=target, force=force, skip_missing=skip_missing,
                        progress=progress, cwd=_path_or_none(cwd))

    def export(self, rev: str, output, *, format: str | None = None,
               paths: Iterable[str | os.PathLike] | None = None,
               progress: Progress = NO_PROGRESS, cwd: str | os.PathLike | None = None):
        """Write a snapshot to `output` (a file or folder name, or a binary
        stream) as zip, tar, tar.gz, tar.zst or a folder ("dir"); an ExportResult."""
        from .export import export
        return export(self, rev, output, format=format, paths=paths, progress=progress,
                      cwd=_path_or_none(cwd))

    def forget(self, revs: Iterable[str] = (), *, keep_last: int | None = None,
               keep_within: str | None = None, dry_run: bool = False):
        """Drop snapshots from the live set; a ForgetResult. `keep_within` is
        a duration such as "30d"."""
        from .forget import forget
        return forget(self, revs, keep_last=keep_last, keep_within=keep_within, dry_run=dry_run)

    def gc(self, *, dry_run: bool = False, prune: str | None = None, auto: bool = False,
           threshold: str | float | None = None, aggressive: bool = False, progress: Progress = NO_PROGRESS):
        """Delete what no root reaches; GcStats. `prune` is the grace period
        ("1h", "now"; default the gc.prune setting); `threshold` the percent
        of a pack that must be garbage for gc to rewrite it (default the
        gc.threshold setting); `aggressive` repacks everything into one pack
        with deltas chosen anew."""
        from .du import drop_answer
        from .gc import gc
        stats = gc(self, dry_run=dry_run, prune=prune, auto=auto, threshold=threshold,
                   aggressive=aggressive, progress=progress)
        if not dry_run and (stats.deleted_objects or stats.repacked_objects):
            drop_answer(self)  # keyed on the store's listing, which changed: never usable again
        return stats

    def du(self, revs: Iterable[str] = (), *, progress: Progress = NO_PROGRESS):
        """Space used by the store and each live snapshot; DuStats."""
        from .du import du
        return du(self, revs, progress=progress)

    def fsck(self, *, quick: bool = False, progress: Progress = NO_PROGRESS):
        """Verify every object, ref, journal entry and the index; an FsckResult."""
        from .fsck import fsck
        return fsck(self, quick=quick, progress=progress)

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


def _unfinished_clone(folder: Path) -> bool:
    """Whether `folder` holds a clone killed before it finished: its
    fetch's private folder is still there, and the process is gone."""
    from .checkout import FETCHED_PREFIX
    from .fsutil import pid_alive
    try:
        names = os.listdir(folder / DOTDIR)
    except OSError:
        return False
    pids = [name[len(FETCHED_PREFIX):].split("-", 1)[0] for name in names if name.startswith(FETCHED_PREFIX)]
    return any(pid.isdigit() and not pid_alive(int(pid)) for pid in pids)


def _store_marker(store_root: Path) -> str | None:
    try:
        data = read_state(store_root / STORE_MARKER)
    except OSError:
        return None
    return None if data is None else data.decode("utf-8", "replace")


def _check_store_format(store_root: Path) -> None:
    """A reader refuses a store format it does not know (FORMAT.md,
    Versioning), rather than write into it or collect from it. A store
    without a marker (new, or made by an early version), or with one cut
    short (`init` killed while writing it), is read as format 1."""
    marker = _store_marker(store_root)
    if marker is not None and not (marker + "\n").startswith(STORE_FORMAT) and not STORE_FORMAT.startswith(marker):
        first = marker.split("\n", 1)[0][:100]
        raise CorruptStoreError(f"{store_root} holds an object store of another format ({first!r})",
                                hints=["use the rnstore version that made it"])


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

