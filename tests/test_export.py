"""export: deterministic archives checked with the system's own tools (tar,
unzip, zstd, gzip), streaming to stdout, the dir format, path filters, and
damaged objects that must leave no output behind."""

from __future__ import annotations

import io
import os
import shutil
import stat
import subprocess
import tarfile
import zipfile
from datetime import datetime, timezone
from pathlib import Path

import pytest

from rnstore import codec
from rnstore.errors import CorruptObjectError, InvalidValueError
from rnstore.export import export, format_for
from rnstore.repo import Repository
from rnstore.trees import iter_tree
from helpers.porcelain import failed, ok, picture

NON_UTF8 = b"caf\xe9.txt"
LONG = "a-rather-long-folder-name-" * 3 + "/" + "and-a-long-file-name-" * 3 + ".txt"  # > 100 bytes

TOOLS = {name: shutil.which(name) for name in ("tar", "unzip", "zstd", "gzip")}


def needs(*names: str) -> None:
    missing = [n for n in names if not TOOLS[n]]
    if missing:
        pytest.skip(f"{', '.join(missing)} not installed")


@pytest.fixture(scope="module")
def snap(tmp_path_factory):
    """A workspace with one snapshot of everything a snapshot can hold."""
    root = tmp_path_factory.mktemp("export") / "ws"
    Repository.init(root, default_ignore=False).config.set("core.fsync", "false")
    repo = Repository.open(root)
    base = os.fsencode(root)
    files = {
        b"README.md": (b"# experiment\n", 0o644),
        b"train.py": (b"#!/usr/bin/env python\nprint('train')\n", 0o755),
        b"src/model.py": (b"class Model: pass\n", 0o644),
        b"src.txt": (b"sorts before src/ in path order\n", 0o644),
        b"src/deep/er/leaf.txt": (b"leaf\n", 0o644),
        NON_UTF8: (b"non-utf8 name\n", 0o644),
        os.fsencode(LONG): (b"long\n", 0o644),
        b"big.bin": (bytes(range(256)) * 12_000, 0o644),  # 3 MB: several chunks
    }
    for path, (data, perm) in files.items():
        full = os.path.join(base, path)
        os.makedirs(os.path.dirname(full), exist_ok=True)
        with open(full, "wb") as fh:
            fh.write(data)
        os.chmod(full, perm)
    os.symlink(b"src/model.py", os.path.join(base, b"link-rel"))
    os.symlink(b"/etc/hostname", os.path.join(base, b"link-abs"))
    os.makedirs(os.path.join(base, b"empty"))
    os.makedirs(os.path.join(base, b"nested/empty/folder"))
    repo.add(["."], cwd=root)
    snapshot_id = repo.commit("everything").id
    return repo, snapshot_id


def snapshot_epoch(repo, snapshot_id: str) -> int:
    text = repo.store.get_snapshot(snapshot_id).time
    return int(datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc).timestamp())


def extract(archive: Path, into: Path, fmt: str) -> None:
    into.mkdir()
    if fmt == "zip":
        subprocess.run([TOOLS["unzip"], "-q", str(archive), "-d", str(into)], check=True)
    elif fmt == "tar.zst":
        plain = into.parent / (into.name + ".tar")
        subprocess.run([TOOLS["zstd"], "-q", "-d", str(archive), "-o", str(plain)], check=True)
        subprocess.run([TOOLS["tar"], "-xf", str(plain), "-C", str(into)], check=True)
    else:
        subprocess.run([TOOLS["tar"], "-xf", str(archive), "-C", str(into)], check=True)


# -- every archive format --------------------------------------------------------------


@pytest.mark.parametrize("name", ["code.tar", "code.tar.gz", "code.tar.zst", "code.zip"])
def test_archives_are_deterministic_and_extract_to_the_snapshot(run_cli, snap, tmp_path, name):
    repo, snapshot_id = snap
    fmt = format_for(name, None)
    needs(*{"zip": ["unzip"], "tar.zst": ["zstd", "tar"]}.get(fmt, ["tar"]))
    first, second = tmp_path / "one" / name, tmp_path / "two" / name
    first.parent.mkdir()
    second.parent.mkdir()
    result = ok(run_cli(["export", snapshot_id, "-o", str(first)], cwd=repo.root))
    assert result.stdout == b"" and len(result.stderr.splitlines()) == 1
    ok(run_cli(["export", snapshot_id[:8], "-o", str(second), "--no-progress"], cwd=repo.root))
    assert first.read_bytes() == second.read_bytes()
    assert os.listdir(first.parent) == [name]  # no temp file left beside it

    out = tmp_path / "extracted"
    extract(first, out, fmt)
    assert picture(out) == picture(repo.root)
    assert os.readlink(out / "link-abs") == "/etc/hostname"
    assert os.stat(out / "train.py").st_mode & 0o111


def test_tar_headers_are_fixed(snap, tmp_path):
    needs("tar")
    repo, snapshot_id = snap
    archive = tmp_path / "code.tar"
    export(repo, snapshot_id, archive)
    epoch = snapshot_epoch(repo, snapshot_id)
    with tarfile.open(archive, encoding="utf-8", errors="surrogateescape") as tar:
        members = tar.getmembers()
        assert not tar.pax_headers
    names = [os.fsencode(m.name) for m in members]
    key = [n + b"/" if m.isdir() else n for n, m in zip(names, members)]
    assert key == sorted(key)  # path order, each folder before its content
    assert {m.mtime for m in members} == {epoch}
    assert {(m.uid, m.gid, m.uname, m.gname) for m in members} == {(0, 0, "", "")}
    modes = {os.fsencode(m.name): m.mode for m in members}
    assert modes[b"train.py"] == 0o755 and modes[b"README.md"] == 0o644 and modes[b"empty"] == 0o755
    assert b"nested/empty/folder" in names and b"src" in names  # folders included
    listing = subprocess.run([TOOLS["tar"], "-tvf", str(archive)], capture_output=True, check=True).stdout
    assert b"0/0" in listing and b"link-rel -> src/model.py" in listing
    assert LONG.encode() in listing


def test_gzip_header_has_no_time_and_no_name(snap, tmp_path):
    repo, snapshot_id = snap
    archive = tmp_path / "code.tgz"
    export(repo, snapshot_id, archive)
    data = archive.read_bytes()
    assert data[:3] == b"\x1f\x8b\x08"
    assert data[3] & 0x08 == 0  # no FNAME
    assert data[4:8] == b"\0\0\0\0"  # MTIME 0


def test_zip_entries_carry_unix_modes_and_raw_names(snap, tmp_path):
    needs("unzip")
    repo, snapshot_id = snap
    archive = tmp_path / "code.zip"
    export(repo, snapshot_id, archive)
    with zipfile.ZipFile(archive) as zf:
        infos = {i.orig_filename: i for i in zf.infolist()}
        assert {i.create_system for i in infos.values()} == {3}
        link = infos["link-rel"]
        assert stat.S_ISLNK(link.external_attr >> 16)
        assert zf.read(link) == b"src/model.py"
        assert (infos["train.py"].external_attr >> 16) == stat.S_IFREG | 0o755
        assert stat.S_ISDIR(infos["empty/"].external_attr >> 16)
        dates = {i.date_time for i in infos.values()}
    moment = datetime.fromtimestamp(snapshot_epoch(repo, snapshot_id), timezone.utc)
    assert dates == {(moment.year, moment.month, moment.day, moment.hour, moment.minute,
                      moment.second // 2 * 2)}
    listing = subprocess.run([TOOLS["unzip"], "-Z", str(archive)], capture_output=True, check=True).stdout
    assert b"-rwxr-xr-x" in listing and b"lrwxrwxrwx" in listing and b"unx" in listing


# -- streams, folders, filters -----------------------------------------------------------


def test_stdout_streams_the_same_tar(run_cli, snap, tmp_path):
    repo, snapshot_id = snap
    file_copy = tmp_path / "code.tar"
    export(repo, snapshot_id, file_copy)
    result = ok(run_cli(["export", snapshot_id, "-o", "-", "-q"], cwd=repo.root))
    assert result.stdout == file_copy.read_bytes()
    assert result.stderr == ""
    gz = ok(run_cli(["export", snapshot_id, "-o", "-", "--format", "tar.gz", "-q"], cwd=repo.root))
    with tarfile.open(fileobj=io.BytesIO(gz.stdout), mode="r:gz") as tar:
        assert "README.md" in tar.getnames()


def test_dir_format_is_a_checkout_into_a_new_folder(run_cli, snap, tmp_path):
    repo, snapshot_id = snap
    out = tmp_path / "exported"
    ok(run_cli(["export", snapshot_id, "-o", str(out), "--format", "dir"], cwd=repo.root))
    assert picture(out) == picture(repo.root)


def test_paths_select_entries_and_their_folders(run_cli, snap, tmp_path):
    repo, snapshot_id = snap
    archive = tmp_path / "part.tar"
    ok(run_cli(["export", snapshot_id, "-o", str(archive), "--", "src/deep", "README.md"],
               cwd=repo.root))
    with tarfile.open(archive) as tar:
        names = tar.getnames()
    assert names == ["README.md", "src", "src/deep", "src/deep/er", "src/deep/er/leaf.txt"]
    failed(run_cli(["export", snapshot_id, "-o", str(tmp_path / "x.tar"), "--", "nope"],
                   cwd=repo.root), 2, "nope")
    assert not (tmp_path / "x.tar").exists()


def test_bad_usage_exits_2(run_cli, snap, tmp_path):
    repo, snapshot_id = snap
    failed(run_cli(["export", snapshot_id, "-o", str(tmp_path / "code.rar")], cwd=repo.root), 2, "--format")
    failed(run_cli(["export", snapshot_id, "-o", "x.tar", "--format", "7z"], cwd=repo.root), 2, "7z")
    failed(run_cli(["export", "no-such-rev", "-o", str(tmp_path / "x.tar")], cwd=repo.root), 2)
    with pytest.raises(InvalidValueError):
        format_for("out.tar.bz2", None)
    assert [format_for(n, None) for n in ("a.tgz", "a.tzst", "a.TAR.ZST", "a.zip")] == \
        ["tar.gz", "tar.zst", "tar.zst", "zip"]


# -- memory and damage ---------------------------------------------------------------------


def test_memory_stays_bounded_for_a_large_blob(tmp_path):
    import tracemalloc
    repo = Repository.init(tmp_path / "ws", default_ignore=False)
    size = 24 << 20  # above the size iter_blob buffers
    (repo.root / "large.bin").write_bytes(os.urandom(1 << 20) * 24)
    repo.add(["."], cwd=repo.root)
    snapshot_id = repo.commit("large").id
    for target in (tmp_path / "large.tar.zst", tmp_path / "large.zip", io.BytesIO()):
        sink = target if isinstance(target, io.BytesIO) else None
        tracemalloc.start()
        try:
            export(repo, snapshot_id, sink if sink is not None else target)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        limit = size + (12 << 20) if sink is not None else 12 << 20  # a BytesIO holds the tar
        assert peak < limit, f"{target}: peak {peak >> 20} MiB"


def _corrupt_blob(repo, data: bytes) -> None:
    import hashlib
    path = repo.store.path_for(hashlib.sha256(data).hexdigest())
    os.chmod(path, 0o644)
    path.write_bytes(codec.compress("blob", data[:-1] + b"!", 3))


def test_a_corrupt_object_fails_and_leaves_no_output(run_cli, tmp_path):
    repo = Repository.init(tmp_path / "ws", default_ignore=False)
    good, bad = b"fine\n", b"this blob will be damaged\n" * 50
    (repo.root / "a.txt").write_bytes(good)
    (repo.root / "sub").mkdir()
    (repo.root / "sub" / "damaged.txt").write_bytes(bad)
    repo.add(["."], cwd=repo.root)
    snapshot_id = repo.commit("m").id
    _corrupt_blob(repo, bad)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    for name in ("x.tar", "x.tar.gz", "x.tar.zst", "x.zip"):
        failed(run_cli(["export", snapshot_id, "-o", str(out_dir / name)], cwd=repo.root),
               1, "sub/damaged.txt")
    assert os.listdir(out_dir) == []
    streamed = run_cli(["export", snapshot_id, "-o", "-"], cwd=repo.root)
    failed(streamed, 1, "sub/damaged.txt")
    assert bad[:20] not in streamed.stdout and b"this blob will" not in streamed.stdout
    failed(run_cli(["export", snapshot_id, "-o", str(out_dir / "d"), "--format", "dir"],
                   cwd=repo.root), 1, "sub/damaged.txt")
    assert not (out_dir / "d" / "sub" / "damaged.txt").exists()
    with pytest.raises(CorruptObjectError):
        export(repo, snapshot_id, io.BytesIO())


def test_repository_export_method(snap, tmp_path):
    repo, snapshot_id = snap
    result = repo.export(snapshot_id, tmp_path / "api.zip")
    assert (result.format, result.snapshot) == ("zip", snapshot_id)
    entries = list(iter_tree(repo.store, repo.store.get_snapshot(snapshot_id).tree))
    assert result.files == 10 and result.folders == 8
    assert result.bytes == sum(e.size for e in entries if e.mode in ("100644", "100755"))


def test_a_killed_exports_temporary_archive_is_removed_by_the_next(snap, tmp_path):
    import subprocess
    repo, snapshot_id = snap
    proc = subprocess.Popen(["true"])
    proc.wait()
    old = tmp_path / f".tmp-code.tar-{proc.pid}-0123abcd"
    alive = tmp_path / f".tmp-code.tar-{os.getpid()}-0123abcd"
    other = tmp_path / f".tmp-other.tar-{proc.pid}-0123abcd"
    for path in (old, alive, other):
        path.write_bytes(b"half an archive")
        os.utime(path, (1_000_000_000, 1_000_000_000))
    export(repo, snapshot_id, tmp_path / "code.tar")
    assert not old.exists() and alive.exists() and other.exists()


def _tarfile_archive(repo, snapshot_id: str, mtime: int) -> bytes:
    """The archive tarfile itself writes for a snapshot (GNU format), the
    reference export's own tar writer must match byte for byte."""
    from rnstore.objects import MODE_EXEC, MODE_LINK, MODE_TREE
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.GNU_FORMAT, encoding="utf-8",
                      errors="surrogateescape") as tar:
        leaves = list(iter_tree(repo.store, repo.store.get_snapshot(snapshot_id).tree))
        folders = {b"/".join(e.path.split(b"/")[:depth]) for e in leaves
                   for depth in range(1, e.path.count(b"/") + 1)}
        entries = [(path, MODE_TREE, None) for path in folders - {e.path for e in leaves}]
        entries += [(e.path, e.mode, e.id) for e in leaves]
        entries.sort(key=lambda e: e[0] + b"/" if e[1] == MODE_TREE else e[0])  # folders first
        for path, mode, oid in entries:
            info = tarfile.TarInfo(os.fsdecode(path))
            info.mtime, info.uid, info.gid, info.uname, info.gname = mtime, 0, 0, "", ""
            data = None
            if mode == MODE_TREE:
                info.type, info.mode = tarfile.DIRTYPE, 0o755
            elif mode == MODE_LINK:
                info.type, info.mode = tarfile.SYMTYPE, 0o777
                info.linkname = os.fsdecode(b"".join(repo.store.iter_blob(oid)))
            else:
                data = b"".join(repo.store.iter_blob(oid))
                info.mode, info.size = (0o755 if mode == MODE_EXEC else 0o644), len(data)
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return out.getvalue()


def test_the_tar_is_tarfiles_gnu_format_byte_for_byte(snap, tmp_path):
    """export writes tar headers itself (a TarInfo per entry cost more than
    reading the blobs): the bytes must stay those tarfile writes."""
    probe = tarfile.TarInfo("x").tobuf(tarfile.GNU_FORMAT, "utf-8", "surrogateescape")
    if probe[329:345] != bytes(16):
        pytest.skip("this Python's tarfile writes device numbers for regular files")
    repo, snapshot_id = snap
    other = Repository.init(tmp_path / "ws", default_ignore=False)
    os.symlink("a-long-symlink-target-" * 8, other.root / "long-link")  # > 100 bytes: a GNU long-link record
    (other.root / "empty.txt").write_bytes(b"")
    other.add(["."], cwd=other.root)
    for repo, snapshot in ((repo, snapshot_id), (other, other.commit("links").id)):
        archive = tmp_path / f"{snapshot[:8]}.tar"
        export(repo, snapshot, archive)
        assert archive.read_bytes() == _tarfile_archive(repo, snapshot, snapshot_epoch(repo, snapshot))


def test_numbers_too_large_for_octal_are_gnu_base_256_as_tarfile_writes_them():
    from rnstore.export import _number
    for value in (0, 8 ** 11 - 1, 8 ** 11, 5 << 40, 1 << 60, -1):  # a file of 8 GiB or more, a date before 1970
        assert _number(value, 12) == bytes(tarfile.itn(value, 12, tarfile.GNU_FORMAT))


def test_a_folder_export_reports_what_an_archive_reports(tmp_path):
    """`export --format dir` counted what it wrote (links' targets as bytes)
    and, into a folder already holding the snapshot, folders as files and
    0 B: `5 files, 29 B` then `6 files, 0 B` for what a tar called `5 files,
    7 B`. It now counts the snapshot, as the archives do."""
    repo = Repository.init(tmp_path / "ws", default_ignore=False)
    (repo.root / "sub" / "empty").mkdir(parents=True)
    (repo.root / "sub" / "f.txt").write_bytes(b"12345")
    (repo.root / "run.sh").write_bytes(b"ab")
    os.symlink("sub/f.txt", repo.root / "link")
    snap = repo.snapshot("m").id
    archive = export(repo, snap, tmp_path / "out.tar")
    for _ in range(2):  # a new folder, then the same folder again
        folder = export(repo, snap, tmp_path / "out", format="dir")
        assert (folder.files, folder.folders, folder.bytes) == (archive.files, archive.folders, archive.bytes) \
            == (3, 2, 7)


def test_abandon_stops_the_writer_even_when_the_queue_lost_its_wakeup():
    """A Ctrl-C inside one of the queue's calls can leave the writer waiting
    without the wake-up a put owes it (a torture run once hung for 20
    minutes so). Abandoning must stop it all the same, without the queue."""
    import threading
    import time

    from rnstore import export

    written = []
    batches = export._Batches(written.append)
    waiters = batches._queue.not_empty._waiters
    deadline = time.monotonic() + 30
    while not waiters and time.monotonic() < deadline:  # the writer waits for a batch
        time.sleep(0.01)
    assert waiters
    waiters.clear()  # what an interrupted put can leave: nobody wakes the writer
    stopper = threading.Thread(target=batches.abandon, daemon=True)
    stopper.start()
    stopper.join(60)
    assert not stopper.is_alive() and not batches._writer.is_alive()
    assert written == []
