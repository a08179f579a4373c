"""The mirror itself: where it listens, where its wheels live, and the process ``tre up`` starts.

The mirror is pypiserver over a root-owned wheelhouse (docs/adr/0017-package-mirror.md): it serves the
files in the wheelhouse and nothing else - no fallback to PyPI, no uploads. Wheels reach the wheelhouse
only through the control plane (an administrator's approval, or the base set at install), which writes
each one under a temporary name beside it and renames it in, so the mirror never shows a partial file.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tre_platform.settings import Settings, get_settings

#: The module ``tre up`` runs as the mirror process.
SERVER_MODULE = "tre_platform.api.packages.serve"


def index_url(settings: Settings | None = None, host: str = "127.0.0.1") -> str:
    """The mirror's simple-index URL, as pip's ``--index-url`` / ``PIP_INDEX_URL`` wants it.

    ``host`` is where the caller reaches the mirror: loopback on the control plane's host; a sealed
    workspace passes its network namespace's gateway address (the port is forwarded to the mirror).

    Example:
        >>> index_url()
        'http://127.0.0.1:3141/simple/'
    """
    settings = settings or get_settings()
    return f"http://{host}:{settings.package_mirror_port}/simple/"


def wheelhouse(settings: Settings | None = None) -> Path:
    """The wheelhouse directory, created (mode 0755: world-readable, writable only by its owner)."""
    path = (settings or get_settings()).resolved_wheelhouse
    path.mkdir(parents=True, exist_ok=True)
    os.chmod(path, 0o755)  # noqa: S103 - public wheels: anyone may read, only the control plane writes
    return path


def staging_dir(settings: Settings | None = None) -> Path:
    """A private directory beside the wheelhouse (same filesystem, so a rename into it is atomic)."""
    house = wheelhouse(settings)
    path = house.parent / f".{house.name}-incoming"
    path.mkdir(mode=0o700, exist_ok=True)
    return path


def start_mirror(settings: Settings | None = None) -> subprocess.Popen[bytes]:
    """Start the mirror process (pypiserver on loopback at ``package_mirror_port``)."""
    settings = settings or get_settings()
    wheelhouse(settings)
    # A fixed argv: our interpreter running our module; the settings reach it through the environment.
    return subprocess.Popen([sys.executable, "-m", SERVER_MODULE, "--exit-with-parent"])
