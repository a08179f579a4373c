"""Settings of workspaces: storage separation, the workspace environment, the hub, resource limits.

A thin adapter beside :class:`tre_platform.settings.Settings`, with the same ``TRE_`` prefix, until these
fields are merged into the one settings object (they are read the same way, so merging changes no
variable names).
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from tre_platform.views.storage import StorageMode


class WorkspaceSettings(BaseSettings):
    """Workspace options (environment variables ``TRE_*``)."""

    model_config = SettingsConfigDict(env_prefix="TRE_", env_file=".env", extra="ignore")

    storage_mode: StorageMode = Field(
        StorageMode.unix,
        description="unix (per-project groups, needs root) | insecure-single-user (laptops, synthetic data)",
    )
    workspace_venv: Path = Field(
        Path("/opt/tre/workspace-venv"),
        description="environment the single-user servers run in (readable by researchers' Unix users)",
    )
    hub_bind_url: str = Field("http://127.0.0.1:8081", description="where JupyterHub's proxy listens")
    hub_api_port: int = Field(8082, ge=1, le=65535, description="port of the hub's own API (loopback)")
    proxy_api_port: int = Field(8083, ge=1, le=65535, description="configurable-http-proxy API port")
    workspace_mem_limit: str = Field("4G", description="memory a single-user server may use")
    workspace_cpu_limit: float = Field(2.0, gt=0, description="CPUs a single-user server may use")
    workspace_idle_timeout: int = Field(3600, ge=60, description="seconds before an idle server is culled")
    workspace_token_hours: int = Field(12, ge=1, le=168, description="lifetime of a workspace's API token")
    spark_conf_json: str = Field("", description="extra Spark conf for workspaces (JSON object)")
    workspace_dask_scheduler: str | None = Field(None, description="Dask scheduler for workspaces")
    workspace_spark_master: str | None = Field(
        None, description="Spark master for workspaces (default local[*] inside the server)"
    )


@lru_cache(maxsize=1)
def get_workspace_settings() -> WorkspaceSettings:
    """The process-wide workspace settings (tests call ``get_workspace_settings.cache_clear()``)."""
    return WorkspaceSettings()
