"""Running the CLI: `python -m rnstore` in a real subprocess, with an
environment that does not depend on the caller's."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Mapping, NamedTuple, Sequence

#: Environment variables that would make a test depend on its caller.
SCRUBBED = ("RNSTORE_DIR", "RNSTORE_OBJECTS", "RNSTORE_DEBUG", "RNSTORE_PROGRESS", "RNSTORE_USER")


class CliResult(NamedTuple):
    returncode: int
    stdout: bytes
    stderr: str

    @property
    def out(self) -> str:
        """stdout as text (for results that are text)."""
        return self.stdout.decode("utf-8", "surrogateescape")


def cli_env(env: Mapping[str, str] | None = None) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if k not in SCRUBBED}
    base.update({"NO_COLOR": "1", "RNSTORE_USER": "tester", "PYTHONHASHSEED": "0"})
    base.update(env or {})
    return base


def run_cli(args: Sequence[str | bytes], cwd: str | os.PathLike, input: bytes | None = None,
            env: Mapping[str, str] | None = None) -> CliResult:
    """Run `python -m rnstore ARGS` in `cwd`; stdout as bytes, stderr as text.
    Fails the test if stderr ever carries a Python traceback."""
    proc = subprocess.run(
        [sys.executable, "-m", "rnstore", *args], cwd=cwd, input=input,
        stdin=None if input is not None else subprocess.DEVNULL,
        capture_output=True, env=cli_env(env), timeout=120)
    stderr = proc.stderr.decode("utf-8", "replace")
    assert "Traceback" not in stderr, stderr
    return CliResult(proc.returncode, proc.stdout, stderr)
