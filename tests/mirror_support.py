"""Helpers for the vetted package mirror's tests: a per-run pip cache, the mirror process, and pip run in a
fresh virtualenv by a throw-away non-root Unix user (as a researcher's workspace would).

The tests need the registry (pip on the control-plane side resolves and fetches from it); the cache keeps
each run's downloads to one per file. The test package is ``rfc3339-validator`` 0.1.4 (pure Python, one
dependency: ``six``); ``tomli-w`` is the package nobody approved.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

PACKAGE = "rfc3339-validator"
VERSION = "0.1.4"
DEPENDENCY = "six"
UNAPPROVED = "tomli-w"
#: The system interpreter a researcher's fresh virtualenv is made from (readable by every user).
SYSTEM_PYTHON = "/usr/bin/python3"


@pytest.fixture(scope="session")
def pip_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """One pip cache for the run: the control plane's pip (a subprocess) reads PIP_CACHE_DIR."""
    path = tmp_path_factory.mktemp("pip-cache")
    old = os.environ.get("PIP_CACHE_DIR")
    os.environ["PIP_CACHE_DIR"] = str(path)
    yield path
    if old is None:
        os.environ.pop("PIP_CACHE_DIR", None)
    else:
        os.environ["PIP_CACHE_DIR"] = old


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def running_mirror(port: int) -> Iterator[str]:
    """Run the mirror (``python -m tre_platform.api.packages.serve``) on ``port``; yield its index URL.

    The process inherits the test's settings (TRE_DATA_DIR ...), so it serves the test's wheelhouse.
    """
    env = {**os.environ, "TRE_PACKAGE_MIRROR_PORT": str(port)}
    process = subprocess.Popen([sys.executable, "-m", "tre_platform.api.packages.serve"], env=env)
    url = f"http://127.0.0.1:{port}/simple/"
    try:
        while True:
            assert process.poll() is None, f"the mirror exited with {process.returncode}"
            try:
                if httpx.get(url).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        process.wait()


@contextlib.contextmanager
def researcher_account() -> Iterator[str]:
    """A throw-away non-root Unix user (unique to this run), removed afterwards."""
    name = f"tre-mt-{secrets.token_hex(4)}"
    subprocess.run(["useradd", "-M", "-r", "-s", "/usr/sbin/nologin", name], check=True)
    try:
        yield name
    finally:
        subprocess.run(["userdel", name], check=False)


@contextlib.contextmanager
def fresh_venv(user: str) -> Iterator[Path]:
    """A new virtualenv made by ``user`` in a folder only they own; removed afterwards."""
    home = Path(tempfile.mkdtemp(prefix="tre-mirror-venv-"))
    entry = pwd.getpwnam(user)
    os.chown(home, entry.pw_uid, entry.pw_gid)
    try:
        _as(user, home, [SYSTEM_PYTHON, "-m", "venv", str(home / "venv")], check=True)
        yield home / "venv"
    finally:
        shutil.rmtree(home, ignore_errors=True)


def _as(user: str, home: Path, argv: list[str], *, check: bool = False) -> subprocess.CompletedProcess[str]:
    # A clean environment: no pip configuration of the host (its extra indexes and wheel folders), no
    # cache, only the mirror - as in a workspace, whose PIP_INDEX_URL names the mirror.
    env = ["env", "-i", "PATH=/usr/bin:/bin", f"HOME={home}", f"PIP_CONFIG_FILE={os.devnull}"]
    return subprocess.run(
        ["runuser", "-u", user, "--", *env, *argv], capture_output=True, text=True, check=check
    )


def pip_install(user: str, venv: Path, index_url: str, requirement: str) -> subprocess.CompletedProcess[str]:
    """``pip install --no-cache-dir --index-url <mirror> requirement`` in ``venv``, as ``user``."""
    return _as(
        user,
        venv.parent,
        [
            str(venv / "bin" / "python"),
            "-m",
            "pip",
            "install",
            "--no-cache-dir",
            "--disable-pip-version-check",
            "--index-url",
            index_url,
            requirement,
        ],
    )
