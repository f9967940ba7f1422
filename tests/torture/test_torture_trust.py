"""Trust, round two: files built by hand from FORMAT.md, planted in the
store, the workspace and `.rnstore/`.

- Symlinked and hard-linked lock and state files: never followed, never
  truncated; a hostile `core.objects` (`/`, a folder of user files) refused.
- Hostile index files: paths that escape the workspace make the index
  corrupt (exit 1, fsck names it); nothing outside is touched.
- Special files: a FIFO where a pack, a loose object or a workspace file
  should be never hangs a command (each run has a timeout).
- Team-shared stores: two real unprivileged users (setpriv, numeric ids)
  in one group share a store; `init --shared=group` and a setgid folder
  with umask 002 both work; a store error never blames the source file.
- Bad `.rnignore` patterns warn with file and line; `--strict-ignore` refuses.
- Pack entries out of bounds make the pack damaged (under a memory limit);
  an intact second copy of a corrupt object is used, and fsck says so.
- Smaller: hostile symlink targets in export, tree sizes that disagree with
  their blob, HEAD or tags naming a tree or blob, ref name clashes,
  symlinks inside `.rnstore/`.
"""

from __future__ import annotations

import hashlib
import json
import os
import resource
import shutil
import stat
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from helpers.torture import STATS, commit, copy_tree, fsck_problems, init, manifest, ok, out, run

pytestmark = pytest.mark.torture

#: A command that hangs is a failure, not a stuck suite.
HANG = 30


def hostile(args, cwd, **kw):
    STATS["hostile.inputs"] += 1
    kw.setdefault("timeout", HANG)
    return run(args, cwd, **kw)


_TEMPLATES: dict[str, Path] = {}


@pytest.fixture(scope="module")
def templates(session_scratch):
    """Workspaces made once per module; tests work on copies (cp -a is much
    cheaper than init and commit)."""
    _TEMPLATES["small"] = _made(session_scratch / "trust-small", None)
    _TEMPLATES["packed"] = _made(session_scratch / "trust-packed",
                                 {f"d{i % 7}/f{i:03d}.txt": b"file %d\n" % i for i in range(80)})
    yield
    _TEMPLATES.clear()


def _made(root: Path, files: dict[str, bytes] | None, *extra: str) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for name, data in (files or {"a.txt": b"alpha\n", "sub/b.txt": b"bravo\n"}).items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    init(root, *extra)
    commit(root, "first")
    return root


def small_ws(root: Path, files: dict[str, bytes] | None = None, *extra: str) -> Path:
    """A workspace with one snapshot: a copy of the module's template, or
    made here when it needs other files or init options."""
    if files is None and not extra and "small" in _TEMPLATES:
        return copy_tree(_TEMPLATES["small"], root)
    return _made(root, files, *extra)


def packed_ws(root: Path) -> Path:
    """A workspace whose snapshot's objects are in one pack."""
    return copy_tree(_TEMPLATES["packed"], root)


@pytest.fixture(autouse=True)
def _templates_ready(templates):
    pass


def repo_of(ws: Path):
    from rnstore import Repository
    return Repository.open(ws)


# -- 2. symlinked and hard-linked lock and state files --------------------------------------


def test_workspace_lock_symlink_is_never_followed(scratch):
    ws = small_ws(scratch / "ws")
    victim = scratch / "home" / ".bashrc"
    victim.parent.mkdir()
    victim.write_bytes(b"export PATH=/precious\n")
    lock = ws / ".rnstore" / "lock"
    lock.unlink(missing_ok=True)
    os.symlink(os.path.relpath(victim, lock.parent), lock)
    (ws / "a.txt").write_bytes(b"changed\n")
    proc = hostile(["commit", "-a", "-q", "-m", "x"], ws)
    assert victim.read_bytes() == b"export PATH=/precious\n"
    assert proc.returncode == 1 and "symlink" in proc.stderr, proc.stderr
    for args in (["add", "."], ["tag", "t"], ["update-ref", "refs/heads/x", "HEAD"]):
        hostile(args, ws, expect=1)
        assert victim.read_bytes() == b"export PATH=/precious\n"


def test_lock_hard_link_is_never_truncated(scratch):
    ws = small_ws(scratch / "ws")
    victim = scratch / "notes.txt"
    victim.write_bytes(b"my notes\n" * 10)
    lock = ws / ".rnstore" / "lock"
    lock.unlink(missing_ok=True)
    os.link(victim, lock)
    (ws / "a.txt").write_bytes(b"changed\n")
    hostile(["commit", "-a", "-q", "-m", "x"], ws)
    assert victim.read_bytes() == b"my notes\n" * 10


def test_shared_store_lock_symlink_is_never_followed(scratch):
    store = scratch / "store"
    ws = small_ws(scratch / "ws", None, "--objects", str(store))
    notes = store / "notes.txt"
    notes.write_bytes(b"team notes\n")
    (store / "store.lock").unlink(missing_ok=True)
    os.symlink("notes.txt", store / "store.lock")
    proc = hostile(["gc", "--prune", "now"], ws)
    assert notes.read_bytes() == b"team notes\n"
    assert proc.returncode == 1 and "symlink" in proc.stderr, proc.stderr


def test_state_files_are_never_followed(scratch):
    ws = small_ws(scratch / "ws")
    secret = scratch / "secret.txt"
    secret.write_bytes(b"0" * 64 + b"\n")
    journal = ws / ".rnstore" / "snapshots"
    dangling = scratch / "created-outside"
    head = out(["rev-parse", "HEAD"], ws)
    # a journal entry that is a dangling symlink: adding the entry again must not create its target
    (journal / head).unlink()
    os.symlink(dangling, journal / head)
    (ws / "a.txt").write_bytes(b"changed\n")
    hostile(["commit", "-a", "-q", "-m", "x"], ws)
    assert not dangling.exists()
    # the index a symlink to a file outside: refused, not read
    index = ws / ".rnstore" / "index"
    index.unlink()
    os.symlink(secret, index)
    proc = hostile(["status"], ws, expect=1)
    assert "symlink" in proc.stderr, proc.stderr


@pytest.mark.parametrize("where", ["root", "user-folder", "relative"])
def test_hostile_core_objects_is_refused(scratch, where):
    ws = small_ws(scratch / "ws")
    home = scratch / "home"
    home.mkdir()
    (home / ".bashrc").write_bytes(b"rc\n")
    value = {"root": "/", "user-folder": str(home), "relative": "store"}[where]
    config = ws / ".rnstore" / "config"
    values = json.loads(config.read_text())
    values["core.objects"] = value
    config.write_text(json.dumps(values))
    existed = os.path.lexists("/store.lock")
    try:
        proc = hostile(["commit", "-a", "-q", "-m", "x", "--allow-empty"], ws)
        assert proc.returncode == 1 and "core.objects" in proc.stderr, proc.stderr
        assert existed or not os.path.lexists("/store.lock")
        assert sorted(os.listdir(home)) == [".bashrc"]
        proc = hostile(["fsck"], ws)
        assert proc.returncode == 1 and "core.objects" in proc.stderr, proc.stderr
    finally:
        if not existed and os.path.lexists("/store.lock"):
            os.unlink("/store.lock")


# -- 3. hostile index files -----------------------------------------------------------------


def plant_index(ws: Path, paths: list[bytes]) -> None:
    from rnstore.index import Index, IndexEntry
    repo = repo_of(ws)
    index = repo.read_index()
    blob = repo.store.put("blob", b"victim\n")
    for path in paths:
        mode = "040000" if path.endswith(b"dir") else "100644"
        oid = "1a" * 32 if mode == "040000" else blob
        index.set(IndexEntry(path, mode, oid, 0 if mode == "040000" else 7))
    index.trees = {}
    (ws / ".rnstore" / "index").write_bytes(index.encode())


@pytest.mark.parametrize("paths", [
    [b"../outside/victim.txt", b"../outside/emptydir"],
    [b"ok/../../outside/victim.txt"],
])
def test_index_with_escaping_paths_is_corrupt(scratch, paths):
    ws = small_ws(scratch / "ws")
    outside = scratch / "outside"
    (outside / "emptydir").mkdir(parents=True)
    (outside / "victim.txt").write_bytes(b"victim\n")
    plant_index(ws, paths)
    before = manifest(outside, skip=())
    for args in (["checkout", "HEAD", "--", "."], ["checkout", "--force", "HEAD"], ["status"],
                 ["commit", "-q", "-m", "x"], ["add", "."]):
        proc = hostile(args, ws)
        assert proc.returncode == 1 and "index" in proc.stderr, (args, proc.stderr)
        assert manifest(outside, skip=()) == before
    assert [p["id"] for p in fsck_problems(ws)] == ["the index"]


@pytest.mark.parametrize("path", [b"../x", b"a/../../x", b"/abs", b"a//b", b"./a", b"a/.", b"a/",
                                  b"a\0b", b".."])
def test_index_decode_refuses_what_tree_names_refuse(path):
    from rnstore.errors import CorruptStoreError
    from rnstore.index import Index, IndexEntry
    data = Index([IndexEntry(path, "100644", "ab" * 32, 1)]).encode()
    if b"\0" in path:
        with pytest.raises(CorruptStoreError):
            Index.decode(data)
        return
    with pytest.raises(CorruptStoreError, match="bad record"):
        Index.decode(data)
    Index.decode(Index([IndexEntry(b"a/b.txt", "100644", "ab" * 32, 1)]).encode())


# -- 4. FIFOs and other special files --------------------------------------------------------


def test_fifo_as_pack_never_hangs(scratch):
    ws = packed_ws(scratch / "ws")
    pack_folder = ws / ".rnstore" / "objects" / "pack"
    packs = [p for p in pack_folder.iterdir() if p.suffix == ".pack"]
    assert len(packs) == 1
    packs[0].unlink()
    os.mkfifo(packs[0])
    hostile(["status"], ws, expect=(0, 1))  # it may need nothing from the pack: it must not hang
    for args in (["checkout", "HEAD", "--target", scratch / "t", "-q"], ["fsck"],
                 ["gc", "--prune", "now"]):
        proc = hostile(args, ws)
        assert proc.returncode == 1 and "error:" in proc.stderr, (args, proc.stderr)
    problems = fsck_problems(ws)
    assert any(p["id"] == packs[0].name and "regular file" in p["detail"] for p in problems), problems


def test_fifo_as_loose_object_never_hangs(scratch):
    ws = small_ws(scratch / "ws")
    repo = repo_of(ws)
    blob = repo.store.put("blob", b"alpha\n")
    path = repo.store.path_for(blob)
    path.unlink()
    os.mkfifo(path)
    (ws / "a.txt").unlink()
    for args in (["checkout", "HEAD", "--target", scratch / "t", "-q"], ["checkout", "-q", "HEAD", "--", "a.txt"],
                 ["fsck"], ["cat-file", "-s", blob], ["cat-file", "-p", blob],
                 ["export", "HEAD", "-o", scratch / "x.tar"]):
        proc = hostile(args, ws)
        assert proc.returncode == 1 and "error:" in proc.stderr, (args, proc.stderr)
    problems = fsck_problems(ws)
    assert any(p["id"] == blob and "regular file" in p["detail"] for p in problems), problems


SWAP_SCRIPT = r"""
import os, sys
from pathlib import Path
from rnstore import Repository
from rnstore.ignore import IgnoreRules
from rnstore.index import Found, StatKey
from rnstore.worktree import hash_entry, scan, store_entry
ws = Path(sys.argv[1])
repo = Repository.open(ws)
# walked to the end first (the walk is lazy), then swapped
found = [Found(path, mode, StatKey.of(st)) for path, mode, st in scan(ws, [b""], IgnoreRules(ws)).found]
(ws / "a.txt").unlink()
os.mkfifo(ws / "a.txt")
entry = [f for f in found if f.path == b"a.txt"][0]
for function in (lambda: store_entry(repo.store, ws, entry), lambda: hash_entry(ws, entry)):
    try:
        function()
    except OSError as exc:
        print("refused:", exc)
    else:
        print("stored a FIFO")
"""


def test_workspace_file_swapped_for_fifo_never_hangs(scratch):
    ws = small_ws(scratch / "ws")
    proc = subprocess.run([sys.executable, "-c", SWAP_SCRIPT, str(ws)], capture_output=True,
                          timeout=HANG)
    STATS["hostile.inputs"] += 1
    lines = proc.stdout.decode().splitlines()
    assert proc.returncode == 0 and len(lines) == 2, proc.stderr.decode()
    assert all(line.startswith("refused:") and "regular file" in line for line in lines), lines
    # and through the CLI: the FIFO is skipped, named as such
    proc = hostile(["add", "."], ws, expect=0)
    assert "a.txt" in proc.stderr and "FIFO" in proc.stderr, proc.stderr


# -- 5. team-shared stores --------------------------------------------------------------------

TEAM_GID = 60000
ALICE, BOB = 60001, 60002


def _setpriv_problem() -> str | None:
    if os.geteuid() != 0:
        return "needs root to act as two users"
    if shutil.which("setpriv") is None:
        return "needs setpriv to act as two users"
    probe = subprocess.run(["setpriv", f"--reuid={ALICE}", f"--regid={ALICE}", f"--groups={TEAM_GID}",
                            sys.executable, "-c", "import rnstore.cli"], cwd="/", capture_output=True,
                           env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"})
    if probe.returncode:
        return f"uid {ALICE} cannot run rnstore here: {probe.stderr.decode().strip()[-200:]}"
    return None


def as_user(uid: int, args, cwd: Path, *, umask: int = 0o022, **kw):
    """A CLI run as `uid` (primary group its own, supplementary group the team)."""
    def set_umask():
        os.umask(umask)
    return run(args, cwd, prefix=["setpriv", f"--reuid={uid}", f"--regid={uid}", f"--groups={TEAM_GID}"],
               env={"HOME": str(cwd), "PYTHONDONTWRITEBYTECODE": "1"}, preexec_fn=set_umask,
               timeout=120, **kw)


@pytest.fixture
def team(scratch):
    problem = _setpriv_problem()
    if problem:
        pytest.skip(problem)
    scratch.chmod(0o755)
    homes = {}
    for uid in (ALICE, BOB):
        home = scratch / f"user{uid}"
        home.mkdir()
        (home / "common.txt").write_bytes(b"shared by both\n")
        (home / f"own{uid}.txt").write_bytes(b"%d\n" % uid)
        os.chown(home, uid, uid)
        for child in home.iterdir():
            os.chown(child, uid, uid)
        homes[uid] = home
    return homes


def _modes(root: Path) -> str:
    lines = []
    for folder, dirs, files in os.walk(root):
        for name in [""] + files:
            st = os.lstat(os.path.join(folder, name))
            lines.append(f"{oct(st.st_mode)} {st.st_uid}:{st.st_gid} {os.path.join(folder, name)}")
    return "\n".join(lines)


def _second_user_works(team, store: Path, umask: int, *init_extra: str) -> None:
    alice, bob = team[ALICE], team[BOB]
    as_user(ALICE, ["init", "-q", "--no-default-ignore", "--objects", store, *init_extra], alice,
            umask=umask, expect=0)
    as_user(ALICE, ["commit", "-a", "-q", "-m", "alice"], alice, umask=umask, expect=0)
    as_user(ALICE, ["tag", "team/alice"], alice, umask=umask, expect=0)  # a store-wide tag
    as_user(BOB, ["init", "-q", "--no-default-ignore", "--objects", store], bob, umask=umask, expect=0)
    # Bob's common.txt is Alice's object: freshening it must work (or work around)
    for args in (["commit", "-a", "-q", "-m", "bob"], ["tag", "team/bob"], ["fsck"],
                 ["gc", "--prune", "now"], ["fsck"], ["status"]):
        proc = as_user(BOB, args, bob, umask=umask)
        assert proc.returncode == 0, (args, proc.stderr, _modes(store))
    for args in (["commit", "-a", "-q", "-m", "again", "--allow-empty"], ["gc", "--prune", "now"],
                 ["fsck"]):
        proc = as_user(ALICE, args, alice, umask=umask)
        assert proc.returncode == 0, (args, proc.stderr)
    proc = as_user(BOB, ["fsck"], bob, umask=umask)
    assert proc.returncode == 0, proc.stderr


def test_shared_group_store_works_for_a_second_user(team, scratch):
    store = scratch / "team-store"
    store.mkdir()
    os.chown(store, ALICE, TEAM_GID)
    _second_user_works(team, store, 0o022, "--shared=group")
    for folder, dirs, files in os.walk(store):
        for name in dirs:
            mode = os.lstat(os.path.join(folder, name)).st_mode
            assert mode & stat.S_ISGID and mode & 0o070 == 0o070, (folder, name, oct(mode))
        for name in files:
            mode = os.lstat(os.path.join(folder, name)).st_mode
            assert mode & 0o060 == 0o060, (folder, name, oct(mode))


def test_setgid_folder_and_umask_002_work_for_a_second_user(team, scratch):
    store = scratch / "team-store"
    store.mkdir()
    os.chown(store, ALICE, TEAM_GID)
    store.chmod(0o2775)
    _second_user_works(team, store, 0o002)


def _store_made_by_alice_with_umask_022(team, scratch) -> Path:
    """Alice starts a store in a setgid team folder with umask 022: its
    folders, lock and objects are hers alone; Bob joins (umask 002)."""
    store = scratch / "team-store"
    store.mkdir()
    os.chown(store, ALICE, TEAM_GID)
    store.chmod(0o2775)
    alice, bob = team[ALICE], team[BOB]
    as_user(ALICE, ["init", "-q", "--no-default-ignore", "--objects", store], alice, expect=0)
    as_user(ALICE, ["commit", "-a", "-q", "-m", "alice"], alice, expect=0)
    (store / "workspaces").chmod(0o2775)  # an admin lets Bob register
    as_user(BOB, ["init", "-q", "--no-default-ignore", "--objects", store], bob, umask=0o002, expect=0)
    return store


def test_second_user_with_a_read_only_lock(team, scratch):
    """store.lock is 0644 and Alice's: Bob's fsck and commit still lock it
    (read-only: flock needs no more)."""
    store = _store_made_by_alice_with_umask_022(team, scratch)
    assert stat.S_IMODE(os.stat(store / "store.lock").st_mode) == 0o644
    for folder, dirs, files in os.walk(store / "objects"):
        os.chmod(folder, 0o2775)
    for args in (["fsck"], ["commit", "-a", "-q", "-m", "bob"], ["gc", "--prune", "now"]):
        proc = as_user(BOB, args, team[BOB], umask=0o002)
        assert proc.returncode == 0, (args, proc.stderr)


def test_freshening_a_read_only_object_of_another_user(team, scratch):
    """An admin fixed the folders' modes, but objects are 0644: Bob cannot
    utime Alice's objects; his commit of the same content must still
    succeed, and freshen them another way (a copy of his own)."""
    store = _store_made_by_alice_with_umask_022(team, scratch)
    for folder, dirs, files in os.walk(store / "objects"):
        os.chmod(folder, 0o2775)
    (store / "store.lock").chmod(0o666)
    repo = repo_of(team[ALICE])
    common = repo.store.put("blob", b"shared by both\n")
    old = os.stat(repo.store.file_of(common))
    os.utime(repo.store.file_of(common), (old.st_atime - 86400, old.st_mtime - 86400))
    proc = as_user(BOB, ["commit", "-a", "-q", "-m", "bob"], team[BOB], umask=0o002)
    assert proc.returncode == 0, proc.stderr
    fresh = os.stat(repo.store.file_of(common))
    assert fresh.st_mtime > old.st_mtime - 3600, "not freshened"
    for uid in (BOB, ALICE):
        proc = as_user(uid, ["fsck"], team[uid], umask=0o002)
        assert proc.returncode == 0, proc.stderr


def test_store_error_never_blames_the_source_file(team, scratch):
    """The objects folders stay Alice's alone: Bob's add fails naming the
    store, not his own readable file."""
    store = _store_made_by_alice_with_umask_022(team, scratch)
    (store / "store.lock").chmod(0o666)
    bob = team[BOB]
    (bob / "new.txt").write_bytes(b"only bob has this\n")
    os.chown(bob / "new.txt", BOB, BOB)
    proc = as_user(BOB, ["add", "."], bob, umask=0o002)
    assert proc.returncode == 1, proc.stderr
    assert "cannot read" not in proc.stderr and "object store" in proc.stderr, proc.stderr
    assert "new.txt" not in proc.stderr and "common.txt" not in proc.stderr, proc.stderr


# -- 6. bad .rnignore patterns ----------------------------------------------------------------


def test_bad_ignore_pattern_warns_and_is_skipped(scratch):
    ws = small_ws(scratch / "ws")
    (ws / ".rnignore").write_text("*.log\n\\\n[z-a]\n")
    (ws / "x.log").write_bytes(b"log\n")
    (ws / "new.txt").write_bytes(b"new\n")
    for args in (["status", "--porcelain"], ["add", "."], ["commit", "-a", "-q", "-m", "x"]):
        proc = hostile(args, ws, expect=0)
        assert ".rnignore:2" in proc.stderr and ".rnignore:3" in proc.stderr, (args, proc.stderr)
        assert "warning" in proc.stderr, proc.stderr
    listed = out(["ls-files"], ws).split("\n")
    assert "new.txt" in listed and "x.log" not in listed
    for args in (["status", "--strict-ignore"], ["add", "--strict-ignore", "."],
                 ["commit", "-a", "--strict-ignore", "-m", "y"]):
        proc = hostile(args, ws, expect=2)
        assert ".rnignore:2" in proc.stderr, proc.stderr


# -- 7. pack bounds and intact second copies ---------------------------------------------------

_ENTRY = struct.Struct(">32sQI")
_TRAILER = struct.Struct(">QQ32s8s")


def rewrite_pack_index(path: Path, change) -> None:
    """Apply `change(entries)` to a pack's index (a list of [id, offset,
    length]) and write it back with a valid checksum."""
    data = bytearray(path.read_bytes())
    offset, count, _, end = _TRAILER.unpack_from(data, len(data) - _TRAILER.size)
    entries = [list(_ENTRY.unpack_from(data, offset + i * _ENTRY.size)) for i in range(count)]
    change(entries)
    index = b"".join(_ENTRY.pack(*e) for e in entries)
    trailer = _TRAILER.pack(offset, count, hashlib.sha256(index).digest(), end)
    path.write_bytes(bytes(data[:offset]) + index + trailer)


def limit_memory():
    resource.setrlimit(resource.RLIMIT_AS, (600_000_000, 600_000_000))


@pytest.mark.parametrize("field,value", [("length", 0xFFFFFFFF), ("offset", 1 << 40), ("offset", 0)])
def test_pack_entry_out_of_bounds_is_a_damaged_pack(scratch, field, value):
    ws = packed_ws(scratch / "ws")
    pack = next((ws / ".rnstore" / "objects" / "pack").glob("*.pack"))

    def change(entries):
        entries[len(entries) // 2][1 if field == "offset" else 2] = value
    rewrite_pack_index(pack, change)
    for args in (["fsck"], ["checkout", "HEAD", "--target", scratch / "t", "-q"],
                 ["export", "HEAD", "-o", scratch / "x.tar"]):
        proc = hostile(args, ws, preexec_fn=limit_memory)
        assert proc.returncode == 1 and "internal error" not in proc.stderr, (args, proc.stderr)
    problems = fsck_problems(ws)
    assert any(p["id"] == pack.name and "bounds" in p["detail"] for p in problems), problems


def test_intact_second_copy_is_used(scratch):
    ws = packed_ws(scratch / "ws")
    repo = repo_of(ws)
    pack = next((ws / ".rnstore" / "objects" / "pack").glob("*.pack"))
    blob = repo.store.put("blob", b"file 5\n")
    frame = repo.store._pack_of(blob).read(bytes.fromhex(blob))
    repo.store._put_loose(blob, frame)  # a second, intact copy (as a racing writer leaves)
    # damage the packed copy: its last byte (the hash check catches it)
    data = bytearray(pack.read_bytes())
    raw = bytes.fromhex(blob)
    offset, count, _, _ = _TRAILER.unpack_from(data, len(data) - _TRAILER.size)
    for i in range(count):
        oid, at, length = _ENTRY.unpack_from(data, offset + i * _ENTRY.size)
        if oid == raw:
            data[at + length - 1] ^= 0x55
    pack.write_bytes(bytes(data))
    assert out(["cat-file", "-p", blob], ws) == "file 5"
    ok(["checkout", "HEAD", "--target", scratch / "t", "-q"], ws)
    assert (scratch / "t" / "d5" / "f005.txt").read_bytes() == b"file 5\n"
    ok(["export", "HEAD", "-o", scratch / "x.tar", "-q"], ws)
    problems = fsck_problems(ws)
    assert [p["id"] for p in problems] == [blob], problems
    assert "intact copy" in problems[0]["detail"], problems
    # the pack first, then a loose copy first
    repo.store.path_for(blob).write_bytes(b"garbage")
    (ws / "d5" / "f005.txt").unlink()
    proc = hostile(["checkout", "-q", "HEAD", "--", "d5/f005.txt"], ws)
    assert proc.returncode == 1  # both copies damaged now: refused, nothing written
    assert not (ws / "d5" / "f005.txt").exists()


# -- smaller ----------------------------------------------------------------------------------


def craft_snapshot(ws: Path, entries: list[tuple[bytes, str, bytes | None, int | None, str | None]],
                   tag: str = "evil") -> str:
    """A snapshot of a crafted root tree: (name, mode, blob bytes, size or
    None for the true size, id or None for the blob's)."""
    from rnstore.objects import Snapshot, TreeEntry, encode_tree_unchecked
    repo = repo_of(ws)
    tree_entries = []
    for name, mode, data, size, oid in entries:
        if oid is None:
            oid = repo.store.put("blob", data)
        tree_entries.append(TreeEntry(name, mode, oid, len(data) if size is None else size))
    tree_entries.sort(key=lambda e: e.name)
    tree = repo.store.put("tree", encode_tree_unchecked(tree_entries))
    snap = repo.store.put_snapshot(Snapshot(tree, (), "2024-01-01T00:00:00.000000Z", "evil", {}))
    repo.refs.update(f"refs/tags/{tag}", snap)
    return snap


def test_export_refuses_hostile_link_targets(scratch):
    ws = small_ws(scratch / "ws")
    for number, target in enumerate([b"a\0b", b"", b"x" * 70_000]):
        craft_snapshot(ws, [(b"ok.txt", "100644", b"ok\n", None, None),
                            (b"link", "120000", target, None, None)], tag=f"evil{number}")
        for fmt in ("tar", "zip", "dir"):
            output = scratch / (f"out{number}" if fmt == "dir" else f"out{number}.{fmt}")
            proc = hostile(["export", f"evil{number}", "-o", output, "--format", fmt], ws)
            assert proc.returncode == 1 and "link" in proc.stderr, (fmt, target[:10], proc.stderr)
            assert len(proc.stderr) < 2000, len(proc.stderr)
            assert not output.exists() or fmt == "dir" and not any(output.iterdir())
        proc = hostile(["checkout", f"evil{number}", "--target", scratch / "t"], ws)
        assert proc.returncode == 1 and len(proc.stderr) < 2000, proc.stderr


@pytest.mark.parametrize("mode,data", [("100644", b"twelve bytes"), ("120000", b"target")])
def test_tree_size_that_disagrees_with_its_blob_is_refused(scratch, mode, data):
    ws = small_ws(scratch / "ws")
    craft_snapshot(ws, [(b"f", mode, data, len(data) + 5, None)])
    for args in (["checkout", "evil", "--target", scratch / "t"],
                 ["export", "evil", "-o", scratch / "x.tar"],
                 ["export", "evil", "-o", scratch / "x.zip"]):
        proc = hostile(args, ws)
        assert proc.returncode == 1 and "size" in proc.stderr, (args, proc.stderr)
    assert not (scratch / "t" / "f").exists() and not (scratch / "x.tar").exists()
    assert any("records" in p["detail"] for p in fsck_problems(ws))


@pytest.mark.parametrize("case", ["head-at-tree", "tag-at-tree", "tag-at-blob"])
def test_roots_naming_a_tree_or_blob_are_reported(scratch, case):
    ws = small_ws(scratch / "ws")
    repo = repo_of(ws)
    tree = repo.store.get_snapshot(repo.refs.resolve("HEAD")).tree
    blob = repo.store.put("blob", b"alpha\n")
    if case == "head-at-tree":
        (ws / ".rnstore" / "HEAD").write_text(tree + "\n")
        name = "HEAD"
    else:
        (ws / ".rnstore" / "refs" / "tags" / "bad").write_text((tree if case == "tag-at-tree" else blob) + "\n")
        name = "refs/tags/bad"
    problems = fsck_problems(ws)
    assert any(name in p["detail"] and "not a snapshot" in p["detail"] for p in problems), problems
    proc = hostile(["gc", "--prune", "now"], ws)
    assert proc.returncode == 1, proc.stderr


@pytest.mark.parametrize("first,second", [("clash", "clash/b"), ("clash/b", "clash")])
def test_ref_name_clash_is_bad_usage(scratch, first, second):
    ws = small_ws(scratch / "ws")
    ok(["tag", first], ws)
    proc = hostile(["tag", second], ws, expect=2)
    assert "clash" in proc.stderr and "Not a directory" not in proc.stderr, proc.stderr
    proc = hostile(["update-ref", f"refs/tags/{second}", "HEAD"], ws, expect=2)
    assert out(["rev-parse", first], ws) == out(["rev-parse", "HEAD"], ws)


@pytest.mark.parametrize("folder", ["refs/tags", "refs/heads", "snapshots", "refs"])
def test_symlinks_inside_the_dotdir_are_refused(scratch, folder):
    ws = small_ws(scratch / "ws")
    elsewhere = scratch / "elsewhere"
    moved = ws / ".rnstore" / folder
    shutil.copytree(moved, elsewhere, symlinks=True)
    shutil.rmtree(moved)
    os.symlink(elsewhere, moved)
    before = manifest(elsewhere, skip=())
    (ws / "a.txt").write_bytes(b"changed\n")
    writers = {"refs/tags": [["tag", "newtag"]], "snapshots": [["commit", "-a", "-q", "-m", "x"]],
               "refs/heads": [["commit", "-a", "-q", "-m", "x"], ["update-ref", "refs/heads/b", "HEAD"]],
               "refs": [["tag", "newtag"], ["commit", "-a", "-q", "-m", "x"]]}[folder]
    for args in writers:  # each command that would write there
        proc = hostile(args, ws)
        assert proc.returncode == 1 and "symlink" in proc.stderr, (args, proc.stderr)
    assert manifest(elsewhere, skip=()) == before


def test_a_second_init_keeps_the_store_marker(scratch):
    """write_new_file removed an existing file when it found one in its way:
    the second `init --objects` deleted the store's marker."""
    store = scratch / "store"
    for name in ("one", "two"):
        init(scratch / name, "--objects", str(store))
        assert (store / "rnstore-store").read_text().startswith("rnstore object store")


# -- 8. a checkout cut short by a read-only folder ---------------------------------------------


def _two_snapshots(ws: Path) -> tuple[str, str, dict, dict]:
    for folder in ("aa", "bb"):
        (ws / folder).mkdir(parents=True)
        for i in range(3):
            (ws / folder / f"f{i}.txt").write_bytes(b"one %s %d\n" % (folder.encode(), i))
    init(ws)
    first = commit(ws, "one")
    before = manifest(ws)
    for folder in ("aa", "bb"):
        for i in range(3):
            (ws / folder / f"f{i}.txt").write_bytes(b"two %s %d\n" % (folder.encode(), i))
    (ws / "bb" / "new.txt").write_bytes(b"new\n")
    second = commit(ws, "two")
    after = manifest(ws)
    ok(["checkout", "-q", first], ws)
    return first, second, before, after


def test_checkout_into_a_read_only_folder_changes_nothing(team, scratch):
    ws = scratch / "ws"
    first, second, before, after = _two_snapshots(ws)
    subprocess.run(["chown", "-R", f"{ALICE}:{ALICE}", str(ws)], check=True)
    (ws / "bb").chmod(0o555)
    proc = as_user(ALICE, ["checkout", "-q", second], ws)
    assert proc.returncode == 1, proc.stderr
    assert "'bb/'" in proc.stderr and "not writable" in proc.stderr, proc.stderr
    assert manifest(ws) == before
    assert out(["rev-parse", "HEAD"], ws) == first
    assert as_user(ALICE, ["status", "--porcelain"], ws, expect=0).stdout == b""
    # the same for the paths form and a target folder
    proc = as_user(ALICE, ["checkout", "-q", second, "--", "."], ws)
    assert proc.returncode == 1 and "'bb/'" in proc.stderr, proc.stderr
    assert manifest(ws) == before
    (ws / "bb").chmod(0o755)
    as_user(ALICE, ["checkout", "-q", second], ws, expect=0)
    assert manifest(ws) == after


def test_checkout_whose_write_fails_midway_ends_consistent(scratch, monkeypatch):
    """A write that fails after the writability check (the permissions
    changed since): the others are written, HEAD and the index move, the
    error names the path (not a descriptor number), status shows it."""
    from rnstore import Repository, checkout as checkout_module
    from rnstore.errors import NotWritableError
    ws = scratch / "ws"
    first, second, before, after = _two_snapshots(ws)
    real_place = checkout_module.place

    def place_failing_once(stage_fd, staged, parent_fd, name):
        if name == b"f1.txt" and os.readlink(f"/proc/self/fd/{parent_fd}").endswith("/bb"):
            raise PermissionError(13, "Permission denied", staged.decode())
        return real_place(stage_fd, staged, parent_fd, name)

    monkeypatch.setattr(checkout_module, "place", place_failing_once)
    repo = Repository.open(ws)
    with pytest.raises(NotWritableError) as caught:
        repo.checkout(second)
    monkeypatch.undo()
    message = str(caught.value)
    assert "'bb/f1.txt' (Permission denied)" in message and ": 3" not in message, message
    assert out(["rev-parse", "HEAD"], ws) == second
    assert ok(["status", "--porcelain"], ws).stdout == b" M bb/f1.txt\n"
    expected = dict(after, **{"bb/f1.txt": before["bb/f1.txt"]})
    assert manifest(ws) == expected
    ok(["checkout", "-q", "--force", "HEAD", "--", "bb/f1.txt"], ws)
    assert manifest(ws) == after
