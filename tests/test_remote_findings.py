"""Findings from trying remotes from outside (as a new user, and with
hostile remote contents): each test fails on the code before its fix."""

from __future__ import annotations

import json

from helpers.cli import run_cli
from helpers.remote import workspace_with_snapshot

from rnstore.remote import transfer


def test_fetch_json_lists_refs_already_up_to_date_as_push_does(tmp_path):
    url = str(tmp_path / "share")
    a = workspace_with_snapshot(tmp_path / "a", url=url)
    a.tag("v1")
    transfer.push(a, "origin", ["main", "v1"])
    b = workspace_with_snapshot(tmp_path / "b", seed=3, url=url)
    first = run_cli(["fetch", "--json", "origin"], tmp_path / "b")
    assert first.returncode == 0, first.stderr
    again = run_cli(["fetch", "--json", "origin"], tmp_path / "b")
    assert again.returncode == 0, again.stderr
    main = a.refs.resolve("refs/heads/main")
    assert [(r["ref"], r["status"], r["old"], r["new"]) for r in json.loads(again.stdout)["refs"]] == [
        ("refs/remotes/origin/main", "up-to-date", main, main), ("refs/tags/v1", "up-to-date", main, main)]
    pushed = run_cli(["push", "--json", "origin", "main"], tmp_path / "a")
    assert [r["status"] for r in json.loads(pushed.stdout)["refs"]] == ["up-to-date"]
    assert b.refs.resolve("refs/remotes/origin/main") == main

