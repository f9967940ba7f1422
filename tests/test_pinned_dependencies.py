"""The few places rnstore relies on what a library does not promise, each
checked here so that a new version that changes it fails this test, by
name, instead of breaking a user's command. pyproject.toml allows only the
versions this test has passed on: widen a range after running it there.

- typer: the CLI converts only the invoked command (Typer.registered_commands,
  .info and .registered_callback, cli/app.py), and maps typer's exceptions by
  their public classes (Exit, Abort, TyperException; cli/__init__.py).
- typer: a parameter converts its value through `_runtime_param`, built
  lazily (with a pydantic TypeAdapter) when None; rnstore presets it for
  absent values, text and paths (cli/_command.py, PlainCoercion) so that cheap
  commands never import pydantic.
- typer's shell completion classes (typer._completion_classes, cli/completions.py):
  test_completions.py fails when the scripts they write change.
- zipfile: export writes raw (non-UTF-8) entry names by overriding
  ZipInfo._encodeFilenameFlags (export.py), which Python bounds.
"""

from __future__ import annotations

import io
import re
import sys
import zipfile
from importlib.metadata import version
from pathlib import Path

import typer

from rnstore.cli._errors import EXIT_USAGE
from rnstore.cli.app import app, build_command
from rnstore.export import _zip_info

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"


def _release(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", text)[:3])


def _allowed_range(requirement: str) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(lowest, first excluded) of `requirement`'s `>=A,<B` in pyproject.toml."""
    found = re.search(rf'{re.escape(requirement)}\s*>=([\d.]+),\s*<([\d.]+)"', PYPROJECT.read_text())
    assert found, f"pyproject.toml must give {requirement} a range >=A,<B that this test guards"
    return _release(found.group(1)), _release(found.group(2))


def test_typer_is_within_the_range_this_test_guards():
    low, high = _allowed_range('"typer')
    installed = _release(version("typer"))
    assert low <= installed < high, (
        f"typer {version('typer')} is outside pyproject.toml's range: run this file with it, "
        "then move the range")


def test_only_the_invoked_command_is_converted():
    """cli/app.py builds a slim Typer from the app's registered commands,
    info and callback; if typer renames or reshapes them, this fails."""
    slim = build_command(["status"])
    assert {"status", "add", "commit"} <= {c.name for c in app.registered_commands}
    assert sorted(slim.commands) == ["status"]
    assert {"-C", "--version"} <= {opt for p in slim.params for opt in p.opts}
    assert slim.help and slim.help.startswith("A git-like")
    everything = build_command([])
    assert "cat-file" in {c.name for c in app.registered_commands}
    assert len(everything.commands) == len(app.registered_commands) + len(app.registered_groups) > 1


def _raised(args: list[str]) -> BaseException:
    try:
        build_command(args).main(args=args, prog_name="rnstore", standalone_mode=False)
    except BaseException as exc:  # noqa: BLE001 - the exception is the subject
        return exc
    raise AssertionError(f"{args} raised nothing")


def test_typer_raises_its_public_exception_classes():
    """cli/__init__.py's _handle knows typer's errors only as typer.Exit,
    typer.Abort and typer.TyperException, with exit_code, format_message()
    and, on a usage error, ctx; a usage error's exit code is EXIT_USAGE."""
    usage = _raised(["status", "--no-such-option"])
    assert isinstance(usage, typer.TyperException), type(usage).__mro__
    assert usage.exit_code == EXIT_USAGE
    assert "--no-such-option" in usage.format_message()
    assert usage.ctx is not None and usage.ctx.command_path == "rnstore status"
    unknown = _raised(["no-such-command"])
    assert isinstance(unknown, typer.TyperException) and unknown.exit_code == EXIT_USAGE
    # typer.Exit ends a command early; without standalone mode its code is
    # returned, which run() passes on
    assert build_command(["--version"]).main(args=["--version"], prog_name="rnstore",
                                              standalone_mode=False) == 0
    assert typer.Exit(3).exit_code == 3
    assert issubclass(typer.Abort, Exception)


def _every_parameter():
    from typer.core import TyperGroup
    group = build_command([])

    def walk(command, ctx):
        for param in command.get_params(ctx):
            yield command, param
        if isinstance(command, TyperGroup):
            for name in command.list_commands(ctx):
                sub = command.get_command(ctx, name)
                yield from walk(sub, sub.make_context(name, [], parent=ctx, resilient_parsing=True))

    yield from walk(group, group.make_context("rnstore", [], resilient_parsing=True))


def test_plain_coercion_agrees_with_typers_own():
    """Every parameter gets a PlainCoercion (cli/_command.py), and it gives
    what typer's own coercion gives, for every shape of value a command
    line or a default hands over: None for any parameter, text, lists of
    text and paths where it converts them itself."""
    from typer._coercion import build_runtime_param

    from rnstore.cli._command import PlainCoercion
    converted, absent_only = set(), set()
    for command, param in _every_parameter():
        ours = param._runtime_param
        assert isinstance(ours, PlainCoercion), (command.name, param.name)
        typers = build_runtime_param(param.type_descriptor)
        ctx = command.make_context(command.name or "rnstore", [], resilient_parsing=True)
        many = param.multiple or param.nargs == -1
        values = [None]
        if ours.convert is not None:
            values += [("a", "b/c"), (), ["", "x"], (1,)] if many else ["x", "", "a/b/", "caf\udce9"]
        elif param.type_descriptor.annotation is int:
            values += ["5", "0"]  # converted by WholeNumberCoercion, which words its own errors
        for value in values:
            assert ours.coerce(value, param, ctx) == typers.coerce(value, param=param, ctx=ctx), \
                (command.name, param.name, value)
        (converted if ours.convert else absent_only).add(repr(param.type_descriptor.annotation))
    assert {"<class 'str'>", "<class 'pathlib.Path'>", "typing.List[str]"} <= converted
    assert {"<class 'bool'>", "<class 'int'>"} <= absent_only  # int: converted, but not by `convert`


def test_python_is_within_the_range_this_test_guards():
    low, high = _allowed_range('requires-python = "')
    assert low <= sys.version_info[:2] < high, (
        f"Python {sys.version.split()[0]} is outside pyproject.toml's requires-python: run this "
        "file with it, then move the range")


def test_zip_entry_names_are_written_as_raw_bytes():
    """zipfile encodes every name through ZipInfo._encodeFilenameFlags, in
    the local header and in the central directory; export overrides it to
    write a name's bytes as they are (the UTF-8 flag only when they are
    UTF-8 and not ASCII). A zipfile that stops calling it fails here."""
    names = {b"caf\xe9.txt": 0, "d\u00e9j\u00e0.txt".encode(): 0x800, b"plain.txt": 0}
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for raw in names:
            archive.writestr(_zip_info(raw, (2020, 1, 1, 0, 0, 0)), b"x")
    data = buffer.getvalue()
    for raw, flag in names.items():
        assert data.count(raw) == 2, f"{raw!r} is not written as is in both headers: {data!r}"
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        flags = {info.orig_filename: info.flag_bits & 0x800 for info in archive.infolist()}
    assert flags == {raw.decode("utf-8" if flag else "cp437"): flag for raw, flag in names.items()}
