"""JupyterHub authenticator backed by the control plane's users: password, then TOTP when required.

The hub runs beside the control plane, as root, on the same host (see docs/adr/0005): it checks
credentials by calling the users service in-process, so there is one implementation of sign-in and
every attempt, allowed or refused, lands in the same audit chain.
"""

from __future__ import annotations

import asyncio
from typing import Any

from jupyterhub.auth import Authenticator
from sqlalchemy.orm import Session
from traitlets import Bool, Unicode, default

from tre_platform.actor import Actor
from tre_platform.api.audit.service import record
from tre_platform.api.common import audit
from tre_platform.api.users import service as users
from tre_platform.api.users.models import Role, User
from tre_platform.db.session import session_scope
from tre_platform.errors import Unauthenticated


def check_login(
    username: str, password: str, otp: str | None, client: str = "unknown"
) -> tuple[str | None, str]:
    """Check a hub sign-in against the control plane; return (username or None, reason). Audited.

    The hub shares the control plane's lockout: a locked account or client address is refused before its
    password is checked, and every failed step (password or code) counts towards the lock.
    """
    with session_scope() as session:
        try:
            users.check_login_allowed(session, username, client)
        except users.TooManyAttempts as exc:
            _refuse(session, username, exc.message)
            return None, exc.message
        user: User | None = None
        reason, failed_step = "", ""  # failed_step: the wrong secret, which counts towards the lockout
        try:
            user = users.authenticate(session, username, password)
        except Unauthenticated as exc:
            reason, failed_step = exc.message, "password"
        if user is not None and (users.totp_required(user) or user.totp_enabled):
            if not user.totp_enabled:
                reason = "your role needs a second factor: enrol TOTP in the control plane first"
                user = None
            elif not otp or not users.verify_totp(user, otp.strip()):
                reason = "the authenticator code is missing or wrong; enter the newest code from your app"
                user, failed_step = None, "totp"
        if user is not None and not user.has_role(Role.researcher):
            reason = "JupyterHub is for researchers; your account has no researcher role"
            user = None
        if user is None:
            session.rollback()
            if failed_step:
                # Audited by the users service as well, as auth.login / auth.mfa with the client address.
                users.record_login_failure(session, username, client, failed_step, reason)
            _refuse(session, username, reason)
            return None, reason
        users.clear_login_failures(session, user.username)
        audit(session, Actor.of(user), "hub.login", user, decision="allow")
        return user.username, "signed in"


def _refuse(session: Session, username: str, reason: str) -> None:
    record(
        session,
        actor=username[:64] or "anonymous",
        action="hub.login",
        target_type="users",
        decision="deny",
        reasons=[reason],
    )


class TreAuthenticator(Authenticator):
    """Sign in to JupyterHub with a tre account (password, plus a TOTP code where the role needs one).

    Only users with the researcher role may sign in; which projects they may start a workspace for is
    decided at spawn time by the policy engine (:class:`tre_platform.hub.spawner.TreSpawner`).
    """

    request_otp = Bool(True, help="Show the one-time-code field on the login form.").tag(config=True)
    otp_prompt = Unicode(
        "Authenticator code (only if your account has TOTP):", help="Label of the one-time-code field."
    ).tag(config=True)

    @default("allow_all")
    def _allow_all(self) -> bool:
        # Who exists and may sign in is the control plane's business, checked in authenticate().
        return True

    async def authenticate(self, handler: Any, data: dict[str, Any]) -> dict[str, Any] | None:
        username = str(data.get("username", "")).strip()
        password = str(data.get("password", ""))
        otp = data.get("otp")
        client = getattr(getattr(handler, "request", None), "remote_ip", None) or "unknown"
        name, reason = await asyncio.to_thread(check_login, username, password, otp, client)
        if name is None:
            self.log.warning("hub sign-in refused for %r: %s", username, reason)
            return None
        return {"name": name}
