"""Users: accounts, roles, accreditations, training, passwords, TOTP, API tokens and browser sessions.

Administrators manage accounts; every user manages their own password, TOTP and API tokens.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from tre_platform.actor import Actor
from tre_platform.api.audit.service import record
from tre_platform.api.common import audit, check_admin, check_user, get_or_404
from tre_platform.api.orgs.models import Organisation
from tre_platform.api.users import security
from tre_platform.api.users.models import (
    Accreditation,
    ApiToken,
    LoginAttempt,
    Role,
    TrainingRecord,
    User,
    UserRole,
    WebSession,
)
from tre_platform.api.users.schemas import (
    AccreditationCreate,
    RevokeRequest,
    RoleGrant,
    TokenCreate,
    TrainingCreate,
    UserCreate,
    UserUpdate,
)
from tre_platform.clock import clock
from tre_platform.enforcement import access_changed
from tre_platform.errors import Conflict, Forbidden, InvalidInput, NotFound, TreError, Unauthenticated
from tre_platform.settings import Settings, get_settings

# Accounts ------------------------------------------------------------------------------------------


def _check_role_grant(session: Session, grant: RoleGrant) -> None:
    if grant.role is Role.data_owner:
        if grant.organisation_id is None:
            raise InvalidInput(
                "the data_owner role needs organisation_id: the organisation whose data the user manages",
                field="organisation_id",
            )
        org = session.get(Organisation, grant.organisation_id)
        if org is None:
            raise InvalidInput(f"no organisation with id {grant.organisation_id!r}", field="organisation_id")
        if not org.owns_data:
            raise InvalidInput(
                f"organisation {org.slug!r} is a {org.kind.value}, not a data owner; change its kind first",
                field="organisation_id",
            )
    elif grant.organisation_id is not None:
        raise InvalidInput(f"the {grant.role.value} role takes no organisation_id", field="organisation_id")


def create_user(session: Session, actor: Actor, data: UserCreate) -> User:
    """Create an account with its roles (admin only)."""
    check_admin(actor, "create a user")
    if session.get(Organisation, data.organisation_id) is None:
        raise InvalidInput(f"no organisation with id {data.organisation_id!r}", field="organisation_id")
    if session.scalar(select(User.id).where(User.username == data.username)) is not None:
        raise Conflict(f"username {data.username!r} is taken; choose another", field="username")
    if session.scalar(select(User.id).where(User.email == data.email)) is not None:
        raise Conflict(f"a user with email {data.email!r} already exists", field="email")
    password_hash = None
    if data.password is not None:
        problem = security.password_problem(data.password)
        if problem:
            raise InvalidInput(problem, field="password")
        password_hash = security.hash_password(data.password)
    user = User(
        username=data.username,
        full_name=data.full_name,
        email=data.email,
        organisation_id=data.organisation_id,
        password_hash=password_hash,
        unix_username=data.unix_username,
    )
    seen: set[tuple[Role, str | None]] = set()
    for grant in data.roles:
        _check_role_grant(session, grant)
        if (grant.role, grant.organisation_id) not in seen:
            seen.add((grant.role, grant.organisation_id))
            user.roles.append(UserRole(role=grant.role, organisation_id=grant.organisation_id))
    session.add(user)
    session.flush()
    audit(
        session,
        actor,
        "user.create",
        user,
        username=user.username,
        roles=[f"{r.role.value}:{r.organisation_id or ''}" for r in user.roles],
    )
    return user


def update_user(session: Session, actor: Actor, user_id: str, data: UserUpdate) -> User:
    """Change a user's details or deactivate them (admin only). Deactivation ends their sessions."""
    check_admin(actor, "change a user")
    user = get_or_404(session, User, user_id, "user")
    changes = data.model_dump(exclude_unset=True, exclude_none=True)
    new_email = changes.get("email", user.email)
    if new_email != user.email and session.scalar(select(User.id).where(User.email == new_email)) is not None:
        raise Conflict(f"a user with email {new_email!r} already exists", field="email")
    if changes.get("is_active") is False and actor.user_id == user.id:
        raise Conflict("you cannot deactivate your own account; ask another administrator")
    for name, value in changes.items():
        setattr(user, name, value)
    if changes.get("is_active") is False:
        for web_session in session.scalars(select(WebSession).where(WebSession.user_id == user.id)):
            session.delete(web_session)
    session.flush()
    audit(session, actor, "user.update", user, changes=changes)
    return user


def get_user(session: Session, actor: Actor, user_id: str) -> User:
    """One user: administrators see everyone, other users only themselves (others are 'not found')."""
    check_user(actor)
    if not actor.is_admin and actor.user_id != user_id:
        raise NotFound(f"no user with id {user_id!r} that you can see")
    return get_or_404(session, User, user_id, "user")


def get_user_by_username(session: Session, actor: Actor, username: str) -> User:
    """One user by username (same visibility as :func:`get_user`)."""
    check_user(actor)
    user = session.scalar(select(User).where(User.username == username))
    if user is None or (not actor.is_admin and actor.user_id != user.id):
        raise NotFound(f"no user {username!r} that you can see")
    return user


def list_users(
    session: Session,
    actor: Actor,
    *,
    organisation_id: str | None = None,
    role: Role | None = None,
    limit: int = 100,
    offset: int = 0,
) -> list[User]:
    """Users by username (admin only)."""
    check_admin(actor, "list users")
    query = select(User).order_by(User.username)
    if organisation_id is not None:
        query = query.where(User.organisation_id == organisation_id)
    if role is not None:
        query = query.where(User.id.in_(select(UserRole.user_id).where(UserRole.role == role)))
    return list(session.scalars(query.limit(limit).offset(offset)))


def grant_role(session: Session, actor: Actor, user_id: str, data: RoleGrant) -> User:
    """Give a user a role (admin only); granting a role they already hold is a conflict."""
    check_admin(actor, "grant roles")
    user = get_or_404(session, User, user_id, "user")
    _check_role_grant(session, data)
    if any(r.role == data.role and r.organisation_id == data.organisation_id for r in user.roles):
        raise Conflict(f"{user.username} already has the {data.role.value} role", field="role")
    user.roles.append(UserRole(role=data.role, organisation_id=data.organisation_id))
    session.flush()
    audit(session, actor, "user.role.grant", user, role=data.role.value, organisation_id=data.organisation_id)
    return user


def revoke_role(
    session: Session, actor: Actor, user_id: str, role: Role, organisation_id: str | None = None
) -> User:
    """Take a role away (admin only). An administrator cannot remove their own admin role."""
    check_admin(actor, "revoke roles")
    user = get_or_404(session, User, user_id, "user")
    matches = [
        r
        for r in user.roles
        if r.role == role and (organisation_id is None or r.organisation_id == organisation_id)
    ]
    if not matches:
        raise NotFound(f"{user.username} does not have the {role.value} role")
    if role is Role.admin and actor.user_id == user.id:
        raise Conflict("you cannot remove your own admin role; ask another administrator")
    for grant in matches:
        user.roles.remove(grant)
    session.flush()
    audit(session, actor, "user.role.revoke", user, role=role.value, organisation_id=organisation_id)
    return user


def add_accreditation(
    session: Session, actor: Actor, user_id: str, data: AccreditationCreate
) -> Accreditation:
    """Record an accreditation, e.g. 'DEA accredited researcher' (admin only)."""
    check_admin(actor, "record accreditations")
    user = get_or_404(session, User, user_id, "user")
    accreditation = Accreditation(**data.model_dump())
    user.accreditations.append(accreditation)
    session.flush()
    audit(
        session,
        actor,
        "user.accreditation.add",
        accreditation,
        user_id=user.id,
        scheme=data.scheme,
        expires_on=data.expires_on,
    )
    return accreditation


def revoke_accreditation(
    session: Session, actor: Actor, user_id: str, accreditation_id: str, data: RevokeRequest
) -> Accreditation:
    """Revoke an accreditation with a reason (admin only); access ends at the next decision."""
    check_admin(actor, "revoke accreditations")
    accreditation = get_or_404(session, Accreditation, accreditation_id, "accreditation")
    if accreditation.user_id != user_id:
        raise NotFound(f"user {user_id!r} has no accreditation {accreditation_id!r}")
    if accreditation.revoked_at is not None:
        raise Conflict("this accreditation is already revoked")
    accreditation.revoked_at = clock.now()
    accreditation.revoked_reason = data.reason
    session.flush()
    audit(session, actor, "user.accreditation.revoke", accreditation, user_id=user_id, reason=data.reason)
    access_changed(session, actor)
    return accreditation


def add_training(session: Session, actor: Actor, user_id: str, data: TrainingCreate) -> TrainingRecord:
    """Record completed training (admin only)."""
    check_admin(actor, "record training")
    user = get_or_404(session, User, user_id, "user")
    record_ = TrainingRecord(**data.model_dump())
    user.training.append(record_)
    session.flush()
    audit(session, actor, "user.training.add", record_, user_id=user.id, course=data.course)
    return record_


# Passwords -----------------------------------------------------------------------------------------


def set_password(
    session: Session, actor: Actor, user_id: str, new_password: str, *, current_password: str | None = None
) -> User:
    """Set a password: an administrator for anyone, a user for themselves (with their current password)."""
    check_user(actor)
    user = get_or_404(session, User, user_id, "user") if actor.is_admin else None
    if user is None:
        if actor.user_id != user_id:
            raise NotFound(f"no user with id {user_id!r} that you can see")
        user = get_or_404(session, User, user_id, "user")
        if current_password is None or not security.verify_password(user.password_hash, current_password):
            raise Forbidden("your current password is wrong; enter it again", field="current_password")
    problem = security.password_problem(new_password)
    if problem:
        raise InvalidInput(problem, field="new_password")
    user.password_hash = security.hash_password(new_password)
    # Every other browser session ends: a password change is often a response to a compromise.
    for web_session in session.scalars(select(WebSession).where(WebSession.user_id == user.id)):
        session.delete(web_session)
    session.flush()
    audit(session, actor, "user.password.set", user)
    return user


# Failed sign-ins and lockout ---------------------------------------------------------------------


class TooManyAttempts(TreError):
    """Sign-in refused after repeated failures (of this account or from this client) until the window
    passes; even the right password is refused meanwhile, so guessing gains nothing."""

    status_code = 429
    code = "too_many_attempts"


def _window(settings: Settings) -> dt.timedelta:
    return dt.timedelta(minutes=settings.login_failure_window_minutes)


def _failures(
    session: Session, since: dt.datetime, *, username: str | None = None, client: str | None = None
) -> tuple[int, dt.datetime | None]:
    """How many failed steps (of ``username``, or from ``client``) since ``since``, and the latest one."""
    query = select(func.count(), func.max(LoginAttempt.at)).where(LoginAttempt.at > since)
    if username is not None:
        query = query.where(LoginAttempt.username == username)
    if client is not None:
        query = query.where(LoginAttempt.client == client)
    count, latest = session.execute(query).one()
    return int(count or 0), latest


def check_login_allowed(
    session: Session, username: str, client: str, settings: Settings | None = None
) -> None:
    """Refuse a sign-in step while the account or the client is locked out.

    An account is locked after ``settings.login_max_failures`` failed steps (password or TOTP) within
    ``login_failure_window_minutes``; a client address after ``login_max_failures_per_client`` failures
    of any accounts (password spraying). The lock lifts when the window since the last failure passes.

    Raises:
        TooManyAttempts: Locked; the message says for how long.
    """
    settings = settings or get_settings()
    now = clock.now()
    since = now - _window(settings)
    for count, latest, limit, who in (
        (*_failures(session, since, username=username[:64]), settings.login_max_failures, "this account"),
        (
            *_failures(session, since, client=client[:64]),
            settings.login_max_failures_per_client,
            "your network address",
        ),
    ):
        if count >= limit and latest is not None:
            minutes = max(1, -(-int((latest + _window(settings) - now).total_seconds()) // 60))
            raise TooManyAttempts(
                f"too many failed sign-in attempts for {who}; wait {minutes} minute"
                f"{'s' if minutes != 1 else ''} and try again, or ask an administrator to check the audit log"
            )


def record_login_failure(
    session: Session, username: str, client: str, step: str, reason: str, settings: Settings | None = None
) -> bool:
    """Keep a failed sign-in step and audit it (the caller commits); returns True if it locked the
    account or the client (that is audited too, as ``auth.lockout``)."""
    settings = settings or get_settings()
    username, client = username[:64], client[:64]
    since = clock.now() - _window(settings)
    # Failures older than the window no longer count (the audit log keeps them): the table stays small
    # however many names a guesser tries.
    session.execute(delete(LoginAttempt).where(LoginAttempt.at <= since))
    session.add(LoginAttempt(username=username, client=client, step=step, at=clock.now()))
    session.flush()
    record(
        session,
        actor=username,
        action="auth.login" if step == "password" else "auth.mfa",
        target_type="users",
        decision="deny",
        reasons=[reason],
        details={"client": client, "step": step},
    )
    by_account, _ = _failures(session, since, username=username)
    by_client, _ = _failures(session, since, client=client)
    locked = by_account == settings.login_max_failures or by_client == settings.login_max_failures_per_client
    if locked:
        record(
            session,
            actor=username,
            action="auth.lockout",
            target_type="users",
            decision="deny",
            reasons=[
                f"{by_account} failed sign-in steps for the account and {by_client} from {client} in "
                f"{settings.login_failure_window_minutes} minutes"
            ],
            details={
                "client": client,
                "step": step,
                "account_failures": by_account,
                "client_failures": by_client,
            },
        )
    return locked


def clear_login_failures(session: Session, username: str) -> None:
    """A completed sign-in forgets the account's earlier failures (the client's still count)."""
    session.execute(delete(LoginAttempt).where(LoginAttempt.username == username[:64]))


def _audit_refusal(session: Session, username: str, client: str, action: str, exc: TreError) -> None:
    record(
        session,
        actor=username[:64],
        action=action,
        target_type="users",
        decision="deny",
        reasons=[exc.message],
        details={"client": client[:64], "locked": True},
    )


def sign_in_with_password(
    session: Session, username: str, password: str, client: str, settings: Settings | None = None
) -> User:
    """The password step of a sign-in (API and web share it): lockout first, then the password.

    A failure is kept and audited in its own committed transaction (the caller's work is rolled back),
    because a refused sign-in changes nothing but is evidence worth keeping.

    Raises:
        TooManyAttempts: The account or the client is locked out (audited).
        Unauthenticated: Wrong username or password, or a disabled account (audited, counted).
    """
    settings = settings or get_settings()
    try:
        check_login_allowed(session, username, client, settings)
        user = authenticate(session, username, password)
    except TooManyAttempts as exc:
        session.rollback()
        _audit_refusal(session, username, client, "auth.login", exc)
        session.commit()
        raise
    except Unauthenticated:
        session.rollback()
        record_login_failure(
            session, username, client, "password", "wrong username or password, or account disabled", settings
        )
        session.commit()
        raise
    if not totp_required(user, settings):
        clear_login_failures(session, user.username)
    return user


def sign_in_with_totp(
    session: Session, web_session: WebSession, code: str, client: str, settings: Settings | None = None
) -> WebSession:
    """The TOTP step of a sign-in: lockout first, then the code (once only: replays are refused).

    Raises:
        TooManyAttempts: Locked out (audited).
        Unauthenticated: A wrong or reused code (audited, counted towards the lockout).
        Conflict: The user has no second factor yet.
    """
    settings = settings or get_settings()
    username = web_session.user.username
    try:
        check_login_allowed(session, username, client, settings)
        pass_mfa(session, web_session, code)
    except TooManyAttempts as exc:
        session.rollback()
        _audit_refusal(session, username, client, "auth.mfa", exc)
        session.commit()
        raise
    except Unauthenticated:
        session.rollback()
        record_login_failure(session, username, client, "totp", "wrong or reused TOTP code", settings)
        session.commit()
        raise
    clear_login_failures(session, username)
    return web_session


def authenticate(session: Session, username: str, password: str) -> User:
    """The active user with this username and password, or Unauthenticated (the same message either way)."""
    user = session.scalar(select(User).where(User.username == username))
    if user is None or not security.verify_password(user.password_hash, password) or not user.is_active:
        raise Unauthenticated("wrong username or password, or the account is disabled; try again")
    if user.password_hash and security.password_hasher().check_needs_rehash(user.password_hash):
        user.password_hash = security.hash_password(password)
    return user


# TOTP ----------------------------------------------------------------------------------------------


def totp_required(user: User, settings: Settings | None = None) -> bool:
    """True if any of the user's roles must pass a TOTP second factor (settings.totp_required_roles), or
    the user has enrolled one of their own accord (a factor they set up is always asked for)."""
    required = set((settings or get_settings()).totp_required_roles)
    return user.totp_enabled or any(role in required for role in user.role_names)


def start_totp_enrolment(session: Session, actor: Actor) -> tuple[User, str, str]:
    """Generate a new TOTP secret for the signed-in user; returns (user, secret, otpauth URI).

    The secret is stored encrypted and not yet enabled: :func:`confirm_totp` with a code from the app
    enables it. An enabled factor is replaced only after an administrator's :func:`reset_totp`.
    """
    check_user(actor)
    if actor.user is None:
        raise Forbidden("the operator has no second factor; sign in as a user")
    user = actor.user
    if user.totp_enabled:
        # Replacing a live factor from a password-only session would let a stolen password bypass TOTP.
        raise Conflict(
            "you already have a second factor; ask an administrator to reset it to enrol a new device"
        )
    secret = security.new_totp_secret()
    user.totp_secret_enc = security.encrypt_totp_secret(secret)
    user.totp_enabled = False
    user.totp_last_step = None
    session.flush()
    audit(session, actor, "user.totp.enrol", user)
    return user, secret, security.totp_uri(secret, user.username)


def verify_totp(user: User, code: str) -> bool:
    """True if ``code`` is the user's current TOTP code and has not been accepted before; accepting it
    records its time step, so the same code (or an older one) is refused from then on (replay)."""
    if not user.totp_secret_enc:
        return False
    try:
        secret = security.decrypt_totp_secret(user.totp_secret_enc)
    except ValueError:
        return False
    step = security.totp_step(secret, code)
    if step is None or (user.totp_last_step is not None and step <= user.totp_last_step):
        return False
    user.totp_last_step = step
    return True


def confirm_totp(session: Session, actor: Actor, code: str) -> User:
    """Enable the enrolled TOTP factor once the user proves their app shows the right code."""
    check_user(actor)
    if actor.user is None:
        raise Forbidden("the operator has no second factor; sign in as a user")
    user = actor.user
    if not user.totp_secret_enc:
        raise Conflict("start TOTP enrolment first (POST /api/v1/auth/totp/enrol)")
    if not verify_totp(user, code):
        raise InvalidInput(
            "that code is not valid or was already used; check your device's clock and enter the newest code",
            field="code",
        )
    user.totp_enabled = True
    session.flush()
    audit(session, actor, "user.totp.confirm", user)
    return user


def reset_totp(session: Session, actor: Actor, user_id: str) -> User:
    """Remove a user's TOTP factor so they can enrol a new device (admin only)."""
    check_admin(actor, "reset a second factor")
    user = get_or_404(session, User, user_id, "user")
    user.totp_secret_enc = None
    user.totp_enabled = False
    user.totp_last_step = None
    session.flush()
    audit(session, actor, "user.totp.reset", user)
    return user


# API tokens ----------------------------------------------------------------------------------------


#: The scope of a workspace's token: it may call the API, never mint another token.
WORKSPACE_SCOPE = "workspace"


def create_api_token(
    session: Session,
    actor: Actor,
    data: TokenCreate,
    *,
    parent: ApiToken | None = None,
    project_id: str | None = None,
) -> tuple[ApiToken, str]:
    """A new API token for the signed-in user; returns (row, raw token). The raw token is shown only once.

    Args:
        parent: the token the request was authenticated with, if any. A token may mint only tokens with
            the same or fewer scopes and no longer life than itself; a workspace's token mints none.
            The new token inherits the parent's project, and is revoked with it.
        project_id: the project whose access justifies the token (a workspace's token): it is revoked
            when its user may no longer use the project (:mod:`tre_platform.views.enforce`).

    Raises:
        Forbidden: the parent token may not mint this token (the message says which rule).
    """
    check_user(actor)
    if actor.user is None:
        raise Forbidden("the operator does not use API tokens; sign in as a user")
    now = clock.now()
    expires_at = now + dt.timedelta(days=data.expires_in_days or get_settings().token_ttl_days)
    scopes = list(data.scopes)
    if parent is not None:
        if WORKSPACE_SCOPE in parent.scopes:
            raise Forbidden(
                "a workspace's token cannot create API tokens; create one from the web UI's account page"
            )
        if parent.scopes and (not scopes or not set(scopes) <= set(parent.scopes)):
            raise Forbidden(
                "a token can create only tokens with the same or fewer scopes than its own "
                f"({', '.join(parent.scopes)}); asked for {', '.join(scopes) or 'every scope'}"
            )
        if parent.expires_at is not None:
            parent_expiry = _aware(parent.expires_at)
            if data.expires_in_days is None:
                expires_at = min(expires_at, parent_expiry)
            elif expires_at > parent_expiry:
                raise Forbidden(
                    f"a token cannot outlive the token it is created with, which expires on "
                    f"{parent_expiry:%Y-%m-%d %H:%M} UTC; ask for fewer days"
                )
        project_id = project_id or parent.project_id
    raw = security.new_api_token()
    token = ApiToken(
        user_id=actor.user.id,
        name=data.name,
        prefix=raw[:12],
        token_hash=security.hash_token(raw),
        scopes=scopes,
        expires_at=expires_at,
        parent_id=parent.id if parent is not None else None,
        project_id=project_id,
    )
    session.add(token)
    session.flush()
    audit(
        session,
        actor,
        "token.create",
        token,
        name=data.name,
        expires_at=token.expires_at,
        parent_id=token.parent_id,
        project_id=token.project_id,
    )
    return token, raw


def _aware(value: dt.datetime) -> dt.datetime:
    # SQLite returns naive datetimes (stored as UTC).
    return value if value.tzinfo is not None else value.replace(tzinfo=dt.UTC)


def revoke_token_lineage(
    session: Session,
    actor: Actor,
    token: ApiToken,
    *,
    reasons: list[str] | None = None,
    cause: str | None = None,
) -> list[str]:
    """Revoke ``token`` and every live token minted from it, however indirectly; return their ids."""
    now = clock.now()
    revoked: list[str] = []
    pending = [token]
    while pending:
        current = pending.pop()
        if current.revoked_at is None:
            current.revoked_at = now
            revoked.append(current.id)
            audit(
                session,
                actor,
                "token.revoke",
                current,
                reasons=reasons or [],
                user_id=current.user_id,
                project_id=current.project_id,
                cause=cause,
            )
        pending.extend(session.scalars(select(ApiToken).where(ApiToken.parent_id == current.id)).all())
    session.flush()
    return revoked


def list_api_tokens(session: Session, actor: Actor) -> list[ApiToken]:
    """The signed-in user's tokens, newest first (secrets are never returned)."""
    check_user(actor)
    return list(
        session.scalars(
            select(ApiToken).where(ApiToken.user_id == actor.user_id).order_by(ApiToken.created_at.desc())
        )
    )


def revoke_api_token(session: Session, actor: Actor, token_id: str) -> ApiToken:
    """Revoke one of your tokens (administrators may revoke anyone's)."""
    check_user(actor)
    token = session.get(ApiToken, token_id)
    if token is None or (not actor.is_admin and token.user_id != actor.user_id):
        raise NotFound(f"no token with id {token_id!r} of yours; list your tokens to find it")
    if token.revoked_at is not None:
        raise Conflict("this token is already revoked")
    revoke_token_lineage(session, actor, token)
    return token


#: How stale an API token's ``last_used_at`` may be.
LAST_USED_RESOLUTION = dt.timedelta(minutes=1)


def resolve_api_token(session: Session, raw: str) -> ApiToken:
    """The live token for ``raw`` (and notes its use), or Unauthenticated saying what is wrong."""
    token = session.scalar(select(ApiToken).where(ApiToken.token_hash == security.hash_token(raw)))
    now = clock.now()
    if token is None:
        raise Unauthenticated("the API token is not valid; create a new one")
    if token.revoked_at is not None:
        raise Unauthenticated("the API token was revoked; create a new one")
    if token.expires_at is not None and token.expires_at <= now:
        raise Unauthenticated("the API token has expired; create a new one")
    if not token.user.is_active:
        raise Unauthenticated("the account of this API token is disabled")
    ancestor, seen = token, {token.id}
    while ancestor.parent_id is not None and ancestor.parent_id not in seen:
        # Revocation cascades when it happens; this also refuses a child whose parent merely expired.
        parent = session.get(ApiToken, ancestor.parent_id)
        if (
            parent is None
            or parent.revoked_at is not None
            or (parent.expires_at is not None and _aware(parent.expires_at) <= now)
        ):
            raise Unauthenticated(
                "the token this API token was created with is no longer valid; create a new one"
            )
        seen.add(parent.id)
        ancestor = parent
    # Noted at most once a minute: the write takes SQLite's write lock for the rest of the request, so
    # writing it on every request would make every read wait for every other request.
    if token.last_used_at is None or now - _aware(token.last_used_at) >= LAST_USED_RESOLUTION:
        token.last_used_at = now
    return token


# Browser sessions ----------------------------------------------------------------------------------


def start_web_session(session: Session, user: User, *, mfa_passed: bool) -> tuple[WebSession, str]:
    """A server-side browser session for ``user``; returns (row, raw cookie value)."""
    raw = security.new_session_token()
    web_session = WebSession(
        user_id=user.id,
        token_hash=security.hash_token(raw),
        csrf_token=security.new_csrf_token(),
        mfa_passed=mfa_passed,
        expires_at=clock.now() + dt.timedelta(minutes=get_settings().session_ttl_minutes),
    )
    session.add(web_session)
    session.flush()
    audit(session, Actor.of(user), "auth.login", user, decision="allow", mfa_passed=mfa_passed)
    return web_session, raw


def resolve_web_session(session: Session, raw: str) -> WebSession:
    """The live browser session for the cookie value ``raw``, or Unauthenticated."""
    web_session = session.scalar(select(WebSession).where(WebSession.token_hash == security.hash_token(raw)))
    if web_session is None or web_session.expires_at <= clock.now():
        raise Unauthenticated("your session has ended; sign in again")
    if not web_session.user.is_active:
        raise Unauthenticated("your account is disabled")
    return web_session


def pass_mfa(session: Session, web_session: WebSession, code: str) -> WebSession:
    """Mark the session as having passed the TOTP step if ``code`` is right."""
    user = web_session.user
    actor = Actor.of(user)
    if not user.totp_enabled:
        raise Conflict("you have no second factor yet; enrol one first (POST /api/v1/auth/totp/enrol)")
    if not verify_totp(user, code):
        raise Unauthenticated(
            "that code is not valid or was already used; wait for your app to show a new code and enter it"
        )
    web_session.mfa_passed = True
    session.flush()
    audit(session, actor, "auth.mfa", user, decision="allow")
    return web_session


def end_web_session(session: Session, web_session: WebSession) -> None:
    """Sign out: the session row is deleted, so the cookie is worthless even if copied."""
    audit(session, Actor.of(web_session.user), "auth.logout", web_session.user)
    session.delete(web_session)
    session.flush()
