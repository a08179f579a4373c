"""Factories for control-plane objects: ``make_x(session, **overrides)`` builds a valid object through the
service layer (so every factory-made object also has its audit event), with sensible defaults.

Also :func:`build_world`, the small population the API tests and the permission matrix run against: one
user per role, two data-owning organisations, a dataset each, projects in several states and agreements,
and release requests in every state of the airlock on an approved project.
"""

from __future__ import annotations

import datetime as dt
import itertools
import os
import secrets
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from argon2 import PasswordHasher
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from tre_lib.disclosure import protect_table
from tre_lib.outputs.specs import TableSpec, table_to_csv, write_data
from tre_platform.actor import Actor
from tre_platform.api.agreements import service as agreements
from tre_platform.api.agreements.models import DataSharingAgreement
from tre_platform.api.agreements.schemas import AgreementCreate
from tre_platform.api.datasets import service as datasets
from tre_platform.api.datasets.models import Dataset
from tre_platform.api.datasets.schemas import DatasetCreate
from tre_platform.api.orgs import service as orgs
from tre_platform.api.orgs.models import Organisation
from tre_platform.api.orgs.schemas import OrgCreate
from tre_platform.api.packages.models import PackageRequest
from tre_platform.api.projects import service as projects
from tre_platform.api.projects.models import Project
from tre_platform.api.projects.schemas import DatasetRequest, MemberAdd, ProjectCreate
from tre_platform.api.releases import service as releases
from tre_platform.api.releases.models import ReleaseRequest
from tre_platform.api.releases.schemas import ReleaseCreate
from tre_platform.api.users import service as users
from tre_platform.api.users.models import Accreditation, User
from tre_platform.api.users.schemas import AccreditationCreate, TokenCreate, UserCreate
from tre_platform.api.users.security import use_password_hasher
from tre_platform.clock import clock

SYSTEM = Actor.system("tests")
PASSWORD = "correct horse battery staple"
ROLES = ("admin", "data_owner", "approver", "researcher", "output_checker")
_counter = itertools.count(1)


def _n() -> int:
    return next(_counter)


def today() -> dt.date:
    return clock.today()


def make_org(session: Session, **overrides: Any) -> Organisation:
    n = _n()
    data: dict[str, Any] = {"slug": f"org-{n}", "name": f"Organisation {n}", "kind": "both"}
    data.update(overrides)
    return orgs.create_org(session, SYSTEM, OrgCreate(**data))


def make_user(session: Session, *, roles: list[str] | None = None, **overrides: Any) -> User:
    """A user with a password (``PASSWORD``) and ``roles``; data_owner gets the user's organisation."""
    n = _n()
    org_id = overrides.pop("organisation_id", None) or make_org(session).id
    grants = [
        {"role": role, "organisation_id": org_id if role == "data_owner" else None} for role in (roles or [])
    ]
    data: dict[str, Any] = {
        "username": f"user-{n}",
        "full_name": f"User {n}",
        "email": f"user{n}@example.org",
        "organisation_id": org_id,
        "password": PASSWORD,
        "roles": grants,
    }
    data.update(overrides)
    return users.create_user(session, SYSTEM, UserCreate(**data))


def enrol_totp(session: Session, user_id: str) -> str:
    """Give a user a confirmed TOTP factor; returns its secret. Freezes the clock and moves it on one
    30-second step, so the next code is not the (already used) enrolment code."""
    from tre_platform.api.users import security
    from tre_platform.api.users import service as users

    user = session.get(User, user_id)
    assert user is not None
    clock.freeze(clock.now())
    _, secret, _ = users.start_totp_enrolment(session, Actor.of(user))
    users.confirm_totp(session, Actor.of(user), security.totp_now(secret))
    fresh(session)
    clock.advance(dt.timedelta(seconds=30))
    return secret


def make_accreditation(session: Session, user: User, **overrides: Any) -> Accreditation:
    data: dict[str, Any] = {
        "scheme": "DEA accredited researcher",
        "granted_on": today() - dt.timedelta(days=30),
        "expires_on": today() + dt.timedelta(days=365),
    }
    data.update(overrides)
    return users.add_accreditation(session, SYSTEM, user.id, AccreditationCreate(**data))


def make_token(session: Session, user: User, **overrides: Any) -> str:
    """A raw API token for ``user``."""
    data: dict[str, Any] = {"name": f"token-{_n()}"}
    data.update(overrides)
    return users.create_api_token(session, Actor.of(user), TokenCreate(**data))[1]


#: six 1.17.0's wheel as pip's resolver reports it: a one-wheel tree (no dependencies).
SIX_WHEEL: dict[str, Any] = {
    "name": "six",
    "version": "1.17.0",
    "filename": "six-1.17.0-py2.py3-none-any.whl",
    "url": "https://files.pythonhosted.org/packages/six-1.17.0-py2.py3-none-any.whl",
    "sha256": "4721f391ed90541fddacab5acf947aa0d3dc7d27b2e1e8eda2be8970586c3274",
    "licence": "MIT License",
    "requires": [],
    "requested": True,
}


def make_package_request(session: Session, user: User, **overrides: Any) -> PackageRequest:
    """A pending package request whose tree is given, not resolved (no registry needed to build the
    world; ``tests/api/test_api_packages.py`` makes real ones through the service)."""
    data: dict[str, Any] = {
        "name": "six",
        "version": "1.17.0",
        "reason": "compatibility helpers",
        "requested_by_id": user.id,
        "tree": [SIX_WHEEL],
    }
    data.update(overrides)
    request = PackageRequest(**data)
    session.add(request)
    session.flush()
    return request


DEFAULT_SCHEMA: list[dict[str, Any]] = [
    {"name": "nhs_number", "type": "string", "identifier": True, "index": "demographic"},
    {"name": "age", "type": "integer", "min": 0, "max": 120},
    {"name": "region", "type": "string", "allowed": ["north", "south"]},
    {"name": "admitted", "type": "date", "required": False},
]


def make_dataset(session: Session, *, owner: Organisation | None = None, **overrides: Any) -> Dataset:
    n = _n()
    data: dict[str, Any] = {
        "name": f"dataset-{n}",
        "title": f"Dataset {n}",
        "owner_org_id": (owner or make_org(session)).id,
        "tier": 2,
        "schema": DEFAULT_SCHEMA,
    }
    data.update(overrides)
    return datasets.register_dataset(session, SYSTEM, DatasetCreate(**data))


def make_project(
    session: Session,
    *,
    lead: User | None = None,
    dataset: Dataset | None = None,
    state: str = "draft",
    approver: User | None = None,
    **overrides: Any,
) -> Project:
    """A project led by ``lead`` requesting ``dataset``, moved to ``state`` through the real transitions."""
    lead = lead or make_user(session, roles=["researcher"])
    data: dict[str, Any] = {
        "title": f"Project {_n()}",
        "lay_summary": "A study of outcomes that is in the public interest.",
        "purpose": "policy_evidence",
        "legal_gateway": "dea",
        "start_date": today(),
        "end_date": today() + dt.timedelta(days=365),
    }
    data.update(overrides)
    actor = Actor.of(lead)
    project = projects.create_project(session, actor, ProjectCreate(**data))
    if dataset is not None:
        projects.request_dataset(
            session,
            actor,
            project.id,
            DatasetRequest(dataset_id=dataset.id, columns=dataset.research_columns[:1]),
        )
    path = {
        "draft": [],
        "submitted": ["submit"],
        "returned": ["submit", "return"],
        "rejected": ["submit", "reject"],
        "approved": ["submit", "approve"],
        "active": ["submit", "approve", "activate"],
        "closed": ["submit", "approve", "close"],
    }[state]
    for action in path:
        who = actor if action == "submit" else Actor.system("tests")
        if action in ("approve", "reject", "return") and approver is not None:
            who = Actor.of(approver)
        projects.transition(session, who, project.id, action, f"{action} by factory")
    return project


def make_agreement(
    session: Session, *, owner: Organisation, recipients: list[Organisation] | None = None, **overrides: Any
) -> DataSharingAgreement:
    data: dict[str, Any] = {
        "title": f"Agreement {_n()}",
        "owner_org_id": owner.id,
        "all_datasets": True,
        "purposes": ["policy_evidence"],
        "legal_gateways": ["dea"],
        "valid_from": today(),
        "valid_to": today() + dt.timedelta(days=365),
    }
    if recipients:
        data["recipient_org_ids"] = [r.id for r in recipients]
    else:
        data["any_accredited"] = True
    data.update(overrides)
    return agreements.grant_agreement(session, SYSTEM, AgreementCreate(**data))


def release_microdata(n: int = 300, seed: int = 11) -> pd.DataFrame:
    """Pseudonymous person-level rows of a project view: every region x age band cell is well above 10."""
    rng = np.random.default_rng(seed)
    age = rng.integers(18, 90, n)
    return pd.DataFrame(
        {
            "region": rng.choice(["north", "south"], n),
            "age": age,
            "age_band": pd.cut(age, [17, 39, 64, 200], labels=["18-39", "40-64", "65+"]).astype(str),
        }
    )


def make_release_request(
    session: Session,
    *,
    requester: User,
    project_id: str,
    frame: pd.DataFrame | None = None,
    submit: bool = True,
    **overrides: Any,
) -> ReleaseRequest:
    """A release request holding one region x age-band count table, built as a workspace builds it.

    The table is protected with the rules the server will apply (``GET .../disclosure-rules``) and staged
    with its declared computation and data; ``submit=True`` submits it, so the server re-runs its checks
    and the request waits for review.
    """
    actor = Actor.of(requester)
    data: dict[str, Any] = {"title": f"Release {_n()}", "justification": "Counts for the annual report."}
    data.update(overrides)
    request = releases.create_request(session, actor, ReleaseCreate(project_id=project_id, **data))
    frame = release_microdata() if frame is None else frame
    spec = TableSpec(index=("region",), columns=("age_band",))
    rules = releases.disclosure_rules(session, actor, project_id)
    table = protect_table(frame, list(spec.index), list(spec.columns), rules=rules).table
    releases.add_file(
        session,
        actor,
        request.id,
        name="counts.csv",
        kind="table",
        content=table_to_csv(table),
        spec=spec.to_dict(),
        data=write_data(frame[spec.needed_columns]),
        data_name="counts-data.parquet",
        description="People by region and age band.",
    )
    if submit:
        releases.submit(session, actor, request.id)
    return request


# The world -----------------------------------------------------------------------------------------


@dataclass
class World:
    """Ids, usernames and raw tokens of the objects every API test can use (plain data: it is reused
    across copies of a template database)."""

    ids: dict[str, str] = field(default_factory=dict)
    usernames: dict[str, str] = field(default_factory=dict)
    tokens: dict[str, str] = field(default_factory=dict)
    #: A second token per role, whose id the role may revoke.
    spare_token_ids: dict[str, str] = field(default_factory=dict)
    #: The data directory the world was built in: staged release files and bundles live under it and are
    #: copied into each test's own data directory with the database (see :func:`copy_world_files`).
    data_dir: str = ""

    def headers(self, role: str) -> dict[str, str]:
        """Bearer headers for ``role`` ('anonymous': none)."""
        if role == "anonymous":
            return {}
        return {"Authorization": f"Bearer {self.tokens[role]}"}


def build_world(session: Session) -> World:
    """The standard population (committed by the caller)."""
    world = World()
    health = make_org(session, slug="health", name="Health Data Agency", kind="data_owner")
    labour = make_org(session, slug="labour", name="Labour Market Office", kind="data_owner")
    uni = make_org(
        session,
        slug="uni",
        name="University",
        kind="research_body",
        accredited_until=today() + dt.timedelta(400),
    )
    people: dict[str, User] = {
        "admin": make_user(session, username="admin", roles=["admin"], organisation_id=uni.id),
        "data_owner": make_user(session, username="owner", roles=["data_owner"], organisation_id=health.id),
        "approver": make_user(session, username="approver", roles=["approver"], organisation_id=uni.id),
        "researcher": make_user(session, username="researcher", roles=["researcher"], organisation_id=uni.id),
        "output_checker": make_user(
            session, username="checker", roles=["output_checker"], organisation_id=uni.id
        ),
        "other_owner": make_user(
            session, username="other-owner", roles=["data_owner"], organisation_id=labour.id
        ),
        "colleague": make_user(session, username="colleague", roles=["researcher"], organisation_id=uni.id),
        "member": make_user(session, username="member", roles=["researcher"], organisation_id=uni.id),
        # The airlock: a researcher with an approved project (not the "researcher" role's user, whose
        # projects the API tests pin down), and a second output checker for two-person approval.
        "analyst": make_user(session, username="analyst", roles=["researcher"], organisation_id=uni.id),
        "second_checker": make_user(
            session, username="checker-2", roles=["output_checker"], organisation_id=uni.id
        ),
    }
    make_accreditation(session, people["researcher"])
    accreditation = make_accreditation(session, people["colleague"])
    make_accreditation(session, people["analyst"])
    hes = make_dataset(session, owner=health, name="hes")
    lfs = make_dataset(session, owner=labour, name="lfs")
    draft = make_project(session, lead=people["researcher"], dataset=hes, title="Draft study")
    projects.add_member(
        session, Actor.of(people["researcher"]), draft.id, MemberAdd(user_id=people["member"].id)
    )
    submitted = make_project(
        session, lead=people["researcher"], dataset=hes, state="submitted", title="Submitted"
    )
    pending = make_agreement(
        session,
        owner=health,
        recipients=[uni],
        valid_from=today() + dt.timedelta(days=30),
        valid_to=today() + dt.timedelta(days=400),
    )
    active = make_agreement(session, owner=health)
    other_agreement = make_agreement(session, owner=labour)
    budget_agreement = make_agreement(
        session, owner=labour, title="Labour data with a privacy budget", dp_epsilon=1.0, dp_delta=1e-6
    )
    release_ids = _build_airlock(session, people, lfs)
    package_request = make_package_request(session, people["researcher"])
    for role, user in people.items():
        world.usernames[role] = user.username
        world.ids[role] = user.id
        world.tokens[role] = make_token(session, user)
        spare, _raw = users.create_api_token(session, Actor.of(user), TokenCreate(name="spare"))
        world.spare_token_ids[role] = spare.id
    world.ids.update(
        health=health.id,
        labour=labour.id,
        uni=uni.id,
        hes=hes.id,
        lfs=lfs.id,
        draft=draft.id,
        submitted=submitted.id,
        pending_agreement=pending.id,
        active_agreement=active.id,
        other_agreement=other_agreement.id,
        budget_agreement=budget_agreement.id,
        colleague_accreditation=accreditation.id,
        package_request=package_request.id,
        **release_ids,
    )
    from tre_platform.settings import get_settings

    world.data_dir = str(get_settings().resolved_data_dir)
    return world


def _build_airlock(session: Session, people: dict[str, User], lfs: Dataset) -> dict[str, str]:
    """An approved project of the analyst on the labour dataset, and a release request in each state.

    The project uses only the labour office's data and is approved by the system, so the health data owner
    and the approver do not see it; it ends after the other projects (tests expire those by date).
    """
    analyst, checker, second = people["analyst"], people["output_checker"], people["second_checker"]
    lead = Actor.of(analyst)
    approved = make_project(
        session, lead=analyst, title="Approved study", end_date=today() + dt.timedelta(days=500)
    )
    projects.request_dataset(
        session, lead, approved.id, DatasetRequest(dataset_id=lfs.id, columns=["age", "region"])
    )
    projects.transition(session, lead, approved.id, "submit", "ready")
    projects.transition(session, SYSTEM, approved.id, "approve", "approved by factory")

    def request(title: str, *, submit: bool = True) -> ReleaseRequest:
        return make_release_request(
            session, requester=analyst, project_id=approved.id, title=title, submit=submit
        )

    draft = request("Draft counts", submit=False)
    in_review = request("Counts waiting for review")
    returned = request("Counts returned to the researcher")
    releases.review(session, Actor.of(checker), returned.id, "return", "label the age bands")
    approved_request = request("Approved counts")
    released = request("Released counts")
    for done in (approved_request, released):
        releases.review(session, Actor.of(checker), done.id, "approve")
        releases.review(session, Actor.of(second), done.id, "approve")
    releases.release(session, lead, released.id)
    return {
        "approved": approved.id,
        "draft_release": draft.id,
        "draft_release_file": draft.files[0].id,
        "release": in_review.id,
        "release_file": in_review.files[0].id,
        "returned_release": returned.id,
        "approved_release": approved_request.id,
        "released_release": released.id,
    }


def copy_world_files(world: World, data_dir: Path) -> None:
    """Copy the world's staged release files, bundles, signing key and audit head (its checkpoint and
    witness log: the world's audit events come with the database) into a test's data directory."""
    from tre_platform.settings import Settings

    if not world.data_dir:
        return
    for name in ("releases", "keys"):
        source = Path(world.data_dir) / name
        if source.is_dir():
            shutil.copytree(source, data_dir / name, dirs_exist_ok=True)
    source_dir = Path(world.data_dir)
    for source, target in (
        (source_dir / "audit.head", data_dir / "audit.head"),
        (
            Settings(data_dir=source_dir).resolved_audit_witness_file,
            Settings(data_dir=data_dir).resolved_audit_witness_file,
        ),
    ):
        if source.is_file():
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, target)


# Fixtures shared by tests/api and tests/security (imported into their conftest.py) ----------------


#: One deployment secret for the whole run, so a template database's audit signatures stay valid in copies.
TEST_SECRET_KEY = "test-" + secrets.token_urlsafe(32)
#: argon2id with tiny costs: the production defaults (~50 ms a hash) would dominate the permission matrix.
CHEAP_HASHER = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)


@pytest.fixture(scope="session", autouse=True)
def _cheap_argon2() -> Iterator[None]:
    with use_password_hasher(CHEAP_HASHER):
        yield


def _seed(url: str) -> World:
    from tre_platform.db.session import get_engine, make_session_factory

    with make_session_factory(get_engine(url=url))() as session:
        world = build_world(session)
        session.commit()
    return world


@pytest.fixture(scope="session")
def _sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, World]:
    """A migrated, seeded SQLite file built once; each test gets a copy (migrating per test costs ~0.4 s)."""
    from tre_platform.db.migrate import upgrade
    from tre_platform.db.session import reset_engines
    from tre_platform.settings import get_settings

    data_dir = tmp_path_factory.mktemp("template")
    path = data_dir / "tre.db"
    url = f"sqlite:///{path}"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TRE_DATA_DIR", str(data_dir))
        mp.setenv("TRE_ENV", "test")
        mp.setenv("TRE_DATABASE_URL", url)
        mp.setenv("TRE_SECRET_KEY", TEST_SECRET_KEY)
        get_settings.cache_clear()
        upgrade(url)
        world = _seed(url)
        reset_engines()  # closes the connections, which checkpoints the WAL into the file
    get_settings.cache_clear()
    return path, world


@pytest.fixture(scope="session")
def _postgres_template(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Engine, World]]:
    """A PostgreSQL schema migrated and seeded once per run; each test works inside a transaction on it
    that is rolled back afterwards (migrating and seeding a schema per test costs about a second)."""
    from sqlalchemy import create_engine, text

    from tre_platform.db.migrate import upgrade
    from tre_platform.db.session import reset_engines
    from tre_platform.settings import get_settings

    base = os.environ.get("TRE_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
    schema = f"w_{uuid.uuid4().hex[:12]}"
    admin = create_engine(base)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    url = f"{base}?options=-csearch_path%3D{schema}"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TRE_DATA_DIR", str(tmp_path_factory.mktemp("pg-template")))
        mp.setenv("TRE_ENV", "test")
        mp.setenv("TRE_DATABASE_URL", url)
        mp.setenv("TRE_SECRET_KEY", TEST_SECRET_KEY)
        get_settings.cache_clear()
        upgrade(url)
        world = _seed(url)
        reset_engines()
    get_settings.cache_clear()
    engine = create_engine(url)
    yield engine, world
    engine.dispose()
    with admin.begin() as conn:
        conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    admin.dispose()


@pytest.fixture
def world_sessions(
    request: pytest.FixtureRequest, _isolated_settings: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[World, sessionmaker[Session]]]:
    """The standard world and a session factory on it; nothing a test does is seen by another test."""
    from tre_platform.db.session import get_engine, make_session_factory
    from tre_platform.settings import get_settings

    monkeypatch.setenv("TRE_SECRET_KEY", TEST_SECRET_KEY)
    if request.config.getoption("--db") == "postgres":
        engine, seeded = request.getfixturevalue("_postgres_template")
        monkeypatch.setenv("TRE_DATABASE_URL", engine.url.render_as_string(hide_password=False))
        get_settings.cache_clear()
        _isolated_settings.mkdir(parents=True, exist_ok=True)
        copy_world_files(seeded, _isolated_settings)
        connection = engine.connect()
        outer = connection.begin()
        # Every session commit becomes a savepoint release; the outer transaction is rolled back at the end.
        factory = sessionmaker(
            bind=connection, join_transaction_mode="create_savepoint", expire_on_commit=False
        )
        yield seeded, factory
        outer.rollback()
        connection.close()
        return
    template, seeded = request.getfixturevalue("_sqlite_template")
    _isolated_settings.mkdir(parents=True, exist_ok=True)
    target = _isolated_settings / "tre.db"
    shutil.copyfile(template, target)
    copy_world_files(seeded, _isolated_settings)
    monkeypatch.setenv("TRE_DATABASE_URL", f"sqlite:///{target}")
    get_settings.cache_clear()
    yield seeded, make_session_factory(get_engine())


@pytest.fixture
def world(world_sessions: tuple[World, sessionmaker[Session]], db_url: str) -> World:
    """A database holding :func:`build_world`'s population."""
    return world_sessions[0]


@pytest.fixture(scope="session")
def _shared_app() -> Any:
    """One application for the run (building one costs ~80 ms); ``client`` points it at the test database."""
    from tre_platform.api.app import create_app
    from tre_platform.settings import Settings

    return create_app(Settings(env="test", database_url="sqlite://", secret_key=TEST_SECRET_KEY))


@pytest.fixture
def client(
    world_sessions: tuple[World, sessionmaker[Session]], db_url: str, _shared_app: Any
) -> Iterator[TestClient]:
    """A client of the app, on the world's database (server errors come back as responses)."""
    from tre_platform.settings import get_settings

    _shared_app.state.settings = get_settings()
    _shared_app.state.session_factory = world_sessions[1]
    with TestClient(_shared_app, raise_server_exceptions=False) as test_client:
        yield test_client


@pytest.fixture
def db(world_sessions: tuple[World, sessionmaker[Session]], db_url: str) -> Iterator[Session]:
    """A session on the world's database, for arranging and checking state directly."""
    with world_sessions[1]() as session:
        yield session


@pytest.fixture
def db_url(world_sessions: tuple[World, sessionmaker[Session]]) -> str:
    """Overrides the root conftest's empty database: in tests/api and tests/security it holds the world.

    (Also marks these tests as database tests, which ``--db postgres`` selects.)
    """
    from tre_platform.settings import get_settings

    return get_settings().resolved_database_url


@pytest.fixture
def session(db: Session) -> Session:
    """Overrides the root conftest's session: the world's session (on PostgreSQL, inside the test's
    rolled-back transaction)."""
    return db


def fresh(session: Session) -> Session:
    """End the test session's transaction so its next read sees what the app committed.

    Commit, not rollback: on PostgreSQL the test's session and the app's share one connection, and
    rolling back the test session's savepoint would also undo everything the app committed after it.
    """
    session.commit()
    session.expire_all()
    return session


def row_counts(session: Session) -> dict[str, int]:
    """Rows per table of the control plane, read afresh (to prove a refused request changed nothing)."""
    from sqlalchemy import func, select

    from tre_platform.db.models import Base

    fresh(session)
    return {
        name: int(session.scalar(select(func.count()).select_from(table)) or 0)
        for name, table in sorted(Base.metadata.tables.items())
    }
