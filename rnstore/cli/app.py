"""The typer application, assembled from one module per command group."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Optional

import typer

from .._version import __version__
from ._output import out

HELP = """A git-like, content-addressed store for experiment folders and CI.

Example: rnstore init && rnstore add . && rnstore commit -m "run 42"
"""

app = typer.Typer(
    name="rnstore",
    help=HELP,
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        out.line(f"rnstore {__version__}")
        raise typer.Exit(0)


@app.callback()
def main_options(
    directory: Annotated[Optional[Path], typer.Option(
        "-C", help="Run as if started in DIR.", metavar="DIR")] = None,
    version: Annotated[bool, typer.Option(
        "--version", "-V", callback=_version, is_eager=True, help="Print the version.")] = False,
) -> None:
    if directory is not None:
        os.chdir(directory)


def open_repo():
    from ..repo import Repository
    return Repository.open(notify=out.notice)


def build_command():
    from . import plumbing  # noqa: F401 - registers the plumbing commands
    from . import porcelain  # noqa: F401 - registers the porcelain commands
    return typer.main.get_command(app)
