"""The views an operation takes of a workspace (rnstore/views.py): a
Repository is each of them, and no library function takes an untyped one."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Protocol

import pytest

import rnstore
from rnstore import views
from rnstore.repo import Repository
from rnstore.store import MemoryStore

PACKAGE = Path(rnstore.__file__).parent
VIEWS = (views.ObjectsView, views.HistoryView, views.WorkspaceView)
#: The parameter names that hold a workspace in the library.
WORKSPACE_PARAMETERS = ("repo", "ws")


def members(view: type) -> set[str]:
    """What a view promises: its attributes, properties and methods."""
    names: set[str] = set()
    for cls in view.__mro__:
        if cls is object or cls is Protocol or not getattr(cls, "_is_protocol", False):
            continue
        names.update(n for n in vars(cls) if not n.startswith("_"))
        names.update(getattr(cls, "__annotations__", {}))
    return names


def test_each_view_adds_to_the_one_below():
    store, history, workspace = (members(v) for v in VIEWS)
    assert store == {"store"}
    assert store < history < workspace
    assert {"refs", "journal"} <= history - store


@pytest.mark.parametrize("view", VIEWS, ids=lambda v: v.__name__)
def test_a_repository_is_every_view(view, tmp_path):
    for repo in (Repository.init(tmp_path / "ws"), Repository.open(tmp_path / "ws", store=MemoryStore())):
        missing = sorted(name for name in members(view) if not hasattr(repo, name))
        assert not missing, f"Repository lacks {missing} of {view.__name__}"


def untyped_workspace_parameters(source: str) -> list[str]:
    """Functions in `source` that take a workspace without saying which view."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            arguments = node.args.posonlyargs + node.args.args + node.args.kwonlyargs
            found += [f"{node.name}({a.arg})" for a in arguments
                      if a.arg in WORKSPACE_PARAMETERS and a.annotation is None]
    return found


def test_the_check_sees_an_untyped_workspace():
    assert untyped_workspace_parameters("def f(repo, x):\n    pass\n") == ["f(repo)"]
    assert untyped_workspace_parameters("def f(repo: ObjectsView, x):\n    pass\n") == []


@pytest.mark.parametrize("path", sorted(p for p in PACKAGE.rglob("*.py") if "cli" not in p.parts),
                         ids=lambda p: str(p.relative_to(PACKAGE)))
def test_every_workspace_parameter_is_typed(path):
    found = untyped_workspace_parameters(path.read_text(encoding="utf-8"))
    assert not found, f"say which view of the workspace these take (rnstore/views.py): {found}"
