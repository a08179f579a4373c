"""Release requests: staging outputs, server-side checks on submit, two-person review, signed release.

The state machine is data (``VALID_TRANSITIONS`` in ``models.py``); :func:`_move` is the only code that
changes a request's state, and every change is audited. The policy engine decides who may submit
(``submit_release``: the requester, an accredited member of an approved, current project) and who may
review (``review_release``: an output checker who is not the requester and has not reviewed this round);
the service enforces separation of duties again in code, and also keeps the project's own members from
reviewing it (they are not independent).

Visibility: administrators see every request; the project's lead and members see their project's;
output checkers see every request past draft; data owners see requests past draft of projects that use
their organisation's data. Anyone else gets 'not found'.
"""

from __future__ import annotations

import importlib.metadata
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import ColumnElement, false, or_, select, true
from sqlalchemy.orm import Session

from tre_lib.compute import WorkspaceError
from tre_lib.compute import session as tre_session
from tre_lib.disclosure.differencing import ReleaseScope, element_keys
from tre_lib.disclosure.versions import library_versions
from tre_lib.outputs.specs import (
    RegressionSpec,
    SpecError,
    TableSpec,
    read_data,
    worst,
)
from tre_platform.actor import Actor
from tre_platform.api.common import audit, check_user
from tre_platform.api.datasets.models import Dataset
from tre_platform.api.projects import service as projects
from tre_platform.api.projects.models import Project, ProjectMember
from tre_platform.api.releases import bundle as bundles
from tre_platform.api.releases import checks, dp
from tre_platform.api.releases.differencing import (
    Incidence,
    SqlReleaseLedger,
    in_flight_unit_tables,
    load_units,
    released_unit_tables,
    stored_record,
    unit_findings,
    units_ref,
)
from tre_platform.api.releases.files import (
    FilePolicy,
    check_data,
    check_name,
    check_output,
    read_blob,
    request_dir,
    store_blob,
)
from tre_platform.api.releases.models import (
    EDITABLE_STATES,
    REQUIRED_APPROVALS,
    VALID_TRANSITIONS,
    DPQueryResult,
    FileKind,
    ReleaseAction,
    ReleaseFile,
    ReleaseRequest,
    ReleaseReview,
    ReleaseState,
    ReviewDecision,
)
from tre_platform.api.releases.schemas import ReleaseCreate
from tre_platform.api.users.models import Role
from tre_platform.clock import clock
from tre_platform.errors import Conflict, Forbidden, InvalidInput, InvalidTransition, NotFound
from tre_platform.policy import get_engine, require
from tre_platform.settings import Settings, get_settings
from tre_platform.views.builder import views_dir

# Visibility ----------------------------------------------------------------------------------------


def _member_projects(user_id: str) -> Any:
    return select(Project.id).where(
        or_(
            Project.lead_id == user_id,
            Project.id.in_(select(ProjectMember.project_id).where(ProjectMember.user_id == user_id)),
        )
    )


def _visible_clause(actor: Actor) -> ColumnElement[bool]:
    if actor.is_admin:
        return true()
    user = actor.user
    if user is None:
        return false()
    conditions: list[ColumnElement[bool]] = [
        ReleaseRequest.requester_id == user.id,
        ReleaseRequest.project_id.in_(_member_projects(user.id)),
    ]
    if user.has_role(Role.output_checker):
        conditions.append(ReleaseRequest.state != ReleaseState.draft)
    using_their_data = projects.projects_using_owned_data(user)
    if using_their_data is not None:
        conditions.append(
            (ReleaseRequest.state != ReleaseState.draft) & ReleaseRequest.project_id.in_(using_their_data)
        )
    return or_(*conditions)


def get_request(session: Session, actor: Actor, request_id: str) -> ReleaseRequest:
    """One release request the actor may see, else NotFound."""
    check_user(actor)
    found = session.scalar(
        select(ReleaseRequest).where(ReleaseRequest.id == request_id, _visible_clause(actor))
    )
    if found is None:
        raise NotFound(f"no release request with id {request_id!r} that you can see")
    return found


def list_requests(
    session: Session,
    actor: Actor,
    *,
    state: ReleaseState | None = None,
    project_id: str | None = None,
    limit: int = 100,
    offset: int = 0,
) -> list[ReleaseRequest]:
    """The requests the actor may see, newest first."""
    check_user(actor)
    query = select(ReleaseRequest).where(_visible_clause(actor))
    if state is not None:
        query = query.where(ReleaseRequest.state == state)
    if project_id is not None:
        query = query.where(ReleaseRequest.project_id == project_id)
    query = query.order_by(ReleaseRequest.created_at.desc(), ReleaseRequest.id).limit(limit).offset(offset)
    return list(session.scalars(query).unique())


def is_member(actor: Actor, request: ReleaseRequest) -> bool:
    return actor.user_id is not None and request.project.is_member(actor.user_id)


def allowed_actions(state: ReleaseState) -> list[str]:
    return [action.value for (from_state, action) in VALID_TRANSITIONS if from_state == state]


# The state machine ---------------------------------------------------------------------------------


def _check_transition(request: ReleaseRequest, action: ReleaseAction) -> tuple[ReleaseState, str]:
    key = (request.state, action)
    if key not in VALID_TRANSITIONS:
        allowed = ", ".join(allowed_actions(request.state)) or "none (the request is finished)"
        raise InvalidTransition(
            f"release request {request.id} is {request.state.value}: '{action.value}' is not allowed; "
            f"allowed: {allowed}",
            field="action",
        )
    return VALID_TRANSITIONS[key]


def _check_may_act(actor: Actor, request: ReleaseRequest, action: ReleaseAction) -> None:
    _to, owner = _check_transition(request, action)
    if owner == "requester":
        if actor.user_id != request.requester_id:
            raise Forbidden(
                f"only the researcher who made release request {request.id} may {action.value} it"
            )
    elif owner == Role.output_checker.value:
        if not actor.has_role(Role.output_checker) or actor.is_system:
            raise Forbidden("only an output checker may review release requests")
    elif owner == "system" and not actor.is_system:
        raise Forbidden("the server moves a request on when its checks are done")


def _move(
    session: Session, actor: Actor, request: ReleaseRequest, action: ReleaseAction, comment: str = ""
) -> None:
    """Apply ``action`` (already authorised) and audit the change of state."""
    to_state, _owner = _check_transition(request, action)
    from_state = request.state
    now = clock.now()
    request.state = to_state
    if action is ReleaseAction.submit:
        request.round += 1
        request.submitted_at = now
    elif to_state in (ReleaseState.approved, ReleaseState.rejected, ReleaseState.returned):
        request.decided_at = now
    elif to_state is ReleaseState.released:
        request.released_at = request.released_at or now
    session.flush()
    decision = {"approve": "approve", "reject": "reject", "return": "return"}.get(action.value)
    audit(
        session,
        actor,
        f"release.{action.value}",
        request,
        decision=decision,
        reasons=[comment] if comment else [],
        from_state=from_state.value,
        to_state=to_state.value,
        round=request.round,
    )


# Drafting ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Proposed:
    """A request not yet saved, for asking the policy engine whether the user may make it."""

    id: str
    requester_id: str
    project_id: str
    checker_ids: frozenset[str] = field(default_factory=frozenset)


def create_request(session: Session, actor: Actor, data: ReleaseCreate) -> ReleaseRequest:
    """Start a draft release request for a project the actor may submit outputs from.

    Example:
        >>> create_request(session, Actor.of(alice), ReleaseCreate(project_id=p.id, title="Admissions"))
    """
    check_user(actor)
    project = projects.get_project(session, actor, data.project_id)
    if actor.user_id is None:
        raise Forbidden("a release request is made by a researcher of the project, not the operator")
    require(session, actor, "submit_release", release=_Proposed("new", actor.user_id, project.id))
    request = ReleaseRequest(
        project_id=project.id,
        requester_id=actor.user_id,
        title=data.title,
        justification=data.justification,
        state=ReleaseState.draft,
    )
    session.add(request)
    session.flush()
    audit(session, actor, "release.create", request, project_id=project.id, title=data.title)
    return request


def _check_editable(actor: Actor, request: ReleaseRequest) -> None:
    if actor.user_id != request.requester_id:
        raise Forbidden(f"only the researcher who made release request {request.id} may change its files")
    if request.state not in EDITABLE_STATES:
        hint = " (use 'revise' to reopen it)" if request.state is ReleaseState.returned else ""
        raise Conflict(
            f"release request {request.id} is {request.state.value}; only a draft can change{hint}"
        )


def _parse_spec(kind: FileKind, spec: Mapping[str, Any]) -> TableSpec | RegressionSpec:
    try:
        return TableSpec.from_dict(spec) if kind is FileKind.table else RegressionSpec.from_dict(spec)
    except SpecError as exc:
        raise InvalidInput(f"the declared computation is not valid: {exc}", field="spec") from None


def add_file(
    session: Session,
    actor: Actor,
    request_id: str,
    *,
    name: str,
    kind: FileKind | str,
    content: bytes,
    spec: Mapping[str, Any] | None = None,
    data: bytes | None = None,
    data_name: str | None = None,
    client_check: Mapping[str, Any] | None = None,
    description: str = "",
    settings: Settings | None = None,
    server_made: bool = False,
) -> ReleaseFile:
    """Stage one output (replacing a file of the same name) in a draft request.

    Tables and regressions need ``spec`` (the declared computation, see :mod:`tre_lib.outputs.specs`) and
    ``data`` (the rows it was computed from, Parquet or CSV), so the server can re-run the checks.
    ``client_check`` is the workspace's own pre-check, kept only to show where it disagrees.
    """
    settings = settings or get_settings()
    request = get_request(session, actor, request_id)
    _check_editable(actor, request)
    policy = FilePolicy.load(settings)
    check_name(name)
    try:
        kind = FileKind(kind)
    except ValueError:
        raise InvalidInput(
            f"unknown output kind {kind!r}; use one of {', '.join(k.value for k in FileKind)}", field="kind"
        ) from None
    if kind is FileKind.dp and not server_made:
        raise InvalidInput(
            "a differentially private result is attached by reference to the server's stored result "
            "(POST /api/v1/releases/{id}/dp-results with dp_result_id), never uploaded",
            field="kind",
        )
    media_type = check_output(policy, kind, name, content)
    rules = policy.kind(kind)
    parsed: TableSpec | RegressionSpec | None = None
    if rules.needs_spec:
        if not spec:
            raise InvalidInput(f"a {kind.value} needs its declared computation (spec)", field="spec")
        parsed = _parse_spec(kind, spec)
        if (data is None or not data_name) and parsed.view is None:
            raise InvalidInput(
                f"a {kind.value} needs the data it was computed from, or the project view it was computed "
                "from named in its spec ('view'), so the server can re-check it",
                field="data",
            )
        if data is not None and data_name:
            check_name(data_name, "data_name")
            check_data(policy, data_name, data)
            try:
                frame = read_data(data, data_name)
            except SpecError as exc:
                raise InvalidInput(str(exc), field="data") from None
            missing = [c for c in parsed.needed_columns if c not in frame.columns]
            if missing:
                raise InvalidInput(f"the data lacks column(s) {missing} that the spec uses", field="data")
    elif spec or data is not None:
        raise InvalidInput(f"a {kind.value} output takes no spec or data", field="spec")
    others = [f for f in request.files if f.name != name]
    if len(others) + 1 > policy.max_files:
        raise InvalidInput(f"a release request may hold at most {policy.max_files} files", field="content")
    total = sum(f.size for f in others) + len(content)
    if total > policy.max_total_bytes:
        raise InvalidInput(
            f"the request's outputs would total {total} bytes; at most {policy.max_total_bytes} are allowed",
            field="content",
        )
    for old in [f for f in request.files if f.name == name]:
        request.files.remove(old)
    session.flush()
    stored = ReleaseFile(
        name=name,
        kind=kind,
        media_type=media_type,
        sha256=store_blob(settings, request.id, content),
        size=len(content),
        description=description,
        spec=parsed.to_dict() if parsed is not None else {},
        data_name=data_name if parsed is not None and data is not None else None,
        data_sha256=store_blob(settings, request.id, data)
        if parsed is not None and data is not None
        else None,
        data_size=len(data) if parsed is not None and data is not None else None,
        client_check=dict(client_check or {}),
    )
    request.files.append(stored)
    session.flush()
    audit(
        session,
        actor,
        "release.file.add",
        request,
        name=name,
        kind=kind.value,
        sha256=stored.sha256,
        size=stored.size,
    )
    return stored


def remove_file(session: Session, actor: Actor, request_id: str, file_id: str) -> ReleaseRequest:
    """Unstage one output from a draft request."""
    request = get_request(session, actor, request_id)
    _check_editable(actor, request)
    found = next((f for f in request.files if f.id == file_id), None)
    if found is None:
        raise NotFound(f"release request {request.id} has no file {file_id!r}")
    request.files.remove(found)
    session.flush()
    audit(session, actor, "release.file.remove", request, name=found.name, sha256=found.sha256)
    return request


def file_content(
    session: Session, actor: Actor, request_id: str, file_id: str, *, data: bool = False
) -> tuple[ReleaseFile, bytes]:
    """The bytes of a staged output (or of its supporting data), for the project's members and checkers."""
    settings = get_settings()
    request = get_request(session, actor, request_id)
    if not (actor.is_admin or is_member(actor, request) or actor.has_role(Role.output_checker)):
        raise Forbidden("only the project's members and output checkers may read staged outputs")
    found = next((f for f in request.files if f.id == file_id), None)
    if found is None:
        raise NotFound(f"release request {request.id} has no file {file_id!r}")
    digest = found.data_sha256 if data else found.sha256
    if digest is None:
        raise NotFound(f"{found.name} has no supporting data")
    content = read_blob(settings, request.id, digest)
    audit(session, actor, "release.file.read", request, name=found.name, data=data)
    return found, content


# Submission and checks -----------------------------------------------------------------------------


def submit(
    session: Session, actor: Actor, request_id: str, settings: Settings | None = None
) -> ReleaseRequest:
    """Submit a draft (or returned) request: the server re-runs every check, then it waits for review.

    Raises:
        InvalidTransition: not a draft or returned request.
        Forbidden / PolicyDenied: not the requester, or the policy refuses (accreditation, membership,
            project state).
        Conflict: a dataset of the project is not covered by an agreement.
    """
    settings = settings or get_settings()
    request = get_request(session, actor, request_id)
    _check_transition(request, ReleaseAction.submit)
    require(session, actor, "submit_release", release=request)
    _check_may_act(actor, request, ReleaseAction.submit)
    if not request.files:
        raise InvalidInput("stage at least one output before submitting", field="files")
    rules = checks.effective_rules(session, request.project, settings)
    _move(session, actor, request, ReleaseAction.submit)
    policy = FilePolicy.load(settings)
    statuses = []
    # Everything the project has out or in flight; each file of this request joins it once checked.
    others = [
        *released_unit_tables(session, settings, request.project_id),
        *in_flight_unit_tables(session, settings, request.project_id, request.id),
    ]
    for item in request.files:
        content = read_blob(settings, request.id, item.sha256)
        if item.kind is FileKind.dp:
            item.server_check = _check_dp(session, request, item, content)
            item.status = item.server_check["status"]
            statuses.append(item.status)
            continue
        frame, source, keys = _source_data(settings, request, item)
        scope = ReleaseScope(request.project_id, _dataset_key(session, request, source))
        incidence = None
        if keys is not None and item.kind is FileKind.table:
            incidence = Incidence(keys[0], keys[1], keys[2], list(others), f"{request.id}/{item.name}")
        result = checks.check_file(item, content, frame, rules, policy, (session, scope), source, incidence)
        unit_table = result.pop("_unit_table", None)
        if unit_table is not None:
            result["units"] = units_ref(settings, request.id, unit_table)
            others.append(unit_table)
        item.server_check = result
        item.status = result["status"]
        statuses.append(result["status"])
    request.profile = rules.as_dict()
    request.check_status = worst(*statuses)
    session.flush()
    audit(
        session,
        Actor.system("airlock"),
        "release.checked",
        request,
        decision=None,
        reasons=[f"{f.name}: {f.status}" for f in request.files],
        rules=rules.name,
        status=request.check_status,
    )
    _move(session, Actor.system("airlock"), request, ReleaseAction.check)
    return request


def _source_data(
    settings: Settings, request: ReleaseRequest, item: ReleaseFile
) -> tuple[pd.DataFrame | None, checks.DataSource, tuple[np.ndarray, np.ndarray, str] | None]:
    """The rows the server re-runs an output's declared computation on, and where they came from.

    A spec that names a project view (``view``) is recomputed from that view as the server holds it - the
    researcher's own upload is not used, so a submission cannot choose the numbers it is checked on. A spec
    without a view falls back to the data submitted with the output, and the record says so.

    The third value, for a view, is ``(row keys, unit keys, universe)``: the units are the view's first
    project id column (the pseudonymous index id), else the rows themselves; the universe is the project
    and view (and, for rows, the view's version), so tables are compared only with tables of the same data.
    """
    if item.kind not in (FileKind.table, FileKind.regression):
        return None, checks.DataSource("none", ""), None
    view = item.spec.get("view")
    if view:
        needed = _needed_columns(item)
        try:
            workspace = tre_session(request.project.code, views_dir=views_dir(request.project.code, settings))
            info = workspace.dataset(view)
            id_columns = [c.name for c in info.columns if c.project_id_column]
            unit_column = id_columns[0] if id_columns else None
            frame = workspace.read(
                info.name, columns=list(dict.fromkeys([*needed, *([unit_column] if unit_column else [])]))
            )
        except (WorkspaceError, OSError, ValueError) as exc:
            return (
                None,
                checks.DataSource(
                    "view", f"the declared view {view!r} could not be read on the server: {exc}", error=True
                ),
                None,
            )
        frame = frame.reset_index(drop=True)
        if unit_column is not None:
            row_keys, unit_keys = element_keys(frame[unit_column].tolist())
            universe = f"{request.project_id}:{info.name}:{unit_column}"
        else:
            row_keys, unit_keys = element_keys([f"row{k}" for k in range(len(frame))])
            universe = f"{request.project_id}:{info.name}@v{info.source_version}:rows"
        keys = (row_keys, unit_keys, universe)
        return (
            frame,
            checks.DataSource(
                "view",
                f"recomputed from project view {info.name!r} (version {info.source_version}, "
                f"{info.rows} rows) held by the server, not from numbers the researcher submitted",
                view=info.name,
                view_version=info.source_version,
            ),
            keys,
        )
    if item.data_sha256 is not None and item.data_name is not None:
        frame = read_data(read_blob(settings, request.id, item.data_sha256), item.data_name)
        return (
            frame,
            checks.DataSource(
                "submitted",
                "could not recompute from the source: the output declares no project view, so the server "
                "re-ran its computation on the data the researcher submitted with it",
            ),
            None,
        )
    return (
        None,
        checks.DataSource(
            "none", "could not recompute from the source: no project view declared and no data submitted"
        ),
        None,
    )


def _check_dp(session: Session, request: ReleaseRequest, item: ReleaseFile, content: bytes) -> dict[str, Any]:
    """A ``dp`` output passes when it is, byte for byte, the server's stored result of this project."""
    ref = item.spec.get("dp_result")
    found = session.get(DPQueryResult, ref) if isinstance(ref, str) else None
    if found is None or found.project_id != request.project_id:
        return {
            "status": "fail",
            "findings": ["not a differentially private result the server computed for this project"],
        }
    if content != dp.result_document(found):
        return {"status": "fail", "findings": ["the file differs from the server's stored DP result"]}
    return {
        "status": "pass",
        "findings": [
            f"differentially private result {found.id} computed on view {found.view!r} and charged to the "
            f"budget by the server (epsilon={found.epsilon:g}, delta={found.delta:g}); released as stored"
        ],
        "record": {
            "dp": {
                "result_id": found.id,
                "query": found.query,
                "epsilon": found.epsilon,
                "delta": found.delta,
                "charge_id": found.charge_id,
                "mechanism": found.result.get("mechanism"),
            }
        },
    }


def attach_dp_result(
    session: Session, actor: Actor, request_id: str, result_id: str, name: str
) -> ReleaseFile:
    """Stage a stored DP result (by reference) in a draft request; the server writes the file itself."""
    request = get_request(session, actor, request_id)
    _check_editable(actor, request)
    found = dp.get_result(session, actor, request.project_id, result_id)
    if not name.endswith(".json"):
        name = f"{name}.json"
    stored = add_file(
        session,
        actor,
        request.id,
        name=name,
        kind=FileKind.dp,
        content=dp.result_document(found),
        description=f"differentially private {found.query.get('statistic')} computed by the server",
        server_made=True,
    )
    stored.spec = {"dp_result": found.id}
    session.flush()
    return stored


def request_exception(
    session: Session, actor: Actor, request_id: str, file_id: str, justification: str
) -> ReleaseFile:
    """Ask for an exception to a failed finding of one output (ACRO's practice), with a justification.

    Only the requester, only for an output whose last check failed on a disclosure rule (never one whose
    submitted numbers differ from the server's recomputation), and only while the request is returned
    or a draft. Both output checkers' approvals of the next round grant it; it is audited and appears in
    the release's disclosure-control record.

    Raises:
        Forbidden: not the requester. Conflict: wrong state, or nothing to except.
    """
    request = get_request(session, actor, request_id)
    if actor.user_id != request.requester_id:
        raise Forbidden(f"only the researcher who made release request {request.id} may ask for an exception")
    if request.state not in (ReleaseState.draft, ReleaseState.returned):
        raise Conflict(
            f"release request {request.id} is {request.state.value}; ask for an exception while it is "
            "returned to you or a draft, then submit it"
        )
    found = next((f for f in request.files if f.id == file_id), None)
    if found is None:
        raise NotFound(f"release request {request.id} has no file {file_id!r}")
    check = found.server_check or {}
    if found.status != "fail":
        raise Conflict(f"{found.name} has no failed finding to ask an exception for")
    comparison = check.get("comparison") or {}
    if comparison.get("ok") is False or (check.get("record") or {}).get("source", {}).get("error"):
        raise Conflict(
            f"{found.name} differs from the server's recomputation (or could not be recomputed): that is "
            "not a disclosure finding an exception can cover; submit what the declared computation gives"
        )
    found.exception = {
        "justification": justification,
        "requested_at": clock.now().isoformat(),
        "findings": list(check.get("findings", [])),
    }
    session.flush()
    audit(session, actor, "release.exception.request", request, name=found.name, justification=justification)
    return found


def _needed_columns(item: ReleaseFile) -> list[str]:
    spec = (
        TableSpec.from_dict(item.spec) if item.kind is FileKind.table else RegressionSpec.from_dict(item.spec)
    )
    return list(spec.needed_columns)


def revise(session: Session, actor: Actor, request_id: str) -> ReleaseRequest:
    """Reopen a returned request as a draft so its files can be changed."""
    request = get_request(session, actor, request_id)
    _check_may_act(actor, request, ReleaseAction.revise)
    _move(session, actor, request, ReleaseAction.revise)
    return request


# Review --------------------------------------------------------------------------------------------

_REVIEW_ACTIONS = {
    ReviewDecision.approve: ReleaseAction.approve,
    ReviewDecision.reject: ReleaseAction.reject,
    ReviewDecision.return_: ReleaseAction.return_,
}


def review(
    session: Session, actor: Actor, request_id: str, decision: ReviewDecision | str, comment: str = ""
) -> ReleaseRequest:
    """Record one output checker's decision. Reject or return ends the round at once; approval needs
    REQUIRED_APPROVALS different checkers in the round.

    Raises:
        PolicyDenied: not an output checker, the requester, or a checker who already reviewed this round.
        Forbidden: a member of the project (not independent).
        Conflict: approving a request whose server checks failed.
    """
    request = get_request(session, actor, request_id)
    try:
        decision = ReviewDecision(decision)
    except ValueError:
        raise InvalidInput(
            f"unknown decision {decision!r}; use one of {', '.join(d.value for d in ReviewDecision)}",
            field="decision",
        ) from None
    action = _REVIEW_ACTIONS[decision]
    _check_transition(request, action)
    require(session, actor, "review_release", release=request)
    # The policy decided; separation of duties is enforced here too, whatever the policies say.
    if actor.user_id is None or actor.user_id == request.requester_id:
        raise Forbidden("the researcher who made a release request cannot review it")
    if actor.user_id in request.checker_ids:
        raise Forbidden("you have already reviewed this request; a different output checker must review it")
    if is_member(actor, request):
        raise Forbidden(f"you belong to project {request.project.code}, so you are not independent of it")
    _check_may_act(actor, request, action)
    if decision is not ReviewDecision.approve and not comment.strip():
        raise InvalidInput(
            f"say why you {decision.value} the request, so the researcher can act on it", field="comment"
        )
    excepted = [f.name for f in request.files if f.status == "fail" and f.exception]
    unexcepted = [f.name for f in request.files if f.status == "fail" and not f.exception]
    if decision is ReviewDecision.approve and request.check_status == "fail" and unexcepted:
        raise Conflict(
            "the server's checks failed for this request, so it cannot be approved; return it to the "
            "researcher "
            "with what to change, or reject it"
        )
    request.reviews.append(
        ReleaseReview(
            checker_id=actor.user_id, round=request.round, decision=decision, comment=comment, at=clock.now()
        )
    )
    session.flush()
    approvals = len(request.approvals)
    audit(
        session,
        actor,
        "release.review",
        request,
        decision=decision.value,
        reasons=[comment] if comment else [],
        round=request.round,
        approvals=approvals,
        required=REQUIRED_APPROVALS,
        exceptions=excepted if decision is ReviewDecision.approve else [],
    )
    if decision is not ReviewDecision.approve or approvals >= REQUIRED_APPROVALS:
        _move(session, actor, request, action, comment)
    return request


# Release -------------------------------------------------------------------------------------------


def _version() -> str:
    try:
        return importlib.metadata.version("tre")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def manifest(request: ReleaseRequest, key_fingerprint: str) -> dict[str, Any]:
    """The signed description of a release (see :mod:`tre_platform.api.releases.bundle`)."""
    return {
        "format": bundles.BUNDLE_FORMAT,
        "release": {
            "id": request.id,
            "title": request.title,
            "justification": request.justification,
            "round": request.round,
            "project": {
                "id": request.project.id,
                "code": request.project.code,
                "title": request.project.title,
            },
            "requester": {"id": request.requester_id, "username": request.requester.username},
        },
        "files": [
            {
                "name": f.name,
                "kind": f.kind.value,
                "media_type": f.media_type,
                "size": f.size,
                "sha256": f.sha256,
                "description": f.description,
                "spec": f.spec,
                "disclosure": {
                    "status": f.server_check.get("status"),
                    "findings": f.server_check.get("findings", []),
                    "record": f.server_check.get("record"),
                    "exception": (
                        {
                            **f.exception,
                            "granted_by": [r.checker.username for r in request.approvals],
                        }
                        if f.exception and f.status == "fail"
                        else None
                    ),
                },
            }
            for f in request.files
        ],
        "disclosure_rules": request.profile,
        "reviews": [
            {
                "checker_id": r.checker_id,
                "checker": r.checker.username,
                "decision": r.decision.value,
                "comment": r.comment,
                "at": r.at.isoformat(),
            }
            for r in request.current_reviews
        ],
        "times": {
            "created_at": request.created_at.isoformat(),
            "submitted_at": request.submitted_at.isoformat() if request.submitted_at else None,
            "approved_at": request.decided_at.isoformat() if request.decided_at else None,
            "released_at": request.released_at.isoformat() if request.released_at else None,
        },
        "versions": {
            "tre": _version(),
            "libraries": library_versions(),
            "policy_bundle": get_engine().bundle_hash,
        },
        "signing_key": {"algorithm": "Ed25519", "fingerprint": key_fingerprint},
    }


def _dataset_key(session: Session, request: ReleaseRequest, source: checks.DataSource) -> str:
    """The population a table counts, from what the server read - never from a field the researcher fills
    in: the dataset of the view it was recomputed from, else all the project's datasets together."""
    listed = sorted(link.dataset_id for link in request.project.datasets)
    if source.view:
        found = session.scalar(
            select(Dataset.id).where(Dataset.name == source.view, Dataset.id.in_(listed or [""]))
        )
        if found is not None:
            return str(found)
    return "+".join(listed)


def release(
    session: Session, actor: Actor, request_id: str, settings: Settings | None = None
) -> ReleaseRequest:
    """Release an approved request: build and sign the bundle, remember every released table.

    The policy is asked again (``submit_release``): an accreditation or project that has lapsed since the
    approval stops the release.
    """
    settings = settings or get_settings()
    request = get_request(session, actor, request_id)
    _check_may_act(actor, request, ReleaseAction.release)
    require(session, actor, "submit_release", release=request)
    _recheck_at_release(session, settings, request)
    request.released_at = clock.now()
    key = bundles.signing_key(settings)
    files = [(f.name, read_blob(settings, request.id, f.sha256)) for f in request.files]
    path = request_dir(settings, request.id) / "bundle" / f"release-{request.id}.zip"
    request.bundle_sha256 = bundles.write_bundle(
        path, manifest(request, bundles.fingerprint(key)), files, key
    )
    request.bundle_path = str(path.relative_to(settings.resolved_data_dir))
    ledger = SqlReleaseLedger(session)
    for item in request.files:
        record = stored_record(item.server_check, request.released_at.isoformat())
        if item.kind is FileKind.table and record is not None:
            ledger.record(
                record, request_id=request.id, file_id=item.id, units=item.server_check.get("units")
            )
    _move(session, actor, request, ReleaseAction.release)
    audit(
        session, actor, "release.bundle", request, sha256=request.bundle_sha256, files=[n for n, _ in files]
    )
    return request


def _recheck_at_release(session: Session, settings: Settings, request: ReleaseRequest) -> None:
    """Compare every table once more with everything the project has released (some may have left
    since this request was checked); a table that now isolates a small group stops the release.

    Raises:
        Conflict: a table combines with a released one; nothing is released.
    """
    released = released_unit_tables(session, settings, request.project_id)
    if not released:
        return
    rules = checks.effective_rules(session, request.project, settings)
    problems = []
    for item in request.files:
        table = load_units(settings, (item.server_check or {}).get("units"))
        if table is None:
            continue
        status, findings, _data = unit_findings(table, released, rules)
        if status != "pass":
            problems += [f"{item.name}: {f}" for f in findings]
    if problems:
        raise Conflict(
            "the re-check at release found that this request, combined with what the project has "
            "released since it was checked, isolates a small group, so it was not released: "
            + "; ".join(problems)
            + ". Return it to the researcher (ask a checker) or withdraw it"
        )


def bundle_file(session: Session, actor: Actor, request_id: str) -> Path:
    """The released bundle, for the project's members only."""
    settings = get_settings()
    request = get_request(session, actor, request_id)
    if not is_member(actor, request):
        raise Forbidden(f"only members of project {request.project.code} may download its releases")
    if request.state is not ReleaseState.released or request.bundle_path is None:
        raise Conflict(
            f"release request {request.id} is {request.state.value}; only a released one has a bundle"
        )
    audit(session, actor, "release.download", request, sha256=request.bundle_sha256)
    return settings.resolved_data_dir / request.bundle_path


def disclosure_rules(session: Session, actor: Actor, project_id: str) -> dict[str, Any]:
    """The rules the server will apply to the project's outputs (for the workspace's pre-check)."""
    project = projects.get_project(session, actor, project_id)
    return checks.effective_rules(session, project, get_settings()).as_dict()
