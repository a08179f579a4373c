"""Typed errors of the disclosure-control module; each message says what to do next."""

from __future__ import annotations


class DisclosureError(Exception):
    """Base class of every error raised by :mod:`tre_lib.disclosure`."""


class RulesError(DisclosureError, ValueError):
    """A rule parameter has a bad value or type.

    Attributes:
        key: the offending parameter name.
        source: the profile file it came from, or ``None`` for rules given in code.
    """

    def __init__(self, key: str, message: str, source: str | None = None) -> None:
        self.key = key
        self.detail = message
        self.source = source
        where = f"{source}: " if source else ""
        super().__init__(f"{where}rule '{key}': {message}")


class ProfileNotFoundError(DisclosureError, FileNotFoundError):
    """No profile of that name exists in the profiles directory."""


class TableSpecError(DisclosureError, ValueError):
    """The table asked for cannot be built from the data given (bad column, aggregation or option)."""


class UnsupportedOutputError(DisclosureError, TypeError):
    """The object handed to a checker is not a kind of output it knows how to check."""


class TableTooLargeError(TableSpecError):
    """The table has more cells than the limit allows; it is refused before any protection work."""
