"""A sealed workspace, tried for real: what a researcher's code may not reach, and what it still can.

Every move runs as the researcher's own Unix identity: code in the kernel of alice's spawned server on the
demo deployment (control plane and JupyterHub on loopback; tests/integration/hub/hub_fixtures.py), or
``runuser`` as another researcher on the host. See docs/adr/0012-sealed-workspaces.md.

Refused (one test per move): the public package registry (``pip download``, a fresh virtualenv's
``pip install``), TCP to a listener in an "outside" network namespace made here, UDP/DNS out, the host's
database and other service ports, another researcher's server, the proxy's API, a view copied to ``/tmp``
(``chmod 644``) read by a researcher not in the project, a file left in ``~`` or ``/tmp`` for one project
seen from the same researcher's workspace for another, a ``setsid nohup`` loop surviving its server.
Still working: the hub API, the control plane's ``/healthz``, local Spark and Dask, the starter
notebooks in a new home, ``python`` on the terminal's PATH, JupyterLab's news feed off, and ``pip install``
of a package an administrator approved, from the vetted mirror (an unapproved one is not there).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration" / "hub"))

from hub_fixtures import DemoDeployment, demo_deployment, needs_hub, settings_of

from tre_platform.hub.local import HubResearcher, answers, wait_for
from tre_platform.views.storage import ensure_user, unix_username

__all__ = ["demo_deployment"]

pytestmark = [pytest.mark.slow, needs_hub]

RUNUSER = shutil.which("runuser") or "/usr/sbin/runuser"
IP = shutil.which("ip") or "/usr/sbin/ip"
NSENTER = shutil.which("nsenter") or "/usr/bin/nsenter"

# Run in the kernel: try a TCP connection to each (host, port); say OPEN or why not.
TRY_TCP = """
import json, socket
def attempt(host, port):
    try:
        with socket.create_connection((host, port), timeout=4):
            return "OPEN"
    except OSError as exc:
        return type(exc).__name__
print(json.dumps([attempt(h, p) for h, p in %r]))
"""

# Run in the kernel: the host's side of the workspace's link (where the hub API is reached).
GATEWAY = "import os, urllib.parse; print(urllib.parse.urlsplit(os.environ['JUPYTERHUB_API_URL']).hostname)"


class Alice:
    """alice signed in once (TOTP codes are single-use), with a server for whichever project a test needs."""

    def __init__(self, demo: DemoDeployment) -> None:
        self.demo = demo
        self.researcher = HubResearcher(demo.deployment, "alice")
        login = demo.logins["alice"]
        self.researcher.sign_in(login.password, otp=login.otp())
        self.project: str | None = None

    def workspace(self, project: str) -> HubResearcher:
        if self.project != project:
            self.stop()
            self.researcher.start_workspace(project)
            self.researcher.wait_until_lab_ready()
            self.researcher.new_kernel()
            self.project = project
        return self.researcher

    def stop(self) -> None:
        if self.researcher.server() is not None:
            self.researcher.stop_workspace()
        self.project = None


@pytest.fixture(scope="module")
def alice(demo_deployment: DemoDeployment) -> Iterator[Alice]:
    who = Alice(demo_deployment)
    yield who
    who.stop()
    who.researcher.close()


@pytest.fixture
def health(alice: Alice, demo_deployment: DemoDeployment) -> HubResearcher:
    """alice's kernel in her workspace for the demo's health project."""
    return alice.workspace(demo_deployment.health_project)


def _tcp(researcher: HubResearcher, targets: list[tuple[str, int]]) -> dict[str, str]:
    outcome = json.loads(researcher.run(TRY_TCP % targets))
    return {f"{h}:{p}": o for (h, p), o in zip(targets, outcome, strict=True)}


def _host_address() -> str:
    """The host's own address on its main interface (not loopback)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.connect(("192.0.2.1", 9))  # no packet is sent: this only picks the outgoing address
        return str(probe.getsockname()[0])


@contextlib.contextmanager
def _listener(host: str = "0.0.0.0") -> Iterator[int]:  # noqa: S104 - every address of the host, on purpose
    """A TCP listener of the host's (a stand-in for any service of the host) that answers 'hello'."""
    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind((host, 0))
    server.listen()
    server.settimeout(0.5)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                continue
            with conn:
                conn.sendall(b"hello")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield int(server.getsockname()[1])
    finally:
        stop.set()
        thread.join()
        server.close()


def _pip(researcher: HubResearcher, args: str) -> dict[str, object]:
    code = f"""
import json, subprocess, sys
result = subprocess.run({args!r}, shell=True, capture_output=True, text=True, cwd="/tmp")
print(json.dumps({{"rc": result.returncode, "out": (result.stdout + result.stderr)[-1500:]}}))
"""
    return dict(json.loads(researcher.run(code, timeout=300)))


# Refused ------------------------------------------------------------------------------------------------


def test_pip_download_from_the_public_registry_fails(health: HubResearcher) -> None:
    result = _pip(
        health,
        "python -m pip download six --no-deps -d /tmp/dl --index-url https://pypi.org/simple "
        "--timeout 5 --retries 0",
    )
    assert result["rc"] != 0, result
    result = _pip(health, "python -m pip download six --no-deps -d /tmp/dl2 --timeout 5 --retries 0")
    assert result["rc"] != 0 and "Saved" not in str(result["out"]), result


def test_a_fresh_virtualenvs_pip_install_from_the_public_registry_fails(health: HubResearcher) -> None:
    result = _pip(
        health,
        "python -m venv /tmp/scratch-venv && env -u PIP_INDEX_URL /tmp/scratch-venv/bin/pip install "
        "--timeout 5 --retries 0 --index-url https://pypi.org/simple requests",
    )
    assert result["rc"] != 0 and "Successfully installed" not in str(result["out"]), result


@pytest.fixture
def outside_namespace() -> Iterator[tuple[str, int]]:
    """A network namespace of its own ("outside") with a listener, reachable from the host by a veth."""
    tag = uuid.uuid4().hex[:6]
    ns, veth = f"seal-out-{tag}", f"sout{tag}"
    octet = int(tag[:2], 16)
    host_ip, ns_ip = f"10.214.{octet}.1", f"10.214.{octet}.2"
    commands = [
        [IP, "netns", "add", ns],
        [IP, "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns],
        [IP, "addr", "add", f"{host_ip}/30", "dev", veth],
        [IP, "link", "set", veth, "up"],
        [IP, "-n", ns, "addr", "add", f"{ns_ip}/30", "dev", "eth0"],
        [IP, "-n", ns, "link", "set", "eth0", "up"],
        [IP, "-n", ns, "link", "set", "lo", "up"],
        [IP, "-n", ns, "route", "add", "default", "via", host_ip],
    ]
    listener = None
    try:
        for argv in commands:
            subprocess.run(argv, check=True, capture_output=True)
        port = 7000 + octet
        listener = subprocess.Popen(
            [
                NSENTER,
                f"--net=/run/netns/{ns}",
                sys.executable,
                "-c",
                "import socket\ns = socket.socket()\n"
                "s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
                f"s.bind(('0.0.0.0', {port})); s.listen()\n"
                "while True:\n    c, _ = s.accept(); c.sendall(b'outside'); c.close()\n",
            ]
        )
        # The listener answers from the host: the outside is really there.
        wait_for("the outside listener", lambda: _reachable(ns_ip, port), timeout=30)
        yield ns_ip, port
    finally:
        if listener is not None:
            listener.kill()
            listener.wait()
        subprocess.run([IP, "link", "del", veth], capture_output=True, check=False)
        subprocess.run([IP, "netns", "del", ns], capture_output=True, check=False)


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=2):
            return True
    except OSError:
        return False


def test_tcp_to_a_listener_in_an_outside_network_namespace_fails(
    health: HubResearcher, outside_namespace: tuple[str, int]
) -> None:
    host, port = outside_namespace
    outcome = _tcp(health, [(host, port), ("1.1.1.1", 443), ("pypi.org", 443)])
    assert "OPEN" not in outcome.values(), outcome


# Run in the kernel: a DNS query (A pypi.org) by UDP to each server; ANSWERED or why not. Also a lookup.
DNS_OUT = """
import json, os, socket, struct
query = struct.pack(">HHHHHH", 0x1234, 0x0100, 1, 0, 0, 0)
query += b"\\x04pypi\\x03org\\x00" + struct.pack(">HH", 1, 1)
def ask(server):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(3)
        try:
            s.sendto(query, (server, 53))
            s.recvfrom(512)
            return "ANSWERED"
        except OSError as exc:
            return type(exc).__name__
def lookup():
    try:
        socket.getaddrinfo("pypi.org", 443)
        return "RESOLVED"
    except OSError as exc:
        return type(exc).__name__
print(json.dumps({"servers": {s: ask(s) for s in %r}, "lookup": lookup()}))
"""


def test_udp_and_dns_out_fail(health: HubResearcher) -> None:
    resolvers = [
        line.split()[1]
        for line in Path("/etc/resolv.conf").read_text().splitlines()
        if line.startswith("nameserver")
    ]
    gateway = health.run(GATEWAY).strip()
    outcome = json.loads(health.run(DNS_OUT % [*resolvers, "8.8.8.8", "1.1.1.1", gateway]))
    assert "ANSWERED" not in outcome["servers"].values(), outcome
    assert outcome["lookup"] != "RESOLVED", outcome


def test_the_hosts_database_and_other_service_ports_are_unreachable(health: HubResearcher) -> None:
    gateway = health.run(GATEWAY).strip()
    host = _host_address()
    with _listener() as any_service:
        ports = [5432, 3306, 6379, any_service]
        targets = [(addr, p) for p in ports for addr in ("127.0.0.1", gateway, host)]
        outcome = _tcp(health, targets)
        assert _reachable("127.0.0.1", any_service), "the stand-in service answers on the host"
    assert "OPEN" not in outcome.values(), outcome
    psql = health.run(
        "import shutil, subprocess\n"
        "exe = shutil.which('psql')\n"
        "if exe:\n"
        "    r = subprocess.run([exe, '-h', '127.0.0.1', '-U', 'postgres', '-c', 'select 1', '-w'],\n"
        "                       capture_output=True, text=True, timeout=60)\n"
        "    print(r.returncode)\n"
        "else:\n"
        "    print('no psql')\n"
    ).strip()
    assert psql != "0", psql


def _proxy_routes(demo: DemoDeployment) -> dict[str, dict[str, object]]:
    deployment = demo.deployment
    token = (deployment.data_dir / "hub" / "proxy.token").read_text().strip()
    port = deployment.env["TRE_PROXY_API_PORT"]
    response = httpx.get(
        f"http://127.0.0.1:{port}/api/routes",
        headers={"Authorization": f"token {token}"},
        timeout=30,
        trust_env=False,
    )
    response.raise_for_status()
    routes: dict[str, dict[str, object]] = response.json()
    return routes


def test_another_researchers_server_is_unreachable(
    health: HubResearcher, demo_deployment: DemoDeployment
) -> None:
    bob = HubResearcher(demo_deployment.deployment, "bob")
    login = demo_deployment.logins["bob"]
    bob.sign_in(login.password, otp=login.otp())
    try:
        bob.start_workspace(demo_deployment.health_project)
        bob.wait_until_lab_ready()
        routes = _proxy_routes(demo_deployment)
        bobs = [r for key, r in routes.items() if key.rstrip("/").endswith(f"/user/{quote('bob')}")]
        assert bobs, routes
        target = str(bobs[0]["target"])
        host, port = target.split("//", 1)[1].split("/", 1)[0].rsplit(":", 1)
        outcome = _tcp(health, [(host, int(port)), ("127.0.0.1", int(port))])
        assert "OPEN" not in outcome.values(), outcome
    finally:
        if bob.server() is not None:
            bob.stop_workspace()
        bob.close()


def test_the_proxy_api_is_unreachable(health: HubResearcher, demo_deployment: DemoDeployment) -> None:
    port = int(demo_deployment.deployment.env["TRE_PROXY_API_PORT"])
    gateway = health.run(GATEWAY).strip()
    outcome = _tcp(health, [("127.0.0.1", port), (gateway, port), (_host_address(), port)])
    assert "OPEN" not in outcome.values(), outcome


def test_a_view_copied_to_tmp_and_made_world_readable_is_not_readable_by_a_researcher_outside_the_project(
    health: HubResearcher, demo_deployment: DemoDeployment
) -> None:
    view = demo_deployment.deployment.data_dir / "projects" / demo_deployment.health_project / "views"
    source = sorted((view / "hospital_episodes").rglob("*.parquet"))[0]
    name = f"leak-{uuid.uuid4().hex[:8]}.parquet"
    copied = health.run(
        f"import os, shutil; shutil.copyfile({str(source)!r}, '/tmp/{name}'); os.chmod('/tmp/{name}', 0o644);"
        f"print(os.path.getsize('/tmp/{name}'))"
    )
    assert int(copied) > 0
    # dan is no member of the project; wherever the copy is on the host, dan cannot read it.
    dan = unix_username("dan")
    ensure_user(dan, comment="tre researcher dan")
    candidates = [Path("/tmp") / name, *Path("/run").glob(f"tre-workspaces/tmp/*/tmp/{name}")]
    for path in candidates:
        result = subprocess.run(
            [RUNUSER, "-u", dan, "--", "cat", str(path)], capture_output=True, check=False, cwd="/"
        )
        assert result.returncode != 0 and not result.stdout, path


def test_files_left_for_one_project_are_not_visible_from_the_same_researchers_workspace_for_another(
    alice: Alice, demo_deployment: DemoDeployment
) -> None:
    marker = f"project-a-{uuid.uuid4().hex[:8]}"
    first = alice.workspace(demo_deployment.health_project)
    first.run(
        f"import os\nfor d in (os.path.expanduser('~'), '/tmp', '/var/tmp', '/dev/shm'):\n"
        f"    open(os.path.join(d, {marker!r}), 'w').write('from project A')\n"
    )
    second = alice.workspace(demo_deployment.templates_project)
    seen = json.loads(
        second.run(
            "import os, json\n"
            f"print(json.dumps([d for d in (os.path.expanduser('~'), '/tmp', '/var/tmp', '/dev/shm') "
            f"if os.path.exists(os.path.join(d, {marker!r}))]))"
        )
    )
    assert seen == [], seen


def test_a_setsid_nohup_loop_is_gone_after_the_server_stops(alice: Alice, health: HubResearcher) -> None:
    # Not a session leader already, so `setsid` need not fork: the pid printed is the loop's own.
    pid = int(
        health.run(
            "import subprocess\n"
            "p = subprocess.Popen(['setsid', 'nohup', 'sh', '-c', 'while true; do sleep 1; done'],\n"
            "    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)\n"
            "print(p.pid)"
        )
    )
    wait_for("the loop to run", lambda: "while true" in _cmdline(pid), timeout=60)
    alice.stop()
    # Stopping returns once the server is gone; the loop must already be gone with it.
    assert not _running(pid), f"process {pid} survived its server"


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


# Still working ------------------------------------------------------------------------------------------


def test_the_hub_api_works_from_the_workspace(health: HubResearcher) -> None:
    status = health.run(
        "import os, urllib.request\n"
        "req = urllib.request.Request(os.environ['JUPYTERHUB_API_URL'] + '/user',\n"
        "    headers={'Authorization': 'token ' + os.environ['JUPYTERHUB_API_TOKEN']})\n"
        "opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))\n"
        "print(opener.open(req, timeout=30).status)"
    )
    assert status.strip() == "200"


def test_the_control_plane_api_works_from_the_workspace(health: HubResearcher) -> None:
    answer = health.run(
        "import os, json, urllib.request\n"
        "opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))\n"
        "print(opener.open(os.environ['TRE_API_URL'] + '/healthz', timeout=30).status)\n"
        "req = urllib.request.Request(os.environ['TRE_API_URL'] + '/api/v1/projects',\n"
        "    headers={'Authorization': 'Bearer ' + os.environ['TRE_API_TOKEN']})\n"
        "print(opener.open(req, timeout=30).status)"
    )
    assert answer.split() == ["200", "200"]


def test_local_spark_and_dask_work_in_the_workspace(health: HubResearcher) -> None:
    spark = health.run(
        "import tre_lib\nspark = tre_lib.session().spark()\n"
        "print(spark.range(1000).selectExpr('sum(id) AS s').first()['s'])",
        timeout=900,
    )
    assert spark.strip() == str(sum(range(1000)))
    dask = health.run(
        "import tre_lib\nclient = tre_lib.session().dask()\nprint(client.submit(sum, range(1000)).result())",
        timeout=900,
    )
    assert dask.strip() == str(sum(range(1000)))


def test_a_new_home_has_the_fitting_starter_notebooks_and_the_shared_folder(
    alice: Alice, demo_deployment: DemoDeployment
) -> None:
    workspace = alice.workspace(demo_deployment.templates_project)
    seen = json.loads(
        workspace.run(
            "import os, json\nhome = os.path.expanduser('~')\n"
            "shared = os.environ['TRE_SHARED_DIR']\n"
            "open(os.path.join(shared, 'team.py'), 'w').write('x = 1')\n"
            "st = os.stat(os.path.join(shared, 'team.py'))\n"
            "print(json.dumps({'notebooks': sorted(os.listdir(os.path.join(home, 'starter-notebooks'))),\n"
            "  'shared_link': os.path.realpath(os.path.join(home, 'shared')) == os.path.realpath(shared),\n"
            "  'group_rw': oct(st.st_mode & 0o060), 'gid': st.st_gid}))"
        )
    )
    templates = Path(__file__).resolve().parents[2] / "notebooks_templates"
    assert seen["notebooks"] == sorted(p.name for p in templates.glob("*.ipynb")), seen
    assert seen["shared_link"] and seen["group_rw"] == oct(0o060), seen
    import grp

    from tre_platform.views.storage import project_group

    assert seen["gid"] == grp.getgrnam(project_group(demo_deployment.templates_project)).gr_gid


def test_python_is_on_the_terminals_path_and_jupyterlab_news_is_off(health: HubResearcher) -> None:
    from websockets.sync.client import connect

    kernel = health.kernel()
    headers = {"Authorization": f"token {kernel.token}"}
    with httpx.Client(headers=headers, timeout=60, trust_env=False) as api:
        name = api.post(f"{kernel.server_url}/api/terminals").json()["name"]
        news = api.get(f"{kernel.server_url}/lab/api/news")
        assert news.status_code == 200 and news.json().get("news") == [], news.text
        update = api.get(f"{kernel.server_url}/lab/api/update")
        assert update.status_code == 200 and update.json().get("notification") is None, update.text
    ws_url = kernel.server_url.replace("http://", "ws://", 1)
    seen = ""
    with connect(f"{ws_url}/terminals/websocket/{name}", additional_headers=headers) as ws:
        ws.send(json.dumps(["stdin", "python -c 'import sys; print(\"PY=\" + sys.prefix)'\r"]))
        deadline = time.monotonic() + 120
        while "PY=/" not in seen and time.monotonic() < deadline:
            message = json.loads(ws.recv(timeout=60))
            if message[0] == "stdout":
                seen += message[1]
    found = re.search(r"PY=(/\S+)", seen)
    assert found and "not found" not in seen, seen
    prefix = found.group(1)
    assert os.path.realpath(prefix) == os.path.realpath(os.environ.get("TRE_WORKSPACE_VENV", prefix))


# The package the researcher asked for and the administrator approved (one dependency, ``six``), and one
# nobody approved (both pure-Python wheels; see tests/mirror_support.py).
APPROVED, APPROVED_VERSION, UNAPPROVED = "rfc3339-validator", "0.1.4", "tomli-w"


@pytest.fixture(scope="module")
def vetted_mirror(demo_deployment: DemoDeployment) -> Iterator[str]:
    """The vetted mirror running as ``tre up`` starts it, holding ``APPROVED`` (asked for by alice and
    approved by the demo's administrator through the package service); yields its port."""
    from sqlalchemy import select

    from tre_platform.actor import Actor
    from tre_platform.api.packages import service
    from tre_platform.api.packages.mirror import index_url, start_mirror
    from tre_platform.api.packages.schemas import PackageApprove, PackageRequestCreate
    from tre_platform.api.users.models import User
    from tre_platform.db.session import session_scope
    from tre_platform.settings import get_settings

    with settings_of(demo_deployment.deployment.env):
        settings = get_settings()
        with session_scope() as session:
            people = {u.username: u for u in session.scalars(select(User))}
            request = service.request_package(
                session,
                Actor.of(people["alice"]),
                PackageRequestCreate(name=APPROVED, version=APPROVED_VERSION, reason="RFC 3339 timestamps"),
            )
            service.approve_request(session, Actor.of(people["admin"]), request.id, PackageApprove())
        mirror = start_mirror(settings)
        port = settings.package_mirror_port
        url = index_url(settings)
    try:
        wait_for("the package mirror", lambda: answers(url), alive=lambda: _exited(mirror))
        yield str(port)
    finally:
        mirror.terminate()
        mirror.wait()


def _exited(process: subprocess.Popen[bytes]) -> str | None:
    return None if process.poll() is None else f"the mirror exited with {process.returncode}"


def test_pip_installs_an_approved_package_from_the_vetted_mirror_and_not_an_unapproved_one(
    health: HubResearcher, vetted_mirror: str
) -> None:
    # The workspace's own environment, as the spawner gave it: no --index-url, no pip configuration here.
    gateway = health.run(GATEWAY).strip()
    index = health.run("import os; print(os.environ['PIP_INDEX_URL'])").strip()
    assert index == f"http://{gateway}:{vetted_mirror}/simple/", index
    venv = f"/tmp/mirror-venv-{uuid.uuid4().hex[:8]}"
    approved = _pip(
        health,
        f"python -m venv {venv} && {venv}/bin/pip install --no-cache-dir --disable-pip-version-check "
        f"{APPROVED}=={APPROVED_VERSION} && "
        f"{venv}/bin/python -c 'import six, rfc3339_validator as m; print(m.__file__)'",
    )
    out = str(approved["out"])
    assert approved["rc"] == 0 and f"{venv}/lib/" in out, approved
    assert f"Looking in indexes: {index}" in out, approved
    unapproved = _pip(
        health,
        f"{venv}/bin/pip install --no-cache-dir --disable-pip-version-check --timeout 5 --retries 0 "
        f"{UNAPPROVED}",
    )
    out = str(unapproved["out"])
    assert unapproved["rc"] != 0 and "Successfully installed" not in out, unapproved
    assert "No matching distribution found" in out, unapproved
