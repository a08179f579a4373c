"""`tre release ...`: verify released bundles; list, show and review release requests.

The lead mounts :data:`release_app` as ``tre release``. Every command is a thin layer over
:mod:`tre_platform.api.releases.service` (and :func:`~tre_platform.api.releases.bundle.verify_bundle`), so
the CLI applies exactly the API's rules. Like the rest of ``tre``, commands act as the operator unless
``--as USER`` names a user; reviewing always needs ``--as`` (the operator is not an output checker).

Example:
    $ tre release verify release-4f2a.zip --key tre-release.pub
    bundle verified: signature valid, 2 file(s) match their SHA-256
    $ tre release list --state in_review --as checker1
    $ tre release review 4f2a... approve --comment "safe counts" --as checker2
"""

from __future__ import annotations

import getpass
import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from tre_platform.actor import Actor
from tre_platform.errors import TreError

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    from tre_platform.api.releases.models import ReleaseRequest, ReleaseState

release_app = typer.Typer(
    help="The airlock: verify released bundles; list, show and review release requests.",
    no_args_is_help=True,
)
console = Console(width=None if sys.stdout.isatty() else 160)
err_console = Console(stderr=True, width=None if sys.stderr.isatty() else 160)
T = TypeVar("T")

JsonFlag = Annotated[bool, typer.Option("--json", help="print JSON instead of text")]
AsUser = Annotated[str | None, typer.Option("--as", help="act as this user (their permissions apply)")]

LIST_COLUMNS = ["id", "project", "requester", "title", "state", "checks", "approvals", "submitted"]


def _fail(message: str) -> typer.Exit:
    # Messages quote user input (titles, file names, lists): escape it so it is never read as markup.
    err_console.print(f"[bold red]error:[/] {escape(message)}", soft_wrap=True, highlight=False)
    return typer.Exit(1)


def _run(body: Callable[[], T]) -> T:
    """Run a command body: a typed error becomes its message and exit code 1, never a traceback."""
    try:
        return body()
    except TreError as exc:  # a policy denial's message already lists its reasons
        field = f" ({exc.field})" if exc.field else ""
        raise _fail(f"{exc.message}{field}") from None


@contextmanager
def _session() -> Iterator[Session]:
    from tre_platform.db.session import session_scope

    with session_scope() as session:
        yield session


def _actor(session: Session, as_user: str | None) -> Actor:
    if as_user is None:
        return Actor.system(f"cli:{getpass.getuser()}")
    from tre_platform.api.users.models import User

    user = session.scalar(select(User).where(User.username == as_user))
    if user is None:
        raise _fail(f"no user named {as_user!r}")
    return Actor.of(user)


def _write_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2) + "\n")


def _out(request: ReleaseRequest) -> dict[str, Any]:
    """A request as the API returns it (``ReleaseOut``), as JSON-ready data."""
    from tre_platform.api.releases import service
    from tre_platform.api.releases.schemas import ReleaseOut

    out = ReleaseOut.model_validate(request)
    out.allowed_actions = service.allowed_actions(request.state)
    return out.model_dump(mode="json")


def _approvals(request: ReleaseRequest) -> str:
    from tre_platform.api.releases.models import REQUIRED_APPROVALS

    return f"{len(request.approvals)}/{REQUIRED_APPROVALS}"


# verify ---------------------------------------------------------------------------------------------


def _key_from_file(path: Path) -> Ed25519PublicKey:
    """The Ed25519 public key in ``path``: a public key PEM, or the private key PEM it belongs to."""
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from tre_platform.api.releases.bundle import BundleError, load_public_key

    try:
        data = path.read_bytes()
    except OSError as exc:
        raise _fail(f"cannot read the key file {path}: {exc.strerror or exc}") from None
    try:
        return load_public_key(data)
    except (ValueError, UnsupportedAlgorithm, BundleError):
        pass
    try:
        private = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        private = None
    if isinstance(private, Ed25519PrivateKey):
        return private.public_key()
    raise _fail(
        f"{path} is not an Ed25519 key in PEM form; use the public key from "
        "GET /api/v1/releases/signing-key of the TRE that released the bundle"
    )


def _deployment_key() -> Ed25519PublicKey:
    """This deployment's release-signing key, never generating one (a new key verifies nothing)."""
    from tre_platform.api.releases import bundle as bundles
    from tre_platform.settings import get_settings

    settings = get_settings()
    path = settings.resolved_data_dir / bundles.KEY_FILE
    if not path.is_file():
        raise _fail(
            f"this deployment has no release-signing key ({path}); pass --key PEMFILE with the public key "
            "of the TRE that released the bundle (GET /api/v1/releases/signing-key)"
        )
    try:
        return bundles.signing_key(settings).public_key()
    except (ValueError, bundles.BundleError) as exc:
        raise _fail(f"the deployment's signing key {path} cannot be read: {exc}") from None


@release_app.command("verify")
def verify_command(
    bundle: Annotated[Path, typer.Argument(help="the released bundle (zip)")],
    key: Annotated[
        Path | None,
        typer.Option(
            "--key", help="public key PEM of the releasing TRE (default: this deployment's signing key)"
        ),
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Check BUNDLE's Ed25519 signature and every file's SHA-256. Exit code 0 if it verifies, else 1."""
    from tre_platform.api.releases.bundle import fingerprint, verify_bundle

    if not bundle.is_file():
        raise _fail(f"{bundle} does not exist or is not a file")
    public = _key_from_file(key) if key is not None else _deployment_key()
    check = verify_bundle(bundle, public)
    release = check.manifest.get("release", {})
    if as_json:
        _write_json(
            {
                "ok": check.ok,
                "problems": check.problems,
                "message": check.message(),
                "bundle": str(bundle),
                "key_fingerprint": fingerprint(public),
                "release_id": release.get("id"),
                "project": (release.get("project") or {}).get("code"),
                "files": [f.get("name") for f in check.manifest.get("files", [])],
            }
        )
    elif check.ok:
        project = (release.get("project") or {}).get("code", "?")
        console.print(f"[bold green]{escape(check.message())}[/]", highlight=False)
        console.print(
            f"release {release.get('id', '?')} of project {project}; key {fingerprint(public)[:16]}…",
            highlight=False,
        )
    else:
        # The first problem names the first bad file, or the bad signature (checked before any file).
        err_console.print(f"[bold red]bundle NOT verified:[/] {escape(check.problems[0])}", highlight=False)
        for problem in check.problems[1:]:
            err_console.print(f"  also: {escape(problem)}", highlight=False)
    if not check.ok:
        raise typer.Exit(1)


# list / show ----------------------------------------------------------------------------------------


def _project_id(session: Session, value: str) -> str:
    from tre_platform.api.projects.models import Project

    found = session.scalar(select(Project.id).where(or_(Project.id == value, Project.code == value)))
    if found is None:
        raise _fail(f"no project with code or id {value!r}")
    return found


def _state(value: str | None) -> ReleaseState | None:
    from tre_platform.api.releases.models import ReleaseState

    if value is None:
        return None
    try:
        return ReleaseState(value)
    except ValueError:
        raise _fail(
            f"unknown state {value!r}; use one of {', '.join(s.value for s in ReleaseState)}"
        ) from None


@release_app.command("list")
def list_command(
    project: Annotated[str | None, typer.Option("--project", "-p", help="project code or id")] = None,
    state: Annotated[str | None, typer.Option(help="only requests in this state, e.g. in_review")] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000, help="at most this many, newest first")] = 100,
    as_user: AsUser = None,
    as_json: JsonFlag = False,
) -> None:
    """List the release requests the acting user may see, newest first."""
    from tre_platform.api.releases import service

    def body() -> None:
        wanted = _state(state)
        with _session() as session:
            project_id = _project_id(session, project) if project else None
            rows = service.list_requests(
                session, _actor(session, as_user), state=wanted, project_id=project_id, limit=limit
            )
            if as_json:
                _write_json([_out(r) for r in rows])
                return
            table = Table(*LIST_COLUMNS)
            for r in rows:
                table.add_row(
                    r.id,
                    r.project.code,
                    r.requester.username,
                    r.title,
                    r.state.value,
                    r.check_status or "-",
                    _approvals(r),
                    f"{r.submitted_at:%Y-%m-%d %H:%M}" if r.submitted_at else "-",
                )
            console.print(table)

    _run(body)


@release_app.command("show")
def show_command(
    request_id: Annotated[str, typer.Argument(metavar="ID", help="the release request's id")],
    as_user: AsUser = None,
    as_json: JsonFlag = False,
) -> None:
    """Show one release request: its files with the server's findings, and its reviews."""
    from tre_platform.api.releases import service

    def body() -> None:
        with _session() as session:
            r = service.get_request(session, _actor(session, as_user), request_id)
            if as_json:
                _write_json(_out(r))
                return
            # Titles, names, findings and comments are user text: printed without markup.
            say = console.print
            say(f"[bold]{escape(r.title)}[/] ({r.id})", highlight=False)
            say(
                f"project {r.project.code} · requested by {r.requester.username} · {r.state.value} · "
                f"round {r.round} · checks {r.check_status or '-'} · approvals {_approvals(r)}",
                markup=False,
                highlight=False,
            )
            if r.justification:
                say(f"justification: {r.justification}", markup=False, highlight=False)
            for f in r.files:
                say(
                    f"\n{f.name} ({f.kind.value}, {f.size} bytes) · server check: {f.status or '-'}",
                    markup=False,
                    highlight=False,
                )
                for finding in f.server_check.get("findings", []):
                    say(f"  - {finding}", markup=False, highlight=False)
            for review in r.current_reviews:
                comment = f": {review.comment}" if review.comment else ""
                say(
                    f"\nreview by {review.checker.username} ({review.at:%Y-%m-%d %H:%M}): "
                    f"{review.decision.value}{comment}",
                    markup=False,
                    highlight=False,
                )
            actions = service.allowed_actions(r.state)
            say(f"\nnext: {', '.join(actions) if actions else 'nothing (finished)'}", markup=False)

    _run(body)


# review ---------------------------------------------------------------------------------------------


@release_app.command("review")
def review_command(
    request_id: Annotated[str, typer.Argument(metavar="ID", help="the release request's id")],
    decision: Annotated[str, typer.Argument(help="approve | reject | return")],
    as_user: Annotated[str, typer.Option("--as", help="the output checker deciding (required)")],
    comment: Annotated[str, typer.Option(help="why; required to reject or return")] = "",
    as_json: JsonFlag = False,
) -> None:
    """Record an output checker's decision: two different checkers must approve before release."""
    from tre_platform.api.releases import service

    def body() -> None:
        with _session() as session:
            r = service.review(session, _actor(session, as_user), request_id, decision, comment)
            if as_json:
                _write_json(_out(r))
                return
            console.print(
                f"{decision} recorded for {r.id}: the request is {r.state.value} (approvals {_approvals(r)})",
                markup=False,
                highlight=False,
            )

    _run(body)
