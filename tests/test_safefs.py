"""safefs: writing into a folder that may hold hostile entries. Nothing is
followed: a symlink or a file where a folder should be is refused, a file
placed through a descriptor lands where that descriptor points even if its
folder was swapped for a symlink since, and removing a folder never reaches
outside it. Real folders, real symlinks; /dev/shm gives a second file system
when there is one."""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path

import pytest

from rnstore.errors import ConflictError
from rnstore.safefs import O_DIR, Dirs, place, prune, remove_folder


@pytest.fixture
def root(tmp_path):
    folder = tmp_path / "root"
    folder.mkdir()
    return folder


@pytest.fixture
def outside(tmp_path):
    """A folder with a file, that nothing in `root` may touch."""
    folder = tmp_path / "outside"
    folder.mkdir()
    (folder / "secret").write_bytes(b"keep me\n")
    return folder


@pytest.fixture
def dirs(root):
    fd = os.open(root, O_DIR)
    opened = Dirs(fd)
    yield opened
    opened.close()
    os.close(fd)


def listing(folder: Path) -> dict[str, str]:
    """Everything below `folder`: relative path -> kind (never following links)."""
    found = {}
    for path in sorted(folder.rglob("*")):
        mode = path.lstat().st_mode
        kind = "link" if stat.S_ISLNK(mode) else "dir" if stat.S_ISDIR(mode) else "file"
        found[str(path.relative_to(folder))] = kind
    return found


def staged(folder: Path, name: str, data: bytes, mode: int = 0o644) -> tuple[int, bytes]:
    """A file ready in a staging folder: (the folder's descriptor, its name)."""
    (folder / name).write_bytes(data)
    os.chmod(folder / name, mode)
    return os.open(folder, O_DIR), name.encode()


# -- Dirs ----------------------------------------------------------------------------------

def test_dirs_create_folders_one_component_at_a_time(root, dirs):
    fd = dirs.open(b"a/b/c", create=True)
    assert os.path.samestat(os.fstat(fd), os.stat(root / "a" / "b" / "c"))
    assert dirs.open(b"a/b/c") == fd  # kept open
    assert dirs.open(b"") == dirs.root_fd
    assert dirs.open(b"a/missing") is None
    assert listing(root) == {"a": "dir", "a/b": "dir", "a/b/c": "dir"}


def test_dirs_refuse_a_symlink_to_a_folder(root, outside, dirs):
    (root / "link").symlink_to(outside)
    assert dirs.open(b"link") is None
    assert dirs.open(b"link/sub") is None
    with pytest.raises(ConflictError) as caught:
        dirs.open(b"link/sub", create=True)
    assert caught.value.paths == ["link"]
    assert listing(outside) == {"secret": "file"}


def test_dirs_refuse_a_file_on_the_way(root, dirs):
    (root / "file").write_bytes(b"x")
    assert dirs.open(b"file") is None
    with pytest.raises(ConflictError):
        dirs.open(b"file/sub", create=True)
    assert (root / "file").read_bytes() == b"x"


def test_dirs_keep_a_bounded_number_of_descriptors(root, dirs):
    before = len(os.listdir("/proc/self/fd"))
    for i in range(Dirs.CAPACITY * 2):
        assert dirs.open(f"d{i}/sub".encode(), create=True) is not None
    assert len(os.listdir("/proc/self/fd")) - before <= Dirs.CAPACITY
    dirs.forget(b"d127")
    assert dirs.open(b"d127/sub") is not None  # opened again


# -- place ---------------------------------------------------------------------------------

def test_place_lands_where_the_descriptor_points_after_its_folder_became_a_symlink(
        root, outside, dirs, tmp_path):
    """A folder opened, then swapped for a symlink to elsewhere: the file
    goes into the folder that was opened, never through the symlink."""
    parent_fd = dirs.open(b"a", create=True)
    os.rename(root / "a", root / "a-moved")
    (root / "a").symlink_to(outside)
    stage = tmp_path / "stage"
    stage.mkdir()
    stage_fd, name = staged(stage, "f", b"new\n")
    try:
        place(stage_fd, name, parent_fd, b"f")
    finally:
        os.close(stage_fd)
    assert (root / "a-moved" / "f").read_bytes() == b"new\n"
    assert listing(outside) == {"secret": "file"}
    fresh = Dirs(dirs.root_fd)
    assert fresh.open(b"a") is None  # and a new walk refuses the symlink


def test_place_replaces_a_symlink_without_following_it(root, outside, dirs, tmp_path):
    (root / "x").symlink_to(outside / "secret")
    stage = tmp_path / "stage"
    stage.mkdir()
    stage_fd, name = staged(stage, "x", b"mine\n")
    try:
        place(stage_fd, name, dirs.root_fd, b"x")
    finally:
        os.close(stage_fd)
    assert not (root / "x").is_symlink() and (root / "x").read_bytes() == b"mine\n"
    assert (outside / "secret").read_bytes() == b"keep me\n"


def test_place_across_file_systems_copies_files_and_links(root, dirs):
    if not os.path.isdir("/dev/shm") or os.stat("/dev/shm").st_dev == os.stat(root).st_dev:
        pytest.skip("no second file system to stage on")
    with tempfile.TemporaryDirectory(dir="/dev/shm") as other:
        stage = Path(other)
        stage_fd, name = staged(stage, "tool", b"#!/bin/sh\n", 0o755)
        (stage / "link").symlink_to("../elsewhere")
        try:
            place(stage_fd, name, dirs.root_fd, b"tool")
            place(stage_fd, b"link", dirs.root_fd, b"link")
        finally:
            os.close(stage_fd)
    assert (root / "tool").read_bytes() == b"#!/bin/sh\n"
    assert stat.S_IMODE((root / "tool").stat().st_mode) == 0o755
    assert os.readlink(root / "link") == "../elsewhere"
    assert listing(root) == {"link": "link", "tool": "file"}  # no temporary names left


# -- removing folders ----------------------------------------------------------------------

def test_remove_folder_without_force_removes_only_empty_folders(root, dirs):
    (root / "in-the-way" / "a" / "b").mkdir(parents=True)
    (root / "in-the-way" / "c").mkdir()
    remove_folder(dirs.root_fd, b"in-the-way", False)
    assert listing(root) == {}

    (root / "busy" / "a").mkdir(parents=True)
    (root / "busy" / "a" / "appeared").write_bytes(b"since the plan\n")
    with pytest.raises(OSError):
        remove_folder(dirs.root_fd, b"busy", False)
    assert (root / "busy" / "a" / "appeared").read_bytes() == b"since the plan\n"


def test_remove_folder_with_force_never_reaches_outside(root, outside, dirs):
    (root / "tree" / "sub").mkdir(parents=True)
    (root / "tree" / "sub" / "file").write_bytes(b"x")
    (root / "tree" / "escape").symlink_to(outside)
    (root / "tree" / "sub" / "escape-file").symlink_to(outside / "secret")
    remove_folder(dirs.root_fd, b"tree", True)
    assert listing(root) == {}
    assert listing(outside) == {"secret": "file"}
    assert (outside / "secret").read_bytes() == b"keep me\n"


def test_prune_removes_emptied_folders_deepest_first(root, dirs):
    for folder in ("a/b/c", "a/keep", "needed/x"):
        (root / folder).mkdir(parents=True)
    (root / "a" / "keep" / "untracked").write_bytes(b"u")
    prune(dirs, [b"a/b/c/gone.txt", b"a/keep/gone.txt", b"needed/x/gone.txt"], {b"needed/x"})
    assert listing(root) == {"a": "dir", "a/keep": "dir", "a/keep/untracked": "file",
                             "needed": "dir", "needed/x": "dir"}
