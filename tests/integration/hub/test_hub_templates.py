"""Every starter notebook runs top to bottom inside a real workspace: the demo researcher signs in to the
hub (password and TOTP), starts a server for a project holding the notebooks' datasets, and each notebook
is executed with nbclient by the researcher's Unix user, in the workspace environment, with exactly the
environment the spawner gave that server (read from the server process) - so the kernel runs as the
researcher, sees only that project's views and reaches the control plane with the workspace's token.
"""

from __future__ import annotations

import contextlib
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
SAFETY_NOTEBOOK = "02_product_safety_dask.ipynb"

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


@contextlib.contextmanager
def running_workspace(
    demo: DemoDeployment, username: str, project: str
) -> Iterator[tuple[dict[str, str], int]]:
    """``username``'s running server for ``project`` (stopped afterwards); yields the environment the
    spawner gave it and the server's pid (its namespaces are where the notebooks run)."""
    login = demo.logins[username]
    with HubResearcher(demo.deployment, username) as researcher:
        researcher.sign_in(login.password, otp=login.otp())
        assert project in researcher.projects_offered()
        researcher.start_workspace(project)
        researcher.wait_until_lab_ready()
        server = researcher.server()
        assert server is not None
        yield researcher.server_environment(), int(server["state"]["pid"])
        researcher.stop_workspace()


@pytest.fixture(scope="module")
def templates_workspace(demo_deployment: DemoDeployment) -> Iterator[tuple[dict[str, str], int]]:
    """alice's server for the templates project (every dataset the starter notebooks read)."""
    with running_workspace(demo_deployment, "alice", demo_deployment.templates_project) as running:
        yield running


def run_notebook(name: str, username: str, env: dict[str, str], pid: int) -> None:
    """Execute starter notebook ``name`` from the researcher's home, as the researcher, inside the server's
    own network and mount namespaces (as its kernels run, ADR 0012); every code cell must run, no error."""
    unix = unix_username(username)
    assert env["USER"] == unix
    home = pwd.getpwnam(unix).pw_dir
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


@pytest.mark.slow
@needs_hub
@pytest.mark.parametrize("name", sorted(p.name for p in TEMPLATES.glob("*.ipynb")))
def test_a_starter_notebook_runs_in_a_real_workspace_as_the_researcher(
    name: str, templates_workspace: tuple[dict[str, str], int], demo_deployment: DemoDeployment
) -> None:
    env, pid = templates_workspace
    assert env["TRE_PROJECT"] == demo_deployment.templates_project
    port = demo_deployment.deployment.control_plane_url.rsplit(":", 1)[1]
    assert env["TRE_API_URL"].endswith(f":{port}") and env["TRE_API_TOKEN"]  # through the sealed gateway
    run_notebook(name, "alice", env, pid)


@pytest.mark.slow
@needs_hub
def test_the_product_safety_notebook_runs_for_the_demo_researcher_of_the_demo_product_safety_project(
    demo_deployment: DemoDeployment,
) -> None:
    """As after ``tre up --demo``: bob's active product-safety project gets notebook 02 (and only the
    notebooks its datasets fit) in his new home, and it runs there."""
    with running_workspace(demo_deployment, "bob", demo_deployment.safety_project) as (env, pid):
        assert env["TRE_PROJECT"] == demo_deployment.safety_project
        starters = Path(pwd.getpwnam(unix_username("bob")).pw_dir) / "starter-notebooks"
        listed = subprocess.run(
            [NSENTER, f"--mount=/proc/{pid}/ns/mnt", "ls", str(starters)],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
        assert listed == [SAFETY_NOTEBOOK], listed
        run_notebook(SAFETY_NOTEBOOK, "bob", env, pid)
