"""Configuration of the local JupyterHub, built from tre's settings (``jupyterhub_config.py`` calls it).

The hub keeps its own state in ``<data dir>/hub/`` (mode 0700): its SQLite database, cookie secret,
the proxy's token and the token of the ``tre-control-plane`` service, which the control plane uses to
list and stop running servers (:func:`tre_platform.views.enforce.enforce_access`).
"""

from __future__ import annotations

import secrets
import sys
from pathlib import Path
from typing import Any

from tre_platform.hub import sandbox
from tre_platform.settings import REPO_ROOT, get_settings
from tre_platform.views.settings import get_workspace_settings
from tre_platform.views.storage import StorageMode, is_root

CONFIG_FILE = Path(__file__).with_name("jupyterhub_config.py")
CONTROL_PLANE_SERVICE = "tre-control-plane"
CULLER_SERVICE = "idle-culler"


def hub_dir() -> Path:
    """``<data dir>/hub`` (created 0700)."""
    path = get_settings().ensure_data_dir() / "hub"
    path.mkdir(mode=0o700, exist_ok=True)
    path.chmod(0o700)
    return path


def _secret_file(name: str) -> str:
    path = hub_dir() / name
    if not path.exists():
        path.touch(mode=0o600)
        path.write_text(secrets.token_hex(32))
    return path.read_text().strip()


def control_plane_token() -> str:
    """The hub API token of the ``tre-control-plane`` service (generated once, 0600)."""
    return _secret_file("control-plane.token")


def hub_api_url() -> str:
    """The hub's REST API as the control plane reaches it (through the proxy's public URL)."""
    return get_workspace_settings().hub_bind_url.rstrip("/") + "/hub/api"


def proxy_command() -> list[str]:
    return [str(REPO_ROOT / "node_modules" / ".bin" / "configurable-http-proxy")]


def configure(c: Any) -> Any:
    """Fill a JupyterHub config object ``c`` for this deployment."""
    from tre_platform.hub.auth import TreAuthenticator, configure_sso
    from tre_platform.hub.spawner import TreSpawner

    settings = get_settings()
    ws = get_workspace_settings()
    state = hub_dir()

    c.JupyterHub.authenticator_class = TreAuthenticator
    configure_sso(c)  # single sign-on instead, when TRE_OIDC_* are set
    c.JupyterHub.spawner_class = TreSpawner
    c.JupyterHub.bind_url = ws.hub_bind_url
    c.JupyterHub.hub_bind_url = f"http://127.0.0.1:{ws.hub_api_port}"
    c.JupyterHub.db_url = f"sqlite:///{state / 'jupyterhub.sqlite'}"
    c.JupyterHub.cookie_secret_file = str(state / "jupyterhub_cookie_secret")
    c.JupyterHub.pid_file = str(state / "jupyterhub.pid")
    c.JupyterHub.cleanup_servers = True
    c.ConfigurableHTTPProxy.command = proxy_command()
    c.ConfigurableHTTPProxy.api_url = f"http://127.0.0.1:{ws.proxy_api_port}"
    c.ConfigurableHTTPProxy.auth_token = _secret_file("proxy.token")
    c.ConfigurableHTTPProxy.pid_file = str(state / "proxy.pid")

    c.Spawner.default_url = "/lab"
    c.Spawner.mem_limit = ws.workspace_mem_limit
    c.Spawner.cpu_limit = ws.workspace_cpu_limit
    c.Spawner.start_timeout = 120
    c.Spawner.http_timeout = 120
    c.TreSpawner.workspace_venv = str(ws.workspace_venv)
    c.TreSpawner.tre_api_url = settings.public_url or f"http://{settings.host}:{settings.port}"
    c.TreSpawner.insecure_single_user = ws.storage_mode is StorageMode.insecure_single_user
    c.TreSpawner.sealed = ws.workspace_sealed
    c.TreSpawner.workspace_subnet = ws.workspace_subnet
    c.TreSpawner.control_plane_port = settings.port
    c.TreSpawner.package_mirror_port = ws.package_mirror_port
    c.TreSpawner.cluster_addresses = [
        a for a in (ws.workspace_spark_master, ws.workspace_dask_scheduler) if a and "://" in a
    ]
    if ws.workspace_sealed and ws.storage_mode is StorageMode.unix and is_root():
        # A hub (re)starting after a crash: remove the sandboxes of servers that are gone, and kill any
        # researcher's process that outlived its server.
        sandbox.sweep_orphan_processes()

    c.JupyterHub.services = [
        {"name": CONTROL_PLANE_SERVICE, "api_token": control_plane_token()},
        {
            "name": CULLER_SERVICE,
            "command": [
                sys.executable,
                "-m",
                "jupyterhub_idle_culler",
                f"--timeout={ws.workspace_idle_timeout}",
                "--cull-every=60",
            ],
        },
    ]
    c.JupyterHub.load_roles = [
        {
            "name": CONTROL_PLANE_SERVICE,
            "description": "the tre control plane: list servers and stop those that lost access",
            "scopes": [
                "list:users",
                "read:users",
                "read:servers",
                "admin:server_state",
                "delete:servers",
                "access:servers",
            ],
            "services": [CONTROL_PLANE_SERVICE],
        },
        {
            "name": CULLER_SERVICE,
            "description": "stop idle workspaces",
            "scopes": ["list:users", "read:users:activity", "read:servers", "delete:servers"],
            "services": [CULLER_SERVICE],
        },
    ]
    return c
