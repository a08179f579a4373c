"""Credentials: argon2id password hashes, encrypted TOTP secrets, API tokens and session tokens.

Passwords are hashed with argon2id (argon2-cffi's ``PasswordHasher``, RFC 9106 defaults). Tests swap in a
cheaper hasher with :func:`use_password_hasher`; production never changes the default.

TOTP secrets are encrypted at rest with Fernet under a key derived by HKDF from the deployment secret, so a
copy of the database alone does not let anyone generate second-factor codes.

API tokens and browser-session tokens are 256-bit random strings; only their SHA-256 is stored. A fast hash
is enough here (unlike passwords) because the input has full entropy and cannot be guessed.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from collections.abc import Iterator
from contextlib import contextmanager

import pyotp
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from tre_platform.clock import clock
from tre_platform.settings import get_settings

TOKEN_PREFIX = "tre_"  # noqa: S105 - a prefix, not a secret
SESSION_PREFIX = "tres_"
MIN_PASSWORD_LENGTH = 12
MAX_PASSWORD_LENGTH = 256
TOTP_ISSUER = "tre"

_hasher = PasswordHasher()  # argon2id with the library's (RFC 9106 low-memory) defaults


def password_hasher() -> PasswordHasher:
    """The hasher in use (argon2id)."""
    return _hasher


@contextmanager
def use_password_hasher(hasher: PasswordHasher) -> Iterator[PasswordHasher]:
    """Swap the password hasher for the duration of a block (tests use cheap parameters)."""
    global _hasher
    previous = _hasher
    _hasher = hasher
    try:
        yield hasher
    finally:
        _hasher = previous


def hash_password(password: str) -> str:
    """The argon2id hash of ``password`` (PHC string format, salt included)."""
    return _hasher.hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    """True if ``password`` matches ``password_hash``; False for a mismatch or an unusable hash."""
    if not password_hash:
        # Spend comparable time so a missing account cannot be told from a wrong password by timing.
        _hasher.hash(password)
        return False
    try:
        return _hasher.verify(password_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def password_problem(password: str) -> str | None:
    """Why ``password`` is not acceptable, or None (NIST SP 800-63B: length, not composition rules)."""
    if len(password) < MIN_PASSWORD_LENGTH:
        return (
            f"a password needs at least {MIN_PASSWORD_LENGTH} characters; a passphrase of a few words works"
        )
    if len(password) > MAX_PASSWORD_LENGTH:
        return f"a password may have at most {MAX_PASSWORD_LENGTH} characters"
    return None


# TOTP ----------------------------------------------------------------------------------------------


def _fernet(info: bytes = b"tre/totp-secret/v1") -> Fernet:
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(
        get_settings().get_secret_key()
    )
    return Fernet(base64.urlsafe_b64encode(key))


def seal(data: dict[str, str], purpose: str) -> str:
    """``data`` encrypted and authenticated under a key for ``purpose`` (for a value the browser keeps but
    must neither read nor change, such as a single sign-on's state, nonce and PKCE verifier)."""
    return _fernet(f"tre/sealed/{purpose}/v1".encode()).encrypt(json.dumps(data).encode()).decode()


def unseal(token: str, purpose: str, max_age_seconds: int) -> dict[str, str] | None:
    """The data :func:`seal` sealed for ``purpose`` no longer than ``max_age_seconds`` ago, else None."""
    try:
        raw = _fernet(f"tre/sealed/{purpose}/v1".encode()).decrypt(token.encode(), ttl=max_age_seconds)
        data = json.loads(raw)
    except (InvalidToken, ValueError):
        return None
    return data if isinstance(data, dict) else None


def new_totp_secret() -> str:
    return pyotp.random_base32()


def encrypt_totp_secret(secret: str) -> str:
    return _fernet().encrypt(secret.encode()).decode()


def decrypt_totp_secret(token: str) -> str:
    try:
        return _fernet().decrypt(token.encode()).decode()
    except InvalidToken as exc:  # the deployment secret changed: the user must enrol again
        raise ValueError("the stored TOTP secret cannot be decrypted with this deployment's secret") from exc


def totp_uri(secret: str, account: str) -> str:
    """The otpauth:// URI an authenticator app scans."""
    return pyotp.TOTP(secret).provisioning_uri(name=account, issuer_name=TOTP_ISSUER)


def totp_now(secret: str) -> str:
    """The current code for ``secret`` (tests and the demo use it)."""
    return pyotp.TOTP(secret).at(clock.now())


def totp_step(secret: str, code: str) -> int | None:
    """The 30-second time step whose code ``code`` is, allowing one step of clock drift either way
    (None: not a valid code now).

    pyotp's ``verify`` only says yes or no; replay protection needs to know *which* step matched, so the
    caller can refuse a step it has already accepted (RFC 6238 section 5.2).
    """
    code = code.strip()
    if not (code.isdigit() and len(code) == 6):
        return None
    totp = pyotp.TOTP(secret)
    now = totp.timecode(clock.now())
    for step in (now - 1, now, now + 1):
        if hmac.compare_digest(totp.generate_otp(step), code):
            return step
    return None


def check_totp(secret: str, code: str) -> bool:
    """True if ``code`` is valid now, allowing one 30-second step of clock drift either way."""
    return totp_step(secret, code) is not None


# Tokens --------------------------------------------------------------------------------------------


def new_api_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def new_session_token() -> str:
    return SESSION_PREFIX + secrets.token_urlsafe(32)


def new_csrf_token() -> str:
    return secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def tokens_equal(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())
