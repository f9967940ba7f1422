"""refs.py: HEAD, branches, tags, compare-and-swap updates; the journal."""

from __future__ import annotations

import pytest

from rnstore.errors import CorruptStoreError, InvalidValueError, RefConflictError
from rnstore.refs import ANY, HEAD, Journal, RefStore, branch_ref, check_ref_name, short_name, tag_ref

A, B, C = "a" * 64, "b" * 64, "c" * 64


@pytest.fixture
def refs(repo) -> RefStore:
    return repo.refs


def test_fresh_workspace_head_is_unborn_main(refs, repo):
    assert (repo.dotdir / "HEAD").read_bytes() == b"ref: refs/heads/main\n"
    assert refs.head() == ("refs/heads/main", None)
    assert refs.resolve(HEAD) is None
    assert refs.list() == {}


def test_update_and_resolve(refs, repo):
    refs.update("refs/heads/main", A)
    assert (repo.dotdir / "refs/heads/main").read_bytes() == (A + "\n").encode()
    assert refs.resolve("refs/heads/main") == A
    assert refs.head() == ("refs/heads/main", A)
    assert refs.resolve(HEAD) == A


def test_cas_succeeds_when_expected_matches(refs):
    refs.update("refs/heads/main", A, None)  # None: must not exist yet
    refs.update("refs/heads/main", B, A)
    assert refs.resolve("refs/heads/main") == B


@pytest.mark.parametrize("expected", [None, A, C])
def test_cas_fails_when_expected_differs(refs, expected):
    refs.update("refs/heads/main", B)
    with pytest.raises(RefConflictError) as info:
        refs.update("refs/heads/main", C, expected)
    assert B in str(info.value)
    assert refs.resolve("refs/heads/main") == B


def test_cas_on_absent_ref_fails_when_something_expected(refs):
    with pytest.raises(RefConflictError):
        refs.update("refs/heads/feature", A, B)
    assert refs.resolve("refs/heads/feature") is None


def test_update_refuses_non_ids(refs):
    for bad in ("", "HEAD", A[:10], A.upper(), A + "\n"):
        with pytest.raises(InvalidValueError):
            refs.update("refs/heads/main", bad)


def test_update_head_when_attached_moves_the_branch(refs, repo):
    refs.update(HEAD, A)
    assert refs.resolve("refs/heads/main") == A
    assert (repo.dotdir / "HEAD").read_bytes() == b"ref: refs/heads/main\n"
    refs.update(HEAD, B, A)
    assert refs.resolve("refs/heads/main") == B
    with pytest.raises(RefConflictError):
        refs.update(HEAD, C, A)


def test_detached_head(refs, repo):
    refs.update("refs/heads/main", A)
    refs.update(HEAD, B, follow_head=False)
    assert (repo.dotdir / "HEAD").read_bytes() == (B + "\n").encode()
    assert refs.head() == (None, B)
    assert refs.symbolic_head() is None
    assert refs.resolve("refs/heads/main") == A  # the branch stayed
    refs.update(HEAD, C, B)  # detached: HEAD itself moves
    assert refs.head() == (None, C)
    refs.set_head_symbolic("refs/heads/main")
    assert refs.head() == ("refs/heads/main", A)


def test_attach_head_to_unborn_branch(refs):
    refs.set_head_symbolic("refs/heads/other")
    assert refs.head() == ("refs/heads/other", None)


@pytest.mark.parametrize("ref", ["refs/tags/v1", "refs/x", "main", "HEAD", "refs/heads/a b"])
def test_head_attaches_only_to_branches(refs, ref):
    with pytest.raises(InvalidValueError):
        refs.set_head_symbolic(ref)
    assert refs.symbolic_head() == "refs/heads/main"


def test_delete(refs, repo):
    refs.update("refs/tags/v1", A)
    refs.delete("refs/tags/v1")
    assert refs.resolve("refs/tags/v1") is None
    assert not (repo.dotdir / "refs/tags/v1").exists()
    with pytest.raises(InvalidValueError):
        refs.delete("refs/tags/v1")


def test_delete_cas(refs):
    refs.update("refs/tags/v1", A)
    with pytest.raises(RefConflictError):
        refs.delete("refs/tags/v1", B)
    assert refs.resolve("refs/tags/v1") == A
    refs.delete("refs/tags/v1", A)
    assert refs.resolve("refs/tags/v1") is None


def test_head_cannot_be_deleted(refs):
    with pytest.raises(InvalidValueError):
        refs.delete(HEAD)


def test_list_sorted_and_nested(refs):
    refs.update("refs/tags/v2", B)
    refs.update("refs/heads/main", A)
    refs.update("refs/heads/feature/x", C)
    refs.update("refs/tags/v1", A)
    assert list(refs.list()) == ["refs/heads/feature/x", "refs/heads/main", "refs/tags/v1", "refs/tags/v2"]
    assert refs.list("refs/tags/") == {"refs/tags/v1": A, "refs/tags/v2": B}


def test_list_skips_leftover_temp_files(refs, repo):
    refs.update("refs/heads/main", A)
    (repo.dotdir / "refs/heads/.tmp-main-1-abcd").write_text(B)
    assert refs.list() == {"refs/heads/main": A}


def test_no_temp_files_left(refs, repo):
    for oid in (A, B, C):
        refs.update("refs/heads/main", oid)
    refs.update(HEAD, A, follow_head=False)
    leftovers = [p for p in repo.dotdir.rglob(".tmp-*")]
    assert leftovers == []


def test_corrupt_ref_and_head(refs, repo):
    (repo.dotdir / "refs/heads/main").write_text("garbage\n")
    with pytest.raises(CorruptStoreError):
        refs.resolve("refs/heads/main")
    with pytest.raises(CorruptStoreError):
        refs.head()
    (repo.dotdir / "HEAD").write_text("nonsense\n")
    with pytest.raises(CorruptStoreError):
        refs.head()
    (repo.dotdir / "HEAD").unlink()
    with pytest.raises(CorruptStoreError):
        refs.head()


@pytest.mark.parametrize("name", [
    "refs/heads/main", "refs/tags/v1.0", "refs/heads/feature/x-y_z", "refs/heads/caf\u00e9",
    "refs/remotes/origin/main",
])
def test_valid_ref_names(name):
    check_ref_name(name)


@pytest.mark.parametrize("name", [
    "main", "refs/main", "heads/main", "refs/heads/", "refs/heads/a/", "refs//heads/a",
    "refs/heads/.hidden", "refs/heads/a/.b", "refs/heads/a..b", "refs/heads/a.lock",
    "refs/heads/a.", "refs/heads/a b", "refs/heads/a~1", "refs/heads/a^", "refs/heads/a:b",
    "refs/heads/a?", "refs/heads/a*", "refs/heads/a[", "refs/heads/a\\b", "refs/heads/a@{1}",
    "refs/heads/a\x00", "refs/heads/a\x7f", "refs/heads/a\tb", "refs/heads/../../HEAD",
    "refs/../config", "",
])
def test_invalid_ref_names(name):
    with pytest.raises(InvalidValueError):
        check_ref_name(name)


def test_invalid_names_are_refused_everywhere(refs, repo):
    for call in (lambda: refs.update("refs/heads/../../x", A),
                 lambda: refs.resolve("refs/heads/../../HEAD"),
                 lambda: refs.delete("refs/heads/a..b"),
                 lambda: refs.update("refs/heads/a b", A)):
        with pytest.raises(InvalidValueError):
            call()
    assert not (repo.root / "x").exists()


def test_branch_and_tag_helpers():
    assert branch_ref("main") == "refs/heads/main"
    assert branch_ref("refs/heads/x") == "refs/heads/x"
    assert tag_ref("v1") == "refs/tags/v1"
    assert short_name("refs/heads/a/b") == "a/b"
    assert short_name("refs/tags/v1") == "v1"
    assert short_name("refs/other/x") == "refs/other/x"
    with pytest.raises(InvalidValueError):
        branch_ref("a..b")
    with pytest.raises(InvalidValueError):
        tag_ref("")


def test_updates_take_the_workspace_lock(repo):
    taken = []

    class Recording:
        def __enter__(self):
            taken.append("enter")

        def __exit__(self, *exc):
            taken.append("exit")

    refs = RefStore(repo.dotdir, lambda: Recording())
    refs.update("refs/heads/main", A)
    refs.set_head_symbolic("refs/heads/main")
    refs.delete("refs/heads/main", A)
    assert taken == ["enter", "exit"] * 3


def test_any_is_unconditional(refs):
    refs.update("refs/heads/main", A, ANY)
    refs.update("refs/heads/main", B, ANY)
    assert refs.resolve("refs/heads/main") == B


# -- the journal -------------------------------------------------------------------------

def test_journal_add_discard_iterate(repo):
    journal = repo.journal
    assert list(journal) == []
    journal.add(B)
    journal.add(A)
    journal.add(A)  # idempotent
    assert list(journal) == [A, B]
    assert A in journal and C not in journal
    assert (repo.dotdir / "snapshots" / A).read_bytes() == b""
    assert journal.discard(A) is True
    assert journal.discard(A) is False
    assert list(journal) == [B]


def test_journal_ignores_foreign_files(repo):
    repo.journal.add(A)
    folder = repo.dotdir / "snapshots"
    (folder / ".tmp-x").write_bytes(b"")
    (folder / "notes.txt").write_bytes(b"")
    (folder / A.upper()).write_bytes(b"")
    assert list(repo.journal) == [A]


def test_journal_folder_created_on_demand(tmp_path):
    journal = Journal(tmp_path / "snapshots", durable=False)
    assert list(journal) == []
    journal.add(C)
    assert list(journal) == [C]
