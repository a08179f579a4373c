"""Signed release bundles: a zip of the outputs, ``manifest.json`` and its Ed25519 signature.

The manifest lists every file with its SHA-256 and size, the disclosure-control records, the reviewers and
the times; ``manifest.sig`` is the Ed25519 signature of the manifest's exact bytes. Anyone holding the
public key (``GET /api/v1/releases/signing-key``) can check a bundle with :func:`verify_bundle` or
``tre release verify BUNDLE``.

The signing key is generated at first use into ``<data dir>/keys/release-signing-ed25519.pem`` (mode
0600); it never leaves the control plane.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import zipfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from tre_platform.settings import Settings

BUNDLE_FORMAT = "tre.release-bundle/1"
MANIFEST = "manifest.json"
SIGNATURE = "manifest.sig"
FILES_DIR = "files/"
KEY_FILE = Path("keys") / "release-signing-ed25519.pem"


class BundleError(Exception):
    """A bundle cannot be built or read."""


def signing_key(settings: Settings) -> Ed25519PrivateKey:
    """The control plane's release-signing key, generated on first use (mode 0600, never overwritten)."""
    path = settings.ensure_data_dir() / KEY_FILE
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        pem = Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        try:
            # O_EXCL: two processes starting at once must not each create (and sign with) their own key.
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass
        else:
            with os.fdopen(fd, "wb") as handle:
                handle.write(pem)
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise BundleError(f"{path} does not hold an Ed25519 private key; move it aside to generate one")
    return key


def public_key_pem(key: Ed25519PrivateKey | Ed25519PublicKey) -> str:
    public = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    return public.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()


def fingerprint(key: Ed25519PrivateKey | Ed25519PublicKey) -> str:
    """SHA-256 of the raw 32-byte public key, hex: short enough to compare by eye."""
    public = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()


def load_public_key(key: Ed25519PublicKey | bytes | str) -> Ed25519PublicKey:
    """A public key from a key object, PEM text/bytes, or the raw 32 bytes."""
    if isinstance(key, Ed25519PublicKey):
        return key
    data = key.encode() if isinstance(key, str) else key
    if len(data) == 32:
        return Ed25519PublicKey.from_public_bytes(data)
    loaded = serialization.load_pem_public_key(data)
    if not isinstance(loaded, Ed25519PublicKey):
        raise BundleError("the public key is not an Ed25519 key")
    return loaded


def write_bundle(
    path: Path, manifest: Mapping[str, Any], files: Iterable[tuple[str, bytes]], key: Ed25519PrivateKey
) -> str:
    """Write the zip at ``path`` (atomically) and return its SHA-256."""
    manifest_bytes = json.dumps(manifest, indent=2, sort_keys=True).encode()
    signature = base64.b64encode(key.sign(manifest_bytes))
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o750)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as bundle:
        bundle.writestr(MANIFEST, manifest_bytes)
        bundle.writestr(SIGNATURE, signature)
        for name, content in files:
            bundle.writestr(FILES_DIR + name, content)
    os.chmod(tmp, 0o640)
    os.replace(tmp, path)
    return hashlib.sha256(path.read_bytes()).hexdigest()


@dataclass(frozen=True)
class BundleCheck:
    """The outcome of :func:`verify_bundle`: ``ok`` only if the signature and every file check out."""

    ok: bool
    problems: list[str] = field(default_factory=list)
    manifest: dict[str, Any] = field(default_factory=dict)

    def message(self) -> str:
        if self.ok:
            files = len(self.manifest.get("files", []))
            return f"bundle verified: signature valid, {files} file(s) match their SHA-256"
        return "bundle NOT verified: " + "; ".join(self.problems)


def verify_bundle(path: str | os.PathLike[str], public_key: Ed25519PublicKey | bytes | str) -> BundleCheck:
    """Check a release bundle: the manifest's signature, then each file's size and SHA-256.

    Args:
        path: the bundle (zip) file.
        public_key: the control plane's public key (object, PEM, or raw 32 bytes), e.g. from
            ``GET /api/v1/releases/signing-key``.

    Returns:
        A :class:`BundleCheck`; ``ok`` is False with the reasons when anything does not match, including
        files added to or removed from the bundle.

    Example:
        >>> check = verify_bundle("release.zip", Path("tre-release.pub").read_text())
        >>> check.ok, check.message()
    """
    key = load_public_key(public_key)
    try:
        with zipfile.ZipFile(path) as bundle:
            names = set(bundle.namelist())
            if MANIFEST not in names or SIGNATURE not in names:
                return BundleCheck(False, [f"the bundle has no {MANIFEST} or {SIGNATURE}"])
            manifest_bytes = bundle.read(MANIFEST)
            try:
                key.verify(base64.b64decode(bundle.read(SIGNATURE), validate=True), manifest_bytes)
            except (InvalidSignature, ValueError):
                return BundleCheck(False, ["the manifest's signature does not verify with this key"])
            manifest = json.loads(manifest_bytes)
            problems: list[str] = []
            listed = {FILES_DIR + f["name"]: f for f in manifest.get("files", [])}
            for member, entry in listed.items():
                if member not in names:
                    problems.append(f"{entry['name']} is listed in the manifest but missing")
                    continue
                content = bundle.read(member)
                if len(content) != entry["size"] or hashlib.sha256(content).hexdigest() != entry["sha256"]:
                    problems.append(f"{entry['name']} does not match its SHA-256 in the manifest")
            extra = sorted(names - set(listed) - {MANIFEST, SIGNATURE})
            problems.extend(f"{name} is in the bundle but not in the signed manifest" for name in extra)
    except (OSError, zipfile.BadZipFile, json.JSONDecodeError, KeyError) as exc:
        return BundleCheck(False, [f"the bundle cannot be read: {exc}"])
    return BundleCheck(not problems, problems, manifest)
