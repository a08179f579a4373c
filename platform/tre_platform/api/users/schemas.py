"""Request and response bodies for users, roles, accreditations, training, tokens and sign-in."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Self

from pydantic import Field, StringConstraints, model_validator

from tre_platform.api.common import InputSchema, OutputSchema, Reason, RowId, ShortText, Slug
from tre_platform.api.users.models import Role
from tre_platform.api.users.security import MAX_PASSWORD_LENGTH

Password = Annotated[str, StringConstraints(min_length=1, max_length=MAX_PASSWORD_LENGTH)]
TotpCode = Annotated[str, StringConstraints(strip_whitespace=True, pattern=r"^[0-9]{6}$")]


class RoleGrant(InputSchema):
    """A role; ``data_owner`` needs ``organisation_id``: the organisation whose data they manage."""

    role: Role
    organisation_id: RowId | None = None


class UserCreate(InputSchema):
    """A new user (admin). Without a password the user cannot sign in until one is set."""

    username: Slug
    full_name: ShortText
    email: Annotated[str, StringConstraints(max_length=254)]
    organisation_id: RowId
    password: Password | None = None
    roles: list[RoleGrant] = Field(default_factory=list, max_length=10)
    unix_username: Annotated[str, StringConstraints(pattern=r"^[a-z_][a-z0-9_-]{0,31}$")] | None = None

    @model_validator(mode="after")
    def _email_shape(self) -> Self:
        # A light check: a full RFC 5322 parser would need the email-validator package.
        local, _, domain = self.email.partition("@")
        if not local or "." not in domain or any(c.isspace() for c in self.email):
            raise ValueError("email must look like name@example.org")
        return self


class UserUpdate(InputSchema):
    """Changes to a user; omitted fields stay as they are."""

    full_name: ShortText | None = None
    email: Annotated[str, StringConstraints(max_length=254, pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")] | None = (
        None
    )
    is_active: bool | None = None
    unix_username: Annotated[str, StringConstraints(pattern=r"^[a-z_][a-z0-9_-]{0,31}$")] | None = None


class AccreditationCreate(InputSchema):
    scheme: ShortText
    reference: Annotated[str, StringConstraints(strip_whitespace=True, max_length=100)] | None = None
    granted_on: dt.date
    expires_on: dt.date

    @model_validator(mode="after")
    def _order(self) -> Self:
        if self.expires_on < self.granted_on:
            raise ValueError("expires_on must not be before granted_on")
        return self


class RevokeRequest(InputSchema):
    reason: Reason


class TrainingCreate(InputSchema):
    course: ShortText
    completed_on: dt.date
    expires_on: dt.date | None = None

    @model_validator(mode="after")
    def _order(self) -> Self:
        if self.expires_on is not None and self.expires_on < self.completed_on:
            raise ValueError("expires_on must not be before completed_on")
        return self


class PasswordSet(InputSchema):
    """A new password set by an administrator."""

    new_password: Password


class PasswordChange(InputSchema):
    """A user changing their own password."""

    current_password: Password
    new_password: Password


class TokenCreate(InputSchema):
    name: ShortText
    expires_in_days: int | None = Field(None, ge=1, le=366)
    scopes: list[Annotated[str, StringConstraints(pattern=r"^[a-z][a-z_:]{0,31}$")]] = Field(
        default_factory=list, max_length=10
    )


class LoginRequest(InputSchema):
    username: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64)]
    password: Password


class TotpRequest(InputSchema):
    code: TotpCode


# Responses -----------------------------------------------------------------------------------------


class RoleOut(OutputSchema):
    role: Role
    organisation_id: str | None


class AccreditationOut(OutputSchema):
    id: str
    scheme: str
    reference: str | None
    granted_on: dt.date
    expires_on: dt.date
    revoked_at: dt.datetime | None
    revoked_reason: str | None


class TrainingOut(OutputSchema):
    id: str
    course: str
    completed_on: dt.date
    expires_on: dt.date | None


class UserOut(OutputSchema):
    id: str
    username: str
    full_name: str
    email: str
    organisation_id: str
    is_active: bool
    totp_enabled: bool
    unix_username: str | None
    created_at: dt.datetime
    roles: list[RoleOut]
    accreditations: list[AccreditationOut]
    training: list[TrainingOut]


class TokenOut(OutputSchema):
    id: str
    name: str
    prefix: str
    scopes: list[str]
    created_at: dt.datetime
    expires_at: dt.datetime | None
    last_used_at: dt.datetime | None
    revoked_at: dt.datetime | None


class TokenCreated(TokenOut):
    """Returned once, when the token is created: the only time the secret is shown."""

    token: str


class TotpEnrolment(OutputSchema):
    secret: str
    uri: str


class WhoAmI(OutputSchema):
    user: UserOut
    auth: str  # "token" or "session"
    mfa_required: bool
    mfa_passed: bool
    csrf_token: str | None = None
