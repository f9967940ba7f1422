"""typer's command classes, made to read like git's: help shows flags as
flags (no `<bool>`, `<list[str]>`, `{REV}` or `[[REV [REV]]]...`, whatever
typer version renders it), porcelain comes before plumbing, `--` passes
paths to commands that take them, and "did you mean" only proposes what
does the same thing.
"""

from __future__ import annotations

import inspect
import re
from pathlib import Path
from typing import get_args, get_origin

from typer import BadParameter
from typer.core import TyperCommand, TyperGroup

from ..errors import OperationInterrupted

#: ctx.meta key holding what followed `--` on the command line
AFTER_DASHDASH = "rnstore.after_dashdash"

#: Commands of git and restic whose rnstore equivalent has another name.
HABITS = {
    "restore": "checkout -- PATH",
    "switch": "checkout",
    "st": "status",
    "ci": "commit",
    "backup": "commit -a",
    "snapshot": "commit -a",
    "prune": "gc",
    "check": "fsck",
    "stats": "du",
    "ls": "ls-tree -r REV",
    "cat": "show REV:PATH",
    "dump": "show REV:PATH",
    "archive": "export",
}


#: Help lists porcelain first, plumbing last.
PANELS = ("Commands", "Remotes", "Space", "Plumbing")


def close_names(typo: str, names) -> list[str]:
    """The names `typo` is a slip of: a unique prefix of at least three
    letters, or one or two letters off (two only for long words). Names
    that merely look alike (`restore`, `read-tree`) are not proposed."""
    if len(typo.lstrip("-")) < 3:
        return []
    prefixed = [n for n in names if n.startswith(typo)]
    if len(prefixed) == 1:
        return prefixed
    allowed = 2 if len(typo.lstrip("-")) >= 6 else 1
    return [n for n in names if _distance(typo, n) <= allowed]


def _distance(a: str, b: str) -> int:
    """Edit distance counting a swap of neighbours as one edit."""
    previous2: list[int] = []
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        current = [i] + [0] * len(b)
        for j, cb in enumerate(b, 1):
            current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb))
            if i > 1 and j > 1 and ca == b[j - 2] and a[i - 2] == cb:
                current[j] = min(current[j], previous2[j - 2] + 1)
        previous2, previous = previous, current
    return previous[-1]


def after_dashdash(ctx) -> list[str]:
    """The words after `--` (paths), for a command made with `paths_after_dashdash`."""
    return list(ctx.meta.get(AFTER_DASHDASH, []))


def _argument_name(param) -> str:
    name = param.metavar or param.name.upper()
    if param.nargs != 1 and "..." not in name and " " not in name:
        name += "..."
    return name


def _unbracketed(name: str) -> str:
    """'[REV [REV]]' -> 'REV [REV]'; '[KIND] OBJ' stays: its first bracket
    closes before the end."""
    depth = 0
    for position, char in enumerate(name):
        depth += {"[": 1, "]": -1}.get(char, 0)
        if depth == 0:
            return name[1:-1] if position == len(name) - 1 and name.startswith("[") else name
    return name


def _argument_usage(param) -> str:
    """The argument in a usage line: in brackets when optional."""
    name = _argument_name(param)
    if not param.required and not name.startswith("["):
        name = f"[{name}]"
    return name


def _option_record(param) -> tuple[str, str]:
    names = sorted(param.opts, key=lambda o: (o.startswith("--"), o))
    text = ", ".join(names + list(param.secondary_opts))
    if not param.is_flag and not getattr(param, "count", False):
        text += " " + (param.metavar or param.name.upper())
    help_text = " ".join((param.help or "").split())
    default = param.default
    if not param.is_flag and default not in (None, (), []) and not callable(default) \
            and not getattr(param, "multiple", False):
        help_text += f" (default: {default})"
    return text, help_text


def _write_description(formatter, doc: str | None) -> None:
    text = inspect.cleandoc(doc or "")
    if text:
        formatter.write_paragraph()
        with formatter.indentation():
            formatter.write_text(text)


#: What typer would convert the command line's text to through a pydantic
#: TypeAdapter, and the conversion that does the same: the type itself.
#: A flag is a bool already (typer converts none): it needs no conversion.
PLAIN_CONVERSIONS = {str: str, Path: Path, bool: None}


class PlainCoercion:
    """typer's coercion contract (its RuntimeParam.coerce) without pydantic,
    for an absent value (None) of any parameter and for text, lists of
    text and paths. typer builds a pydantic TypeAdapter for every parameter
    it converts, even one left out, and importing pydantic costs more than
    all the rest of a cheap command's start-up (README, Performance). Any
    other value (`log -n 5`) goes to typer's own coercion.
    tests/test_pinned_dependencies.py checks that both agree, for the typer
    versions pyproject.toml allows."""

    def __init__(self, convert):
        self.convert = convert

    def coerce(self, value, param, ctx):
        many = param.multiple or param.nargs == -1
        if value is None:
            return () if many else None
        if self.convert is not None:
            if many and isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
                return [self.convert(v) for v in value]
            if not many and isinstance(value, str):
                return self.convert(value)
        from typer._coercion import build_runtime_param  # loads pydantic: only for such a value
        return build_runtime_param(param.type_descriptor).coerce(value, param=param, ctx=ctx)


class WholeNumberCoercion(PlainCoercion):
    """A number of things (`log -n`, `forget --keep-last`), with a message
    in the command line's words: typer's own coercion answers `-n abc` with
    pydantic's "Input should be a valid integer, unable to parse string as
    an integer" (and loads pydantic to say it)."""

    def __init__(self, low: int | None, high: int | None):
        super().__init__(None)
        self.low, self.high = low, high

    def coerce(self, value, param, ctx):
        if not isinstance(value, str):
            return super().coerce(value, param, ctx)
        try:
            number = int(value.strip())
        except ValueError:
            raise BadParameter(f"'{value}' is not a whole number", ctx=ctx, param=param) from None
        if self.low is not None and number < self.low:
            raise BadParameter(f"must be {self.low} or more, not {number}", ctx=ctx, param=param)
        if self.high is not None and number > self.high:
            raise BadParameter(f"must be {self.high} or less, not {number}", ctx=ctx, param=param)
        return number


def plain_coercion(param) -> PlainCoercion | None:
    """A PlainCoercion for a typer parameter: converting, where the type
    itself is the conversion, else for absent values only."""
    descriptor = getattr(param, "type_descriptor", None)
    if descriptor is None:
        return None
    annotation = descriptor.annotation
    if get_origin(annotation) is list and len(get_args(annotation)) == 1:
        annotation = get_args(annotation)[0]
    if descriptor.parameter_info.parser is not None or descriptor.file_annotation is not None \
            or descriptor.is_choice:
        return PlainCoercion(None)
    if annotation is int:
        info = descriptor.parameter_info
        return WholeNumberCoercion(info.min, info.max)
    return PlainCoercion(PLAIN_CONVERSIONS.get(annotation))


def use_plain_coercion(params) -> None:
    for param in params:
        if getattr(param, "_runtime_param", False) is None:  # typer builds its own when None
            param._runtime_param = plain_coercion(param)


class Command(TyperCommand):
    """A command with git-like plain help. With `paths_after_dashdash`,
    what follows `--` is kept apart (see after_dashdash), so `checkout --
    PATH` and `log -- PATH` can tell revisions from paths."""

    paths_after_dashdash = False

    def get_params(self, ctx):
        params = super().get_params(ctx)  # with the --help option, made on demand
        use_plain_coercion(params)
        return params

    def parse_args(self, ctx, args):
        if self.paths_after_dashdash and "--" in args:
            at = args.index("--")
            ctx.meta[AFTER_DASHDASH] = args[at + 1:]
            args = args[:at]
        return super().parse_args(ctx, args)

    def collect_usage_pieces(self, ctx) -> list[str]:
        pieces = ["[OPTIONS]"] if any(
            p.param_type_name == "option" and not p.hidden for p in self.get_params(ctx)) else []
        pieces += [_argument_usage(p) for p in self.get_params(ctx)
                   if p.param_type_name == "argument" and not p.hidden]
        if self.paths_after_dashdash:
            pieces.append("[-- PATH...]")
        return pieces

    def format_help(self, ctx, formatter) -> None:
        formatter.write_usage(ctx.command_path, " ".join(self.collect_usage_pieces(ctx)))
        _write_description(formatter, self.help)
        arguments = [(_unbracketed(_argument_name(p)), " ".join((p.help or "").split()))
                     for p in self.get_params(ctx)
                     if p.param_type_name == "argument" and not p.hidden and p.help]
        options = [_option_record(p) for p in self.get_params(ctx)
                   if p.param_type_name == "option" and not p.hidden]
        for title, rows in (("Arguments", arguments), ("Options", options)):
            if rows:
                with formatter.section(title):
                    formatter.write_dl(rows)


class PathsCommand(Command):
    paths_after_dashdash = True


class LogCommand(PathsCommand):
    """`log -5` is `log -n 5`, as in git (but `-n -1` is a value of -n)."""

    def parse_args(self, ctx, args):
        end = args.index("--") if "--" in args else len(args)
        rewritten = []
        for position, word in enumerate(args):
            takes_value = position > 0 and args[position - 1] in ("-n", "--max-count")
            if position < end and not takes_value and len(word) > 1 and word[0] == "-" \
                    and word[1:].isdigit():
                rewritten += ["-n", word[1:]]
            else:
                rewritten.append(word)
        return super().parse_args(ctx, rewritten)


class ValueCommand(Command):
    """`config limits.max_bytes -5MB`: a word that starts with `-` and a
    digit or a dot is a value (to be judged as one), never an option; click
    read it as the unknown option `-5` ("No such option"), and `-1h` as
    `-h`, the help."""

    def parse_args(self, ctx, args):
        end = args.index("--") if "--" in args else len(args)
        if any(_NEGATIVE.match(word) for word in args[:end]):
            options = [word for word in args[:end] if word.startswith("-") and not _NEGATIVE.match(word)]
            positionals = [word for word in args[:end] if not word.startswith("-") or _NEGATIVE.match(word)]
            args = options + ["--"] + positionals + args[end + 1:]
        return super().parse_args(ctx, args)


_NEGATIVE = re.compile(r"-[0-9.]")


class Group(TyperGroup):
    """The top-level command: plain help with porcelain first, and
    suggestions that never name a command doing something else."""

    def get_params(self, ctx):
        params = super().get_params(ctx)  # with the --help option, made on demand
        use_plain_coercion(params)
        return params

    def format_help(self, ctx, formatter) -> None:
        formatter.write_usage(ctx.command_path, "[OPTIONS] COMMAND [ARGS...]")
        _write_description(formatter, self.help)
        options = [_option_record(p) for p in self.get_params(ctx)
                   if p.param_type_name == "option" and not p.hidden]
        with formatter.section("Options"):
            formatter.write_dl(options)
        panels: dict[str, list[tuple[str, str]]] = {}
        for name in self.list_commands(ctx):
            command = self.get_command(ctx, name)
            if command is None or command.hidden:
                continue
            panel = getattr(command, "rich_help_panel", None) or "Commands"
            panels.setdefault(panel, []).append((name, command.get_short_help_str(limit=300)))
        order = list(PANELS) + [p for p in panels if p not in PANELS]
        for title in sorted(panels, key=order.index):
            rows = panels[title]
            with formatter.section(title):
                formatter.write_dl(rows)

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt as exc:
            # typer turns a KeyboardInterrupt into a silent exit 130; the
            # CLI's error handler says what was interrupted instead
            raise OperationInterrupted("interrupted") from exc

    def resolve_command(self, ctx, args):
        self.suggest_commands = False  # typer's own, from difflib: ours below
        try:
            return super().resolve_command(ctx, args)
        except Exception as exc:
            if type(exc).__name__ != "UsageError" or not args:
                raise
            typo = args[0]
            hints = [f"`rnstore {HABITS[typo]}`"] if typo in HABITS else \
                [f"`rnstore {name}`" for name in close_names(typo, self.commands)]
            message = f"no such command '{typo}'"
            if hints:
                message += f"; did you mean {' or '.join(hints)}?"
            exc.message = message
            raise
