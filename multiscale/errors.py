"""The library's error types: what a user did wrong, as opposed to a bug.

Every mistake in a user's input (a bad argument, a malformed run table, a damaged file the
library wrote) raises a subclass of `MultiscaleError` whose message names the offending thing:
the flag, the file, the row, the family. The command line prints such an error as one line and
exits with status 2; any other exception is a bug and keeps its traceback.

The subclasses also derive from the builtin type that the same mistake raised before
(`ValueError`, `FileNotFoundError`), so `except ValueError` in user code keeps working.
"""

from __future__ import annotations


class MultiscaleError(Exception):
    """Base of every user-facing error: printed by the CLI as one line, exit status 2."""


class InputError(MultiscaleError, ValueError):
    """A bad value: an argument, a configuration field, a plan entry, a mixture."""


class MissingFileError(MultiscaleError, FileNotFoundError):
    """A file or folder the user named does not exist (or is of the wrong kind)."""


class DamagedFileError(MultiscaleError, ValueError):
    """A file is truncated, unreadable, or fails its checksum. The message names the file and,
    where the library can regenerate it, says how."""
