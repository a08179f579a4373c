"""Fixtures for the view tests (defined in workspace_fixtures.py, shared with tests/integration/hub)."""

from workspace_fixtures import _cheap_argon2, _kek, data_dir, wworld

__all__ = ["_cheap_argon2", "_kek", "data_dir", "wworld"]
