"""Hub tests reuse the workspace world of tests/integration/views (same fixtures, same clean-up) and the
deployments of hub_fixtures.py (a hub on the test's database; the demo world with both servers running)."""

from __future__ import annotations

from hub_fixtures import demo_deployment, hub
from workspace_fixtures import _cheap_argon2, _kek, data_dir, wworld

__all__ = ["_cheap_argon2", "_kek", "data_dir", "demo_deployment", "hub", "wworld"]
