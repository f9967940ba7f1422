"""Space commands: forget, gc, du, fsck. Each parses, calls one library
function, renders."""

from __future__ import annotations

import os
import re
import sys
from typing import Annotated, List, Optional

import typer

from ..errors import InvalidValueError
from ..units import format_size, plural
from . import _complete as complete
from .app import app, open_repo
from ._options import Json, NoProgress, Quiet
from ._output import first_line, out, progress

SPACE = "Space"

DryRun = Annotated[bool, typer.Option("--dry-run", "-n", help="Change nothing; show what would happen.")]
Remote = Annotated[Optional[str], typer.Option(
    "--remote", metavar="NAME", help="Act on the remote NAME instead of this workspace's store.",
    autocompletion=complete.remotes)]


@app.command("forget", rich_help_panel=SPACE)
def forget(
    revs: Annotated[Optional[List[str]], typer.Argument(metavar="[REV...]", autocompletion=complete.revisions, help="Snapshots to forget.")] = None,
    keep_last: Annotated[Optional[int], typer.Option(
        "--keep-last", metavar="N", help="Keep the N newest live snapshots, forget the rest.")] = None,
    keep_within: Annotated[Optional[str], typer.Option(
        "--keep-within", metavar="DURATION",
        help="Keep snapshots made within DURATION of the newest one (e.g. 30d), forget the rest.")] = None,
    dry_run: DryRun = False,
    json_: Json = False,
    quiet: Annotated[bool, typer.Option("-q", "--quiet", help="No summary.")] = False,
    remote: Remote = None,
) -> None:
    """Drop snapshots from the live set; `gc` then frees what nothing else holds.

    A snapshot still named by a tag or branch stays reachable, and forget says so.
    With REVs and keep rules, both the named snapshots and those no rule keeps go.
    Reports, per snapshot and in total, the objects and bytes the next
    `gc --prune now` frees, and what stays because other roots reach it.

    Example: rnstore forget --keep-last 10 --keep-within 30d
    """
    if remote is not None:
        from ..remote.collect import forget_remote  # remote modules load for remote commands only (start-up)
        result = forget_remote(open_repo(), remote, revs or [], keep_last=keep_last,
                               keep_within=keep_within, dry_run=dry_run)
    else:
        result = open_repo().forget(revs or [], keep_last=keep_last, keep_within=keep_within,
                                    dry_run=dry_run)
    out.quiet = out.quiet or quiet
    for problem in result.problems:
        out.warn(f"not counted: {problem}")
    if json_:
        out.json(result.as_json())
    verb = "would forget" if dry_run else "forget"
    lines = []
    for item in result.removed:
        note = ""
        if item.still_named_by:
            note = f"  (still kept by {', '.join(item.still_named_by)})"
        frees = "" if remote is not None else (  # a remote's bytes: gc --remote counts them
            f"  [frees {plural(item.freed_objects, 'object')} ({format_size(item.freed_bytes)}), "
            f"{item.kept_objects:,} ({format_size(item.kept_bytes)}) stay]")
        lines.append(f"{verb:<12} {item.id[:12]}  {_time(item.time)}  "
                     f"{first_line(item.message)}{note}{frees}")
    for item in result.kept:
        lines.append(f"{'keep':<12} {item.id[:12]}  {_time(item.time)}  "
                     f"{first_line(item.message)}  ({', '.join(item.reasons)})")
    if lines and not json_:
        out.line("\n".join(lines))
    for oid in result.not_live:
        out.warn(f"snapshot {oid[:12]} is not a live snapshot of this workspace; nothing to forget")
    for item in result.removed:
        if item.still_named_by:
            out.warn(f"snapshot {item.id[:12]} stays reachable: still kept by "
                     f"{', '.join(item.still_named_by)}")
    done = "would be forgotten" if dry_run else "forgotten"
    kept = f", {len(result.kept)} kept by the rules" if keep_last is not None or keep_within else ""
    frees = "would free" if dry_run else "`rnstore gc --prune now` frees"
    if remote is not None:
        tail = f"; `rnstore gc --remote {remote}` frees their space" if result.removed else ""
    else:
        tail = (f"; {frees} {plural(result.freed_objects, 'object')} ({format_size(result.freed_bytes)})"
                if result.removed else "")
    out.summary(f"{len(result.removed)} snapshot{'s' if len(result.removed) != 1 else ''} {done}{kept}"
                + tail)


def _time(text: str | None) -> str:
    """'2026-11-24T03:59:37.123456Z' -> '2026-11-24 03:59:37' (UTC)."""
    return text[:19].replace("T", " ") if text else "?" + " " * 18


@app.command("gc", rich_help_panel=SPACE)
def gc(
    dry_run: DryRun = False,
    prune: Annotated[Optional[str], typer.Option(
        "--prune", metavar="DURATION|now",
        help="Grace period: spare unreachable objects younger than this (default: gc.prune, 1h).")] = None,
    auto: Annotated[bool, typer.Option(
        "--auto", help="Do nothing unless the last gc ran more than gc.interval ago, or the store holds "
        "more loose objects than gc.auto_loose or more packs than gc.auto_packs.")] = False,
    threshold: Annotated[Optional[str], typer.Option(
        "--threshold", metavar="PERCENT",
        help="Rewrite a pack only when at least this percent of it is garbage (default: gc.threshold, "
        "10); 0 frees every unreachable object.")] = None,
    aggressive: Annotated[bool, typer.Option(
        "--aggressive", help="Repack every pack and loose object into one pack, choosing the deltas "
        "anew over the whole history (slower; the smallest store).")] = False,
    json_: Json = False,
    quiet: Quiet = False,
    no_progress: NoProgress = False,
    remote: Remote = None,
) -> None:
    """Delete objects no root reaches that are older than the grace period, and repack.

    Roots are the live snapshots, refs, HEAD and index of every workspace
    using the store. If any root cannot be read, gc deletes nothing and exits 1.
    gc then packs loose objects and small packs into one pack.

    Example: rnstore gc --auto -q
    """
    repo = open_repo()
    bar = progress(quiet, no_progress)
    if remote is not None:
        if threshold is not None or aggressive:
            raise InvalidValueError("--threshold and --aggressive are for the local store: a remote's gc rewrites a pack "
                                    "when more than half of it is garbage")
        if auto:  # it was ignored: every scheduled call ran a whole remote gc
            raise InvalidValueError("--auto is for the local store: a remote keeps no record of its last gc",
                                    hints=["schedule `rnstore gc --remote NAME` itself (README, Retention on a remote)"])
        from ..remote.collect import gc_remote  # remote modules load for remote commands only (start-up)
        from .remote import render_remote_gc  # the remote commands' module: loaded with --remote only
        render_remote_gc(gc_remote(repo, remote, dry_run=dry_run, prune=prune), json_)
        return
    stats = repo.gc(dry_run=dry_run, prune=prune, auto=auto, threshold=threshold, aggressive=aggressive,
                    progress=bar)
    for note in stats.notes:
        out.warn(note)
    if json_:
        out.json(stats.as_json())
    if stats.skipped:
        out.summary("gc: nothing to do, the last gc ran less than gc.interval ago "
                    "and the store is below gc.auto_loose and gc.auto_packs")
        return
    verb = "would delete" if dry_run else "deleted"
    temp = ""
    if stats.deleted_temp_files:
        temp = f" and {stats.deleted_temp_files} stale temporary file" + \
               ("s" if stats.deleted_temp_files != 1 else "")
    young = f" ({stats.young_objects:,} unreachable but within the grace period)" if stats.young_objects else ""
    packed = ""
    if stats.repacked_objects or stats.packs_after != stats.packs_before:
        packed = (f"; {'would repack' if dry_run else 'repacked'} {plural(stats.repacked_objects, 'object')} "
                  f"(packs {stats.packs_before:,} -> {stats.packs_after:,}, "
                  f"loose objects {stats.loose_before:,} -> {stats.loose_after:,})")
    left = ""
    if stats.garbage_kept_objects:
        left = (f"; {'would leave' if dry_run else 'left'} {plural(stats.garbage_kept_objects, 'unreachable object')} "
                f"({format_size(stats.garbage_kept_bytes)}) in packs less than {stats.threshold:g}% garbage "
                "(gc.threshold)")
    out.summary(f"gc: {verb} {plural(stats.deleted_objects, 'object')} ({format_size(stats.freed_bytes)}){temp}; "
                f"kept {stats.kept_objects:,}{young}{packed}{left}")


@app.command("du", rich_help_panel=SPACE)
def du(
    revs: Annotated[Optional[List[str]], typer.Argument(metavar="[REV...]", autocompletion=complete.revisions, help="Only these snapshots.")] = None,
    json_: Json = False,
) -> None:
    """Show store usage and what each live snapshot holds alone.

    `exclusive` is what forgetting a snapshot (and dropping refs naming it)
    would let gc free.

    Example: rnstore du --json | jq .store.dedup_ratio
    """
    stats = open_repo().du(revs or [])
    if json_:
        out.json(stats.as_json())
        return
    _print_du(stats)


def _print_du(stats) -> None:
    tables = _du_tables(stats)
    text = _plain_tables(tables)
    if text is not None:
        sys.stdout.write(text)
        return
    from rich.console import Console  # rich loads only for a table _plain_tables leaves to it
    from rich.table import Table  # rich loads only for a table _plain_tables leaves to it

    console = Console(file=sys.stdout, no_color=bool(os.environ.get("NO_COLOR")),
                      highlight=False, width=None if sys.stdout.isatty() else 120)
    for title, columns, rows, show_header, after in tables:
        table = Table(title=title, title_justify="left", show_header=show_header)
        for name, justify in columns:
            table.add_column(name, justify=justify, overflow="fold" if name == "message" else "ellipsis")
        for row in rows:
            table.add_row(*row)
        console.print(table)
        if after:
            console.print(after)


def _du_tables(stats) -> list:
    """du's tables: (title, columns as (name, justify), rows, show_header, a line after it) each."""
    tables = []
    if stats.snapshots:
        rows = [(s.id[:12] + ("" if s.live else " *"), s.time[:19].replace("T", " "),
                 f"{s.files:,}", format_size(s.logical_bytes), format_size(s.exclusive_bytes),
                 ", ".join(s.tags), first_line(s.message)) for s in stats.snapshots]
        legend = "" if all(s.live for s in stats.snapshots) else "* not live: forgotten, or kept only by a ref"
        tables.append(("Snapshots", [("snapshot", "left"), ("time", "left"), ("files", "right"),
                                     ("size", "right"), ("exclusive", "right"), ("tags", "left"),
                                     ("message", "left")], rows, True, legend))
    store = stats.store
    rows = [("objects", f"{store.objects:,} ({store.blobs:,} blobs, {store.trees:,} trees, "
                        f"{store.snapshots:,} snapshots)"),
            ("stored on disk", format_size(store.stored_bytes)),
            ("unique file bytes", format_size(store.logical_bytes)),
            ("live snapshots hold", format_size(store.referenced_bytes)),
            ("reclaimable by gc", format_size(store.reclaimable_bytes))]
    if store.unreachable_bytes != store.reclaimable_bytes:
        rows.append(("unreachable, kept by gc", format_size(store.unreachable_bytes - store.reclaimable_bytes)))
    rows += [("dedup ratio", f"{store.dedup_ratio:.2f}x"),
             ("compression ratio", f"{store.compression_ratio:.2f}x"),
             ("space saving", f"{round(store.space_saving * 100, 1) + 0.0:.1f} %")]  # + 0.0: never "-0.0"
    tables.append(("Store", [("what", "left"), ("value", "right")], rows, False, ""))
    return tables


#: Cells _plain_tables draws as rich would: printable ASCII, single spaces
#: inside, none of rich's markup ("[") or emoji (":name:") but in a time.
_PLAIN_CELL = re.compile(r"(?:[!-9;-Z\\^-~]+(?: [!-9;-Z\\^-~]+)*)?")
_PLAIN_TIME = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}:[0-9]{2}")
_RICH_ENVIRONMENT = ("FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE", "JUPYTER_COLUMNS", "JUPYTER_LINES")


def _plain_tables(tables) -> str | None:
    """The tables exactly as rich draws them on a pipe or file (120 columns,
    no colour, heavy-headed boxes), without loading rich (tens of
    milliseconds, much of a warm du); None when rich would draw them otherwise (a terminal,
    an encoding other than UTF-8, a table wider than 120 columns, a cell
    rich would wrap, mark up or replace an emoji in)."""
    if sys.stdout.isatty() or not (sys.stdout.encoding or "").lower().replace("-", "").startswith("utf8") \
            or any(name in os.environ for name in _RICH_ENVIRONMENT):
        return None
    lines = []
    for title, columns, rows, show_header, after in tables:
        for row in rows:
            for name, cell in zip((name for name, _ in columns), row):
                if not (_PLAIN_TIME if name == "time" else _PLAIN_CELL).fullmatch(cell):
                    return None
        cells = [[name for name, _ in columns]] if show_header else []
        cells += rows
        widths = [max(len(row[at]) for row in cells) for at in range(len(columns))]
        if sum(widths) + 3 * len(widths) + 1 > 120:
            return None

        def line(left: str, fill: str, cross: str, right: str) -> str:
            return left + cross.join(fill * (width + 2) for width in widths) + right

        def row_line(row, bar: str) -> str:
            return bar + bar.join(f" {cell.rjust(width) if justify == 'right' else cell.ljust(width)} "
                                  for cell, width, (_, justify) in zip(row, widths, columns)) + bar
        table_width = sum(widths) + 3 * len(widths) + 1
        lines.append(title.ljust(table_width))
        if show_header:
            lines += [line("┏", "━", "┳", "┓"), row_line(cells[0], "┃"), line("┡", "━", "╇", "┩")]
        else:
            lines.append(line("┌", "─", "┬", "┐"))
        lines += [row_line(row, "│") for row in rows]
        lines.append(line("└", "─", "┴", "┘"))
        if after:
            lines.append(after)
    return "\n".join(lines) + "\n"


@app.command("fsck", rich_help_panel=SPACE)
def fsck(
    quick: Annotated[bool, typer.Option("--quick", help="Skip content hashing (headers and trees are still read).")] = False,
    json_: Json = False,
    quiet: Quiet = False,
    no_progress: NoProgress = False,
) -> int:
    """Verify every object and every reference; list each problem; exit 1 if any.

    Problems are `missing`, `hash mismatch` and `corrupt`; `dangling` objects
    (no root reaches them; gc deletes them, or leaves them in packs under gc.threshold) are listed but are no failure.

    Example: rnstore fsck --json
    """
    repo = open_repo()
    bar = progress(quiet, no_progress)
    result = repo.fsck(quick=quick, progress=bar)
    if json_:
        out.json(result.as_json())
    else:
        lines = []
        for p in result.problems:
            what = f"{p.kind} {p.type} {p.id}" if p.type else f"{p.kind} {p.id}"
            lines.append(f"{what}: {p.detail}" if p.detail and p.kind != "dangling" else what)
            lines.extend(f"  in {path}" for path in p.paths)
            lines.extend(f"  needed by delta {oid}" for oid in p.dependents)
        if lines:
            out.line("\n".join(lines))
    fatal = [p for p in result.problems if p.fatal]
    dangling = len(result.problems) - len(fatal)
    tail = f", {dangling:,} dangling" if dangling else ""
    if fatal:
        sys.stderr.write(f"error: fsck found {len(fatal):,} problem{'s' if len(fatal) != 1 else ''} "
                         f"in {plural(result.checked_objects, 'object')}{tail}\n")
        return 1
    out.summary(f"fsck: {plural(result.checked_objects, 'object')} checked, no problems{tail}")
    return 0


@app.command("snapshots", rich_help_panel=SPACE)
def snapshots(
    tag: Annotated[Optional[List[str]], typer.Option(
        "--tag", metavar="T", help="Only snapshots with tag T (repeatable: any of them).")] = None,
    meta: Annotated[Optional[List[str]], typer.Option(
        "--meta", metavar="K=V", help="Only snapshots whose meta K is V (repeatable: all of them).")] = None,
    workspace: Annotated[Optional[str], typer.Option(
        "--workspace", metavar="PATH", help="Only snapshots the workspace at PATH holds.")] = None,
    since: Annotated[Optional[str], typer.Option(
        "--since", metavar="T", help="Only snapshots made at or after T (a UTC date or time, or 7d for 7 days ago).")] = None,
    until: Annotated[Optional[str], typer.Option(
        "--until", metavar="T", help="Only snapshots made at or before T.")] = None,
    json_: Json = False,
    remote: Remote = None,
) -> int:
    """List every snapshot the store keeps alive, from every workspace of the store.

    Each line: id, time, workspace, host, tags and message. A snapshot is
    kept alive by a workspace (live, or named by a branch or HEAD), by a
    tag of the store, or by a workspace gone within the grace period.
    With --remote NAME: the snapshots that remote keeps alive (its records).

    Example: rnstore snapshots --tag 'build-*' --since 7d --json
    """
    if remote is not None:
        given = [flag for flag, value in (("--tag", tag), ("--meta", meta), ("--workspace", workspace),
                                          ("--since", since), ("--until", until)) if value]
        if given:  # they were ignored: every remote snapshot was listed, whatever they said
            raise InvalidValueError(f"{', '.join(given)} filter the store's snapshots, not a remote's",
                                    hints=["`rnstore snapshots --remote NAME` lists every snapshot the remote keeps"])
        from .remote import render_remote_snapshots  # the remote commands' module: loaded with --remote only
        return render_remote_snapshots(open_repo(), remote, json_)
    from ..storeview import store_snapshots  # loads for this command only (start-up of du, gc)
    view = store_snapshots(open_repo(), tags=tag or [], meta=meta or [], workspace=workspace,
                           since=since, until=until)

    def line(s) -> str:
        tags = f"  [{', '.join(s.tags)}]" if s.tags else ""
        return f"{s.id[:12]}  {_time(s.time)}  {s.workspace or '?'}  {s.host or '?'}{tags}  {first_line(s.message)}"

    if _render_listing(view.problems, view.snapshots, json_, line):
        out.summary(f"{len(view.snapshots):,} snapshot{'s' if len(view.snapshots) != 1 else ''}")
    if view.problems:  # missing or damaged objects: exit 1, as `snapshots --remote` does
        out.warn(f"{plural(len(view.problems), 'root')} could not be read; what could is listed "
                 "(`rnstore fsck` lists the damage)")
        return 1
    return 0


def _render_listing(problems: list[str], items: list, as_json: bool, line) -> bool:
    """Warn about each problem, then print the items as one JSON document or
    one line each; True when a human summary should follow."""
    for problem in problems:
        out.warn(problem)
    if as_json:
        out.json([item.as_json() for item in items])
        return False
    if items:
        out.line("\n".join(line(item) for item in items))
    return True


@app.command("workspaces", rich_help_panel=SPACE)
def workspaces(json_: Json = False) -> None:
    """List the workspaces registered in the store.

    Each line: path, alive or gone (since when), last commit, how many
    snapshots it keeps alive, and the stored bytes only it keeps alive
    (what gc frees once it is gone longer than the grace period).

    Example: rnstore workspaces --json
    """
    from ..plumbing import utc_iso  # loads for this command only (start-up of du, gc)
    from ..storeview import store_workspaces  # loads for this command only (start-up of du, gc)
    view = store_workspaces(open_repo())

    def line(w) -> str:
        state = w.state
        if w.state == "gone" and w.gone_since is not None:
            state = "gone since " + _time(utc_iso(w.gone_since))
        return (f"{w.path}{' (here)' if w.current else ''}  {state}  last commit {_time(w.last_commit)}  "
                f"{w.snapshots:,} snapshot{'s' if w.snapshots != 1 else ''}  "
                f"{format_size(w.exclusive_bytes)} only here")

    if not _render_listing(view.problems, view.workspaces, json_, line):
        return
