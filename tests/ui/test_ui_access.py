"""Who may open which page, CSRF on every form, and one organisation never seeing another's objects.

The page matrix mirrors the API's permission matrix (tests/security/test_sec_permission_matrix.py): a
page of an object the viewer may not know about is 'not found' (404), a page of a role the viewer lacks
is 'not allowed' (403), and anyone not signed in is sent to /login.
"""

from __future__ import annotations

import re

import pytest
from factories import World, row_counts
from fastapi.routing import iter_route_contexts
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from tre_platform.ui.app import PagesMount

ROLES = ["admin", "data_owner", "approver", "researcher", "output_checker", "other_owner"]


def expect(default: int, **by_role: int) -> dict[str, int]:
    return {role: by_role.get(role, default) for role in ROLES}


EVERYONE = expect(200)
ADMIN_ONLY = expect(403, admin=200)
OWNERS = expect(403, admin=200, data_owner=200, other_owner=200)

#: page (with {world id} placeholders) -> expected status per role.
PAGES: dict[str, dict[str, int]] = {
    "/": EVERYONE,
    "/projects": EVERYONE,
    "/projects/new": EVERYONE,
    "/projects?state=submitted": EVERYONE,
    # A draft is its applicants' (and admins') only; a submitted application also the approver's and
    # the owner of the data it asks for (health owns hes).
    "/projects/{draft}": expect(404, admin=200, researcher=200),
    "/projects/{submitted}": expect(404, admin=200, researcher=200, approver=200, data_owner=200),
    "/datasets": EVERYONE,
    "/datasets/new": OWNERS,
    "/datasets/{hes}": EVERYONE,
    # Ingesting is the policy engine's decision (ingest_dataset): the owner organisation's data owners only.
    "/datasets/{hes}/upload": expect(403, data_owner=200),
    "/datasets/{lfs}/upload": expect(403, other_owner=200),
    "/account": EVERYONE,
    "/account/totp": EVERYONE,
    "/agreements": OWNERS,
    "/agreements/new": OWNERS,
    "/agreements/{active_agreement}": expect(404, admin=200, data_owner=200),
    "/agreements/{other_agreement}": expect(404, admin=200, other_owner=200),
    "/usage": OWNERS,
    "/releases": EVERYONE,
    "/admin/orgs": ADMIN_ONLY,
    "/admin/orgs/{labour}": ADMIN_ONLY,
    "/admin/users": ADMIN_ONLY,
    "/admin/users/new": ADMIN_ONLY,
    "/admin/users/{colleague}": ADMIN_ONLY,
    "/admin/accreditations": ADMIN_ONLY,
    "/admin/audit": ADMIN_ONLY,
    # Package requests: the requester's and administrators' (what the mirror serves is no secret).
    "/packages": EVERYONE,
    "/packages/{package_request}": expect(404, admin=200, researcher=200),
}


def page_path(template: str, world: World) -> str:
    return re.sub(r"\{(\w+)\}", lambda m: world.ids[m.group(1)], template)


def ui_routes(client: TestClient, method: str) -> set[str]:
    """The page routes answering ``method`` (walked as the API's matrix walks the API's routes)."""
    mount = next(r for r in client.app.routes if isinstance(r, PagesMount))  # type: ignore[attr-defined]
    return {
        str(route.path)
        for route in iter_route_contexts(mount.app.routes)  # type: ignore[attr-defined]
        if method in (route.methods or set())
    }


@pytest.mark.parametrize("template", sorted(PAGES))
def test_pages_send_anonymous_visitors_to_sign_in(template: str, client: TestClient, world: World) -> None:
    path = page_path(template, world)
    response = client.get(path, follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"].startswith("/login")


def test_every_page_route_is_in_the_access_matrix(client: TestClient) -> None:
    get_routes = ui_routes(client, "GET")
    assert len(get_routes) > 20
    # Sign-in pages are public; chart, file and bundle downloads are covered by their own tests.
    public_or_downloads = {
        "/login",
        "/login/totp",
        "/login/enrol",
        "/login/oidc",
        "/login/oidc/callback",
        "/projects/check",
    }
    downloads = {
        p for p in get_routes if p.endswith(("/bundle", "/charts/{kind}/{name}", "/files/{file_id}"))
    }
    templated = {re.sub(r"\?.*", "", re.sub(r"\{\w+\}", "{x}", p)) for p in PAGES}
    missing = {
        p
        for p in get_routes - public_or_downloads - downloads
        if re.sub(r"\{\w+\}", "{x}", p) not in templated and p not in ("/releases/{request_id}",)
    }
    assert missing == set(), "add these pages to PAGES with the expected status per role"


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("template", sorted(PAGES))
def test_page_access_matrix(template: str, role: str, client: TestClient, world: World, signed_in) -> None:
    signed_in(role)
    path = page_path(template, world)
    response = client.get(path, follow_redirects=False)
    assert response.status_code == PAGES[template][role], f"{role} GET {path}: {response.text[:300]}"
    assert response.headers["content-type"].startswith("text/html")


def test_every_form_is_refused_without_its_csrf_token(
    client: TestClient, world: World, db: Session, signed_in
) -> None:
    signed_in("admin")
    posts = sorted(ui_routes(client, "POST"))
    assert len(posts) > 15
    before = row_counts(db)
    for template in posts:
        path = re.sub(r"\{\w+\}", world.ids["submitted"], template)
        for token in (None, "forged-token"):
            data = {"name": "x", "action": "approve"} | ({"csrf_token": token} if token else {})
            response = client.post(path, data=data, follow_redirects=False)
            assert response.status_code == 403, f"POST {path} with token {token!r}: {response.status_code}"
    after = row_counts(db)
    # Refusals are audited (access.denied), and nothing else changes.
    assert {k: v for k, v in after.items() if k != "audit_events"} == {
        k: v for k, v in before.items() if k != "audit_events"
    }


def test_a_refused_form_changes_nothing_and_the_same_form_with_its_token_works(
    client: TestClient, world: World, db: Session, signed_in
) -> None:
    token = signed_in("admin")
    form = {"slug": "new-body", "name": "New Body", "kind": "research_body"}
    before = row_counts(db)
    assert client.post("/admin/orgs", data=form, follow_redirects=False).status_code == 403
    assert row_counts(db)["organisations"] == before["organisations"]
    response = client.post("/admin/orgs", data=form | {"csrf_token": token}, follow_redirects=False)
    assert response.status_code == 303
    assert row_counts(db)["organisations"] == before["organisations"] + 1


def test_data_owner_sees_no_object_of_another_organisation(
    client: TestClient, world: World, signed_in
) -> None:
    signed_in("data_owner")  # owner of the Health Data Agency (hes); lfs belongs to the Labour Market Office
    agreements = client.get("/agreements").text
    assert world.ids["active_agreement"] in agreements
    assert world.ids["other_agreement"] not in agreements
    assert client.get(f"/agreements/{world.ids['other_agreement']}").status_code == 404
    usage = client.get("/usage").text
    assert "hes" in usage and "lfs" not in usage
    home = client.get("/").text
    assert world.ids["other_agreement"] not in home and "lfs" not in home
    # The catalogue is public, but another owner's versions and agreements are not shown.
    other = client.get(f"/datasets/{world.ids['lfs']}").text
    assert "Published versions" not in other and "Agreements sharing" not in other
    own = client.get(f"/datasets/{world.ids['hes']}").text
    assert "Published versions" in own


def test_researcher_sees_only_their_own_projects(client: TestClient, world: World, signed_in) -> None:
    signed_in("colleague")
    listing = client.get("/projects").text
    assert world.ids["draft"] not in listing and world.ids["submitted"] not in listing
    assert client.get(f"/projects/{world.ids['draft']}").status_code == 404


def test_api_paths_keep_their_json_answers(client: TestClient) -> None:
    missing = client.get("/api/v1/no-such-route")
    assert missing.status_code == 404 and missing.json()["error"] == "not_found"
    wrong_method = client.delete("/api/v1/orgs")
    assert wrong_method.status_code == 405 and wrong_method.json()["error"] == "method_not_allowed"
    assert client.get("/healthz").json()["status"] == "ok"
    page = client.get("/no-such-page")
    assert page.status_code == 404 and page.headers["content-type"].startswith("text/html")
