"""The workspace spawner: one server per researcher and project, as the researcher's own Unix user.

* The options form lists only the projects the policy engine allows for ``spawn_workspace`` now.
* :func:`tre_pre_spawn_hook` asks the engine again (audited), prepares the Unix account and the
  project's views, and sets the environment ``tre_lib.session()`` reads: ``TRE_PROJECT``,
  ``TRE_VIEWS_DIR`` (that project's views only), ``TRE_API_URL`` with a scoped ``TRE_API_TOKEN``, and
  Spark/Dask settings.
* The server runs the workspace environment's ``jupyterhub-singleuser`` (Debian's python3.11, outside
  root's home) with the researcher's uid, their own group and the project's group only - not every
  group the user is in, so a researcher in two projects cannot reach one project's views from the
  other's workspace.

Resource limits: ``LocalProcessSpawner`` cannot enforce ``mem_limit``/``cpu_limit`` (JupyterHub only
passes them on as ``MEM_LIMIT``/``CPU_LIMIT``). This spawner adds what a process can enforce on itself:
``RLIMIT_AS`` (address space, ``address_space_factor`` x ``mem_limit``, generous because the JVM and
Python reserve far more address space than they use), ``RLIMIT_NPROC`` and a private umask; Spark and Dask
inside the workspace size themselves from ``MEM_LIMIT``/``CPU_LIMIT``. Hard memory and CPU limits need
cgroups: on Kubernetes (KubeSpawner) they are real, see deploy/kubernetes.

Sealing (``sealed``, on by default; docs/adr/0012-sealed-workspaces.md): before the server starts, the
spawner makes its sandbox (:mod:`tre_platform.hub.sandbox`: network namespace with nftables rules, cgroup,
private ``/tmp``) and the researcher's home in this project (:mod:`tre_platform.hub.folders`); the server's
process joins them before it drops root, listens on its namespace's own address, and reaches the hub API,
the control plane and the package mirror only through its gateway. Stopping the server kills everything
in its cgroup and removes the sandbox.
"""

from __future__ import annotations

import asyncio
import contextlib
import grp
import html
import os
import pwd
import resource
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from jupyterhub.spawner import LocalProcessSpawner
from tornado import web
from traitlets import Bool, Float, Integer, List, Unicode, default

from tre_platform.errors import TreError
from tre_platform.hub import folders, sandbox, workspace
from tre_platform.views import storage
from tre_platform.views.storage import INSECURE_BANNER


async def tre_pre_spawn_hook(spawner: TreSpawner) -> None:
    """Ask the policy engine again and point the server at only the chosen project's views."""
    project = str((spawner.user_options or {}).get("project", "")).strip()
    if not project:
        raise web.HTTPError(400, "choose a project to start a workspace for")
    try:
        plan = await asyncio.to_thread(
            workspace.plan_workspace, spawner.user.name, project, api_url=spawner.tre_api_url or None
        )
    except TreError as exc:
        spawner.log.warning("workspace for %s in %s refused: %s", spawner.user.name, project, exc.message)
        raise web.HTTPError(403, exc.message) from None
    spawner.tre_plan = plan
    spawner.log.info(
        "workspace for %s in %s allowed: %s", plan.username, plan.project, "; ".join(plan.reasons)
    )


class TreSpawner(LocalProcessSpawner):
    """Start a JupyterLab server for one project, as the researcher's Unix user (the hub runs as root)."""

    workspace_venv = Unicode(
        "/opt/tre/workspace-venv", help="Environment with jupyterhub-singleuser, readable by researchers."
    ).tag(config=True)
    tre_api_url = Unicode("", help="Control-plane URL given to workspaces (default: settings).").tag(
        config=True
    )
    address_space_factor = Float(
        4.0, help="RLIMIT_AS = this x mem_limit (0 disables). Virtual, not resident, memory."
    ).tag(config=True)
    max_processes = Integer(1024, help="RLIMIT_NPROC of the researcher's user (0 disables).").tag(config=True)
    insecure_single_user = Bool(
        False,
        help="INSECURE: run every server as the hub's own user with no project separation (laptops only).",
    ).tag(config=True)

    ready_poll_interval = Float(
        0.1, help="Seconds between the spawner's own checks that a new server answers (see start())."
    ).tag(config=True)

    sealed = Bool(
        True, help="Run each server in its own network and mount namespace and cgroup (ADR 0012)."
    ).tag(config=True)
    workspace_subnet = Unicode("10.213.0.0/16", help="IPv4 range of the sealed servers' links.").tag(
        config=True
    )
    control_plane_port = Integer(8000, help="The control plane's port on the host's loopback.").tag(
        config=True
    )
    package_mirror_port = Integer(3141, help="The package mirror's port on the host's loopback.").tag(
        config=True
    )
    cluster_addresses = List(
        Unicode(), help="A configured cluster's addresses (spark://h:p, tcp://h:p) sealed servers may reach."
    ).tag(config=True)

    tre_plan: workspace.WorkspacePlan | None = None
    tre_sandbox: sandbox.Sandbox | None = None

    @property
    def is_sealed(self) -> bool:
        return self.sealed and not self.insecure_single_user

    async def start(self) -> tuple[str, int]:
        if self.is_sealed:
            await self._make_sandbox()
        try:
            ip, port = await super().start()
        except BaseException:
            await self._destroy_sandbox()
            raise
        if self.tre_sandbox is not None and self.pid:
            self.tre_sandbox = await asyncio.to_thread(sandbox.record_server, self.tre_sandbox, self.pid)
        # JupyterHub then waits for the server with exponential backoff (0.2 s doubling to 5 s), so a
        # server that answers after 6.5 s is noticed only at 11.2 s. Checking here with a short fixed pause
        # first makes the hub's own first check succeed. Bounded well inside start_timeout: a server still
        # not answering by then is left to the hub's own wait (and its clear timeout message).
        base = self.server.base_url if self.server is not None else "/"
        await self._wait_until_answers(f"http://{ip}:{port}{base}")
        return ip, port

    async def _make_sandbox(self) -> None:
        plan = self.tre_plan
        if plan is None:
            raise web.HTTPError(500, "the pre-spawn check did not run; no workspace is started without it")
        datasets = [p.name for p in Path(plan.views_dir).iterdir() if not p.name.startswith(".")]
        home = await asyncio.to_thread(
            folders.prepare_project_folders, plan.project, plan.unix_user, datasets
        )
        hub_port = urlsplit(self.hub.api_url).port or 80
        made = await asyncio.to_thread(
            sandbox.create_sandbox,
            unix_user=plan.unix_user,
            project=plan.project,
            subnet=self.workspace_subnet,
            host_ports=[hub_port, self.control_plane_port, self.package_mirror_port],
            remote=sandbox.cluster_endpoints(*self.cluster_addresses),
            home=home,
            # A data directory under /tmp (tests) stays as on the host: its own modes guard it.
            keep=[str(folders.project_dir(plan.project).parent.parent)],
            max_processes=self.max_processes,
        )
        self.tre_sandbox = made
        self.ip = made.address
        self.port = sandbox.SERVER_PORT

    async def _destroy_sandbox(self) -> None:
        made, self.tre_sandbox = self.tre_sandbox, None
        if made is not None:
            await asyncio.to_thread(sandbox.destroy_sandbox, made)

    async def stop(self, now: bool = False) -> None:
        """Stop the server, then kill every process left in its cgroup and remove its sandbox."""
        try:
            await super().stop(now=now)
        finally:
            await self._destroy_sandbox()

    async def _wait_until_answers(self, url: str) -> None:
        import httpx

        deadline = asyncio.get_running_loop().time() + min(self.http_timeout, self.start_timeout / 2)
        async with httpx.AsyncClient(timeout=5, trust_env=False) as client:
            while asyncio.get_running_loop().time() < deadline:
                if await self.poll() is not None:
                    return  # the server died: the hub reports it
                try:
                    response = await client.get(url)
                    if response.status_code < 500:
                        return
                except httpx.HTTPError:
                    pass
                await asyncio.sleep(self.ready_poll_interval)

    @default("pre_spawn_hook")
    def _default_pre_spawn_hook(self) -> Callable[[Any], Any]:
        return tre_pre_spawn_hook

    @default("post_stop_hook")
    def _default_post_stop_hook(self) -> Callable[[Any], Any]:
        return _post_stop

    @default("cmd")
    def _default_cmd(self) -> list[str]:
        return [os.path.join(self.workspace_venv, "bin", "jupyterhub-singleuser")]

    @default("args")
    def _default_args(self) -> list[str]:
        # JupyterLab would fetch its news feed and PyPI's latest release from the internet when it opens:
        # a workspace has no business reaching out (and locally nothing blocks egress, ADR 0005 §9).
        # The terminal runs bash without -l: a login shell's /etc/profile would reset PATH and lose the
        # workspace's python.
        return [
            "--LabApp.news_url=None",
            "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
            '--ServerApp.terminado_settings=shell_command=["/bin/bash"]',
        ]

    @default("options_form")
    def _default_options_form(self) -> Callable[[Any], Any]:
        return lambda spawner: spawner._projects_form()

    @default("env_keep")
    def _default_env_keep(self) -> list[str]:
        # Never PATH or PYTHONPATH from the hub: they point into root's environment.
        return ["LANG", "LC_ALL", "JAVA_HOME"]

    @default("disable_user_config")
    def _default_disable_user_config(self) -> bool:
        return True

    async def _projects_form(self) -> str:
        choices = await asyncio.to_thread(workspace.allowed_projects, self.user.name)
        banner = (
            f'<p class="alert alert-danger"><b>{html.escape(INSECURE_BANNER)}</b></p>'
            if self.insecure_single_user
            else ""
        )
        if not choices:
            return (
                f"{banner}<p>You have no project you may use now. A project must be approved, within its "
                "dates, list you as a member, and your accreditation must be valid. "
                "Ask your project lead or the TRE service desk.</p>"
            )
        options = "\n".join(
            f'<option value="{html.escape(c.code)}">{html.escape(c.code)}: {html.escape(c.title)}</option>'
            for c in choices
        )
        return (
            f'{banner}<label for="tre-project">Project</label>'
            f'<select class="form-control" id="tre-project" name="project" required>{options}</select>'
            "<p>Your workspace sees only this project's data.</p>"
        )

    def options_from_form(self, formdata: dict[str, list[str]]) -> dict[str, Any]:
        return {"project": (formdata.get("project") or [""])[0]}

    # Running as the researcher ---------------------------------------------------------------------

    def _unix_user(self) -> str:
        if self.tre_plan is None:
            raise web.HTTPError(500, "the pre-spawn check did not run; no workspace is started without it")
        return self.tre_plan.unix_user

    def make_preexec_fn(self, name: str) -> Callable[[], None]:
        unix = self._unix_user()
        limits = self._rlimits()
        become = None if self.insecure_single_user else self._become_researcher(unix)
        sealed = self.tre_sandbox
        home = pwd.getpwnam(unix).pw_dir
        # Sealed, a workspace's /tmp and home are its own: files may be group-readable, so the team's
        # shared folder (setgid, the project's group) works. Unsealed, /tmp is the host's: private files.
        umask = 0o007 if sealed is not None else 0o077

        def preexec() -> None:
            if sealed is not None:
                sandbox.enter_sandbox(sealed, home)
            os.umask(umask)
            for which, value in limits:
                resource.setrlimit(which, (value, value))
            if become is not None:
                become()

        return preexec

    def _become_researcher(self, unix: str) -> Callable[[], None]:
        """setgid/setgroups/setuid to the researcher with their own group and THIS project's group only.

        Not JupyterHub's ``set_user_setuid``: it grants every group the user is in, so a researcher in
        two projects would read both projects' views from either workspace (and could join them).
        """
        entry = pwd.getpwnam(unix)
        plan = self.tre_plan
        if plan is None:
            raise web.HTTPError(500, "the pre-spawn check did not run; no workspace is started without it")
        try:
            project_gid = grp.getgrnam(storage.project_group(plan.project)).gr_gid
        except KeyError:
            raise web.HTTPError(500, f"the Unix group of project {plan.project} is missing") from None
        uid, gid, home = entry.pw_uid, entry.pw_gid, entry.pw_dir
        groups = sorted({gid, project_gid})

        def become() -> None:
            os.setgid(gid)
            os.setgroups(groups)  # fails loudly (the server does not start) rather than keep root's groups
            os.setuid(uid)
            with contextlib.suppress(OSError):
                os.chdir(home)

        return become

    def _rlimits(self) -> list[tuple[int, int]]:
        limits: list[tuple[int, int]] = []
        if self.mem_limit and self.address_space_factor > 0:
            limits.append((resource.RLIMIT_AS, int(self.mem_limit * self.address_space_factor)))
        if self.max_processes > 0:
            limits.append((resource.RLIMIT_NPROC, self.max_processes))
        return limits

    def user_env(self, env: dict[str, str]) -> dict[str, str]:
        entry = pwd.getpwnam(self._unix_user())
        env["USER"] = entry.pw_name
        env["HOME"] = entry.pw_dir
        env["SHELL"] = entry.pw_shell or "/bin/bash"
        return env

    def get_env(self) -> dict[str, str]:
        env = super().get_env()
        bin_dir = os.path.join(self.workspace_venv, "bin")
        env["PATH"] = f"{bin_dir}:/usr/local/bin:/usr/bin:/bin"
        env["VIRTUAL_ENV"] = self.workspace_venv
        if self.tre_plan is not None:
            env.update(self.tre_plan.env)
        made = self.tre_sandbox
        if made is not None:
            # Every address of the host the workspace uses is its gateway (see sandbox.rewrite_loopback_url).
            env["TRE_API_URL"] = f"http://127.0.0.1:{self.control_plane_port}"
            env.setdefault("PIP_INDEX_URL", f"http://127.0.0.1:{self.package_mirror_port}/simple/")
            for name in ("JUPYTERHUB_API_URL", "JUPYTERHUB_ACTIVITY_URL", "TRE_API_URL", "PIP_INDEX_URL"):
                if name in env:
                    env[name] = sandbox.rewrite_loopback_url(env[name], made)
            env["PIP_TRUSTED_HOST"] = made.gateway
            env["TRE_SHARED_DIR"] = str(folders.shared_folder(made.project))
        return env

    def get_state(self) -> dict[str, Any]:
        state = super().get_state()
        if self.tre_plan is not None:
            state["tre_project"] = self.tre_plan.project
            state["tre_unix_user"] = self.tre_plan.unix_user
            state["tre_token_id"] = self.tre_plan.token_id
        if self.tre_sandbox is not None:
            state["tre_sandbox"] = self.tre_sandbox.to_json()
        return state

    def load_state(self, state: dict[str, Any]) -> None:
        super().load_state(state)
        if state.get("tre_unix_user"):
            self.tre_plan = workspace.WorkspacePlan(
                username=self.user.name,
                unix_user=state["tre_unix_user"],
                project=state.get("tre_project", ""),
                views_dir="",
                token_id=state.get("tre_token_id", ""),
            )
        if state.get("tre_sandbox"):
            self.tre_sandbox = sandbox.Sandbox.from_json(state["tre_sandbox"])

    def clear_state(self) -> None:
        super().clear_state()
        # The plan (and its token id) is needed by the post-stop hook; it is replaced at the next spawn.


async def _post_stop(spawner: TreSpawner) -> None:
    await spawner._destroy_sandbox()  # a server that died by itself is stopped without stop()
    plan = spawner.tre_plan
    if plan is not None and plan.token_id:
        # Off the hub's event loop: the revocation waits for the control plane's database locks, and the
        # control plane may be the one stopping this server (enforce_access) inside its own transaction.
        await asyncio.to_thread(workspace.revoke_workspace_token, plan.username, plan.token_id)
