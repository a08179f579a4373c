"""Typed errors of the pseudonymisation and key-management library.

Every message says what went wrong and what to do next. No message ever contains key material.
"""

from __future__ import annotations


class PseudonymiseError(Exception):
    """Base class of every error raised by :mod:`tre_lib.pseudonymise`."""


class InvalidKeyError(PseudonymiseError, ValueError):
    """A key given to HMAC, HKDF or a KEK has the wrong type or length."""


class UnsupportedValueError(PseudonymiseError, TypeError):
    """A value (or column type) that cannot be pseudonymised unambiguously, such as a float."""


class KeyManagementError(PseudonymiseError):
    """Base class of key-ring and envelope-encryption errors."""


class KekConfigError(KeyManagementError, ValueError):
    """The key-encryption key (KEK) is missing or not 32 bytes of base64 or hex."""


class KeyNotFoundError(KeyManagementError, LookupError):
    """The requested master-key version (or any active version) does not exist in the key ring."""


class KeyExistsError(KeyManagementError):
    """A master-key version that is being created already exists; versions are never overwritten."""


class KeyUnwrapError(KeyManagementError):
    """A wrapped key could not be decrypted: the KEK does not match, or the blob was altered."""


class KeyRingCorruptError(KeyManagementError):
    """A key-ring file is not valid JSON or lacks a required field."""
