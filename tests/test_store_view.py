"""`snapshots` and `workspaces`: the store-wide view, with filters and JSON,
end to end through the CLI."""

from __future__ import annotations

import json
import shutil
import time
from datetime import datetime, timezone

from helpers.porcelain import assert_error, ok
from helpers.shared import commit, shared
from helpers.space import run


def snapshots(cwd, *args) -> list[dict]:
    return json.loads(ok(run(["snapshots", "--json", *args], cwd=cwd)).stdout)


def test_snapshots_lists_every_workspace_and_filters(tmp_path):
    store, (a, b) = shared(tmp_path, "a", "b")
    a1 = commit(a, {"x": "1\n"}, "first in a")
    ok(run(["tag", "release", a1], cwd=a))
    (a / "y").write_text("2\n")
    a2 = ok(run(["commit", "-a", "-q", "-m", "second in a", "--meta", "lr=0.1"], cwd=a)).out.strip()
    b1 = commit(b, {"z": "3\n"}, "in b")
    everything = snapshots(b)
    assert [s["id"] for s in everything] == [b1, a2, a1]  # newest first, from both workspaces
    by_id = {s["id"]: s for s in everything}
    assert by_id[a1]["tags"] == ["release"] and by_id[a1]["workspace"] == str(a)
    assert by_id[b1]["workspace"] == str(b) and by_id[b1]["host"] and by_id[b1]["message"] == "in b"
    assert by_id[a2]["meta"]["lr"] == "0.1"
    assert "tag release" in by_id[a1]["kept_by"]
    assert [s["id"] for s in snapshots(b, "--tag", "release")] == [a1]
    assert [s["id"] for s in snapshots(b, "--meta", "lr=0.1")] == [a2]
    assert [s["id"] for s in snapshots(b, "--workspace", str(a))] == [a2, a1]
    assert [s["id"] for s in snapshots(a, "--since", by_id[a2]["time"][:26])] == [b1, a2]
    assert [s["id"] for s in snapshots(a, "--until", by_id[a2]["time"][:26])] == [a2, a1]
    assert snapshots(a, "--since", "1h") == everything
    assert snapshots(a, "--until", "2000-01-01") == []
    human = ok(run(["snapshots"], cwd=a)).out.splitlines()
    assert [line.split()[0] for line in human] == [b1[:12], a2[:12], a1[:12]]
    assert "[release]" in human[2] and str(a) in human[2]
    assert_error(run(["snapshots", "--since", "yesterday-ish"], cwd=a), 2)
    # a tag keeps a snapshot listed after its workspace and the snapshot's journal entry are gone
    ok(run(["forget", a1], cwd=a))
    shutil.rmtree(a)
    ok(run(["gc", "--prune", "now"], cwd=b))
    left = snapshots(b)
    assert [s["id"] for s in left] == [b1, a1]
    assert left[1]["workspace"] == str(a) and left[1]["kept_by"] == ["tag release"]


def test_workspaces_lists_state_snapshots_and_exclusive_bytes(tmp_path):
    store, (a, b, c) = shared(tmp_path, "a", "b", "c")
    commit(a, {"common": "shared\n" * 100, "a": "a\n"})
    commit(b, {"common": "shared\n" * 100, "big": "b" * 20000})
    commit(b, {"more": "m\n"})
    commit(c, {"c": "c\n"})
    ok(run(["gc"], cwd=a))  # records every workspace's roots
    shutil.rmtree(c)
    listed = {w["path"]: w for w in json.loads(ok(run(["workspaces", "--json"], cwd=a)).stdout)}
    assert set(listed) == {str(a), str(b), str(c)}
    assert listed[str(a)]["current"] and listed[str(a)]["state"] == "alive"
    assert listed[str(b)]["snapshots"] == 2 and listed[str(a)]["snapshots"] == 1
    assert listed[str(b)]["exclusive_bytes"] > listed[str(a)]["exclusive_bytes"] > 0
    assert listed[str(b)]["last_commit"] > listed[str(a)]["last_commit"]
    assert listed[str(c)]["state"] == "gone"
    ok(run(["gc"], cwd=a))  # first sees c gone
    listed = {w["path"]: w for w in json.loads(ok(run(["workspaces", "--json"], cwd=b)).stdout)}
    # ISO 8601 UTC, as every time field of a JSON document
    gone = datetime.strptime(listed[str(c)]["gone_since"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc)
    assert gone.timestamp() <= time.time() and listed[str(c)]["snapshots"] == 1
    human = ok(run(["workspaces"], cwd=b)).out
    assert f"{b} (here)  alive" in human and "gone since" in human


def test_snapshots_lists_what_it_can_read_and_exits_1_for_a_missing_snapshot(tmp_path):
    """A live snapshot whose object is gone was a warning and exit 0 (as
    `snapshots --remote` with a damaged record is not): now exit 1."""
    store, (a,) = shared(tmp_path, "a")
    first = commit(a, {"x": "1\n"}, "first")
    second = commit(a, {"x": "2\n"}, "second")
    (store / "objects" / first[:2] / first[2:]).unlink()
    for args in (["snapshots"], ["snapshots", "--json"]):
        result = run(args, cwd=a)
        assert result.returncode == 1, result
        assert f"snapshot {first} cannot be read" in result.stderr and "fsck" in result.stderr, result.stderr
        assert "Traceback" not in result.stderr
    listed = {s["id"]: s for s in json.loads(run(["snapshots", "--json"], cwd=a).stdout)}
    assert listed[second]["message"] == "second" and listed[first]["time"] is None, listed
