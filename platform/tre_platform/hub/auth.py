"""JupyterHub authenticators backed by the control plane's users: password then TOTP, or single sign-on
through the deployment's OpenID Connect provider then TOTP (every role needs the second factor by default).

The hub runs beside the control plane, as root, on the same host (see docs/adr/0005): it checks
credentials by calling the users service in-process, so there is one implementation of sign-in and
every attempt, allowed or refused, lands in the same audit chain.
"""

from __future__ import annotations

import asyncio
import html
import json
from collections.abc import Callable
from typing import Any

from jupyterhub.auth import Authenticator
from jupyterhub.handlers import BaseHandler
from jupyterhub.utils import url_path_join
from oauthenticator.generic import GenericOAuthenticator
from oauthenticator.oauth2 import OAuthCallbackHandler, OAuthLoginHandler
from sqlalchemy import select
from sqlalchemy.orm import Session
from tornado import web
from traitlets import Bool, Unicode, default

from tre_platform.actor import Actor
from tre_platform.api.audit.service import record
from tre_platform.api.common import audit
from tre_platform.api.users import oidc
from tre_platform.api.users import service as users
from tre_platform.api.users.models import Role, User
from tre_platform.db.session import session_scope
from tre_platform.errors import Unauthenticated
from tre_platform.settings import get_settings


def check_login(
    username: str, password: str, otp: str | None, client: str = "unknown"
) -> tuple[str | None, str]:
    """Check a hub sign-in against the control plane; return (username or None, reason). Audited.

    The hub shares the control plane's lockout: a locked account or client address is refused before its
    password is checked, and every failed step (password or code) counts towards the lock.
    """
    return _check(username, otp, client, lambda session: users.authenticate(session, username, password))


def check_sso_code(username: str, otp: str | None, client: str = "unknown") -> tuple[str | None, str]:
    """The TOTP step after a single sign-on whose ID token named ``username`` (the hub's signed cookie
    says so): the same lockout, code check and audit as :func:`check_login`'s second step."""
    return _check(username, otp, client, lambda session: _active_user(session, username))


def check_sso(claims: dict[str, Any]) -> tuple[str, bool]:
    """The researcher verified ID-token ``claims`` name, and whether their TOTP step is still due.

    Raises:
        web.HTTPError: 403 with the reason (nobody known, not a researcher, no second factor enrolled).
    """
    with session_scope() as session:
        try:
            user, needs_totp = oidc.sign_in(session, claims)
        except oidc.SsoRefused as exc:
            _refuse(session, str(claims.get("sub", ""))[:64], exc.message)
            raise web.HTTPError(403, exc.message) from None
        reason = ""
        if not user.has_role(Role.researcher):
            reason = NOT_A_RESEARCHER
        elif needs_totp and not user.totp_enabled:
            reason = _enrol_first()
        if reason:
            session.rollback()
            _refuse(session, user.username, reason)
            raise web.HTTPError(403, reason)
        return user.username, needs_totp


NOT_A_RESEARCHER = "JupyterHub is for researchers; your account has no researcher role"


def _enrol_first() -> str:
    settings = get_settings()
    control_plane = settings.public_url or f"http://{settings.host}:{settings.port}"
    return (
        "your account needs a second factor and has none yet: sign in once at "
        f"{control_plane.rstrip('/')}/login to set up your authenticator app, then come back"
    )


def _active_user(session: Session, username: str) -> User:
    user = session.scalar(select(User).where(User.username == username))
    if user is None or not user.is_active:
        raise Unauthenticated("the account is disabled; ask an administrator")
    return user


def _check(
    username: str, otp: str | None, client: str, first_step: Callable[[Session], User]
) -> tuple[str | None, str]:
    with session_scope() as session:
        try:
            users.check_login_allowed(session, username, client)
        except users.TooManyAttempts as exc:
            _refuse(session, username, exc.message)
            return None, exc.message
        user: User | None = None
        reason, failed_step = "", ""  # failed_step: the wrong secret, which counts towards the lockout
        try:
            user = first_step(session)
        except Unauthenticated as exc:
            reason, failed_step = exc.message, "password"
        if user is not None and users.totp_required(user):
            if not user.totp_enabled:
                reason = _enrol_first()
                user = None
            elif not otp or not users.verify_totp(user, otp.strip()):
                reason = "the authenticator code is missing or wrong; enter the newest code from your app"
                user, failed_step = None, "totp"
        if user is not None and not user.has_role(Role.researcher):
            reason = NOT_A_RESEARCHER
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
    """Sign in to JupyterHub with a tre account (password, plus a TOTP code: every role needs one by default;
    a researcher with no factor yet is sent to the control plane to set one up).

    Only users with the researcher role may sign in; which projects they may start a workspace for is
    decided at spawn time by the policy engine (:class:`tre_platform.hub.spawner.TreSpawner`).
    """

    request_otp = Bool(True, help="Show the one-time-code field on the login form.").tag(config=True)
    otp_prompt = Unicode("Authenticator code:", help="Label of the one-time-code field.").tag(config=True)

    @default("allow_all")
    def _allow_all(self) -> bool:
        # Who exists and may sign in is the control plane's business, checked in authenticate().
        return True

    async def authenticate(self, handler: Any, data: dict[str, Any]) -> dict[str, Any] | None:
        username = str(data.get("username", "")).strip()
        password = str(data.get("password", ""))
        otp = data.get("otp")
        name, reason = await asyncio.to_thread(check_login, username, password, otp, _client_of(handler))
        if name is None:
            self.log.warning("hub sign-in refused for %r: %s", username, reason)
            # The login form shows this message (JupyterHub renders a POST's error on the form itself).
            raise web.HTTPError(403, reason)
        return {"name": name}


# Single sign-on --------------------------------------------------------------------------------------

SSO_PENDING_COOKIE = "tre-sso-pending"
SSO_PENDING_DAYS = 10 / (24 * 60)  # ten minutes to enter the code after the provider's sign-in


def _client_of(handler: Any) -> str:
    return getattr(getattr(handler, "request", None), "remote_ip", None) or "unknown"


class TreOAuthLoginHandler(OAuthLoginHandler):
    """oauthenticator's redirect to the provider, plus a nonce bound to this sign-in's state."""

    def authorize_redirect(self, *args: Any, **kwargs: Any) -> None:
        extra = dict(kwargs.get("extra_params") or {})
        extra["nonce"] = oidc.nonce_for(str(extra.get("state", "")))
        kwargs["extra_params"] = extra
        super().authorize_redirect(*args, **kwargs)


class TreOAuthCallbackHandler(OAuthCallbackHandler):
    """The provider's answer: oauthenticator checks the state and exchanges the code (with PKCE); tre
    verifies the ID token (signature, issuer, audience, nonce), maps it to a researcher, and asks for
    their TOTP code unless the provider's amr/acr counts as the second factor."""

    async def get(self) -> None:
        self.check_arguments()  # error, code, and the state against oauthenticator's signed cookie
        authenticator = self.authenticator
        params = authenticator.build_access_tokens_request_params(self, None)
        token_info = await authenticator.get_token_info(self, params)
        id_token = token_info.get("id_token")
        if not isinstance(id_token, str):
            raise web.HTTPError(403, "the sign-in provider returned no ID token; ask an administrator")
        nonce = oidc.nonce_for(self.get_argument("state"))
        try:
            claims = await asyncio.to_thread(oidc.verify_id_token, id_token, nonce)
        except oidc.SsoRefused as exc:
            raise web.HTTPError(403, exc.message) from None
        name, needs_totp = await asyncio.to_thread(check_sso, claims)
        next_url = self.get_next_url()
        if needs_totp:
            self.set_secure_cookie(
                SSO_PENDING_COOKIE,
                json.dumps({"name": name, "next": next_url}),
                expires_days=SSO_PENDING_DAYS,
                httponly=True,
                path=self.hub.base_url,
            )
            self.redirect(url_path_join(self.hub.base_url, "sso-totp"))
            return
        await _complete_sign_in(self, name, next_url)


async def _complete_sign_in(handler: BaseHandler, name: str, next_url: str) -> None:
    user = await handler.auth_to_user({"name": name})
    handler.set_login_cookie(user)
    handler.log.info("User logged in through single sign-on: %s", name)
    handler.redirect(next_url)


_TOTP_FORM = """<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Authenticator code</title>
</head><body><main><h1>Enter your authenticator code</h1>{error}
<form method="post"><input type="hidden" name="_xsrf" value="{xsrf}">
<label for="otp">6-digit code</label>
<input id="otp" name="otp" inputmode="numeric" autocomplete="one-time-code" autofocus required>
<button type="submit">Continue</button></form></main></body></html>"""


class TreSsoTotpHandler(BaseHandler):
    """The TOTP step after a single sign-on (the hub's signed cookie names who passed the provider)."""

    def _pending(self) -> dict[str, str] | None:
        raw = self.get_secure_cookie(SSO_PENDING_COOKIE, max_age_days=SSO_PENDING_DAYS)
        try:
            data = json.loads(raw) if raw else None
        except ValueError:
            return None
        return data if isinstance(data, dict) and isinstance(data.get("name"), str) else None

    def _form(self, error: str = "") -> str:
        shown = f'<p role="alert">{html.escape(error)}</p>' if error else ""
        return _TOTP_FORM.format(error=shown, xsrf=html.escape(self.xsrf_token.decode("ascii")))

    async def get(self) -> None:
        if self._pending() is None:
            self.redirect(self.settings["login_url"])
            return
        self.finish(self._form())

    async def post(self) -> None:
        pending = self._pending()
        if pending is None:
            self.redirect(self.settings["login_url"])
            return
        otp = self.get_body_argument("otp", default="")
        name, reason = await asyncio.to_thread(check_sso_code, pending["name"], otp, _client_of(self))
        if name is None:
            self.set_status(403)
            self.finish(self._form(reason))
            return
        self.clear_cookie(SSO_PENDING_COOKIE, path=self.hub.base_url)
        await _complete_sign_in(self, name, str(pending.get("next") or self.get_next_url()))


class TreOIDCAuthenticator(GenericOAuthenticator):
    """Sign in to JupyterHub through the deployment's OpenID Connect provider (``TRE_OIDC_*``).

    The provider's ID token must name an existing tre researcher (see :mod:`tre_platform.api.users.oidc`);
    their TOTP code is asked for next unless the provider's ``amr``/``acr`` is configured to count as the
    second factor. Nobody is created and nobody is made an administrator from claims.
    """

    login_handler = TreOAuthLoginHandler
    callback_handler = TreOAuthCallbackHandler

    @default("allow_all")
    def _allow_all(self) -> bool:
        return True  # who may sign in is decided by check_sso(), against the control plane's users

    @default("enable_pkce")
    def _enable_pkce(self) -> bool:
        return True

    @default("login_service")
    def _login_service(self) -> str:
        return "your organisation"

    def get_handlers(self, app: Any) -> list[tuple[str, type]]:
        return [*super().get_handlers(app), (r"/sso-totp", TreSsoTotpHandler)]

    async def authenticate(self, handler: Any, data: dict[str, Any] | None = None, **kwargs: Any) -> None:
        # Every sign-in goes through TreOAuthCallbackHandler; nothing posted to /hub/login signs anyone in.
        raise web.HTTPError(403, "sign in with your organisation's account")


def configure_sso(c: Any) -> bool:
    """Make ``c`` (a JupyterHub config) sign in through the OIDC provider if one is configured."""
    settings = get_settings()
    if not oidc.enabled(settings):
        return False
    provider = oidc.discover(settings)
    assert settings.oidc_client_secret is not None
    c.JupyterHub.authenticator_class = TreOIDCAuthenticator
    c.TreOIDCAuthenticator.client_id = settings.oidc_client_id
    c.TreOIDCAuthenticator.client_secret = settings.oidc_client_secret.get_secret_value()
    c.TreOIDCAuthenticator.authorize_url = provider.authorization_endpoint
    c.TreOIDCAuthenticator.token_url = provider.token_endpoint
    c.TreOIDCAuthenticator.scope = oidc.SCOPE.split()
    c.TreOIDCAuthenticator.oauth_callback_url = settings.hub_url.rstrip("/") + "/hub/oauth_callback"
    return True
