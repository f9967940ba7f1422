"""The README's promises about itself: CI runs its test command verbatim,
and every command the CLI has is documented in it."""

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def shell_blocks(text: str) -> list[str]:
    return [b.strip() for b in re.findall(r"```sh\n(.*?)```", text, re.S)]


def test_ci_runs_the_readme_test_command_verbatim():
    test_command = shell_blocks(README.split("## Quick start", 1)[1])[1]
    assert "pytest" in test_command
    assert test_command in (ROOT / ".ci" / "run").read_text()


def test_quick_start_installs_and_restores():
    first = shell_blocks(README.split("## Quick start", 1)[1])[0]
    assert first.startswith("python3 -m venv .venv") and "pip install ." in first
    assert "rnstore commit" in first and "checkout" in first and "--target" in first


def test_every_command_is_in_the_readme():
    from rnstore.cli.app import app, build_command
    build_command()
    names = sorted(c.name for c in app.registered_commands)
    assert len(names) > 20
    missing = [n for n in names if f"`{n}" not in README and f"rnstore {n}" not in README]
    assert not missing, f"commands missing from README.md: {missing}"


def test_every_command_has_an_example():
    from rnstore.cli.app import app, build_command
    build_command()
    lacking = [c.name for c in app.registered_commands
               if "Example:" not in (c.callback.__doc__ or "")]
    assert not lacking, f"commands whose docstring has no Example: {lacking}"


def test_help_works_for_every_command():
    from rnstore.cli.app import app, build_command
    build_command()
    for command in app.registered_commands:
        result = subprocess.run([sys.executable, "-m", "rnstore", command.name, "--help"],
                                capture_output=True, text=True)
        assert result.returncode == 0, (command.name, result.stderr)
        assert "Traceback" not in result.stderr
