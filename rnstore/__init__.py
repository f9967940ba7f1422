"""rnstore: a git-like, content-addressed store for experiment folders and CI.

    >>> import rnstore
    >>> repo = rnstore.Repository.open(".")

Names load lazily so that `import rnstore` costs next to nothing.
"""

from ._version import __version__

__all__ = ["Repository", "__version__", "errors"]


def __getattr__(name: str):
    if name == "Repository":
        from .repo import Repository  # on first use: `import rnstore` stays cheap
        return Repository
    if name == "errors":
        from . import errors  # on first use: `import rnstore` stays cheap
        return errors
    raise AttributeError(f"module 'rnstore' has no attribute {name!r}")
