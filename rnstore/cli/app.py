"""The typer application, assembled from one module per command group."""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from typing import Annotated, Optional

import typer

from .._version import __version__
from ..errors import InvalidValueError
from ..repo import Repository
from ._command import Command, Group, PathsCommand
from ._output import out

HELP = """A git-like, content-addressed store for experiment folders and CI.

Example: rnstore init && rnstore add . && rnstore commit -m "run 42"
"""

class App(typer.Typer):
    """Every command gets rnstore's command class (see _command.py); with
    `paths_after_dashdash=True`, the one that keeps paths after `--`."""

    def command(self, *args, paths_after_dashdash: bool = False, **kw):
        kw.setdefault("cls", PathsCommand if paths_after_dashdash else Command)
        return super().command(*args, **kw)


app = App(
    name="rnstore",
    cls=Group,
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
    return Repository.open(notify=out.notice)


#: The module of rnstore/cli/ that registers each command, in the order
#: help and completion list them (porcelain first). A command loads only
#: its own module: start-up is most of a cheap command's time (README,
#: Performance). tests/test_architecture.py checks this against the
#: registrations.
COMMAND_MODULES = {
    "porcelain": ("init", "add", "status", "commit", "log", "show", "diff", "tag", "config"),
    "restore": ("checkout", "export"),
    "space": ("forget", "gc", "du", "fsck", "snapshots", "workspaces"),
    "remote": ("remote", "push", "fetch", "pull", "clone"),
    "plumbing": ("hash-object", "cat-file", "ls-tree", "ls-files", "write-tree", "read-tree", "mktree",
                 "commit-tree", "update-ref", "symbolic-ref", "rev-parse", "show-ref", "manifest"),
}


def build_command(args: list[str] | None = None):
    """The click command for a run with `args`. Converting every typer
    command would cost more than the start-up of a cheap command (README,
    Performance), so only the command being invoked is imported and
    converted (all of them for top-level help, shell completion and an
    unknown name). typer's registry (registered_commands, info,
    registered_callback) is not documented: tests/test_pinned_dependencies.py
    checks it for the typer versions pyproject.toml allows."""
    if os.environ.get("_RNSTORE_COMPLETE"):
        from typer.completion import completion_init  # only when a shell asks for completions
        completion_init()  # shell completion asks: register typer's shells
    name = _invoked_command(args or [])
    modules = [m for m, names in COMMAND_MODULES.items() if name in names] or list(COMMAND_MODULES)
    for module in modules:
        importlib.import_module(f"{__package__}.{module}")  # registers its commands on `app`
    selected = [c for c in app.registered_commands if c.name == name]
    if not selected:
        return typer.main.get_command(app)
    slim = typer.Typer(cls=Group)
    slim.info = app.info
    slim.registered_callback = app.registered_callback
    slim.registered_commands = selected
    return typer.main.get_command(slim)


def _invoked_command(args: list[str]) -> str | None:
    position = 0
    while position < len(args):
        word = args[position]
        if word == "-C":
            position += 2
        elif word.startswith("-C") and len(word) > 2:
            position += 1
        elif word.startswith("-"):
            return None  # --help, --version or a mistake: the full app answers
        else:
            return word
    return None


@app.command("help")
def help_(command: Annotated[Optional[str], typer.Argument(
        metavar="[COMMAND]", help="The command to explain; without it, every command.")] = None) -> None:
    """Show a command's help, as `COMMAND --help` does.

    Example: rnstore help checkout
    """
    group = build_command([command] if command else [])
    with group.make_context("rnstore", [], resilient_parsing=True) as ctx:
        if command is None:
            out.bytes(group.get_help(ctx).encode() + b"\n")
            return
        target = group.get_command(ctx, command)
        if target is None:
            raise InvalidValueError(f"no such command '{command}'",
                                    hints=["`rnstore help` lists every command"])
        with target.make_context(command, [], parent=ctx, resilient_parsing=True) as sub:
            out.bytes(target.get_help(sub).encode() + b"\n")
