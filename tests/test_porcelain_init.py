"""`rnstore init`, finding the workspace (walking up, -C, RNSTORE_DIR) and
shared object stores, end to end through the CLI."""

from __future__ import annotations

import os

from helpers.porcelain import (assert_error, commit, folder_state, ls_files, object_files,
                                object_path, ok, run_parallel, sha256, write_files)


def test_init_creates_workspace_and_default_rnignore(tmp_path, run_cli):
    result = ok(run_cli(["init"], cwd=tmp_path), stdout_empty=True)
    assert (tmp_path / ".rnstore" / "HEAD").is_file()
    assert "Traceback" not in result.stderr
    rnignore = (tmp_path / ".rnignore").read_text()
    for pattern in ("data/", "datasets/", "*.pth", "*.ckpt", "*.h5", "dist/", "build/",
                    "*.egg-info/", "logs/", "outputs/", "*.log", ".git/"):
        assert pattern in rnignore.splitlines(), pattern

    # and the rules do what they say: only code survives an `add .`
    ignored = ["__pycache__/m.cpython-311.pyc", "pkg/__pycache__/x.pyc", "loose.pyc",
               ".venv/bin/python", "venv/lib/site.py", "data/train.csv", "sub/data/x.bin",
               "datasets/a/b.txt", "model.pth", "run/epoch3.ckpt", "weights.h5",
               ".idea/workspace.xml", ".vscode/settings.json", "dist/pkg-1.0.whl",
               "build/lib/pkg.py", "pkg.egg-info/PKG-INFO", "logs/run1.txt",
               "outputs/plot.png", "train.log", "deep/er/debug.log", ".git/HEAD"]
    kept = ["train.py", "src/data_utils.py", "src/dataset.py", "README.md", "notes.logbook",
            "model.pth.txt"]
    write_files(tmp_path, {name: f"content of {name}\n" for name in ignored + kept})
    ok(run_cli(["add", "."], cwd=tmp_path))
    assert sorted(ls_files(run_cli, tmp_path)) == sorted(os.fsencode(k) for k in kept + [".rnignore"])


def test_init_keeps_an_existing_rnignore(tmp_path, run_cli):
    (tmp_path / ".rnignore").write_bytes(b"# mine\n*.tmp\n")
    ok(run_cli(["init"], cwd=tmp_path))
    assert (tmp_path / ".rnignore").read_bytes() == b"# mine\n*.tmp\n"


def test_init_no_default_ignore(tmp_path, run_cli):
    ok(run_cli(["init", "--no-default-ignore"], cwd=tmp_path))
    assert (tmp_path / ".rnstore" / "HEAD").is_file()
    assert not (tmp_path / ".rnignore").exists()


def test_init_into_named_dir_creates_it(tmp_path, run_cli):
    ok(run_cli(["init", "new/ws"], cwd=tmp_path))
    assert (tmp_path / "new" / "ws" / ".rnstore" / "HEAD").is_file()
    assert (tmp_path / "new" / "ws" / ".rnignore").is_file()
    assert not (tmp_path / ".rnstore").exists()


def test_init_again_changes_nothing(tmp_path, run_cli):
    ok(run_cli(["init"], cwd=tmp_path))
    write_files(tmp_path, {"a.txt": "a\n"})
    snapshot = commit(run_cli, tmp_path, "first", "-a")
    (tmp_path / ".rnignore").unlink()  # a re-init must not write it back either
    before = folder_state(tmp_path, mtimes=True)
    ok(run_cli(["init"], cwd=tmp_path), stdout_empty=True)
    assert folder_state(tmp_path, mtimes=True) == before
    # other options change nothing either, even run side by side
    for result in run_parallel(run_cli, [(["init", "--branch", "other"], tmp_path),
                                         (["init", ".", "--no-default-ignore"], tmp_path)]):
        ok(result, stdout_empty=True)
    assert folder_state(tmp_path, mtimes=True) == before
    head, branch = run_parallel(run_cli, [(["rev-parse", "HEAD"], tmp_path),
                                          (["symbolic-ref", "HEAD"], tmp_path)])
    assert (ok(head).out.strip(), ok(branch).out.strip()) == (snapshot, "refs/heads/main")


def test_init_branch(tmp_path, run_cli):
    ok(run_cli(["init", "--branch", "exp"], cwd=tmp_path))
    assert ok(run_cli(["symbolic-ref", "HEAD"], cwd=tmp_path)).out.strip() == "refs/heads/exp"
    write_files(tmp_path, {"a.txt": "a\n"})
    snapshot = commit(run_cli, tmp_path, "first", "-a")
    exp, main = run_parallel(run_cli, [(["rev-parse", "exp"], tmp_path),
                                       (["rev-parse", "main"], tmp_path)])
    assert ok(exp).out.strip() == snapshot
    assert_error(main, 2)


def test_shared_object_store_stores_identical_file_once(tmp_path, run_cli):
    store = tmp_path / "shared"
    data = os.urandom(20000)
    # one after the other: two inits racing on a new store can fail (see the report:
    # repo.prepare_store checks "not empty" before the marker exists)
    for name in ("w1", "w2"):
        ok(run_cli(["init", name, "--objects", str(store), "--no-default-ignore"], cwd=tmp_path))
    for name in ("w1", "w2"):
        write_files(tmp_path / name, {"model/code.py": data})
    ids = [ok(r).out.strip() for r in run_parallel(run_cli, [
        (["commit", "-a", "-q", "-m", name], tmp_path / name) for name in ("w1", "w2")])]
    blob = sha256(data)
    assert object_path(store, blob).is_file()
    # nothing went to the workspaces' own folders
    assert object_files(tmp_path / "w1" / ".rnstore") == {}
    assert object_files(tmp_path / "w2" / ".rnstore") == {}
    # one blob, two trees (root, model/) shared, and the two snapshots
    assert len(object_files(store)) == 1 + 2 + 2
    # each workspace sees the other's snapshot through the shared store
    kind, listing = run_parallel(run_cli, [(["cat-file", "-t", ids[0]], tmp_path / "w2"),
                                           (["ls-tree", "-r", ids[1]], tmp_path / "w1")])
    assert ok(kind).out.strip() == "snapshot"
    assert ok(listing).out == f"100644 blob {blob}\tmodel/code.py\n"


def test_rnstore_objects_env_is_read_by_init_and_recorded(tmp_path, run_cli):
    store = tmp_path / "envstore"
    ws = tmp_path / "ws"
    ok(run_cli(["init", "ws", "--no-default-ignore"], cwd=tmp_path,
               env={"RNSTORE_OBJECTS": str(store)}))
    write_files(ws, {"f.txt": b"shared bytes\n"})
    commit(run_cli, ws, "m", "-a")  # RNSTORE_OBJECTS no longer set: the config remembers
    assert object_path(store, sha256(b"shared bytes\n")).is_file()
    assert object_files(ws / ".rnstore") == {}


def test_dash_C_works_for_any_command(tmp_path, run_cli):
    (tmp_path / "ws").mkdir()
    ok(run_cli(["-C", "ws", "init"], cwd=tmp_path))
    assert (tmp_path / "ws" / ".rnstore" / "HEAD").is_file()
    write_files(tmp_path / "ws", {"a.txt": "a\n", "sub/b.txt": "b\n"})
    ok(run_cli(["-C", "ws", "add", "."], cwd=tmp_path))
    assert sorted(ls_files(run_cli, tmp_path / "ws")) == [b".rnignore", b"a.txt", b"sub/b.txt"]
    snapshot = ok(run_cli(["-C", "ws", "commit", "-m", "via -C"], cwd=tmp_path)).out.strip()
    log, status, show, missing = run_parallel(run_cli, [
        (["-C", "ws/sub", "log", "--oneline"], tmp_path),
        (["-C", "ws", "status", "--porcelain"], tmp_path),
        (["-C", "ws", "show", "HEAD:sub/b.txt"], tmp_path),
        (["-C", "missing", "status"], tmp_path)])
    assert ok(log).out.startswith(snapshot[:12])
    assert ok(status).stdout == b""
    assert ok(show).stdout == b"b\n"
    assert_error(missing, 2, "missing")


def test_rnstore_dir_names_the_store(tmp_path, run_cli):
    ws = tmp_path / "ws"
    ok(run_cli(["init", "ws"], cwd=tmp_path))
    write_files(ws, {"a.txt": "a\n"})
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {"RNSTORE_DIR": str(ws / ".rnstore")}
    snapshot = ok(run_cli(["commit", "-a", "-m", "from outside"], cwd=elsewhere, env=env)).out.strip()
    names, head, wrong = run_parallel(run_cli, [
        (["ls-tree", "-r", "--name-only", "HEAD"], elsewhere, env),
        (["rev-parse", "HEAD"], ws),
        (["status"], elsewhere, {"RNSTORE_DIR": str(elsewhere)})])
    assert ok(names).stdout == b".rnignore\na.txt\n"
    assert ok(head).out.strip() == snapshot
    assert_error(wrong, 2)


def test_commands_in_a_subfolder_find_the_workspace(tmp_path, run_cli):
    ok(run_cli(["init"], cwd=tmp_path))
    write_files(tmp_path, {"top.txt": "t\n", "a/one.txt": "1\n", "a/b/two.txt": "2\n",
                           "c/three.txt": "3\n"})
    deep = tmp_path / "a" / "b"
    ok(run_cli(["add", "."], cwd=tmp_path / "a"))  # `.` is a/, not the whole workspace
    assert sorted(ls_files(run_cli, deep)) == [b"a/b/two.txt", b"a/one.txt"]
    ok(run_cli(["add", "../../c"], cwd=deep))
    assert sorted(ls_files(run_cli, deep)) == [b"a/b/two.txt", b"a/one.txt", b"c/three.txt"]
    lines = ok(run_cli(["status", "--porcelain"], cwd=deep)).stdout.splitlines()
    assert b"?? top.txt" in lines and b"A  a/b/two.txt" in lines


def test_not_a_workspace_exits_2(tmp_path, run_cli):
    commands = [["status"], ["log"], ["add", "."], ["commit", "-m", "x"], ["tag"],
                ["config", "limits.max_bytes"]]
    for args, result in zip(commands, run_parallel(run_cli, [(c, tmp_path) for c in commands])):
        line = assert_error(result, 2)
        assert "workspace" in line, args
        assert result.stdout == b"", args


def test_init_again_says_what_it_ignored(tmp_path, run_cli):
    """A re-init changes nothing, so `--objects`, `RNSTORE_OBJECTS` and
    `--branch` naming something else are ignored: said, as `git init -b`
    says it on a re-init, instead of a bare "Reinitialized"."""
    ws, store, other = tmp_path / "ws", tmp_path / "store", tmp_path / "other"
    ok(run_cli(["init", "-q", "--objects", str(store), str(ws)], cwd=tmp_path))
    before = folder_state(ws, mtimes=True)
    quiet = ok(run_cli(["init", "-q"], cwd=ws, env={"RNSTORE_OBJECTS": str(store)}))
    assert quiet.stderr == ""  # the same store: nothing ignored
    result = ok(run_cli(["init", "--objects", str(other), "--branch", "dev"], cwd=ws))
    assert f"warning: re-init: ignored --objects {other}: this workspace keeps its objects in {store}" \
        in result.stderr, result.stderr
    assert "warning: re-init: ignored --branch dev" in result.stderr
    result = ok(run_cli(["init", "-q"], cwd=ws, env={"RNSTORE_OBJECTS": str(other)}))
    assert f"warning: re-init: ignored RNSTORE_OBJECTS={other}" in result.stderr, result.stderr
    assert folder_state(ws, mtimes=True) == before and not other.exists()
