"""The fast path of ignore matching must agree with pathspec's gitignore
semantics on every path the walk can reach."""

import pathspec
from hypothesis import given, settings, strategies as st

from rnstore.ignore import _compile

PATTERNS = ["*.log", "!keep.log", "data/", "/build", "build/", "a/**/b", "__pycache__/",
            "*.py[cod]", "logs", "x?z", "!data/keep/", "sub/*.txt", "**/deep", "*.tar.*",
            "\\!bang", "name with space", "dir/", "!dir/inner", "*"]
NAMES = ["a", "b", "x", "xyz", "data", "build", "keep.log", "run.log", "m.pyc", "deep",
         "sub", "f.txt", "__pycache__", "logs", "dir", "inner", "a.tar.gz", "!bang"]


@settings(max_examples=500, deadline=None)
@given(patterns=st.lists(st.sampled_from(PATTERNS), min_size=1, max_size=6),
       parts=st.lists(st.sampled_from(NAMES), min_size=1, max_size=4),
       is_dir=st.booleans())
def test_prefilter_agrees_with_pathspec(patterns, parts, is_dir):
    spec = pathspec.GitIgnoreSpec.from_lines(patterns)
    rules = _compile(patterns)
    # The walk never enters an ignored folder, so only reachable paths count.
    for depth in range(1, len(parts)):
        if spec.check_file("/".join(parts[:depth]) + "/").include:
            return
    path = "/".join(parts) + ("/" if is_dir else "")
    assert rules.verdict(path) == spec.check_file(path).include
