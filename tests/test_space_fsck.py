"""fsck names each kind of problem with git's words and exits 1 for the real
ones; dangling objects are listed without failing."""

from __future__ import annotations

import json
import os

import pytest

from rnstore import codec
from rnstore.repo import Repository
from helpers.space import commit, make_repo, object_files, run


def fsck_json(repo, *args, cli: bool = True):
    """(exit code, the --json document), from a subprocess or (cli=False,
    faster) from the library, which the CLI prints as it is."""
    if cli:
        result = run(["fsck", "--json", *args], cwd=repo.root)
        code, document = result.returncode, json.loads(result.stdout)
    else:
        checked = Repository.open(repo.root).fsck(quick="--quick" in args)
        code, document = (0 if checked.ok else 1), checked.as_json()
    assert set(document) >= {"checked_objects", "problems"}
    for problem in document["problems"]:
        assert set(problem) >= {"kind", "id", "detail"}
        assert problem["kind"] in ("missing", "hash mismatch", "corrupt", "dangling")
    return code, document


def kinds(document) -> set[tuple[str, str]]:
    return {(p["kind"], p["id"]) for p in document["problems"]}


@pytest.fixture
def repo(tmp_path) -> Repository:
    repo = make_repo(tmp_path / "ws")
    commit(repo, {"src/train.py": "print('hi')\n" * 50, "README": "readme\n"}, "one")
    commit(repo, {"src/train.py": "print('bye')\n" * 50}, "two")
    return repo


def blob_of(repo, path: bytes) -> str:
    from rnstore.trees import lookup
    tree = repo.store.get_snapshot(repo.refs.head()[1]).tree
    return lookup(repo.store, tree, path).id


def test_a_clean_store_has_no_problems(repo):
    code, document = fsck_json(repo)
    assert code == 0 and document["problems"] == []
    assert document["checked_objects"] == len(object_files(repo.store_root))
    quick = run(["fsck", "--quick"], cwd=repo.root)
    assert quick.returncode == 0 and quick.stdout == b"" and "no problems" in quick.stderr


def test_flipped_byte_is_a_hash_mismatch_or_corrupt(repo):
    blob = blob_of(repo, b"src/train.py")
    path = repo.store.path_for(blob)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x40
    os.chmod(path, 0o644)
    path.write_bytes(bytes(data))
    code, document = fsck_json(repo)
    assert code == 1
    found = {p["kind"] for p in document["problems"] if p["id"] == blob}
    assert found and found <= {"hash mismatch", "corrupt"}
    text = run(["fsck"], cwd=repo.root)
    assert text.returncode == 1 and blob in text.out and text.stderr.startswith("error: fsck found 1 problem")


def test_valid_frame_with_other_content_is_a_hash_mismatch(repo):
    blob = blob_of(repo, b"src/train.py")
    path = repo.store.path_for(blob)
    os.chmod(path, 0o644)
    size = repo.store.header(blob)[1]
    path.write_bytes(codec.compress("blob", b"x" * size, 3))
    code, document = fsck_json(repo)
    assert code == 1 and kinds(document) == {("hash mismatch", blob)}
    # --quick skips content hashing: the same size hides it
    code, document = fsck_json(repo, "--quick")
    assert code == 0 and document["problems"] == []
    # a different size does not: the tree records the size
    path.write_bytes(codec.compress("blob", b"shorter\n", 3))
    code, document = fsck_json(repo, "--quick")
    assert code == 1 and [p["kind"] for p in document["problems"]] == ["corrupt"]
    assert "records" in document["problems"][0]["detail"]


def test_truncated_object_is_corrupt(repo):
    tree = repo.store.get_snapshot(repo.refs.head()[1]).tree
    path = repo.store.path_for(tree)
    data = path.read_bytes()
    os.chmod(path, 0o644)
    path.write_bytes(data[: len(data) // 2])
    for args in ((), ("--quick",)):
        code, document = fsck_json(repo, *args, cli=False)
        assert code == 1 and ("corrupt", tree) in kinds(document), args


def test_deleted_object_is_missing(repo):
    blob = blob_of(repo, b"README")
    os.unlink(repo.store.path_for(blob))
    code, document = fsck_json(repo, cli=False)
    assert code == 1 and ("missing", blob) in kinds(document)
    detail = next(p["detail"] for p in document["problems"] if p["id"] == blob)
    assert "README" in detail


def test_unreferenced_object_is_dangling_and_not_a_failure(repo):
    loose = run(["hash-object", "-w", "--stdin"], cwd=repo.root, input=b"loose\n").out.strip()
    code, document = fsck_json(repo)
    assert code == 0 and kinds(document) == {("dangling", loose)}
    text = run(["fsck"], cwd=repo.root)
    assert text.returncode == 0 and f"dangling blob {loose}" in text.out
    assert "1 dangling" in text.stderr
    # gc --prune now removes exactly the dangling objects
    assert repo.gc(prune="now").deleted_objects == 1
    assert fsck_json(repo)[1]["problems"] == []


def test_forgotten_snapshots_are_dangling_until_gc_and_a_missing_parent_is_fine(repo):
    first = repo.log().entries[-1].id
    repo.forget([first])
    code, document = fsck_json(repo, cli=False)
    assert code == 0 and ("dangling", first) in kinds(document)
    repo.gc(prune="now")
    code, document = fsck_json(repo, cli=False)
    assert code == 0 and document["problems"] == []


def test_broken_roots_are_named(repo):
    head = repo.refs.head()[1]
    (repo.dotdir / "refs" / "tags" / "broken").write_text("zzz\n")
    gone = "ab" * 32
    (repo.dotdir / "refs" / "tags" / "dangling-ref").write_text(gone + "\n")
    repo.journal.add("cd" * 32)
    code, document = fsck_json(repo, cli=False)
    assert code == 1
    found = kinds(document)
    assert ("corrupt", "refs/tags/broken") in found
    assert ("missing", gone) in found and ("missing", "cd" * 32) in found
    assert head not in {oid for _, oid in found}


@pytest.mark.parametrize("head,ref", [
    (b"ref: refs/heads/../../evil\n", b"\xff\xfe\n"),
    (b"\xff\n", b""),
])
def test_unreadable_head_and_refs_are_corrupt_roots(repo, head, ref):
    (repo.dotdir / "HEAD").write_bytes(head)
    (repo.dotdir / "refs" / "tags" / "odd").write_bytes(ref)
    code, document = fsck_json(repo)
    assert code == 1
    assert {("corrupt", "HEAD"), ("corrupt", "refs/tags/odd")} <= kinds(document)


def test_corrupt_index_is_named(repo):
    data = bytearray(repo.index_path.read_bytes())
    data[-5] ^= 0x01
    repo.index_path.write_bytes(bytes(data))
    code, document = fsck_json(repo, cli=False)
    assert code == 1
    assert any(p["kind"] == "corrupt" and "index" in p["id"] for p in document["problems"])


def test_a_tree_entry_with_a_wrong_size_is_corrupt(repo):
    from rnstore.objects import Tree, TreeEntry
    blob = repo.store.put("blob", b"12345")
    tree = repo.store.put_tree(Tree.from_entries([TreeEntry(b"f", "100644", blob, 99)]))
    from rnstore import plumbing
    snapshot = plumbing.commit_tree(repo, tree, [], "lies about a size")
    code, document = fsck_json(repo, cli=False)
    assert code == 1 and ("corrupt", tree) in kinds(document)
    assert snapshot not in {oid for _, oid in kinds(document)}


def test_fsck_library_result(repo):
    blob = blob_of(repo, b"README")
    os.unlink(repo.store.path_for(blob))
    result = repo.fsck(quick=True)
    assert not result.ok
    assert [(p.kind, p.id) for p in result.problems] == [("missing", blob)]
    assert result.as_json()["problems"][0]["kind"] == "missing"


def test_a_pack_whose_name_is_not_its_checksum_is_corrupt_and_gc_keeps_it(repo):
    """It was accepted silently. Its objects still read (each is verified
    against its id), so nothing is lost: fsck names it, gc leaves it be."""
    repo.gc(prune="now", aggressive=True)
    [pack] = list(repo.store_root.rglob("*.pack"))
    pack_folder = pack.parent
    misnamed = pack_folder / ("0" * 64 + ".pack")
    pack.rename(misnamed)
    code, document = fsck_json(repo)
    assert code == 1
    assert kinds(document) == {("corrupt", misnamed.name)}
    assert f"checksum names it {pack.name}" in document["problems"][0]["detail"]
    assert Repository.open(repo.root).gc(prune="now").deleted_objects == 0
    assert misnamed.exists() and Repository.open(repo.root).fsck(quick=True).ok is False
    assert [e.snapshot.message for e in Repository.open(repo.root).log()] == ["two", "one"]
