"""Catalogue and lifecycle tests reuse the workspace world of tests/integration/views (research versions on
disk, approved projects, agreements), with views built in the single-user storage mode so no Unix users
or groups are made."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "views"))

from workspace_fixtures import _cheap_argon2, _kek, data_dir, wworld

__all__ = ["_cheap_argon2", "_kek", "data_dir", "wworld"]
