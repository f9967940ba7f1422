"""Options several commands share, each declared once."""

from __future__ import annotations

from typing import Annotated, List, Optional

import typer

Quiet = Annotated[bool, typer.Option("-q", "--quiet", help="No progress and no summary.")]
NoProgress = Annotated[bool, typer.Option("--no-progress", help="No progress bar.")]
Json = Annotated[bool, typer.Option("--json", help="Print one JSON document.")]
Nested = Annotated[bool, typer.Option("--nested", help="Allow a workspace inside another workspace.")]

# -- what `add` and `commit -a` stage -----------------------------------------------------

Excludes = Annotated[Optional[List[str]], typer.Option(
    "--exclude", metavar="PATTERN", help="Also ignore PATTERN (gitignore syntax, repeatable).")]
NoIgnore = Annotated[bool, typer.Option("--no-ignore", help="Disable .rnignore files.")]
StrictIgnore = Annotated[bool, typer.Option(
    "--strict-ignore", help="Refuse a bad .rnignore pattern instead of skipping it with a warning.")]
Force = Annotated[bool, typer.Option(
    "--force", "-f", help="Stage files over the size limits (commit: with -a).")]
IgnoreErrors = Annotated[bool, typer.Option(
    "--ignore-errors", help="Skip unreadable files with a warning (commit: with -a).")]


def staging_options(force: bool, exclude: list[str] | None, no_ignore: bool,
                    ignore_errors: bool, strict_ignore: bool) -> dict:
    """The options above as the library's add() takes them."""
    return {"force": force, "excludes": exclude or [], "no_ignore": no_ignore,
            "ignore_errors": ignore_errors, "strict_ignore": strict_ignore}
