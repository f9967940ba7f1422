"""Shell completions: the checked-in scripts in completions/ match what the
generator makes from the CLI, and completing through them works."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from helpers.porcelain import cli_env
from rnstore.cli import completions

ROOT = Path(__file__).resolve().parents[1]
CHECKED_IN = ROOT / "completions"
REGENERATE = "completions/ is out of date: run `python -m rnstore.cli.completions` and commit the result"

COMPLETION_NOT_REGISTERED = (
    "rnstore/cli/app.py builds the app with add_completion=False, so typer never calls "
    "completion_init() and _RNSTORE_COMPLETE=complete_<shell> answers 'Shell <shell> not "
    "supported.' (exit 1)")


def test_checked_in_scripts_match_the_generator():
    generated = completions.scripts()
    assert set(generated) == {"rnstore.bash", "_rnstore", "rnstore.fish"}
    present = {p.name for p in CHECKED_IN.iterdir()} if CHECKED_IN.is_dir() else set()
    assert present == set(generated), REGENERATE
    for name, text in generated.items():
        assert (CHECKED_IN / name).read_text(encoding="utf-8") == text, f"{name}: {REGENERATE}"


def test_scripts_call_rnstore_back_with_its_completion_variable():
    generated = completions.scripts()
    assert "complete -o default -F _rnstore_completion rnstore" in generated["rnstore.bash"]
    assert "_RNSTORE_COMPLETE=complete_bash" in generated["rnstore.bash"]
    assert generated["_rnstore"].startswith("#compdef rnstore\n")
    assert "_RNSTORE_COMPLETE=complete_zsh" in generated["_rnstore"]
    assert generated["rnstore.fish"].count("_RNSTORE_COMPLETE=complete_fish") == 2
    assert "--command rnstore" in generated["rnstore.fish"]


def test_generator_runs_as_a_module(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "rnstore.cli.completions", str(tmp_path / "out")],
                          capture_output=True, text=True, timeout=60, env=cli_env())
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    for name in ("rnstore.bash", "_rnstore", "rnstore.fish"):
        assert (tmp_path / "out" / name).read_bytes() == (CHECKED_IN / name).read_bytes(), name


def complete(shell: str, line: str, cwd: Path) -> subprocess.CompletedProcess:
    """Ask `python -m rnstore` for completions the way each script does."""
    env = {"_RNSTORE_COMPLETE": f"complete_{shell}"}
    if shell == "bash":
        words = line.split(" ")
        env.update(COMP_WORDS=line, COMP_CWORD=str(len(words) - 1))
    else:
        env["_TYPER_COMPLETE_ARGS"] = line
        if shell == "fish":
            env["_TYPER_COMPLETE_FISH_ACTION"] = "get-args"
    proc = subprocess.run([sys.executable, "-m", "rnstore"], cwd=cwd, capture_output=True,
                          text=True, timeout=60, env=cli_env(env), stdin=subprocess.DEVNULL)
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_completion_variable_completes_commands(shell, tmp_path):
    proc = complete(shell, "rnstore che", tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "checkout" in proc.stdout and "commit" not in proc.stdout


def test_completion_variable_completes_options(tmp_path):
    proc = complete("bash", "rnstore commit --me", tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert set(proc.stdout.split()) == {"--message", "--meta"}


@pytest.mark.skipif(shutil.which("bash") is None, reason="bash is not installed")
def test_bash_script_completes_end_to_end(tmp_path):
    """Source the checked-in bash script and press TAB after `rnstore che`."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    wrapper = bin_dir / "rnstore"
    wrapper.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m rnstore "$@"\n')
    wrapper.chmod(0o755)
    script = (f'source "{CHECKED_IN / "rnstore.bash"}"\n'
              'COMP_WORDS=(rnstore che); COMP_CWORD=1\n'
              '_rnstore_completion rnstore\n'
              'printf "%s\\n" "${COMPREPLY[@]}"\n')
    env = cli_env({"PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"})
    proc = subprocess.run(["bash", "--norc", "--noprofile", "-c", script], cwd=tmp_path,
                          capture_output=True, text=True, timeout=60, env=env)
    assert "Traceback" not in proc.stderr
    assert proc.stdout.split() == ["checkout"], (proc.stdout, proc.stderr)


def test_click_style_instruction_also_completes(tmp_path):
    env = {"_RNSTORE_COMPLETE": "bash_complete", "COMP_WORDS": "rnstore che", "COMP_CWORD": "1"}
    proc = subprocess.run([sys.executable, "-m", "rnstore"], cwd=tmp_path, capture_output=True,
                          text=True, timeout=60, env=cli_env(env), stdin=subprocess.DEVNULL)
    assert "Traceback" not in proc.stderr
    assert proc.returncode == 0, proc.stderr
    assert "checkout" in proc.stdout.split(), proc.stdout
