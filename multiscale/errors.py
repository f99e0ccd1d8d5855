"""The library's error types: what a user did wrong, as opposed to a bug.

Every mistake in a user's input (a bad argument, a malformed run table, a damaged file the
library wrote) raises a subclass of `MultiscaleError` whose message names the offending thing:
the argument, the file, the row, the family. The library names its own arguments (`ratios`,
`k`), never a command-line flag: an `InputError` about one argument carries its name in `arg`,
and the command line (`multiscale.cli`) renders that name as the flag the user typed. The
command line prints such an error as one line and exits with status 2; any other exception is a
bug and keeps its traceback.

The subclasses also derive from the builtin type that the same mistake raised before
(`ValueError`, `FileNotFoundError`), so `except ValueError` in user code keeps working.
"""

from __future__ import annotations


class MultiscaleError(Exception):
    """Base of every user-facing error: printed by the CLI as one line, exit status 2.

    `arg`: the name of the library argument (or configuration field) the message is about, when
    there is one; the message then begins with that name (``"k must be >= 1, got 0"``), which
    the command line replaces by the flag."""

    def __init__(self, message: str, *, arg: str | None = None):
        super().__init__(message)
        self.arg = arg

    def __reduce__(self):  # picklable with its `arg` (errors cross process pools)
        return _rebuild, (type(self), str(self), self.arg)


def _rebuild(cls, message: str, arg: str | None) -> MultiscaleError:
    return cls(message, arg=arg)


class InputError(MultiscaleError, ValueError):
    """A bad value: an argument, a configuration field, a plan entry, a mixture."""


class MissingFileError(MultiscaleError, FileNotFoundError):
    """A file or folder the user named does not exist (or is of the wrong kind)."""


class DamagedFileError(MultiscaleError, ValueError):
    """A file is truncated, unreadable, or fails its checksum. The message names the file and,
    where the library can regenerate it, says how."""


class UnidentifiedWarning(UserWarning):
    """A fitted law's parameters that the run table cannot pin down (too few distinct N, D or p
    for a family, or a parameter run to a boundary): the fit holds a value, but another value
    would fit as well, so what is computed from it (p*, predictions) is not to be trusted."""
