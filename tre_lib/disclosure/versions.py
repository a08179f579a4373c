"""Versions of the libraries whose behaviour a disclosure-control record depends on."""

from __future__ import annotations

from importlib import metadata


def library_versions() -> dict[str, str]:
    """Installed versions of tre, pandas, numpy, scipy and highspy (the audit's solvers), and statsmodels."""
    out: dict[str, str] = {}
    for name in ("tre", "pandas", "numpy", "scipy", "highspy", "statsmodels"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out
