"""The vetted package mirror: requests, decisions, the wheelhouse, advisories and the base set.

Who may do what is the policy engine's (``request_package``: an accredited researcher, for themselves;
``approve_package``: an administrator, never on their own request). Every step is audited. The network
work (pip resolving or downloading) runs before the audited decision is written, so no database write
lock is held while pip talks to the registry; the decision is then taken again (from the engine's
cache) and recorded in the transaction of the change it permits.
"""

from __future__ import annotations

import secrets
import subprocess
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from tre_platform.actor import Actor
from tre_platform.api.common import audit, check_admin, check_user
from tre_platform.api.packages import advisories as osv
from tre_platform.api.packages import resolve
from tre_platform.api.packages.mirror import staging_dir, wheelhouse
from tre_platform.api.packages.models import (
    VALID_TRANSITIONS,
    MirrorPackage,
    PackageAdvisory,
    PackageRequest,
    PackageRequestState,
)
from tre_platform.api.packages.schemas import (
    AdvisoryOut,
    PackageApprove,
    PackageRefuse,
    PackageRequestCreate,
    PackageRequestOut,
    WheelOut,
)
from tre_platform.api.users.models import User
from tre_platform.clock import clock
from tre_platform.db.base import new_id
from tre_platform.errors import Conflict, Forbidden, InvalidInput, InvalidTransition, NotFound, PolicyDenied
from tre_platform.policy.engine import get_engine, require
from tre_platform.settings import Settings, get_settings


def _precheck(session: Session, actor: Actor, action: str, request: PackageRequest) -> None:
    """Refuse (audited) before any network work; an allow is recorded later, with the change."""
    if not get_engine().decide(session, actor, action, package=request, audit=False).allowed:
        require(session, actor, action, package=request)  # records the deny and raises
        raise PolicyDenied(f"{action} refused")  # pragma: no cover - require raised


def _work_dir() -> Path:
    path = staging_dir() / secrets.token_hex(8)
    path.mkdir(mode=0o700)
    return path


# Requests -----------------------------------------------------------------------------------------


def request_package(session: Session, actor: Actor, data: PackageRequestCreate) -> PackageRequest:
    """An accredited researcher asks for ``name==version``; its whole tree is resolved for the admin.

    Example:
        >>> request_package(session, Actor.of(alice),
        ...                 PackageRequestCreate(name="rfc3339-validator", version="0.1.4", reason="dates"))
    """
    check_user(actor)
    if actor.user is None:
        raise Forbidden("the operator cannot ask for packages: a researcher asks with their own account")
    name = resolve.check_name(data.name)
    version = resolve.check_version(data.version)
    # The id is given now, so the audited decisions name the request they were about.
    request = PackageRequest(
        id=new_id(), name=name, version=version, reason=data.reason, requested_by_id=actor.user.id, tree=[]
    )
    _precheck(session, actor, "request_package", request)
    if _in_mirror(session, name, version):
        raise Conflict(f"{name}=={version} is already in the mirror: pip install it", field="name")
    pending = session.scalar(
        select(PackageRequest.id).where(
            PackageRequest.name == name,
            PackageRequest.version == version,
            PackageRequest.state == PackageRequestState.pending,
        )
    )
    if pending is not None:
        raise Conflict(f"{name}=={version} has already been asked for (request {pending}); wait for it")
    work = _work_dir()
    try:
        wheels = resolve.resolve(name, version, work)
    finally:
        resolve.clean(work)
    request.tree = [w.to_dict() for w in wheels]
    require(session, actor, "request_package", package=request)
    session.add(request)
    session.flush()
    audit(
        session,
        actor,
        "package.request",
        request,
        name=name,
        version=version,
        reason=data.reason,
        wheels=[f"{w.name}=={w.version}" for w in wheels],
    )
    return request


def _visible(actor: Actor, request: PackageRequest) -> bool:
    return actor.is_system or actor.is_admin or request.requested_by_id == actor.user_id


def get_request(session: Session, actor: Actor, request_id: str) -> PackageRequest:
    """One request: administrators see every request, a researcher their own (else NotFound)."""
    check_user(actor)
    request = session.get(PackageRequest, request_id)
    if request is None or not _visible(actor, request):
        raise NotFound(f"no package request with id {request_id!r} that you can see; list them first")
    return request


def list_requests(
    session: Session,
    actor: Actor,
    *,
    state: PackageRequestState | None = None,
    limit: int = 100,
    offset: int = 0,
) -> list[PackageRequest]:
    """Requests, newest first: all of them for administrators, a researcher's own otherwise."""
    check_user(actor)
    query = select(PackageRequest)
    if not (actor.is_system or actor.is_admin):
        query = query.where(PackageRequest.requested_by_id == actor.user_id)
    if state is not None:
        query = query.where(PackageRequest.state == state)
    query = query.order_by(PackageRequest.created_at.desc(), PackageRequest.id).limit(limit).offset(offset)
    return list(session.scalars(query))


def _check_transition(request: PackageRequest, to: PackageRequestState) -> None:
    if to not in VALID_TRANSITIONS[request.state]:
        raise InvalidTransition(
            f"package request {request.name}=={request.version} is {request.state.value}; "
            "only a pending request can be approved or refused"
        )


def approve_request(session: Session, actor: Actor, request_id: str, data: PackageApprove) -> PackageRequest:
    """Approve a request: fetch each wheel of its tree, check its SHA-256 against the tree the
    administrator saw, and move it into the wheelhouse (atomically); then the mirror serves it.

    Raises:
        Conflict: the tree has advisories and ``accept_advisories`` was not given, or a fetched
            wheel's hash differs from the one shown (nothing is published then).
    """
    request = get_request(session, actor, request_id)
    _precheck(session, actor, "approve_package", request)
    _check_transition(request, PackageRequestState.approved)
    wheels = [resolve.Wheel.from_dict(w) for w in request.tree]
    found = advisories_by_wheel(session, wheels)
    count = sum(len(v) for v in found.values())
    if count and not data.accept_advisories:
        names = sorted({a.osv_id for v in found.values() for a in v})
        raise Conflict(
            f"{count} advisory(ies) affect this tree ({', '.join(names[:10])}); refuse the request, or "
            "approve with accept_advisories to accept them",
            field="accept_advisories",
        )
    missing = [w for w in wheels if not _file_in_mirror(session, w.filename)]
    fetched: list[tuple[resolve.Wheel, Path]] = []
    work = _work_dir()
    try:
        if missing:
            files = {p.name: p for p in resolve.download([(w.name, w.version) for w in missing], work)}
            for wheel in missing:
                path = files.get(wheel.filename)
                if path is None:
                    raise Conflict(f"the registry no longer offers {wheel.filename}; refuse the request")
                if resolve.sha256_of(path) != wheel.sha256:
                    raise Conflict(
                        f"{wheel.filename} fetched now has another SHA-256 than the tree shown; nothing was "
                        "added to the mirror. Refuse the request and ask the researcher to request again"
                    )
                fetched.append((wheel, path))
        require(session, actor, "approve_package", package=request)
        for wheel, path in fetched:
            session.add(
                MirrorPackage(
                    name=wheel.name,
                    version=wheel.version,
                    filename=wheel.filename,
                    sha256=resolve.sha256_of(path),
                    licence=resolve.licence_of(resolve.wheel_metadata(path)),
                    source="request",
                    request_id=request.id,
                )
            )
        request.state = PackageRequestState.approved
        request.decided_by_id = actor.user_id
        request.decided_at = clock.now()
        request.decision_comment = data.comment or None
        session.flush()
        resolve.publish([p for _w, p in fetched], wheelhouse())
    finally:
        resolve.clean(work)
    audit(
        session,
        actor,
        "package.approve",
        request,
        kept=bool(fetched),  # the wheels are in the mirror whatever becomes of the transaction
        name=request.name,
        version=request.version,
        comment=data.comment,
        accepted_advisories=sorted({a.osv_id for v in found.values() for a in v}),
        added=[{"filename": w.filename, "sha256": w.sha256} for w, _p in fetched],
    )
    return request


def refuse_request(session: Session, actor: Actor, request_id: str, data: PackageRefuse) -> PackageRequest:
    """Refuse a pending request, with a reason the researcher reads."""
    request = get_request(session, actor, request_id)
    require(session, actor, "approve_package", package=request)
    _check_transition(request, PackageRequestState.refused)
    request.state = PackageRequestState.refused
    request.decided_by_id = actor.user_id
    request.decided_at = clock.now()
    request.decision_comment = data.reason
    session.flush()
    audit(
        session,
        actor,
        "package.refuse",
        request,
        name=request.name,
        version=request.version,
        reason=data.reason,
    )
    return request


# The mirror's content -----------------------------------------------------------------------------


def _in_mirror(session: Session, name: str, version: str) -> bool:
    return (
        session.scalar(
            select(MirrorPackage.id).where(MirrorPackage.name == name, MirrorPackage.version == version)
        )
        is not None
    )


def _file_in_mirror(session: Session, filename: str) -> bool:
    return session.scalar(select(MirrorPackage.id).where(MirrorPackage.filename == filename)) is not None


def list_mirror(session: Session, actor: Actor, *, limit: int = 500, offset: int = 0) -> list[MirrorPackage]:
    """What the mirror serves (any signed-in user: what is installable is no secret)."""
    check_user(actor)
    query = select(MirrorPackage).order_by(MirrorPackage.name, MirrorPackage.version, MirrorPackage.filename)
    return list(session.scalars(query.limit(limit).offset(offset)))


# Advisories --------------------------------------------------------------------------------------


def load_advisories(session: Session, actor: Actor, data: bytes, filename: str) -> tuple[int, int]:
    """Load an OSV export (administrators); returns (records read, PyPI entries stored).

    A record already loaded is replaced by the new copy (OSV records are updated in place).
    """
    check_admin(actor, "load vulnerability advisories")
    records = entries = 0
    for record in osv.read_records(data, filename):
        records += 1
        for entry in osv.pypi_entries(record):
            row = session.scalar(
                select(PackageAdvisory).where(
                    PackageAdvisory.osv_id == entry.osv_id, PackageAdvisory.package == entry.package
                )
            )
            if row is None:
                row = PackageAdvisory(osv_id=entry.osv_id, package=entry.package)
                session.add(row)
            row.summary, row.aliases, row.affected = entry.summary, entry.aliases, entry.affected
            row.modified, row.loaded_at = entry.modified, clock.now()
            entries += 1
    if records == 0:
        raise InvalidInput(f"{filename} holds no OSV record")
    session.flush()
    audit(
        session,
        actor,
        "package.advisories_load",
        target_type="package_advisories",
        file=filename[:200],
        records=records,
        entries=entries,
    )
    return records, entries


def advisories_by_wheel(
    session: Session, wheels: Sequence[resolve.Wheel]
) -> dict[str, list[PackageAdvisory]]:
    """The loaded advisories affecting each wheel's exact version, by wheel filename."""
    names = {w.name for w in wheels}
    rows = (
        list(session.scalars(select(PackageAdvisory).where(PackageAdvisory.package.in_(names))))
        if names
        else []
    )
    return {
        w.filename: [r for r in rows if r.package == w.name and osv.affects(r.affected, w.version)]
        for w in wheels
    }


def describe(session: Session, request: PackageRequest) -> PackageRequestOut:
    """A request as the API and the pages show it: its tree with hashes, licences and advisories."""
    wheels = [resolve.Wheel.from_dict(w) for w in request.tree]
    found = advisories_by_wheel(session, wheels)
    present = (
        {
            f
            for f in session.scalars(
                select(MirrorPackage.filename).where(MirrorPackage.filename.in_([w.filename for w in wheels]))
            )
        }
        if wheels
        else set()
    )
    users = {request.requested_by_id, request.decided_by_id} - {None}
    names = {u.id: u.username for u in session.scalars(select(User).where(User.id.in_(users)))}
    tree = [
        WheelOut(
            name=w.name,
            version=w.version,
            filename=w.filename,
            sha256=w.sha256,
            licence=w.licence,
            requires=w.requires,
            requested=w.requested,
            in_mirror=w.filename in present,
            advisories=[
                AdvisoryOut(osv_id=a.osv_id, summary=a.summary, aliases=a.aliases) for a in found[w.filename]
            ],
        )
        for w in wheels
    ]
    return PackageRequestOut(
        id=request.id,
        name=request.name,
        version=request.version,
        reason=request.reason,
        state=request.state,
        requested_by=names.get(request.requested_by_id, request.requested_by_id),
        created_at=request.created_at,
        decided_by=names.get(request.decided_by_id) if request.decided_by_id else None,
        decided_at=request.decided_at,
        decision_comment=request.decision_comment,
        tree=tree,
        advisory_count=sum(len(v) for v in found.values()),
    )


# The base set ------------------------------------------------------------------------------------


@dataclass
class BaseSetResult:
    added: list[str] = field(default_factory=list)
    present: int = 0
    failed: dict[str, str] = field(default_factory=dict)


def parse_pins(lines: Iterable[str]) -> list[tuple[str, str]]:
    """``name==version`` lines (comments, options, URLs and editable installs are skipped)."""
    pins: list[tuple[str, str]] = []
    for raw in lines:
        line = raw.split("#", 1)[0].strip()
        if not line or line.startswith("-") or "@" in line or "==" not in line:
            continue
        name, _, version = line.partition("==")
        name = name.split("[", 1)[0].strip()
        try:
            pins.append((resolve.check_name(name), resolve.check_version(version.split(";", 1)[0].strip())))
        except InvalidInput:
            continue
    return pins


def base_pins(settings: Settings | None = None) -> list[tuple[str, str]]:
    """The base set: ``package_base_requirements``, else ``pip freeze`` of the workspace environment."""
    settings = settings or get_settings()
    if settings.package_base_requirements is not None:
        return parse_pins(settings.package_base_requirements.read_text().splitlines())
    python = settings.workspace_venv / "bin" / "python"
    if not python.exists():
        raise InvalidInput(
            f"no workspace environment at {settings.workspace_venv} to take the base set from; build it "
            "(tre hub setup) or set TRE_PACKAGE_BASE_REQUIREMENTS"
        )
    result = subprocess.run(  # a fixed argv: the workspace's interpreter listing what it has
        [str(python), "-m", "pip", "freeze", "--exclude-editable"],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise InvalidInput(f"pip freeze of {settings.workspace_venv} failed: {result.stderr.strip()[-300:]}")
    return parse_pins(result.stdout.splitlines())


def approve_base_set(session: Session, actor: Actor, pins: Sequence[tuple[str, str]]) -> BaseSetResult:
    """Put the workspace environment's own packages into the mirror (operator or administrator).

    What the environment already runs is approved by installing it; each file is still fetched on the
    control-plane side and published atomically. Wheels are preferred; a package published only as a
    source archive is taken as such (the environment was built from it).
    """
    check_admin(actor, "approve the base set of packages")
    result = BaseSetResult()
    house = wheelhouse()
    for name, version in pins:
        if _in_mirror(session, name, version):
            result.present += 1
            continue
        work = _work_dir()
        try:
            files = resolve.download([(name, version)], work, wheels_only=False)
            for path in files:
                if _file_in_mirror(session, path.name):
                    continue
                licence = resolve.licence_of(resolve.wheel_metadata(path)) if path.suffix == ".whl" else ""
                session.add(
                    MirrorPackage(
                        name=name,
                        version=version,
                        filename=path.name,
                        sha256=resolve.sha256_of(path),
                        licence=licence,
                        source="base",
                    )
                )
                session.flush()
                resolve.publish([path], house)
                result.added.append(path.name)
        except (InvalidInput, Conflict) as error:
            result.failed[f"{name}=={version}"] = error.message
        finally:
            resolve.clean(work)
    audit(
        session,
        actor,
        "package.base_set",
        target_type="mirror_packages",
        kept=bool(result.added),
        added=result.added,
        present=result.present,
        failed=result.failed,
    )
    return result
