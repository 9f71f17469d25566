"""Errors that become one-line reasons in result rows or CLI messages."""

from __future__ import annotations

import errno


class BenchError(Exception):
    """An error whose message is shown to the user as is (one line, no traceback)."""


class ConfigError(BenchError):
    """The configuration is wrong: a name, a value or a missing setting."""


class ClipError(BenchError):
    """One clip cannot be used; the message names the file and the reason.

    The runner turns it into `failed` rows and goes on with the other clips.
    """


def one_line(exc: BaseException) -> str:
    """`Type: message` squeezed onto one line (for result rows)."""
    msg = " ".join(str(exc).split())
    if isinstance(exc, BenchError):
        return msg or type(exc).__name__
    return f"{type(exc).__name__}: {msg}" if msg else type(exc).__name__


def disk_full(exc: BaseException) -> bool:
    """A full disk or quota: no fault of the clip, so it stops the run instead of failing every row that follows."""
    return isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT)
