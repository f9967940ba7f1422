"""Remote commands: remote, push, fetch, pull, clone. Each parses, calls one
library function (rnstore.remote.transfer), renders."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, List, Optional

import typer

from ..alloc import one_malloc_arena
from ..errors import InvalidValueError
from ..repo import Repository
from ..units import format_size
from . import _complete as complete
from .app import App, app, open_repo
from ._command import Group
from ._options import JSON, PROGRESS, Nested, sharing
from ._output import in_flags, out, printable, progress
from .porcelain import start_background_gc

# Each command imports the library's remote modules itself: they (and fsspec)
# load for remote commands only, so that every other command starts faster.


def _transfer_process() -> None:
    """Tune this process for a transfer: one malloc arena, and botocore's
    models as plain dicts (rnstore.remote.backend.lean_service_models)."""
    from ..remote.backend import lean_service_models
    one_malloc_arena()
    lean_service_models()


REMOTES = "Remotes"

RemoteName = Annotated[str, typer.Argument(metavar="NAME", help="The remote (see `rnstore remote`).",
                                            autocompletion=complete.remotes)]
NewRemoteName = Annotated[str, typer.Argument(metavar="NAME", help="The new remote's name.")]
Refs = Annotated[Optional[List[str]], typer.Argument(metavar="[REF...]", help="Branches or tags.")]
Options = Annotated[Optional[List[str]], typer.Option(
    "-o", "--option", metavar="KEY=VALUE",
    help="Passed to the storage backend (e.g. endpoint_url=...); repeatable.")]

remote_app = App(cls=Group, help="List, add and remove remotes.", no_args_is_help=False)
app.add_typer(remote_app, name="remote", rich_help_panel=REMOTES)


@remote_app.callback(invoke_without_command=True)
def remote(
    ctx: typer.Context,
    verbose: Annotated[bool, typer.Option("-v", "--verbose", help="Show URLs (passwords masked).")] = False,
) -> None:
    """List remotes; `remote add` and `remote remove` change them.

    Example: rnstore remote -v
    """
    if ctx.invoked_subcommand is not None:
        return
    from ..remote.transfer import list_remotes
    for item in list_remotes(open_repo()):
        out.line(f"{item.name}\t{item.describe(verbose=True)}" if verbose else item.name)


@remote_app.command("add")
def remote_add(
    name: NewRemoteName,
    url: Annotated[str, typer.Argument(metavar="URL", help=(
        "s3://bucket/prefix, gs://..., az://..., sftp://user@host/path, file:///path or a path."))],
    options: Options = None,
) -> None:
    """Add a remote: where push, fetch and pull send and find snapshots.

    Credentials come from the backend's usual environment (AWS_*, AWS_ENDPOINT_URL,
    GOOGLE_APPLICATION_CREDENTIALS, AZURE_STORAGE_*, ssh config and agent).

    Example: rnstore remote add origin s3://team-bucket/experiments
    """
    from ..remote.transfer import add_remote
    added = add_remote(open_repo(), name, url, options or [])
    out.summary(f"added remote {added.name}: {added.describe()}")


@remote_app.command("remove")
def remote_remove(name: RemoteName) -> None:
    """Remove a remote and the branches fetched from it (nothing on the remote changes).

    Example: rnstore remote remove origin
    """
    from ..remote.transfer import remove_remote
    remove_remote(open_repo(), name)
    out.summary(f"removed remote {name}")


def _render(result, verb: str, as_json: bool) -> None:
    if as_json:
        out.json(result.as_json())
        return
    for update in result.refs:
        if out.quiet and update.status != "refused":
            continue  # -q: only what needs the user (git push -q prints no ref either)
        old = update.old[:12] if update.old else "-"
        new = update.new[:12] if update.new else "-"
        reason = f"  ({in_flags(update.reason)})" if update.reason and update.status == "refused" else ""
        out.line(f"{update.status:<11} {printable(update.ref)}  {old} -> {new}{reason}")
    packs = f" in {result.packs} pack{'s' if result.packs != 1 else ''}" if result.packs else ""
    out.summary(f"{verb} {result.objects:,} object{'s' if result.objects != 1 else ''} "
                f"({format_size(result.bytes)}){packs}")


def _render_refused(exc, verb: str, as_json: bool):
    """A refusal still reports what was done, then exits 1 with the error."""
    _render(exc.result, verb, as_json)
    raise exc


def transfer_command(name: str):
    """A command that moves snapshots (push, fetch, pull, clone): listed under
    Remotes, with --json and the progress options."""
    def register(command):
        return app.command(name, rich_help_panel=REMOTES)(sharing(JSON, PROGRESS)(command))
    return register


@transfer_command("push")
def push(
    name: RemoteName,
    refs: Refs = None,
    force: Annotated[bool, typer.Option("--force", "-f",
        help="Move remote branches and tags even when that drops remote snapshots.")] = False,
    delete: Annotated[bool, typer.Option("--delete", "-d",
        help="Remove the named remote branches or tags instead.")] = False,
    **shared,
) -> None:
    """Upload what the remote lacks, then move its branches and tags.

    Default REF: the current branch. A branch moves only forward and a tag never
    moves, unless --force; a refused ref exits 1 (fetch or pull first).

    Example: rnstore push origin main v1.0
    """
    as_json, bar = shared["as_json"], progress(shared["quiet"], shared["no_progress"])
    _transfer_process()
    from ..remote.transfer import PushRefusedError, push as push_refs
    if delete:
        from ..remote.collect import delete_refs
        if not refs:
            raise InvalidValueError("push --delete needs the branches or tags to remove")
        _render(delete_refs(open_repo(), name, refs), "sent", as_json)
        return
    try:
        result = push_refs(open_repo(), name, refs or [], force=force, progress=bar)
    except PushRefusedError as exc:
        _render_refused(exc, "sent", as_json)
    _render(result, "sent", as_json)


@transfer_command("fetch")
def fetch(name: RemoteName, refs: Refs = None, **shared) -> None:
    """Download the remote's snapshots (verified); its branches become NAME/BRANCH.

    Example: rnstore fetch origin && rnstore log origin/main
    """
    as_json, bar = shared["as_json"], progress(shared["quiet"], shared["no_progress"])
    _transfer_process()
    from ..remote.transfer import fetch as fetch_refs
    result = fetch_refs(open_repo(), name, refs or [], progress=bar)
    _render(result, "received", as_json)


@transfer_command("pull")
def pull(name: RemoteName, refs: Refs = None, **shared) -> None:
    """Fetch, then fast-forward the current branch and its files (never merges).

    A workspace with uncommitted changes, or a branch that moved on both sides,
    is left as it is: pull says what it fetched and exits 1.

    Example: rnstore pull origin
    """
    as_json, bar = shared["as_json"], progress(shared["quiet"], shared["no_progress"])
    _transfer_process()
    from ..remote.transfer import CannotFastForwardError, pull as pull_refs
    repo = open_repo()
    try:
        result = pull_refs(repo, name, refs or [], progress=bar)
    except CannotFastForwardError as exc:
        _render_refused(exc, "received", as_json)
    _render(result, "received", as_json)
    if result.fast_forwarded and not as_json:
        out.summary(f"fast-forwarded to {result.fast_forwarded[:12]}")
    start_background_gc(repo)


@transfer_command("clone")
def clone(
    url: Annotated[str, typer.Argument(metavar="URL", help="The remote, as for `remote add`.")],
    directory: Annotated[Path, typer.Argument(metavar="DIR", help="A new or empty folder.")],
    options: Options = None,
    nested: Nested = False,
    **shared,
) -> None:
    """Make a workspace from a remote: remote `origin`, its default branch checked out.

    Example: rnstore clone s3://team-bucket/experiments exp
    """
    as_json, bar = shared["as_json"], progress(shared["quiet"], shared["no_progress"])
    _transfer_process()
    result = Repository.clone(url, directory, options=options or [], nested=nested, progress=bar)
    _render(result, "received", as_json)
    for warning in result.warnings:
        out.warn(warning)
    if not as_json:
        out.summary(f"cloned into {result.path}")


def render_remote_snapshots(repo, remote_name: str, as_json: bool) -> int:
    """snapshots --remote: the snapshots a remote keeps alive, newest first
    (space.py's snapshots calls this with --remote); the exit code: 1 when
    a record could not be read (each named on stderr after the listing)."""
    from ..remote.collect import remote_snapshots
    found = remote_snapshots(repo, remote_name)
    _render_remote_snapshots(found, remote_name, as_json)
    for oid, why in found.damaged:
        out.warn(f"snapshot record {oid} on {remote_name} cannot be read: {why}")
    if found.damaged:
        out.warn(f"{len(found.damaged)} snapshot record{'s' if len(found.damaged) != 1 else ''} "
                 f"on {remote_name} could not be read; the others are listed")
        return 1
    return 0


def _render_remote_snapshots(found, remote_name: str, as_json: bool) -> None:
    if as_json:
        out.json([{"id": s.id, "time": s.time, "message": s.message, "refs": s.refs} for s in found])
        return
    lines = [f"{s.id[:12]}  {s.time[:19].replace('T', ' ')}  "
             f"{(s.message or '').splitlines()[0] if s.message else ''}"
             + (f"  ({', '.join(s.refs)})" if s.refs else "") for s in found]
    if lines:
        out.line("\n".join(lines))
    out.summary(f"{len(found)} live snapshot{'s' if len(found) != 1 else ''} on {remote_name}")


def render_remote_gc(stats, as_json: bool) -> None:
    """gc --remote's report (space.py's gc calls this with --remote)."""
    if as_json:
        out.json(stats.as_json())
        return
    verb = "would delete" if stats.dry_run else "deleted"
    spared = f", {stats.spared_packs} spared for pushes that ran meanwhile" if stats.spared_packs else ""
    young = f", {stats.young_packs} unreachable but within the grace period" if stats.young_packs else ""
    out.summary(f"gc: {verb} {stats.deleted_packs:,} packs, {stats.deleted_objects:,} objects "
                f"({format_size(stats.freed_bytes)}); kept {stats.kept_packs:,} packs{young}{spared}; "
                f"{stats.requests:,} requests")
