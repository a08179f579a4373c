"""API tokens cannot outgrow their origin: attacks through the REST API, one move per test.

A workspace's token (scopes api+workspace, one day, tied to its project) is what a researcher holds
inside a workspace. From it - or from any token - they try to mint something longer-lived or broader,
or to keep a token working after what justified it ended.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from factories import World, fresh
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from tre_platform.actor import Actor
from tre_platform.api.users import service as users
from tre_platform.api.users.models import User
from tre_platform.api.users.schemas import TokenCreate
from tre_platform.settings import get_settings

API = "/api/v1"


def bearer(raw: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {raw}"}


def mint(client: TestClient, raw: str, **body: Any) -> Any:
    return client.post(f"{API}/auth/tokens", json={"name": "minted", **body}, headers=bearer(raw))


def whoami(client: TestClient, raw: str) -> int:
    return int(client.get(f"{API}/auth/whoami", headers=bearer(raw)).status_code)


def _token(db: Session, world: World, *, project: bool = True, **data: Any) -> tuple[str, str]:
    analyst = db.get(User, world.ids["analyst"])
    assert analyst is not None
    token, raw = users.create_api_token(
        db,
        Actor.of(analyst),
        TokenCreate(**{"name": "origin", **data}),
        project_id=world.ids["approved"] if project else None,
    )
    db.commit()
    return token.id, raw


@pytest.fixture
def workspace_token(db: Session, world: World) -> tuple[str, str]:
    """What plan_workspace gives a workspace: api+workspace scopes, one day, tied to the project."""
    return _token(db, world, scopes=["api", "workspace"], expires_in_days=1)


@pytest.fixture
def enforcing(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("TRE_ENFORCE_ON_CHANGE", "true")
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def test_a_workspace_token_cannot_mint_a_year_long_token(
    client: TestClient, workspace_token: tuple[str, str]
) -> None:
    response = mint(client, workspace_token[1], expires_in_days=366)
    assert response.status_code == 403
    assert "workspace's token cannot create" in response.json()["message"]


def test_a_workspace_token_cannot_mint_any_token(
    client: TestClient, workspace_token: tuple[str, str]
) -> None:
    for body in ({}, {"expires_in_days": 1, "scopes": ["api"]}, {"scopes": ["api", "workspace"]}):
        assert mint(client, workspace_token[1], **body).status_code == 403


def test_a_token_cannot_mint_one_that_outlives_it(client: TestClient, db: Session, world: World) -> None:
    _, raw = _token(db, world, project=False, scopes=["api"], expires_in_days=2)
    response = mint(client, raw, scopes=["api"], expires_in_days=3)
    assert response.status_code == 403
    assert "cannot outlive" in response.json()["message"]


def test_a_token_cannot_mint_a_broader_scope(client: TestClient, db: Session, world: World) -> None:
    _, raw = _token(db, world, project=False, scopes=["api"], expires_in_days=2)
    assert mint(client, raw, expires_in_days=1).status_code == 403  # no scopes = every scope
    assert mint(client, raw, scopes=["api", "hub"], expires_in_days=1).status_code == 403


def test_a_minted_token_without_a_lifetime_ends_with_its_parent(
    client: TestClient, db: Session, world: World
) -> None:
    parent_id, raw = _token(db, world, project=False, scopes=["api"], expires_in_days=2)
    response = mint(client, raw, scopes=["api"])
    assert response.status_code == 201
    parent = next(t for t in mint_list(client, raw) if t["id"] == parent_id)
    assert response.json()["expires_at"] <= parent["expires_at"]


def mint_list(client: TestClient, raw: str) -> list[dict[str, Any]]:
    response = client.get(f"{API}/auth/tokens", headers=bearer(raw))
    assert response.status_code == 200
    return list(response.json())


def test_revoking_a_token_revokes_the_tokens_minted_from_it(
    client: TestClient, db: Session, world: World
) -> None:
    parent_id, raw = _token(db, world, project=False, scopes=["api"], expires_in_days=5)
    child = mint(client, raw, scopes=["api"], expires_in_days=2).json()["token"]
    grandchild = mint(client, child, scopes=["api"], expires_in_days=1).json()["token"]
    assert whoami(client, grandchild) == 200
    assert client.delete(f"{API}/auth/tokens/{parent_id}", headers=bearer(raw)).status_code == 200
    assert whoami(client, child) == 401
    assert whoami(client, grandchild) == 401


# The hub's stop path opens its own database session, which on PostgreSQL cannot see this test's
# uncommitted world; the lineage rule it relies on is backend-independent.
@pytest.mark.sqlite_only
def test_stopping_the_workspace_revokes_the_tokens_minted_from_its_token(
    client: TestClient, db: Session, world: World
) -> None:
    from tre_platform.hub.workspace import revoke_workspace_token

    # A workspace token of an older kind (api only) that could still mint: stopping ends its line.
    token_id, raw = _token(db, world, scopes=["api"], expires_in_days=2)
    child = mint(client, raw, scopes=["api"], expires_in_days=1).json()["token"]
    revoke_workspace_token("analyst", token_id)
    fresh(db)
    assert whoami(client, raw) == 401
    assert whoami(client, child) == 401


def test_revoking_the_accreditation_revokes_the_project_tokens(
    client: TestClient, db: Session, world: World, enforcing: None
) -> None:
    _, raw = _token(db, world, scopes=["api"], expires_in_days=5)
    child = mint(client, raw, scopes=["api"], expires_in_days=2).json()["token"]
    personal = _token(db, world, project=False, scopes=["api"], expires_in_days=5)[1]
    analyst = db.get(User, world.ids["analyst"])
    assert analyst is not None
    accreditation = analyst.accreditations[0].id
    response = client.post(
        f"{API}/users/{analyst.id}/accreditations/{accreditation}/revoke",
        json={"reason": "lapsed"},
        headers=world.headers("admin"),
    )
    assert response.status_code == 200, response.text
    assert whoami(client, raw) == 401
    assert whoami(client, child) == 401
    # A token the project did not justify is the user's own business, not the project's.
    assert whoami(client, personal) == 200


def test_closing_the_project_revokes_its_tokens_and_no_one_else_s(
    client: TestClient, db: Session, world: World, enforcing: None
) -> None:
    _, raw = _token(db, world, scopes=["api"], expires_in_days=5)
    bystander = world.tokens["researcher"]
    response = client.post(
        f"{API}/projects/{world.ids['approved']}/transitions",
        json={"action": "close", "comment": "finished"},
        headers=world.headers("admin"),
    )
    assert response.status_code == 200, response.text
    assert whoami(client, raw) == 401
    assert whoami(client, bystander) == 200
