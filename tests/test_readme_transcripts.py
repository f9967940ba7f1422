"""The README's session transcripts are the real program's output.

Each ```console block of README.md (its experiment-folder session and the
"Reclaiming space" part that continues it) is run again, command by
command, in a fresh folder set up as the README says, and what rnstore
prints is compared with the README line by line. Ids, times, the user, the
folder and byte sizes differ on every run and machine (a snapshot records
its user, host and folder): they are compared as placeholders, everything
else (wording, counts, which lines appear) must match.

To regenerate the transcripts after changing what a command prints:
`python tests/test_readme_transcripts.py --write` (runs in /tmp/demo/exp).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
#: Where the README's session runs: its output names this folder.
README_FOLDER = "/tmp/demo/exp"

CONSOLE_BLOCK = re.compile(r"```console\n(.*?)```", re.S)


def make_experiment_folder(folder: Path) -> None:
    """The folder the README describes: code, a 2 MB data file and a log
    (both ignored by the default .rnignore)."""
    (folder / "src").mkdir(parents=True)
    (folder / "data").mkdir()
    (folder / "config.yaml").write_text("lr: 0.1\nepochs: 10\n")
    (folder / "src" / "train.py").write_text(
        "import yaml\n\nconfig = yaml.safe_load(open('config.yaml'))\nprint('training', config)\n")
    (folder / "data" / "train.bin").write_bytes(bytes(range(256)) * 8192)
    (folder / "train.log").write_text("epoch 1 loss 0.9\n")


def commands_of(block: str) -> list[str]:
    return [line[2:] for line in block.splitlines() if line.startswith("$ ")]


def run_session(folder: Path, blocks: list[str]) -> list[str]:
    """Each block again, as a transcript: `$ command` then its stdout and
    stderr in the order written (unbuffered, as on a terminal, but with no
    progress bars: stderr is not one)."""
    env = dict(os.environ, PYTHONUNBUFFERED="1", RNSTORE_PROGRESS="0", COLUMNS="100",
               RNSTORE_PYTHON=sys.executable)
    env.pop("RNSTORE_DIR", None)
    env.pop("RNSTORE_OBJECTS", None)
    transcripts = []
    for block in blocks:
        lines = []
        for command in commands_of(block):
            # `rnstore` is this interpreter's, installed as a script or not
            script = f'rnstore() {{ "$RNSTORE_PYTHON" -m rnstore "$@"; }}\n{command}'
            result = subprocess.run(["bash", "-c", script], cwd=folder, env=env,
                                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
            lines.append(f"$ {command}")
            lines += result.stdout.decode().rstrip("\n").split("\n") if result.stdout else []
        transcripts.append("\n".join(lines) + "\n")
    return transcripts


_PLACEHOLDERS = [
    (re.compile(r"\b[0-9a-f]{64}\b"), "<id>"),
    (re.compile(r"\b[0-9a-f]{12}\b"), "<id>"),
    (re.compile(r"\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d(\.\d+)?Z?"), "<time>"),
    (re.compile(r"^(User:\s+)\S+$"), r"\1<user>"),
    (re.compile(r"-?\d+(\.\d+)? (B|KiB|MiB|GiB)\b"), "<size>"),
    (re.compile(r"-?\d+\.\d+ ?[x%]"), "<ratio>"),
    (re.compile(r"[─━┄]+"), "─"),  # rich sizes its tables to what they hold
    (re.compile(r" +"), " "),
]


def normalized(transcript: str, folder: str) -> list[str]:
    lines = []
    for line in transcript.replace(folder, README_FOLDER).splitlines():
        for pattern, placeholder in _PLACEHOLDERS:
            line = pattern.sub(placeholder, line)
        lines.append(line.strip())
    return lines


def readme_blocks(text: str) -> list[str]:
    return CONSOLE_BLOCK.findall(text)


def test_readme_transcripts_are_what_rnstore_prints(tmp_path):
    folder = tmp_path / "demo" / "exp"
    make_experiment_folder(folder)
    blocks = readme_blocks(README.read_text(encoding="utf-8"))
    assert len(blocks) >= 2, "README.md lost its session transcripts"
    for written, real in zip(blocks, run_session(folder, blocks)):
        assert normalized(written, README_FOLDER) == normalized(real, str(folder)), (
            "a README transcript is stale: run `python tests/test_readme_transcripts.py --write`")


def test_a_changed_output_line_is_noticed():
    written = "$ rnstore gc --prune now\ngc: deleted 5 objects (293.9 KiB); kept 9\n"
    assert normalized(written, README_FOLDER) == normalized(
        written.replace("293.9 KiB", "1.2 MiB"), README_FOLDER)
    assert normalized(written, README_FOLDER) != normalized(
        written.replace("kept 9", "kept 9; packs 1 -> 1"), README_FOLDER)


def write_readme() -> None:
    """Replace every console block of README.md with the real output of
    its commands, run in README_FOLDER."""
    folder = Path(README_FOLDER)
    shutil.rmtree(folder.parent, ignore_errors=True)
    make_experiment_folder(folder)
    text = README.read_text(encoding="utf-8")
    real = iter(run_session(folder, readme_blocks(text)))
    README.write_text(CONSOLE_BLOCK.sub(lambda m: f"```console\n{next(real)}```", text),
                      encoding="utf-8")


if __name__ == "__main__":
    if sys.argv[1:] != ["--write"]:
        sys.exit(f"usage: python {sys.argv[0]} --write")
    write_readme()
