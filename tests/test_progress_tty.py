"""Progress and terminal output: a rich bar when stderr is a terminal (a
pseudo-terminal here), nothing but plain lines otherwise; -q, --no-progress,
RNSTORE_PROGRESS=0 and NO_COLOR are honoured; usage errors are one line."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest

from helpers.porcelain import assert_error, new_workspace, ok
from helpers.terminal import run_on_pty

BAR = "━".encode()            # rich's bar segment
SGR = re.compile(rb"\x1b\[([0-9;]*)m")


def colours(output: bytes) -> list[bytes]:
    """SGR sequences that set a foreground or background colour."""
    found = []
    for match in SGR.finditer(output):
        codes = [int(c) for c in match.group(1).split(b";") if c]
        if any(30 <= c <= 38 or 40 <= c <= 48 or 90 <= c <= 97 or 100 <= c <= 107 for c in codes):
            found.append(match.group(0))
    return found


@pytest.fixture(scope="module")
def big_files(tmp_path_factory):
    """300 incompressible files, 30 MB in all, to hard-link into workspaces."""
    folder = tmp_path_factory.mktemp("big")
    for i in range(300):
        (folder / f"part{i // 100}" / f"f{i:03}.bin").parent.mkdir(exist_ok=True)
        (folder / f"part{i // 100}" / f"f{i:03}.bin").write_bytes(os.urandom(100_000))
    return folder


def workspace_with(tmp_path: Path, files: Path | None = None, small: int = 0) -> Path:
    ws = new_workspace(tmp_path / "ws")
    if files is not None:
        shutil.copytree(files, ws / "data", copy_function=os.link)
    for i in range(small):
        (ws / f"small{i}.txt").write_text(f"small file {i}\n" * 50)
    return ws


def test_progress_bar_on_a_terminal(tmp_path, big_files):
    ws = workspace_with(tmp_path, big_files)
    code, stdout, terminal = run_on_pty(["add", "."], ws)
    assert code == 0, terminal
    assert stdout == b""
    assert BAR in terminal and b"\x1b[" in terminal, terminal[:500]
    # files, bytes, rate and ETA, as SPEC promises
    assert b"300/300 files" in terminal
    # sizes and the speed in the binary units every size is printed in (README)
    assert b"28.6/28.6 MiB" in terminal, terminal[-600:]
    assert re.search(rb"[\d.]+ (B|KiB|MiB|GiB)/s", terminal), terminal[-600:]
    assert not re.search(rb"\d (kB|MB|GB)\b", terminal), terminal[-600:]
    assert re.search(rb"\d+:\d\d:\d\d", terminal), terminal[-600:]
    assert colours(terminal)                                # coloured without NO_COLOR
    assert b"staged 300 added" in terminal                  # and the summary line


def test_no_escape_codes_when_stderr_is_a_pipe(tmp_path, big_files, run_cli):
    ws = workspace_with(tmp_path, big_files)
    result = ok(run_cli(["add", "."], cwd=ws, env={"TERM": "xterm-256color"}))
    assert "\x1b" not in result.stderr and "━" not in result.stderr
    assert len(result.stderr.splitlines()) == 1, result.stderr   # one summary line
    result = ok(run_cli(["commit", "-m", "m"], cwd=ws, env={"TERM": "xterm-256color"}))
    assert "\x1b" not in result.stderr and len(result.stderr.splitlines()) == 1, result.stderr


def test_no_color_leaves_no_colour_codes(tmp_path, big_files):
    ws = workspace_with(tmp_path, big_files)
    code, _, terminal = run_on_pty(["add", "."], ws, env={"NO_COLOR": "1"})
    assert code == 0, terminal
    assert BAR in terminal and b"300/300 files" in terminal  # still a bar
    assert colours(terminal) == [], colours(terminal)[:5]


@pytest.mark.parametrize("args, env, bar", [
    (["add", "."], {}, True),                                 # control: small adds show it too
    (["add", ".", "--no-progress"], {}, False),
    (["add", "."], {"RNSTORE_PROGRESS": "0"}, False),
    (["commit", "-a", "-m", "m"], {}, True),                  # control
    (["commit", "-a", "-m", "m", "--no-progress"], {}, False),
    (["commit", "-a", "-m", "m"], {"RNSTORE_PROGRESS": "0"}, False),
], ids=["add", "add--no-progress", "add-RNSTORE_PROGRESS=0", "commit-a",
        "commit-a--no-progress", "commit-a-RNSTORE_PROGRESS=0"])
def test_progress_can_be_turned_off_on_a_terminal(tmp_path, args, env, bar):
    ws = workspace_with(tmp_path, small=20)
    code, stdout, terminal = run_on_pty(args, ws, env=env)
    assert code == 0, terminal
    if bar:
        assert BAR in terminal and b"\x1b[" in terminal, terminal
    else:
        assert b"\x1b" not in terminal and BAR not in terminal, terminal
        lines = terminal.decode().splitlines()
        assert len(lines) == 1 and ("staged" in lines[0] or "main" in lines[0]), lines


def test_quiet_prints_nothing_on_a_terminal(tmp_path):
    ws = workspace_with(tmp_path, small=20)
    code, stdout, terminal = run_on_pty(["commit", "-a", "-q", "-m", "m"], ws)
    assert code == 0 and terminal == b"", terminal
    assert len(stdout.strip()) == 64


@pytest.mark.parametrize("args", [["add", "--bogus", "."], ["commit"], ["frobnicate"],
                                  ["log", "-n", "many"], ["status", "extra-argument"]])
def test_usage_errors_are_one_line_on_a_terminal(tmp_path, args):
    ws = workspace_with(tmp_path)
    code, stdout, terminal = run_on_pty(args, ws)
    text = terminal.decode("utf-8", "replace")
    assert code == 2, text
    assert "╭" not in text and "─" not in text and "\x1b" not in text, text
    lines = text.splitlines()
    assert lines[0].startswith("error: ") and len([l for l in lines if l.startswith("error:")]) == 1
    assert all(line.startswith(("error: ", "hint: ")) for line in lines), lines
    assert stdout == b""


def test_usage_errors_are_one_line_on_a_pipe(tmp_path, run_cli):
    ws = workspace_with(tmp_path)
    for args in (["add", "--bogus", "."], ["tag", "-d"], ["init", "--objects"]):
        assert_error(run_cli(args, cwd=ws), 2)
