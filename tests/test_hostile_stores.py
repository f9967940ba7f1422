"""Hostile stores and remotes made by hand, byte by byte, as another program
(or an attacker) could write them, and the commands a user would run on
them: one `error:` line with the right exit code, never an internal error,
and nothing written that should not be (SPEC.md, "Safety promises")."""

from __future__ import annotations

import hashlib
import json
import os
import struct
from pathlib import Path

import pytest

from helpers.porcelain import assert_error, write_files
from rnstore import codec


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def write_raw_pack(store: Path, frames: list[tuple[str, bytes]]) -> Path:
    """A pack of these frames exactly as given (FORMAT.md, Pack files), with
    none of the checks a writer makes: a delta's base may be absent."""
    body = bytearray(b"rnpack 1\n")
    entries = []
    for oid, frame in frames:
        entries.append((bytes.fromhex(oid), len(body), len(frame)))
        body += frame
    index = b"".join(raw + struct.pack(">QI", offset, length) for raw, offset, length in sorted(entries))
    checksum = hashlib.sha256(index).digest()
    pack = store / "objects" / "pack" / f"{checksum.hex()}.pack"
    pack.parent.mkdir(parents=True, exist_ok=True)
    pack.write_bytes(bytes(body) + index + struct.pack(">QQ", len(body), len(entries)) + checksum + b"rnpkend\n")
    return pack


def write_loose(store: Path, payload: bytes, kind: str) -> str:
    oid = sha(payload)
    path = store / "objects" / oid[:2] / oid[2:]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(codec.compress(kind, payload, 3))
    return oid


def encode_tree(entries: list[tuple[str, str, int, bytes]]) -> bytes:
    return b"rntree 1\n" + b"".join(b"%s %s %d %s\0" % (mode.encode(), oid.encode(), size, name)
                                    for mode, oid, size, name in entries)


def encode_snapshot(tree: str, *, time: str = "2026-01-01T00:00:00.000000Z", meta: dict | None = None) -> bytes:
    document = {"tree": tree, "parents": [], "time": time, "message": "crafted", "meta": meta or {}}
    return b"rnsnapshot 1\n" + json.dumps(document, sort_keys=True, separators=(",", ":")).encode() + b"\n"


def damage(fsck_json) -> list[tuple[str, str]]:
    """(id, kind) of each problem `fsck --json` found, but what no root reaches."""
    return [(p["id"], p["kind"]) for p in json.loads(fsck_json.stdout)["problems"] if p["kind"] != "dangling"]


def tag_snapshot(workspace: Path, tree: str, name: str = "crafted", **fields) -> str:
    """Store a snapshot of `tree`, make it live and tag it `name`."""
    store = workspace / ".rnstore"
    snapshot = write_loose(store, encode_snapshot(tree, **fields), "snapshot")
    (store / "snapshots" / snapshot).touch()
    (store / "refs" / "tags").mkdir(parents=True, exist_ok=True)
    (store / "refs" / "tags" / name).write_text(snapshot + "\n")
    return snapshot


# -- a delta whose base is missing -------------------------------------------------------------

OLD = b"an older version of the file\n" * 40
NEW = b"the newer version of the file\n" * 40


def delta_with_missing_base(store: Path, kind: str, payload: bytes) -> str:
    """Store `payload` only as a delta against NEW, which is stored nowhere."""
    oid = sha(payload)
    write_raw_pack(store, [(oid, codec.encode_delta(kind, payload, sha(NEW), NEW, 3))])
    return oid


@pytest.mark.parametrize("what", ["file", "link", "folder"])
def test_export_and_checkout_name_the_path_whose_delta_base_is_missing(workspace, run_cli, what):
    """A file, link target or folder stored as a delta whose base is gone
    is a damaged object: exit 1 naming the path, never an internal error."""
    store = workspace / ".rnstore"
    if what == "folder":
        blob = write_loose(store, b"inside\n", "blob")
        inner = encode_tree([("100644", blob, 7, b"inside.txt")])
        broken = delta_with_missing_base(store, "tree", inner)
        root = encode_tree([("040000", broken, 7, b"evil")])
    else:
        payload = b"../target\n" if what == "link" else OLD
        broken = delta_with_missing_base(store, "blob", payload)
        root = encode_tree([("120000" if what == "link" else "100644", broken, len(payload), b"evil")])
    tag_snapshot(workspace, write_loose(store, root, "tree"))
    for args in (["export", "crafted", "-o", str(workspace.parent / "out.tar")],
                 ["checkout", "crafted", "--target", str(workspace.parent / "out")]):
        result = run_cli(args, cwd=workspace)
        assert result.returncode == 1, result
        assert "internal error" not in result.stderr, result.stderr
        assert "'evil" in result.stderr and broken in result.stderr, result.stderr
        assert f"{sha(NEW)} is missing" in result.stderr, result.stderr
    assert not (workspace.parent / "out.tar").exists()
    assert not (workspace.parent / "out").exists()


# -- JSON nested deeper than the parser's stack ------------------------------------------------

DEEP = b"[" * 100_000 + b"]" * 100_000


def test_a_snapshot_of_deeply_nested_json_is_a_corrupt_object(workspace, run_cli):
    """fsck lists it (it does not stop at it), gc refuses naming it, and no
    command blames "folders nested too deeply"."""
    store = workspace / ".rnstore"
    payload = b'rnsnapshot 1\n{"message":' + DEEP + b"}\n"
    snapshot = write_loose(store, payload, "snapshot")
    (store / "snapshots" / snapshot).touch()
    garbage = write_loose(store, b"garbage\n", "blob")
    old = store / "objects" / garbage[:2] / garbage[2:]
    os.utime(old, (1, 1))
    result = run_cli(["fsck", "--json"], cwd=workspace)
    assert result.returncode == 1, result
    assert damage(result) == [(snapshot, "corrupt")]
    for args in (["gc", "--prune", "now"], ["log", "--all"], ["cat-file", "-p", snapshot]):
        result = run_cli(args, cwd=workspace)
        assert result.returncode == 1, (args, result)
        assert "nested too deeply" in result.stderr and "folders" not in result.stderr, (args, result.stderr)
    assert old.exists(), "gc deleted while a root was unreadable"


def pushed_remote(workspace: Path, run_cli) -> Path:
    remote = workspace.parent / "remote"
    assert run_cli(["commit", "-a", "-q", "-m", "one", "--allow-empty"], cwd=workspace).returncode == 0
    assert run_cli(["remote", "add", "origin", str(remote)], cwd=workspace).returncode == 0
    assert run_cli(["push", "-q", "origin"], cwd=workspace).returncode == 0
    return remote


def test_deeply_nested_json_on_a_remote_is_named_as_damaged(workspace, run_cli):
    remote = pushed_remote(workspace, run_cli)
    plan = remote / "gc" / "1-crafted.plan"
    plan.parent.mkdir(exist_ok=True)
    plan.write_bytes(DEEP)
    result = run_cli(["push", "origin"], cwd=workspace)
    assert result.returncode == 1 and "remote gc plan gc/1-crafted.plan is damaged" in result.stderr, result
    plan.unlink()
    (remote / "refs" / "heads" / "main" / f"{2:020d}").write_bytes(DEEP)
    result = run_cli(["clone", str(remote), str(workspace.parent / "clone")], cwd=workspace.parent)
    assert result.returncode == 1, result
    assert f"remote ref refs/heads/main/{2:020d} is damaged" in result.stderr, result.stderr


def test_a_config_of_deeply_nested_json_is_unreadable(workspace, run_cli):
    (workspace / ".rnstore" / "config").write_bytes(DEEP)
    result = run_cli(["status"], cwd=workspace)
    assert result.returncode == 1, result
    assert "config file" in result.stderr and "is unreadable" in result.stderr, result.stderr


@pytest.mark.parametrize("content", [b"[]", b'{"remotes": {"origin": 5}}', b'{"remotes": {"origin": {}}}',
                                     b'{"remotes": []}', b"[" * 100_000])
def test_a_remotes_file_of_another_shape_is_unreadable(workspace, run_cli, content):
    (workspace / ".rnstore" / "remotes.json").write_bytes(content)
    for args in (["remote", "-v"], ["push", "origin"]):
        result = run_cli(args, cwd=workspace)
        assert result.returncode == 1, result
        assert "remotes.json is unreadable" in result.stderr, result.stderr


@pytest.mark.parametrize("branch", ["a b~1", ".hidden", "x.lock"])
def test_a_remote_branch_with_an_invalid_name_is_skipped_not_fatal(workspace, run_cli, branch):
    """One branch that no local ref may be named after (written by another
    program) is refused by name; fetch and clone still get every other ref."""
    remote = pushed_remote(workspace, run_cli)
    version = remote / "refs" / "heads" / "main" / f"{1:020d}"
    hostile = remote / "refs" / "heads" / branch / version.name
    hostile.parent.mkdir(parents=True)
    hostile.write_bytes(version.read_bytes())
    head = run_cli(["rev-parse", "HEAD"], cwd=workspace).out.strip()
    clone = workspace.parent / "clone"
    result = run_cli(["clone", str(remote), str(clone)], cwd=workspace.parent)
    assert result.returncode == 0, result
    assert f"refused     refs/heads/{branch}" in result.out and "not a valid ref name" in result.out, result.out
    assert run_cli(["rev-parse", "origin/main"], cwd=clone).out.strip() == head
    result = run_cli(["fetch", "--json", "origin"], cwd=clone)
    assert result.returncode == 0, result
    statuses = {update["ref"]: update["status"] for update in json.loads(result.stdout)["refs"]}
    assert statuses == {f"refs/heads/{branch}": "refused", "refs/remotes/origin/main": "up-to-date"}, statuses


def test_a_remote_of_another_format_is_refused_by_every_command(workspace, run_cli):
    """A reader refuses a version it does not know (FORMAT.md, Versioning):
    a remote gc must never delete packs of a format it cannot read."""
    remote = pushed_remote(workspace, run_cli)
    (remote / "rnstore-remote").write_bytes(b"rnstore remote 2\n")
    before = sorted(p.relative_to(remote) for p in remote.rglob("*"))
    for args in (["fetch", "origin"], ["snapshots", "--remote", "origin"], ["gc", "--remote", "origin", "--prune", "now"],
                 ["forget", "--remote", "origin", "--keep-last", "1"], ["clone", str(remote), "clone"]):
        result = run_cli(args, cwd=workspace if args[0] != "clone" else workspace.parent)
        assert result.returncode == 1, (args, result)
        assert "holds an rnstore remote of another format" in result.stderr, (args, result.stderr)
    assert sorted(p.relative_to(remote) for p in remote.rglob("*")) == before


@pytest.mark.parametrize("shared", [False, True])
def test_an_object_store_of_another_format_is_refused(tmp_path, run_cli, shared):
    """FORMAT.md, Versioning: a reader refuses a store format it does not
    know; no command may write into it, and gc may not delete from it."""
    workspace = tmp_path / "ws"
    write_files(workspace, {"a.txt": "a\n"})
    store = tmp_path / "store" if shared else workspace / ".rnstore"
    assert run_cli(["init", "-q"] + (["--objects", str(store)] if shared else []), cwd=workspace).returncode == 0
    assert run_cli(["commit", "-a", "-q", "-m", "one"], cwd=workspace).returncode == 0
    (store / "rnstore-store").write_text("rnstore object store, format 2\n")
    (workspace / "b.txt").write_text("b\n")
    before = sorted(p.relative_to(store) for p in (store / "objects").rglob("*"))
    for args in (["commit", "-a", "-m", "two"], ["gc", "--prune", "now"], ["fsck"], ["log"]):
        result = run_cli(args, cwd=workspace)
        assert result.returncode == 1, (args, result)
        assert "object store of another format" in result.stderr, (args, result.stderr)
    assert sorted(p.relative_to(store) for p in (store / "objects").rglob("*")) == before


@pytest.mark.parametrize("marker", ["", "rnstore object st", "rnstore object store, format 1\nshared group\n"])
def test_a_store_marker_cut_short_is_still_format_1(workspace, run_cli, marker):
    """`init` killed while writing the marker leaves it short: still a store."""
    (workspace / ".rnstore" / "rnstore-store").write_text(marker)
    assert run_cli(["commit", "-a", "-q", "-m", "one", "--allow-empty"], cwd=workspace).returncode == 0


@pytest.mark.parametrize("time", ["2026-13-45T99:99:99.000000Z", "0000-01-01T00:00:00.000000Z"])
def test_a_snapshot_time_that_is_no_date_is_a_corrupt_snapshot(workspace, run_cli, time):
    """The time matches the grammar's digits but names no instant: fsck
    says so, and no command fails with an internal error over it."""
    store = workspace / ".rnstore"
    tree = write_loose(store, encode_tree([]), "tree")
    snapshot = tag_snapshot(workspace, tree, time=time)
    result = run_cli(["fsck", "--json"], cwd=workspace)
    assert result.returncode == 1, result
    assert damage(result) == [(snapshot, "corrupt")]
    for args in (["export", "crafted", "-o", str(workspace.parent / "out.tar")], ["forget", "--keep-within", "1d"]):
        result = run_cli(args, cwd=workspace)
        assert result.returncode == 1, (args, result)
        assert "internal error" not in result.stderr and snapshot[:12] in result.stderr, (args, result.stderr)


def test_snapshot_counts_that_are_not_numbers_are_shown_not_fatal(workspace, run_cli):
    """`files` and `bytes` are metadata strings another program may have
    written otherwise: log shows the snapshot anyway."""
    store = workspace / ".rnstore"
    tree = write_loose(store, encode_tree([]), "tree")
    snapshot = tag_snapshot(workspace, tree, meta={"files": "lots", "bytes": "-5"})
    for args in (["log", "crafted"], ["log", "--all", "--stat"], ["show", "crafted"], ["du"]):
        result = run_cli(args, cwd=workspace)
        assert result.returncode == 0, (args, result)
    assert snapshot in run_cli(["log", "crafted"], cwd=workspace).out


def delta_chain(count: int) -> list[tuple[str, bytes]]:
    """A whole object, then `count` deltas each against the one before."""
    payloads = [b"version %d\n" % i * 200 for i in range(count + 1)]
    frames = [(sha(payloads[0]), codec.compress("blob", payloads[0], 3))]
    frames += [(sha(new), codec.encode_delta("blob", new, sha(old), old, 3)) for old, new in zip(payloads, payloads[1:])]
    return frames


@pytest.mark.parametrize("shape", ["its own base", "a loop of two", "too deep"])
@pytest.mark.parametrize("quick", [False, True])
def test_fsck_names_a_delta_chain_that_cannot_be_rebuilt(workspace, run_cli, shape, quick):
    """A delta that is its own base, two deltas based on each other, and a
    chain deeper than readers follow: corrupt for fsck, --quick included."""
    if shape == "too deep":
        frames = delta_chain(codec.MAX_CHAIN_DEPTH + 1)
        broken = [frames[-1][0]]
    else:
        looped = [OLD, NEW] if shape == "a loop of two" else [OLD]
        frames = [(sha(payload), codec.encode_delta("blob", payload, sha(base), NEW if base == payload else base, 3))
                  for payload, base in zip(looped, looped[1:] + looped[:1])]
        broken = [oid for oid, _ in frames]
    write_raw_pack(workspace / ".rnstore", frames)
    result = run_cli(["fsck", "--json"] + (["--quick"] if quick else []), cwd=workspace)
    assert result.returncode == 1, result
    found = damage(result)
    assert found == sorted((oid, "corrupt") for oid in broken), found


# -- a decompression bomb in the reachability cache ----------------------------------------------

def _zeros_frame(size: int) -> bytes:
    """One zstd frame declaring and holding `size` zero bytes (a few KiB per GiB)."""
    import io

    import zstandard
    out = io.BytesIO()
    chunk = bytes(1 << 24)
    with zstandard.ZstdCompressor(level=1).stream_writer(out, size=size, closefd=False) as writer:
        for start in range(0, size, len(chunk)):
            writer.write(chunk[:min(len(chunk), size - start)])
    return out.getvalue()


def test_a_reachability_cache_bomb_costs_neither_memory_nor_an_error(workspace, run_cli):
    """FORMAT.md: a hostile cache costs work, never an error. A 50 KiB
    cache whose one block declares 1.5 GiB of content made `du` fail with
    `internal error: MemoryError` under a memory limit, and take 1.5 GiB
    of memory without one."""
    import resource
    import subprocess
    import sys
    write_files(workspace, {"a.txt": "a\n", "src/b.txt": "b\n"})
    assert run_cli(["commit", "-a", "-q", "-m", "one"], cwd=workspace).returncode == 0
    cache = workspace / ".rnstore" / "reachability-cache"
    cache.unlink()
    expected = json.loads(run_cli(["du", "--json"], cwd=workspace).stdout)
    frame = _zeros_frame(3 << 29)
    assert len(frame) < 100_000
    bomb = b"rnstore reachability cache 2\n" + struct.pack(">I", len(frame)) + frame

    def limited():
        resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))

    for command in (["fsck"], ["du", "--json"], ["gc", "--prune", "now", "--json"]):
        cache.write_bytes(bomb)
        (workspace / ".rnstore" / "du-cache").unlink(missing_ok=True)  # du's last answer: it would not read the cache
        result = subprocess.run([sys.executable, "-m", "rnstore", *command], cwd=workspace,
                                capture_output=True, preexec_fn=limited, timeout=120)
        assert result.returncode == 0, (command, result.stderr.decode())
        if command[0] == "du":
            assert json.loads(result.stdout) == expected
        if command[0] != "fsck":  # du and gc replace it with the truth
            assert cache.stat().st_size < 10_000
    assert run_cli(["fsck"], cwd=workspace).returncode == 0


# -- a remote ref at its last version ------------------------------------------------------------

def test_a_remote_ref_at_its_last_version_is_refused_not_lost_or_looped(workspace, run_cli):
    """Ref versions have 20 digits. A push onto version 99999999999999999999
    (another program's) created `100000000000000000000`, which no reader
    lists: it said `updated`, a fetch then moved origin/main back, and the
    next push looped for ever, losing the exclusive create to that key."""
    remote = pushed_remote(workspace, run_cli)
    versions = remote / "refs" / "heads" / "main"
    (versions / ("9" * 20)).write_bytes((versions / f"{1:020d}").read_bytes())
    write_files(workspace, {"later.txt": "later\n"})
    assert run_cli(["commit", "-a", "-q", "-m", "later"], cwd=workspace).returncode == 0
    for _ in range(2):
        result = run_cli(["push", "origin"], cwd=workspace)
        assert result.returncode == 1, result
        assert "remote ref refs/heads/main is at its last version" in result.stderr, result.stderr
    assert sorted(p.name for p in versions.iterdir()) == [f"{1:020d}", "9" * 20]


# -- what is not a file, in a remote on a local path ---------------------------------------------

def test_a_fifo_or_folder_in_a_local_remote_is_refused_not_waited_on(workspace, run_cli):
    """A FIFO where a ref version or a pack should be hung fetch, push,
    clone, `snapshots --remote` and `gc --remote` for ever; a folder where
    the next ref version goes made every push lose its exclusive create
    for ever. Each is now one `error:` line naming the key (exit 1)."""
    remote = pushed_remote(workspace, run_cli)
    version = remote / "refs" / "heads" / "main" / f"{2:020d}"
    os.mkfifo(version)
    for args in (["fetch", "origin"], ["push", "origin"], ["snapshots", "--remote", "origin"],
                 ["gc", "--remote", "origin", "--prune", "now", "--dry-run"]):
        result = run_cli(args, cwd=workspace)
        assert result.returncode == 1, (args, result)
        assert f"get refs/heads/main/{2:020d} failed" in result.stderr and "not a regular file" in result.stderr
    version.unlink()
    version.mkdir()
    write_files(workspace, {"later.txt": "later\n"})
    assert run_cli(["commit", "-a", "-q", "-m", "later"], cwd=workspace).returncode == 0
    result = run_cli(["push", "origin"], cwd=workspace)
    assert result.returncode == 1, result
    assert f"remote key refs/heads/main/{2:020d} is in the way" in result.stderr, result.stderr
    version.rmdir()
    pack = next((remote / "packs").iterdir())
    pack.unlink()
    os.mkfifo(pack)
    result = run_cli(["clone", str(remote), str(workspace.parent / "clone")], cwd=workspace.parent)
    assert result.returncode == 1 and "not a regular file" in result.stderr, result
    assert not (workspace.parent / "clone").exists()


def test_a_symlink_in_a_local_remote_never_leads_a_write_or_delete_outside(workspace, run_cli):
    """A shared folder where someone made `refs/heads/evil` (or `packs`) a
    symbolic link to another folder: a push wrote its ref version there,
    and deleting a key under it would have removed a file there."""
    from rnstore.remote.backend import RemoteError, open_backend
    remote = pushed_remote(workspace, run_cli)
    outside = workspace.parent / "outside"
    outside.mkdir()
    (outside / "notes.txt").write_bytes(b"keep me\n")
    (remote / "refs" / "heads" / "evil").symlink_to(outside)
    assert run_cli(["update-ref", "refs/heads/evil", "HEAD"], cwd=workspace).returncode == 0
    assert_error(run_cli(["push", "origin", "evil"], cwd=workspace), 1,
                 "refs/heads/evil", "a symbolic link leads out of the remote")
    with pytest.raises(RemoteError, match="leads out of the remote"):
        open_backend(str(remote)).delete("refs/heads/evil/notes.txt")
    os.rename(remote / "packs", remote / "packs-real")
    (remote / "packs").symlink_to(outside)
    write_files(workspace, {"later.txt": "later\n"})
    assert run_cli(["commit", "-a", "-q", "-m", "later"], cwd=workspace).returncode == 0
    assert_error(run_cli(["push", "origin"], cwd=workspace), 1, "leads out of the remote")
    assert [(p.name, p.read_bytes()) for p in outside.iterdir()] == [("notes.txt", b"keep me\n")]


# -- a config value written by hand --------------------------------------------------------------

@pytest.mark.parametrize("key, value, command", [
    ("gc.prune", None, ["gc", "--dry-run"]),
    ("gc.threshold", "200", ["gc", "--dry-run"]),
    ("limits.max_files", "-1", ["add", "."]),
])
def test_a_bad_value_in_the_config_file_names_the_file_and_the_key(workspace, run_cli, key, value, command):
    """`error: 'None' is not a duration` with `hint: give a unit` told a
    user to fix what they typed, when the value came from the config file."""
    config = workspace / ".rnstore" / "config"
    config.write_text(json.dumps({key: value}))
    line = assert_error(run_cli(command, cwd=workspace), 2, f"rnstore config {key} VALUE")
    assert line.startswith(f"error: {key} in {config}: "), line
    assert run_cli(["config", key, "1h" if key == "gc.prune" else "10"], cwd=workspace).returncode == 0
    assert run_cli(command, cwd=workspace).returncode == 0


# -- HEAD attached to something that is not a branch ---------------------------------------------

@pytest.mark.parametrize("tag_exists", [False, True])
def test_a_head_attached_to_a_tag_is_corrupt_and_moves_no_tag(workspace, run_cli, tag_exists):
    """`symbolic-ref` refuses it, but a HEAD file saying `ref: refs/tags/x`
    made `status` fail with `internal error: TypeError` (no such tag), and
    `commit` then created (or moved) the store-wide tag x."""
    write_files(workspace, {"a.txt": "a\n"})
    assert run_cli(["commit", "-a", "-q", "-m", "one"], cwd=workspace).returncode == 0
    if tag_exists:
        assert run_cli(["tag", "x"], cwd=workspace).returncode == 0
    refs = run_cli(["show-ref"], cwd=workspace).out
    (workspace / ".rnstore" / "HEAD").write_text("ref: refs/tags/x\n")
    for args in (["status"], ["commit", "-a", "-q", "--allow-empty", "-m", "two"], ["log"]):
        assert_error(run_cli(args, cwd=workspace), 1, "HEAD is corrupt: it names 'refs/tags/x', which is not a branch")
    assert run_cli(["fsck"], cwd=workspace).returncode == 1
    assert run_cli(["show-ref"], cwd=workspace).out == refs
    assert run_cli(["symbolic-ref", "HEAD", "refs/heads/main"], cwd=workspace).returncode == 0
    assert run_cli(["status"], cwd=workspace).returncode == 0


# -- filters that a remote listing would ignore --------------------------------------------------

def test_snapshots_remote_refuses_the_filters_it_cannot_apply(workspace, run_cli):
    """`snapshots --remote NAME --since 2099-01-01` (or `--since garbage`,
    `--tag nosuch`) listed every snapshot of the remote: the filters were
    dropped without a word."""
    pushed_remote(workspace, run_cli)
    for flag, value in (("--since", "2099-01-01"), ("--since", "garbage"), ("--until", "2000-01-01"),
                        ("--tag", "nosuch"), ("--meta", "a=b"), ("--workspace", "/nowhere")):
        result = run_cli(["snapshots", "--remote", "origin", flag, value], cwd=workspace)
        assert_error(result, 2, f"{flag} filter the store's snapshots, not a remote's")
        assert result.stdout == b""
    assert run_cli(["snapshots", "--remote", "origin"], cwd=workspace).returncode == 0


def test_gc_remote_refuses_auto_which_it_ignored(workspace, run_cli):
    """`gc --remote NAME --auto` ran a whole remote gc on every call: a CI
    job calling it as it calls `gc --auto` paid thousands of requests."""
    remote = pushed_remote(workspace, run_cli)
    before = sorted(p.relative_to(remote) for p in remote.rglob("*"))
    result = run_cli(["gc", "--remote", "origin", "--auto"], cwd=workspace)
    assert_error(result, 2, "--auto is for the local store")
    assert sorted(p.relative_to(remote) for p in remote.rglob("*")) == before


# -- a push marker dated in the future -----------------------------------------------------------

def test_a_push_marker_dated_in_the_future_holds_remote_gc_only_while_stale_counts(workspace, run_cli,
                                                                                    monkeypatch):
    """Remote gc waits for the pushes whose marker is younger than STALE.
    A marker dated a year ahead (a writer's clock, or a hand) stayed
    "young" for a year: every `gc --remote` with something to delete
    waited for ever. A marker left unrewritten for STALE seconds of the
    collector's own waiting is now stale, whatever its date."""
    from rnstore import Repository
    from rnstore.remote import collect
    remote = pushed_remote(workspace, run_cli)
    head = run_cli(["rev-parse", "HEAD"], cwd=workspace).out.strip()
    assert run_cli(["push", "origin", "--delete", "main"], cwd=workspace).returncode == 0
    assert run_cli(["forget", "--remote", "origin", head], cwd=workspace).returncode == 0
    marker = remote / "pushes" / "from-a-clock-a-year-ahead"
    marker.parent.mkdir(exist_ok=True)
    marker.write_text("{}")
    ahead = marker.stat().st_mtime + 365 * 86400
    os.utime(marker, (ahead, ahead))
    monkeypatch.setattr(collect, "POLL", 30.0)  # fewer rounds; STALE is what counts
    waited = []

    def wait_for(seconds):  # no sleeping: the collector counts what it waited
        waited.append(seconds)
        assert sum(waited) < 2 * collect.STALE, "gc waits for ever for a marker no one rewrites"

    stats = collect.gc_remote(Repository.open(workspace), "origin", prune="now", wait_for=wait_for)
    assert stats.deleted_packs == 1
    assert collect.STALE <= sum(waited) <= collect.STALE + collect.POLL
    assert not any((remote / "packs").iterdir())
