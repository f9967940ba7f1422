"""cycle_collector_paused: off while the work runs, restored after, even on error."""

import gc

import pytest

from rnstore.alloc import cycle_collector_paused
from rnstore.diff import diff


@cycle_collector_paused
def state(fail: bool = False) -> bool:
    if fail:
        raise RuntimeError("boom")
    return gc.isenabled()


def test_the_collector_is_off_inside_and_back_on_after():
    assert gc.isenabled()
    assert state() is False
    assert gc.isenabled()
    with pytest.raises(RuntimeError):
        state(fail=True)
    assert gc.isenabled()


def test_a_collector_turned_off_by_the_caller_stays_off():
    gc.disable()
    try:
        assert state() is False
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_paused_commands_leave_no_cyclic_garbage_per_file(tmp_path):
    """The CLI runs every command with the collector paused, so garbage in
    cycles is only freed later, and a cycle per file (or per object read)
    would grow memory with the tree: each command, paused as the CLI runs
    it, leaves no more cycles than a small tree has files."""
    from rnstore.repo import Repository
    files = 300
    ws = tmp_path / "ws"
    for i in range(files):
        path = ws / f"d{i % 7}" / f"f{i}.txt"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"file {i}\n" * (i % 5 + 1))
    repo = Repository.init(ws, default_ignore=False)
    first = repo.snapshot("first").id
    (ws / "d0" / "f0.txt").write_text("changed\n")
    operations = {
        "add": lambda: repo.add([ws]),
        "commit": lambda: repo.commit("second"),
        "status": lambda: repo.status(),
        "checkout --target": lambda: repo.checkout(first, target=tmp_path / "out"),
        "checkout": lambda: repo.checkout(first, force=True),
        "fsck": lambda: repo.fsck(),
        "du": lambda: repo.du(),
        "log": lambda: repo.log(),
        "diff": lambda: diff(repo, first),
        "export tar": lambda: repo.export(first, tmp_path / "x.tar"),
        "export zip": lambda: repo.export(first, tmp_path / "x.zip"),
        "gc": lambda: repo.gc(prune="now"),
    }
    for name, operation in operations.items():
        gc.collect()
        cycle_collector_paused(operation)()
        assert gc.collect() < files // 3, name
