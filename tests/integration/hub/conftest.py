"""Hub tests reuse the workspace world of tests/integration/views (same fixtures, same clean-up)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "views"))

from workspace_fixtures import _cheap_argon2, _kek, data_dir, wworld

__all__ = ["_cheap_argon2", "_kek", "data_dir", "wworld"]
