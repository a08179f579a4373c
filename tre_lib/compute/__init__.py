"""Compute over a project's views: ``session()`` returns the catalogue and Spark/Dask readers.

Importing this package is cheap: Spark and Dask are imported only when asked for.
"""

from tre_lib.compute.errors import WorkspaceError
from tre_lib.compute.manifest import ColumnInfo, FileInfo, ViewManifest, read_manifest, write_manifest
from tre_lib.compute.session import DatasetInfo, Workspace, WorkspaceConfig, session, sql_name

__all__ = [
    "ColumnInfo",
    "DatasetInfo",
    "FileInfo",
    "ViewManifest",
    "Workspace",
    "WorkspaceConfig",
    "WorkspaceError",
    "read_manifest",
    "session",
    "sql_name",
    "write_manifest",
]
