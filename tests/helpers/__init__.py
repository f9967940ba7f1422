"""Helpers of the test suite, one package found through pytest's `pythonpath`
setting in pyproject.toml (`from helpers.porcelain import ok`):

- cli: `run_cli`, `cli_env`, `CliResult` (the CLI in a real subprocess);
- library: staging and committing through the library;
- porcelain: folders, pictures of them, and the `error:` convention;
- space: workspaces, object files and ages for the space tests;
- frames: zstd frames for codec and store tests;
- torture: real processes on real folders, for tests/torture;
- remote: a real S3 server on loopback (moto), files and races for the remote tests.

Fixtures stay in the conftest.py files.
"""
