"""The ``tre`` command: operate a deployment from the host.

The CLI acts as the *operator* (the system actor, audited as ``cli:<unix user>``) unless ``--as USER``
names a user, in which case every check that user would face applies (useful for scripted approvals
and for reproducing what a user saw). Every listing takes ``--json``.
"""

from __future__ import annotations

import datetime as dt
import getpass
import json
import logging
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from pydantic import BaseModel, ValidationError
from rich.console import Console
from rich.table import Table
from sqlalchemy import select
from sqlalchemy.orm import Session

from tre_platform.actor import Actor
from tre_platform.errors import TreError
from tre_platform.settings import get_settings

app = typer.Typer(help="tre: a Trusted Research Environment.", no_args_is_help=True, add_completion=False)
db_app = typer.Typer(help="Database migrations.", no_args_is_help=True)
audit_app = typer.Typer(help="The tamper-evident audit log.", no_args_is_help=True)
org_app = typer.Typer(help="Organisations.", no_args_is_help=True)
user_app = typer.Typer(help="Users, roles, accreditations and tokens.", no_args_is_help=True)
project_app = typer.Typer(help="Research projects and their approval.", no_args_is_help=True)
dataset_app = typer.Typer(help="Datasets registered by data owners.", no_args_is_help=True)
agreement_app = typer.Typer(help="Enterprise-level data-sharing agreements.", no_args_is_help=True)
for sub, name in [
    (db_app, "db"),
    (audit_app, "audit"),
    (org_app, "org"),
    (user_app, "user"),
    (project_app, "project"),
    (dataset_app, "dataset"),
    (agreement_app, "agreement"),
]:
    app.add_typer(sub, name=name)

console = Console(width=None if sys.stdout.isatty() else 160)
err_console = Console(stderr=True, width=None if sys.stderr.isatty() else 160)
T = TypeVar("T")

JsonFlag = Annotated[bool, typer.Option("--json", help="print JSON instead of a table")]
AsUser = Annotated[str | None, typer.Option("--as", help="act as this user (their permissions apply)")]


def _fail(message: str, code: int = 1) -> typer.Exit:
    err_console.print(f"[bold red]error:[/] {message}", soft_wrap=True)
    return typer.Exit(code)


@contextmanager
def _session() -> Iterator[Session]:
    from tre_platform.db.session import session_scope

    with session_scope() as session:
        yield session


def _run(fn: Callable[[], T]) -> T:
    """Run a command body; typed errors become a one-line message and exit code 1, never a traceback."""
    try:
        return fn()
    except TreError as exc:
        field = f" ({exc.field})" if exc.field else ""
        raise _fail(f"{exc.message}{field}") from None
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        raise _fail(f"invalid input: {problems}") from None
    except ValueError as exc:  # settings problems and the like
        raise _fail(str(exc)) from None


def _actor(session: Session, as_user: str | None) -> Actor:
    if as_user is None:
        return Actor.system(f"cli:{getpass.getuser()}")
    from tre_platform.api.users.models import User

    user = session.scalar(select(User).where(User.username == as_user))
    if user is None:
        raise _fail(f"no user named {as_user!r}")
    return Actor.of(user)


def _resolve(session: Session, model: Any, value: str, *fields: str) -> Any:
    """Find a row by id or by one of its human names (slug, username, code, name, reference)."""
    row = session.get(model, value)
    if row is not None:
        return row
    for field in fields:
        row = session.scalar(select(model).where(getattr(model, field) == value))
        if row is not None:
            return row
    raise _fail(f"no {model.__name__.lower()} called {value!r}")


def _emit(rows: Sequence[Any] | Any, schema: type[BaseModel], as_json: bool, columns: Sequence[str]) -> None:
    many = isinstance(rows, (list, tuple))
    items = [schema.model_validate(r) for r in (rows if many else [rows])]
    if as_json:
        data = [item.model_dump(mode="json") for item in items]
        sys.stdout.write(json.dumps(data if many else data[0], indent=2) + "\n")
        return
    table = Table(*columns, show_lines=False)
    for item in items:
        dumped = item.model_dump(mode="json")
        table.add_row(*[_cell(dumped.get(c)) for c in columns])
    console.print(table)


def _cell(value: Any) -> str:
    if isinstance(value, list):
        return ", ".join(_cell(v) for v in value)
    if isinstance(value, dict):
        return ", ".join(f"{k}={v}" for k, v in value.items())
    return "" if value is None else str(value)


def _load_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise _fail(f"{path} does not exist") from None
    except json.JSONDecodeError as exc:
        raise _fail(f"{path} is not valid JSON: line {exc.lineno} column {exc.colno}: {exc.msg}") from None


# db -------------------------------------------------------------------------------------------------


@db_app.command("upgrade")
def db_upgrade(revision: str = typer.Argument("head")) -> None:
    """Create or migrate the database to the newest schema."""
    from tre_platform.db.migrate import current_revision, upgrade

    def body() -> None:
        settings = get_settings()
        upgrade(None, revision)
        console.print(f"database at revision [bold]{current_revision()}[/] ({_safe_url(settings)})")

    _run(body)


@db_app.command("current")
def db_current() -> None:
    """Show the database's migration revision."""
    from tre_platform.db.migrate import current_revision

    console.print(_run(lambda: current_revision()) or "empty database: run `tre db upgrade`")


def _safe_url(settings: Any) -> str:
    from sqlalchemy.engine import make_url

    return make_url(settings.resolved_database_url).render_as_string(hide_password=True)


# audit ----------------------------------------------------------------------------------------------


@audit_app.command("verify")
def audit_verify(as_json: JsonFlag = False) -> None:
    """Walk the hash chain and report the first broken link (exit code 2 when broken)."""
    from tre_platform.api.audit.service import verify

    def body() -> None:
        with _session() as session:
            result = verify(session)
        if as_json:
            sys.stdout.write(
                json.dumps(
                    {
                        "ok": result.ok,
                        "checked": result.checked,
                        "head_seq": result.head_seq,
                        "head_hash": result.head_hash,
                        "broken_seq": result.broken_seq,
                        "problem": result.problem,
                    }
                )
                + "\n"
            )
        else:
            (console if result.ok else err_console).print(
                ("[green]OK[/] " if result.ok else "[bold red]BROKEN[/] ") + result.message()
            )
        if not result.ok:
            raise typer.Exit(2)

    _run(body)


@audit_app.command("list")
def audit_list(
    action: Annotated[str | None, typer.Option(help="only events whose action starts with this")] = None,
    actor: Annotated[str | None, typer.Option(help="only events by this actor")] = None,
    target: Annotated[str | None, typer.Option(help="only events about this target id")] = None,
    limit: int = 50,
    as_json: JsonFlag = False,
) -> None:
    """The newest audit events."""
    from tre_platform.api.audit.models import AuditEvent
    from tre_platform.api.audit.schemas import AuditEventOut

    def body() -> None:
        with _session() as session:
            query = select(AuditEvent).order_by(AuditEvent.seq.desc()).limit(limit)
            if action:
                query = query.where(AuditEvent.action.startswith(action))
            if actor:
                query = query.where(AuditEvent.actor == actor)
            if target:
                query = query.where(AuditEvent.target_id == target)
            rows = list(session.scalars(query))
            _emit(rows, AuditEventOut, as_json, ["seq", "at", "actor", "action", "target_id", "decision"])

    _run(body)


# up -------------------------------------------------------------------------------------------------


@app.command("up")
def up(
    demo: Annotated[bool, typer.Option(help="seed the demo world on first run")] = False,
    host: Annotated[str | None, typer.Option(help="bind address (default TRE_HOST)")] = None,
    port: Annotated[int | None, typer.Option(help="port (default TRE_PORT)")] = None,
    hub: Annotated[bool, typer.Option(help="also start JupyterHub when it can run here")] = True,
    serve: Annotated[bool, typer.Option(help="start the servers (--no-serve: set up and exit)")] = True,
    mirror: Annotated[bool, typer.Option(help="also start the vetted package mirror")] = True,
) -> None:
    """Migrate, optionally seed the demo, print how to log in, and start the control plane and the hub."""
    from tre_platform.db.migrate import upgrade

    settings = get_settings()

    def body() -> None:
        settings.get_secret_key()  # generated on first run, before anything needs it
        upgrade()
        if demo:
            from tre_platform.demo.seed import is_seeded, read_credentials, seed

            if settings.kek_source() == (None, None):
                path = settings.create_demo_kek()
                err_console.print(
                    f"[yellow]demo:[/] generated a key-encryption key at {path}. It sits beside the keys it "
                    "protects, so it is for demo data only: set TRE_KEK or TRE_KEK_FILE (or a KMS) "
                    "for real data.",
                    soft_wrap=True,
                )
            from tre_platform.hooks import suppressed

            with _session() as session, suppressed():
                if not is_seeded(session):
                    console.print("seeding the demo world ...")
                    seed(session)
            _demo_data()
            _print_demo(read_credentials())
        with _session() as session:
            from tre_platform.api.projects.service import expire_due

            expire_due(session, Actor.system("tre-up"))

    _run(body)
    url = f"http://{host or settings.host}:{port or settings.port}"
    console.print(f"\ncontrol plane: [bold]{url}/[/]   API: {url}/api/v1/docs   health: {url}/healthz")
    if not serve:
        return
    hub_process = _start_hub() if hub else None
    mirror_process = _start_mirror() if mirror else None
    import uvicorn

    from tre_platform.api.app import create_app
    from tre_platform.scheduler import start as start_scheduler

    # Expiries (every minute) and retention (daily) are enforced in-process: no outside cron needed.
    scheduler = start_scheduler() if settings.scheduler_enabled else None
    if scheduler is not None:
        jobs = ", ".join(f"{job.id} every {job.trigger.interval}" for job in scheduler.get_jobs())
        console.print(f"scheduler: {jobs}", soft_wrap=True)
    try:
        uvicorn.run(
            create_app(settings), host=host or settings.host, port=port or settings.port, log_level="info"
        )
    finally:
        if scheduler is not None:
            scheduler.shutdown(wait=True)
            console.print("scheduler stopped")
        if hub_process is not None:
            from tre_platform.hub.cli import stop_hub

            stop_hub(hub_process)
        if mirror_process is not None:
            mirror_process.terminate()
            mirror_process.wait(timeout=30)


def _start_mirror() -> Any:
    """Start the vetted package mirror, and approve the base set into it in the background."""
    from tre_platform.api.packages.cli import approve_base_set_in_background
    from tre_platform.api.packages.mirror import index_url, start_mirror

    settings = get_settings()
    console.print(f"package mirror (approved wheels only): [bold]{index_url(settings)}[/]")
    if settings.package_base_set:
        approve_base_set_in_background()
    return start_mirror(settings)


def _demo_data() -> None:
    """Ingest the demo deliveries (first run only) and build the views of every usable project."""
    from tre_platform.api.projects.models import USABLE_STATES, Project
    from tre_platform.demo.deliveries import ingest_demo
    from tre_platform.hooks import suppressed
    from tre_platform.pipelines import rich_progress
    from tre_platform.views import build_views

    # Splink explains each comparison level it cannot train; useful in a report, noise in a demo start-up.
    logging.getLogger("splink").setLevel(logging.ERROR)
    with _session() as session, suppressed():
        published = ingest_demo(session, progress=rich_progress)
    if published:
        console.print(f"ingested {len(published)} demo dataset versions")
    with _session() as session:
        projects = session.scalars(select(Project).where(Project.state.in_(USABLE_STATES))).all()
        for project in projects:
            try:
                result = build_views(session, Actor.system("tre-up"), project.id)
            except TreError as exc:
                err_console.print(
                    f"[yellow]views of {project.code} not built:[/] {exc.message}", soft_wrap=True
                )
                continue
            built = [o.dataset for o in result.outcomes if o.action in ("built", "unchanged")]
            console.print(f"views of {project.code}: {', '.join(built) or 'none'}")
    from tre_platform.demo.releases import seed_releases

    with _session() as session, suppressed():
        seed_releases(session)


def _start_hub() -> Any:
    """Start JupyterHub beside the control plane, or say why it cannot run here."""
    import subprocess

    from tre_platform.hub.cli import preflight
    from tre_platform.hub.config import CONFIG_FILE, hub_dir

    problems = preflight()
    if problems:
        for problem in problems:
            err_console.print(f"[yellow]JupyterHub not started:[/] {problem}", soft_wrap=True)
        return None
    console.print(f"JupyterHub (researchers' workspaces): [bold]{get_settings().hub_bind_url}/[/]")
    # Its own session: Ctrl-C reaches `tre up` only, which then stops the hub (and all it started) in order.
    return subprocess.Popen(  # a fixed argv: our interpreter running jupyterhub with our config
        [sys.executable, "-m", "jupyterhub", "-f", str(CONFIG_FILE)], cwd=hub_dir(), start_new_session=True
    )


def _print_demo(logins: Sequence[Any]) -> None:
    # Never a password or a TOTP secret on stdout (terminal scroll-back, CI logs): only where they are.
    table = Table("user", "roles", "organisation", "second factor", title="demo logins")
    for login in logins:
        table.add_row(
            login.username, ", ".join(login.roles), login.organisation, "TOTP" if login.totp_secret else "-"
        )
    console.print(table)
    console.print(
        "The demo users' passwords and TOTP secrets are in "
        f"{get_settings().resolved_data_dir / 'demo-credentials.json'} (mode 0600, readable by this user "
        "only). For a TOTP code, add the secret to an authenticator app or run `oathtool --totp -b SECRET`."
    )


# org ------------------------------------------------------------------------------------------------


@org_app.command("create")
def org_create(
    slug: str,
    name: str,
    kind: Annotated[str, typer.Option(help="data_owner | research_body | both")],
    accredited_until: Annotated[str | None, typer.Option(help="YYYY-MM-DD")] = None,
    as_user: AsUser = None,
    as_json: JsonFlag = False,
) -> None:
    """Onboard an organisation."""
    from tre_platform.api.orgs.schemas import OrgCreate, OrgOut
    from tre_platform.api.orgs.service import create_org

    def body() -> None:
        with _session() as session:
            data = OrgCreate.model_validate(
                {"slug": slug, "name": name, "kind": kind, "accredited_until": accredited_until}
            )
            org = create_org(session, _actor(session, as_user), data)
            _emit(org, OrgOut, as_json, ["id", "slug", "name", "kind", "accredited_until"])

    _run(body)


@org_app.command("list")
def org_list(as_user: AsUser = None, as_json: JsonFlag = False) -> None:
    """List organisations."""
    from tre_platform.api.orgs.schemas import OrgOut
    from tre_platform.api.orgs.service import list_orgs

    def body() -> None:
        with _session() as session:
            rows = list_orgs(session, _actor(session, as_user), limit=500)
            _emit(rows, OrgOut, as_json, ["id", "slug", "name", "kind", "accredited_until"])

    _run(body)


# user -----------------------------------------------------------------------------------------------

USER_COLUMNS = ["username", "full_name", "organisation_id", "roles", "totp_enabled", "is_active"]


@user_app.command("create")
def user_create(
    username: str,
    full_name: Annotated[str, typer.Option()],
    email: Annotated[str, typer.Option()],
    org: Annotated[str, typer.Option(help="organisation slug or id")],
    role: Annotated[list[str], typer.Option(help="role; data_owner is for --org")] = [],  # noqa: B006
    password_stdin: Annotated[bool, typer.Option(help="read the initial password from stdin")] = False,
    as_user: AsUser = None,
    as_json: JsonFlag = False,
) -> None:
    """Create a user with roles (admin)."""
    from tre_platform.api.orgs.models import Organisation
    from tre_platform.api.users.schemas import UserCreate, UserOut
    from tre_platform.api.users.service import create_user

    def body() -> None:
        with _session() as session:
            organisation = _resolve(session, Organisation, org, "slug")
            grants = [
                {"role": r, "organisation_id": organisation.id if r == "data_owner" else None} for r in role
            ]
            password = sys.stdin.readline().rstrip("\n") if password_stdin else None
            data = UserCreate.model_validate(
                {
                    "username": username,
                    "full_name": full_name,
                    "email": email,
                    "organisation_id": organisation.id,
                    "password": password,
                    "roles": grants,
                }
            )
            user = create_user(session, _actor(session, as_user), data)
            _emit(user, UserOut, as_json, USER_COLUMNS)

    _run(body)


@user_app.command("list")
def user_list(as_user: AsUser = None, as_json: JsonFlag = False) -> None:
    """List users."""
    from tre_platform.api.users.schemas import UserOut
    from tre_platform.api.users.service import list_users

    def body() -> None:
        with _session() as session:
            rows = list_users(session, _actor(session, as_user))
            _emit(rows, UserOut, as_json, USER_COLUMNS)

    _run(body)


@user_app.command("accredit")
def user_accredit(
    username: str,
    scheme: Annotated[str, typer.Option()],
    granted_on: Annotated[str, typer.Option(help="YYYY-MM-DD")],
    expires_on: Annotated[str, typer.Option(help="YYYY-MM-DD")],
    reference: Annotated[str | None, typer.Option()] = None,
    as_user: AsUser = None,
    as_json: JsonFlag = False,
) -> None:
    """Record an accreditation for a user (admin)."""
    from tre_platform.api.users.models import User
    from tre_platform.api.users.schemas import AccreditationCreate, UserOut
    from tre_platform.api.users.service import add_accreditation

    def body() -> None:
        with _session() as session:
            user = _resolve(session, User, username, "username")
            data = AccreditationCreate.model_validate(
                {"scheme": scheme, "granted_on": granted_on, "expires_on": expires_on, "reference": reference}
            )
            add_accreditation(session, _actor(session, as_user), user.id, data)
            session.refresh(user)
            _emit(user, UserOut, as_json, USER_COLUMNS)

    _run(body)


@user_app.command("set-password")
def user_set_password(username: str, as_user: AsUser = None) -> None:
    """Set a user's password (admin); the new password is read from stdin, never from an argument."""
    from tre_platform.api.users.models import User
    from tre_platform.api.users.schemas import PasswordSet
    from tre_platform.api.users.service import set_password

    def body() -> None:
        password = sys.stdin.readline().rstrip("\n")
        with _session() as session:
            user = _resolve(session, User, username, "username")
            set_password(
                session, _actor(session, as_user), user.id, PasswordSet(new_password=password).new_password
            )
        console.print(f"password of {username} set")

    _run(body)


@user_app.command("token")
def user_token(
    username: str,
    name: Annotated[str, typer.Option(help="what the token is for")] = "cli",
    days: Annotated[int, typer.Option(help="lifetime in days")] = 30,
) -> None:
    """Issue an API token for a user (printed once; stored only hashed)."""
    from tre_platform.api.users.models import User
    from tre_platform.api.users.schemas import TokenCreate
    from tre_platform.api.users.service import create_api_token

    def body() -> None:
        with _session() as session:
            user = _resolve(session, User, username, "username")
            _, raw = create_api_token(session, Actor.of(user), TokenCreate(name=name, expires_in_days=days))
        sys.stdout.write(raw + "\n")

    _run(body)


# project --------------------------------------------------------------------------------------------

PROJECT_COLUMNS = ["code", "title", "state", "purpose", "legal_gateway", "start_date", "end_date"]


@project_app.command("list")
def project_list(
    state: Annotated[str | None, typer.Option(help="only projects in this state")] = None,
    as_user: AsUser = None,
    as_json: JsonFlag = False,
) -> None:
    """List projects (those the acting user may see)."""
    from tre_platform.api.projects.schemas import ProjectOut
    from tre_platform.api.projects.service import list_projects

    def body() -> None:
        with _session() as session:
            rows = list_projects(session, _actor(session, as_user))
            if state:
                rows = [r for r in rows if r.state.value == state]
            _emit(rows, ProjectOut, as_json, PROJECT_COLUMNS)

    _run(body)


@project_app.command("show")
def project_show(project: str, as_user: AsUser = None, as_json: JsonFlag = False) -> None:
    """Show one project, its datasets and its decision trail."""
    from tre_platform.api.projects.models import Project
    from tre_platform.api.projects.schemas import ProjectOut
    from tre_platform.api.projects.service import get_project

    def body() -> None:
        with _session() as session:
            row = _resolve(session, Project, project, "code")
            row = get_project(session, _actor(session, as_user), row.id)
            if as_json:
                _emit(row, ProjectOut, True, [])
                return
            _emit(row, ProjectOut, False, PROJECT_COLUMNS)
            for request in row.datasets:
                console.print(f"  dataset {request.dataset_id}: {', '.join(request.columns)}")
            for decision in row.decisions:
                console.print(
                    f"  {decision.at:%Y-%m-%d %H:%M} {decision.action}: "
                    f"{decision.from_state} -> {decision.to_state} {decision.comment}"
                )

    _run(body)


@project_app.command("create")
def project_create(
    spec: Annotated[Path, typer.Argument(help="JSON file with the ProjectCreate fields")],
    as_user: AsUser = None,
    as_json: JsonFlag = False,
) -> None:
    """Create a draft project from a JSON file (as the applying researcher: use --as)."""
    from tre_platform.api.projects.schemas import ProjectCreate, ProjectOut
    from tre_platform.api.projects.service import create_project

    def body() -> None:
        data = ProjectCreate.model_validate(_load_json(spec))
        with _session() as session:
            row = create_project(session, _actor(session, as_user), data)
            _emit(row, ProjectOut, as_json, PROJECT_COLUMNS)

    _run(body)


@project_app.command("transition")
def project_transition(
    project: str,
    action: Annotated[
        str, typer.Argument(help="submit | approve | reject | return | activate | close | revise")
    ],
    comment: Annotated[str, typer.Option()] = "",
    as_user: AsUser = None,
    as_json: JsonFlag = False,
) -> None:
    """Move a project through its approval state machine."""
    from tre_platform.api.projects.models import Project
    from tre_platform.api.projects.schemas import ProjectOut
    from tre_platform.api.projects.service import transition

    def body() -> None:
        with _session() as session:
            row = _resolve(session, Project, project, "code")
            row = transition(session, _actor(session, as_user), row.id, action, comment)
            _emit(row, ProjectOut, as_json, PROJECT_COLUMNS)

    _run(body)


@project_app.command("expire-due")
def project_expire_due(as_json: JsonFlag = False) -> None:
    """Mark approved/active projects past their end date as expired (decisions already treat them so)."""
    from tre_platform.api.projects.schemas import ProjectOut
    from tre_platform.api.projects.service import expire_due

    def body() -> None:
        with _session() as session:
            rows = expire_due(session, Actor.system(f"cli:{getpass.getuser()}"))
            _emit(rows, ProjectOut, as_json, PROJECT_COLUMNS)

    _run(body)


# dataset --------------------------------------------------------------------------------------------

DATASET_COLUMNS = ["name", "title", "owner_org_id", "tier"]


@dataset_app.command("register")
def dataset_register(
    spec: Annotated[Path, typer.Argument(help="JSON file with the DatasetCreate fields (incl. schema)")],
    as_user: AsUser = None,
    as_json: JsonFlag = False,
) -> None:
    """Register a dataset and its schema (a data owner of the owning organisation, or admin).

    The file: {"name": "people", "title": "People", "owner_org_id": "<org id>", "tier": 2,
    "on_unmatched": "add", "schema": [{"name": "rec_id", "type": "string"},
    {"name": "surname", "type": "string", "identifier": true, "index": "demographic"},
    {"name": "soc_sec_id", "type": "string", "identifier": true, "index": "demographic",
    "maps_to": "national_id"}, {"name": "born", "type": "date", "format": "%d/%m/%Y",
    "identifier": true, "index": "demographic", "maps_to": "dob"}]}.
    Column types: string, integer, float, boolean, date (format: strptime, default %Y-%m-%d), datetime.
    maps_to names an identifier declared in policies/indexes/<index>.toml (aliases need none).
    """
    from tre_platform.api.datasets.schemas import DatasetCreate, DatasetOut
    from tre_platform.api.datasets.service import register_dataset

    def body() -> None:
        data = DatasetCreate.model_validate(_load_json(spec))
        with _session() as session:
            row = register_dataset(session, _actor(session, as_user), data)
            _emit(row, DatasetOut, as_json, DATASET_COLUMNS)

    _run(body)


@dataset_app.command("list")
def dataset_list(as_user: AsUser = None, as_json: JsonFlag = False) -> None:
    """The catalogue."""
    from tre_platform.api.datasets.schemas import DatasetOut
    from tre_platform.api.datasets.service import list_datasets

    def body() -> None:
        with _session() as session:
            _emit(list_datasets(session, _actor(session, as_user)), DatasetOut, as_json, DATASET_COLUMNS)

    _run(body)


@dataset_app.command("versions")
def dataset_versions(dataset: str, as_user: AsUser = None, as_json: JsonFlag = False) -> None:
    """Published versions of a dataset."""
    from tre_platform.api.datasets.models import Dataset
    from tre_platform.api.datasets.schemas import DatasetVersionOut
    from tre_platform.api.datasets.service import list_versions

    def body() -> None:
        with _session() as session:
            row = _resolve(session, Dataset, dataset, "name")
            rows = list_versions(session, _actor(session, as_user), row.id)
            _emit(rows, DatasetVersionOut, as_json, ["version", "row_count", "created_at", "content_sha256"])

    _run(body)


# agreement ------------------------------------------------------------------------------------------

AGREEMENT_COLUMNS = ["reference", "title", "owner_org_id", "status", "valid_from", "valid_to"]


@agreement_app.command("grant")
def agreement_grant(
    spec: Annotated[Path, typer.Argument(help="JSON file with the AgreementCreate fields")],
    as_user: AsUser = None,
    as_json: JsonFlag = False,
) -> None:
    """Grant an enterprise-level data-sharing agreement."""
    from tre_platform.api.agreements.router import to_out
    from tre_platform.api.agreements.schemas import AgreementCreate, AgreementOut
    from tre_platform.api.agreements.service import grant_agreement

    def body() -> None:
        data = AgreementCreate.model_validate(_load_json(spec))
        with _session() as session:
            row = grant_agreement(session, _actor(session, as_user), data)
            _emit(to_out(row), AgreementOut, as_json, AGREEMENT_COLUMNS)

    _run(body)


@agreement_app.command("list")
def agreement_list(as_user: AsUser = None, as_json: JsonFlag = False) -> None:
    """Agreements (those the acting user may see)."""
    from tre_platform.api.agreements.router import to_out
    from tre_platform.api.agreements.schemas import AgreementOut
    from tre_platform.api.agreements.service import list_agreements

    def body() -> None:
        with _session() as session:
            rows = list_agreements(session, _actor(session, as_user))
            _emit([to_out(r) for r in rows], AgreementOut, as_json, AGREEMENT_COLUMNS)

    _run(body)


@agreement_app.command("revoke")
def agreement_revoke(
    agreement: str,
    reason: Annotated[str, typer.Option(help="why; recorded and shown to affected projects")],
    as_user: AsUser = None,
    as_json: JsonFlag = False,
) -> None:
    """Revoke an agreement: access it supported ends at the next policy decision."""
    from tre_platform.api.agreements.models import DataSharingAgreement
    from tre_platform.api.agreements.router import to_out
    from tre_platform.api.agreements.schemas import AgreementOut, AgreementRevoke
    from tre_platform.api.agreements.service import revoke_agreement

    def body() -> None:
        with _session() as session:
            row = _resolve(session, DataSharingAgreement, agreement, "reference")
            row = revoke_agreement(session, _actor(session, as_user), row.id, AgreementRevoke(reason=reason))
            _emit(to_out(row), AgreementOut, as_json, AGREEMENT_COLUMNS)

    _run(body)


def _mount_subapps() -> None:
    from tre_platform.api.datasets.cli import register_catalogue_commands
    from tre_platform.api.packages.cli import package_app
    from tre_platform.api.releases.cli import release_app
    from tre_platform.hub.cli import hub_app
    from tre_platform.pipelines.cli import register_dataset_commands
    from tre_platform.policy.cli import policy_app
    from tre_platform.views.cli import view_app

    app.add_typer(policy_app, name="policy")
    app.add_typer(view_app, name="view")
    app.add_typer(hub_app, name="hub")
    app.add_typer(release_app, name="release")
    app.add_typer(package_app, name="package")
    register_dataset_commands(dataset_app)
    register_catalogue_commands(dataset_app)


_mount_subapps()


def main() -> None:  # pragma: no cover
    app()


_ = dt  # dates are parsed by the schemas
