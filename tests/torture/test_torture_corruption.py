"""Damage on disk: flipped bytes, truncated, missing and wrong objects, a
corrupt tree, snapshot, index, ref or journal entry.

For each kind of damage, in a fresh copy of one workspace:

- `fsck` names it (missing / hash mismatch / corrupt) and exits 1;
- `checkout --target`, a workspace checkout, `export` and `cat-file`/`show`
  fail with exit 1 and an `error:` naming the paths or objects, and never
  write wrong bytes (every file in the target is right or absent; stdout of
  cat-file is empty; no archive is left);
- `gc --prune now` refuses to delete anything while a root is unreadable
  (exit 1, the object files unchanged), and never deletes what is
  reachable.

The store holds some garbage (a forgotten snapshot), so a gc that did not
refuse would have something to delete.
"""

from __future__ import annotations

import hashlib
import os
import random
from pathlib import Path

import pytest

from helpers.torture import (STATS, commit, copy_tree, fsck_problems, init, make_tree, manifest, ok,
                             out, run, temp_leftovers)

pytestmark = pytest.mark.torture

#: Larger than store.BUFFERED_BLOB (16 MiB): streamed, verified in a first pass.
LARGE = 17 << 20
#: Larger than store.SMALL_FILE (4 MiB), smaller than BUFFERED_BLOB.
MEDIUM = 5 << 20


def build_template(ws: Path, scratch: Path, big: bool, files: int = 40) -> dict:
    """A workspace with snapshots S1 and S (HEAD, tagged v1), a tiny
    snapshot E (tagged e) and a forgotten snapshot (garbage). With `big`,
    also a medium and a large file. With `files` over the pack threshold,
    S1's blobs and trees are packed. Returns ids and manifests."""
    rng = random.Random(7)
    make_tree(ws / "src", files, seed=8)
    (ws / "src" / "deeper").mkdir()
    (ws / "src" / "deeper" / "leaf.txt").write_bytes(b"a leaf\n" * 10)
    (ws / "top.txt").write_bytes(b"top level file\n")
    if big:
        (ws / "medium.bin").write_bytes(rng.randbytes(MEDIUM))
        (ws / "large.bin").write_bytes(rng.randbytes(LARGE))
    init(ws)
    first = commit(ws, "S1")
    man_first = manifest(ws)
    (ws / "garbage.bin").write_bytes(rng.randbytes(5000))
    garbage = commit(ws, "garbage")
    (ws / "garbage.bin").unlink()
    (ws / "top.txt").write_bytes(b"top level file, changed\n")
    snap = commit(ws, "S")
    ok(["forget", garbage, "-q"], ws)
    ok(["tag", "v1", snap], ws)
    # a tiny snapshot E (tag "e"): a workspace at E must write all of S to get there
    (scratch / "keep.txt").write_bytes(b"keep\n")
    blob = out(["hash-object", "-w", scratch / "keep.txt"], ws)
    tree_e = out(["mktree"], ws, input=f"100644 blob {blob}\tkeep.txt\n".encode())
    small_snap = out(["commit-tree", tree_e, "-m", "E"], ws)
    ok(["tag", "e", small_snap], ws)
    from rnstore.repo import Repository
    from rnstore.trees import lookup
    repo = Repository.open(ws)
    tree = repo.store.get_snapshot(snap).tree

    def at(path: str) -> tuple[str, str]:
        return path, lookup(repo.store, tree, path.encode()).id
    empty = hashlib.sha256(b"").hexdigest()
    small = sorted(p for p, e in manifest(ws / "src").items() if e[0] == "file" and e[2] != empty)[0]
    found = {
        "ws": ws, "snap": snap, "first": first, "man": manifest(ws), "man_first": man_first,
        "small": at("src/" + small), "subtree": at("src/deeper"), "srctree": at("src"),
        "top": at("top.txt"),
    }
    if big:
        found.update(medium=at("medium.bin"), large=at("large.bin"))
    return found


@pytest.fixture(scope="module")
def template(session_scratch) -> dict:
    return build_template(session_scratch / "corruption-template", session_scratch, big=False)


@pytest.fixture(scope="module")
def big_template(session_scratch) -> dict:
    return build_template(session_scratch / "corruption-big-template", session_scratch, big=True)


def object_path(ws: Path, oid: str) -> Path:
    return ws / ".rnstore" / "objects" / oid[:2] / oid[2:]


def object_files(ws: Path) -> dict[str, str]:
    """Every file below objects/ with the SHA-256 of its bytes."""
    root = ws / ".rnstore" / "objects"
    found = {}
    for folder, _, files in os.walk(root):
        for name in files:
            path = os.path.join(folder, name)
            with open(path, "rb") as fh:
                found[os.path.relpath(path, root)] = hashlib.sha256(fh.read()).hexdigest()
    return found


def flip(path: Path, where: float = 0.5) -> None:
    data = bytearray(path.read_bytes())
    position = min(len(data) - 1, max(0, int(len(data) * where)))
    data[position] ^= 0x5A
    path.chmod(0o644)
    path.write_bytes(bytes(data))


def frame_of(kind: str, payload: bytes) -> bytes:
    """A valid stored frame (what the store would write) of `payload`."""
    from rnstore import codec
    return codec.compress(kind, payload, 3)


@pytest.fixture(scope="module")
def packed_template(session_scratch) -> dict:
    return build_template(session_scratch / "corruption-packed-template", session_scratch,
                          big=False, files=120)


@pytest.fixture
def damaged(template, scratch):
    """A fresh copy of the template workspace, without the reachability
    cache: its checked copies of the trees and snapshots commit wrote would
    stand in for a damaged one (test_reachcache.py covers that)."""
    ws = copy_tree(template["ws"], scratch / "ws")
    (ws / ".rnstore" / "reachability-cache").unlink(missing_ok=True)
    return ws


@pytest.fixture
def big_damaged(big_template, scratch):
    ws = copy_tree(big_template["ws"], scratch / "ws")
    (ws / ".rnstore" / "reachability-cache").unlink(missing_ok=True)
    return ws


def assert_target_never_wrong(target: Path, expected: dict) -> None:
    """Whatever a failed checkout left in `target` is right: each entry is
    the snapshot's, nothing else, no temporary files."""
    if not target.exists():
        return
    assert not temp_leftovers(target), temp_leftovers(target)
    for path, entry in manifest(target).items():
        if entry[0] == "dir":
            continue
        assert expected.get(path) == entry, f"{path} was written wrong: {entry} != {expected.get(path)}"


def assert_names(stderr: str, *names: str) -> None:
    assert "error:" in stderr, stderr
    assert any(name and name in stderr for name in names), f"none of {names} named in:\n{stderr}"


def check_readers_fail(ws: Path, template: dict, scratch: Path, names: tuple[str, ...],
                       paths_for_show: list[str] = (), stream: bool = False) -> None:
    """checkout --target / workspace checkout / export / show of the damaged
    snapshot fail with exit 1 naming the damage and write nothing wrong."""
    snap, expected = template["snap"], template["man"]
    target = scratch / "target"
    proc = run(["checkout", snap, "--target", target, "-q"], ws, expect=1)
    assert_names(proc.stderr, *names)
    assert_target_never_wrong(target, expected)
    STATS["hostile.reader_refusals"] += 1

    # the workspace: move to E first (undamaged, tiny), then back to the damaged S
    ok(["checkout", "-q", "--force", "e"], ws)
    before = manifest(ws)
    proc = run(["checkout", "-q", snap], ws, expect=1)
    assert_names(proc.stderr, *names)
    assert manifest(ws) == before, "a failed checkout changed the workspace"
    assert not temp_leftovers(ws), temp_leftovers(ws)

    for name in ("out.tar.zst",):
        output = scratch / name
        proc = run(["export", snap, "-o", output, "-q"], ws, expect=1)
        assert_names(proc.stderr, *names)
        assert not output.exists(), f"export left {output}"
        assert not [p for p in scratch.iterdir() if p.name.startswith(".tmp-")]
    if stream:
        proc = run(["export", snap, "-o", "-", "-q"], ws, expect=1)
        assert_names(proc.stderr, *names)

    for path in paths_for_show:
        proc = run(["show", f"{snap}:{path}"], ws, expect=1)
        assert proc.stdout == b"", "show printed bytes of a damaged object"
        assert_names(proc.stderr, path, *names)


def check_gc_refuses(ws: Path) -> None:
    before = object_files(ws)
    proc = run(["gc", "--prune", "now", "-q"], ws, expect=1)
    assert "error:" in proc.stderr
    assert object_files(ws) == before, "gc changed the store while a root was unreadable"


def check_gc_keeps_reachable(ws: Path, damaged_oid: str, problems: list[dict]) -> None:
    """A damaged blob hides nothing: gc may run, but must not delete it or
    anything reachable (fsck then reports the same damage, nothing more)."""
    before = {p["id"] for p in problems}
    proc = run(["gc", "--prune", "now", "-q"], ws)
    assert proc.returncode in (0, 1), proc.stderr
    after = {p["id"] for p in fsck_problems(ws)}
    assert after == before, (before, after)
    if proc.returncode == 0:
        assert object_path(ws, damaged_oid).exists() or damaged_oid in after


def fsck_names(ws: Path, oid: str, kinds: set[str]) -> list[dict]:
    problems = fsck_problems(ws)
    ours = [p for p in problems if p["id"] == oid]
    assert ours, f"fsck does not name {oid}: {problems}"
    assert ours[0]["kind"] in kinds, ours
    return problems


# -- blobs ----------------------------------------------------------------------------------


BLOB_DAMAGE = {
    "flipped byte": lambda path, other: flip(path),
    "truncated": lambda path, other: (path.chmod(0o644), path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])),
    "missing": lambda path, other: path.unlink(),
    "wrong object": lambda path, other: (path.chmod(0o644), path.write_bytes(other)),
    "flipped byte near the end": lambda path, other: flip(path, 0.97),
    "empty file": lambda path, other: (path.chmod(0o644), path.write_bytes(b"")),
}
EXPECTED_KIND = {"flipped byte": {"corrupt", "hash mismatch"}, "truncated": {"corrupt"},
                 "missing": {"missing"}, "wrong object": {"hash mismatch"},
                 "flipped byte near the end": {"corrupt", "hash mismatch"}, "empty file": {"corrupt"}}


def blob_case(ws: Path, template: dict, scratch: Path, which: str, damage: str) -> None:
    path, oid = template[which]
    size = {"small": 100, "medium": MEDIUM, "large": LARGE}[which]
    other = frame_of("blob", random.Random(1).randbytes(size))  # a valid frame, other content
    BLOB_DAMAGE[damage](object_path(ws, oid), other)
    STATS["corrupt.objects"] += 1

    problems = fsck_names(ws, oid, EXPECTED_KIND[damage])
    check_readers_fail(ws, template, scratch, (path, oid[:12]), [path], stream=which != "small")
    proc = run(["cat-file", "blob", oid], ws, expect={1} if damage != "missing" else {1, 2})
    assert proc.stdout == b"", "cat-file printed bytes of a damaged object"
    assert "error:" in proc.stderr
    check_gc_keeps_reachable(ws, oid, problems)


@pytest.mark.parametrize("damage", list(BLOB_DAMAGE))
def test_damaged_blob(damaged, template, scratch, damage):
    blob_case(damaged, template, scratch, "small", damage)


@pytest.mark.parametrize("which,damage", [
    ("medium", "flipped byte near the end"),
    ("large", "flipped byte near the end"),
    ("large", "wrong object"),
    ("large", "truncated"),
])
def test_damaged_large_blob(big_damaged, big_template, scratch, which, damage):
    """Blobs streamed in chunks (over 4 MiB, over 16 MiB): the damage shows
    only at the end, after bytes were written; nothing may stay written."""
    blob_case(big_damaged, big_template, scratch, which, damage)


# -- trees and snapshots -------------------------------------------------------------------


def _other_tree(template) -> bytes:
    from rnstore.objects import EMPTY_TREE_ID, Tree, TreeEntry
    tree = Tree.from_entries([TreeEntry(b"impostor", "040000", EMPTY_TREE_ID, 0)])
    return frame_of("tree", tree.encode())


TREE_DAMAGE = {
    "flipped byte": (lambda path, t: flip(path), {"corrupt", "hash mismatch"}),
    "truncated": (lambda path, t: (path.chmod(0o644), path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])),
                  {"corrupt"}),
    "missing": (lambda path, t: path.unlink(), {"missing"}),
    "wrong object": (lambda path, t: (path.chmod(0o644), path.write_bytes(_other_tree(t))), {"hash mismatch"}),
    "not a tree": (lambda path, t: (path.chmod(0o644), path.write_bytes(frame_of("tree", b"rntree 1\nbogus"))),
                   {"hash mismatch", "corrupt"}),
}


@pytest.mark.parametrize("which,damage", [(w, d) for d in TREE_DAMAGE for w in ("subtree", "srctree")
                                          if w == "subtree" or d in ("flipped byte", "missing")])
def test_damaged_tree(damaged, template, scratch, which, damage):
    ws = damaged
    path, oid = template[which]
    apply, kinds = TREE_DAMAGE[damage]
    apply(object_path(ws, oid), template)
    STATS["corrupt.objects"] += 1
    fsck_names(ws, oid, kinds)
    check_readers_fail(ws, template, scratch, (path, oid[:12], oid))
    proc = run(["ls-tree", "-r", template["snap"]], ws, expect=1)
    assert "error:" in proc.stderr
    check_gc_refuses(ws)


SNAPSHOT_DAMAGE = {
    "flipped byte": (lambda path: flip(path), {"corrupt", "hash mismatch"}),
    "truncated": (lambda path: (path.chmod(0o644), path.write_bytes(path.read_bytes()[:10])), {"corrupt"}),
    "missing": (lambda path: path.unlink(), {"missing"}),
    "wrong object": (lambda path: (path.chmod(0o644), path.write_bytes(frame_of(
        "snapshot", b'rnsnapshot 1\n{"meta":{},"message":"impostor","parents":[],'
                    b'"time":"2020-01-01T00:00:00.000000Z","tree":"' + b"0" * 64 + b'"}\n'))),
        {"hash mismatch"}),
    "not canonical": (lambda path: (path.chmod(0o644), path.write_bytes(frame_of(
        "snapshot", b'rnsnapshot 1\n{"tree": 1}\n'))), {"hash mismatch", "corrupt"}),
}


@pytest.mark.parametrize("damage", list(SNAPSHOT_DAMAGE))
def test_damaged_snapshot(damaged, template, scratch, damage):
    ws = damaged
    snap = template["snap"]
    apply, kinds = SNAPSHOT_DAMAGE[damage]
    apply(object_path(ws, snap))
    STATS["corrupt.objects"] += 1
    fsck_names(ws, snap, kinds)
    target = scratch / "target"
    proc = run(["checkout", snap, "--target", target, "-q"], ws)
    assert proc.returncode in (1, 2) if damage == "missing" else proc.returncode == 1, proc.stderr
    assert_names(proc.stderr, snap[:12], snap)
    assert not target.exists() or not manifest(target), "a damaged snapshot wrote files"
    proc = run(["export", "v1", "-o", scratch / "out.tar", "-q"], ws, expect=1)
    assert_names(proc.stderr, snap[:12], snap)
    assert not (scratch / "out.tar").exists()
    proc = run(["cat-file", "-p", "v1"], ws, expect=1)
    assert proc.stdout == b""
    proc = run(["status"], ws, expect=1)  # HEAD's snapshot cannot be read
    assert_names(proc.stderr, snap[:12], snap)
    check_gc_refuses(ws)


# -- roots: index, refs, journal ----------------------------------------------------------


def test_corrupt_index(damaged, template, scratch):
    ws = damaged
    index = ws / ".rnstore" / "index"
    data = bytearray(index.read_bytes())
    data[len(data) // 2] ^= 0x20
    index.write_bytes(bytes(data))
    STATS["corrupt.objects"] += 1
    problems = fsck_problems(ws)
    assert any(p["kind"] == "corrupt" and "index" in p["id"] for p in problems), problems
    proc = run(["status"], ws, expect=1)
    assert_names(proc.stderr, "index")
    proc = run(["commit", "-a", "-m", "x"], ws, expect=1)
    assert_names(proc.stderr, "index")
    check_gc_refuses(ws)
    # a snapshot still checks out into a folder: the index is not needed
    target = scratch / "target"
    ok(["checkout", template["snap"], "--target", target, "-q"], ws)
    assert manifest(target) == template["man"]
    # and the way out the hint names works
    ok(["read-tree", "HEAD"], ws)
    assert not fsck_problems(ws)


def test_truncated_index(damaged, template):
    ws = damaged
    index = ws / ".rnstore" / "index"
    index.write_bytes(index.read_bytes()[:50])
    STATS["corrupt.objects"] += 1
    assert any("index" in p["id"] for p in fsck_problems(ws))
    proc = run(["status"], ws, expect=1)
    assert_names(proc.stderr, "index")
    check_gc_refuses(ws)


@pytest.mark.parametrize("content", [b"not an id\n", b"", b"0" * 63 + b"\n",
                                     pytest.param(b"\xff\xfe\n", id="not-utf8")])
def test_broken_ref(damaged, template, scratch, content):
    ws = damaged
    (ws / ".rnstore" / "refs" / "tags" / "v1").write_bytes(content)
    STATS["corrupt.objects"] += 1
    problems = fsck_problems(ws)
    assert any("refs/tags/v1" in p["id"] for p in problems), problems
    check_gc_refuses(ws)
    proc = run(["checkout", "v1", "--target", scratch / "t", "-q"], ws)
    assert proc.returncode in (1, 2), proc.stderr
    assert "error:" in proc.stderr
    proc = run(["log", "--all", "--oneline"], ws)
    assert proc.returncode in (0, 1) and "internal error" not in proc.stderr, proc.stderr


@pytest.mark.parametrize("content", [
    b"garbage\n", b"",
    pytest.param(b"ref: refs/heads/../../evil\n", id="invalid-ref-name"),
    pytest.param(b"\xff\xfe\n", id="not-utf8")])
def test_broken_head(damaged, template, content):
    """HEAD that cannot be read is a corrupt root: fsck lists it (exit 1),
    gc refuses (exit 1, store unchanged), status fails with an error."""
    ws = damaged
    (ws / ".rnstore" / "HEAD").write_bytes(content)
    STATS["corrupt.objects"] += 1
    problems = fsck_problems(ws)
    assert any("HEAD" in p["id"] for p in problems), problems
    proc = run(["status"], ws)
    assert proc.returncode in (1, 2) and "error:" in proc.stderr, proc.stderr
    assert "internal error" not in proc.stderr, proc.stderr
    check_gc_refuses(ws)


def test_journal_names_missing_snapshot(damaged, template):
    ws = damaged
    ghost = hashlib.sha256(b"ghost").hexdigest()
    (ws / ".rnstore" / "snapshots" / ghost).write_bytes(b"")
    STATS["corrupt.objects"] += 1
    problems = fsck_problems(ws)
    assert any(p["id"] == ghost and p["kind"] == "missing" for p in problems), problems
    check_gc_refuses(ws)


def test_object_file_with_a_bad_name(damaged, template):
    """A stray file in a fan-out folder is reported, never deleted by gc as
    an object, and does not stop readers."""
    ws = damaged
    stray = ws / ".rnstore" / "objects" / "ab" / "not-an-object"
    stray.parent.mkdir(exist_ok=True)
    stray.write_bytes(b"hello")
    STATS["corrupt.objects"] += 1
    ok(["gc", "--prune", "now", "-q"], ws)
    assert stray.exists()
    assert not fsck_problems(ws) or all("not-an-object" not in p["id"] or p["kind"] == "corrupt"
                                        for p in fsck_problems(ws))


def test_damage_in_garbage_only_is_dangling(damaged, template):
    """Damage in an object no root reaches is no reason to refuse gc: gc
    deletes it."""
    ws = damaged
    from rnstore.repo import Repository
    from rnstore.fsck import fsck
    dangling = [p.id for p in fsck(Repository.open(ws)).problems if p.kind == "dangling"]
    assert dangling
    victim = object_path(ws, dangling[0])
    flip(victim)
    STATS["corrupt.objects"] += 1
    ok(["gc", "--prune", "now", "-q"], ws)
    assert not victim.exists()
    assert not fsck_problems(ws)


# -- packs ----------------------------------------------------------------------------------

def the_pack(ws: Path) -> Path:
    [pack] = (ws / ".rnstore" / "objects" / "pack").glob("*.pack")
    return pack


def test_damaged_frame_inside_a_pack(packed_template, scratch):
    """A packed blob damaged in place is that blob's problem only: named by
    fsck and every reader, never written out, kept by gc."""
    ws = copy_tree(packed_template["ws"], scratch / "ws")
    path, oid = packed_template["small"]
    from rnstore.store import DiskStore
    store = DiskStore(ws / ".rnstore" / "objects")
    assert store.file_of(oid) == the_pack(ws)
    frame = store._find_pack(oid).read(bytes.fromhex(oid))
    pack = the_pack(ws)
    data = bytearray(pack.read_bytes())
    data[data.index(frame) + len(frame) // 2] ^= 0x5A
    pack.write_bytes(bytes(data))
    STATS["corrupt.objects"] += 1
    problems = fsck_names(ws, oid, {"corrupt", "hash mismatch"})
    check_readers_fail(ws, packed_template, scratch, (path, oid[:12]), [path])
    check_gc_keeps_reachable(ws, oid, problems)


@pytest.mark.parametrize("damage", ["flipped index byte", "truncated", "empty", "trailer"])
def test_damaged_pack_index(packed_template, scratch, damage):
    """A pack whose index cannot be trusted is not read at all: fsck names
    the pack, readers fail naming what they miss, gc deletes nothing."""
    ws = copy_tree(packed_template["ws"], scratch / "ws")
    pack = the_pack(ws)
    data = pack.read_bytes()
    if damage == "flipped index byte":
        data = data[:-80] + bytes([data[-80] ^ 0x5A]) + data[-79:]
    elif damage == "truncated":
        data = data[: len(data) * 2 // 3]
    elif damage == "empty":
        data = b""
    else:
        data = data[:-1] + b"X"
    pack.write_bytes(data)
    STATS["corrupt.objects"] += 1
    problems = fsck_problems(ws)
    assert any(p["id"] == pack.name and p["kind"] == "corrupt" for p in problems), problems
    # the src folder's tree was packed with its files: readers name the folder
    src, tree = packed_template["srctree"]
    check_readers_fail(ws, packed_template, scratch, (f"'{src}'", tree[:12]), [packed_template["small"][0]])
    check_gc_refuses(ws)
