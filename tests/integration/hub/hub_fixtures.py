"""Fixtures for the end-to-end workspace tests (hub, browser, security), shared across test folders.

* ``hub``: JupyterHub on loopback over the test's own database (``db_url``) and data directory.
* ``demo_deployment``: once per run, the demo world (``tre up --demo``'s seed and ingest, at a small
  population) in a data directory the researchers' Unix users can reach, with the control plane and the
  hub running on it (:class:`tre_platform.hub.local.LocalDeployment`). Every demo user has a TOTP factor
  (every role needs one); the demo researcher ``alice`` leads one more active project,
  :data:`TEMPLATES_PROJECT_TITLE`, holding every dataset the starter notebooks use.

Importing this module also puts tests/integration/views on ``sys.path`` (the workspace world lives there).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyotp
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "views"))

from workspace_world import traversable_data_dir, unix_accounts_cleanup

from tre_platform.hub.config import proxy_command
from tre_platform.hub.local import LocalDeployment, free_port

VENV = Path(os.environ.get("TRE_WORKSPACE_VENV", "/opt/tre/workspace-venv"))
HUB_READY = (
    os.geteuid() == 0
    and (VENV / "bin" / "jupyterhub-singleuser").exists()
    and Path(proxy_command()[0]).exists()
)
needs_hub = pytest.mark.skipif(
    not HUB_READY, reason="needs root, the workspace environment and configurable-http-proxy (make setup)"
)
TEMPLATES_PROJECT_TITLE = "Starter notebooks: health, labour market and product safety"
#: Datasets the starter notebooks read (every approved column of each is requested).
TEMPLATE_DATASETS = (
    "hospital_episodes",
    "labour_force_survey",
    "product_safety_incidents",
    "business_register",
)
#: People in the demo's synthetic world here (``tre up --demo`` uses 2,000; small keeps CI quick).
DEMO_PERSONS = 400


@pytest.fixture
def hub(monkeypatch: pytest.MonkeyPatch, data_dir: Path, db_url: str, tmp_path: Path) -> Iterator[Any]:
    """JupyterHub (and the control plane) on the test's database and data directory."""
    from tre_platform.settings import get_settings
    from tre_platform.views.settings import get_workspace_settings

    monkeypatch.setenv("TRE_WORKSPACE_VENV", str(VENV))
    env = {k: v for k, v in os.environ.items() if k.startswith("TRE_")}
    with LocalDeployment.start(env, log_dir=tmp_path) as deployment:
        # This process's settings follow the deployment (ports), so enforcement reaches this hub.
        for name in ("TRE_HUB_BIND_URL", "TRE_HUB_API_PORT", "TRE_PROXY_API_PORT", "TRE_PORT"):
            monkeypatch.setenv(name, deployment.env[name])
        get_settings.cache_clear()
        get_workspace_settings.cache_clear()
        yield deployment
    get_workspace_settings.cache_clear()


#: The last TOTP time step each user signed in with: the control plane refuses a code's reuse (replay).
_LAST_STEP: dict[str, int] = {}


@dataclass(frozen=True)
class DemoLogin:
    username: str
    password: str
    totp_secret: str | None

    def otp(self) -> str:
        """A code the control plane has not accepted yet (waits for the next 30 s step if it must)."""
        if not self.totp_secret:
            return ""
        totp = pyotp.TOTP(self.totp_secret)
        while int(time.time()) // totp.interval <= _LAST_STEP.get(self.username, -1):
            time.sleep(0.5)
        step = int(time.time()) // totp.interval
        _LAST_STEP[self.username] = step
        return totp.at(step * totp.interval)


def enrol(session: Any, user: Any, password: str) -> DemoLogin:
    """Give ``user`` a confirmed TOTP factor (the real clock: the hub checks codes in its own process)."""
    from tre_platform.actor import Actor
    from tre_platform.api.users import service as users

    _, secret, _ = users.start_totp_enrolment(session, Actor.of(user))
    login = DemoLogin(user.username, password, secret)
    users.confirm_totp(session, Actor.of(user), login.otp())
    return login


@dataclass(frozen=True)
class DemoDeployment:
    deployment: LocalDeployment
    logins: dict[str, DemoLogin]
    health_project: str
    templates_project: str
    #: bob's active product-safety project of the demo seed (starter notebook 02 fits it).
    safety_project: str


@contextlib.contextmanager
def settings_of(env: dict[str, str]) -> Iterator[None]:
    """This process's settings and database engines pointed at ``env`` for the block."""
    from tre_platform.db.session import reset_engines
    from tre_platform.settings import get_settings
    from tre_platform.views.settings import get_workspace_settings

    with pytest.MonkeyPatch.context() as mp:
        for name, value in env.items():
            if name.startswith("TRE_"):
                mp.setenv(name, value)
        get_settings.cache_clear()
        get_workspace_settings.cache_clear()
        reset_engines()
        try:
            yield
        finally:
            reset_engines()
            get_settings.cache_clear()
            get_workspace_settings.cache_clear()


def active_project(
    session: Any,
    *,
    lead: Any,
    approver: Any,
    title: str,
    datasets: tuple[str, ...],
    purpose: str = "policy_evidence",
) -> Any:
    """A project of ``lead`` requesting every non-identifier column of ``datasets``, approved and active."""
    from sqlalchemy import select

    from tre_platform.actor import Actor
    from tre_platform.api.datasets.models import Dataset
    from tre_platform.api.projects.models import LegalGateway, PurposeCategory
    from tre_platform.api.projects.schemas import DatasetRequest, ProjectCreate
    from tre_platform.api.projects.service import create_project, request_dataset, transition
    from tre_platform.clock import clock

    today = clock.today()
    project = create_project(
        session,
        Actor.of(lead),
        ProjectCreate(
            title=title,
            lay_summary="A study run end to end by the tests in a real workspace.",
            purpose=PurposeCategory(purpose),
            legal_gateway=LegalGateway.dea,
            start_date=today - dt.timedelta(days=1),
            end_date=today + dt.timedelta(days=365),
            max_tier=3,
        ),
    )
    for name in datasets:
        dataset = session.scalar(select(Dataset).where(Dataset.name == name))
        assert dataset is not None, name
        columns = [c["name"] for c in dataset.schema if not c.get("identifier")]
        request_dataset(
            session,
            Actor.of(lead),
            project.id,
            DatasetRequest(dataset_id=dataset.id, columns=columns, justification="end-to-end tests"),
        )
    transition(session, Actor.of(lead), project.id, "submit", "Ready.")
    transition(session, Actor.of(approver), project.id, "approve", "Fine.")
    transition(session, Actor.system("demo-seed"), project.id, "activate", "Provisioned.")
    return project


def prepare_demo(env: dict[str, str]) -> tuple[dict[str, DemoLogin], str, str, str]:
    """Migrate, seed and ingest the demo world (every demo user has TOTP), add the templates project, build
    views.

    Returns the logins and the codes of the demo's health project, of the templates project and of the
    demo's product-safety project.
    """
    from sqlalchemy import select

    from tre_platform.actor import Actor
    from tre_platform.api.projects.models import USABLE_STATES, Project
    from tre_platform.api.users.models import User
    from tre_platform.db.migrate import upgrade
    from tre_platform.db.session import session_scope
    from tre_platform.demo.deliveries import ingest_demo
    from tre_platform.demo.seed import SAFETY_PROJECT, seed
    from tre_platform.hooks import suppressed
    from tre_platform.views import build_views

    logging.getLogger("splink").setLevel(logging.ERROR)
    with settings_of(env):
        upgrade()
        with session_scope() as session, suppressed():
            demo = seed(session)
        # The seed confirmed each user's factor with the current code: a code of this step is spent.
        for login in demo:
            _LAST_STEP[login.username] = int(time.time()) // 30
        with session_scope() as session, suppressed():
            ingest_demo(session, n_persons=DEMO_PERSONS)
        with session_scope() as session:
            people = {u.username: u for u in session.scalars(select(User))}
            alice = people["alice"]  # the demo enrolled every user's second factor (every role needs one)
            project = active_project(
                session,
                lead=alice,
                approver=people["approver"],
                title=TEMPLATES_PROJECT_TITLE,
                datasets=TEMPLATE_DATASETS,
            )
            templates = project.code
            login_map = {
                d.username: DemoLogin(d.username, d.password, d.totp_secret) for d in demo if d.username
            }
        with session_scope() as session:
            health = safety = ""
            for usable in session.scalars(select(Project).where(Project.state.in_(list(USABLE_STATES)))):
                build_views(session, Actor.system("tests"), usable.id)
                if usable.title.startswith("Health and the labour market"):
                    health = usable.code
                if usable.title == SAFETY_PROJECT:
                    safety = usable.code
    return login_map, health, templates, safety


# One demo deployment per run even though tests/browser and tests/integration/hub each import the fixture
# (pytest makes those two session fixtures): both share this, the last one torn down stops it.
_SHARED: dict[str, Any] = {"users": 0}


def refresh_workspace_venv() -> None:
    """Bring the workspace environment's tre_lib up to date with the checkout (a no-op when it is).

    The servers run an installed copy of tre_lib, not the repository's; ``make setup`` refreshes it, and
    so does this, so the notebooks run against the library they were written for.
    """
    script = Path(__file__).resolve().parents[3] / "deploy" / "local" / "build-workspace-venv.sh"
    result = subprocess.run([str(script), str(VENV)], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        pytest.fail(f"could not bring {VENV} up to date:\n{result.stderr[-3000:]}")


@contextlib.contextmanager
def _demo_stack(logs: Path) -> Iterator[DemoDeployment]:
    from tre_lib.pseudonymise import encode_key, generate_kek

    refresh_workspace_venv()
    with (
        pytest.MonkeyPatch.context() as mp,
        traversable_data_dir(mp) as data_dir,
        unix_accounts_cleanup(),
    ):
        data_dir.mkdir(mode=0o711)
        env = {
            "TRE_DATA_DIR": str(data_dir),
            "TRE_DATABASE_URL": f"sqlite:///{data_dir / 'tre.db'}",
            "TRE_ENV": "test",
            "TRE_SECRET_KEY": "e2e-" + secrets.token_urlsafe(32),
            "TRE_KEK": encode_key(generate_kek()),
            "TRE_WORKSPACE_VENV": str(VENV),
            "TRE_ENFORCE_ON_CHANGE": "false",
            "TRE_STORAGE_MODE": "unix",
            # The vetted mirror's port (the spawner forwards it to the workspaces): one of this run's own.
            "TRE_PACKAGE_MIRROR_PORT": str(free_port()),
        }
        logins, health, templates, safety = prepare_demo(env)
        with LocalDeployment.start(env, log_dir=logs) as deployment:
            yield DemoDeployment(deployment, logins, health, templates, safety)


@pytest.fixture(scope="session")
def demo_deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoDeployment]:
    """The demo world with the control plane and the hub running on it (once per test run)."""
    if not HUB_READY:
        pytest.skip("needs root, the workspace environment and configurable-http-proxy (make setup)")
    if _SHARED["users"] == 0:
        stack = contextlib.ExitStack()
        _SHARED["stack"] = stack
        _SHARED["value"] = stack.enter_context(_demo_stack(tmp_path_factory.mktemp("demo-deployment")))
    _SHARED["users"] += 1
    try:
        yield _SHARED["value"]
    finally:
        _SHARED["users"] -= 1
        if _SHARED["users"] == 0:
            _SHARED.pop("stack").close()
