"""Key management: HKDF derivation, envelope encryption of master keys, and the versioned key ring.

The key hierarchy::

    KEK (environment/file, or a KMS)            never stored next to the data
     └─ wraps master key v1, v2, ... (KeyRing)  AES-256-GCM envelopes, one JSON file per version
         ├─ derive_project_key(master, project_id, v)  -> K_project, re-keys index IDs in project views
         └─ derive_index_key(master, index_name, v)    -> K_index, the reference index's own key

Derivation ``info`` strings (UTF-8, exactly as written, no trailing newline)::

    project key:  "tre/project/{project_id}|{key_version}"   e.g. "tre/project/P-2024-017|3"
    index key:    "tre/index/{index_name}|{key_version}"     e.g. "tre/index/person|1"

``key_version`` is the decimal master-key version (an int >= 1). Because it is all digits, the text after
the last ``|`` is always the version, so two different (id, version) pairs never share an ``info`` string;
the ``tre/project/`` and ``tre/index/`` prefixes keep project keys and index keys apart even when a
project and an index share a name. HKDF is used without salt (RFC 5869 then uses a block of zeros), which is
sound because the master key is already uniformly random.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import fcntl
import hmac
import json
import logging
import os
import re
import secrets
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from hashlib import sha256
from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from tre_lib.pseudonymise.errors import (
    InvalidKeyError,
    KekConfigError,
    KeyExistsError,
    KeyNotFoundError,
    KeyRingCorruptError,
    KeyUnwrapError,
)

__all__ = [
    "KEK_ENV_VAR",
    "KEK_FILE_ENV_VAR",
    "KeyEncryptionKey",
    "KeyRing",
    "KeyVersion",
    "LocalKek",
    "MasterKeyStore",
    "derive_index_key",
    "derive_project_key",
    "encode_key",
    "generate_kek",
    "generate_master_key",
    "hkdf_sha256",
    "load_kek",
]

log = logging.getLogger(__name__)

KEK_ENV_VAR = "TRE_KEK"
KEK_FILE_ENV_VAR = "TRE_KEK_FILE"
KEY_BYTES = 32
# The smallest master key derive_* accepts: anything shorter is a mistake (a password, a test string).
_MIN_MASTER_BYTES = 16
_HKDF_MAX_LENGTH = 255 * 32


# --------------------------------------------------------------------------------------------- derivation
def hkdf_sha256(master: bytes, info: bytes, length: int = KEY_BYTES, salt: bytes | None = None) -> bytes:
    """Derive ``length`` bytes from ``master`` with HKDF-SHA256 (RFC 5869), via ``cryptography``.

    Args:
        master: Input keying material.
        info: Context string that makes the output specific to one use.
        length: Number of output bytes, 1 to 8160.
        salt: Optional salt; ``None`` means RFC 5869's default (32 zero bytes).

    Returns:
        The derived key.

    Raises:
        InvalidKeyError: ``master`` or ``info`` is not bytes, or ``length`` is out of range.

    Example:
        >>> hkdf_sha256(bytes(32), b"tre/example").hex()[:16]
        '3e64c0811a7bfd8a'
    """
    if not isinstance(master, bytes | bytearray) or not isinstance(info, bytes | bytearray):
        raise InvalidKeyError("hkdf_sha256 needs master and info as bytes; encode text with .encode('utf-8')")
    if not 1 <= length <= _HKDF_MAX_LENGTH:
        raise InvalidKeyError(f"HKDF-SHA256 output length must be 1..{_HKDF_MAX_LENGTH} bytes, got {length}")
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=salt, info=bytes(info)).derive(bytes(master))


def _check_master(master: bytes) -> None:
    if not isinstance(master, bytes | bytearray) or len(master) < _MIN_MASTER_BYTES:
        raise InvalidKeyError(
            f"the master key must be at least {_MIN_MASTER_BYTES} random bytes "
            "(normally 32, from KeyRing.get)"
        )


def _check_version(key_version: int) -> None:
    # bool is an int subclass; True would silently mean version 1.
    if isinstance(key_version, bool) or not isinstance(key_version, int) or key_version < 1:
        raise InvalidKeyError(f"key_version must be an int >= 1, got {key_version!r}")


def _check_name(kind: str, name: str) -> None:
    if not isinstance(name, str) or not name:
        raise InvalidKeyError(f"{kind} must be a non-empty string, got {name!r}")


def project_key_info(project_id: str, key_version: int) -> bytes:
    """Return the exact HKDF ``info`` for a project key: ``tre/project/{project_id}|{key_version}``."""
    _check_name("project_id", project_id)
    _check_version(key_version)
    return f"tre/project/{project_id}|{key_version}".encode()


def index_key_info(index_name: str, key_version: int) -> bytes:
    """Return the exact HKDF ``info`` for an index key: ``tre/index/{index_name}|{key_version}``."""
    _check_name("index_name", index_name)
    _check_version(key_version)
    return f"tre/index/{index_name}|{key_version}".encode()


def derive_project_key(master: bytes, project_id: str, key_version: int) -> bytes:
    """Derive a project's 32-byte HMAC key: ``HKDF(master, info="tre/project/{project_id}|{key_version}")``.

    Args:
        master: The master key of version ``key_version`` (from :meth:`KeyRing.get`).
        project_id: The project's stable identifier.
        key_version: The master-key version, recorded with each view so it can be rebuilt.

    Returns:
        32 bytes; equal inputs always give the same key, different projects unrelated keys.
    """
    _check_master(master)
    return hkdf_sha256(master, project_key_info(project_id, key_version))


def derive_index_key(master: bytes, index_name: str, key_version: int) -> bytes:
    """Derive an index's own 32-byte key: ``HKDF(master, info="tre/index/{index_name}|{key_version}")``.

    Args:
        master: The master key of version ``key_version``.
        index_name: The reference index, e.g. ``"person"`` or ``"address"``.
        key_version: The master-key version.

    Returns:
        32 bytes, unrelated to every project key.
    """
    _check_master(master)
    return hkdf_sha256(master, index_key_info(index_name, key_version))


def generate_master_key() -> bytes:
    """Return a new random 32-byte master key from the OS CSPRNG."""
    return secrets.token_bytes(KEY_BYTES)


def generate_kek() -> bytes:
    """Return a new random 32-byte key-encryption key; store it with :func:`encode_key` as ``TRE_KEK``."""
    return secrets.token_bytes(KEY_BYTES)


def encode_key(key: bytes) -> str:
    """Encode a key as standard base64 text, the form ``TRE_KEK`` and KEK files accept."""
    return base64.b64encode(key).decode("ascii")


# --------------------------------------------------------------------------------------- envelope (KEK)
@runtime_checkable
class KeyEncryptionKey(Protocol):
    """A key-encryption key (KEK) that wraps and unwraps data-encryption keys (the master keys).

    The contract, for any implementation:

    * ``key_id`` is a stable, non-secret identifier of the KEK; it is stored next to every wrapped key, so a
      ring can tell "wrong KEK" apart from "altered blob" and so :meth:`KeyRing.rewrap` is resumable.
    * ``wrap(dek, context=...)`` returns an opaque blob; ``unwrap(blob, context=...)`` returns the same
      ``dek`` only if the same KEK and the same ``context`` are used, and otherwise raises
      :class:`KeyUnwrapError`. ``context`` is authenticated, not secret (the ring binds each blob to its
      version with it, so version files cannot be swapped).
    * Neither method logs key material, and ``repr()`` never shows it.

    :class:`LocalKek` is the built-in implementation (AES-256-GCM, key from ``TRE_KEK``). A KMS plugs in by
    implementing the same three members; the key then never leaves the KMS. For example, AWS KMS with
    ``boto3`` (``EncryptionContext`` carries ``context``)::

        class AwsKmsKek:
            def __init__(self, key_arn: str, client=None):
                self.key_id = f"aws-kms:{key_arn}"
                self._arn, self._kms = key_arn, client or boto3.client("kms")

            def wrap(self, dek: bytes, *, context: bytes = b"") -> bytes:
                return self._kms.encrypt(KeyId=self._arn, Plaintext=dek,
                                         EncryptionContext={"tre": context.hex()})["CiphertextBlob"]

            def unwrap(self, blob: bytes, *, context: bytes = b"") -> bytes:
                try:
                    return self._kms.decrypt(KeyId=self._arn, CiphertextBlob=blob,
                                             EncryptionContext={"tre": context.hex()})["Plaintext"]
                except self._kms.exceptions.InvalidCiphertextException as exc:
                    raise KeyUnwrapError("AWS KMS refused the blob: wrong key or context") from exc

    HashiCorp Vault Transit with ``hvac`` is the same shape: ``wrap`` calls
    ``client.secrets.transit.encrypt_data(name=key_name, plaintext=b64(dek), context=b64(context))`` on a
    ``derived=true`` transit key and returns the ``vault:v1:...`` ciphertext as bytes; ``unwrap`` calls
    ``decrypt_data`` with the same context and base64-decodes ``plaintext``; ``key_id`` is
    ``f"vault-transit:{mount}/{key_name}"``. Vault's own key versions then rotate inside Vault, and
    ``KeyRing.rewrap`` is only needed to move between KEKs.
    """

    @property
    def key_id(self) -> str:
        """Stable, non-secret identifier of this KEK."""
        ...

    def wrap(self, dek: bytes, *, context: bytes = b"") -> bytes:
        """Encrypt ``dek`` under this KEK, authenticating ``context``; return an opaque blob."""
        ...

    def unwrap(self, blob: bytes, *, context: bytes = b"") -> bytes:
        """Decrypt a blob made by :meth:`wrap` with the same ``context``; raise KeyUnwrapError otherwise."""
        ...


class LocalKek:
    """A KEK held in process memory: AES-256-GCM with a random 96-bit nonce per wrap.

    Blob layout: ``b"\\x01" || nonce (12 bytes) || ciphertext+tag``; the associated data is
    ``b"tre/kek/v1|" + context``. The key id is ``"local:"`` + the first 8 bytes, in hex, of
    ``HMAC-SHA256(kek, "tre/kek-id")``, a check value that identifies the KEK without revealing it.

    Example:
        >>> kek = LocalKek(generate_kek())
        >>> kek.unwrap(kek.wrap(b"k" * 32)) == b"k" * 32
        True
    """

    _BLOB_VERSION = b"\x01"
    _NONCE_BYTES = 12
    __slots__ = ("_aead", "_key_id")

    def __init__(self, kek: bytes) -> None:
        if not isinstance(kek, bytes | bytearray) or len(kek) != KEY_BYTES:
            raise InvalidKeyError(
                "a local KEK must be exactly 32 bytes; make one with generate_kek() or "
                "`python -c 'import base64,os; print(base64.b64encode(os.urandom(32)).decode())'`"
            )
        self._aead = AESGCM(bytes(kek))
        self._key_id = "local:" + hmac.new(bytes(kek), b"tre/kek-id", sha256).hexdigest()[:16]

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None) -> LocalKek:
        """Build the KEK from ``TRE_KEK`` (base64 or hex) or ``TRE_KEK_FILE`` (a path) in ``environ``.

        Prefer :func:`load_kek` with values from the typed settings object; this is for scripts.
        """
        env = os.environ if environ is None else environ
        return load_kek(env.get(KEK_ENV_VAR) or None, env.get(KEK_FILE_ENV_VAR) or None)

    @property
    def key_id(self) -> str:
        """Non-secret identifier of this KEK (a truncated HMAC check value)."""
        return self._key_id

    def wrap(self, dek: bytes, *, context: bytes = b"") -> bytes:
        """Encrypt ``dek`` with AES-256-GCM under this KEK, authenticating ``context``."""
        nonce = secrets.token_bytes(self._NONCE_BYTES)
        return self._BLOB_VERSION + nonce + self._aead.encrypt(nonce, bytes(dek), b"tre/kek/v1|" + context)

    def unwrap(self, blob: bytes, *, context: bytes = b"") -> bytes:
        """Decrypt a blob made by :meth:`wrap`.

        Raises:
            KeyUnwrapError: This KEK did not wrap the blob, the context differs, or the blob was altered.
        """
        if len(blob) < 1 + self._NONCE_BYTES + 16 or blob[:1] != self._BLOB_VERSION:
            raise KeyUnwrapError("the wrapped key is not a tre LocalKek blob (unknown format or truncated)")
        nonce, body = blob[1 : 1 + self._NONCE_BYTES], blob[1 + self._NONCE_BYTES :]
        try:
            return self._aead.decrypt(nonce, body, b"tre/kek/v1|" + context)
        except InvalidTag as exc:
            raise KeyUnwrapError(
                f"the KEK {self._key_id} does not match the one that wrapped this key (or the wrapped key "
                "was altered); configure the KEK that wrapped it in TRE_KEK / TRE_KEK_FILE"
            ) from exc

    def __repr__(self) -> str:
        return f"LocalKek(key_id={self._key_id!r})"

    __str__ = __repr__

    def __reduce__(self) -> Any:
        # Refuse pickling: a pickled KEK would carry the key into Spark closures or Dask graphs.
        raise TypeError("LocalKek cannot be pickled; pass derived keys, never the KEK, to workers")


_HEX_RE = re.compile(r"[0-9a-fA-F]{64}")


def _decode_key_text(text: str, where: str) -> bytes:
    text = text.strip()
    if _HEX_RE.fullmatch(text):
        return bytes.fromhex(text)
    for altchars in (None, b"-_"):  # standard, then URL-safe base64
        try:
            raw = base64.b64decode(text.encode("ascii"), altchars=altchars, validate=True)
        except (binascii.Error, ValueError, UnicodeEncodeError):
            continue
        if len(raw) == KEY_BYTES:
            return raw
    raise KekConfigError(
        f"{where} must hold exactly 32 bytes as base64 (44 characters) or hex (64 characters); "
        "generate one with tre_lib.pseudonymise.keys.encode_key(generate_kek())"
    )


def load_kek(value: Any = None, path: str | os.PathLike[str] | None = None) -> LocalKek:
    """Load the local KEK from settings-like values: the key text itself, or a file that holds it.

    Args:
        value: The KEK as base64 or hex text (``str``, ``bytes`` of that text, or a pydantic ``SecretStr``),
            typically ``settings.tre_kek``, or the 32 raw bytes.
        path: A file holding the KEK as base64/hex text or 32 raw bytes, typically ``settings.tre_kek_file``.

    Returns:
        The :class:`LocalKek`.

    Raises:
        KekConfigError: Neither or both are given, the file is unreadable, or the key is not 32 bytes.
    """
    if hasattr(value, "get_secret_value"):
        value = value.get_secret_value()
    if value and path:
        raise KekConfigError(
            f"set only one of {KEK_ENV_VAR} and {KEK_FILE_ENV_VAR}; both are set and neither should win"
        )
    if value:
        if isinstance(value, bytes | bytearray) and len(value) == KEY_BYTES:
            return LocalKek(bytes(value))  # raw key bytes: no text encoding of 32 bytes is 32 long
        text = value.decode("ascii", "replace") if isinstance(value, bytes | bytearray) else str(value)
        return LocalKek(_decode_key_text(text, KEK_ENV_VAR))
    if path:
        try:
            raw = Path(path).read_bytes()
        except OSError as exc:
            raise KekConfigError(f"cannot read the KEK file {path} ({exc.strerror}); check the path") from exc
        if len(raw) == KEY_BYTES:
            return LocalKek(raw)
        return LocalKek(_decode_key_text(raw.decode("ascii", "replace"), f"the KEK file {path}"))
    raise KekConfigError(
        f"no key-encryption key configured: set {KEK_ENV_VAR} (32 bytes as base64 or hex) or "
        f"{KEK_FILE_ENV_VAR} (path to a file holding it)"
    )


# ------------------------------------------------------------------------------------------- key ring
Status = Literal["active", "retired"]


@dataclass(frozen=True)
class KeyVersion:
    """Metadata of one master-key version (never the key itself)."""

    version: int
    created_at: str
    kek_id: str
    status: Status


def _atomic_write(path: Path, data: bytes, *, exclusive: bool = False) -> None:
    """Write ``data`` to ``path`` atomically with mode 0600 (temp file, fsync, rename, fsync directory).

    With ``exclusive`` the final name must not exist yet; ``os.link`` gives that atomically, where
    ``os.replace`` would overwrite a version created concurrently.
    """
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        if exclusive:
            try:
                os.link(tmp, path)
            except FileExistsError as exc:
                raise KeyExistsError(
                    f"{path.name} already exists; key versions are never overwritten"
                ) from exc
            os.unlink(tmp)
        else:
            os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


class KeyRing:
    """Versioned master keys, envelope-encrypted under a KEK, one JSON file per version in a directory.

    Each file ``master-v000001.json`` (mode 0600, directory 0700) holds ``format``, ``version``,
    ``created_at`` (UTC ISO-8601), ``kek_id``, ``wrapped_key`` (base64 of the KEK's blob) and ``status``
    (``active`` or ``retired``). Exactly one version is active: new derivations use it, and retired
    versions stay readable so views built with them can be rebuilt and verified. The wrapped key is bound to
    its version (the KEK's authenticated context is ``tre/master/{version}``), so renaming or swapping files
    fails to unwrap rather than silently changing keys.

    Example:
        >>> ring = KeyRing(tmp_path / "keys", LocalKek(generate_kek()))  # doctest: +SKIP
        >>> ring.create()                                                 # doctest: +SKIP
        1
        >>> v = ring.rotate(); k = ring.project_key("P-1")                # doctest: +SKIP
    """

    _FORMAT = 1
    _NAME_RE = re.compile(r"master-v(\d{6,})\.json")

    def __init__(self, directory: str | os.PathLike[str], kek: KeyEncryptionKey) -> None:
        """Open (creating if needed, mode 0700) the key-ring directory, using ``kek`` to wrap and unwrap."""
        self._dir = Path(directory)
        self._dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._kek = kek

    def __repr__(self) -> str:
        return f"KeyRing(directory={str(self._dir)!r}, kek_id={self._kek.key_id!r})"

    __str__ = __repr__

    @property
    def directory(self) -> Path:
        """The key-ring directory."""
        return self._dir

    @property
    def kek_id(self) -> str:
        """The id of the KEK this ring wraps new keys with."""
        return self._kek.key_id

    # -- files
    def _path(self, version: int) -> Path:
        return self._dir / f"master-v{version:06d}.json"

    @contextlib.contextmanager
    def _lock(self) -> Iterator[None]:
        # One writer at a time across processes (view builders and the admin CLI may share a ring).
        fd = os.open(self._dir / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def _read(self, version: int) -> dict[str, Any]:
        path = self._path(version)
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError as exc:
            have = [v.version for v in self.versions()]
            raise KeyNotFoundError(
                f"master key version {version} is not in {self._dir} (versions present: {have or 'none'}); "
                "check the key_version recorded with the view, or restore the key-ring directory from backup"
            ) from exc
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise KeyRingCorruptError(f"{path} is not valid JSON; restore it from backup") from exc
        missing = {"version", "created_at", "kek_id", "wrapped_key", "status"} - set(record)
        if missing or record.get("version") != version:
            raise KeyRingCorruptError(
                f"{path} is missing {sorted(missing)} or names another version; restore it from backup"
            )
        return dict(record)

    def _write(self, record: dict[str, Any], *, exclusive: bool) -> None:
        data = json.dumps(record, indent=2, sort_keys=True).encode("utf-8") + b"\n"
        _atomic_write(self._path(int(record["version"])), data, exclusive=exclusive)

    @staticmethod
    def _context(version: int) -> bytes:
        return f"tre/master/{version}".encode()

    # -- queries
    def versions(self) -> list[KeyVersion]:
        """Return the metadata of every version, oldest first."""
        out = []
        for path in sorted(self._dir.glob("master-v*.json")):
            match = self._NAME_RE.fullmatch(path.name)
            if match:
                rec = self._read(int(match.group(1)))
                out.append(KeyVersion(rec["version"], rec["created_at"], rec["kek_id"], rec["status"]))
        return out

    def active_version(self) -> int:
        """Return the active version, the one new derivations must use.

        Raises:
            KeyNotFoundError: The ring is empty (run :meth:`create` first).
        """
        active = [v.version for v in self.versions() if v.status == "active"]
        if not active:
            raise KeyNotFoundError(f"no active master key in {self._dir}; create one with KeyRing.create()")
        # Only one is active after create/rotate; should a crash leave two, the newest wins.
        return max(active)

    def get(self, version: int) -> bytes:
        """Unwrap and return the master key of ``version`` (active or retired).

        Raises:
            KeyNotFoundError: No such version.
            KeyUnwrapError: The configured KEK is not the one that wrapped it, or the file was altered.
        """
        _check_version(version)
        rec = self._read(version)
        if rec["kek_id"] != self._kek.key_id:
            raise KeyUnwrapError(
                f"master key version {version} was wrapped by KEK {rec['kek_id']}, but the configured KEK is "
                f"{self._kek.key_id}: the KEK does not match the one that wrapped the key. Configure the KEK "
                "that wrapped it (TRE_KEK / TRE_KEK_FILE); if a rewrap was interrupted, finish it: rewrap()"
            )
        try:
            blob = base64.b64decode(rec["wrapped_key"], validate=True)
        except (binascii.Error, ValueError) as exc:
            raise KeyRingCorruptError(f"wrapped_key of version {version} is not base64") from exc
        return self._kek.unwrap(blob, context=self._context(version))

    def project_key(self, project_id: str, key_version: int | None = None) -> bytes:
        """Derive a project's key from master ``key_version`` (default: the active version)."""
        version = self.active_version() if key_version is None else key_version
        return derive_project_key(self.get(version), project_id, version)

    def index_key(self, index_name: str, key_version: int | None = None) -> bytes:
        """Derive a reference index's key from master ``key_version`` (default: the active version)."""
        version = self.active_version() if key_version is None else key_version
        return derive_index_key(self.get(version), index_name, version)

    # -- changes
    def create(self, version: int | None = None) -> int:
        """Create master key ``version`` (default: newest + 1), make it active and retire the others.

        Returns:
            The version created.

        Raises:
            KeyExistsError: ``version`` exists already.
        """
        with self._lock():
            existing = self.versions()
            new = (max((v.version for v in existing), default=0) + 1) if version is None else version
            _check_version(new)
            master = generate_master_key()
            record = {
                "format": self._FORMAT,
                "version": new,
                "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
                "kek_id": self._kek.key_id,
                "wrapped_key": base64.b64encode(self._kek.wrap(master, context=self._context(new))).decode(),
                "status": "active",
            }
            self._write(record, exclusive=True)
            for old in existing:
                if old.status == "active":
                    rec = self._read(old.version)
                    rec["status"] = "retired"
                    rec["retired_at"] = datetime.now(UTC).isoformat(timespec="seconds")
                    self._write(rec, exclusive=False)
        log.info("created master key version %d in %s (kek %s)", new, self._dir, self._kek.key_id)
        return new

    def rotate(self) -> int:
        """Create the next version and make it active; older ones stay readable. Returns the new version."""
        return self.create()

    def rewrap(self, new_kek: KeyEncryptionKey) -> int:
        """Re-encrypt every version under ``new_kek`` and switch this ring to it.

        All keys are unwrapped before anything is written, so a wrong current KEK changes nothing. Files
        already wrapped by ``new_kek`` are skipped, so an interrupted rewrap is finished by running it again.

        Returns:
            The number of versions re-encrypted.
        """
        with self._lock():
            pending: list[tuple[dict[str, Any], bytes]] = []
            for meta in self.versions():
                if meta.kek_id == new_kek.key_id:
                    continue
                pending.append((self._read(meta.version), self.get(meta.version)))
            for rec, master in pending:
                version = int(rec["version"])
                rec["wrapped_key"] = base64.b64encode(
                    new_kek.wrap(master, context=self._context(version))
                ).decode()
                rec["kek_id"] = new_kek.key_id
                self._write(rec, exclusive=False)
            self._kek = new_kek
        log.info("rewrapped %d master key versions under kek %s", len(pending), new_kek.key_id)
        return len(pending)


MasterKeyStore = KeyRing
