"""Layering and start-up cost: imports point down the layers that
rnstore/ARCHITECTURE.md draws, the library never imports the CLI stack, and
cheap commands do not pay for rich, pathspec, zstandard, pydantic or the
modules of other commands."""

from __future__ import annotations

import ast
import re
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
ARCHITECTURE = PACKAGE / "ARCHITECTURE.md"


def _is_type_checking(node: ast.AST) -> bool:
    test = getattr(node, "test", None)
    return isinstance(node, ast.If) and (
        getattr(test, "id", None) == "TYPE_CHECKING" or getattr(test, "attr", None) == "TYPE_CHECKING")


def _walk(node: ast.AST, *, into_functions: bool, typing_too: bool):
    yield node
    for child in ast.iter_child_nodes(node):
        if not into_functions and isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            continue
        if not typing_too and _is_type_checking(child):
            continue  # never runs: costs nothing at start-up
        yield from _walk(child, into_functions=into_functions, typing_too=typing_too)


def module_name(path: Path) -> str:
    """rnstore.x for rnstore/x.py, rnstore.cli for rnstore/cli/__init__.py."""
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _dynamic_import(node: ast.AST) -> str | None:
    """The constant module name of __import__("x") or importlib.import_module("x")."""
    if not isinstance(node, ast.Call) or not node.args or not isinstance(node.args[0], ast.Constant):
        return None
    func = node.func
    called = func.id if isinstance(func, ast.Name) else getattr(func, "attr", None)
    if called in ("__import__", "import_module") and isinstance(node.args[0].value, str):
        return node.args[0].value
    return None


def imports_in(source: str, module: str, *, is_package: bool = False, lazy_too: bool = True,
               typing_too: bool = True) -> set[str]:
    """Every module `source` (the text of `module`) imports, relative imports
    resolved; with `lazy_too`, imports inside functions count as well, and
    with `typing_too`, those under `if TYPE_CHECKING:`. `from . import x`
    counts as importing the module `x`, not the package."""
    package = module if is_package else module.rpartition(".")[0]
    found = set()

    def resolve(name: str, level: int) -> str:
        base = package.split(".")
        base = base[: len(base) - level + 1]
        return ".".join(base + ([name] if name else []))

    for node in _walk(ast.parse(source, module), into_functions=lazy_too, typing_too=typing_too):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            module_from = resolve(node.module or "", node.level) if node.level else node.module
            if node.module:
                found.add(module_from)
            else:  # from . import x
                found.update(f"{module_from}.{alias.name}" for alias in node.names)
        else:
            name = _dynamic_import(node)
            if name is not None:
                level = len(name) - len(name.lstrip("."))
                found.add(resolve(name.lstrip("."), level) if level else name)
    return found


def imported_modules(path: Path, *, lazy_too: bool = True, typing_too: bool = True) -> set[str]:
    return imports_in(path.read_text(encoding="utf-8"), module_name(path),
                      is_package=path.name == "__init__.py", lazy_too=lazy_too, typing_too=typing_too)


def library_modules() -> list[Path]:
    """Everything but the CLI and the `python -m rnstore` entry point."""
    return sorted(p for p in PACKAGE.rglob("*.py")
                  if CLI not in p.parents and p.name != "__main__.py")


def top(name: str) -> str:
    return name.split(".")[0]


CLI_STACK = {"typer", "rich", "click"}


def cli_stack_imports(source: str, module: str) -> list[str]:
    """What a library module must not import: typer, rich, click or rnstore.cli."""
    found = imports_in(source, module)
    return sorted(m for m in found if top(m) in CLI_STACK or m == "rnstore.cli" or m.startswith("rnstore.cli."))


# -- layers ------------------------------------------------------------------------------

def read_layers() -> dict[str, int]:
    """rnstore.x -> its layer number, from ARCHITECTURE.md's table."""
    layers: dict[str, int] = {}
    for line in ARCHITECTURE.read_text(encoding="utf-8").splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) < 3 or not cells[0].isdigit():
            continue
        for name in re.findall(r"`([\w.]+)`", cells[2]):
            module = "rnstore" if name == "__init__" else f"rnstore.{name}"
            assert module not in layers, f"{name} is in two layers of ARCHITECTURE.md"
            layers[module] = int(cells[0])
    return layers


LAYERS = read_layers()


def layer_of(module: str) -> int | None:
    """The layer of a module of the package (rnstore.cli.x is in rnstore.cli's;
    a module the table does not name has none, whatever its package)."""
    if module == "rnstore":
        return LAYERS.get(module)
    while module != "rnstore":  # the package's own layer (its __init__) is no fallback
        if module in LAYERS:
            return LAYERS[module]
        module = module.rpartition(".")[0]
    return None


def upward_imports(source: str, module: str, *, is_package: bool = False) -> list[str]:
    """The imports of `module` that reach a higher layer."""
    own = layer_of(module)
    return sorted(f"{module} (layer {own}) imports {m} (layer {layer_of(m)})"
                  for m in imports_in(source, module, is_package=is_package)
                  if m.startswith("rnstore.") and (layer_of(m) or 0) > own)


def library_import_graph() -> dict[str, set[str]]:
    graph = {module_name(p): imported_modules(p) for p in library_modules()}
    return {m: {d for d in deps if d in graph and d != m} for m, deps in graph.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


# -- the checker checks ---------------------------------------------------------------------

def test_the_scan_sees_imports():
    """The checker itself must be able to fail."""
    sample = PACKAGE / "cli" / "app.py"
    assert "typer" in {top(m) for m in imported_modules(sample)}
    assert "zstandard" in {top(m) for m in imported_modules(PACKAGE / "codec.py")}
    assert "rnstore.errors" in imported_modules(PACKAGE / "codec.py")
    assert "rnstore.registry" in imported_modules(PACKAGE / "repo.py")  # from . import registry
    assert "rnstore" not in imported_modules(PACKAGE / "repo.py")


def test_the_checks_fail_on_a_dynamic_rich_import():
    source = (PACKAGE / "store.py").read_text(encoding="utf-8")
    assert cli_stack_imports(source, "rnstore.store") == []
    sneaky = source + "\n\ndef _show(text):\n    import importlib\n" \
                      "    return importlib.import_module(\"rich.console\").Console().print(text)\n"
    assert cli_stack_imports(sneaky, "rnstore.store") == ["rich.console"]
    assert cli_stack_imports(source + "\nx = __import__('typer')\n", "rnstore.store") == ["typer"]


def test_the_checks_fail_on_an_upward_import():
    source = (PACKAGE / "store.py").read_text(encoding="utf-8")
    assert upward_imports(source, "rnstore.store") == []
    in_a_function = source + "\n\ndef _collect(repo):\n    from .gc import gc\n    return gc(repo)\n"
    assert upward_imports(in_a_function, "rnstore.store") == [
        "rnstore.store (layer 2) imports rnstore.gc (layer 4)"]
    at_the_top = "from .repo import Repository\n" + source
    assert upward_imports(at_the_top, "rnstore.store") == [
        "rnstore.store (layer 2) imports rnstore.repo (layer 5)"]
    typed_only = "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .checkout import Plan\n"
    assert upward_imports(typed_only, "rnstore.store") == [
        "rnstore.store (layer 2) imports rnstore.checkout (layer 4)"]
    by_name = "import importlib\ndef f():\n    return importlib.import_module('rnstore.history')\n"
    assert upward_imports(by_name, "rnstore.store") == [
        "rnstore.store (layer 2) imports rnstore.history (layer 4)"]


def test_the_cycle_check_finds_a_cycle():
    graph = library_import_graph()
    assert find_cycle(graph) is None
    graph["rnstore.objects"] = graph["rnstore.objects"] | {"rnstore.plumbing"}
    cycle = find_cycle(graph)
    assert cycle[0] == cycle[-1] and "rnstore.objects" in cycle and "rnstore.plumbing" in cycle


# -- the rules -------------------------------------------------------------------------------

@pytest.mark.parametrize("path", library_modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_library_never_imports_the_cli_stack(path):
    found = cli_stack_imports(path.read_text(encoding="utf-8"), module_name(path))
    assert not found, f"{path.name} imports {found}: only rnstore/cli/ may, and imports point one way"


def test_a_module_the_table_does_not_name_has_no_layer():
    """A new subpackage cannot slip into the package's own layer (6) unseen."""
    assert layer_of("rnstore.newpackage.module") is None
    assert layer_of("rnstore.cli.app") == LAYERS["rnstore.cli"]
    assert layer_of("rnstore") == LAYERS["rnstore"]


def test_every_module_has_a_layer():
    modules = {module_name(p) for p in PACKAGE.rglob("*.py")}
    unplaced = sorted(m for m in modules if layer_of(m) is None)
    assert not unplaced, f"place these in rnstore/ARCHITECTURE.md's table: {unplaced}"
    gone = sorted(set(LAYERS) - modules)
    assert not gone, f"ARCHITECTURE.md names modules that do not exist: {gone}"


@pytest.mark.parametrize("path", sorted(PACKAGE.rglob("*.py")), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_point_down_the_layers(path):
    found = upward_imports(path.read_text(encoding="utf-8"), module_name(path),
                           is_package=path.name == "__init__.py")
    assert not found, "see rnstore/ARCHITECTURE.md: " + "; ".join(found)


def test_the_library_has_no_import_cycle():
    cycle = find_cycle(library_import_graph())
    assert cycle is None, " -> ".join(cycle)


def module_level_users(name: str) -> set[str]:
    return {str(p.relative_to(PACKAGE)) for p in PACKAGE.rglob("*.py")
            if name in {top(m) for m in imported_modules(p, lazy_too=False, typing_too=False)}}


def test_zstandard_is_imported_at_module_level_by_codec_only():
    """Object frames go through codec.py; anything else that needs zstd
    (an archive writer, say) imports it where it is used."""
    assert module_level_users("zstandard") == {"codec.py"}


def test_pathspec_is_imported_at_module_level_by_ignore_only():
    assert module_level_users("pathspec") <= {"ignore.py"}


def test_lazy_imports_are_told_apart():
    def runtime(path):
        return imported_modules(path, lazy_too=False, typing_too=False)
    assert "zstandard" not in {top(m) for m in runtime(PACKAGE / "repo.py")}
    assert "rnstore.store" in imported_modules(PACKAGE / "repo.py", lazy_too=True)
    assert "rnstore.store" not in runtime(PACKAGE / "repo.py")


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


#: What `rev-parse HEAD` may load of rnstore: the workspace, revisions,
#: and its own command module (README, Performance: start-up).
REV_PARSE_MODULES = {
    "rnstore", "rnstore._version", "rnstore.alloc", "rnstore.errors", "rnstore.units", "rnstore.progress",
    "rnstore.objects", "rnstore.fsutil", "rnstore.refs", "rnstore.tags", "rnstore.config", "rnstore.registry",
    "rnstore.views", "rnstore.trees", "rnstore.index", "rnstore.revparse", "rnstore.repo", "rnstore.plumbing", "rnstore.quoting",
    "rnstore.cli", "rnstore.cli.app", "rnstore.cli._command", "rnstore.cli._output", "rnstore.cli._options",
    "rnstore.cli._complete", "rnstore.cli.plumbing",
}


def test_rev_parse_head_loads_only_what_it_needs(workspace_with_a_snapshot):
    """The start-up of a cheap command: no rich, pathspec or zstandard, no
    pydantic (typer's coercion, cli/_command.py), no other command's
    module, and of rnstore only what REV_PARSE_MODULES names."""
    root, snapshot = workspace_with_a_snapshot
    proc = subprocess.run([sys.executable, "-m", "rnstore", "rev-parse", "HEAD"], cwd=root,
                          capture_output=True, env=cli_env(), timeout=120)
    assert proc.stdout.decode().strip() == snapshot
    modules = loaded_modules(["rev-parse", "HEAD"], root)
    assert heavy(modules, "rich", "pathspec", "zstandard", "pydantic", "pydantic_core") == set()
    assert heavy(modules, "rnstore") <= REV_PARSE_MODULES, sorted(heavy(modules, "rnstore") - REV_PARSE_MODULES)


def test_every_command_is_in_the_table_of_command_modules():
    """cli/app.py imports only the module of the command invoked, found in
    COMMAND_MODULES: every registered command must be there, under the
    module that registers it, or it would be reachable only through the
    full app."""
    from rnstore.cli.app import COMMAND_MODULES, app, build_command
    build_command([])  # imports every command module
    registered = {c.name: c.callback.__module__ for c in app.registered_commands if c.name != "help"}
    registered.update({g.name: g.typer_instance.registered_commands[0].callback.__module__
                       for g in app.registered_groups})
    table = {name: f"rnstore.cli.{module}" for module, names in COMMAND_MODULES.items() for name in names}
    assert table == registered
    assert list(COMMAND_MODULES)[0] == "porcelain"  # help and completion list porcelain first


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
