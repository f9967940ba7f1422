"""Options several commands share, each declared once."""

from __future__ import annotations

import inspect
from typing import Annotated, Callable, List, Optional

import typer

Quiet = Annotated[bool, typer.Option("-q", "--quiet", help="No progress and no summary.")]
NoProgress = Annotated[bool, typer.Option("--no-progress", help="No progress bar.")]
Json = Annotated[bool, typer.Option("--json", help="Print one JSON document.")]
NulTerminated = Annotated[bool, typer.Option("-z", help="End each entry with NUL, paths unquoted (for scripts).")]
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


# -- groups of options, each added to a command by @sharing ------------------------------

STAGING = {"force": (Force, False), "exclude": (Excludes, None), "no_ignore": (NoIgnore, False),
           "strict_ignore": (StrictIgnore, False), "ignore_errors": (IgnoreErrors, False)}
JSON = {"as_json": (Json, False)}
PROGRESS = {"quiet": (Quiet, False), "no_progress": (NoProgress, False)}


def sharing(*groups: dict) -> Callable:
    """Append the options of each group to a command's own parameters; the
    command takes them as `**shared`. Options several commands share are
    declared once, as click programs share an option decorator."""
    def decorate(command: Callable) -> Callable:
        signature = inspect.signature(command, eval_str=True)
        own = [p for p in signature.parameters.values() if p.kind is not inspect.Parameter.VAR_KEYWORD]
        added = [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation)
                 for group in groups for name, (annotation, default) in group.items()]
        command.__signature__ = signature.replace(parameters=own + added)
        command.__annotations__ = {p.name: p.annotation for p in own + added}  # typer reads both
        return command
    return decorate


def staging_options(shared: dict) -> dict:
    """The STAGING options as the library's add() takes them."""
    return {"force": shared["force"], "excludes": shared["exclude"] or [], "no_ignore": shared["no_ignore"],
            "ignore_errors": shared["ignore_errors"], "strict_ignore": shared["strict_ignore"]}
