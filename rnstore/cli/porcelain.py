"""Porcelain commands: each parses, calls one library function, renders."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, List, Optional

import typer

from ..config import SETTINGS, _setting
from ..errors import InvalidValueError, MissingObjectError
from ..objects import meta_count
from ..quoting import quote_path_text
from ..repo import DOTDIR, Repository
from ..units import format_size, plural
from ._command import LogCommand, ValueCommand, after_dashdash
from . import _complete as complete
from .app import app, open_repo
from ._options import PROGRESS, STAGING, Excludes, Json, Nested, NoIgnore, StrictIgnore, sharing, staging_options
from ._output import first_line, out, path_entries, print_tree, progress, tree_json


@app.command("init")
def init(
    directory: Annotated[Optional[Path], typer.Argument(metavar="[DIR]")] = None,
    objects: Annotated[Optional[Path], typer.Option("--objects", metavar="PATH",
        help="Keep objects in a shared object store at PATH.")] = None,
    branch: Annotated[str, typer.Option("--branch", "-b", help="Name of the first branch.")] = "main",
    shared: Annotated[str, typer.Option("--shared", metavar="umask|group",
        help="group: the store is shared by a team (group-writable, setgid folders, "
             "whatever the umask).")] = "umask",
    no_default_ignore: Annotated[bool, typer.Option("--no-default-ignore",
        help="Do not write a default .rnignore.")] = False,
    nested: Nested = False,
    quiet: Annotated[bool, typer.Option("-q", "--quiet", help="Print nothing.")] = False,
) -> None:
    """Make a workspace (running it again changes nothing).

    Example: rnstore init --objects /shared/rnstore --shared=group
    """
    target = directory or Path(".")
    existed = (target / DOTDIR / "HEAD").is_file()
    repo = Repository.init(target, objects=objects, branch=branch, shared=shared,
                           default_ignore=not no_default_ignore, nested=nested, notify=out.notice)
    out.quiet = out.quiet or quiet
    if existed:  # as `git init -b` says on a re-init: what was asked and not done
        wanted = objects or os.environ.get("RNSTORE_OBJECTS")
        if wanted and os.path.realpath(wanted) != os.path.realpath(repo.store_root):
            given = "--objects " if objects else "RNSTORE_OBJECTS="
            out.warn(f"re-init: ignored {given}{wanted}: this workspace keeps its objects in "
                     f"{repo.store_root} (a workspace's store cannot change)")
        head = repo.refs.symbolic_head()
        if branch != "main" and head != f"refs/heads/{branch}":
            out.warn(f"re-init: ignored --branch {branch}")
    verb = "Reinitialized existing" if existed else "Initialized empty"
    out.summary(f"{verb} rnstore workspace in {repo.dotdir}")


def _warn_add(result) -> None:
    for path, why in result.raw_skipped:
        out.warn(f"skipped {why} '{os.fsdecode(path)}'")
    for path, why in result.raw_unreadable:
        out.warn(f"could not read '{os.fsdecode(path)}' ({why}); left as it was")
    for path in result.raw_ignored:
        out.warn(f"'{os.fsdecode(path)}' is ignored by .rnignore and was not staged "
                 f"(--no-ignore stages it)")


@app.command("add")
@sharing(STAGING, PROGRESS)
def add(
    paths: Annotated[List[str], typer.Argument(metavar="PATH...")],
    all_: Annotated[bool, typer.Option("-A", "--all", help="Stage the whole workspace.")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", "-n", help="Show what would be staged.")] = False,
    **shared,
) -> None:
    """Stage additions, changes and deletions under PATH.

    Example: rnstore add .
    """
    repo = open_repo()
    bar = progress(shared["quiet"], shared["no_progress"])
    targets = [str(repo.root)] if all_ else paths
    result = repo.add(targets, dry_run=dry_run, progress=bar,
                      **staging_options(shared))
    _warn_add(result)
    if not dry_run and result.changed:
        start_background_gc(repo)
    if dry_run:
        lines = [b"add " + p for p in result.raw_added] + [b"update " + p for p in result.raw_modified] + \
                [b"delete " + p for p in result.raw_deleted]
        out.bytes(b"".join(line + b"\n" for line in lines))
        return
    def files(paths) -> int:
        return sum(1 for p in paths if p not in result.raw_folders)

    folders = "".join(
        f", {plural(count, 'empty folder')} {verb}" for count, verb in (
            (len(result.raw_folders.intersection(result.raw_added)), "added"),
            (len(result.raw_folders.intersection(result.raw_deleted)), "removed")) if count)
    out.summary(f"staged {files(result.raw_added)} added, {files(result.raw_modified)} modified, "
                f"{files(result.raw_deleted)} deleted{folders}; the index holds "
                f"{plural(result.files, 'file')}, {format_size(result.bytes)}")


@app.command("status")
def status(
    short: Annotated[bool, typer.Option("-s", "--short", help="git's `XY path` format, paths relative to here.")] = False,
    porcelain: Annotated[bool, typer.Option("--porcelain", help="git's `XY path` format, paths from the workspace root (for scripts).")] = False,
    ignored: Annotated[bool, typer.Option("--ignored", help="Also list what .rnignore hides.")] = False,
    json_: Json = False,
    nul: Annotated[bool, typer.Option("-z", help="End each entry with NUL, paths unquoted; implies --porcelain.")] = False,
    exclude: Excludes = None,
    no_ignore: NoIgnore = False,
    strict_ignore: StrictIgnore = False,
) -> None:
    """Show staged, changed and untracked paths, relative to the current folder.

    A tracked file that a rule now ignores is shown as "now ignored", with the
    rule: the next `add` of its folder drops it from the index.

    A path holding a control character, `"` or `\\` is shown in double
    quotes with C escapes, as git does.

    Example: rnstore status -s
    """
    repo = open_repo()
    result = repo.status(excludes=exclude or [], no_ignore=no_ignore, ignored=ignored,
                         strict_ignore=strict_ignore)
    if json_:
        document = {
            "branch": result.branch, "head": result.head,
            "staged": [{"path": c.path, "status": c.status} for c in result.staged],
            "unstaged": [{"path": c.path, "status": c.status} for c in result.unstaged],
            "untracked": result.untracked,
            "now_ignored": [{"path": p, "rule": rule} for p, rule in result.now_ignored],
        }
        if ignored:
            document["ignored"] = result.ignored
        out.json(document)
        return
    porcelain = porcelain or (nul and not short)
    shown = (lambda path: path) if porcelain else (lambda path: os.fsencode(_here(repo, path)))
    if porcelain or short:
        codes: dict[bytes, list[str]] = {}
        for change in result.staged:
            codes.setdefault(change.raw_path, [" ", " "])[0] = change.status
        for change in result.unstaged:
            codes.setdefault(change.raw_path, [" ", " "])[1] = change.status
        for path, _rule in result.raw_now_ignored:  # what the next `add .` does to the index
            codes.setdefault(path, [" ", " "])[1] = "D"
        heads = [("".join(codes[p])).encode() + b" " for p in sorted(codes)]
        paths = [shown(p) for p in sorted(codes)]
        for head, listed in ((b"?? ", result.raw_untracked), (b"!! ", result.raw_ignored)):
            heads += [head] * len(listed)
            paths += [shown(p) for p in listed]
        out.bytes(path_entries(paths, nul=nul, heads=heads))
        return
    where = f"On branch {result.branch}" if result.branch else f"HEAD detached at {result.head[:12]}"
    lines = [where]
    if result.head is None:
        lines.append("No snapshots yet")
    names = {"A": "new file", "M": "modified", "D": "deleted", "T": "typechange"}
    for title, changes in (("Changes to be committed:", result.staged),
                           ("Changes not staged for commit:", result.unstaged)):
        if changes:
            lines += ["", title] + [f"  {names[c.status] + ':':<12}{_shown_here(repo, c.raw_path)}" for c in changes]
    if result.raw_now_ignored:
        lines += ["", "Tracked but now ignored (the next `rnstore add` of their folder drops them):"]
        lines += [f"  {'now ignored:':<14}{_shown_here(repo, p)}  ({rule})" for p, rule in result.raw_now_ignored]
    if result.raw_untracked:
        lines += ["", "Untracked files:"] + [f"  {_shown_here(repo, p)}" for p in result.raw_untracked]
    if ignored and result.raw_ignored:
        lines += ["", "Ignored files:"] + [f"  {_shown_here(repo, p)}" for p in result.raw_ignored]
    if result.clean:
        lines += ["", "nothing to commit, workspace clean"]
    out.line("\n".join(lines))


def _here(repo, path: bytes) -> str:
    """A workspace path (from the root) as the user should type it from the
    current folder, as git shows paths; a folder keeps its trailing "/"."""
    full = os.path.join(os.fsencode(repo.root), path)
    shown = os.fsdecode(os.path.relpath(full, os.fsencode(os.getcwd())))
    return shown + "/" if path.endswith(b"/") and not shown.endswith("/") else shown


def _shown_here(repo, path: bytes) -> str:
    """_here, quoted as git quotes a path in a human listing."""
    return quote_path_text(_here(repo, path))


@app.command("commit")
@sharing(STAGING, PROGRESS)
def commit(
    message: Annotated[str, typer.Option("-m", "--message", help="The snapshot's message.")],
    all_: Annotated[bool, typer.Option("-a", "--all", help="Stage the whole workspace first.")] = False,
    meta: Annotated[Optional[List[str]], typer.Option("--meta", metavar="K=V", help="Extra metadata (repeatable).")] = None,
    allow_empty: Annotated[bool, typer.Option("--allow-empty", help="Commit even if nothing changed.")] = False,
    **shared,
) -> None:
    """Make a snapshot from the index and move the branch; print its id.

    Example: SNAP=$(rnstore commit -a -m "run 42" --meta lr=0.1)
    """
    repo = open_repo()
    bar = progress(shared["quiet"], shared["no_progress"])
    result = repo.commit(message, all=all_, meta=meta or [], allow_empty=allow_empty, progress=bar,
                         **staging_options(shared))
    if result.added is not None:
        _warn_add(result.added)
    out.line(result.id)
    where = result.branch or "detached HEAD"
    out.summary(f"[{where} {result.id[:12]}] {first_line(message)} "
                f"({plural(result.files, 'file')}, {format_size(result.bytes)})")
    start_background_gc(repo)


def start_background_gc(repo) -> None:
    """After a command that added objects (add, commit, pull): `gc --auto` in the background
    when gc.interval has passed since the last gc, or the store holds more loose objects
    or packs than gc.auto_loose or gc.auto_packs (unless gc.auto=false)."""
    from ..gc import start_auto_gc  # (gc's modules are not status's nor log's to load)
    started = start_auto_gc(repo)
    if started is not None:
        pid, reason = started
        out.notice(f"gc: {reason}; `rnstore gc --auto` "
                   f"started in the background (pid {pid}; `rnstore config gc.auto false` turns this off)")


@app.command("log", cls=LogCommand)
def log(
    ctx: typer.Context,
    rev: Annotated[Optional[str], typer.Argument(metavar="[REV]", autocompletion=complete.revisions)] = None,
    number: Annotated[Optional[int], typer.Option("-n", "--max-count", min=0, metavar="N",
        help="Show at most N snapshots (-N says the same).")] = None,
    oneline: Annotated[bool, typer.Option("--oneline", help="One line per snapshot.")] = False,
    stat: Annotated[bool, typer.Option("--stat", help="Files changed in each snapshot, with lines added and removed.")] = False,
    grep: Annotated[Optional[str], typer.Option("--grep", metavar="TEXT",
        help="Only snapshots whose message contains TEXT (any case).")] = None,
    meta: Annotated[Optional[List[str]], typer.Option("--meta", metavar="K=V",
        help="Only snapshots recorded with K=V (repeatable: all must match).")] = None,
    all_: Annotated[bool, typer.Option("--all", help="Every live or tagged snapshot, newest first.")] = False,
    json_: Json = False,
) -> None:
    """Show history from REV (default HEAD); `-- PATH` keeps the snapshots that changed PATH.

    Example: rnstore log --meta lr=0.05 --oneline -5
    """
    repo = open_repo()
    history = repo.log(rev, limit=number, all=all_, grep=grep, meta=meta or [],
                       paths=after_dashdash(ctx) or None)
    if json_:
        out.json([e.as_json() for e in history.entries])
    elif oneline:
        chunks = []
        for e in history.entries:
            chunks.append(f"{e.id[:12]}{_decorations(e)} {first_line(e.snapshot.message)}\n")
            if stat:
                chunks.extend(_snapshot_stat(repo, e.snapshot))
        out.bytes("".join(chunks).encode("utf-8", "surrogateescape"))
    else:
        blocks = []
        for e in history.entries:
            s = e.snapshot
            lines = [f"snapshot {e.id}{_decorations(e)}",
                     f"Date:   {s.time}",
                     f"User:   {s.meta.get('user', '?')}@{s.meta.get('host', '?')}",
                     f"Files:  {plural(meta_count(s.meta, 'files'), 'file')} ({format_size(meta_count(s.meta, 'bytes'))})"]
            extra = {k: v for k, v in s.meta.items() if k not in _STANDARD_META}
            lines += [f"Meta:   {k}={v}" for k, v in sorted(extra.items())]
            lines += [""] + [f"    {line}" for line in (s.message.splitlines() or [""])]
            block = "\n".join(lines) + "\n"
            if stat:
                block += "\n" + "".join(_snapshot_stat(repo, s))
            blocks.append(block)
        out.bytes("\n".join(blocks).encode("utf-8", "surrogateescape"))
    for parent in history.missing_parents:
        out.warn(f"history ends at {parent[:12]}: that parent was forgotten and collected")
    if history.lost_parents:
        lost = history.lost_parents
        raise MissingObjectError(
            f"snapshot {lost[0]} is missing, though it is still live"
            + (f" (and {len(lost) - 1} more)" if len(lost) > 1 else "") + ": the store is damaged",
            lost[0], hints=["`rnstore fsck` lists the damage"])


def _snapshot_stat(repo, snapshot) -> list[str]:
    """`--stat` lines of a snapshot against its first parent (or, without
    one, against nothing: every file added)."""
    from .. import diff as difflib_  # loads the store and zstandard, which rev-parse must not
    parent = snapshot.parents[0] if snapshot.parents else None
    try:
        result = difflib_.diff_trees(repo, repo.store.get_snapshot(parent).tree if parent else None,
                                     snapshot.tree)
    except MissingObjectError:
        result = difflib_.diff_trees(repo, None, snapshot.tree)
    return _stat_lines(repo, result)


def _stat_lines(repo, result) -> list[str]:
    """git's `--stat`: one line per file, then the totals."""
    from .. import diff as difflib_  # loads the store and zstandard, which rev-parse must not
    stats = []
    for entry in result.entries:
        lines, added, removed = difflib_.unified(repo, result, entry)
        stats.append((quote_path_text(entry.path), added, removed, lines is None))
    width = max((len(p) for p, *_ in stats), default=0)
    chunks = []
    for path, added, removed, binary in stats:
        change = "Bin" if binary else f"{added + removed:>5} {'+' * min(added, 40)}{'-' * min(removed, 40)}"
        chunks.append(f" {path:<{width}} | {change}\n")
    inserted, deleted = sum(s[1] for s in stats), sum(s[2] for s in stats)
    chunks.append(f" {plural(len(stats), 'file')} changed, {plural(inserted, 'insertion')}(+), "
                  f"{plural(deleted, 'deletion')}(-)\n")
    return chunks


_STANDARD_META = ("user", "host", "rnstore_version", "files", "bytes", "workspace")


def _decorations(entry) -> str:
    names = entry.branches + [f"tag: {t}" for t in entry.tags]
    return f" ({', '.join(names)})" if names else ""


@app.command("show")
def show(rev: Annotated[str, typer.Argument(metavar="REV[:PATH]", autocompletion=complete.revisions)] = "HEAD",
         json_: Json = False) -> None:
    """Show a snapshot's summary, or a file's bytes (REV:PATH) on stdout.

    With --json: a snapshot as `log --json` shows it, a folder as
    `ls-tree --json`, a file's id and size.

    Example: rnstore show HEAD~3:train.py > old_train.py
    """
    from .. import plumbing
    from ..history import LogEntry, names_by_id  # loads the store and zstandard, which rev-parse must not
    repo = open_repo()
    info = plumbing.object_info(repo, rev)
    if json_:
        if info.kind == "snapshot":
            tags, branches = names_by_id(repo)
            out.json(LogEntry(info.id, repo.store.get_snapshot(info.id),
                              tags.get(info.id, []), branches.get(info.id, [])).as_json())
        elif info.kind == "tree":
            out.json(tree_json(plumbing.ls_tree(repo, info.id)))
        else:
            out.json({"id": info.id, "type": info.kind, "size": info.size})
        return
    if info.kind == "blob":
        for chunk in plumbing.cat_file(repo, info.id):
            out.bytes(chunk)
        return
    if info.kind == "tree":
        print_tree(plumbing.ls_tree(repo, info.id), long=True, name_only=False)
        return
    s = repo.store.get_snapshot(info.id)
    tags, branches = names_by_id(repo)
    lines = [f"snapshot  {info.id}", f"tree      {s.tree}"]
    lines += [f"parent    {p}" for p in s.parents]
    lines += [f"time      {s.time}"]
    if tags.get(info.id):
        lines.append(f"tags      {', '.join(tags[info.id])}")
    lines += [f"meta      {k}={v}" for k, v in sorted(s.meta.items())]
    lines += ["", *[f"    {line}" for line in (s.message.splitlines() or [''])]]
    out.line("\n".join(lines))


@app.command("diff", paths_after_dashdash=True)
def diff(
    ctx: typer.Context,
    revs: Annotated[Optional[List[str]], typer.Argument(metavar="[REV [REV]]", autocompletion=complete.revisions)] = None,
    cached: Annotated[bool, typer.Option("--cached", "--staged", help="What is staged: the index against REV (default HEAD).")] = False,
    name_status: Annotated[bool, typer.Option("--name-status", help="Status letter and path only.")] = False,
    name_only: Annotated[bool, typer.Option("--name-only", help="Paths only.")] = False,
    nul: Annotated[bool, typer.Option("-z", help="With --name-only or --name-status: end each entry with NUL, paths unquoted.")] = False,
    stat: Annotated[bool, typer.Option("--stat", help="Lines added and removed per file.")] = False,
    json_: Json = False,
    exclude: Excludes = None,
    no_ignore: NoIgnore = False,
) -> None:
    """Show what changed between two snapshots, or a snapshot (default HEAD) and the workspace.

    Before the first snapshot, everything is added. `-- PATH` limits it to
    PATHs; paths are shown from the workspace root, as git does.

    Example: rnstore diff HEAD~1 HEAD --stat
    """
    from .. import diff as difflib_  # loads the store and zstandard, which rev-parse must not
    revs = revs or []
    if len(revs) > (1 if cached else 2):
        raise InvalidValueError("diff takes at most two revisions (one with --cached)")
    repo = open_repo()
    result = difflib_.diff(repo, revs[0] if revs else None, revs[1] if len(revs) > 1 else None,
                           cached=cached, paths=after_dashdash(ctx) or None,
                           excludes=exclude or [], no_ignore=no_ignore)
    if json_:
        out.json([e.as_json() for e in result.entries])
        return
    if name_status or name_only:
        heads = [b"" if name_only else e.status.encode() + b"\t" for e in result.entries]
        out.bytes(path_entries([e.raw_path for e in result.entries], nul=nul, heads=heads))
        return
    if stat:
        out.bytes("".join(_stat_lines(repo, result)).encode("utf-8", "surrogateescape"))
        return
    chunks = []
    for entry in result.entries:
        lines, _added, _removed = difflib_.unified(repo, result, entry)
        old, new = quote_path_text("a/" + entry.path), quote_path_text("b/" + entry.path)
        if lines is None:
            chunks.append(f"Binary files {old} and {new} differ\n")
        else:
            chunks.append(f"diff {old} {new} ({entry.status})\n")
            chunks.extend(line if line.endswith("\n") else line + "\n\\ No newline at end of file\n"
                          for line in lines)
    out.bytes("".join(chunks).encode("utf-8", "surrogateescape"))


@app.command("tag")
def tag(
    name: Annotated[Optional[str], typer.Argument(metavar="[NAME]")] = None,
    rev: Annotated[Optional[str], typer.Argument(metavar="[REV]", autocompletion=complete.revisions)] = None,
    list_: Annotated[bool, typer.Option("-l", "--list", help="List tags (NAME: a glob pattern).")] = False,
    delete: Annotated[Optional[str], typer.Option("-d", "--delete", metavar="NAME", help="Unbind NAME.")] = None,
    force: Annotated[bool, typer.Option("-f", "--force", help="Move an existing tag.")] = False,
    json_: Json = False,
) -> None:
    """List tags, bind NAME to REV (default HEAD), move it (-f) or unbind it (-d).

    In a shared object store tags belong to the store: every workspace of
    the store sees the same tags, and a tag keeps its snapshot alive when
    the workspace that made it is gone. A listing shows each tag's
    snapshot, its time and the workspace that made it.

    Example: rnstore tag paper-v1 HEAD
    """
    from .. import history  # loads the store and zstandard, which rev-parse must not
    repo = open_repo()
    if delete:
        old = history.delete_tag(repo, delete)
        if json_:
            out.json({"name": delete, "id": old, "deleted": True})
        out.summary(f"Deleted tag {delete} (was {old[:12]})")
    elif name is None or list_:
        tags = history.describe_tags(repo, name if list_ else None)
        if json_:
            out.json([t.as_json() for t in tags])
            return
        width = max((len(t.name) for t in tags), default=0)
        for t in tags:
            when = t.time[:19].replace("T", " ") if t.time else "(unreadable)      "
            out.line(f"{t.name:<{width}}  {t.id[:12]}  {when}  {t.workspace or '?'}")
    else:
        target = history.tag(repo, name, rev or "HEAD", force=force)
        if json_:
            out.json({"name": name, "id": target, "deleted": False})
        out.summary(f"Tagged {target[:12]} as {name}")


@app.command("config", cls=ValueCommand)
def config(
    key: Annotated[Optional[str], typer.Argument(metavar="[KEY]", autocompletion=complete.config_keys)] = None,
    value: Annotated[Optional[str], typer.Argument(metavar="[VALUE]")] = None,
    json_: Json = False,
) -> None:
    """Read or set a setting; without KEY, list them all.

    Example: rnstore config limits.max_bytes 2GB
    """
    repo = open_repo()
    if json_ and value is None:
        names = list(SETTINGS) if key is None else [key]
        out.json({name: _config_text(repo, name) for name in names})
    elif key is None:
        for name in SETTINGS:
            out.line(f"{name}={_config_text(repo, name)}")
    elif value is None:
        out.line(_config_text(repo, key))
    else:
        repo.config.set(key, value, durable=repo.durable)


def _config_text(repo, key: str) -> str:
    raw = repo.config.raw(key)
    if raw is not None:
        repo.config.get(key)  # validates the key
        return raw
    return str(repo.config.get(key)) if key == "user.name" else _default(key)


def _default(key: str) -> str:
    return _setting(key).default
