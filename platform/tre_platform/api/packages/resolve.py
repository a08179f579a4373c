"""Control-plane side package work with pip: resolve a request's dependency tree, fetch approved wheels.

Nothing here runs in a workspace. pip runs as a subprocess of the control plane with a fixed argv (never a
shell); every name and version reaching it has been validated (:func:`check_name`, :func:`check_version`),
so neither can be read as an option. Only wheels are considered (``--only-binary :all:``): a wheel installs
without running any of its code, an sdist's build would run arbitrary code in the workspace.
"""

from __future__ import annotations

import email.parser
import hashlib
import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import urllib.parse
import zipfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from packaging.markers import default_environment
from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from tre_platform.errors import Conflict, InvalidInput

#: PEP 508 project names (letters, digits, '.', '_', '-'; starting and ending with a letter or digit).
NAME_RE = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9._-]{0,98}[A-Za-z0-9])?$")
MAX_VERSION_LENGTH = 64
#: Longest line of pip's error output quoted back to a user.
MAX_PIP_MESSAGE = 300


class ResolveError(InvalidInput):
    """pip could not resolve or fetch what was asked (no such package, version, or wheel)."""


@dataclass(frozen=True)
class Wheel:
    """One wheel of a dependency tree: what the administrator sees and what approval fetches."""

    name: str
    version: str
    filename: str
    url: str
    sha256: str
    licence: str
    #: Canonical names of the tree's other wheels this one requires.
    requires: list[str] = field(default_factory=list)
    #: True for the package the researcher asked for.
    requested: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Wheel:
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})


def check_name(name: str) -> str:
    """The canonical form of a valid project name, else InvalidInput.

    Example:
        >>> check_name("Rfc3339_Validator")
        'rfc3339-validator'
    """
    if not NAME_RE.fullmatch(name):
        raise InvalidInput(
            f"{name[:60]!r} is not a package name: use letters, digits, '.', '_' and '-' "
            "(at most 100 characters, starting and ending with a letter or digit)",
            field="name",
        )
    return canonicalize_name(name)


def check_version(version: str) -> str:
    """The normalised form of one exact, valid version (PEP 440), else InvalidInput."""
    if len(version) > MAX_VERSION_LENGTH:
        raise InvalidInput(
            f"a version has at most {MAX_VERSION_LENGTH} characters; give one exact version such as 1.2.3",
            field="version",
        )
    try:
        parsed = Version(version)
    except InvalidVersion:
        raise InvalidInput(
            f"{version[:40]!r} is not a version: give one exact version such as 1.2.3 (no ranges)",
            field="version",
        ) from None
    if parsed.local is not None:
        raise InvalidInput("local versions (with '+') are never on a public registry", field="version")
    return str(parsed)


def licence_of(metadata: Mapping[str, Any]) -> str:
    """The licence a package's core metadata declares: the SPDX expression, else the licence
    classifiers, else the first line of the free-text licence field (empty when none is declared)."""
    expression = str(metadata.get("license_expression") or "").strip()
    if expression:
        return expression[:300]
    classifiers = metadata.get("classifier") or []
    found = [c.split("::")[-1].strip() for c in classifiers if str(c).startswith("License ::")]
    if found:
        return "; ".join(found)[:300]
    text = str(metadata.get("license") or "").strip()
    return text.splitlines()[0][:300] if text else ""


def wheel_metadata(path: Path) -> dict[str, Any]:
    """The core metadata (``*.dist-info/METADATA``) of a wheel, as pip's report spells it."""
    with zipfile.ZipFile(path) as archive:
        names = [n for n in archive.namelist() if n.count("/") == 1 and n.endswith(".dist-info/METADATA")]
        if not names:
            raise Conflict(f"{path.name} has no METADATA: not a wheel")
        raw = archive.read(names[0]).decode("utf-8", errors="replace")
    message = email.parser.Parser().parsestr(raw, headersonly=True)
    return {
        "name": message.get("Name", ""),
        "version": message.get("Version", ""),
        "license_expression": message.get("License-Expression", ""),
        "license": message.get("License", ""),
        "classifier": message.get_all("Classifier") or [],
        "requires_dist": message.get_all("Requires-Dist") or [],
    }


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _pip_env() -> dict[str, str]:
    env = dict(os.environ)
    # The control plane's own pip constraints pin *its* environment; they do not bind a workspace's.
    env["PIP_CONSTRAINT"] = ""
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    env["PIP_NO_INPUT"] = "1"
    return env


def _pip(args: Sequence[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # a fixed interpreter and validated arguments, no shell
        [sys.executable, "-m", "pip", *args], capture_output=True, text=True, env=_pip_env(), check=False
    )


def _pip_problem(result: subprocess.CompletedProcess[str]) -> str:
    lines = [line.strip() for line in result.stderr.splitlines() if line.strip().startswith("ERROR")]
    last = lines[-1] if lines else (result.stderr.strip().splitlines() or ["pip failed"])[-1]
    return last.removeprefix("ERROR:").strip()[:MAX_PIP_MESSAGE]


def _requires(requires_dist: Iterable[str], environment: dict[str, str], present: set[str]) -> list[str]:
    names: list[str] = []
    for spec in requires_dist:
        try:
            requirement = Requirement(spec)
        except InvalidRequirement:
            continue
        if requirement.marker is not None and not requirement.marker.evaluate({**environment, "extra": ""}):
            continue
        name = canonicalize_name(requirement.name)
        if name in present and name not in names:
            names.append(name)
    return names


def resolve(name: str, version: str, work_dir: Path) -> list[Wheel]:
    """The wheels ``name==version`` needs in a fresh environment (itself first, then by name).

    Raises:
        ResolveError: no such package or version, no wheel of it (or of a dependency) for the
            workspace's Python, or the registry cannot be reached; the message quotes pip.
    """
    report = work_dir / f"report-{secrets.token_hex(4)}.json"
    result = _pip(
        [
            "install",
            "--dry-run",
            "--ignore-installed",
            "--only-binary",
            ":all:",
            "--quiet",
            "--report",
            str(report),
            f"{name}=={version}",
        ]
    )
    if result.returncode != 0 or not report.exists():
        raise ResolveError(
            f"{name}=={version} cannot be resolved to wheels on the registry: {_pip_problem(result)}",
            field="name",
        )
    data = json.loads(report.read_text())
    report.unlink()
    environment = {**default_environment(), **(data.get("environment") or {})}
    items = data.get("install") or []
    present: set[str] = {canonicalize_name(i["metadata"]["name"]) for i in items}
    wheels: list[Wheel] = []
    for item in items:
        meta = item["metadata"]
        url = str(item["download_info"]["url"])
        archive = item["download_info"].get("archive_info") or {}
        sha = str((archive.get("hashes") or {}).get("sha256") or "")
        wheels.append(
            Wheel(
                name=canonicalize_name(meta["name"]),
                version=str(meta["version"]),
                filename=urllib.parse.unquote(url.rsplit("/", 1)[-1].split("#", 1)[0]),
                url=url,
                sha256=sha,
                licence=licence_of(meta),
                requires=_requires(meta.get("requires_dist") or [], environment, present),
                requested=bool(item.get("requested")),
            )
        )
    unhashed = [w for w in wheels if not w.sha256]
    if unhashed:
        # An index that gives no hash (a plain folder of wheels): hash the files themselves, so the
        # administrator sees, and approval checks, the SHA-256 of every wheel.
        files = {p.name: p for p in download([(w.name, w.version) for w in unhashed], work_dir)}
        hashed = {w.filename: sha256_of(files[w.filename]) for w in unhashed if w.filename in files}
        if len(hashed) < len(unhashed):
            raise ResolveError(f"the registry gave no hash for a wheel of {name}=={version}", field="name")
        wheels = [w if w.sha256 else replace(w, sha256=hashed[w.filename]) for w in wheels]
    wheels.sort(key=lambda w: (not w.requested, w.name))
    return wheels


def download(pins: Sequence[tuple[str, str]], dest: Path, *, wheels_only: bool = True) -> list[Path]:
    """Download exactly the given ``(name, version)`` files (no dependencies) into ``dest``."""
    args = ["download", "--no-deps", "--quiet", "--dest", str(dest)]
    args += ["--only-binary", ":all:"] if wheels_only else ["--prefer-binary"]
    result = _pip([*args, *(f"{n}=={v}" for n, v in pins)])
    if result.returncode != 0:
        raise ResolveError(f"could not fetch {len(pins)} file(s) from the registry: {_pip_problem(result)}")
    return sorted(p for p in dest.iterdir() if p.is_file())


def publish(files: Iterable[Path], wheelhouse: Path) -> None:
    """Move fetched files into the wheelhouse, each by one atomic rename (readable by all, owned by us)."""
    for path in files:
        os.chmod(path, 0o644)
        os.replace(path, wheelhouse / path.name)


def clean(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
