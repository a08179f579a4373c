"""Typed errors with messages that tell the user what to do next.

The API maps each to an HTTP status (see ``api.app``), the CLI prints the message, the UI shows it
next to the field. No traceback ever reaches a user.
"""

from __future__ import annotations


class TreError(Exception):
    """Base class. ``message`` is shown to the user as is."""

    status_code = 400
    code = "error"

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class InvalidInput(TreError):
    status_code = 422
    code = "invalid_input"


class NotFound(TreError):
    """The object does not exist, or exists but the caller may not know that (404, not 403)."""

    status_code = 404
    code = "not_found"


class Unauthenticated(TreError):
    status_code = 401
    code = "unauthenticated"


class Forbidden(TreError):
    status_code = 403
    code = "forbidden"


class Conflict(TreError):
    status_code = 409
    code = "conflict"


class InvalidTransition(Conflict):
    code = "invalid_transition"


class PolicyDenied(Forbidden):
    """The policy engine denied the request; ``reasons`` say which condition failed."""

    code = "policy_denied"

    def __init__(self, message: str, *, reasons: list[str] | None = None) -> None:
        super().__init__(message)
        self.reasons = reasons or []
