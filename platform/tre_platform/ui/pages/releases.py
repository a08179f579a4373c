"""The airlock in the browser: output checkers review release requests; researchers follow theirs,
resubmit when returned, release when approved and download the signed bundle.

Everything goes through the releases service, which asks the policy engine (``review_release``: an output
checker who is not the requester and has not reviewed this round; ``submit_release``) and enforces the
second-checker rule and the project members' exclusion again in code.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, Response
from sqlalchemy.orm import Session

from tre_platform.api.deps import Auth, DbSession, PathId
from tre_platform.api.releases import service as releases
from tre_platform.api.releases.models import (
    REQUIRED_APPROVALS,
    FileKind,
    ReleaseFile,
    ReleaseRequest,
    ReleaseState,
)
from tre_platform.api.users.models import Role
from tre_platform.errors import NotFound
from tre_platform.ui.pages.home import checker_queue
from tre_platform.ui.web import FORM_ERRORS, CheckedForm, PageAuth, form_failure, redirect, render, values

router = APIRouter(prefix="/releases")
#: Largest text output shown inline (bigger ones are downloaded).
MAX_INLINE_TEXT = 200_000


def _label(value: Any) -> str:
    if isinstance(value, list):
        return " / ".join(str(v) for v in value)
    return "" if value is None else str(value)


def output_table(check: dict[str, Any]) -> dict[str, Any] | None:
    """The protected table of a table output, from the server's disclosure-control record.

    Returns rows, columns and per-cell ``{value, primary, secondary, margin, reasons}``, in the order the
    record lists the cells, or None when the record holds no cells (a failed re-run, a regression).
    """
    findings = ((check or {}).get("record") or {}).get("findings")
    if not isinstance(findings, list) or not findings:
        return None
    rows: list[str] = []
    columns: list[str] = []
    cells: dict[tuple[str, str], dict[str, Any]] = {}
    for entry in findings:
        if not isinstance(entry, dict):
            continue
        row, column = _label(entry.get("row")), _label(entry.get("column"))
        if row not in rows:
            rows.append(row)
        if column not in columns:
            columns.append(column)
        cells[(row, column)] = {
            "value": entry.get("published"),
            "primary": bool(entry.get("primary")),
            "secondary": bool(entry.get("secondary")),
            "margin": bool(entry.get("margin")),
            "reasons": [str(r) for r in entry.get("reasons") or []],
        }
    return {"rows": rows, "columns": columns, "cells": cells}


def _request_list(request: Request, session: Session, auth: Auth, state: str | None) -> Response:
    chosen = ReleaseState(state) if state and state in ReleaseState.__members__ else None
    found = releases.list_requests(session, auth.actor, state=chosen, limit=500)
    queue = checker_queue(session, auth.actor) if auth.user.has_role(Role.output_checker) else []
    return render(
        request,
        "releases/list.html",
        {
            "requests": found,
            "queue": queue,
            "states": [(s.value, s.value.replace("_", " ")) for s in ReleaseState],
            "values": {"state": chosen.value if chosen else ""},
            "required": REQUIRED_APPROVALS,
        },
    )


@router.get("")
def release_list(request: Request, session: DbSession, auth: PageAuth, state: str | None = None) -> Response:
    return _request_list(request, session, auth, state)


def _file_text(session: Session, auth: Auth, item: ReleaseRequest, file: ReleaseFile) -> str | None:
    if file.kind is not FileKind.text or file.size > MAX_INLINE_TEXT:
        return None
    _, content = releases.file_content(session, auth.actor, item.id, file.id)
    return content.decode("utf-8", errors="replace")


def release_page(
    request: Request,
    session: Session,
    auth: Auth,
    request_id: str,
    *,
    errors: dict[str, str] | None = None,
    data: dict[str, Any] | None = None,
) -> Response:
    actor = auth.actor
    item = releases.get_request(session, actor, request_id)
    member = releases.is_member(actor, item)
    may_read_files = actor.is_admin or member or auth.user.has_role(Role.output_checker)
    may_review = (
        item.state is ReleaseState.in_review
        and auth.user.has_role(Role.output_checker)
        and actor.user_id != item.requester_id
        and actor.user_id not in item.checker_ids
        and not member
    )
    requester = actor.user_id == item.requester_id
    return render(
        request,
        "releases/detail.html",
        {
            "item": item,
            "tables": {f.id: output_table(f.server_check) for f in item.files},
            "texts": {f.id: _file_text(session, auth, item, f) for f in item.files} if may_read_files else {},
            "may_read_files": may_read_files,
            "may_review": may_review,
            "already_reviewed": actor.user_id in item.checker_ids,
            "can_submit": requester and item.state in (ReleaseState.draft, ReleaseState.returned),
            "can_revise": requester and item.state is ReleaseState.returned,
            "can_release": requester and item.state is ReleaseState.approved,
            "can_download": member and item.state is ReleaseState.released,
            "required": REQUIRED_APPROVALS,
            "errors": errors or {},
            "values": data or {},
        },
        status_code=422 if errors else 200,
    )


@router.get("/{request_id}")
def release_detail(request: Request, request_id: PathId, session: DbSession, auth: PageAuth) -> Response:
    return release_page(request, session, auth, request_id)


@router.post("/{request_id}/review")
def release_review(
    request: Request, request_id: PathId, session: DbSession, auth: PageAuth, form: CheckedForm
) -> Response:
    data = values(form, "decision", "comment")
    try:
        item = releases.review(session, auth.actor, request_id, data["decision"], data["comment"])
    except FORM_ERRORS as exc:
        errors = form_failure(session, exc, ["decision", "comment"])
        return release_page(request, session, auth, request_id, errors=errors, data=data)
    return redirect(
        request,
        f"/releases/{item.id}",
        f"Your decision is recorded; the request is {item.state.value.replace('_', ' ')}.",
    )


def _researcher_step(request: Request, session: Session, auth: Auth, request_id: str, step: str) -> Response:
    try:
        if step == "submit":
            item = releases.submit(session, auth.actor, request_id)
        elif step == "revise":
            item = releases.revise(session, auth.actor, request_id)
        else:
            item = releases.release(session, auth.actor, request_id)
    except FORM_ERRORS as exc:
        return release_page(request, session, auth, request_id, errors=form_failure(session, exc))
    return redirect(
        request, f"/releases/{item.id}", f"The request is now {item.state.value.replace('_', ' ')}."
    )


@router.post("/{request_id}/submit")
def release_submit(
    request: Request, request_id: PathId, session: DbSession, auth: PageAuth, form: CheckedForm
) -> Response:
    return _researcher_step(request, session, auth, request_id, "submit")


@router.post("/{request_id}/revise")
def release_revise(
    request: Request, request_id: PathId, session: DbSession, auth: PageAuth, form: CheckedForm
) -> Response:
    return _researcher_step(request, session, auth, request_id, "revise")


@router.post("/{request_id}/release")
def release_release(
    request: Request, request_id: PathId, session: DbSession, auth: PageAuth, form: CheckedForm
) -> Response:
    return _researcher_step(request, session, auth, request_id, "release")


@router.get("/{request_id}/bundle")
def release_bundle(request: Request, request_id: PathId, session: DbSession, auth: PageAuth) -> Response:
    """The signed bundle of a released request: the only way results leave the environment."""
    path = releases.bundle_file(session, auth.actor, request_id)
    # The download is audited by the service; commit before streaming so the record is never lost.
    session.commit()
    if not path.is_file():
        raise NotFound("the bundle file is missing from the data directory; tell your administrator")
    return FileResponse(path, filename=path.name, media_type="application/zip")


@router.get("/{request_id}/files/{file_id}")
def release_file(
    request: Request, request_id: PathId, file_id: PathId, session: DbSession, auth: PageAuth
) -> Response:
    """A staged output (figures are shown inline), for the project's members and output checkers."""
    found, content = releases.file_content(session, auth.actor, request_id, file_id)
    session.commit()
    # Outputs are untrusted: send them as attachments (except images) and never let a browser sniff HTML.
    inline = found.kind is FileKind.figure and found.media_type in ("image/png", "image/jpeg", "image/gif")
    headers = {
        "X-Content-Type-Options": "nosniff",
        "Content-Security-Policy": "default-src 'none'; sandbox",
        "Content-Disposition": f'{"inline" if inline else "attachment"}; filename="{found.name}"',
    }
    return Response(
        content, media_type=found.media_type if inline else "application/octet-stream", headers=headers
    )
