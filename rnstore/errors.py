"""The exception tree. Every error a user can meet is an RnstoreError subclass
whose str() is the one-line message; `hints` are optional ways out.

The CLI maps these classes to exit codes in one table (rnstore/cli/_errors.py);
the library never decides how an error is shown.
"""

from __future__ import annotations


class RnstoreError(Exception):
    """Base class: str(err) is the user-facing message."""

    def __init__(self, message: str, *, hints: list[str] | tuple[str, ...] = ()):
        super().__init__(message)
        self.hints = list(hints)


# --- bad usage or bad input (exit 2) -------------------------------------------------


class BadInputError(RnstoreError):
    """The user asked for something malformed or that does not exist."""


class NotAWorkspaceError(BadInputError):
    pass


class UnknownRevisionError(BadInputError):
    pass


class AmbiguousRevisionError(BadInputError):
    def __init__(self, prefix: str, candidates: list[str]):
        listing = ", ".join(candidates[:10]) + (" ..." if len(candidates) > 10 else "")
        super().__init__(
            f"ambiguous revision '{prefix}': {len(candidates)} objects match",
            hints=[f"candidates: {listing}", "give more hex digits"],
        )
        self.candidates = candidates


class InvalidValueError(BadInputError):
    """A malformed value: a ref name, a config value, a mode, a tree line."""


# --- the command ran but the user must act (exit 1) ----------------------------------


class ObjectError(RnstoreError):
    def __init__(self, message: str, object_id: str | None = None, **kw):
        super().__init__(message, **kw)
        self.object_id = object_id

    def reworded(self, message: str, object_id: str | None, *, hints=()) -> "ObjectError":
        """This error, of its class and with its details, saying `message`
        about `object_id` (a caller naming the path it was reading). Not
        `type(self)(...)`: subclasses take more arguments."""
        other = type(self).__new__(type(self))
        other.__dict__.update(self.__dict__)
        Exception.__init__(other, message)
        other.object_id = object_id
        other.hints = list(hints)
        return other


class MissingObjectError(ObjectError):
    pass


class CorruptObjectError(ObjectError):
    pass


class BrokenDeltaError(CorruptObjectError):
    """A delta that cannot be rebuilt because an object down its chain of
    bases cannot be read: `culprit` is the first such object (missing when
    `culprit_missing`, else corrupt on its own account), `base` the delta's
    own base (the culprit itself, or a delta depending on it)."""

    def __init__(self, message: str, object_id: str, *, base: str, culprit: str,
                 culprit_missing: bool, **kw):
        super().__init__(message, object_id, **kw)
        self.base = base
        self.culprit = culprit
        self.culprit_missing = culprit_missing


class RefConflictError(RnstoreError):
    """A compare-and-swap update found another value than expected."""


class LockTimeoutError(RnstoreError):
    pass


class NothingToCommitError(RnstoreError):
    pass


class LimitExceededError(RnstoreError):
    pass


class ConflictError(RnstoreError):
    """A checkout would overwrite or delete uncommitted work."""

    def __init__(self, message: str, paths: list[str], **kw):
        super().__init__(message, **kw)
        self.paths = paths


class UnreadableFileError(RnstoreError):
    pass


class NotWritableError(RnstoreError):
    """A folder a command must write into is not writable; or some writes of
    a checkout failed (the workspace was left consistent; the message says how)."""

    def __init__(self, message: str, paths: list[str], **kw):
        super().__init__(message, **kw)
        self.paths = paths


class StoreWriteError(RnstoreError):
    """The object store cannot be written (its permissions, a full disk):
    a store problem, never the fault of the file being stored."""


class CorruptStoreError(RnstoreError):
    """A root (index, ref, journal, snapshot) cannot be read."""


class OperationInterrupted(RnstoreError):
    """Ctrl-C: the store was left consistent."""
