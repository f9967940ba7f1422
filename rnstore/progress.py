"""How long work reports its progress: the library calls these methods, the
CLI renders them (a rich bar on a terminal), an API user may ignore them."""

from __future__ import annotations


class Progress:
    """The default receiver: ignores everything. Methods may be called from
    worker threads.

    A stage starts with what it will do, as far as known up front: a count
    of `unit`s ("file", "object") and of bytes; `advance` reports what was
    done since the last call. A stage with neither total shows no bar, only
    counts."""

    def start(self, description: str, total_files: int | None = None,
              total_bytes: int | None = None, *, unit: str = "file") -> None:
        pass

    def advance(self, files: int = 0, nbytes: int = 0) -> None:
        pass

    def finish(self) -> None:
        pass


NO_PROGRESS = Progress()
