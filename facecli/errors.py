"""One error tree for facecli.

    FacecliError                 root: the CLI catches this, prints one line, exits 1
    ├── InputError               a file is missing, empty, truncated, unreadable or too large
    │   └── NoFaceFound          the media holds no face (the library returns an empty result)
    ├── OutputError              an output cannot be written
    ├── BackendUnavailable       a backend's package or weights are missing (exit 2)
    └── UsageError               options that do not fit together (exit 2)

Every message names the file (where there is one) and says what to do.
"""

from __future__ import annotations

from pathlib import Path


class FacecliError(Exception):
    """Root of every error facecli raises on purpose."""

    exit_code = 1

    def __init__(self, message: str, path: str | Path | None = None):
        self.path = str(path) if path is not None else None
        super().__init__(f"{self.path}: {message}" if self.path else message)


class InputError(FacecliError):
    """The input cannot be read as the media or stage file it claims to be."""


class NoFaceFound(InputError):
    """A stage file would be empty: no face anywhere in the media."""


class OutputError(FacecliError):
    """An output file or folder cannot be written."""


class BackendUnavailable(FacecliError):
    """A backend cannot run here: its package or its weights are missing."""

    exit_code = 2


class UsageError(FacecliError):
    """Options that cannot be used together or values out of range."""

    exit_code = 2
