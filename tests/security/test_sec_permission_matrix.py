"""Every role x every route -> the expected status.

The route list comes from the application itself, so a new route without an entry here fails
``test_every_route_has_a_matrix_entry``. Each case runs against a fresh copy of the standard world
(tests/factories.py:build_world) with the role's bearer token; 'anonymous' sends no credentials.

Visibility rules the matrix pins down: another organisation's agreements and other people's projects are
'not found' (404), not 'forbidden'; the catalogue of datasets is visible to every signed-in user.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from factories import PASSWORD, World
from fastapi.routing import iter_route_contexts
from fastapi.testclient import TestClient

from tre_platform.api.app import create_app

ROLES = ["admin", "data_owner", "approver", "researcher", "output_checker", "anonymous"]
Build = Callable[[World, str], tuple[dict[str, str], dict[str, Any] | None]]


@dataclass(frozen=True)
class Case:
    build: Build
    expect: dict[str, int]
    #: Query parameters, for routes that take their subject in the query string.
    query: Callable[[World, str], dict[str, str]] | None = None


def statuses(default: int, anonymous: int = 401, **by_role: int) -> dict[str, int]:
    """Expected status per role: ``default`` for every signed-in role not named."""
    return {role: by_role.get(role, default) for role in ROLES[:-1]} | {"anonymous": anonymous}


def no_body(params: dict[str, str] | None = None) -> Build:
    return lambda _w, _r: (params or {}, None)


def body(payload: dict[str, Any] | Callable[[World, str], dict[str, Any]], **params: str) -> Build:
    def build(w: World, role: str) -> tuple[dict[str, str], dict[str, Any] | None]:
        data = payload(w, role) if callable(payload) else payload
        return {k: w.ids[v] for k, v in params.items()}, data

    return build


def ids(**params: str) -> Build:
    return lambda w, _r: ({k: w.ids[v] for k, v in params.items()}, None)


TODAY = dt.date.today()
FUTURE = (TODAY + dt.timedelta(days=60)).isoformat()
LATER = (TODAY + dt.timedelta(days=300)).isoformat()

PUBLIC = statuses(200, anonymous=200)
ADMIN_ONLY_200 = statuses(403, admin=200)
ADMIN_ONLY_201 = statuses(403, admin=201)
#: Objects only admins and the owner organisation's data owners can see.
OWNER_200 = statuses(404, admin=200, data_owner=200)
#: A draft is visible to its applicants (the researcher leads it) and admins only.
APPLICANT_200 = statuses(404, admin=200, researcher=200)
APPLICANT_201 = statuses(404, admin=201, researcher=201)

MATRIX: dict[str, Case] = {
    # Public
    "GET /healthz": Case(no_body(), PUBLIC),
    "GET /api/v1/openapi.json": Case(no_body(), PUBLIC),
    "GET /api/v1/docs": Case(no_body(), PUBLIC),
    # Sign-in
    "POST /api/v1/auth/login": Case(
        lambda w, r: ({}, {"username": w.usernames.get(r, "nobody"), "password": PASSWORD}), statuses(200)
    ),
    # With a bearer token there is no browser session to complete or end: 409.
    "POST /api/v1/auth/totp": Case(body({"code": "123456"}), statuses(409)),
    "POST /api/v1/auth/totp/enrol": Case(no_body(), statuses(200)),
    "POST /api/v1/auth/totp/confirm": Case(body({"code": "123456"}), statuses(409)),
    "POST /api/v1/auth/logout": Case(no_body(), statuses(409)),
    "GET /api/v1/auth/whoami": Case(no_body(), statuses(200)),
    "POST /api/v1/auth/password": Case(
        body({"current_password": PASSWORD, "new_password": "a brand new passphrase"}), statuses(204)
    ),
    "POST /api/v1/auth/tokens": Case(body({"name": "laptop"}), statuses(201)),
    "GET /api/v1/auth/tokens": Case(no_body(), statuses(200)),
    "DELETE /api/v1/auth/tokens/{token_id}": Case(
        lambda w, r: ({"token_id": w.spare_token_ids.get(r, "0" * 32)}, None), statuses(200)
    ),
    # Organisations
    "POST /api/v1/orgs": Case(
        body({"slug": "new-org", "name": "New", "kind": "research_body"}), ADMIN_ONLY_201
    ),
    "GET /api/v1/orgs": Case(no_body(), statuses(200)),
    "GET /api/v1/orgs/{org_id}": Case(ids(org_id="labour"), statuses(200)),
    "PATCH /api/v1/orgs/{org_id}": Case(body({"name": "Renamed"}, org_id="labour"), ADMIN_ONLY_200),
    # Users
    "POST /api/v1/users": Case(
        body(
            lambda w, _r: {
                "username": "newbie",
                "full_name": "New Person",
                "email": "newbie@example.org",
                "organisation_id": w.ids["uni"],
                "roles": [{"role": "researcher"}],
            }
        ),
        ADMIN_ONLY_201,
    ),
    "GET /api/v1/users": Case(no_body(), ADMIN_ONLY_200),
    # Someone else's account: only admins know it exists.
    "GET /api/v1/users/{user_id}": Case(ids(user_id="colleague"), statuses(404, admin=200)),
    "PATCH /api/v1/users/{user_id}": Case(
        body({"full_name": "Renamed"}, user_id="colleague"), ADMIN_ONLY_200
    ),
    "POST /api/v1/users/{user_id}/roles": Case(
        body({"role": "approver"}, user_id="colleague"), ADMIN_ONLY_201
    ),
    "DELETE /api/v1/users/{user_id}/roles/{role}": Case(
        lambda w, _r: ({"user_id": w.ids["colleague"], "role": "researcher"}, None), ADMIN_ONLY_200
    ),
    "POST /api/v1/users/{user_id}/accreditations": Case(
        body(
            {"scheme": "DEA accredited researcher", "granted_on": TODAY.isoformat(), "expires_on": LATER},
            user_id="colleague",
        ),
        ADMIN_ONLY_201,
    ),
    "POST /api/v1/users/{user_id}/accreditations/{accreditation_id}/revoke": Case(
        body(
            {"reason": "left the organisation"},
            user_id="colleague",
            accreditation_id="colleague_accreditation",
        ),
        ADMIN_ONLY_200,
    ),
    "POST /api/v1/users/{user_id}/training": Case(
        body({"course": "Safe researcher training", "completed_on": TODAY.isoformat()}, user_id="colleague"),
        ADMIN_ONLY_201,
    ),
    "POST /api/v1/users/{user_id}/password": Case(
        body({"new_password": "reset by the admin"}, user_id="colleague"), statuses(403, admin=204)
    ),
    "POST /api/v1/users/{user_id}/totp/reset": Case(ids(user_id="colleague"), ADMIN_ONLY_200),
    # Projects
    "POST /api/v1/projects": Case(
        body(
            lambda w, _r: {
                "title": "New study",
                "lay_summary": "A new study of public benefit, in plain words.",
                "purpose": "policy_evidence",
                "legal_gateway": "dea",
                "start_date": TODAY.isoformat(),
                "end_date": LATER,
                "lead_id": w.ids["researcher"],
            }
        ),
        statuses(403, admin=201, researcher=201),
    ),
    "GET /api/v1/projects": Case(no_body(), statuses(200)),
    # The submitted project requests the health organisation's data: its data owner and approvers see it.
    "GET /api/v1/projects/{project_id}": Case(ids(project_id="submitted"), statuses(200, output_checker=404)),
    "PATCH /api/v1/projects/{project_id}": Case(
        body({"title": "Better title"}, project_id="draft"), APPLICANT_200
    ),
    "POST /api/v1/projects/{project_id}/members": Case(
        body(lambda w, _r: {"user_id": w.ids["colleague"]}, project_id="draft"), APPLICANT_201
    ),
    "DELETE /api/v1/projects/{project_id}/members/{user_id}": Case(
        ids(project_id="draft", user_id="member"), APPLICANT_200
    ),
    "POST /api/v1/projects/{project_id}/datasets": Case(
        body(lambda w, _r: {"dataset_id": w.ids["hes"], "columns": ["age", "region"]}, project_id="draft"),
        APPLICANT_201,
    ),
    "DELETE /api/v1/projects/{project_id}/datasets/{dataset_id}": Case(
        ids(project_id="draft", dataset_id="hes"), APPLICANT_200
    ),
    # Only an approver (who is not an applicant) approves; the lead and admins may not.
    "POST /api/v1/projects/{project_id}/transitions": Case(
        body({"action": "approve", "comment": "meets the criteria"}, project_id="submitted"),
        statuses(403, approver=200, output_checker=404),
    ),
    "GET /api/v1/projects/{project_id}/decisions": Case(
        ids(project_id="submitted"), statuses(200, output_checker=404)
    ),
    # Datasets
    "POST /api/v1/datasets": Case(
        body(
            lambda w, _r: {
                "name": "new-dataset",
                "title": "New dataset",
                "owner_org_id": w.ids["health"],
                "tier": 1,
                "schema": [{"name": "age", "type": "integer"}],
            }
        ),
        statuses(403, admin=201, data_owner=201),
    ),
    "GET /api/v1/datasets": Case(no_body(), statuses(200)),
    "GET /api/v1/datasets/{dataset_id}": Case(ids(dataset_id="hes"), statuses(200)),
    "GET /api/v1/datasets/{dataset_id}/versions": Case(ids(dataset_id="hes"), OWNER_200),
    # The data library: accredited researchers and staff roles; the output checker holds no accreditation.
    "GET /api/v1/datasets/search": Case(
        no_body(), statuses(200, output_checker=403), query=lambda _w, _r: {"q": "dataset", "column": "age"}
    ),
    "GET /api/v1/datasets/{dataset_id}/lifecycle": Case(ids(dataset_id="hes"), OWNER_200),
    # A schema revision: each role adds its own column, so no revision repeats the current schema.
    "POST /api/v1/datasets/{dataset_id}/schema": Case(
        body(
            lambda _w, r: {
                "schema": [{"name": "age", "type": "integer"}, {"name": f"note_{r}", "type": "string"}],
                "reason": "a new column",
            },
            dataset_id="hes",
        ),
        statuses(403, admin=200, data_owner=200),
    ),
    "GET /api/v1/datasets/{dataset_id}/schemas": Case(ids(dataset_id="hes"), OWNER_200),
    # The world's datasets have no published version: even their owners are told version 1 does not exist.
    "POST /api/v1/datasets/{dataset_id}/versions/{version}/archive": Case(
        lambda w, _r: ({"dataset_id": w.ids["hes"], "version": "1"}, {"reason": "superseded"}), statuses(404)
    ),
    "POST /api/v1/datasets/{dataset_id}/versions/{version}/destroy": Case(
        lambda w, _r: ({"dataset_id": w.ids["hes"], "version": "1"}, {"reason": "retention ended"}),
        statuses(404),
    ),
    "POST /api/v1/datasets/sweep": Case(no_body(), statuses(403, admin=200, data_owner=200)),
    # The policy decides before the body is read; the owner's empty body is then refused as empty (422).
    "POST /api/v1/datasets/{dataset_id}/deliveries": Case(
        ids(dataset_id="hes"), statuses(403, data_owner=422)
    ),
    # Agreements
    "POST /api/v1/agreements": Case(
        body(
            lambda w, _r: {
                "title": "Share with the university",
                "owner_org_id": w.ids["health"],
                "dataset_ids": [w.ids["hes"]],
                "recipient_org_ids": [w.ids["uni"]],
                "purposes": ["policy_evidence"],
                "legal_gateways": ["dea"],
                "valid_from": TODAY.isoformat(),
                "valid_to": LATER,
            }
        ),
        statuses(403, admin=201, data_owner=201),
    ),
    "GET /api/v1/agreements": Case(no_body(), statuses(200)),
    "GET /api/v1/agreements/{agreement_id}": Case(ids(agreement_id="active_agreement"), OWNER_200),
    "PATCH /api/v1/agreements/{agreement_id}": Case(
        body({"title": "Renamed", "valid_from": FUTURE}, agreement_id="pending_agreement"), OWNER_200
    ),
    "POST /api/v1/agreements/{agreement_id}/revoke": Case(
        body({"reason": "the purpose has lapsed"}, agreement_id="active_agreement"), OWNER_200
    ),
    # Audit
    "GET /api/v1/audit/events": Case(no_body(), ADMIN_ONLY_200),
    "GET /api/v1/audit/verify": Case(no_body(), ADMIN_ONLY_200),
    # Policy decisions: admins may explain anyone's; others only their own (here: the researcher's).
    "GET /api/v1/decisions/explain": Case(
        no_body(),
        statuses(403, admin=200, researcher=200),
        query=lambda w, _r: {"user": w.usernames["researcher"], "project": w.ids["submitted"]},
    ),
    # The airlock. The world's release requests belong to the analyst's approved project on the labour
    # office's data (factories._build_airlock); none of the matrix's roles is a member of it, so the matrix
    # pins down who may act on someone else's outputs: the project's requests are 'not found' to the
    # researcher, the approver and the (health) data owner; admins see them but may not act for the
    # requester; output checkers see everything past draft and may review, nothing more. The requester's
    # own actions are proven in tests/integration/releases.
    # The public half of the signing key, so anyone can verify a bundle.
    "GET /api/v1/releases/signing-key": Case(no_body(), PUBLIC),
    "POST /api/v1/releases": Case(
        body(lambda w, _r: {"project_id": w.ids["approved"], "title": "More counts"}),
        statuses(404, admin=403),
    ),
    "GET /api/v1/releases": Case(no_body(), statuses(200)),
    "GET /api/v1/releases/{request_id}": Case(
        ids(request_id="release"), statuses(404, admin=200, output_checker=200)
    ),
    # Staging is multipart (the output, its spec and its data); the matrix sends JSON, so every signed-in
    # role is refused as invalid input before anything is staged.
    "POST /api/v1/releases/{request_id}/files": Case(ids(request_id="draft_release"), statuses(422)),
    "DELETE /api/v1/releases/{request_id}/files/{file_id}": Case(
        ids(request_id="draft_release", file_id="draft_release_file"), statuses(404, admin=403)
    ),
    "GET /api/v1/releases/{request_id}/files/{file_id}/content": Case(
        ids(request_id="release", file_id="release_file"), statuses(404, admin=200, output_checker=200)
    ),
    "POST /api/v1/releases/{request_id}/submit": Case(
        ids(request_id="draft_release"), statuses(404, admin=403)
    ),
    "POST /api/v1/releases/{request_id}/revise": Case(
        ids(request_id="returned_release"), statuses(404, admin=403, output_checker=403)
    ),
    "POST /api/v1/releases/{request_id}/reviews": Case(
        body({"decision": "approve", "comment": "safe counts"}, request_id="release"),
        statuses(404, admin=403, output_checker=200),
    ),
    "POST /api/v1/releases/{request_id}/release": Case(
        ids(request_id="approved_release"), statuses(404, admin=403, output_checker=403)
    ),
    "GET /api/v1/releases/{request_id}/bundle": Case(
        ids(request_id="released_release"), statuses(404, admin=403, output_checker=403)
    ),
    # Privacy budget and disclosure rules of the approved project: its members and admins only; spending
    # needs permission to read the data, which an admin does not have.
    "GET /api/v1/projects/{project_id}/privacy-budget": Case(
        ids(project_id="approved"), statuses(404, admin=200)
    ),
    "POST /api/v1/projects/{project_id}/privacy-budget/charges": Case(
        body(
            lambda w, _r: {"dataset_ids": [w.ids["lfs"]], "epsilon": 0.1, "description": "count by region"},
            project_id="approved",
        ),
        statuses(404, admin=403),
    ),
    # Differential privacy answered by the server on the project's view: members only (spending needs
    # permission to read the data, which an admin does not have); a stored result is its project's.
    "POST /api/v1/projects/{project_id}/dp-queries": Case(
        body({"view": "lfs", "statistic": "count", "epsilon": 0.1}, project_id="approved"),
        statuses(404, admin=403),
    ),
    "GET /api/v1/projects/{project_id}/dp-queries/{result_id}": Case(
        ids(project_id="approved", result_id="release"), statuses(404)
    ),
    "POST /api/v1/releases/{request_id}/dp-results": Case(
        body(
            lambda w, _r: {"dp_result_id": w.ids["release"], "name": "dp count"}, request_id="draft_release"
        ),
        statuses(404, admin=403),
    ),
    # An exception to a failed finding is the requester's to ask for, never a checker's or an admin's.
    "POST /api/v1/releases/{request_id}/files/{file_id}/exception": Case(
        body(
            {"justification": "the cell is a published national total, see the ONS release"},
            request_id="release",
            file_id="release_file",
        ),
        statuses(404, admin=403, output_checker=403),
    ),
    "GET /api/v1/projects/{project_id}/disclosure-rules": Case(
        ids(project_id="approved"), statuses(404, admin=200)
    ),
    # The vetted package mirror: accredited researchers ask (for themselves), administrators decide;
    # a request is visible to its requester and administrators only.
    "POST /api/v1/packages/requests": Case(
        body({"name": "rfc3339-validator", "version": "0.1.4", "reason": "timestamps"}),
        statuses(403, researcher=201),
    ),
    "GET /api/v1/packages/requests": Case(no_body(), statuses(200)),
    "GET /api/v1/packages/requests/{request_id}": Case(
        ids(request_id="package_request"), statuses(404, admin=200, researcher=200)
    ),
    "POST /api/v1/packages/requests/{request_id}/approve": Case(
        body({}, request_id="package_request"), statuses(404, admin=200, researcher=403)
    ),
    "POST /api/v1/packages/requests/{request_id}/refuse": Case(
        body({"reason": "not needed"}, request_id="package_request"), statuses(404, admin=200, researcher=403)
    ),
    "GET /api/v1/packages/mirror": Case(no_body(), statuses(200)),
}


def app_routes() -> set[str]:
    app = create_app()
    found = set()
    for route in iter_route_contexts(app.routes):
        for method in sorted((route.methods or set()) - {"HEAD"}):
            found.add(f"{method} {route.path}")
    return found


def test_every_route_has_a_matrix_entry(db_url: str) -> None:
    routes = app_routes()
    assert routes - MATRIX.keys() == set(), "add these routes to MATRIX with the expected status per role"
    assert MATRIX.keys() - routes == set(), "these MATRIX entries name routes that no longer exist"


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("route", sorted(MATRIX))
def test_permission_matrix(route: str, role: str, client: TestClient, world: World) -> None:
    case = MATRIX[route]
    method, template = route.split(" ", 1)
    params, payload = case.build(world, role)
    path = template.format(**params)
    query = case.query(world, role) if case.query else None
    response = client.request(method, path, json=payload, params=query, headers=world.headers(role))
    expected = case.expect[role]
    assert response.status_code == expected, f"{role} {method} {path}: {response.status_code} {response.text}"
    if response.status_code >= 400:
        error = response.json()
        assert error["error"] and error["message"], "every refusal says what went wrong"
