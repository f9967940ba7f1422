"""checkout and export: each parses, calls one library function, renders."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated, List, Optional

import typer

from ..errors import InvalidValueError
from ..units import format_size, plural
from ._command import after_dashdash
from . import _complete as complete
from .app import app, open_repo
from ._options import NoProgress, Quiet
from ._output import out, printable, progress


def _count(n: int, what: str) -> str:
    return f"{n:,} {what}"  # "3 written", "1 deleted": participles need no plural


@app.command("checkout", paths_after_dashdash=True)
def checkout(
    ctx: typer.Context,
    rev: Annotated[Optional[str], typer.Argument(
        metavar="[REV]", autocompletion=complete.revisions, help="A snapshot, branch or tag; without it, PATHs come from the index.")] = None,
    paths: Annotated[Optional[List[str]], typer.Argument(hidden=True)] = None,
    target: Annotated[Optional[Path], typer.Option(
        "--target", metavar="DIR", help="Write into DIR instead; the workspace, HEAD and index stay.")] = None,
    force: Annotated[bool, typer.Option(
        "--force", "-f", help="Overwrite uncommitted changes and entries in the way; with --target, "
                              "also remove what the snapshot does not have.")] = False,
    skip_missing: Annotated[bool, typer.Option(
        "--skip-missing", help="Restore every intact file when objects are missing or corrupt; "
                               "list the others and exit 1.")] = False,
    quiet: Quiet = False,
    no_progress: NoProgress = False,
) -> int:
    """Make the workspace match REV (or restore PATHs, or fill DIR).

    A branch name attaches HEAD to it; any other revision detaches HEAD.
    Uncommitted changes (edited or staged) or untracked files in the way
    stop it (exit 1) unless --force. `checkout -- PATH` restores PATH from
    the index, discarding its edits, as git does.

    Example: rnstore checkout run-42 -- train.py configs/
    """
    from ..checkout import checkout as run_checkout  # loads the store and zstandard, which rev-parse must not
    paths = (paths or []) + after_dashdash(ctx)
    if rev is None and not paths:
        raise InvalidValueError("give a revision to check out, or `-- PATH...` to restore from the index")
    repo = open_repo()
    bar = progress(quiet, no_progress)
    result = run_checkout(repo, rev, paths or None, target=target, force=force,
                          skip_missing=skip_missing, progress=bar)
    for path in result.raw_excluded:
        out.warn(f"not written: '{os.fsdecode(path)}' (a .rnstore name in the snapshot)")
    for path in result.raw_removed:
        out.summary(f"removed '{printable(os.fsdecode(path))}' (not in the snapshot)")
    short = result.snapshot[:12]
    counts = [_count(len(result.raw_written), "written"), _count(len(result.raw_deleted), "deleted")]
    if result.raw_skipped and result.form != "switch":
        counts.append(_count(len(result.raw_skipped), "identical skipped"))
    if result.raw_replaced:
        counts.append(_count(len(result.raw_replaced), "replaced"))
    detail = ", ".join(counts)
    if result.form == "target":
        out.summary(f"Checked out {short} into {target} ({detail})")
    elif result.form == "paths":
        out.summary(f"Restored {plural(len(paths), 'path')} from {short} ({detail}); HEAD unchanged")
    elif result.form == "index":
        out.summary(f"Restored {plural(len(paths), 'path')} from the index ({detail})")
    elif result.branch is not None:
        name = result.branch.removeprefix("refs/heads/")
        verb = "Switched to" if result.head_moved else "On"
        out.summary(f"{verb} branch '{name}' at {short} ({detail})")
    else:
        out.summary(f"HEAD is now detached at {short} ({detail})")
    if result.raw_missing:
        where = Path(result.root)
        for path, oid, why in result.raw_missing:
            sys.stderr.write(f"{why}: {printable(str(where / os.fsdecode(path)))} ({oid})\n")
        sys.stderr.write(f"error: {plural(len(result.raw_missing), 'file')} not restored: their objects are "
                         f"missing or corrupt; every other file was restored\n"
                         "hint: `rnstore fsck` lists the damage\n")
        return 1
    return 0


@app.command("export", paths_after_dashdash=True)
def export(
    ctx: typer.Context,
    rev: Annotated[str, typer.Argument(metavar="REV", autocompletion=complete.revisions, help="The snapshot to write.")],
    paths: Annotated[Optional[List[str]], typer.Argument(hidden=True)] = None,
    output: Annotated[Optional[str], typer.Option(
        "-o", "--output", metavar="OUT",
        help="The archive or folder to write; - or none for stdout (a tar, when stdout is not a terminal).")] = None,
    format_: Annotated[Optional[str], typer.Option(
        "--format", metavar="FORMAT", autocompletion=complete.formats,
        help="zip, tar, tar.gz, tar.zst or dir; by default from OUT's extension.")] = None,
    quiet: Quiet = False,
    no_progress: NoProgress = False,
) -> None:
    """Write a snapshot as a deterministic archive, or as a folder.

    The same snapshot always gives the same bytes; exec bits and symlinks
    are kept.

    Without -o, the archive goes to stdout (as `git archive` does) unless
    stdout is a terminal.

    Example: rnstore export HEAD -o ../code.tar.zst
    """
    from ..export import export as run_export  # loads the store and zstandard, which rev-parse must not
    stream = output in (None, "-")
    if stream and sys.stdout.isatty():
        raise InvalidValueError("refusing to write an archive to a terminal",
                                hints=["redirect stdout (`rnstore export REV > code.tar`), or give -o FILE"])
    repo = open_repo()
    bar = progress(quiet, no_progress)
    result = run_export(repo, rev, sys.stdout.buffer if stream else output,
                        format=format_, paths=(paths or []) + after_dashdash(ctx) or None,
                        progress=bar)
    where = "stdout" if stream else output
    out.summary(f"Exported {result.snapshot[:12]} to {where} ({result.format}, "
                f"{plural(result.files, 'file')}, {format_size(result.bytes)})")
