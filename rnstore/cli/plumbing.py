"""Plumbing commands: each parses, calls one library function, renders."""

from __future__ import annotations

import contextlib
import io
import os
import sys
from typing import Annotated, BinaryIO, Iterator, List, Optional

import typer

from .. import plumbing
from ..errors import InvalidValueError
from ..objects import KINDS
from . import _complete as complete
from .app import app, open_repo
from ._options import Json, NulTerminated
from ._output import out, path_entries, print_tree, tree_json

PLUMBING = "Plumbing"


@app.command("hash-object", rich_help_panel=PLUMBING)
def hash_object(
    files: Annotated[Optional[List[str]], typer.Argument(help="Files to hash.")] = None,
    write: Annotated[bool, typer.Option("-w", help="Also store the blob.")] = False,
    stdin: Annotated[bool, typer.Option("--stdin", help="Hash standard input.")] = False,
    stdin_paths: Annotated[bool, typer.Option(
        "--stdin-paths", help="Hash the files named on standard input, one path a line.")] = False,
) -> None:
    """Print the blob id (SHA-256) of each file; `sha256sum` agrees.

    Example: rnstore hash-object -w train.py
    """
    if stdin_paths:
        if files or stdin:
            raise InvalidValueError("--stdin-paths takes no FILE arguments and no --stdin")
        repo = open_repo() if write else None
        with _bulk_stdout() as sink:
            for oid in plumbing.hash_objects(repo, _stdin_lines(sink.flush), write=write):
                sink.write(oid.encode() + b"\n")
        return
    if not files and not stdin:
        raise InvalidValueError("give FILE arguments, --stdin or --stdin-paths")
    repo = open_repo() if write else None
    if stdin:
        out.line(plumbing.hash_object(repo, None, write=write, stdin=sys.stdin.buffer))
    for name in files or []:
        out.line(plumbing.hash_object(repo, name, write=write))


@app.command("cat-file", rich_help_panel=PLUMBING)
def cat_file(
    first: Annotated[Optional[str], typer.Argument(
        metavar="[KIND] OBJ", help="blob|tree|snapshot, then the object.")] = None,
    second: Annotated[Optional[str], typer.Argument(hidden=True)] = None,
    type_: Annotated[bool, typer.Option("-t", help="Print the object's kind.")] = False,
    size: Annotated[bool, typer.Option("-s", help="Print the object's size.")] = False,
    pretty: Annotated[bool, typer.Option("-p", help="Print the content readably.")] = False,
    exists: Annotated[bool, typer.Option("-e", help="Exit 0 if it exists, 1 if not; print nothing.")] = False,
    batch: Annotated[bool, typer.Option(
        "--batch", help="For each object named on standard input: `ID KIND SIZE`, the content, a newline.")] = False,
    batch_check: Annotated[bool, typer.Option(
        "--batch-check", help="For each object named on standard input: `ID KIND SIZE`.")] = False,
) -> int:
    """Print an object's kind, size or content; or, with --batch, many objects'.

    Example: rnstore cat-file -p HEAD:train.py
    """
    chosen = [flag for flag, on in (("-t", type_), ("-s", size), ("-p", pretty), ("-e", exists),
                                    ("--batch", batch), ("--batch-check", batch_check)) if on]
    if batch or batch_check:
        if len(chosen) != 1 or first is not None:
            raise InvalidValueError("usage: cat-file (--batch | --batch-check), with names on standard input")
        return _cat_file_batch(contents=batch)
    if first is None:
        raise InvalidValueError("usage: cat-file (-t|-s|-p|-e) OBJ  or  cat-file (blob|tree|snapshot) OBJ")
    if second is not None:
        if chosen or first not in KINDS:
            raise InvalidValueError("usage: cat-file (-t|-s|-p|-e) OBJ  or  cat-file (blob|tree|snapshot) OBJ")
        for chunk in plumbing.cat_file(open_repo(), second, expected_kind=first):
            out.bytes(chunk)
        return 0
    if len(chosen) != 1:
        raise InvalidValueError("give exactly one of -t, -s, -p, -e (or a KIND)")
    repo = open_repo()
    if exists:
        return 0 if plumbing.object_exists(repo, first) else 1
    info = plumbing.object_info(repo, first)
    if type_:
        out.line(info.kind)
    elif size:
        out.line(str(info.size))
    elif info.kind == "tree":
        print_tree(plumbing.ls_tree(repo, info.id), long=False, name_only=False)
    elif info.kind == "snapshot":
        snapshot = repo.store.get_snapshot(info.id)
        out.json({"tree": snapshot.tree, "parents": list(snapshot.parents), "time": snapshot.time,
                  "message": snapshot.message, "meta": snapshot.meta})
    else:
        for chunk in plumbing.cat_file(repo, info.id):
            out.bytes(chunk)
    return 0


def _cat_file_batch(*, contents: bool) -> int:
    """git's batch format: `ID KIND SIZE` LF (then, with contents, the
    payload and LF) per object; `NAME missing` LF or `NAME ambiguous` LF
    for a name that resolves to no object or to several. A damaged object
    gets an `error:` line on stderr and nothing on stdout, and the exit
    code becomes 1; the other names are still answered."""
    repo = open_repo()
    code = 0
    with _bulk_stdout() as sink:
        for reply in plumbing.cat_file_batch(repo, _stdin_lines(sink.flush), contents=contents):
            if reply.info is not None:
                info = reply.info
                sink.write(b"%s %s %d\n" % (info.id.encode(), info.kind.encode(), info.size))
                if contents:
                    for chunk in reply.payload:
                        sink.write(chunk)
                    sink.write(b"\n")
            elif reply.status is not None:
                sink.write(os.fsencode(reply.request) + b" " + reply.status.encode() + b"\n")
            else:
                from ._errors import report  # only when an object is damaged
                sink.flush()  # the answers before it come before its error
                code = max(code, report(reply.error))
    return code


@contextlib.contextmanager
def _bulk_stdout() -> Iterator[BinaryIO]:
    """stdout for many answers: buffered in large writes whatever
    PYTHONUNBUFFERED says, flushed when the command waits for input (see
    _stdin_lines) and at the end."""
    sys.stdout.flush()
    try:
        sink = io.BufferedWriter(io.FileIO(sys.stdout.fileno(), "wb", closefd=False), 1 << 16)
    except (AttributeError, ValueError, io.UnsupportedOperation):  # not a file (captured in-process)
        sink = sys.stdout.buffer
    try:
        yield sink
    finally:
        sink.flush()


def _stdin_lines(before_waiting) -> Iterator[str]:
    """Standard input's lines, without their LF, decoded as file names are.
    `before_waiting` runs whenever reading on would wait for the writer: a
    script that writes one name and reads its answer gets it at once, and a
    long list is answered in large writes (git needs --buffer for that)."""
    stdin = sys.stdin.fileno()
    pending = b""
    while True:
        before_waiting()
        block = os.read(stdin, 1 << 16)
        if not block:
            break
        *complete, pending = (pending + block).split(b"\n")
        for line in complete:
            yield os.fsdecode(line)
    if pending:
        yield os.fsdecode(pending)  # a last line without its LF


@app.command("ls-tree", rich_help_panel=PLUMBING)
def ls_tree(
    treeish: Annotated[str, typer.Argument(metavar="TREE-ISH")],
    path: Annotated[Optional[str], typer.Argument(metavar="[PATH]")] = None,
    recursive: Annotated[bool, typer.Option("-r", help="Recurse into folders.")] = False,
    long: Annotated[bool, typer.Option("-l", help="Show sizes.")] = False,
    name_only: Annotated[bool, typer.Option("--name-only", help="Paths only.")] = False,
    json_: Annotated[bool, typer.Option("--json", help="One JSON document.")] = False,
    nul: NulTerminated = False,
) -> None:
    """List a tree: lines `MODE TYPE ID<TAB>PATH`.

    A path holding a control character, `"` or `\\` is shown in double
    quotes with C escapes, as git does; `-z` ends entries with NUL instead
    and never quotes.

    Example: rnstore ls-tree -r HEAD
    """
    entries = plumbing.ls_tree(open_repo(), treeish, path, recursive=recursive)
    if json_:
        out.json(tree_json(entries))
    else:
        print_tree(entries, long=long, name_only=name_only, nul=nul)


@app.command("ls-files", rich_help_panel=PLUMBING)
def ls_files(
    stage: Annotated[bool, typer.Option("-s", help="Show mode and id too.")] = False,
    json_: Json = False,
    nul: NulTerminated = False,
) -> None:
    """List the paths in the index.

    Example: rnstore ls-files -s
    """
    if json_:
        out.json([{"path": os.fsdecode(e.path), "mode": e.mode, "id": e.id, "size": e.size}
                  for e in plumbing.ls_files(open_repo())])
        return
    entries = plumbing.ls_files(open_repo())
    heads = [b"%s %s 0\t" % (e.mode.encode(), e.id.encode()) for e in entries] if stage else None
    out.bytes(path_entries([e.path for e in entries], nul=nul, heads=heads))


@app.command("write-tree", rich_help_panel=PLUMBING)
def write_tree() -> None:
    """Store the index as trees; print the root tree id.

    Example: rnstore write-tree
    """
    out.line(plumbing.write_tree(open_repo()))


@app.command("read-tree", rich_help_panel=PLUMBING)
def read_tree(treeish: Annotated[str, typer.Argument(metavar="TREE-ISH")]) -> None:
    """Replace the index with a tree's content (the workspace is untouched).

    Example: rnstore read-tree HEAD
    """
    plumbing.read_tree(open_repo(), treeish)


@app.command("mktree", rich_help_panel=PLUMBING)
def mktree(
    nul: Annotated[bool, typer.Option("-z", help="Read NUL-ended entries, as `ls-tree -z` prints.")] = False,
) -> None:
    """Read `ls-tree` lines on stdin, validate them, store one tree; print its id.

    Names quoted as `ls-tree` quotes them are read back; with `-z` names
    are taken as they are.

    Example: rnstore ls-tree HEAD | rnstore mktree
    """
    data = sys.stdin.buffer.read()
    entries = data.split(b"\0" if nul else b"\n")
    lines = (entry.decode("utf-8", "surrogateescape") for entry in entries)
    out.line(plumbing.mktree(open_repo(), lines, quoted=not nul))


@app.command("commit-tree", rich_help_panel=PLUMBING)
def commit_tree(
    tree: Annotated[str, typer.Argument(metavar="TREE")],
    message: Annotated[str, typer.Option("-m", help="The snapshot's message.")],
    parents: Annotated[Optional[List[str]], typer.Option("-p", help="A parent snapshot (repeatable).")] = None,
    meta: Annotated[Optional[List[str]], typer.Option("--meta", metavar="K=V", help="Extra metadata (repeatable).")] = None,
) -> None:
    """Make a snapshot of TREE (it stays live until forgotten); print its id.

    Example: rnstore commit-tree $(rnstore write-tree) -p HEAD -m "run 42"
    """
    out.line(plumbing.commit_tree(open_repo(), tree, parents or [], message, meta or []))


@app.command("update-ref", rich_help_panel=PLUMBING)
def update_ref(
    ref: Annotated[str, typer.Argument(metavar="REF")],
    new: Annotated[Optional[str], typer.Argument(metavar="ID")] = None,
    old: Annotated[Optional[str], typer.Argument(metavar="[OLD]", help="Only if REF is at OLD now (compare-and-swap).")] = None,
    delete: Annotated[bool, typer.Option("-d", help="Delete REF.")] = False,
) -> None:
    """Point REF at a snapshot, or delete it; with OLD, only if it is there now.

    Example: rnstore update-ref refs/heads/main $NEW $OLD
    """
    repo = open_repo()
    if delete:
        if old is not None:
            raise InvalidValueError("usage: update-ref -d REF [OLD]")
        plumbing.delete_ref(repo, ref, new)
        return
    if new is None:
        raise InvalidValueError("usage: update-ref REF ID [OLD]")
    plumbing.update_ref(repo, ref, new, old, require_old=old is not None)


@app.command("symbolic-ref", rich_help_panel=PLUMBING)
def symbolic_ref(
    name: Annotated[str, typer.Argument(metavar="HEAD")],
    ref: Annotated[Optional[str], typer.Argument(metavar="[REF]")] = None,
) -> int:
    """Print the branch HEAD is attached to, or attach it to REF.

    Example: rnstore symbolic-ref HEAD refs/heads/main
    """
    if name != "HEAD":
        raise InvalidValueError("only HEAD is a symbolic ref")
    result = plumbing.symbolic_ref(open_repo(), ref)
    if ref is None:
        if result is None:
            sys.stderr.write("error: HEAD is detached\n")
            return 1
        out.line(result)
    return 0


@app.command("rev-parse", rich_help_panel=PLUMBING)
def rev_parse(revs: Annotated[List[str], typer.Argument(metavar="REV...")]) -> None:
    """Print the full object id each revision names.

    Example: rnstore rev-parse HEAD~1:train.py
    """
    repo = open_repo()
    for rev in revs:
        out.line(plumbing.rev_parse(repo, rev))


@app.command("show-ref", rich_help_panel=PLUMBING)
def show_ref() -> int:
    """List refs with their ids: `ID REF`.

    Example: rnstore show-ref
    """
    refs = plumbing.show_ref(open_repo())
    for ref, oid in refs.items():
        out.line(f"{oid} {ref}")
    return 0 if refs else 1


@app.command("manifest", rich_help_panel=PLUMBING)
def manifest(rev: Annotated[str, typer.Argument(metavar="REV", autocompletion=complete.revisions)]) -> None:
    """Print a snapshot's files as one flat JSON document.

    Example: rnstore manifest HEAD > manifest.json
    """
    out.json(plumbing.manifest(open_repo(), rev))
