"""The vetted package mirror: researchers ask for packages; administrators see each request's whole
dependency tree (hashes, licences, advisories) and approve or refuse it.

Everything goes through the packages service, which asks the policy engine (``request_package``,
``approve_package``), so the pages allow exactly what the API allows.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from sqlalchemy.orm import Session

from tre_platform.api.deps import Auth, DbSession, PathId
from tre_platform.api.packages import service as packages
from tre_platform.api.packages.mirror import index_url
from tre_platform.api.packages.schemas import PackageApprove, PackageRefuse, PackageRequestCreate
from tre_platform.ui.web import (
    FORM_ERRORS,
    CheckedForm,
    PageAuth,
    checked,
    form_failure,
    redirect,
    render,
    values,
)

router = APIRouter()

REQUEST_FIELDS = ("name", "version", "reason")


def _list_page(
    request: Request,
    session: Session,
    auth: Auth,
    shown: dict[str, Any] | None = None,
    errors: dict[str, str] | None = None,
) -> Response:
    found = packages.list_requests(session, auth.actor, limit=500)
    return render(
        request,
        "packages/list.html",
        {
            "requests": [packages.describe(session, r) for r in found],
            "mirror": packages.list_mirror(session, auth.actor, limit=500),
            "index_url": index_url(),
            "values": shown or {},
            "errors": errors or {},
        },
        status_code=422 if errors else 200,
    )


@router.get("/packages")
def package_list(request: Request, session: DbSession, auth: PageAuth) -> Response:
    return _list_page(request, session, auth)


@router.post("/packages")
def package_request(request: Request, session: DbSession, auth: PageAuth, form: CheckedForm) -> Response:
    shown = values(form, *REQUEST_FIELDS)
    try:
        created = packages.request_package(session, auth.actor, PackageRequestCreate.model_validate(shown))
    except FORM_ERRORS as exc:
        return _list_page(request, session, auth, shown, form_failure(session, exc, REQUEST_FIELDS))
    return redirect(
        request,
        f"/packages/{created.id}",
        f"Asked for {created.name}=={created.version}; an administrator will review its dependencies.",
    )


def _detail_page(
    request: Request,
    session: Session,
    auth: Auth,
    request_id: str,
    *,
    form: str = "",
    errors: dict[str, str] | None = None,
) -> Response:
    found = packages.get_request(session, auth.actor, request_id)
    return render(
        request,
        "packages/detail.html",
        {
            "req": packages.describe(session, found),
            "may_decide": auth.actor.is_admin and found.requested_by_id != auth.user.id,
            "form": form,
            "errors": errors or {},
        },
        status_code=422 if errors else 200,
    )


@router.get("/packages/{request_id}")
def package_detail(request: Request, request_id: PathId, session: DbSession, auth: PageAuth) -> Response:
    return _detail_page(request, session, auth, request_id)


@router.post("/packages/{request_id}/approve")
def package_approve(
    request: Request, request_id: PathId, session: DbSession, auth: PageAuth, form: CheckedForm
) -> Response:
    data = {**values(form, "comment"), "accept_advisories": checked(form, "accept_advisories")}
    try:
        done = packages.approve_request(session, auth.actor, request_id, PackageApprove.model_validate(data))
    except FORM_ERRORS as exc:
        errors = form_failure(session, exc, ["comment", "accept_advisories"])
        return _detail_page(request, session, auth, request_id, form="approve", errors=errors)
    return redirect(
        request, f"/packages/{request_id}", f"Approved: {done.name}=={done.version} is in the mirror."
    )


@router.post("/packages/{request_id}/refuse")
def package_refuse(
    request: Request, request_id: PathId, session: DbSession, auth: PageAuth, form: CheckedForm
) -> Response:
    try:
        done = packages.refuse_request(
            session, auth.actor, request_id, PackageRefuse.model_validate(values(form, "reason"))
        )
    except FORM_ERRORS as exc:
        errors = form_failure(session, exc, ["reason"])
        return _detail_page(request, session, auth, request_id, form="refuse", errors=errors)
    return redirect(request, f"/packages/{request_id}", f"Refused {done.name}=={done.version}.")
