"""``tre package request | list | show | approve | refuse | load-advisories | base-set | serve | index-url``.

Thin commands over :mod:`tre_platform.api.packages.service`, so the CLI applies exactly the API's rules.
Like the rest of ``tre`` they act as the operator unless ``--as USER`` names a user; asking for a package
always needs ``--as`` (a researcher asks for themselves).

Example:
    $ tre package request rfc3339-validator 0.1.4 --reason "parse timestamps" --as alice
    $ tre package show 4f2a... --as admin
    $ tre package approve 4f2a... --as admin --json
"""

from __future__ import annotations

import getpass
import json
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import BaseModel, ValidationError
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from sqlalchemy.orm import Session

from tre_platform.actor import Actor
from tre_platform.api.packages.models import PackageRequestState
from tre_platform.errors import TreError

package_app = typer.Typer(
    help="The vetted package mirror: researchers' requests, administrators' decisions, advisories.",
    no_args_is_help=True,
)
console = Console(width=None if sys.stdout.isatty() else 160)
err_console = Console(stderr=True, width=None if sys.stderr.isatty() else 160)

JsonFlag = Annotated[bool, typer.Option("--json", help="print JSON instead of a table")]
AsUser = Annotated[str | None, typer.Option("--as", help="act as this user (their permissions apply)")]
REQUEST_COLUMNS = ["id", "name", "version", "state", "requested_by", "advisory_count", "created_at"]
MIRROR_COLUMNS = ["name", "version", "filename", "licence", "source", "sha256"]


def _run(body: Callable[[Session], Any]) -> None:
    """Run a command in one transaction: a typed error becomes its message and exit code 1."""
    from tre_platform.db.session import session_scope

    try:
        with session_scope() as session:
            body(session)
    except TreError as exc:
        field = f" ({exc.field})" if exc.field else ""
        err_console.print(
            f"[bold red]error:[/] {escape(exc.message)}{field}", soft_wrap=True, highlight=False
        )
        raise typer.Exit(1) from None
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        err_console.print(f"[bold red]error:[/] invalid input: {escape(problems)}", soft_wrap=True)
        raise typer.Exit(1) from None


def _actor(session: Session, as_user: str | None) -> Actor:
    if as_user is None:
        return Actor.system(f"cli:{getpass.getuser()}")
    from tre_platform.policy.service import find_user

    return Actor.of(find_user(session, as_user))


def _emit(items: Sequence[BaseModel] | BaseModel, as_json: bool, columns: Sequence[str]) -> None:
    many = not isinstance(items, BaseModel)
    rows = list(items) if not isinstance(items, BaseModel) else [items]
    if as_json:
        data = [r.model_dump(mode="json") for r in rows]
        sys.stdout.write(json.dumps(data if many else data[0], indent=2) + "\n")
        return
    table = Table(*columns)
    for row in rows:
        dumped = row.model_dump(mode="json")
        table.add_row(*[escape(str(dumped.get(c, ""))) for c in columns])
    console.print(table)


def _show_tree(out: Any) -> None:
    console.print(
        f"{escape(out.name)}=={escape(out.version)}  [{out.state.value}]  "
        f"asked by {escape(out.requested_by)}: {escape(out.reason)}",
        soft_wrap=True,
    )
    table = Table("wheel", "licence", "sha256", "requires", "in mirror", "advisories")
    for wheel in out.tree:
        table.add_row(
            escape(f"{wheel.name}=={wheel.version}"),
            escape(wheel.licence or "(none declared)"),
            wheel.sha256,
            escape(", ".join(wheel.requires)),
            "yes" if wheel.in_mirror else "no",
            escape(", ".join(a.osv_id for a in wheel.advisories) or "none"),
        )
    console.print(table)


@package_app.command("request")
def request_command(
    name: Annotated[str, typer.Argument(help="package name, e.g. rfc3339-validator")],
    version: Annotated[str, typer.Argument(help="one exact version, e.g. 0.1.4")],
    reason: Annotated[str, typer.Option(help="why the research needs it")],
    as_user: AsUser = None,
    as_json: JsonFlag = False,
) -> None:
    """Ask for a package in the mirror (an accredited researcher, for themselves)."""
    from tre_platform.api.packages import service
    from tre_platform.api.packages.schemas import PackageRequestCreate

    def body(session: Session) -> None:
        data = PackageRequestCreate(name=name, version=version, reason=reason)
        out = service.describe(session, service.request_package(session, _actor(session, as_user), data))
        _emit(out, True, []) if as_json else _show_tree(out)

    _run(body)


@package_app.command("list")
def list_command(
    state: Annotated[PackageRequestState | None, typer.Option(help="only requests in this state")] = None,
    mirror: Annotated[bool, typer.Option("--mirror", help="list what the mirror serves instead")] = False,
    as_user: AsUser = None,
    as_json: JsonFlag = False,
) -> None:
    """Package requests (administrators: all; researchers: their own), or the mirror's content."""
    from tre_platform.api.packages import service
    from tre_platform.api.packages.schemas import MirrorPackageOut

    def body(session: Session) -> None:
        actor = _actor(session, as_user)
        if mirror:
            rows = [MirrorPackageOut.model_validate(r) for r in service.list_mirror(session, actor)]
            _emit(rows, as_json, MIRROR_COLUMNS)
            return
        found = service.list_requests(session, actor, state=state, limit=500)
        _emit([service.describe(session, r) for r in found], as_json, REQUEST_COLUMNS)

    _run(body)


@package_app.command("show")
def show_command(request_id: str, as_user: AsUser = None, as_json: JsonFlag = False) -> None:
    """A request with its dependency tree: hashes, licences, advisories."""
    from tre_platform.api.packages import service

    def body(session: Session) -> None:
        out = service.describe(session, service.get_request(session, _actor(session, as_user), request_id))
        _emit(out, True, []) if as_json else _show_tree(out)

    _run(body)


@package_app.command("approve")
def approve_command(
    request_id: str,
    comment: Annotated[str, typer.Option(help="a note for the record")] = "",
    accept_advisories: Annotated[
        bool, typer.Option("--accept-advisories", help="approve although advisories affect the tree")
    ] = False,
    as_user: AsUser = None,
    as_json: JsonFlag = False,
) -> None:
    """Approve a request: its wheels are fetched, checked and added to the mirror (administrators)."""
    from tre_platform.api.packages import service
    from tre_platform.api.packages.schemas import PackageApprove

    def body(session: Session) -> None:
        data = PackageApprove(comment=comment, accept_advisories=accept_advisories)
        out = service.describe(
            session, service.approve_request(session, _actor(session, as_user), request_id, data)
        )
        _emit(out, True, []) if as_json else _show_tree(out)

    _run(body)


@package_app.command("refuse")
def refuse_command(
    request_id: str,
    reason: Annotated[str, typer.Option(help="why, for the researcher")],
    as_user: AsUser = None,
    as_json: JsonFlag = False,
) -> None:
    """Refuse a request, with a reason (administrators)."""
    from tre_platform.api.packages import service
    from tre_platform.api.packages.schemas import PackageRefuse

    def body(session: Session) -> None:
        data = PackageRefuse(reason=reason)
        out = service.describe(
            session, service.refuse_request(session, _actor(session, as_user), request_id, data)
        )
        _emit(out, True, []) if as_json else _show_tree(out)

    _run(body)


@package_app.command("load-advisories")
def load_advisories_command(
    path: Annotated[Path, typer.Argument(help="an OSV export: PyPI all.zip, or a JSON record or list")],
    as_user: AsUser = None,
    as_json: JsonFlag = False,
) -> None:
    """Load vulnerability advisories (OSV) that package requests are checked against (administrators)."""
    from tre_platform.api.packages import service
    from tre_platform.api.packages.schemas import AdvisoryLoadOut

    def body(session: Session) -> None:
        try:
            data = path.read_bytes()
        except OSError as error:
            raise TreError(f"cannot read {path}: {error.strerror}") from None
        records, entries = service.load_advisories(session, _actor(session, as_user), data, path.name)
        _emit(AdvisoryLoadOut(records=records, entries=entries), as_json, ["records", "entries"])

    _run(body)


@package_app.command("base-set")
def base_set_command(
    requirements: Annotated[
        Path | None,
        typer.Option(help="name==version lines (default: pip freeze of the workspace environment)"),
    ] = None,
    as_user: AsUser = None,
    as_json: JsonFlag = False,
) -> None:
    """Approve the workspace environment's own packages into the mirror (``tre up`` does it too)."""
    from tre_platform.api.packages import service
    from tre_platform.api.packages.schemas import BaseSetOut

    def body(session: Session) -> None:
        if requirements is not None:
            try:
                pins = service.parse_pins(requirements.read_text().splitlines())
            except OSError as error:
                raise TreError(f"cannot read {requirements}: {error.strerror}") from None
        else:
            pins = service.base_pins()
        result = service.approve_base_set(session, _actor(session, as_user), pins)
        out = BaseSetOut(added=result.added, present=result.present, failed=result.failed)
        if as_json:
            _emit(out, True, [])
        else:
            console.print(f"added {len(out.added)}, already present {out.present}, failed {len(out.failed)}")
            for pin, problem in out.failed.items():
                err_console.print(f"[yellow]{escape(pin)}:[/] {escape(problem)}", soft_wrap=True)

    _run(body)


def approve_base_set_in_background() -> threading.Thread:
    """Approve the base set (``tre up``): a daemon thread, so the control plane starts at once; the first
    run fetches the workspace environment's files, later runs only check that they are there."""

    def work() -> None:
        from tre_platform.api.packages import service
        from tre_platform.db.session import session_scope

        try:
            pins = service.base_pins()
            with session_scope() as session:
                result = service.approve_base_set(session, Actor.system("tre-up"), pins)
        except TreError as exc:
            err_console.print(f"[yellow]package mirror base set not approved:[/] {escape(exc.message)}")
            return
        console.print(
            f"package mirror base set: {len(result.added)} file(s) added, {result.present} present, "
            f"{len(result.failed)} failed"
            + (f" ({', '.join(sorted(result.failed))})" if result.failed else "")
        )

    thread = threading.Thread(target=work, name="tre-mirror-base-set", daemon=True)
    thread.start()
    return thread


@package_app.command("serve")
def serve_command() -> None:
    """Run the mirror in the foreground (``tre up`` starts it by itself)."""
    from tre_platform.api.packages.serve import main

    main([])


@package_app.command("index-url")
def index_url_command() -> None:
    """Print the mirror's index URL (for pip's --index-url / PIP_INDEX_URL)."""
    from tre_platform.api.packages.mirror import index_url

    sys.stdout.write(index_url() + "\n")
