"""Porcelain commands: each parses, calls one library function, renders."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from .app import app
from ._output import out


@app.command("init")
def init(
    directory: Annotated[Optional[Path], typer.Argument(metavar="[DIR]")] = None,
    objects: Annotated[Optional[Path], typer.Option("--objects", metavar="PATH",
        help="Keep objects in a shared object store at PATH.")] = None,
    branch: Annotated[str, typer.Option("--branch", "-b", help="Name of the first branch.")] = "main",
    no_default_ignore: Annotated[bool, typer.Option("--no-default-ignore",
        help="Do not write a default .rnignore.")] = False,
) -> None:
    """Make a workspace (running it again changes nothing).

    Example: rnstore init --objects /shared/rnstore
    """
    from ..repo import DOTDIR, Repository
    target = directory or Path(".")
    existed = (target / DOTDIR / "HEAD").is_file()
    repo = Repository.init(target, objects=objects, branch=branch,
                           default_ignore=not no_default_ignore, notify=out.notice)
    verb = "Reinitialized existing" if existed else "Initialized empty"
    out.summary(f"{verb} rnstore workspace in {repo.dotdir}")
