"""Workspace security, tried for real: nine attempts that must fail.

Every attempt runs with the researcher's own uid and gids on the demo deployment (control plane and
JupyterHub on loopback, the demo world ingested; see tests/integration/hub/hub_fixtures.py):

=====================================================  ==================================================
attempt                                                how it is made
=====================================================  ==================================================
1. read another project's view                         code in the kernel of alice's spawned server
2. read the linkage zone or an index                   code in the kernel of alice's spawned server
3. read the landing zone                               code in the kernel of alice's spawned server
4. read the master key or the KEK                      kernel: key files, its own environment, the hub's
5. spawn for a project one is not a member of          dan, through the hub's spawn form
6. spawn after accreditation expiry                    bob, after his accreditation's expiry passed
7. keep working after the agreement is revoked         bob's kernel, then ``runuser`` as bob afterwards
8. join two projects' views on their IDs               ``runuser`` as alice (in both projects) with the
                                                       workspace python: chance-level matches only
9. fetch rows from a workspace's Spark driver          another Unix user of the host (``nobody``) speaks
                                                       Spark's block-transfer protocol to alice's driver
=====================================================  ==================================================

Related checks elsewhere: file modes of each zone (tests/integration/views/test_views_isolation.py), the
pre-spawn check's refusals (tests/integration/hub/test_hub_workspace.py).
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration" / "hub"))

from hub_fixtures import VENV, DemoDeployment, active_project, demo_deployment, needs_hub, settings_of

from tre_platform.hub.local import DeploymentError, HubResearcher, wait_for
from tre_platform.views.storage import unix_username

__all__ = ["demo_deployment"]

pytestmark = [pytest.mark.slow, needs_hub]

RUNUSER = shutil.which("runuser") or "/usr/sbin/runuser"

# Run in the kernel: try to read ``path`` (a file, or a directory to list) and say what happened.
TRY_READ = """
import os, json
def attempt(path):
    try:
        if os.path.isdir(path):
            os.listdir(path)
        else:
            open(path, "rb").read(16)
        return "READ"
    except PermissionError:
        return "DENIED"
    except FileNotFoundError:
        return "MISSING"
print(json.dumps({p: attempt(p) for p in %r}))
"""


def _attempt_reads(researcher: HubResearcher, paths: list[Path]) -> dict[str, str]:
    return dict(json.loads(researcher.run(TRY_READ % [str(p) for p in paths])))


def _as_researcher(
    unix: str, code: str, env: dict[str, str] | None = None, prefix: list[str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``code`` in the workspace's python, as ``unix`` (with all of that user's groups, as ``runuser``)."""
    return subprocess.run(
        [*(prefix or []), RUNUSER, "-u", unix, "--", str(VENV / "bin" / "python"), "-c", code],
        capture_output=True,
        text=True,
        check=False,
        cwd="/",
    )


def _project_views(demo: DemoDeployment, code: str) -> Path:
    return demo.deployment.data_dir / "projects" / code / "views"


def _sign_in(demo: DemoDeployment, username: str) -> HubResearcher:
    researcher = HubResearcher(demo.deployment, username)
    login = demo.logins[username]
    researcher.sign_in(login.password, otp=login.otp())
    return researcher


@pytest.fixture(scope="module")
def others_project(demo_deployment: DemoDeployment) -> str:
    """An active project of bob's that alice is not a member of, with its views built."""
    from sqlalchemy import select

    from tre_platform.actor import Actor
    from tre_platform.api.users.models import User
    from tre_platform.db.session import session_scope
    from tre_platform.views import build_views

    with settings_of(demo_deployment.deployment.env), session_scope() as session:
        people = {u.username: u for u in session.scalars(select(User))}
        project = active_project(
            session,
            lead=people["bob"],
            approver=people["approver"],
            title="Bob's own study of hospital use",
            datasets=("hospital_episodes",),
        )
        session.flush()
        build_views(session, Actor.system("tests"), project.id)
        return str(project.code)


@pytest.fixture(scope="module")
def alice_workspace(demo_deployment: DemoDeployment, others_project: str) -> Iterator[HubResearcher]:
    """alice signed in with a running server for the demo's health project (stopped afterwards)."""
    alice = _sign_in(demo_deployment, "alice")
    alice.start_workspace(demo_deployment.health_project)
    alice.wait_until_lab_ready()
    identity = json.loads(alice.run("import os, json; print(json.dumps([os.getuid(), os.getgroups()]))"))
    assert identity[0] != 0, "the kernel runs as the researcher, not root"
    yield alice
    alice.stop_workspace()
    alice.close()


def test_1_a_workspace_cannot_read_another_projects_view(
    alice_workspace: HubResearcher, demo_deployment: DemoDeployment, others_project: str
) -> None:
    own = _project_views(demo_deployment, demo_deployment.health_project) / "hospital_episodes"
    other = _project_views(demo_deployment, others_project) / "hospital_episodes"
    # The templates project is alice's too, but this workspace was started for the health project only.
    also_hers = _project_views(demo_deployment, demo_deployment.templates_project) / "hospital_episodes"
    outcome = _attempt_reads(
        alice_workspace,
        [own / "_manifest.json", other / "_manifest.json", other, also_hers / "_manifest.json", also_hers],
    )
    assert outcome[str(own / "_manifest.json")] == "READ"
    assert set(list(outcome.values())[1:]) == {"DENIED"}, outcome
    # tre_lib says so in a sentence, rather than handing over another project's data.
    message = alice_workspace.run(
        "import tre_lib\n"
        "try:\n"
        f"    tre_lib.session().read({str(other)!r})\n"
        "except Exception as exc:\n"
        "    print(type(exc).__name__, exc)\n"
    )
    assert "Error" in message and "Traceback" not in message


def test_2_a_workspace_cannot_read_the_linkage_zone_or_an_index(
    alice_workspace: HubResearcher, demo_deployment: DemoDeployment
) -> None:
    linkage = demo_deployment.deployment.data_dir / "linkage"
    index = linkage / "indexes" / "demographic"
    files = sorted(p for p in index.rglob("*") if p.is_file())
    assert files, "the demo built a demographic index"
    outcome = _attempt_reads(alice_workspace, [linkage, index, files[0]])
    assert set(outcome.values()) == {"DENIED"}, outcome
    result = alice_workspace.run(
        "import pyarrow.parquet as pq\n"
        "try:\n"
        f"    pq.read_table({str(index)!r})\n"
        "    print('READ')\n"
        "except (PermissionError, OSError) as exc:\n"
        "    print('DENIED', type(exc).__name__)\n"
    )
    assert result.startswith("DENIED"), result


def test_3_a_workspace_cannot_read_the_landing_zone(
    alice_workspace: HubResearcher, demo_deployment: DemoDeployment
) -> None:
    landing = demo_deployment.deployment.data_dir / "landing"
    deliveries = sorted(p for p in landing.rglob("*") if p.is_file())
    assert deliveries, "the demo's deliveries are in the landing zone"
    outcome = _attempt_reads(alice_workspace, [landing, deliveries[0], deliveries[0].parent])
    assert set(outcome.values()) == {"DENIED"}, outcome


def test_4_a_workspace_cannot_read_the_master_key_or_the_kek(
    alice_workspace: HubResearcher, demo_deployment: DemoDeployment
) -> None:
    deployment = demo_deployment.deployment
    keys = deployment.data_dir / "keys"
    masters = sorted(keys.glob("master-*"))
    assert masters, "the view builds created a master key"
    hub_pid = deployment.processes["hub"].pid
    plane_pid = deployment.processes["control plane"].pid
    outcome = _attempt_reads(
        alice_workspace,
        [keys, masters[0], Path(f"/proc/{hub_pid}/environ"), Path(f"/proc/{plane_pid}/environ")],
    )
    assert set(outcome.values()) == {"DENIED"}, outcome
    # Nothing secret is handed to the workspace: not the KEK, the app's secret key or the database.
    names = json.loads(alice_workspace.run("import os, json; print(json.dumps(sorted(os.environ)))"))
    assert not {"TRE_KEK", "TRE_KEK_FILE", "TRE_SECRET_KEY", "TRE_DATABASE_URL"} & set(names)
    assert deployment.env["TRE_KEK"] not in alice_workspace.run(
        "import os; print('\\n'.join(os.environ.values()))"
    )


def test_5_spawning_for_a_project_one_is_not_a_member_of_is_refused(
    demo_deployment: DemoDeployment,
) -> None:
    with _sign_in(demo_deployment, "dan") as dan:
        assert demo_deployment.health_project not in dan.projects_offered()
        response = dan.start_workspace(demo_deployment.health_project)  # a hand-made form post
        assert "not a member" in response.text
        assert dan.server() is None


def _set_bob_accreditation_expiry(demo: DemoDeployment, days_from_today: int) -> dt.date:
    from sqlalchemy import select

    from tre_platform.api.users.models import User
    from tre_platform.clock import clock
    from tre_platform.db.session import session_scope

    with settings_of(demo.deployment.env), session_scope() as session:
        bob = session.scalar(select(User).where(User.username == "bob"))
        assert bob is not None
        accreditation = bob.accreditations[0]
        before: dt.date = accreditation.expires_on
        accreditation.expires_on = clock.today() + dt.timedelta(days=days_from_today)
        return before


def test_6_spawning_after_the_accreditation_expired_is_refused(demo_deployment: DemoDeployment) -> None:
    # Time passes: bob's accreditation ended yesterday (no job of his is running).
    before = _set_bob_accreditation_expiry(demo_deployment, -1)
    try:
        with _sign_in(demo_deployment, "bob") as bob:
            assert demo_deployment.health_project not in bob.projects_offered()
            response = bob.start_workspace(demo_deployment.health_project)
            assert "expired" in response.text
            assert bob.server() is None
    finally:
        _set_bob_accreditation_expiry(demo_deployment, (before - dt.date.today()).days)


def test_7_work_stops_when_the_agreement_is_revoked(demo_deployment: DemoDeployment) -> None:
    from sqlalchemy import select

    from tre_platform.actor import Actor
    from tre_platform.api.agreements.schemas import AgreementCreate, AgreementRevoke
    from tre_platform.api.agreements.service import grant_agreement, revoke_agreement
    from tre_platform.api.orgs.models import Organisation
    from tre_platform.api.projects.models import LegalGateway, PurposeCategory
    from tre_platform.api.users.models import User
    from tre_platform.clock import clock
    from tre_platform.db.session import session_scope
    from tre_platform.hub.client import HubClient
    from tre_platform.views import build_views
    from tre_platform.views.enforce import enforce_access

    deployment = demo_deployment.deployment
    with settings_of(deployment.env), session_scope() as session:
        people = {u.username: u for u in session.scalars(select(User))}
        orgs = {o.slug: o for o in session.scalars(select(Organisation))}
        # A purpose no other demo agreement covers, so this agreement alone lets the project see the data.
        agreement = grant_agreement(
            session,
            Actor.of(people["owner-health"]),
            AgreementCreate(
                reference="DSA-NHS-GP-2026-09",
                title="GP registrations for economic research",
                owner_org_id=orgs["nhs-health-data"].id,
                all_datasets=True,
                recipient_org_ids=[orgs["uni-northfield"].id],
                purposes=[PurposeCategory.economic_social_benefit],
                legal_gateways=[LegalGateway.dea],
                max_tier=3,
                valid_from=clock.today() - dt.timedelta(days=1),
                valid_to=clock.today() + dt.timedelta(days=365),
            ),
        )
        project = active_project(
            session,
            lead=people["bob"],
            approver=people["approver"],
            title="Registrations and earnings",
            datasets=("gp_registrations",),
            purpose="economic_social_benefit",
        )
        session.flush()
        build_views(session, Actor.system("tests"), project.id)
        code, agreement_id = str(project.code), agreement.id
    view = _project_views(demo_deployment, code) / "gp_registrations"

    with _sign_in(demo_deployment, "bob") as bob:
        bob.start_workspace(code)
        bob.wait_until_lab_ready()
        env = bob.server_environment()
        assert _attempt_reads(bob, [view / "_manifest.json"]) == {str(view / "_manifest.json"): "READ"}
        # The server's own TRE_API_URL is its gateway, which goes with its sandbox: the same control plane.
        api = httpx.Client(
            base_url=deployment.control_plane_url,
            headers={"Authorization": f"Bearer {env['TRE_API_TOKEN']}"},
            trust_env=False,
            timeout=30,
        )
        assert api.get("/api/v1/projects").status_code == 200

        with settings_of(deployment.env), session_scope() as session:
            revoke_agreement(
                session, Actor.of(people["owner-health"]), agreement_id, AgreementRevoke(reason="withdrawn")
            )
            session.flush()
            with HubClient(f"{deployment.hub_url}/hub/api", deployment.service_token) as hub:
                report = enforce_access(session, hub=hub)
        assert ("bob", code) in [(s.username, s.project) for s in report.stopped]
        wait_for("bob's server to stop", lambda: bob.server() is None, alive=deployment.dead)
        with pytest.raises(DeploymentError):
            bob.run("print(1)")  # the kernel went with the server

    # Nothing is left to work on: the view is gone, the workspace's token is revoked.
    result = _as_researcher(
        unix_username("bob"), f"import os; print(os.path.exists({str(view)!r}) and os.listdir({str(view)!r}))"
    )
    assert result.stdout.strip() == "False", result.stderr
    refused = api.get("/api/v1/projects")
    assert refused.status_code == 401, refused.text
    api.close()


def test_8_two_projects_views_do_not_join_on_their_ids(demo_deployment: DemoDeployment) -> None:
    # alice is in both projects, so her Unix user (all her groups, as runuser gives) can open both views.
    health = _project_views(demo_deployment, demo_deployment.health_project)
    templates = _project_views(demo_deployment, demo_deployment.templates_project)
    program = f"""
import json, pyarrow.parquet as pq
def ids(path):
    return set(pq.read_table(path, columns=["demographic_id"]).column(0).drop_null().to_pylist())
h_health = ids({str(health / "hospital_episodes")!r})
l_health = ids({str(health / "labour_force_survey")!r})
h_other = ids({str(templates / "hospital_episodes")!r})
l_other = ids({str(templates / "labour_force_survey")!r})
print(json.dumps({{
    "within": len(h_health & l_health),
    "across": len(h_health & l_other) + len(h_other & l_health) + len(h_health & h_other),
    "sizes": [len(h_health), len(l_other)],
}}))
"""
    result = _as_researcher(unix_username("alice"), program)
    assert result.returncode == 0, result.stderr
    counts = json.loads(result.stdout)
    assert counts["within"] > 20, counts  # inside one project the same people link
    # Across projects: 256-bit HMACs under unrelated keys; chance agreement is ~n^2 / 2^256, i.e. none.
    assert counts["across"] == 0, counts


# Run in alice's kernel: a join whose smaller side Spark broadcasts (its rows then sit in the driver's block
# manager, served to whoever asks for them by name), then the addresses the driver listens on.
SPARK_ADDRESSES = """
import json, tre_lib
spark = tre_lib.session().spark()
spark.sql("SELECT /*+ BROADCAST(l) */ count(*) FROM hospital_episodes h "
          "JOIN labour_force_survey l USING (demographic_id)").first()
managers = spark.sparkContext._jsc.sc().getExecutorMemoryStatus().keys().mkString(",").split(",")
driver = spark.conf.get("spark.driver.host") + ":" + spark.conf.get("spark.driver.port")
print(json.dumps(managers + [driver]))
"""

# Run as another Unix user: ask each address for broadcast blocks by name (Spark's OpenBlocks message inside
# an RPC request), then fetch the chunk of any block handed out. No secret: that is the attempt.
FETCH_BLOCKS = """
import json, socket, struct

def text(value):
    raw = value.encode()
    return struct.pack(">i", len(raw)) + raw

def frame(kind, body):
    return struct.pack(">qB", 9 + len(body), kind) + body

def read_frame(sock):
    head = b""
    while len(head) < 9:
        more = sock.recv(9 - len(head))
        if not more:
            return None, b""
        head += more
    length, kind = struct.unpack(">qB", head)
    body = b""
    while len(body) < length - 9:
        more = sock.recv(length - 9 - len(body))
        if not more:
            break
        body += more
    return kind, body

def attempt(address):
    host, port = address.rsplit(":", 1)
    fetched, answers, refusal = 0, [], ""
    try:
        with socket.create_connection((host, int(port)), timeout=30) as sock:
            for n in range(16):
                ask = bytes([0]) + text("app") + text("driver") + struct.pack(">i", 1)
                ask += text(f"broadcast_{n}_piece0")
                sock.sendall(frame(3, struct.pack(">qi", n, len(ask)) + ask))  # RpcRequest(OpenBlocks)
                kind, body = read_frame(sock)
                answers.append(kind)
                if kind is None:
                    break
                if kind == 5 and not refusal:  # RpcFailure
                    refusal = body[12:200].decode(errors="replace")
                if kind == 4 and len(body) >= 21:  # RpcResponse(StreamHandle): fetch its first chunk
                    stream = struct.unpack(">q", body[13:21])[0]
                    sock.sendall(frame(0, struct.pack(">qi", stream, 0)))  # ChunkFetchRequest
                    kind, chunk = read_frame(sock)
                    fetched += len(chunk) if kind == 1 else 0
    except OSError as exc:
        answers.append(type(exc).__name__)
    return {"address": address, "bytes": fetched, "answers": answers, "refusal": refusal}

print(json.dumps([attempt(a) for a in %r]))
"""


def test_9_another_user_cannot_fetch_rows_from_a_workspaces_spark_driver(
    alice_workspace: HubResearcher,
) -> None:
    addresses = json.loads(alice_workspace.run(SPARK_ADDRESSES))
    # Before: the driver listened on the host's network address and handed out 150 kB of broadcast
    # blocks (one of them the broadcast side of the join) to `nobody`. Loopback only, and every request
    # without Spark's authentication is refused.
    assert addresses and all(a.startswith("127.0.0.1:") for a in addresses), addresses
    # A sealed server has a loopback of its own (ADR 0012): `nobody` on the host cannot even connect, so
    # the attempt is made from inside the workspace's network namespace, where the driver does listen.
    server = alice_workspace.server()
    assert server is not None
    inside = ["nsenter", f"--net=/proc/{server['state']['pid']}/ns/net"]
    result = _as_researcher("nobody", FETCH_BLOCKS % addresses, prefix=inside)
    assert result.returncode == 0, result.stderr
    attempts = json.loads(result.stdout)
    assert all(a["answers"] and a["answers"][0] == 5 for a in attempts), attempts  # reached, refused
    assert [a["bytes"] for a in attempts] == [0] * len(addresses), attempts
