"""Durations always carry a unit (SPEC "durations"): `--prune`,
`--keep-within`, `gc.prune`, `gc.interval` (and `core.lock_wait`) refuse a
bare number with exit 2 and a hint; a bare number already stored in a
config by an older version still reads as seconds."""

from __future__ import annotations

import json

import pytest

from rnstore.errors import InvalidValueError
from rnstore.units import parse_duration, parse_stored_duration
from helpers.porcelain import assert_error, commit, new_workspace, ok, write_files


@pytest.mark.parametrize("text, seconds", [("30s", 30), ("15m", 900), ("2h", 7200), ("7d", 604800),
                                           ("2w", 1209600), ("1d12h", 129600), ("now", 0)])
def test_durations_with_units(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["30", "0", "", "7 d", "d", "1.5h", "-1h", "7x"])
def test_bare_numbers_and_garbage_are_refused(text):
    with pytest.raises(InvalidValueError) as info:
        parse_duration(text)
    assert any("30m" in hint or "7d" in hint for hint in info.value.hints)


def test_stored_bare_numbers_read_as_seconds():
    assert parse_stored_duration("7200") == 7200 and parse_stored_duration("2h") == 7200


def test_cli_refuses_bare_durations_with_a_hint(tmp_path, run_cli):
    new_workspace(tmp_path)
    write_files(tmp_path, {"a": "1"})
    commit(run_cli, tmp_path, "m", "-a", "-q")
    for args in (["gc", "--prune", "30"], ["forget", "--keep-within", "7"],
                 ["config", "gc.prune", "30"], ["config", "gc.interval", "7"],
                 ["config", "core.lock_wait", "10"]):
        result = run_cli(args, cwd=tmp_path)
        assert_error(result, 2, "unit", "hint:")
        assert "30m" in result.stderr or "7d" in result.stderr, result.stderr
    assert ok(run_cli(["config", "gc.prune"], cwd=tmp_path)).out == "1h\n"
    ok(run_cli(["config", "gc.prune", "30m"], cwd=tmp_path))
    assert ok(run_cli(["config", "gc.prune"], cwd=tmp_path)).out == "30m\n"


def test_a_config_written_before_units_were_required_still_works(tmp_path, run_cli):
    new_workspace(tmp_path)
    config = tmp_path / ".rnstore" / "config"
    values = json.loads(config.read_text())
    values.update({"gc.prune": "7200", "gc.interval": "60", "core.lock_wait": "5"})
    config.write_text(json.dumps(values))
    stats = json.loads(ok(run_cli(["gc", "--json", "-q"], cwd=tmp_path)).stdout)
    assert stats["prune"] == 7200
    assert ok(run_cli(["config", "gc.interval"], cwd=tmp_path)).out == "60\n"
