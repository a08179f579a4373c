"""Versions of the libraries whose behaviour a disclosure-control record depends on."""

from __future__ import annotations

from importlib import metadata


def library_versions() -> dict[str, str]:
    """Installed versions of tre, pandas, numpy and scipy (and statsmodels when present)."""
    out: dict[str, str] = {}
    for name in ("tre", "pandas", "numpy", "scipy", "statsmodels"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out
