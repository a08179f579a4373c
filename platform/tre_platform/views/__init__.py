"""Project views and the storage isolation that keeps each project's views to its own workspaces.

:func:`build_views` materialises a project's views as the policy engine decides; :func:`enforce_access`
re-decides everything after an agreement, accreditation or project change and stops workspaces that
lost access.
"""

from tre_platform.views.builder import (
    ViewBuildError,
    ViewBuildResult,
    ViewOutcome,
    build_views,
    list_views,
    provision_user,
    sync_project_members,
    views_dir,
)
from tre_platform.views.storage import NotRootError, StorageMode

__all__ = [
    "NotRootError",
    "StorageMode",
    "ViewBuildError",
    "ViewBuildResult",
    "ViewOutcome",
    "build_views",
    "list_views",
    "provision_user",
    "sync_project_members",
    "views_dir",
]
