"""Workspace settings are part of the one settings object; these names are kept for the workspace code."""

from __future__ import annotations

from tre_platform.settings import Settings as WorkspaceSettings
from tre_platform.settings import get_settings as get_workspace_settings

__all__ = ["WorkspaceSettings", "get_workspace_settings"]
