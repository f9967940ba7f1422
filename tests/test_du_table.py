"""du's tables drawn without rich (cli/space.py, _plain_tables) are exactly
what rich draws on a pipe, and rich draws every table they cannot."""

from __future__ import annotations

import io
import sys

import pytest
from hypothesis import given, settings, strategies as st

from helpers.space import commit, make_repo, run
from rnstore.cli import space
from rnstore.du import DuStats, SnapshotUsage, StoreUsage


class Pipe(io.StringIO):
    encoding = "utf-8"

    def isatty(self) -> bool:
        return False


def drawn(stats: DuStats, monkeypatch, *, plain: bool) -> str:
    out = Pipe()
    with monkeypatch.context() as patch:
        patch.setattr(sys, "stdout", out)
        if not plain:
            patch.setattr(space, "_plain_tables", lambda tables: None)
        space._print_du(stats)
    return out.getvalue()


words = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=40)
snapshot_rows = st.builds(
    SnapshotUsage,
    id=st.text("0123456789abcdef", min_size=64, max_size=64),
    time=st.sampled_from(["2026-12-05T07:25:37.123456+00:00", "1999-01-01T00:00:00+00:00", "weird: [time]"]),
    message=st.one_of(words, st.sampled_from(["fix: the thing", "[bold]x[/]", "two\nlines", "😀 emoji",
                                              ":100: done", "a  b", " lead", "trail "])),
    tags=st.lists(st.sampled_from(["v1", "release-2", "x:y", "[t]"]), max_size=3),
    files=st.integers(0, 10**7), logical_bytes=st.integers(0, 10**13),
    exclusive_bytes=st.integers(0, 10**12), live=st.booleans())
usages = st.builds(StoreUsage, **{name: st.integers(0, 10**12) for name in (
    "objects", "blobs", "trees", "snapshots", "stored_bytes", "logical_bytes", "referenced_bytes",
    "reclaimable_bytes", "unreachable_bytes", "blob_stored_bytes")})


@settings(max_examples=300, deadline=None)
@given(usage=usages, rows=st.lists(snapshot_rows, max_size=4))
def test_the_plain_tables_are_richs(usage, rows):
    stats = DuStats(usage, rows)
    with pytest.MonkeyPatch.context() as monkeypatch:
        assert drawn(stats, monkeypatch, plain=True) == drawn(stats, monkeypatch, plain=False)


def test_plain_tables_draw_the_everyday_case_and_leave_the_rest_to_rich(tmp_path, monkeypatch):
    row = SnapshotUsage("ab" * 32, "2026-12-05T07:25:37+00:00", "first", ["v1"], 3, 10, 5)
    tables = space._du_tables(DuStats(StoreUsage(objects=3), [row]))
    monkeypatch.setattr(sys, "stdout", Pipe())
    assert space._plain_tables(tables) is not None
    for message in ("[red]x", "a: :smile:", "x" * 100, "tab\there"):
        row.message = message
        assert space._plain_tables(space._du_tables(DuStats(StoreUsage(), [row]))) is None
    monkeypatch.setenv("FORCE_COLOR", "1")
    assert space._plain_tables(tables) is None


@pytest.mark.parametrize("stored, saving", [(100_001, "0.0 %"), (99_999, "0.0 %"), (100_000, "0.0 %"),
                                            (50_000, "50.0 %"), (100_100, "-0.1 %")])
def test_space_saving_is_never_negative_zero(stored, saving):
    usage = StoreUsage(stored_bytes=stored, referenced_bytes=100_000)
    store_rows = dict(space._du_tables(DuStats(usage, []))[-1][2])
    assert store_rows["space saving"] == saving


def test_du_prints_the_table_rich_prints(tmp_path):
    """End to end, through real processes: the plain table and rich's
    (which an environment rich reads leaves it to) are the same bytes."""
    repo = make_repo(tmp_path / "ws")
    first = commit(repo, {"a.txt": "a\n" * 100, "d/b.txt": "b\n"}, "first, a and b")
    commit(repo, {"a.txt": "changed\n"}, "second")
    repo.tag("v1", first)
    repo.forget([first])
    for args in (["du"], ["du", first, "HEAD"]):
        plain = run(args, cwd=repo.root)
        by_rich = run(args, cwd=repo.root, env={"TTY_COMPATIBLE": "0"})
        assert plain.returncode == by_rich.returncode == 0, plain.stderr + by_rich.stderr
        assert plain.stdout == by_rich.stdout
    lines = plain.stdout.decode().splitlines()
    assert lines[0].startswith("Snapshots ") and lines[1].startswith("┏━") and lines[3].startswith("┡━")
    assert any(line.startswith(f"│ {first[:12]} * │") and "│ v1   │ first, a and b │" in line for line in lines)
    assert "* not live: forgotten, or kept only by a ref" in lines
    assert lines[-1].startswith("└─") and any(line.startswith("│ dedup ratio ") for line in lines)
