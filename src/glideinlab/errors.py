"""User-facing errors: one line naming what is wrong and where.

Anything a user can cause (bad option, bad config, missing engine, port taken) raises a
:class:`UserError`; the CLI prints ``glideinlab: <message>`` and exits non-zero, never a traceback.
Bugs stay ordinary exceptions so they are not mistaken for user mistakes.
"""

from __future__ import annotations


class UserError(Exception):
    """A problem the user can fix; ``str(err)`` is the one line we print."""

    exit_code = 2

    def __init__(self, message: str, *, hint: str | None = None):
        super().__init__(message)
        self.hint = hint

    def line(self) -> str:
        msg = str(self)
        return f"{msg} ({self.hint})" if self.hint else msg


class ConfigError(UserError):
    """Invalid configuration: names the file, the field and the reason."""

    def __init__(self, where: str, field: str | None, reason: str):
        self.where, self.field, self.reason = where, field, reason
        loc = f"{where}: {field}" if field else where
        super().__init__(f"{loc}: {reason}")


class EngineError(UserError):
    """The container engine is missing, stopped, or failed an operation."""

    exit_code = 3
