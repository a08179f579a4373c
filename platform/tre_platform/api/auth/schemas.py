"""Response bodies of the sign-in routes (request bodies live in users.schemas so the CLI shares them)."""

from __future__ import annotations

from tre_platform.api.common import OutputSchema
from tre_platform.api.users.schemas import UserOut


class LoginOut(OutputSchema):
    """The result of the password step. ``mfa_required``: send a TOTP code to /auth/totp next
    (or enrol first when ``mfa_enrolled`` is false)."""

    user: UserOut
    mfa_required: bool
    mfa_enrolled: bool
    csrf_token: str
