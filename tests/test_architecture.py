"""Layering and start-up cost: the library never imports the CLI stack, and
cheap commands do not pay for rich, pathspec or zstandard."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import rnstore
from rnstore import plumbing
from rnstore.index import Index, IndexEntry
from rnstore.repo import Repository

from helpers.cli import cli_env

PACKAGE = Path(rnstore.__file__).parent
CLI = PACKAGE / "cli"


def _walk(node: ast.AST, *, into_functions: bool):
    yield node
    for child in ast.iter_child_nodes(node):
        if not into_functions and isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            continue
        yield from _walk(child, into_functions=into_functions)


def imported_modules(path: Path, *, lazy_too: bool = True) -> set[str]:
    """Every module a file imports, relative imports resolved; with
    `lazy_too`, imports inside functions count as well."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    package = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts[:-1])
    found = set()
    for node in _walk(tree, into_functions=lazy_too):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
                found.add(module)
                if not node.module:  # from . import x
                    found.update(f"{module}.{alias.name}" for alias in node.names)
            else:
                found.add(node.module)
        elif isinstance(node, ast.Call) and getattr(node.func, "id", "") == "__import__" \
                and node.args and isinstance(node.args[0], ast.Constant):
            found.add(node.args[0].value)
    return found


def library_modules() -> list[Path]:
    """Everything but the CLI and the `python -m rnstore` entry point."""
    return sorted(p for p in PACKAGE.rglob("*.py")
                  if CLI not in p.parents and p.name != "__main__.py")


def top(name: str) -> str:
    return name.split(".")[0]


def test_the_scan_sees_imports():
    """The checker itself must be able to fail."""
    sample = PACKAGE / "cli" / "app.py"
    assert "typer" in {top(m) for m in imported_modules(sample)}
    assert "zstandard" in {top(m) for m in imported_modules(PACKAGE / "codec.py")}
    assert "rnstore.errors" in imported_modules(PACKAGE / "codec.py")


@pytest.mark.parametrize("path", library_modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_library_never_imports_the_cli_stack(path):
    forbidden = {"typer", "rich", "click"}
    found = {top(m) for m in imported_modules(path)} & forbidden
    assert not found, f"{path.name} imports {sorted(found)}: only rnstore/cli/ may"
    cli = {m for m in imported_modules(path) if m == "rnstore.cli" or m.startswith("rnstore.cli.")}
    assert not cli, f"{path.name} imports the CLI ({sorted(cli)}): imports point one way"


def module_level_users(name: str) -> set[str]:
    return {str(p.relative_to(PACKAGE)) for p in PACKAGE.rglob("*.py")
            if name in {top(m) for m in imported_modules(p, lazy_too=False)}}


def test_zstandard_is_imported_at_module_level_by_codec_only():
    """Object frames go through codec.py; anything else that needs zstd
    (an archive writer, say) imports it where it is used."""
    assert module_level_users("zstandard") == {"codec.py"}


def test_pathspec_is_imported_at_module_level_by_ignore_only():
    assert module_level_users("pathspec") <= {"ignore.py"}


def test_lazy_imports_are_told_apart():
    assert "zstandard" not in {top(m) for m in imported_modules(PACKAGE / "repo.py", lazy_too=False)}
    assert "rnstore.store" in imported_modules(PACKAGE / "repo.py", lazy_too=True)
    assert "rnstore.store" not in imported_modules(PACKAGE / "repo.py", lazy_too=False)


# -- what a command loads ----------------------------------------------------------------

def loaded_modules(args: list[str], cwd) -> set[str]:
    """Every module `python -X importtime -m rnstore ARGS` imported."""
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "rnstore", *args],
                          cwd=cwd, capture_output=True, env=cli_env(), timeout=120)
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]
    modules = set()
    for line in proc.stderr.decode().splitlines():
        if line.startswith("import time:") and "|" in line:
            name = line.rsplit("|", 1)[1].strip()
            if name != "package":  # the header line
                modules.add(name)
    assert "rnstore" in modules
    return modules


def heavy(modules: set[str], *names: str) -> set[str]:
    return {m for m in modules if top(m) in names}


@pytest.fixture
def workspace_with_a_snapshot(tmp_path):
    root = tmp_path / "ws"
    repo = Repository.init(root, default_ignore=False)
    (root / "f.txt").write_bytes(b"hello\n")
    oid = plumbing.hash_object(repo, str(root / "f.txt"), write=True)
    repo.write_index(Index([IndexEntry(b"f.txt", "100644", oid, 6)]))
    tree = plumbing.write_tree(repo)
    snapshot = plumbing.commit_tree(repo, tree, [], "first")
    plumbing.update_ref(repo, "refs/heads/main", snapshot)
    return root, snapshot


def test_rev_parse_head_loads_no_rich_pathspec_or_zstandard(workspace_with_a_snapshot):
    root, snapshot = workspace_with_a_snapshot
    proc = subprocess.run([sys.executable, "-m", "rnstore", "rev-parse", "HEAD"], cwd=root,
                          capture_output=True, env=cli_env(), timeout=120)
    assert proc.stdout.decode().strip() == snapshot
    modules = loaded_modules(["rev-parse", "HEAD"], root)
    assert heavy(modules, "rich", "pathspec", "zstandard") == set()


def test_reading_an_object_loads_zstandard_but_not_rich(workspace_with_a_snapshot):
    """The check above is meaningful: a command that reads objects does load
    zstandard, and importtime reports it."""
    root, _ = workspace_with_a_snapshot
    modules = loaded_modules(["cat-file", "-p", "HEAD:f.txt"], root)
    assert "zstandard" in modules
    assert heavy(modules, "rich", "pathspec") == set()


def test_version_loads_nothing_heavy(tmp_path):
    modules = loaded_modules(["--version"], tmp_path)
    assert heavy(modules, "typer", "click", "rich", "pathspec", "zstandard", "pydantic") == set()


def test_import_rnstore_is_cheap():
    proc = subprocess.run([sys.executable, "-X", "importtime", "-c", "import rnstore; rnstore.Repository"],
                          capture_output=True, env=cli_env(), timeout=120)
    assert proc.returncode == 0
    names = {line.rsplit("|", 1)[1].strip() for line in proc.stderr.decode().splitlines()
             if line.startswith("import time:") and "|" in line}
    assert heavy(names, "typer", "click", "rich", "pathspec", "zstandard") == set()
