"""Errors that reach the user as one clear line.

Every failure a user can cause or meet (a bad name, a broken checkpoint, no network, a full disk)
is raised as a :class:`ClipsearchError` whose message names the problem. The command line prints
the message alone and exits with a non-zero code; no traceback is shown for these.
"""

from __future__ import annotations

import errno

DISK_FULL = frozenset({errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)})
"""The ``errno`` values of a write that found no room: the disk, or the user's quota, is full."""


def is_disk_full(error: BaseException) -> bool:
    """Whether ``error`` is an :class:`OSError` of a write that found no room."""
    return isinstance(error, OSError) and error.errno in DISK_FULL


class ClipsearchError(Exception):
    """A failure with a message meant for the user."""

    exit_code = 1


class LibraryError(ClipsearchError):
    """The library database cannot be opened, read or written."""


class UnknownModelError(ClipsearchError):
    """The model name is neither in the registry nor installed."""


class ModelNotInstalledError(ClipsearchError):
    """The model is known but has not been installed."""


class CheckpointError(ClipsearchError):
    """A checkpoint is unreadable, unsafe, truncated or does not fit the architecture."""


class ManifestError(ClipsearchError):
    """An installed model's files do not match the hashes recorded when it was installed."""


class DownloadError(ClipsearchError):
    """The checkpoint could not be fetched from the model hub.

    Besides the one-line message, it carries the way round: ``urls``, the exact addresses of the
    checkpoint files (any one will do) to fetch by hand, and ``route``, the command that installs
    from the downloaded file. Whoever shows the error shows each of them once.
    """

    def __init__(
        self, message: str, *, urls: tuple[str, ...] = (), route: str | None = None
    ) -> None:
        super().__init__(message)
        self.urls = urls
        self.route = route


class TokenizerError(ClipsearchError):
    """A model's tokenizer files are missing, unreadable, or do not fit its checkpoint."""


class InstallCancelledError(ClipsearchError):
    """A model install or download was cancelled by its caller; nothing was left half-made."""

    exit_code = 130


class AlbumError(ClipsearchError):
    """A problem with the album that the user has to fix."""


class AlbumNotFoundError(AlbumError):
    """A folder given as an album root does not exist or is not a folder."""


class PhotoMissingError(AlbumError):
    """A photo vanished (or cannot be looked at) before its capture time was read."""


class BadDateError(AlbumError, ValueError):
    """A date or a timeline key could not be understood: on the command line, a usage error."""

    exit_code = 2
