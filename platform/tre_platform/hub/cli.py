"""`tre hub ...`: show the hub's configuration and start it.

The lead mounts :data:`hub_app` as ``tre hub``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
from typing import Annotated

import typer
from rich.console import Console

from tre_platform.errors import TreError

hub_app = typer.Typer(help="JupyterHub: the researchers' workspaces.", no_args_is_help=True)
console = Console()
err_console = Console(stderr=True)


def _fail(message: str) -> typer.Exit:
    err_console.print(f"[bold red]error:[/] {message}", soft_wrap=True)
    return typer.Exit(1)


def preflight() -> list[str]:
    """Problems that would stop the hub from starting workspaces (empty when ready)."""
    from tre_platform.hub.config import proxy_command
    from tre_platform.views.settings import get_workspace_settings
    from tre_platform.views.storage import StorageMode, is_root

    ws = get_workspace_settings()
    problems = []
    if ws.storage_mode is StorageMode.unix and not is_root():
        problems.append(
            "the hub must run as root to start servers as each researcher's Unix user (sudo tre hub start); "
            "TRE_STORAGE_MODE=insecure-single-user runs without root but separates NOTHING"
        )
    singleuser = ws.workspace_venv / "bin" / "jupyterhub-singleuser"
    if not os.access(singleuser, os.X_OK):
        problems.append(
            f"{singleuser} is missing: build it with deploy/local/build-workspace-venv.sh (make setup)"
        )
    proxy = proxy_command()[0]
    if not (os.access(proxy, os.X_OK) or shutil.which("configurable-http-proxy")):
        problems.append(f"{proxy} is missing: run `npm install` in the repository (make setup)")
    return problems


def stop_hub(process: subprocess.Popen[bytes], *, timeout: float = 60.0) -> None:
    """Stop a hub started by ``tre up`` and everything it started, even if it does not stop cleanly.

    SIGTERM first: JupyterHub stops its single-user servers (``cleanup_servers``; each server's whole
    cgroup is killed and its sandbox removed), its services (the idle culler) and the proxy. If it has not
    exited within ``timeout``, its whole process group (the proxy and the culler are in it) is killed.
    Then the proxy is killed by its pid file if it still runs, and any sandbox or researcher's process
    left over is swept (:func:`tre_platform.hub.sandbox.sweep_orphan_processes`).
    """
    from tre_platform.hub import sandbox
    from tre_platform.hub.config import hub_dir

    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)  # the culler or proxy, if the hub left one behind
    pid_file = hub_dir() / "proxy.pid"
    with contextlib.suppress(OSError, ValueError, ProcessLookupError):
        os.kill(int(pid_file.read_text().strip()), signal.SIGTERM)
        pid_file.unlink()
    if os.geteuid() == 0:
        for made in sandbox.registered():
            if made.hub_pid == process.pid:
                sandbox.destroy_sandbox(made)
        sandbox.sweep_orphan_processes()


@hub_app.command("config")
def config_command() -> None:
    """Show where the hub's configuration is and what it will do."""
    from tre_platform.hub.config import CONFIG_FILE, hub_api_url, hub_dir
    from tre_platform.views.settings import get_workspace_settings
    from tre_platform.views.storage import INSECURE_BANNER, StorageMode

    try:
        ws = get_workspace_settings()
        console.print(f"config file:     {CONFIG_FILE}")
        console.print(f"hub state:       {hub_dir()}")
        console.print(f"hub URL:         {ws.hub_bind_url}   (API {hub_api_url()})")
        console.print(f"workspace env:   {ws.workspace_venv}")
        console.print(f"storage mode:    {ws.storage_mode.value}")
        console.print(
            f"limits:          mem {ws.workspace_mem_limit}, cpu {ws.workspace_cpu_limit}, "
            f"idle culling after {ws.workspace_idle_timeout}s"
        )
        if ws.storage_mode is StorageMode.insecure_single_user:
            console.print(f"[bold red]{INSECURE_BANNER}[/]")
        for problem in preflight():
            console.print(f"[yellow]not ready:[/] {problem}")
    except TreError as exc:
        raise _fail(exc.message) from None


@hub_app.command("start")
def start_command(
    debug: Annotated[bool, typer.Option(help="JupyterHub debug logging")] = False,
) -> None:
    """Start JupyterHub (replaces this process; stop it with Ctrl-C)."""
    from tre_platform.hub.config import CONFIG_FILE, hub_dir

    problems = preflight()
    if problems:
        raise _fail("; ".join(problems))
    argv = [sys.executable, "-m", "jupyterhub", "-f", str(CONFIG_FILE)]
    if debug:
        argv.append("--debug")
    os.chdir(hub_dir())
    os.execv(sys.executable, argv)  # noqa: S606 - a fixed argv: our interpreter running jupyterhub
