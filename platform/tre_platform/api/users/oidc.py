"""Single sign-on through an OpenID Connect provider: the authorization-code flow with PKCE, state and nonce.

One implementation serves both doors: the web UI runs the whole flow here (:func:`begin` and
:func:`complete`); JupyterHub's ``oauthenticator`` runs the redirect and the code exchange, then hands the
ID token to :func:`verify_id_token` and :func:`user_for_claims`. Either way:

- the ID token's signature is checked against the provider's published keys (JWKS), and its issuer,
  audience, expiry and nonce against what this deployment expects;
- the token names an *existing* tre user (by verified email, or by username); nobody is created from
  claims, so no claim can make anyone an administrator, and an unknown person is refused with a message
  saying to ask an administrator;
- the provider's ``amr``/``acr`` counts as the second factor only where the settings list those values
  (``TRE_OIDC_MFA_AMR``, ``TRE_OIDC_MFA_ACR``); otherwise the user's TOTP still applies after SSO.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from typing import Any

import httpx
from authlib.integrations.httpx_client import OAuth2Client
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from tre_platform.actor import Actor
from tre_platform.api.audit.service import record
from tre_platform.api.common import audit
from tre_platform.api.users import service as users
from tre_platform.api.users.models import User
from tre_platform.errors import TreError, Unauthenticated
from tre_platform.settings import Settings, get_settings

SCOPE = "openid email profile"
#: Signature algorithms accepted on ID tokens (never "none", never HMAC with the client secret).
ID_TOKEN_ALGORITHMS = ("RS256", "PS256", "ES256", "EdDSA")
HTTP_TIMEOUT = 10.0


class SsoNotConfigured(TreError):
    """Single sign-on is off: TRE_OIDC_ISSUER, TRE_OIDC_CLIENT_ID and TRE_OIDC_CLIENT_SECRET are unset."""

    status_code = 404
    code = "sso_not_configured"


class SsoRefused(Unauthenticated):
    """The provider's answer cannot be trusted or names nobody this deployment knows; the message says why."""


@dataclass(frozen=True)
class Provider:
    """What the provider's discovery document says (only the parts the code flow uses)."""

    issuer: str
    authorization_endpoint: str
    token_endpoint: str
    jwks_uri: str


@dataclass(frozen=True)
class PendingSignIn:
    """The secrets of one sign-in in flight, sealed in a browser cookie until the provider redirects back."""

    state: str
    nonce: str
    code_verifier: str
    next_url: str

    def as_dict(self) -> dict[str, str]:
        return {
            "state": self.state,
            "nonce": self.nonce,
            "verifier": self.code_verifier,
            "next": self.next_url,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PendingSignIn:
        return cls(str(data["state"]), str(data["nonce"]), str(data["verifier"]), str(data["next"]))


def enabled(settings: Settings | None = None) -> bool:
    """True if single sign-on is configured."""
    settings = settings or get_settings()
    return bool(settings.oidc_issuer and settings.oidc_client_id and settings.oidc_client_secret)


def _require(settings: Settings) -> tuple[str, str, str]:
    if not enabled(settings):
        raise SsoNotConfigured(
            "single sign-on is not configured here; sign in with your password, or ask an administrator to "
            "set TRE_OIDC_ISSUER, TRE_OIDC_CLIENT_ID and TRE_OIDC_CLIENT_SECRET"
        )
    assert settings.oidc_issuer and settings.oidc_client_id and settings.oidc_client_secret
    return (
        settings.oidc_issuer.rstrip("/"),
        settings.oidc_client_id,
        settings.oidc_client_secret.get_secret_value(),
    )


def discover(settings: Settings | None = None) -> Provider:
    """The provider's endpoints from its discovery document, which must name the configured issuer."""
    issuer, _, _ = _require(settings or get_settings())
    try:
        response = httpx.get(f"{issuer}/.well-known/openid-configuration", timeout=HTTP_TIMEOUT)
        response.raise_for_status()
        document = response.json()
    except (httpx.HTTPError, ValueError) as exc:
        raise SsoRefused(f"the sign-in provider at {issuer} cannot be reached; try again later") from exc
    if str(document.get("issuer", "")).rstrip("/") != issuer:
        raise SsoRefused(
            "the sign-in provider's discovery document names another issuer; ask an administrator"
        )
    return Provider(
        issuer=str(document["issuer"]),
        authorization_endpoint=str(document["authorization_endpoint"]),
        token_endpoint=str(document["token_endpoint"]),
        jwks_uri=str(document["jwks_uri"]),
    )


def _client(settings: Settings, redirect_uri: str) -> OAuth2Client:
    _, client_id, client_secret = _require(settings)
    return OAuth2Client(
        client_id,
        client_secret,
        scope=SCOPE,
        redirect_uri=redirect_uri,
        code_challenge_method="S256",
        timeout=HTTP_TIMEOUT,
    )


def begin(redirect_uri: str, next_url: str, settings: Settings | None = None) -> tuple[str, PendingSignIn]:
    """Start a sign-in: (the provider's authorization URL to send the browser to, the secrets to keep).

    Fresh random state (against forged callbacks), nonce (binds the ID token to this sign-in) and PKCE
    verifier (binds the code to this browser) each time.
    """
    settings = settings or get_settings()
    provider = discover(settings)
    pending = PendingSignIn(
        state=secrets.token_urlsafe(32),
        nonce=secrets.token_urlsafe(32),
        code_verifier=secrets.token_urlsafe(48),
        next_url=next_url,
    )
    with _client(settings, redirect_uri) as client:
        url, _ = client.create_authorization_url(
            provider.authorization_endpoint,
            state=pending.state,
            code_verifier=pending.code_verifier,
            nonce=pending.nonce,
        )
    return url, pending


def complete(
    pending: PendingSignIn, state: str, code: str, redirect_uri: str, settings: Settings | None = None
) -> dict[str, Any]:
    """Finish a sign-in: check the state, exchange the code (with the PKCE verifier) and return the
    verified ID token's claims.

    Raises:
        SsoRefused: A state that is not this browser's, a refused code, or an ID token that fails a check.
    """
    settings = settings or get_settings()
    if not state or not hmac.compare_digest(state.encode(), pending.state.encode()):
        raise SsoRefused("this sign-in answer does not belong to your browser's sign-in; start again")
    provider = discover(settings)
    with _client(settings, redirect_uri) as client:
        try:
            token = client.fetch_token(
                provider.token_endpoint, code=code, code_verifier=pending.code_verifier
            )
        except Exception as exc:  # authlib raises OAuthError, httpx its own: the provider said no
            raise SsoRefused("the sign-in provider refused the sign-in code; start again") from exc
    id_token = token.get("id_token")
    if not isinstance(id_token, str):
        raise SsoRefused("the sign-in provider returned no ID token; ask an administrator")
    return verify_id_token(id_token, pending.nonce, settings, provider)


def verify_id_token(
    id_token: str, nonce: str | None, settings: Settings | None = None, provider: Provider | None = None
) -> dict[str, Any]:
    """The claims of ``id_token`` once its signature (the provider's JWKS), issuer, audience, expiry and
    nonce are checked (OpenID Connect Core 3.1.3.7).

    Raises:
        SsoRefused: Any check fails.
    """
    settings = settings or get_settings()
    _, client_id, _ = _require(settings)
    provider = provider or discover(settings)
    try:
        response = httpx.get(provider.jwks_uri, timeout=HTTP_TIMEOUT)
        response.raise_for_status()
        keys = KeySet.import_key_set(response.json())
    except (httpx.HTTPError, ValueError, JoseError) as exc:
        raise SsoRefused("the sign-in provider's signing keys cannot be read; try again later") from exc
    try:
        token = jwt.decode(id_token, keys, algorithms=list(ID_TOKEN_ALGORITHMS))
        options: dict[str, Any] = {
            "iss": {"essential": True, "value": provider.issuer},
            "aud": {"essential": True, "value": client_id},
            "sub": {"essential": True},
            "exp": {"essential": True},
            "iat": {"essential": True},
        }
        if nonce is not None:
            options["nonce"] = {"essential": True, "value": nonce}
        jwt.JWTClaimsRegistry(leeway=60, **options).validate(token.claims)
    except (JoseError, ValueError) as exc:
        raise SsoRefused(f"the ID token failed a check ({exc}); start the sign-in again") from exc
    claims = dict(token.claims)
    audience = claims.get("aud")
    if isinstance(audience, list) and len(audience) > 1 and claims.get("azp") != client_id:
        raise SsoRefused("the ID token was issued to another client; start the sign-in again")
    return claims


def nonce_for(state_id: str, settings: Settings | None = None) -> str:
    """A nonce bound to a sign-in's state id (JupyterHub keeps only the state id in its signed cookie)."""
    key = (settings or get_settings()).get_secret_key()
    return hmac.new(key, b"tre/oidc-nonce/v1|" + state_id.encode(), hashlib.sha256).hexdigest()


def user_for_claims(session: Session, claims: dict[str, Any], settings: Settings | None = None) -> User:
    """The active tre user the verified claims name (never a new one). Audited when refused.

    ``TRE_OIDC_USER_CLAIM=email`` (the default) matches the user's email, and only if the provider says
    the address is verified; ``preferred_username`` matches the username.

    Raises:
        SsoRefused: The claims name nobody here, an unverified email, or a disabled account.
    """
    settings = settings or get_settings()
    claim = settings.oidc_user_claim
    value = claims.get(claim)
    subject = str(claims.get("sub", ""))[:200]
    user: User | None = None
    reason = ""
    if not isinstance(value, str) or not value.strip():
        reason = f"the sign-in provider did not say your {claim}; ask an administrator"
    elif claim == "email" and claims.get("email_verified") is not True:
        reason = "the sign-in provider has not verified your email address; verify it there first"
    else:
        column = User.email if claim == "email" else User.username
        user = session.scalar(select(User).where(func.lower(column) == value.strip().lower()))
        if user is None:
            reason = (
                f"there is no tre account for {value.strip()[:120]}; ask an administrator to create one "
                "(single sign-on never creates accounts)"
            )
        elif not user.is_active:
            reason, user = "your tre account is disabled; ask an administrator", None
    if user is None:
        record(
            session,
            actor=(value.strip()[:64] if isinstance(value, str) and value.strip() else "anonymous"),
            action="auth.sso",
            target_type="users",
            decision="deny",
            reasons=[reason],
            details={"issuer": str(claims.get("iss", ""))[:200], "subject": subject},
        )
        raise SsoRefused(reason)
    return user


def sign_in(session: Session, claims: dict[str, Any], settings: Settings | None = None) -> tuple[User, bool]:
    """The user verified ``claims`` name, and whether their TOTP is still needed (True unless the
    provider's amr/acr counts as the second factor or their roles need none). Audited as ``auth.sso``.

    Raises:
        SsoRefused: As :func:`user_for_claims`.
    """
    settings = settings or get_settings()
    user = user_for_claims(session, claims, settings)
    by_provider = second_factor_from_provider(claims, settings)
    needs_totp = users.totp_required(user, settings) and not by_provider
    audit(
        session,
        Actor.of(user),
        "auth.sso",
        user,
        decision="allow",
        issuer=str(claims.get("iss", ""))[:200],
        subject=str(claims.get("sub", ""))[:200],
        second_factor="provider" if by_provider else ("totp" if needs_totp else "not required"),
    )
    return user, needs_totp


def second_factor_from_provider(claims: dict[str, Any], settings: Settings | None = None) -> bool:
    """True if the provider's ``amr`` or ``acr`` is one the settings accept as a second factor."""
    settings = settings or get_settings()
    amr = claims.get("amr")
    methods = {str(m) for m in amr} if isinstance(amr, list) else set()
    if methods & set(settings.oidc_mfa_amr):
        return True
    return str(claims.get("acr", "")) in set(settings.oidc_mfa_acr) and bool(claims.get("acr"))
