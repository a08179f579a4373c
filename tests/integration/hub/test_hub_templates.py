"""Every starter notebook runs top to bottom inside a real workspace: the demo researcher signs in to the
hub (password and TOTP), starts a server for a project holding the notebooks' datasets, and each notebook
is executed with nbclient by the researcher's Unix user, in the workspace environment, with exactly the
environment the spawner gave that server (read from the server process) - so the kernel runs as the
researcher, sees only that project's views and reaches the control plane with the workspace's token.
"""

from __future__ import annotations

import json
import pwd
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from hub_fixtures import VENV, DemoDeployment, needs_hub

from tre_platform.hub.local import HubResearcher
from tre_platform.views.storage import unix_username

RUNUSER = shutil.which("runuser") or "/usr/sbin/runuser"
NSENTER = shutil.which("nsenter") or "/usr/bin/nsenter"
TEMPLATES = Path(__file__).resolve().parents[3] / "notebooks_templates"

# Runs in the workspace's interpreter as the researcher: the notebook comes on stdin, the executed
# notebook goes to stdout, a failing cell exits 1 with nbclient's report (the cell and its traceback).
RUNNER = """
import sys, nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError
nb = nbformat.read(sys.stdin, as_version=4)
client = NotebookClient(nb, kernel_name="python3", timeout=900, resources={"metadata": {"path": sys.argv[1]}})
try:
    client.execute()
except CellExecutionError as exc:
    sys.stderr.write(str(exc))
    sys.exit(1)
nbformat.write(nb, sys.stdout)
"""


@pytest.fixture(scope="module")
def templates_workspace(demo_deployment: DemoDeployment) -> Iterator[tuple[dict[str, str], int]]:
    """alice's running server for the templates project (stopped afterwards); yields the environment the
    spawner gave it and the server's pid (its namespaces are where the notebooks run)."""
    login = demo_deployment.logins["alice"]
    with HubResearcher(demo_deployment.deployment, "alice") as alice:
        alice.sign_in(login.password, otp=login.otp())
        assert demo_deployment.templates_project in alice.projects_offered()
        alice.start_workspace(demo_deployment.templates_project)
        alice.wait_until_lab_ready()
        server = alice.server()
        assert server is not None
        yield alice.server_environment(), int(server["state"]["pid"])
        alice.stop_workspace()


@pytest.mark.slow
@needs_hub
@pytest.mark.parametrize("name", sorted(p.name for p in TEMPLATES.glob("*.ipynb")))
def test_a_starter_notebook_runs_in_a_real_workspace_as_the_researcher(
    name: str, templates_workspace: tuple[dict[str, str], int], demo_deployment: DemoDeployment
) -> None:
    env, pid = templates_workspace
    unix = unix_username("alice")
    assert env["USER"] == unix and env["TRE_PROJECT"] == demo_deployment.templates_project
    port = demo_deployment.deployment.control_plane_url.rsplit(":", 1)[1]
    assert env["TRE_API_URL"].endswith(f":{port}") and env["TRE_API_TOKEN"]  # through the sealed gateway
    home = pwd.getpwnam(unix).pw_dir
    # Inside the server's own network and mount namespaces, as its kernels run (ADR 0012).
    inside = [NSENTER, f"--net=/proc/{pid}/ns/net", f"--mount=/proc/{pid}/ns/mnt"]
    result = subprocess.run(
        [*inside, RUNUSER, "-u", unix, "--", str(VENV / "bin" / "python"), "-c", RUNNER, home],
        input=(TEMPLATES / name).read_text(),
        env=env,
        cwd=home,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, f"{name} failed in the workspace:\n{result.stderr[-6000:]}"
    executed = json.loads(result.stdout)
    code = [c for c in executed["cells"] if c["cell_type"] == "code"]
    assert code and all(c.get("execution_count") for c in code), "every code cell ran"
    assert not [o for c in code for o in c["outputs"] if o["output_type"] == "error"]
