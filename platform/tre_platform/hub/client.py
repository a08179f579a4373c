"""The control plane's client of JupyterHub's REST API (as the ``tre-control-plane`` service).

:class:`HubClient` is the default :class:`tre_platform.enforcement.WorkspaceControl`.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import httpx

from tre_platform.enforcement import RunningServer, WorkspaceControlUnavailable

__all__ = ["HubClient", "HubUnavailable", "RunningServer"]


class HubUnavailable(WorkspaceControlUnavailable):
    """The hub's API could not be reached or refused the service token."""


class HubClient:
    """Talks to ``<hub>/hub/api`` with a service token.

    Example:
        >>> hub = HubClient.from_settings()                 # doctest: +SKIP
        >>> [s.project for s in hub.running_servers()]      # doctest: +SKIP
    """

    def __init__(self, api_url: str, token: str, *, timeout: float = 30.0) -> None:
        self.api_url = api_url.rstrip("/")
        self._client = httpx.Client(
            headers={"Authorization": f"token {token}"}, timeout=timeout, trust_env=False
        )

    @classmethod
    def from_settings(cls) -> HubClient:
        from tre_platform.hub.config import control_plane_token, hub_api_url

        return cls(hub_api_url(), control_plane_token())

    def close_project(self, code: str) -> str | None:
        """Archive and remove the project's homes and shared folder (``close_project_folders``)."""
        from tre_platform.hub.folders import close_project_folders

        archive = close_project_folders(code)
        return str(archive) if archive is not None else None

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> HubClient:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self._client.request(method, f"{self.api_url}{path}", **kwargs)
        except httpx.HTTPError as exc:
            raise HubUnavailable(
                f"JupyterHub at {self.api_url} is not reachable ({exc}); is it running?"
            ) from exc
        if response.status_code in (401, 403):
            raise HubUnavailable(
                f"JupyterHub refused the control plane's service token ({response.status_code}); restart the "
                "hub with `tre hub start` so it loads the current token"
            )
        return response

    def running_servers(self) -> list[RunningServer]:
        """Every active server, with the project it was started for."""
        response = self._request("GET", "/users", params={"state": "active"})
        response.raise_for_status()
        out: list[RunningServer] = []
        for user in response.json():
            for name, server in (user.get("servers") or {}).items():
                options = server.get("user_options") or {}
                state = server.get("state") or {}
                out.append(
                    RunningServer(
                        username=user["name"],
                        server_name=name,
                        project=str(options.get("project") or state.get("tre_project") or ""),
                        ready=bool(server.get("ready")),
                        state=state,
                    )
                )
        return out

    def stop_server(self, username: str, server_name: str = "") -> None:
        """Ask the hub to stop a server (202 while stopping, 204 when stopped)."""
        user = quote(username, safe="")
        path = (
            f"/users/{user}/servers/{quote(server_name, safe='')}" if server_name else f"/users/{user}/server"
        )
        response = self._request("DELETE", path)
        if response.status_code not in (202, 204, 400, 404):
            response.raise_for_status()

    def user(self, username: str) -> dict[str, Any]:
        response = self._request("GET", f"/users/{quote(username, safe='')}")
        response.raise_for_status()
        data: dict[str, Any] = response.json()
        return data
