"""Hostile input: crafted trees, symlink tricks, decompression bombs.

Trees are crafted with the library's own encoder, bypassing validation
(`rnstore.objects.encode_tree_unchecked`), stored as tree objects with
`store.put("tree", payload)` and made reachable by a snapshot tagged
`evil`. Whatever they hold, nothing may be written outside the target
folder, and every command refuses them with exit 1 and an `error:` line.

Symlink tricks: a snapshot with `link -> OUTSIDE` checked out before one
where `link` is a folder holding `passwd`; symlinks planted in a target
folder or a workspace where the snapshot has a folder or a file.

Bombs: a zstd frame whose object header says 10 bytes and which inflates
to 1 GiB of zeros (hand-made from RLE blocks, 32 KiB on disk), with and
without a frame content size; objects whose headers claim huge sizes.
Commands run under an address-space limit (RLIMIT_AS, 600 MB) and must
exit 1 with `error:`, no traceback, no MemoryError.
"""

from __future__ import annotations

import os
import resource
import struct
from pathlib import Path

import pytest

from helpers.torture import (STATS, commit, copy_tree, fsck_problems, init, manifest, ok, run,
                             temp_leftovers)

pytestmark = pytest.mark.torture

MEMORY_LIMIT = 600_000_000


def limit_memory():
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))


@pytest.fixture(scope="module")
def base(session_scratch) -> Path:
    """A workspace with one ordinary snapshot (HEAD)."""
    ws = session_scratch / "hostile-template"
    (ws / "src" / "sub").mkdir(parents=True)
    (ws / "src" / "sub" / "a.txt").write_bytes(b"alpha\n")
    (ws / "src" / "b.txt").write_bytes(b"bravo\n" * 100)
    (ws / "top.txt").write_bytes(b"top\n")
    init(ws)
    commit(ws, "ordinary")
    return ws


@pytest.fixture
def world(base, scratch) -> dict:
    """A copy of the base workspace, an OUTSIDE folder that must never
    change, and a target folder nested a few levels down (so that `..`
    names have somewhere to go that is not outside the scratch folder)."""
    ws = copy_tree(base, scratch / "ws")
    # without the reachability cache: its checked copies of the trees commit
    # wrote would stand in for a damaged one (test_reachcache.py covers that)
    (ws / ".rnstore" / "reachability-cache").unlink(missing_ok=True)
    outside = scratch / "outside"
    outside.mkdir()
    (outside / "victim.txt").write_bytes(b"victim\n")
    target = scratch / "t1" / "t2" / "target"
    target.parent.mkdir(parents=True)
    return {"ws": ws, "outside": outside, "target": target, "scratch": scratch}


def everything_but(world: dict, *exclude: Path) -> dict:
    """A manifest of the whole scratch folder minus the excluded folders:
    what a command must not change outside its target."""
    result = {}
    excluded = {os.fspath(p) for p in exclude}
    root = world["scratch"]
    for folder, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if os.path.join(folder, d) not in excluded]
        for name in files + [d for d in dirs if os.path.islink(os.path.join(folder, d))]:
            path = os.path.join(folder, name)
            st = os.lstat(path)
            result[os.path.relpath(path, root)] = (st.st_mode, st.st_size, os.readlink(path)
                                                   if os.path.islink(path) else open(path, "rb").read())
    return result


def snapshot_of_tree(ws: Path, tree_id: str, tag: str = "evil") -> str:
    """A live snapshot of a (crafted) tree, tagged `tag`, made through the library."""
    from rnstore.objects import Snapshot
    from rnstore.plumbing import utc_now
    from rnstore.repo import Repository
    repo = Repository.open(ws)
    snap = repo.store.put_snapshot(Snapshot(tree_id, (), utc_now(), "evil", {}))
    repo.journal.add(snap)
    repo.refs.update(f"refs/tags/{tag}", snap)
    return snap


def craft(ws: Path, entries: list[tuple[bytes, str, str | bytes, int | None]]) -> str:
    """Store a tree of raw entries (name, mode, id-or-content, size),
    unvalidated. Content bytes are stored as a blob first."""
    from rnstore.objects import TreeEntry, encode_tree_unchecked
    from rnstore.repo import Repository
    repo = Repository.open(ws)
    raw = []
    for name, mode, what, size in entries:
        if isinstance(what, bytes):
            oid = repo.store.put("blob", what)
            size = len(what) if size is None else size
        else:
            oid = what
        raw.append(TreeEntry(name, mode, oid, size or 0))
    return repo.store.put("tree", encode_tree_unchecked(raw))


def valid_tree(ws: Path, files: dict[bytes, bytes]) -> str:
    from rnstore.objects import Tree, TreeEntry
    from rnstore.repo import Repository
    repo = Repository.open(ws)
    return repo.store.put_tree(Tree.from_entries(
        TreeEntry(n, "100644", repo.store.put("blob", d), len(d)) for n, d in files.items()))


# -- crafted trees ----------------------------------------------------------------------------


def hostile_trees(world: dict) -> dict[str, list]:
    outside = world["outside"]
    pwned = b"pwned\n"
    ws = world["ws"]
    inner = valid_tree(ws, {b"pwned": pwned})
    return {
        "dotdot folder": [(b"..", "040000", inner, 6)],
        "dot folder": [(b".", "040000", inner, 6)],
        "dotdot file": [(b"..", "100644", pwned, None)],
        "slash in name": [(b"a/b", "100644", pwned, None)],
        "parent path in name": [(b"../../pwned", "100644", pwned, None)],
        "absolute name": [(os.fsencode(outside / "pwned"), "100644", pwned, None)],
        "NUL in name": [(b"a\0b", "100644", pwned, None)],
        "empty name": [(b"", "100644", pwned, None)],
        "duplicate names": [(b"x", "100644", pwned, None), (b"x", "100644", b"other", None)],
        "file and folder of one name": [(b"x", "040000", inner, 6), (b"x", "100644", pwned, None)],
        "unsorted": [(b"b", "100644", pwned, None), (b"a", "100644", pwned, None)],
        "unknown mode": [(b"x", "100777", pwned, None)],
        "dotdot below a folder": [(b"sub", "040000", craft(ws, [(b"..", "040000", craft(
            ws, [(b"..", "040000", inner, 6)]), 6)]), 6)],
        "negative size": [(b"x", "100644", pwned, -5)],
    }


HOSTILE_NAMES = ["dotdot folder", "dot folder", "dotdot file", "slash in name", "parent path in name",
                 "absolute name", "NUL in name", "empty name", "duplicate names",
                 "file and folder of one name", "unsorted", "unknown mode", "dotdot below a folder",
                 "negative size"]


@pytest.mark.parametrize("case", HOSTILE_NAMES)
def test_crafted_tree_is_refused(world, case):
    ws, target = world["ws"], world["target"]
    from rnstore.repo import Repository
    base_objects = set(Repository.open(ws).store)
    tree = craft(ws, hostile_trees(world)[case])
    snapshot_of_tree(ws, tree)
    STATS["hostile.inputs"] += 1
    before = everything_but(world, target, ws / ".rnstore")

    proc = run(["checkout", "evil", "--target", target, "-q"], ws, expect=1)
    assert "error:" in proc.stderr and "internal error" not in proc.stderr, proc.stderr
    assert not target.exists() or not manifest(target), manifest(target)
    ws_before = manifest(ws)
    proc = run(["checkout", "-q", "evil"], ws, expect=1)
    assert "error:" in proc.stderr and "internal error" not in proc.stderr, proc.stderr
    assert manifest(ws) == ws_before
    for name in ("out.tar",):
        output = world["scratch"] / name
        proc = run(["export", "evil", "-o", output, "-q"], ws, expect=1)
        assert "error:" in proc.stderr and "internal error" not in proc.stderr, proc.stderr
        assert not output.exists()
    proc = run(["export", "evil", "-o", target, "--format", "dir", "-q"], ws, expect=1)
    assert not target.exists() or not manifest(target), manifest(target)
    problems = fsck_problems(ws)
    from rnstore.repo import Repository
    crafted = {tree} | {oid for oid in Repository.open(ws).store if oid not in base_objects}
    assert any(p["id"] in crafted and p["kind"] == "corrupt" for p in problems), problems
    proc = run(["gc", "--prune", "now", "-q"], ws, expect=1)
    assert "error:" in proc.stderr

    after = everything_but(world, target, ws / ".rnstore", world["scratch"] / "out.tar",
                           world["scratch"] / "out.zip")
    assert after == before, "something was written outside the target"
    assert not any(b"pwned" in os.fsencode(p) for p in after)
    assert not temp_leftovers(ws), temp_leftovers(ws)


def test_rnstore_folder_in_a_tree_is_never_written(world):
    """A tree holding `.rnstore/HEAD` (add never stores one): checkout skips
    it with a warning, in a target and in the workspace."""
    ws, target = world["ws"], world["target"]
    inner = valid_tree(ws, {b"HEAD": b"ref: refs/heads/hijacked\n", b"config": b"{}"})
    from rnstore.repo import Repository
    root = Repository.open(ws).store.get_snapshot(
        Repository.open(ws).refs.head()[1]).tree
    entries = [(e.name, e.mode, e.id, e.size) for e in Repository.open(ws).store.get_tree(root).entries]
    entries.append((b".rnstore", "040000", inner, 30))
    entries.sort(key=lambda e: e[0])
    tree = craft(ws, entries)
    snapshot_of_tree(ws, tree)
    STATS["hostile.inputs"] += 1
    head_before = (ws / ".rnstore" / "HEAD").read_bytes()
    proc = run(["checkout", "evil", "--target", target, "-q"], ws)
    assert proc.returncode in (0, 1), proc.stderr
    assert not (target / ".rnstore").exists()
    proc = run(["checkout", "-q", "--force", "evil"], ws)
    assert proc.returncode in (0, 1), proc.stderr
    head = (ws / ".rnstore" / "HEAD").read_bytes()
    assert b"hijacked" not in head and (head == head_before or proc.returncode == 0)
    assert (ws / ".rnstore" / "config").read_bytes() != b"{}"


def test_deep_tree_fails_cleanly(world):
    """A crafted tree nested 1200 deep (deeper than PATH_MAX allows for its
    paths): every reader that lists its paths refuses it with exit 1 and
    one clean error naming the limit, never an internal error. (export
    walks trees itself and a tar archive can hold such paths: it may write
    one; fsck checks objects, not paths, and finds each one valid.)"""
    ws, target = world["ws"], world["target"]
    tree = valid_tree(ws, {b"f": b"deep\n"})
    for _ in range(1200):
        tree = craft(ws, [(b"ddd", "040000", tree, 5)])
    snapshot_of_tree(ws, tree)
    STATS["hostile.inputs"] += 1
    head_before = (ws / ".rnstore" / "HEAD").read_bytes()
    problems = []
    proc = run(["export", "evil", "-o", world["scratch"] / "deep.tar", "-q"], ws)
    assert proc.returncode in (0, 1) and "internal error" not in proc.stderr, proc.stderr
    for args in (["checkout", "evil", "--target", target, "-q"],
                 ["ls-tree", "-r", "evil"], ["manifest", "evil"], ["diff", "HEAD", "evil", "--name-status"],
                 ["checkout", "-q", "evil"]):
        proc = run(args, ws)
        errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
        if proc.returncode != 1 or len(errors) != 1 or "path of over 4096 bytes" not in errors[0] \
                or "internal error" in proc.stderr:
            problems.append(f"{' '.join(map(str, args))}: exit {proc.returncode}: {proc.stderr.strip()}")
    assert not problems, "\n".join(problems)
    assert (ws / ".rnstore" / "HEAD").read_bytes() == head_before
    assert not (target / "ddd").exists()
    proc = run(["fsck", "-q"], ws)
    assert proc.returncode == 0 and "internal error" not in proc.stderr, proc.stderr


def test_long_name_fails_cleanly(world):
    """A name longer than the file system allows (NAME_MAX 255)."""
    ws, target = world["ws"], world["target"]
    tree = valid_tree(ws, {b"n" * 300: b"long\n"})
    snapshot_of_tree(ws, tree)
    STATS["hostile.inputs"] += 1
    proc = run(["checkout", "evil", "--target", target, "-q"], ws, expect=1)
    assert "error:" in proc.stderr and "internal error" not in proc.stderr, proc.stderr
    assert not temp_leftovers(target.parent)


# -- symlink tricks ------------------------------------------------------------------------


def link_then_folder(world: dict) -> tuple[str, str]:
    """Snapshot A: `link -> OUTSIDE`; snapshot B: `link/` a folder with `passwd`."""
    ws, outside = world["ws"], world["outside"]
    os.symlink(outside, ws / "link")
    snap_a = commit(ws, "A: link to outside")
    (ws / "link").unlink()
    (ws / "link").mkdir()
    (ws / "link" / "passwd").write_bytes(b"root::0:0::/:/bin/sh\n")
    snap_b = commit(ws, "B: link is a folder")
    return snap_a, snap_b


def assert_outside_untouched(world: dict) -> None:
    outside = world["outside"]
    assert sorted(p.name for p in outside.iterdir()) == ["victim.txt"], list(outside.iterdir())
    assert (outside / "victim.txt").read_bytes() == b"victim\n"


def test_symlink_then_folder_in_a_target(world):
    ws, target = world["ws"], world["target"]
    snap_a, snap_b = link_then_folder(world)
    STATS["hostile.inputs"] += 1
    ok(["checkout", snap_a, "--target", target, "-q"], ws)
    assert os.readlink(target / "link") == os.fspath(world["outside"])
    proc = run(["checkout", snap_b, "--target", target, "-q"], ws, expect=1)
    assert "link" in proc.stderr
    assert_outside_untouched(world)
    ok(["checkout", snap_b, "--target", target, "-q", "--force"], ws)
    assert_outside_untouched(world)
    assert not (target / "link").is_symlink()
    assert (target / "link" / "passwd").read_bytes().startswith(b"root::")
    # and back: the folder becomes a link again; nothing follows it
    ok(["checkout", snap_a, "--target", target, "-q", "--force"], ws)
    assert (target / "link").is_symlink()
    assert_outside_untouched(world)


def test_symlink_then_folder_in_the_workspace(world):
    ws = world["ws"]
    snap_a, snap_b = link_then_folder(world)
    STATS["hostile.inputs"] += 1
    for _ in range(2):
        ok(["checkout", "-q", snap_a], ws)
        assert (ws / "link").is_symlink()
        assert_outside_untouched(world)
        ok(["checkout", "-q", snap_b], ws)
        assert not (ws / "link").is_symlink()
        assert (ws / "link" / "passwd").exists()
        assert_outside_untouched(world)


def test_crafted_link_and_folder_in_two_snapshots_restored_by_paths(world):
    """`checkout REV -- link/passwd` while `link` is a symlink to OUTSIDE."""
    ws = world["ws"]
    snap_a, snap_b = link_then_folder(world)
    STATS["hostile.inputs"] += 1
    ok(["checkout", "-q", snap_a], ws)
    proc = run(["checkout", "-q", snap_b, "--", "link/passwd"], ws)
    assert proc.returncode in (0, 1), proc.stderr
    assert_outside_untouched(world)
    proc = run(["checkout", "-q", "--force", snap_b, "--", "link/passwd"], ws)
    assert proc.returncode in (0, 1), proc.stderr
    assert_outside_untouched(world)


@pytest.mark.parametrize("planted", ["src", "src/sub", "top.txt", "src/sub/a.txt"])
def test_planted_symlink_in_target(world, planted):
    """A symlink planted in the target where the snapshot has a folder or a file."""
    ws, target, outside = world["ws"], world["target"], world["outside"]
    target.mkdir()
    link = target / planted
    link.parent.mkdir(parents=True, exist_ok=True)
    os.symlink(outside / "victim.txt" if planted.endswith(".txt") else outside, link)
    STATS["hostile.inputs"] += 1
    proc = run(["checkout", "HEAD", "--target", target, "-q"], ws, expect=1)
    assert "error:" in proc.stderr
    assert_outside_untouched(world)
    assert link.is_symlink(), "a refused checkout changed the target"
    ok(["checkout", "HEAD", "--target", target, "-q", "--force"], ws)
    assert_outside_untouched(world)
    expected = manifest(world["ws"])
    assert manifest(target) == expected


@pytest.mark.parametrize("planted", ["src", "src/sub", "top.txt"])
def test_planted_symlink_in_workspace(world, planted):
    """An untracked symlink in the workspace where the snapshot has a folder
    or a file (it was deleted and replaced by a link)."""
    ws, outside = world["ws"], world["outside"]
    link = ws / planted
    if link.is_dir():
        import shutil
        shutil.rmtree(link)
    else:
        link.unlink()
    os.symlink(outside / "victim.txt" if planted.endswith(".txt") else outside, link)
    STATS["hostile.inputs"] += 1
    proc = run(["checkout", "-q", "HEAD", "--", planted], ws)
    assert proc.returncode in (0, 1), proc.stderr
    assert_outside_untouched(world)
    ok(["checkout", "-q", "--force", "HEAD"], ws)
    assert_outside_untouched(world)
    assert not link.is_symlink()


def test_export_of_links_keeps_them_as_links(world):
    import tarfile
    ws = world["ws"]
    snap_a, _ = link_then_folder(world)
    STATS["hostile.inputs"] += 1
    output = world["scratch"] / "a.tar"
    ok(["export", snap_a, "-o", output, "-q"], ws)
    with tarfile.open(output) as archive:
        member = archive.getmember("link")
        assert member.issym() and member.linkname == os.fspath(world["outside"])
    assert_outside_untouched(world)


# -- bombs ----------------------------------------------------------------------------------


def _block(last: int, kind: int, size: int, payload: bytes) -> bytes:
    return struct.pack("<I", last | (kind << 1) | (size << 3))[:3] + payload


def zstd_bomb(header: bytes, zeros: int, content_size: int | None = None) -> bytes:
    """A zstd frame: one raw block holding `header`, then RLE blocks of
    zeros (128 KiB each, 4 bytes on disk). With `content_size`, the frame
    header declares that size (a lie)."""
    parts = [struct.pack("<I", 0xFD2FB528)]
    if content_size is None:
        parts.append(bytes([0x00, 7 << 3]))  # no content size; window 128 KiB
    else:
        parts.append(bytes([0x80, 7 << 3]) + struct.pack("<I", content_size))
    parts.append(_block(0, 0, len(header), header))
    block = 128 << 10
    count = max(1, zeros // block)
    parts += [_block(1 if i == count - 1 else 0, 1, block, b"\0") for i in range(count)]
    return b"".join(parts)


def plain_frame(header: bytes, body: bytes) -> bytes:
    import zstandard
    return zstandard.ZstdCompressor(write_content_size=False).compress(header + body)


GIB = 1 << 30
BOMBS = {
    "blob says 10 bytes, inflates to 1 GiB": ("blob", lambda: zstd_bomb(b"rn1 blob raw 10\n", GIB)),
    "blob frame declares 26 bytes, inflates to 1 GiB": (
        "blob", lambda: zstd_bomb(b"rn1 blob raw 10\n", GIB, content_size=26)),
    "blob says 1 TiB, holds 5 bytes": ("blob", lambda: plain_frame(b"rn1 blob raw 1099511627776\n", b"12345")),
    "blob says 10^20-1 bytes": ("blob", lambda: plain_frame(b"rn1 blob raw 99999999999999999999\n", b"x")),
    "blob says 1 GiB, inflates to 1 GiB of other bytes": (
        "blob", lambda: zstd_bomb(b"rn1 blob raw %d\n" % GIB, GIB)),
    "tree says 10 bytes, inflates to 1 GiB": ("tree", lambda: zstd_bomb(b"rn1 tree raw 10\n", GIB)),
    "tree says 1 TiB": ("tree", lambda: plain_frame(b"rn1 tree raw 1099511627776\n", b"rntree 1\n")),
    "tree of 1 GiB of zeros under its header": ("tree", lambda: zstd_bomb(b"rn1 tree raw %d\n" % GIB, GIB)),
}


def test_normal_commands_fit_the_memory_limit(base, scratch):
    """The limit the bomb tests use leaves room for ordinary work."""
    ws = copy_tree(base, scratch / "ws")
    for args in (["fsck", "-q"], ["checkout", "HEAD", "--target", scratch / "t", "-q"],
                 ["export", "HEAD", "-o", scratch / "x.tar.zst", "-q"], ["cat-file", "-p", "HEAD:top.txt"]):
        ok(args, ws, preexec_fn=limit_memory)


@pytest.mark.parametrize("bomb", list(BOMBS))
def test_bomb_is_refused_with_bounded_memory(world, bomb):
    from rnstore.repo import Repository
    from rnstore.trees import lookup
    ws, target = world["ws"], world["target"]
    kind, make = BOMBS[bomb]
    repo = Repository.open(ws)
    snap = repo.refs.head()[1]
    tree = repo.store.get_snapshot(snap).tree
    path = "src/sub/a.txt" if kind == "blob" else "src/sub"
    oid = lookup(repo.store, tree, path.encode()).id
    victim = ws / ".rnstore" / "objects" / oid[:2] / oid[2:]
    victim.chmod(0o644)
    victim.write_bytes(make())
    STATS["hostile.inputs"] += 1
    STATS["hostile.bombs"] += 1

    commands = [["checkout", snap, "--target", target, "-q"],
                ["export", snap, "-o", world["scratch"] / "out.tar.zst", "-q"],
                ["export", snap, "-o", "-", "-q"],
                ["fsck", "-q"]]
    if kind == "blob":
        commands += [["cat-file", "blob", oid], ["cat-file", "-p", oid], ["cat-file", "-s", oid],
                     ["show", f"{snap}:{path}"], ["diff", "--name-status"]]
    else:
        # status first trusts the index's folder ids (they still build
        # HEAD's tree, so nothing is staged); once a change is staged it
        # must read HEAD's trees, and meet the bomb.
        commands += [["ls-tree", "-r", snap], ["cat-file", "-p", oid], ["gc", "--prune", "now", "-q"],
                     ["status"], ["add", "new.txt"], ["status"]]
        (ws / "new.txt").write_text("staged after the damage\n")
    checked_status = False
    for args in commands:
        proc = run(args, ws, preexec_fn=limit_memory, timeout=300)
        what = " ".join(map(str, args))
        if args[:2] == ["cat-file", "-s"] or (args == ["status"] and not checked_status):
            # the header alone is readable; status compares ids, not trees
            assert proc.returncode in (0, 1) and "Traceback" not in proc.stderr, f"{what}: {proc.stderr}"
            checked_status = checked_status or args == ["status"]
            continue
        if args[0] == "add":
            assert proc.returncode == 0, f"{what}: {proc.stderr}"
            continue
        if args[0] == "diff":
            assert proc.returncode in (0, 1) and "internal error" not in proc.stderr, f"{what}: {proc.stderr}"
            continue
        assert proc.returncode == 1, f"{what} exited {proc.returncode}: {proc.stderr}"
        assert "error:" in proc.stderr, f"{what}: {proc.stderr}"
        assert "MemoryError" not in proc.stderr and "internal error" not in proc.stderr, f"{what}: {proc.stderr}"
        if args[0] in ("cat-file", "show"):
            assert proc.stdout == b"", f"{what} printed {len(proc.stdout)} bytes"
    assert not (world["scratch"] / "out.tar.zst").exists()
    if target.exists():
        for rel, entry in manifest(target).items():
            assert rel != path, f"{path} was written from a bomb"
