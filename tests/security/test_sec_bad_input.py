"""Bad input gets a 4xx with a clear message and changes nothing.

Unknown fields, wrong types and SQL-injection strings are tried on every create schema; the text fields
are found from the pydantic schemas themselves, so a new field is covered without editing this file.
"""

from __future__ import annotations

import datetime as dt
import itertools
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from factories import PASSWORD, World, row_counts
from fastapi.testclient import TestClient
from pydantic import BaseModel
from sqlalchemy.orm import Session

from tre_platform.api.agreements.schemas import AgreementCreate, AgreementRevoke
from tre_platform.api.datasets.schemas import DatasetCreate
from tre_platform.api.orgs.schemas import OrgCreate
from tre_platform.api.projects.schemas import DatasetRequest, MemberAdd, ProjectCreate, TransitionRequest
from tre_platform.api.users.schemas import (
    AccreditationCreate,
    LoginRequest,
    RevokeRequest,
    RoleGrant,
    TokenCreate,
    TrainingCreate,
    UserCreate,
)

API = "/api/v1"
INJECTIONS = ["'; DROP TABLE users; --", "1 OR 1=1", '" OR ""="', "Robert'); DROP TABLE projects;--"]
_unique = itertools.count(1)
TODAY = dt.date.today()


@dataclass(frozen=True)
class Create:
    """A create route: its schema, who may call it, and a valid body (fresh unique values per call)."""

    path: str
    schema: type[BaseModel]
    role: str
    payload: Callable[[World], dict[str, Any]]

    def url(self, world: World) -> str:
        return self.path.format(**world.ids)


def _n() -> int:
    return next(_unique)


CREATES: dict[str, Create] = {
    "org": Create(
        "/orgs", OrgCreate, "admin", lambda w: {"slug": f"org-x{_n()}", "name": "X", "kind": "both"}
    ),
    "user": Create(
        "/users",
        UserCreate,
        "admin",
        lambda w: (
            (n := _n())
            and {
                "username": f"u-x{n}",
                "full_name": "X",
                "email": f"x{n}@example.org",
                "organisation_id": w.ids["uni"],
                "password": "a long enough passphrase",
            }
        ),
    ),
    "role": Create("/users/{colleague}/roles", RoleGrant, "admin", lambda w: {"role": "approver"}),
    "accreditation": Create(
        "/users/{colleague}/accreditations",
        AccreditationCreate,
        "admin",
        lambda w: {"scheme": "DEA", "reference": "R1", "granted_on": str(TODAY), "expires_on": str(TODAY)},
    ),
    "accreditation-revoke": Create(
        "/users/{colleague}/accreditations/{colleague_accreditation}/revoke",
        RevokeRequest,
        "admin",
        lambda w: {"reason": "left"},
    ),
    "training": Create(
        "/users/{colleague}/training",
        TrainingCreate,
        "admin",
        lambda w: {"course": "SRT", "completed_on": str(TODAY)},
    ),
    "project": Create(
        "/projects",
        ProjectCreate,
        "researcher",
        lambda w: {
            "title": "T",
            "lay_summary": "A study of public benefit in plain words.",
            "purpose": "policy_evidence",
            "legal_gateway": "dea",
            "start_date": str(TODAY),
            "end_date": str(TODAY + dt.timedelta(days=30)),
        },
    ),
    "member": Create(
        "/projects/{draft}/members", MemberAdd, "researcher", lambda w: {"user_id": w.ids["colleague"]}
    ),
    "dataset-request": Create(
        "/projects/{draft}/datasets",
        DatasetRequest,
        "researcher",
        lambda w: {"dataset_id": w.ids["hes"], "columns": ["age"], "justification": "needed"},
    ),
    "transition": Create(
        "/projects/{submitted}/transitions",
        TransitionRequest,
        "approver",
        lambda w: {"action": "return", "comment": "c"},
    ),
    "dataset": Create(
        "/datasets",
        DatasetCreate,
        "data_owner",
        lambda w: {
            "name": f"ds-x{_n()}",
            "title": "T",
            "description": "D",
            "owner_org_id": w.ids["health"],
            "tier": 1,
            "schema": [{"name": "a", "type": "integer"}],
        },
    ),
    "agreement": Create(
        "/agreements",
        AgreementCreate,
        "data_owner",
        lambda w: {
            "reference": f"DSA-X{_n()}",
            "title": "T",
            "owner_org_id": w.ids["health"],
            "all_datasets": True,
            "any_accredited": True,
            "purposes": ["policy_evidence"],
            "legal_gateways": ["dea"],
            "dc_profile": "default",
            "conditions": "none",
            "valid_from": str(TODAY),
            "valid_to": str(TODAY + dt.timedelta(days=30)),
        },
    ),
    "agreement-revoke": Create(
        "/agreements/{active_agreement}/revoke", AgreementRevoke, "data_owner", lambda w: {"reason": "lapsed"}
    ),
    "token": Create(
        "/auth/tokens", TokenCreate, "researcher", lambda w: {"name": "laptop", "scopes": ["api"]}
    ),
    "login": Create(
        "/auth/login", LoginRequest, "anonymous", lambda w: {"username": "researcher", "password": PASSWORD}
    ),
}


def _holds_text(annotation: Any) -> bool:
    """True for str, str | None, list[str], Annotated[str, ...] and the like."""
    if annotation is str:
        return True
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _holds_text(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType, list):
        return any(_holds_text(arg) for arg in typing.get_args(annotation))
    return False


def _is_list(annotation: Any) -> bool:
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _is_list(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        return any(_is_list(arg) for arg in typing.get_args(annotation))
    return origin is list


def text_fields() -> list[tuple[str, str, bool]]:
    cases = []
    for name, create in CREATES.items():
        for field_name, info in create.schema.model_fields.items():
            if _holds_text(info.annotation):
                cases.append((name, info.alias or field_name, _is_list(info.annotation)))
    return cases


def send(client: TestClient, world: World, create: Create, body: Any) -> Any:
    return client.post(API + create.url(world), json=body, headers=world.headers(create.role))


def assert_refused_and_unchanged(
    response: Any, before: dict[str, int], db: Session, status: int = 422
) -> None:
    assert response.status_code == status, response.text
    error = response.json()
    assert error["error"] and error["message"]
    assert "Traceback" not in response.text
    assert row_counts(db) == before


@pytest.mark.parametrize("name", sorted(CREATES))
def test_valid_body_is_accepted(name: str, client: TestClient, world: World) -> None:
    """The baseline the other tests spoil: each payload builder makes a body the route accepts."""
    create = CREATES[name]
    response = send(client, world, create, create.payload(world))
    assert response.status_code in (200, 201, 204), response.text


@pytest.mark.parametrize("name", sorted(CREATES))
def test_unknown_field_is_refused_by_name(name: str, client: TestClient, world: World, db: Session) -> None:
    create = CREATES[name]
    before = row_counts(db)
    response = send(client, world, create, {**create.payload(world), "is_admin": True})
    assert_refused_and_unchanged(response, before, db)
    assert response.json()["field"] == "is_admin"
    assert "unknown field 'is_admin'" in response.json()["message"]


@pytest.mark.parametrize("name", sorted(CREATES))
def test_wrong_types_are_refused(name: str, client: TestClient, world: World, db: Session) -> None:
    create = CREATES[name]
    before = row_counts(db)
    payload = create.payload(world)
    spoiled = {key: {"nested": ["object"]} for key in payload}
    response = send(client, world, create, spoiled)
    assert_refused_and_unchanged(response, before, db)
    problems = response.json()["problems"]
    assert {p["field"] for p in problems} >= set(payload) - {"schema"} or len(problems) >= len(payload)
    for not_an_object in ([1, 2], "text", 42, None):
        assert_refused_and_unchanged(send(client, world, create, not_an_object), before, db)


def test_invalid_json_is_refused(client: TestClient, world: World, db: Session) -> None:
    before = row_counts(db)
    response = client.post(
        f"{API}/orgs",
        content=b"{not json",
        headers={**world.headers("admin"), "content-type": "application/json"},
    )
    assert_refused_and_unchanged(response, before, db)


@pytest.mark.parametrize(("name", "field", "is_list"), text_fields(), ids=lambda v: str(v))
def test_sql_injection_in_every_text_field_is_inert(
    name: str, field: str, is_list: bool, client: TestClient, world: World, db: Session
) -> None:
    """Each injection string is either refused (4xx, nothing changed) or stored literally as text.

    Queries are parameterised by SQLAlchemy, so an accepted string is data, never SQL: the tables it
    names still hold every row, and the value comes back exactly as sent.
    """
    create = CREATES[name]
    for attack in INJECTIONS:
        before = row_counts(db)
        payload = create.payload(world)
        payload[field] = [attack] if is_list else attack
        response = send(client, world, create, payload)
        if response.status_code >= 400:
            assert 400 <= response.status_code < 500, response.text
            assert "Traceback" not in response.text and response.json()["message"]
            after = row_counts(db)
            # A refused sign-in is audited and counted towards the lockout (and only that); everything else
            # is unchanged.
            if name == "login":
                after["audit_events"] -= 1
                after["login_attempts"] -= 1
            assert after == before
            continue
        after = row_counts(db)
        assert all(after[table] >= count for table, count in before.items()), "no table lost rows"
        echoed = response.json().get(field) if response.content else None
        if echoed is not None:
            assert echoed == payload[field], "an accepted value is stored and returned verbatim"


def test_oversized_body_is_refused_by_content_length(client: TestClient, world: World, db: Session) -> None:
    before = row_counts(db)
    big = {"slug": "big", "name": "x", "kind": "both", "padding": "x" * 2_000_000}
    response = client.post(f"{API}/orgs", json=big, headers=world.headers("admin"))
    assert_refused_and_unchanged(response, before, db, status=413)
    assert "TRE_MAX_BODY_BYTES" in response.json()["message"]


def test_oversized_chunked_body_is_refused_while_streaming(
    client: TestClient, world: World, db: Session
) -> None:
    before = row_counts(db)
    sent = 0

    def chunks() -> Any:
        nonlocal sent
        for _ in range(40):
            sent += 1
            yield b"x" * 65_536

    response = client.post(
        f"{API}/orgs",
        content=chunks(),
        headers={**world.headers("admin"), "content-type": "application/json"},
    )
    assert_refused_and_unchanged(response, before, db, status=413)


def test_a_body_under_the_limit_is_accepted(client: TestClient, world: World) -> None:
    payload = {"slug": "fits", "name": "x" * 200, "kind": "both"}
    assert client.post(f"{API}/orgs", json=payload, headers=world.headers("admin")).status_code == 201


def test_overlong_text_is_refused(client: TestClient, world: World, db: Session) -> None:
    before = row_counts(db)
    response = client.post(
        f"{API}/orgs",
        json={"slug": "long", "name": "x" * 201, "kind": "both"},
        headers=world.headers("admin"),
    )
    assert_refused_and_unchanged(response, before, db)
    assert response.json()["field"] == "name"


def test_bad_enum_values_are_refused(client: TestClient, world: World, db: Session) -> None:
    before = row_counts(db)
    payload = CREATES["agreement"].payload(world) | {"purposes": ["marketing"], "legal_gateways": ["because"]}
    response = client.post(f"{API}/agreements", json=payload, headers=world.headers("data_owner"))
    assert_refused_and_unchanged(response, before, db)
    fields = {p["field"] for p in response.json()["problems"]}
    assert fields == {"purposes.0", "legal_gateways.0"}


@pytest.mark.parametrize(
    ("column", "complaint"),
    [
        ({"name": "nhs", "type": "string", "identifier": True}, "which reference index"),
        ({"name": "age", "type": "integer", "min": 10, "max": 1}, "min is greater than max"),
        ({"name": "Bad Name", "type": "integer"}, "name"),
        ({"name": "code", "type": "integer", "allowed": ["a"]}, "allowed values apply only to string"),
        ({"name": "born", "type": "date", "min": "yesterday"}, "not an ISO date"),
        ({"name": "x", "type": "blob"}, "type"),
    ],
)
def test_dataset_schema_is_validated(
    column: dict[str, Any], complaint: str, client: TestClient, world: World, db: Session
) -> None:
    before = row_counts(db)
    payload = CREATES["dataset"].payload(world)
    payload["schema"] = [{"name": "ok", "type": "integer"}, column]
    response = client.post(f"{API}/datasets", json=payload, headers=world.headers("data_owner"))
    assert_refused_and_unchanged(response, before, db)
    assert complaint in response.json()["message"]


def test_an_expired_token_and_a_revoked_accreditation_are_refused(
    client: TestClient, world: World, db: Session
) -> None:
    admin = world.headers("admin")
    path = (
        f"{API}/users/{world.ids['colleague']}/accreditations/{world.ids['colleague_accreditation']}/revoke"
    )
    assert client.post(path, json={"reason": "left"}, headers=admin).status_code == 200
    before = row_counts(db)
    response = client.post(path, json={"reason": "again"}, headers=admin)
    assert_refused_and_unchanged(response, before, db, status=409)
