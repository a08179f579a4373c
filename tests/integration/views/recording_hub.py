"""A WorkspaceControl for enforcement tests: the servers a test says are running, and which were stopped.

Named by ``TRE_WORKSPACE_CONTROL_CLASS=recording_hub:RecordingHub``, the way an operator names
JupyterHub's client. It stands in for the hub's REST API only (the real hub's stop path is proven in
tests/integration/hub); every decision, view and token under test is the real one.
"""

from __future__ import annotations

from typing import ClassVar

from tre_platform.enforcement import RunningServer


class RecordingHub:
    """Servers are (username, project) pairs shared by every instance in the process."""

    running: ClassVar[set[tuple[str, str]]] = set()
    stopped: ClassVar[list[tuple[str, str]]] = []

    @classmethod
    def from_settings(cls) -> RecordingHub:
        return cls()

    @classmethod
    def reset(cls, servers: set[tuple[str, str]]) -> None:
        cls.running = set(servers)
        cls.stopped = []

    def running_servers(self) -> list[RunningServer]:
        return [RunningServer(user, project, project, True) for user, project in sorted(self.running)]

    def stop_server(self, username: str, server_name: str = "") -> None:
        key = (username, server_name)
        if key in self.running:
            self.running.discard(key)
            self.stopped.append(key)

    def close_project(self, code: str) -> str | None:
        # Not the hub's REST API: the real close-out of the project's folders.
        from tre_platform.hub.folders import close_project_folders

        archive = close_project_folders(code)
        return str(archive) if archive is not None else None

    def close(self) -> None:
        return None
