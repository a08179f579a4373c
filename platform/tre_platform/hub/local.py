"""A whole local deployment on loopback, and a researcher's browser driving it over HTTP.

:class:`LocalDeployment` starts the control plane (uvicorn) and JupyterHub as child processes on free
loopback ports, on one data directory and database, exactly as ``tre up`` runs them, and stops them again.
:class:`HubResearcher` signs in to the hub through its login form (password, then TOTP), chooses a project
on the spawn form, waits for the JupyterLab server and runs code in a kernel of that server. The
end-to-end tests, the browser test and ``bench/workspace_bench.py`` share them, so every measurement and
every check goes through the same real hub, proxy, spawner and single-user server.

Needs root for the spawner (the servers run as the researchers' Unix users), the workspace environment
(``make setup``) and configurable-http-proxy (``npm install``).
"""

from __future__ import annotations

import contextlib
import html
import json
import os
import re
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

import httpx

from tre_platform.errors import TreError

T = TypeVar("T")


class DeploymentError(TreError):
    """A process of the local deployment died or did not become ready."""

    status_code = 500
    code = "deployment_error"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def control_plane_command(port: int) -> list[str]:
    """The command that serves the control plane (UI + API) on a loopback port with this interpreter."""
    return [
        sys.executable,
        "-m",
        "uvicorn",
        "tre_platform.api.app:create_app",
        "--factory",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--log-level",
        "warning",
    ]


def wait_for(
    what: str,
    check: Callable[[], T | None],
    *,
    timeout: float = 300.0,
    pause: float = 0.2,
    alive: Callable[[], str | None] = lambda: None,
) -> T:
    """Poll ``check`` until it returns something truthy.

    ``alive`` returns a description of a dead process (then this fails at once, with it) or None. The
    timeout only turns a hang into a clear error; it is not a speed limit.
    """
    deadline = time.monotonic() + timeout
    while True:
        dead = alive()
        if dead:
            raise DeploymentError(f"{dead} while waiting for {what}")
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise DeploymentError(f"gave up waiting for {what} after {timeout:.0f} s")
        time.sleep(pause)


def answers(url: str) -> bool:
    """Whether ``url`` answers 200 now (a connection error or timeout is a no)."""
    try:
        return httpx.get(url, timeout=5, trust_env=False).status_code == 200
    except httpx.HTTPError:
        return False


@contextlib.contextmanager
def serve_control_plane(env: Mapping[str, str], log: Path) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """The control plane alone, on a free loopback port, with ``env`` as its whole environment.

    Yields its URL (once ``/healthz`` answers) and its process, and stops it afterwards; output goes to
    ``log``. A process that dies while starting fails at once with the end of its log.
    """
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("wb") as out:
        process = subprocess.Popen(
            control_plane_command(port), env=dict(env), stdout=out, stderr=subprocess.STDOUT
        )

    def dead() -> str | None:
        if process.poll() is None:
            return None
        return f"the control plane exited ({process.returncode}):\n{log.read_text(errors='replace')[-4000:]}"

    try:
        wait_for("the control plane", lambda: answers(f"{url}/healthz"), alive=dead)
        yield url, process
    finally:
        _terminate(process)


def _terminate(process: subprocess.Popen[bytes], timeout: float = 60) -> None:
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@dataclass
class LocalDeployment:
    """The control plane and JupyterHub running on loopback (see :meth:`start`)."""

    data_dir: Path
    env: dict[str, str]
    control_plane_url: str
    hub_url: str
    service_token: str
    logs: dict[str, Path] = field(default_factory=dict)
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    @classmethod
    @contextlib.contextmanager
    def start(cls, env: Mapping[str, str], *, log_dir: Path) -> Iterator[LocalDeployment]:
        """Start both servers with ``env`` (``TRE_DATA_DIR``, ``TRE_DATABASE_URL``, ``TRE_KEK`` ...).

        The ports are chosen here. The database must be migrated (and seeded) already. ``env`` must also
        be this process's settings when :attr:`service_token` is read (it lives in the hub's state dir).
        """
        from tre_platform.hub.config import CONFIG_FILE, control_plane_token, hub_dir

        port, hub_port = free_port(), free_port()
        full = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
        full.update(env)
        full.update(
            {
                "TRE_HOST": "127.0.0.1",
                "TRE_PORT": str(port),
                "TRE_PUBLIC_URL": f"http://127.0.0.1:{port}",
                "TRE_HUB_URL": f"http://127.0.0.1:{hub_port}",
                "TRE_HUB_BIND_URL": f"http://127.0.0.1:{hub_port}",
                "TRE_HUB_API_PORT": str(free_port()),
                "TRE_PROXY_API_PORT": str(free_port()),
            }
        )
        deployment = cls(
            data_dir=Path(full["TRE_DATA_DIR"]),
            env=full,
            control_plane_url=f"http://127.0.0.1:{port}",
            hub_url=f"http://127.0.0.1:{hub_port}",
            service_token="",
        )
        state = _with_env(full, hub_dir)
        deployment.service_token = _with_env(full, control_plane_token)
        log_dir.mkdir(parents=True, exist_ok=True)
        commands = {
            "control plane": (control_plane_command(port), None),
            "hub": ([sys.executable, "-m", "jupyterhub", "-f", str(CONFIG_FILE)], state),
        }
        try:
            for name, (argv, cwd) in commands.items():
                log = log_dir / f"{name.replace(' ', '-')}-{uuid.uuid4().hex[:6]}.log"
                deployment.logs[name] = log
                with log.open("wb") as out:
                    deployment.processes[name] = subprocess.Popen(
                        argv, env=full, cwd=cwd, stdout=out, stderr=subprocess.STDOUT
                    )
            wait_for(
                "the control plane",
                lambda: answers(f"{deployment.control_plane_url}/healthz"),
                alive=deployment.dead,
            )
            wait_for("the hub", lambda: answers(f"{deployment.hub_url}/hub/health"), alive=deployment.dead)
            yield deployment
        finally:
            deployment.stop()

    def dead(self) -> str | None:
        """A description of the first server process that exited, with the end of its log, or None."""
        for name, proc in self.processes.items():
            if proc.poll() is not None:
                return f"the {name} exited ({proc.returncode}):\n{self.log_tail(name)}"
        return None

    def log_tail(self, name: str, chars: int = 4000) -> str:
        path = self.logs.get(name)
        return path.read_text(errors="replace")[-chars:] if path and path.exists() else ""

    def stop(self) -> None:
        # The hub first: it stops the single-user servers it started (cleanup_servers).
        for name in ("hub", "control plane"):
            proc = self.processes.get(name)
            if proc is not None:
                _terminate(proc)

    def hub_api(self) -> httpx.Client:
        """A client of the hub's REST API with the control plane's service token."""
        return httpx.Client(
            base_url=f"{self.hub_url}/hub/api",
            headers={"Authorization": f"token {self.service_token}"},
            timeout=60,
            trust_env=False,
        )


def _with_env(env: Mapping[str, str], fn: Callable[[], T]) -> T:
    """Call ``fn`` with this process's settings pointed at ``env`` (restored afterwards)."""
    from tre_platform.settings import get_settings
    from tre_platform.views.settings import get_workspace_settings

    names = [k for k in env if k.startswith("TRE_")]
    saved = {k: os.environ.get(k) for k in names}
    os.environ.update({k: env[k] for k in names})
    get_settings.cache_clear()
    get_workspace_settings.cache_clear()
    try:
        return fn()
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        get_settings.cache_clear()
        get_workspace_settings.cache_clear()


_OPTION = re.compile(r'<option value="([^"]+)"')


class HubResearcher:
    """A researcher's browser, over HTTP: sign in, choose a project, wait for JupyterLab, run code.

    Example:
        >>> with LocalDeployment.start(env, log_dir=logs) as d:                  # doctest: +SKIP
        ...     alice = HubResearcher(d, "alice")
        ...     alice.sign_in(password, otp="123456")
        ...     alice.start_workspace("P-2026-ABC123")
        ...     alice.wait_until_lab_ready()
        ...     alice.run("print(1 + 1)")
        '2\\n'
    """

    def __init__(self, deployment: LocalDeployment, username: str) -> None:
        self.deployment = deployment
        self.username = username
        self.browser = httpx.Client(
            base_url=deployment.hub_url, follow_redirects=True, timeout=120, trust_env=False
        )
        self._kernel: ServerKernel | None = None

    def close(self) -> None:
        self.browser.close()

    def __enter__(self) -> HubResearcher:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def _xsrf(self) -> str:
        return str(self.browser.cookies.get("_xsrf", path="/hub/") or "")

    def sign_in(self, password: str, *, otp: str = "") -> None:
        """Fill the hub's login form; raises :class:`DeploymentError` with the hub's message if refused."""
        self.browser.get("/hub/login")
        response = self.browser.post(
            "/hub/login",
            data={"username": self.username, "password": password, "otp": otp, "_xsrf": self._xsrf()},
        )
        if response.status_code != 200 or "/hub/login" in str(response.url):
            raise DeploymentError(f"the hub refused {self.username}'s sign-in ({response.status_code})")

    def projects_offered(self) -> list[str]:
        """The project codes the spawn form lists."""
        form = self.browser.get("/hub/spawn")
        return [html.unescape(code) for code in _OPTION.findall(form.text)]

    def start_workspace(self, project: str) -> httpx.Response:
        """Submit the spawn form for ``project`` (the hub answers at once; the server starts behind it)."""
        self.browser.get("/hub/spawn")
        return self.browser.post(
            f"/hub/spawn/{quote(self.username)}", data={"project": project, "_xsrf": self._xsrf()}
        )

    def server(self) -> dict[str, Any] | None:
        """The hub's record of this researcher's default server (None when there is none)."""
        with self.deployment.hub_api() as api:
            response = api.get(f"/users/{quote(self.username)}")
            response.raise_for_status()
            server: dict[str, Any] | None = (response.json().get("servers") or {}).get("")
            return server

    def wait_until_lab_ready(self, *, pause: float = 0.1) -> dict[str, Any]:
        """Wait until the hub reports the server ready and JupyterLab's page is served to this browser."""

        def ready() -> dict[str, Any] | None:
            server = self.server()
            if server is None:
                raise DeploymentError(
                    f"the spawn of {self.username}'s server failed:\n{self.deployment.log_tail('hub')}"
                )
            return server if server.get("ready") else None

        server = wait_for("the single-user server", ready, pause=pause, alive=self.deployment.dead)
        lab = self.browser.get(f"/user/{quote(self.username)}/lab")
        if lab.status_code != 200 or "jupyter-config-data" not in lab.text:
            raise DeploymentError(f"JupyterLab did not open ({lab.status_code} at {lab.url})")
        return server

    def server_environment(self) -> dict[str, str]:
        """The environment the spawner gave the server process (read from /proc: needs root)."""
        server = self.server()
        if server is None:
            raise DeploymentError(f"{self.username} has no server")
        pid = int(server["state"]["pid"])
        raw = Path(f"/proc/{pid}/environ").read_text()
        return dict(item.split("=", 1) for item in raw.split("\0") if "=" in item)

    def stop_workspace(self) -> None:
        with self.deployment.hub_api() as api:
            api.delete(f"/users/{quote(self.username)}/server")
        wait_for("the server to stop", lambda: self.server() is None, alive=self.deployment.dead)

    # Code in a kernel of the single-user server ----------------------------------------------------------

    def kernel(self) -> ServerKernel:
        """The kernel this researcher's code runs in (started on first use, through the hub's proxy)."""
        if self._kernel is None:
            self._kernel = ServerKernel(
                f"{self.deployment.hub_url}/user/{quote(self.username)}", self.deployment.service_token
            )
        return self._kernel

    def new_kernel(self) -> ServerKernel:
        """Forget the current kernel; the next :meth:`run` starts a fresh one."""
        self._kernel = None
        return self.kernel()

    def run(self, code: str, *, timeout: float = 600.0) -> str:
        """Execute ``code`` in this researcher's kernel; return what it printed (:meth:`ServerKernel.run`)."""
        return self.kernel().run(code, timeout=timeout)


class ServerKernel:
    """A kernel of a Jupyter server (behind the hub or not), driven over the server's REST and websocket API.

    Args:
        server_url: the server's base URL, e.g. ``http://127.0.0.1:8081/user/alice``.
        token: a token the server accepts (the hub's service token with ``access:servers``, or the
            server's own token).
    """

    def __init__(self, server_url: str, token: str) -> None:
        self.server_url = server_url.rstrip("/")
        self.token = token
        self.kernel_id: str | None = None

    def start(self) -> str:
        if self.kernel_id is None:
            with httpx.Client(
                headers={"Authorization": f"token {self.token}"}, timeout=120, trust_env=False
            ) as api:
                response = api.post(f"{self.server_url}/api/kernels", json={"name": "python3"})
                if response.status_code != 201:
                    raise DeploymentError(f"the server did not start a kernel ({response.status_code})")
                self.kernel_id = str(response.json()["id"])
        return self.kernel_id

    def run(self, code: str, *, timeout: float = 600.0) -> str:
        """Execute ``code`` (starting the kernel on first use); return what it printed to stdout.

        Raises:
            DeploymentError: the code raised (the message holds the exception and its traceback), or the
                server is gone.
        """
        # Why our own client: nbclient and jupyter_client drive kernels through local ZeroMQ sockets;
        # a kernel of a server behind the hub is reached as JupyterLab reaches it, over the server's
        # kernel websocket, speaking the Jupyter messaging protocol (JSON frames, one per message).
        from websockets.exceptions import WebSocketException
        from websockets.sync.client import connect

        try:
            kernel = self.start()
        except httpx.HTTPError as exc:
            raise DeploymentError(f"the server at {self.server_url} is not reachable ({exc})") from exc
        ws_url = self.server_url.replace("http://", "ws://", 1)
        msg_id = uuid.uuid4().hex
        request = {
            "header": {
                "msg_id": msg_id,
                "msg_type": "execute_request",
                "username": "tre",
                "session": uuid.uuid4().hex,
                "version": "5.3",
                "date": "",
            },
            "parent_header": {},
            "metadata": {},
            "content": {
                "code": code,
                "silent": False,
                "store_history": False,
                "user_expressions": {},
                "allow_stdin": False,
                "stop_on_error": True,
            },
            "channel": "shell",
            "buffers": [],
        }
        printed: list[str] = []
        error: list[str] = []
        try:
            with connect(
                f"{ws_url}/api/kernels/{kernel}/channels",
                additional_headers={"Authorization": f"token {self.token}"},
                open_timeout=60,
                max_size=None,
            ) as ws:
                ws.send(json.dumps(request))
                deadline = time.monotonic() + timeout
                # Done when both the shell reply and iopub's "idle" for this request have arrived: the
                # two channels are independent, so the reply may overtake the output.
                replied = idle = False
                while not (replied and idle):
                    message = json.loads(ws.recv(timeout=max(1.0, deadline - time.monotonic())))
                    if message.get("parent_header", {}).get("msg_id") != msg_id:
                        continue
                    kind = message["header"]["msg_type"]
                    content = message.get("content", {})
                    if kind == "stream" and content.get("name") == "stdout":
                        printed.append(content.get("text", ""))
                    elif kind == "error":
                        error.append(f"{content.get('ename')}: {content.get('evalue')}")
                        error.extend(_ANSI.sub("", line) for line in content.get("traceback", []))
                    elif kind == "status" and content.get("execution_state") == "idle":
                        idle = True
                    elif kind == "execute_reply":
                        replied = True
                        if content.get("status") != "ok" and not error:
                            error.append(f"{content.get('ename')}: {content.get('evalue')}")
        except (OSError, TimeoutError, WebSocketException) as exc:
            raise DeploymentError(f"lost the kernel at {self.server_url} ({exc})") from exc
        if error:
            raise DeploymentError("the code failed in the kernel:\n" + "\n".join(error))
        return "".join(printed)


_ANSI = re.compile(r"\x1b\[[0-9;]*m")
