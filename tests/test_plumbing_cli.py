"""The plumbing commands end to end: a real `python -m rnstore` subprocess in
a workspace made by `rnstore init`. Files are staged through the library
(store.put_file, IndexEntry, repo.write_index), not through `add`.

Every result goes to stdout and nothing else; every failure is one
`error:` line (plus `hint:` lines) on stderr, never a traceback, with exit
code 1 (act) or 2 (bad usage or input).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from rnstore import codec, plumbing
from rnstore.errors import CorruptObjectError
from rnstore.index import Index, IndexEntry
from rnstore.objects import EMPTY_TREE_ID, TreeEntry
from rnstore.repo import Repository

from helpers.cli import cli_env, run_cli  # the same helper the fixture hands out
from helpers.frames import zeros_frame

NON_UTF8 = b"caf\xe9.txt"


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def ok(result) -> bytes:
    """A success: exit 0, nothing on stderr; returns stdout."""
    assert result.returncode == 0, result.stderr
    assert result.stderr == "", result.stderr
    return result.stdout


def failed(result, code: int) -> str:
    """A failure: the exit code, nothing on stdout, `error:` then `hint:` lines."""
    assert result.returncode == code, (result.returncode, result.stdout, result.stderr)
    assert result.stdout == b"", result.stdout[:200]
    lines = result.stderr.splitlines()
    assert lines and lines[0].startswith("error: "), result.stderr
    assert all(line.startswith("hint: ") for line in lines[1:]), result.stderr
    return result.stderr


def lines(stdout: bytes) -> list[bytes]:
    return stdout.splitlines()


@pytest.fixture
def ws(workspace) -> Path:
    return workspace


@pytest.fixture
def wrepo(ws) -> Repository:
    return Repository.open(ws)


def put_file(ws: Path, name: bytes | str, data: bytes) -> Path:
    path = Path(os.fsdecode(ws)) / os.fsdecode(name)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def stage_paths(repo: Repository, files: dict[bytes, tuple[bytes, str]]) -> Index:
    """Write files into the workspace, store them with store.put_file, and
    make them the index."""
    entries = []
    for name, (data, mode) in files.items():
        path = put_file(repo.root, name, data)
        if mode == "100755":
            path.chmod(0o755)
        oid, size = repo.store.put_file(path)
        entries.append(IndexEntry(name, mode, oid, size))
    index = Index(entries)
    repo.write_index(index)
    return index


FILES = {
    b"README": (b"read me\n", "100644"),
    b"run.sh": (b"#!/bin/sh\necho hi\n", "100755"),
    b"src/a.py": (b"print('a')\n", "100644"),
    b"src/a.txt": (b"", "100644"),
    b"src.txt": (b"x\n", "100644"),
    NON_UTF8: (b"accent\n", "100644"),
}


@pytest.fixture
def snap(ws, wrepo):
    """One snapshot of FILES on main, made by the library functions behind
    write-tree, commit-tree and update-ref (tested through the CLI below)."""
    stage_paths(wrepo, FILES)
    tree = plumbing.write_tree(wrepo)
    snapshot = plumbing.commit_tree(wrepo, tree, [], "first")
    plumbing.update_ref(wrepo, "refs/heads/main", snapshot)
    return {"tree": tree, "snapshot": snapshot}


def test_write_tree_commit_tree_update_ref(ws, wrepo):
    stage_paths(wrepo, FILES)
    tree = ok(run_cli(["write-tree"], ws)).decode().strip()
    assert wrepo.store.get_tree(tree).get(b"run.sh").mode == "100755"
    snapshot = ok(run_cli(["commit-tree", tree, "-m", "first"], ws)).decode().strip()
    assert wrepo.store.get_snapshot(snapshot).tree == tree
    assert ok(run_cli(["update-ref", "refs/heads/main", snapshot], ws)) == b""
    assert wrepo.refs.resolve("HEAD") == snapshot


# -- hash-object ----------------------------------------------------------------------

def test_hash_object_equals_sha256sum(ws):
    files = [put_file(ws, "empty", b""), put_file(ws, "hello", b"hello\n"),
             put_file(ws, "random.bin", os.urandom(300_000)), put_file(ws, NON_UTF8, b"\xff\x00")]
    names = [os.fsencode(p.name) for p in files]
    ours = lines(ok(run_cli(["hash-object", *names], ws)))
    reference = subprocess.run(["sha256sum", *names], cwd=ws, capture_output=True, check=True).stdout
    assert ours == [line.split()[0] for line in lines(reference)]
    assert ours[0] == b"e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


def test_hash_object_needs_no_workspace_without_w(tmp_path):
    put_file(tmp_path, "f", b"data")
    assert ok(run_cli(["hash-object", "f"], tmp_path)).strip().decode() == sha(b"data")
    failed(run_cli(["hash-object", "-w", "f"], tmp_path), 2)  # not a workspace


def test_hash_object_stdin(ws, wrepo):
    data = os.urandom(5000)
    oid = ok(run_cli(["hash-object", "--stdin"], ws, input=data)).strip().decode()
    assert oid == sha(data)
    assert not wrepo.store.has(oid)
    assert ok(run_cli(["hash-object", "-w", "--stdin"], ws, input=data)).strip().decode() == oid
    assert wrepo.store.get(oid) == ("blob", data)


def test_hash_object_errors(ws):
    failed(run_cli(["hash-object"], ws), 2)
    failed(run_cli(["hash-object", "no-such-file"], ws), 2)


@pytest.mark.parametrize("name,data", [
    ("empty", b""),
    (NON_UTF8, b"caf\xc3\xa9 \xe9\n"),
    ("big.bin", None),  # 20 MB of random bytes: the streaming paths both ways
])
def test_cat_file_gives_the_bytes_back_exactly(ws, wrepo, name, data):
    if data is None:
        data = os.urandom(20 << 20)
    put_file(ws, name, data)
    arg = os.fsencode(name)
    oid = ok(run_cli(["hash-object", "-w", arg], ws)).strip().decode()
    assert oid == sha(data)
    assert wrepo.store.has(oid)
    assert ok(run_cli(["cat-file", "-p", oid], ws)) == data
    assert ok(run_cli(["cat-file", "blob", oid[:10]], ws)) == data
    assert ok(run_cli(["cat-file", "-s", oid], ws)) == b"%d\n" % len(data)


def test_cat_file_type_size_exists(ws, snap):
    blob = sha(b"read me\n")
    assert ok(run_cli(["cat-file", "-t", blob], ws)) == b"blob\n"
    assert ok(run_cli(["cat-file", "-t", snap["tree"]], ws)) == b"tree\n"
    assert ok(run_cli(["cat-file", "-t", "HEAD"], ws)) == b"snapshot\n"
    assert ok(run_cli(["cat-file", "-t", "HEAD:src"], ws)) == b"tree\n"
    assert ok(run_cli(["cat-file", "-s", "HEAD:README"], ws)) == b"8\n"
    assert ok(run_cli(["cat-file", "-e", blob], ws)) == b""
    assert ok(run_cli(["cat-file", "-e", "HEAD:src/a.py"], ws)) == b""
    for missing in ("0" * 64, "HEAD:nope"):
        result = run_cli(["cat-file", "-e", missing], ws)
        assert (result.returncode, result.stdout, result.stderr) == (1, b"", "")


def test_cat_file_tree_and_snapshot_payloads(ws, wrepo, snap):
    tree_payload = ok(run_cli(["cat-file", "tree", snap["tree"]], ws))
    assert sha(tree_payload) == snap["tree"]
    assert tree_payload.startswith(b"rntree 1\n")
    assert tree_payload == wrepo.store.get_tree(snap["tree"]).encode()
    snapshot_payload = ok(run_cli(["cat-file", "snapshot", "HEAD"], ws))
    assert sha(snapshot_payload) == snap["snapshot"]
    assert snapshot_payload.startswith(b"rnsnapshot 1\n{")
    document = json.loads(snapshot_payload[len(b"rnsnapshot 1\n"):])
    assert document["tree"] == snap["tree"] and document["message"] == "first"
    # the wrong kind is bad input
    failed(run_cli(["cat-file", "tree", snap["snapshot"]], ws), 2)
    failed(run_cli(["cat-file", "blob", snap["tree"]], ws), 2)
    failed(run_cli(["cat-file", "commit", snap["tree"]], ws), 2)


def test_cat_file_pretty_tree_and_snapshot(ws, snap):
    listing = lines(ok(run_cli(["cat-file", "-p", snap["tree"]], ws)))
    assert listing == lines(ok(run_cli(["ls-tree", snap["tree"]], ws)))
    document = json.loads(ok(run_cli(["cat-file", "-p", "HEAD"], ws)))
    assert document["tree"] == snap["tree"]
    assert document["parents"] == [] and document["message"] == "first"
    assert document["meta"]["files"] == "6"
    assert document["meta"]["bytes"] == str(sum(len(d) for d, _ in FILES.values()))
    assert document["meta"]["user"]
    assert document["time"].endswith("Z")


def test_cat_file_usage_errors(ws, snap):
    failed(run_cli(["cat-file", "HEAD"], ws), 2)
    failed(run_cli(["cat-file", "-t", "-s", "HEAD"], ws), 2)
    failed(run_cli(["cat-file", "-t", "blob", "HEAD"], ws), 2)
    failed(run_cli(["cat-file", "-x", "HEAD"], ws), 2)
    failed(run_cli(["cat-file"], ws), 2)


# -- bad revisions ---------------------------------------------------------------------

@pytest.mark.parametrize("args", [
    ["rev-parse", "nope"], ["rev-parse", "abc"], ["rev-parse", "0" * 64], ["rev-parse", "HEAD~5"],
    ["rev-parse", "HEAD~x"], ["cat-file", "-p", "HEAD:no/such/path"], ["ls-tree", "HEAD", "nope"],
    ["manifest", "HEAD:src"], ["read-tree", "HEAD:README"],
])
def test_bad_revisions_exit_2(ws, snap, args):
    stderr = failed(run_cli(args, ws), 2)
    assert "Traceback" not in stderr


def test_unborn_head_is_a_bad_revision(ws):
    assert "no snapshot yet" in failed(run_cli(["rev-parse", "HEAD"], ws), 2)


def store_two_blobs_sharing_a_prefix(repo: Repository) -> tuple[str, list[str]]:
    """(their common 4-digit prefix, their ids)."""
    seen: dict[str, bytes] = {}
    i = 0
    while True:
        data = b"ambiguous %d" % i
        prefix = sha(data)[:4]
        if prefix in seen:
            break
        seen[prefix] = data
        i += 1
    return prefix, [repo.store.put("blob", d) for d in (seen[prefix], data)]


def test_ambiguous_prefix_exit_2_lists_candidates(ws, wrepo):
    prefix, ids = store_two_blobs_sharing_a_prefix(wrepo)
    stderr = failed(run_cli(["rev-parse", prefix], ws), 2)
    assert "ambiguous" in stderr
    assert all(oid in stderr for oid in ids)


def test_not_a_workspace_exit_2(tmp_path):
    stderr = failed(run_cli(["rev-parse", "HEAD"], tmp_path), 2)
    assert "not an rnstore workspace" in stderr


def test_usage_errors_exit_2(ws):
    failed(run_cli(["no-such-command"], ws), 2)
    failed(run_cli(["rev-parse", "--bogus", "HEAD"], ws), 2)
    result = run_cli([], ws)
    assert result.returncode == 2
    assert result.stderr.startswith("error: ")


def test_no_command_says_so_and_lists_the_commands(ws):
    """Bare `rnstore`, as bare `git`: the usage and the command list, here
    under one `error: missing command` line (the help was glued onto
    `error: Usage: ...`), exit 2, nothing on stdout."""
    result = run_cli([], ws)
    assert result.returncode == 2 and result.stdout == b""
    lines = result.stderr.splitlines()
    assert lines[0] == "error: missing command"
    assert lines[1].startswith("Usage: rnstore ") and "  commit " in result.stderr
    assert sum(line.startswith("error:") for line in lines) == 1


def test_version():
    from rnstore import __version__
    result = run_cli(["--version"], ".")
    assert ok(result) == f"rnstore {__version__}\n".encode()


# -- damaged objects ----------------------------------------------------------------------

SECRET = b"SECRET-BYTES-" * 1000


def damaged_frame(kind: str) -> tuple[str, bytes]:
    """(id, frame bytes) of an object file damaged in one way."""
    good = codec.compress("blob", SECRET, 3)
    oid = sha(SECRET)
    if kind == "flipped":
        frame = bytearray(good)
        frame[len(frame) // 2] ^= 0x10
        return oid, bytes(frame)
    if kind == "truncated":
        return oid, good[: len(good) - 8]
    if kind == "garbage":
        return oid, SECRET
    if kind == "hash mismatch":
        return sha(b"what the id promises"), good
    if kind == "bomb":
        return oid, zeros_frame(b"rn1 blob raw %d\n" % len(SECRET), 100 << 20)
    if kind == "large hash mismatch":  # past BUFFERED_BLOB: verified before streaming
        from rnstore.store import BUFFERED_BLOB
        return sha(b"large"), zeros_frame(b"rn1 blob raw %d\n" % (BUFFERED_BLOB + 1), BUFFERED_BLOB + 1)
    raise AssertionError(kind)


def plant(repo: Repository, oid: str, frame: bytes) -> None:
    path = repo.store.path_for(oid)
    path.parent.mkdir(exist_ok=True)
    path.write_bytes(frame)


@pytest.mark.parametrize("kind", ["flipped", "truncated", "garbage", "hash mismatch", "bomb",
                                  "large hash mismatch"])
def test_damaged_object_exit_1_and_nothing_on_stdout(ws, wrepo, kind):
    oid, frame = damaged_frame(kind)
    plant(wrepo, oid, frame)
    forms = [["cat-file", "-p", oid]]
    if kind in ("hash mismatch", "bomb"):
        forms.append(["cat-file", "blob", oid[:8]])
    for args in forms:
        result = run_cli(args, ws)
        stderr = failed(result, 1)
        assert "corrupt" in stderr and oid in stderr
        assert b"SECRET" not in result.stdout


def with_content_size(frame: bytes, delta: int) -> bytes:
    """`frame` with the frame content size in its zstd header moved by `delta`."""
    damaged = bytearray(frame)
    descriptor = damaged[4]
    single_segment = descriptor & 0x20
    width = (1 if single_segment else 0, 2, 4, 8)[descriptor >> 6]
    at = 5 + (0 if single_segment else 1) + (0, 1, 2, 4)[descriptor & 0x03]
    value = int.from_bytes(damaged[at:at + width], "little") + delta
    damaged[at:at + width] = value.to_bytes(width, "little")
    return bytes(damaged)


@pytest.mark.parametrize("delta", [1, -1])
def test_a_frame_whose_content_size_disagrees_with_the_header_is_corrupt(ws, wrepo, delta):
    """Header-only readers (cat-file -s / -t, store.header) must check the
    zstd frame's content size against the object header: they decode only
    the start of the body, so zstd itself never sees the disagreement (the
    payload spans several blocks)."""
    payload = hashlib.shake_256(b"several blocks").digest(1 << 20)
    frame = with_content_size(codec.compress("blob", payload, 3), delta)
    oid = sha(payload)
    plant(wrepo, oid, frame)
    with pytest.raises(CorruptObjectError, match="disagrees"):
        Repository.open(ws).store.header(oid)
    for args in (["cat-file", "-s", oid], ["cat-file", "-t", oid], ["cat-file", "-p", oid]):
        assert "corrupt" in failed(run_cli(args, ws), 1), args


def test_damaged_tree_exit_1(ws, wrepo, snap):
    src = wrepo.store.get_tree(snap["tree"]).get(b"src").id
    plant(wrepo, src, codec.compress("tree", b"rntree 1\n100644 " + b"a" * 64 + b" 1 ..\0", 3))
    for args in (["ls-tree", "-r", "HEAD"], ["ls-tree", "HEAD:src"], ["cat-file", "-p", src],
                 ["manifest", "HEAD"], ["cat-file", "-p", "HEAD:src/a.py"]):
        assert "corrupt" in failed(run_cli(args, ws), 1), args


def _non_canonical(snap_payload: bytes, tree_payload: bytes) -> dict[str, tuple[str, bytes]]:
    """Payloads that hash to an id and decode as JSON or tree entries, but
    are not the one canonical form FORMAT.md allows."""
    version, document = snap_payload.split(b"\n", 1)
    entries = tree_payload[len(b"rntree 1\n"):].split(b"\0")[:-1]
    return {
        "snapshot extra key": ("snapshot", snap_payload.replace(b'{"message"', b'{"extra":"x","message"', 1)),
        "snapshot spaces": ("snapshot", snap_payload.replace(b'","', b'", "')),
        "snapshot version 2": ("snapshot", b"rnsnapshot 2\n" + document),
        "snapshot no final LF": ("snapshot", snap_payload[:-1]),
        "tree unsorted": ("tree", b"rntree 1\n" + b"\0".join(reversed(entries)) + b"\0"),
        "tree spaces": ("tree", tree_payload.replace(b" ", b"  ", 1)),
        "tree no final NUL": ("tree", tree_payload[:-1]),
        "tree version 2": ("tree", tree_payload.replace(b"rntree 1", b"rntree 2", 1)),
    }


@pytest.mark.parametrize("case", ["snapshot extra key", "snapshot spaces", "snapshot version 2",
                                  "snapshot no final LF", "tree unsorted", "tree spaces",
                                  "tree no final NUL", "tree version 2"])
def test_every_reader_refuses_a_non_canonical_object_exit_1(ws, wrepo, snap, case):
    snap_payload = wrepo.store.get(snap["snapshot"])[1]
    tree_payload = wrepo.store.get(snap["tree"])[1]
    kind, payload = _non_canonical(snap_payload, tree_payload)[case]
    oid = wrepo.store.put(kind, payload)
    assert oid == sha(payload)
    readers = [["cat-file", kind, oid], ["cat-file", "-p", oid]]
    readers += [["log", oid]] if kind == "snapshot" else [["ls-tree", oid]]
    for args in readers:
        assert "corrupt" in failed(run_cli(args, ws), 1), args
    # the same objects, canonical, print exactly
    assert ok(run_cli(["cat-file", "snapshot", snap["snapshot"]], ws)) == snap_payload
    assert ok(run_cli(["cat-file", "tree", snap["tree"]], ws)) == tree_payload


def test_missing_object_exit_1(ws, wrepo, snap):
    blob = sha(b"print('a')\n")
    wrepo.store.delete(blob)
    stderr = failed(run_cli(["cat-file", "-p", "HEAD:src/a.py"], ws), 1)
    assert "missing" in stderr


# -- ls-tree / ls-files / manifest -------------------------------------------------------

def test_ls_tree(ws, wrepo, snap):
    readme, run = sha(b"read me\n"), sha(b"#!/bin/sh\necho hi\n")
    src = wrepo.store.get_tree(snap["tree"]).get(b"src").id
    top = lines(ok(run_cli(["ls-tree", "HEAD"], ws)))
    assert top == [
        b"100644 blob " + readme.encode() + b"\tREADME",
        b"100644 blob " + sha(b"accent\n").encode() + b"\t" + NON_UTF8,
        b"100755 blob " + run.encode() + b"\trun.sh",
        b"040000 tree " + src.encode() + b"\tsrc",
        b"100644 blob " + sha(b"x\n").encode() + b"\tsrc.txt",
    ]
    assert lines(ok(run_cli(["ls-tree", snap["tree"]], ws))) == top
    assert lines(ok(run_cli(["ls-tree", "--name-only", "HEAD"], ws))) == [
        b"README", NON_UTF8, b"run.sh", b"src", b"src.txt"]
    recursive = lines(ok(run_cli(["ls-tree", "-r", "--name-only", "HEAD"], ws)))
    assert recursive == sorted(FILES)  # path order: src.txt before src/a.py
    long = lines(ok(run_cli(["ls-tree", "-l", "HEAD"], ws)))
    assert long[0] == b"100644 blob " + readme.encode() + b"       8\tREADME"
    assert long[3] == b"040000 tree " + src.encode() + b"       -\tsrc"


def test_ls_tree_paths(ws, snap):
    with_path = lines(ok(run_cli(["ls-tree", "HEAD", "src"], ws)))
    inside = lines(ok(run_cli(["ls-tree", "HEAD:src"], ws)))
    # the same entries; TREE-ISH PATH shows paths from the root, TREE-ISH:PATH below it
    assert [line.replace(b"\tsrc/", b"\t") for line in with_path] == inside
    assert lines(ok(run_cli(["ls-tree", "--name-only", "HEAD", "src"], ws))) == [b"src/a.py", b"src/a.txt"]
    assert lines(ok(run_cli(["ls-tree", "--name-only", "HEAD:src"], ws))) == [b"a.py", b"a.txt"]
    assert lines(ok(run_cli(["ls-tree", "--name-only", "HEAD", "README"], ws))) == [b"README"]
    assert lines(ok(run_cli(["ls-tree", "--name-only", "HEAD", NON_UTF8], ws))) == [NON_UTF8]
    failed(run_cli(["ls-tree", "HEAD:src", "a.py"], ws), 2)


def test_ls_tree_json(ws, snap):
    document = json.loads(ok(run_cli(["ls-tree", "-r", "--json", "HEAD"], ws)))
    assert [d["path"] for d in document] == [os.fsdecode(p) for p in sorted(FILES)]
    first = document[0]
    assert set(first) == {"mode", "type", "id", "path", "size"}
    assert first == {"mode": "100644", "type": "blob", "id": sha(b"read me\n"), "path": "README", "size": 8}


def test_ls_files(ws, wrepo):
    stage_paths(wrepo, FILES)
    assert lines(ok(run_cli(["ls-files"], ws))) == sorted(FILES)
    staged = lines(ok(run_cli(["ls-files", "-s"], ws)))
    assert staged[0] == b"100644 " + sha(b"read me\n").encode() + b" 0\tREADME"
    assert [line.split(b"\t", 1)[1] for line in staged] == sorted(FILES)
    assert staged[2].startswith(b"100755 ")


def test_ls_files_empty_and_corrupt_index(ws, wrepo):
    assert ok(run_cli(["ls-files"], ws)) == b""
    wrepo.index_path.write_bytes(b"rnindex 1\ngarbage")
    stderr = failed(run_cli(["ls-files"], ws), 1)
    assert "index" in stderr and "read-tree" in stderr


def test_manifest(ws, snap):
    document = json.loads(ok(run_cli(["manifest", "HEAD"], ws)))
    assert document["snapshot"] == snap["snapshot"]
    by_path = {f["path"]: f for f in document["files"]}
    assert set(by_path) == {os.fsdecode(p) for p in FILES}
    assert by_path["run.sh"] == {"path": "run.sh", "sha256": sha(b"#!/bin/sh\necho hi\n"),
                                 "size": 18, "mode": "100755"}
    assert by_path["src/a.txt"]["size"] == 0
    assert [f["path"] for f in document["files"]] == [os.fsdecode(p) for p in sorted(FILES)]


# -- write-tree / read-tree / mktree -------------------------------------------------------

def test_write_tree_matches_the_library(ws, wrepo):
    from rnstore.trees import build_tree
    from rnstore.store import MemoryStore
    index = stage_paths(wrepo, FILES)
    tree = ok(run_cli(["write-tree"], ws)).strip().decode()
    assert tree == build_tree(MemoryStore(), index.entries.values())
    assert wrepo.store.has(tree)
    # the same content gives the same id
    assert ok(run_cli(["write-tree"], ws)).strip().decode() == tree


def test_write_tree_of_an_empty_index(ws):
    assert ok(run_cli(["write-tree"], ws)).strip().decode() == EMPTY_TREE_ID


def test_read_tree_replaces_the_index(ws, wrepo, snap):
    stage_paths(wrepo, {b"other": (b"o", "100644")})
    assert lines(ok(run_cli(["ls-files"], ws))) == [b"other"]
    assert ok(run_cli(["read-tree", "HEAD"], ws)) == b""
    assert lines(ok(run_cli(["ls-files"], ws))) == sorted(FILES)
    assert all(e.stat is None for e in wrepo.read_index())  # stat cache cold
    assert ok(run_cli(["write-tree"], ws)).strip().decode() == snap["tree"]
    ok(run_cli(["read-tree", "HEAD:src"], ws))
    assert lines(ok(run_cli(["ls-files"], ws))) == [b"a.py", b"a.txt"]


def test_mktree_round_trips_ls_tree(ws, snap):
    for flags in ([], ["-l"]):
        listing = ok(run_cli(["ls-tree", *flags, "HEAD"], ws))
        assert ok(run_cli(["mktree"], ws, input=listing)).strip().decode() == snap["tree"]
    sub = ok(run_cli(["ls-tree", "HEAD:src"], ws))
    sub_id = ok(run_cli(["rev-parse", "HEAD:src"], ws)).strip()
    assert ok(run_cli(["mktree"], ws, input=sub)).strip() == sub_id


def test_mktree_empty_input_is_the_empty_tree(ws):
    assert ok(run_cli(["mktree"], ws, input=b"")).strip().decode() == EMPTY_TREE_ID


def test_mktree_sizes_come_from_the_objects(ws, wrepo, snap):
    src = ok(run_cli(["rev-parse", "HEAD:src"], ws)).strip()
    readme = sha(b"read me\n").encode()
    tree = ok(run_cli(["mktree"], ws, input=b"040000 tree " + src + b"\tlib\n"
                      + b"100755 blob " + readme + b"\tx\n")).strip().decode()
    entries = wrepo.store.get_tree(tree).entries
    assert entries == (TreeEntry(b"lib", "040000", src.decode(), 11),
                       TreeEntry(b"x", "100755", readme.decode(), 8))


@pytest.mark.parametrize("line,code", [
    (b"100644 blob {blob}\t..", 2),
    (b"100644 blob {blob}\ta/b", 2),
    (b"100644 blob {blob}\tx\n100644 blob {blob}\tx", 2),
    (b"100600 blob {blob}\tx", 2),
    (b"040000 tree {blob}\tx", 2),
    (b"100644 blob {tree}\tx", 2),
    (b"100644 blob {blob} x", 2),
    (b"100644 blob " + b"0" * 64 + b"\tx", 1),
])
def test_mktree_validates(ws, snap, line, code):
    blob = sha(b"read me\n").encode()
    data = line.replace(b"{blob}", blob).replace(b"{tree}", snap["tree"].encode()) + b"\n"
    failed(run_cli(["mktree"], ws, input=data), code)


# -- commit-tree / update-ref / symbolic-ref / show-ref / rev-parse -----------------------

def test_commit_tree(ws, wrepo, snap):
    tree = snap["tree"]
    second = ok(run_cli(["commit-tree", tree, "-p", "HEAD", "-m", "second",
                         "--meta", "run=42", "--meta", "lr=0.1=x"], ws)).strip().decode()
    assert len(second) == 64 and second != snap["snapshot"]
    assert second in set(wrepo.journal)
    assert snap["snapshot"] in set(wrepo.journal)
    document = json.loads(ok(run_cli(["cat-file", "-p", second], ws)))
    assert document["parents"] == [snap["snapshot"]]
    assert document["meta"]["run"] == "42" and document["meta"]["lr"] == "0.1=x"
    assert document["message"] == "second"
    # a ref did not move
    assert ok(run_cli(["rev-parse", "main"], ws)).strip().decode() == snap["snapshot"]
    # a tree-ish given as a snapshot, and a message that is not ASCII
    third = ok(run_cli(["commit-tree", "HEAD", "-m", "caf\u00e9 \u2603"], ws)).strip().decode()
    assert wrepo.store.get_snapshot(third).tree == tree
    assert wrepo.store.get_snapshot(third).message == "caf\u00e9 \u2603"


@pytest.mark.parametrize("extra", [["--meta", "novalue"], ["--meta", "user=x"], ["-p", "HEAD:src"]])
def test_commit_tree_bad_input(ws, wrepo, snap, extra):
    failed(run_cli(["commit-tree", snap["tree"], "-m", "x", *extra], ws), 2)
    assert set(wrepo.journal) == {snap["snapshot"]}


def test_commit_tree_needs_a_message(ws, snap):
    failed(run_cli(["commit-tree", snap["tree"]], ws), 2)


def test_update_ref_with_old_value(ws, snap):
    first = snap["snapshot"]
    second = ok(run_cli(["commit-tree", snap["tree"], "-p", first, "-m", "2"], ws)).strip().decode()
    # wrong OLD: nothing moves, exit 1
    stderr = failed(run_cli(["update-ref", "refs/heads/main", second, second], ws), 1)
    assert first in stderr
    assert ok(run_cli(["rev-parse", "main"], ws)).strip().decode() == first
    # right OLD (any revision naming it)
    ok(run_cli(["update-ref", "refs/heads/main", second, first[:12]], ws))
    assert ok(run_cli(["rev-parse", "main"], ws)).strip().decode() == second
    # OLD of zeros: the ref must not exist yet
    failed(run_cli(["update-ref", "refs/heads/main", first, "0" * 64], ws), 1)
    ok(run_cli(["update-ref", "refs/heads/new", first, "0" * 64], ws))
    assert ok(run_cli(["rev-parse", "new"], ws)).strip().decode() == first


def test_update_ref_forms(ws, snap):
    first = snap["snapshot"]
    ok(run_cli(["update-ref", "refs/tags/v1", "HEAD"], ws))
    ok(run_cli(["update-ref", "feature", first], ws))  # a bare name is a branch
    assert lines(ok(run_cli(["show-ref"], ws))) == [
        f"{first} refs/heads/feature".encode(), f"{first} refs/heads/main".encode(),
        f"{first} refs/tags/v1".encode()]
    other = plumbing.commit_tree(Repository.open(ws), snap["tree"], [], "other")
    failed(run_cli(["update-ref", "-d", "refs/tags/v1", other], ws), 1)
    ok(run_cli(["update-ref", "-d", "refs/tags/v1", first], ws))
    ok(run_cli(["update-ref", "-d", "feature"], ws))
    assert lines(ok(run_cli(["show-ref"], ws))) == [f"{first} refs/heads/main".encode()]
    failed(run_cli(["update-ref", "-d", "refs/tags/v1"], ws), 2)


@pytest.mark.parametrize("args", [
    ["update-ref", "refs/heads/a..b", "HEAD"], ["update-ref", "refs/heads/x", "HEAD:src"],
    ["update-ref", "refs/heads/x"], ["update-ref", "-d", "refs/heads/main", "HEAD", "extra"],
])
def test_update_ref_bad_input(ws, snap, args):
    failed(run_cli(args, ws), 2)


def test_update_ref_head_detached_and_attached(ws, wrepo, snap):
    first = snap["snapshot"]
    second = ok(run_cli(["commit-tree", "HEAD", "-p", "HEAD", "-m", "2"], ws)).strip().decode()
    ok(run_cli(["update-ref", "HEAD", second], ws))  # attached: moves main
    assert ok(run_cli(["rev-parse", "main"], ws)).strip().decode() == second
    assert ok(run_cli(["symbolic-ref", "HEAD"], ws)) == b"refs/heads/main\n"
    wrepo.refs.update("HEAD", first, follow_head=False)  # detach through the library
    assert failed(run_cli(["symbolic-ref", "HEAD"], ws), 1) == "error: HEAD is detached\n"
    assert ok(run_cli(["rev-parse", "HEAD"], ws)).strip().decode() == first
    ok(run_cli(["symbolic-ref", "HEAD", "refs/heads/main"], ws))
    assert ok(run_cli(["rev-parse", "HEAD"], ws)).strip().decode() == second


def test_symbolic_ref(ws, snap):
    assert ok(run_cli(["symbolic-ref", "HEAD"], ws)) == b"refs/heads/main\n"
    ok(run_cli(["symbolic-ref", "HEAD", "refs/heads/dev"], ws))
    assert ok(run_cli(["symbolic-ref", "HEAD"], ws)) == b"refs/heads/dev\n"
    assert "no snapshot yet" in failed(run_cli(["rev-parse", "HEAD"], ws), 2)
    ok(run_cli(["symbolic-ref", "HEAD", "main"], ws))
    assert ok(run_cli(["symbolic-ref", "HEAD"], ws)) == b"refs/heads/main\n"
    failed(run_cli(["symbolic-ref", "HEAD", "refs/tags/v1"], ws), 2)
    failed(run_cli(["symbolic-ref", "ORIG_HEAD"], ws), 2)


def test_show_ref_empty_exits_1_silently(ws):
    result = run_cli(["show-ref"], ws)
    assert (result.returncode, result.stdout, result.stderr) == (1, b"", "")


def test_rev_parse(ws, wrepo, snap):
    first = snap["snapshot"]
    second = ok(run_cli(["commit-tree", "HEAD", "-p", "HEAD", "-m", "2"], ws)).strip().decode()
    ok(run_cli(["update-ref", "refs/heads/main", second], ws))
    ok(run_cli(["update-ref", "refs/tags/v1", first], ws))
    out = lines(ok(run_cli(["rev-parse", "HEAD", "HEAD~1", "HEAD^", "v1", "main", first[:4],
                            "HEAD:src/a.py", "HEAD:src", b"HEAD:" + NON_UTF8], ws)))
    assert out == [second.encode(), first.encode(), first.encode(), first.encode(), second.encode(),
                   first.encode(), sha(b"print('a')\n").encode(),
                   wrepo.store.get_tree(snap["tree"]).get(b"src").id.encode(),
                   sha(b"accent\n").encode()]


def test_commands_work_from_a_subfolder_and_with_C(ws, tmp_path, snap):
    sub = ws / "deep" / "er"
    sub.mkdir(parents=True)
    assert ok(run_cli(["rev-parse", "HEAD"], sub)).strip().decode() == snap["snapshot"]
    assert ok(run_cli(["-C", str(ws), "rev-parse", "HEAD"], tmp_path)).strip().decode() == snap["snapshot"]
    env = {"RNSTORE_DIR": str(ws / ".rnstore")}
    assert ok(run_cli(["rev-parse", "HEAD"], tmp_path, env=env)).strip().decode() == snap["snapshot"]


def test_a_held_lock_is_named_once_then_exit_1(ws, wrepo, snap):
    wrepo.config.set("core.lock_wait", "1s")
    holder = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent("""
            import sys
            from rnstore.fsutil import FileLock
            with FileLock(sys.argv[1]):
                print("locked", flush=True)
                sys.stdin.read()
        """), str(wrepo.dotdir / "lock")], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "locked\n"
        result = run_cli(["update-ref", "refs/tags/t", "HEAD"], ws)
    finally:
        holder.stdin.close()
        holder.wait(timeout=30)
        holder.stdout.close()
    assert result.returncode == 1 and result.stdout == b""
    err = result.stderr.splitlines()
    waiting = [line for line in err if line.startswith("waiting for")]
    assert len(waiting) == 1 and f"pid {holder.pid}" in waiting[0]
    errors = [line for line in err if line.startswith("error: ")]
    assert len(errors) == 1 and "timed out" in errors[0] and f"pid {holder.pid}" in errors[0]
    assert all(line.startswith(("waiting for", "error: ", "hint: ")) for line in err)
    # once the holder is gone the same command works
    ok(run_cli(["update-ref", "refs/tags/t", "HEAD"], ws))


# -- cat-file --batch / --batch-check, hash-object --stdin-paths -------------------------

BATCH_FILES = {
    b"README": b"read me\n",
    b"binary.bin": b"\n\n\x00\xff\n\r\nlast line without LF",
    b"empty": b"",
    b"newline-only": b"\n",
    NON_UTF8: b"accent\n",
}


@pytest.fixture
def batch_snap(ws, wrepo):
    """One snapshot of BATCH_FILES on main."""
    stage_paths(wrepo, {name: (data, "100644") for name, data in BATCH_FILES.items()})
    snapshot = plumbing.commit_tree(wrepo, plumbing.write_tree(wrepo), [], "first")
    plumbing.update_ref(wrepo, "refs/heads/main", snapshot)
    return snapshot


def batch(ws, requests: bytes, *flags: str):
    return run_cli(["cat-file", *(flags or ("--batch",))], ws, input=requests)


def batch_reply(oid: str, data: bytes, kind: str = "blob") -> bytes:
    return b"%s %s %d\n%s\n" % (oid.encode(), kind.encode(), len(data), data)


def test_batch_answers_every_request_in_order(ws, wrepo, batch_snap):
    names = list(BATCH_FILES)
    requests = b"".join(b"HEAD:%s\n" % name for name in names)
    assert ok(batch(ws, requests)) == b"".join(batch_reply(sha(BATCH_FILES[n]), BATCH_FILES[n]) for n in names)
    assert ok(batch(ws, requests, "--batch-check")) == b"".join(
        b"%s blob %d\n" % (sha(BATCH_FILES[n]).encode(), len(BATCH_FILES[n])) for n in names)


def test_batch_reads_ids_prefixes_and_revisions(ws, wrepo, batch_snap):
    readme = sha(b"read me\n")
    tree = wrepo.store.get_snapshot(batch_snap).tree
    requests = [readme, readme[:8], readme.upper(), "HEAD:README", "main:README", "HEAD", tree[:12]]
    stdout = ok(batch(ws, "".join(r + "\n" for r in requests).encode()))
    expected = batch_reply(readme, b"read me\n") * 5
    expected += batch_reply(batch_snap, ok(run_cli(["cat-file", "snapshot", "HEAD"], ws)), "snapshot")
    expected += batch_reply(tree, wrepo.store.get_tree(tree).encode(), "tree")
    assert stdout == expected


def test_batch_missing_and_ambiguous_names_use_gits_words_and_go_on(ws, wrepo, batch_snap):
    prefix, _ = store_two_blobs_sharing_a_prefix(wrepo)
    readme = sha(b"read me\n")
    requests = [f"{readme}", "nope", "0" * 64, "HEAD:no/such", prefix, "abc", "HEAD~x", "", "HEAD^3",
                f"{readme}:README", readme]
    stdout = ok(batch(ws, "".join(r + "\n" for r in requests).encode()))
    reply = batch_reply(readme, b"read me\n")
    assert stdout == (reply + b"nope missing\n" + b"0" * 64 + b" missing\n" + b"HEAD:no/such missing\n"
                      + prefix.encode() + b" ambiguous\n" + b"abc missing\nHEAD~x missing\n missing\n"
                      + b"HEAD^3 missing\n" + readme.encode() + b":README missing\n" + reply)
    check = ok(batch(ws, b"nope\n" + prefix.encode() + b"\n", "--batch-check"))
    assert check == b"nope missing\n" + prefix.encode() + b" ambiguous\n"


def test_batch_names_are_bytes_in_and_out(ws, wrepo, batch_snap):
    """A name that is not UTF-8 finds its file, and a missing one is echoed
    byte for byte; the last line may lack its LF."""
    stdout = ok(batch(ws, b"HEAD:" + NON_UTF8 + b"\nHEAD:\xff\xfe\nHEAD:README"))
    assert stdout == (batch_reply(sha(b"accent\n"), b"accent\n") + b"HEAD:\xff\xfe missing\n"
                      + batch_reply(sha(b"read me\n"), b"read me\n"))


def test_batch_of_nothing_prints_nothing(ws, batch_snap):
    assert ok(batch(ws, b"")) == b""
    assert ok(batch(ws, b"", "--batch-check")) == b""


def test_batch_streams_a_large_blob(ws, wrepo, batch_snap):
    from rnstore.store import BUFFERED_BLOB
    data = os.urandom(BUFFERED_BLOB + 12345)  # past the size read whole: verified, then streamed
    oid = wrepo.store.put("blob", data)
    stdout = ok(batch(ws, f"{oid}\nHEAD:README\n".encode()))
    assert stdout == batch_reply(oid, data) + batch_reply(sha(b"read me\n"), b"read me\n")


@pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")
def test_batch_output_is_gits_byte_for_byte(ws, wrepo, batch_snap, tmp_path):
    """The same requests to git and to rnstore: the same bytes, once git's
    SHA-1 ids are replaced by rnstore's SHA-256 ones for the same contents.
    Kind words are git's for blobs and trees; a snapshot is rnstore's
    word for git's commit."""
    git_dir = tmp_path / "git"
    subprocess.run(["git", "init", "-q", "--bare", str(git_dir)], check=True)
    git_ids = {}
    for data in BATCH_FILES.values():
        git_ids[subprocess.run(["git", "--git-dir", str(git_dir), "hash-object", "-w", "--stdin"], input=data,
                               capture_output=True, check=True).stdout.strip().decode()] = sha(data)
    order = list(git_ids) * 2 + ["nope", "HEAD:nope"]
    requests = "".join(oid + "\n" for oid in order).encode()
    for flag in ("--batch", "--batch-check"):
        theirs = subprocess.run(["git", "--git-dir", str(git_dir), "cat-file", flag], input=requests,
                                capture_output=True, check=True).stdout
        for git_id, our_id in git_ids.items():
            theirs = theirs.replace(git_id.encode(), our_id.encode())
        ours_requests = requests
        for git_id, our_id in git_ids.items():
            ours_requests = ours_requests.replace(git_id.encode(), our_id.encode())
        assert ok(batch(ws, ours_requests, flag)) == theirs, flag


@pytest.mark.parametrize("kind", ["flipped", "garbage", "hash mismatch", "large hash mismatch"])
def test_batch_reports_a_damaged_object_and_goes_on(ws, wrepo, batch_snap, kind):
    oid, frame = damaged_frame(kind)
    plant(wrepo, oid, frame)
    readme = sha(b"read me\n")
    for flag in ("--batch", "--batch-check"):
        result = batch(ws, f"{readme}\n{oid}\nHEAD:README\n".encode(), flag)
        header = b"%s blob 8\n" % readme.encode()
        if flag == "--batch-check":
            try:  # --batch-check reads the header alone, as `cat-file -s`: an intact one is answered
                kind_read, size = Repository.open(ws).store.header(oid)
            except CorruptObjectError:
                pass
            else:
                assert ok(result) == header + b"%s %s %d\n" % (oid.encode(), kind_read.encode(), size) + header
                continue
        assert result.returncode == 1, (flag, result.stderr)
        errors = result.stderr.splitlines()
        assert errors[0].startswith("error: ") and "corrupt" in errors[0] and oid in errors[0], errors
        assert b"SECRET" not in result.stdout
        expected = (header + b"read me\n\n") * 2 if flag == "--batch" else header * 2
        assert result.stdout == expected, (flag, result.stdout[:300])


def test_batch_answers_each_name_before_reading_the_next(ws, batch_snap):
    """A script may write one name, then read its answer before writing
    the next: the answer must come without the input being closed."""
    import select
    proc = subprocess.Popen([sys.executable, "-m", "rnstore", "cat-file", "--batch"], cwd=ws,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=cli_env())
    try:
        for name, data in ((b"README", b"read me\n"), (b"empty", b"")):
            proc.stdin.write(b"HEAD:%s\n" % name)
            proc.stdin.flush()
            expected = batch_reply(sha(data), data)
            got = b""
            while len(got) < len(expected):
                ready, _, _ = select.select([proc.stdout], [], [], 60)
                assert ready, f"no answer to HEAD:{name!r} while the input stays open; got {got!r}"
                chunk = os.read(proc.stdout.fileno(), 65536)
                assert chunk, proc.stderr.read()
                got += chunk
            assert got == expected
        proc.stdin.close()
        assert proc.wait(timeout=60) == 0
        assert proc.stdout.read() == b""
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.parametrize("args", [
    ["--batch", "HEAD"], ["--batch", "--batch-check"], ["--batch", "-p"], ["-t", "--batch-check"],
])
def test_batch_usage_errors(ws, batch_snap, args):
    failed(run_cli(["cat-file", *args], ws, input=b"HEAD\n"), 2)


def test_cat_file_batch_library(wrepo, batch_snap):
    """The library function behind the CLI: replies in order, payloads
    verified, missing and ambiguous names as statuses."""
    readme = sha(b"read me\n")
    replies = list(plumbing.cat_file_batch(wrepo, [readme, "nope", "HEAD:empty", "HEAD"], contents=True))
    assert [r.request for r in replies] == [readme, "nope", "HEAD:empty", "HEAD"]
    assert replies[0].info == plumbing.ObjectInfo(readme, "blob", 8)
    assert b"".join(replies[0].payload) == b"read me\n"
    assert (replies[1].status, replies[1].info, replies[1].error) == (plumbing.MISSING, None, None)
    assert replies[2].info.size == 0 and b"".join(replies[2].payload) == b""
    assert replies[3].info.kind == "snapshot"
    assert b"".join(replies[3].payload) == wrepo.store.get(batch_snap)[1]
    headers = list(plumbing.cat_file_batch(wrepo, [readme], contents=False))
    assert headers[0].info == plumbing.ObjectInfo(readme, "blob", 8) and list(headers[0].payload) == []
    oid, frame = damaged_frame("flipped")
    plant(wrepo, oid, frame)
    damaged, after = plumbing.cat_file_batch(Repository.open(wrepo.root), [oid, readme], contents=True)
    assert isinstance(damaged.error, CorruptObjectError) and damaged.info is None
    assert b"".join(after.payload) == b"read me\n"


def test_hash_object_stdin_paths(ws, wrepo):
    names = [b"one", b"two words", NON_UTF8, b"sub/three"]
    contents = [b"1\n", b"", b"\xff\x00", os.urandom(100_000)]
    for name, data in zip(names, contents):
        put_file(ws, name, data)
    requests = b"".join(n + b"\n" for n in names)
    expected = b"".join(sha(d).encode() + b"\n" for d in contents)
    assert ok(run_cli(["hash-object", "--stdin-paths"], ws, input=requests)) == expected
    assert not any(wrepo.store.has(sha(d)) for d in contents)
    assert ok(run_cli(["hash-object", "-w", "--stdin-paths"], ws, input=requests)) == expected
    assert all(wrepo.store.get(sha(d)) == ("blob", d) for d in contents)
    assert ok(run_cli(["hash-object", "--stdin-paths"], ws, input=b"")) == b""
    assert list(plumbing.hash_objects(None, [os.fsdecode(ws / "one")], write=False)) == [sha(b"1\n")]


def test_hash_object_stdin_paths_errors(ws, wrepo):
    put_file(ws, "one", b"1\n")
    put_file(ws, "later", b"stored only if every path is\n")
    result = run_cli(["hash-object", "-w", "--stdin-paths"], ws, input=b"later\nno-such-file\n")
    assert result.returncode == 2 and "no-such-file" in result.stderr, result
    assert not wrepo.store.has(sha(b"stored only if every path is\n"))  # ids come once all are stored
    failed(run_cli(["hash-object", "--stdin-paths", "one"], ws, input=b"one\n"), 2)
    failed(run_cli(["hash-object", "--stdin-paths", "--stdin"], ws, input=b"one\n"), 2)


def test_batch_reads_an_intact_copy_past_a_damaged_one(ws, wrepo):
    """An object stored twice, damaged in the pack read first and intact
    loose: --batch answers with the intact bytes, as every reader does."""
    from rnstore.packs import MIN_OBJECTS
    blobs = [b"packed %d\n" % i for i in range(MIN_OBJECTS)]
    with wrepo.store.batch():
        for data in blobs:
            wrepo.store.put("blob", data)
    oid = sha(blobs[0])
    pack = wrepo.store.file_of(oid)
    assert pack.suffix == ".pack", pack  # the batch made a pack
    frame = codec.compress("blob", blobs[0], 3)
    content = bytearray(pack.read_bytes())
    at = content.index(frame)
    content[at + len(frame) // 2] ^= 0x5A
    pack.write_bytes(bytes(content))
    plant(wrepo, oid, frame)  # the intact loose copy, read second
    assert ok(batch(ws, f"{oid}\n{sha(blobs[1])}\n".encode())) == \
        batch_reply(oid, blobs[0]) + batch_reply(sha(blobs[1]), blobs[1])
