"""Apply each mutant of mutants.py, one at a time, in a scratch copy of the
repository, run the tests that must catch it, and report which did.

    python tests/mutation/run.py              # every mutant
    python tests/mutation/run.py fsync pack   # mutants whose name holds a word

The working tree is never touched: each mutant gets a fresh copy of
rnstore/ and tests/ (and pyproject.toml) in a temporary folder, and pytest
runs there with PYTHONPATH pointing at it, so the CLI subprocesses the tests
start import the mutated copy too. First the selected tests must pass on the
unmutated copy; then each mutant is "caught" if they fail (pytest exit 1),
"survived" if they pass, and "error" otherwise. Exits 1 if any survived.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from mutants import MUTANTS, Mutant  # noqa: E402

REPO = Path(__file__).resolve().parents[2]


def scratch_copy(into: Path) -> Path:
    root = into / "repo"
    root.mkdir()
    for name in ("rnstore", "tests"):
        shutil.copytree(REPO / name, root / name,
                        ignore=shutil.ignore_patterns("__pycache__", ".hypothesis", ".pytest_cache"))
    shutil.copy2(REPO / "pyproject.toml", root / "pyproject.toml")
    return root


def apply(root: Path, mutant: Mutant) -> None:
    path = root / mutant.path
    text = path.read_text()
    count = text.count(mutant.old)
    if count != 1:
        raise SystemExit(f"{mutant.name}: the text to change occurs {count} times in {mutant.path}")
    path.write_text(text.replace(mutant.old, mutant.new))


def run_tests(root: Path, tests: tuple[str, ...]) -> tuple[int, str]:
    """pytest's exit code, and the tail of what it printed."""
    env = {**os.environ, "PYTHONPATH": str(root), "PYTHONDONTWRITEBYTECODE": "1"}
    command = [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", *tests]
    done = subprocess.run(command, cwd=root, env=env, capture_output=True, text=True)
    return done.returncode, "\n".join((done.stdout + done.stderr).splitlines()[-15:])


def main(words: list[str]) -> int:
    chosen = [m for m in MUTANTS if not words or any(w in m.name for w in words)]
    results = []
    baselines: dict[tuple[str, ...], tuple[int, str]] = {}
    for mutant in chosen:
        with tempfile.TemporaryDirectory(prefix="rnstore-mutant-") as scratch:
            root = scratch_copy(Path(scratch))
            if mutant.tests not in baselines:
                baselines[mutant.tests] = run_tests(root, mutant.tests)
            code, printed = baselines[mutant.tests]
            if code != 0:
                results.append((mutant, "error: the tests fail without the mutant", 0.0))
                print(f"{'error':9} {mutant.name}: the tests fail without it\n{printed}", flush=True)
                continue
            apply(root, mutant)
            start = time.monotonic()
            code, printed = run_tests(root, mutant.tests)
            outcome = {0: "survived", 1: "caught"}.get(code, f"error (pytest exit {code})")
            results.append((mutant, outcome, time.monotonic() - start))
            print(f"{outcome.split()[0]:9} {mutant.name}  [{' '.join(mutant.tests)}]", flush=True)
            if code not in (0, 1):
                print(printed, flush=True)
    caught = sum(outcome == "caught" for _, outcome, _ in results)
    print(f"\n{caught} of {len(results)} mutants caught")
    return 0 if caught == len(results) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
