"""Organisations, users, datasets, agreements and the audit log through the REST API (happy paths and
the ownership rules)."""

from __future__ import annotations

import datetime as dt

from factories import World, row_counts
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from tre_platform.clock import clock

API = "/api/v1"


def test_healthz_reports_the_database(client: TestClient) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "database": "ok"}


def test_openapi_document_lists_the_domains(client: TestClient) -> None:
    paths = client.get(f"{API}/openapi.json").json()["paths"]
    for prefix in ("/orgs", "/users", "/projects", "/datasets", "/agreements", "/audit", "/auth"):
        assert any(p.startswith(API + prefix) for p in paths), prefix
    assert "max_body_bytes" not in paths  # the limit is documented in the description instead
    assert "bytes (TRE_MAX_BODY_BYTES)" in client.get(f"{API}/openapi.json").json()["info"]["description"]


def test_admin_onboards_an_organisation_and_a_user_with_roles_accreditation_and_training(
    client: TestClient, world: World
) -> None:
    admin = world.headers("admin")
    org = client.post(
        f"{API}/orgs", json={"slug": "stats", "name": "Stats Office", "kind": "both"}, headers=admin
    )
    assert org.status_code == 201, org.text
    org_id = org.json()["id"]
    assert (
        client.patch(f"{API}/orgs/{org_id}", json={"name": "Statistics Office"}, headers=admin).json()["name"]
        == "Statistics Office"
    )

    user = client.post(
        f"{API}/users",
        json={
            "username": "dana",
            "full_name": "Dana Owner",
            "email": "dana@stats.example",
            "organisation_id": org_id,
            "password": "a long enough passphrase",
            "roles": [{"role": "data_owner", "organisation_id": org_id}, {"role": "researcher"}],
        },
        headers=admin,
    )
    assert user.status_code == 201, user.text
    user_id = user.json()["id"]
    assert {(r["role"], r["organisation_id"]) for r in user.json()["roles"]} == {
        ("data_owner", org_id),
        ("researcher", None),
    }
    today = clock.today()
    accreditation = client.post(
        f"{API}/users/{user_id}/accreditations",
        json={
            "scheme": "DEA accredited researcher",
            "granted_on": today.isoformat(),
            "expires_on": (today + dt.timedelta(days=365)).isoformat(),
        },
        headers=admin,
    )
    assert accreditation.status_code == 201
    training = client.post(
        f"{API}/users/{user_id}/training",
        json={"course": "Safe researcher training", "completed_on": today.isoformat()},
        headers=admin,
    )
    assert training.status_code == 201
    revoked = client.post(
        f"{API}/users/{user_id}/accreditations/{accreditation.json()['id']}/revoke",
        json={"reason": "moved abroad"},
        headers=admin,
    )
    assert revoked.json()["revoked_reason"] == "moved abroad"
    shown = client.get(f"{API}/users/{user_id}", headers=admin).json()
    assert len(shown["accreditations"]) == 1 and shown["accreditations"][0]["revoked_at"] is not None
    assert [t["course"] for t in shown["training"]] == ["Safe researcher training"]
    after = client.delete(f"{API}/users/{user_id}/roles/researcher", headers=admin).json()
    assert [r["role"] for r in after["roles"]] == ["data_owner"]
    listed = client.get(f"{API}/users?role=data_owner", headers=admin).json()
    assert {u["username"] for u in listed} == {"owner", "other-owner", "dana"}


def test_data_owner_role_needs_a_data_owning_organisation(
    client: TestClient, world: World, db: Session
) -> None:
    before = row_counts(db)
    response = client.post(
        f"{API}/users/{world.ids['colleague']}/roles",
        json={"role": "data_owner", "organisation_id": world.ids["uni"]},
        headers=world.headers("admin"),
    )
    assert response.status_code == 422
    assert "not a data owner" in response.json()["message"]
    assert row_counts(db) == before


def test_users_see_themselves_but_not_others(client: TestClient, world: World) -> None:
    me = client.get(f"{API}/users/{world.ids['researcher']}", headers=world.headers("researcher"))
    assert me.status_code == 200 and me.json()["username"] == "researcher"
    other = client.get(f"{API}/users/{world.ids['approver']}", headers=world.headers("researcher"))
    assert other.status_code == 404


def test_data_owner_registers_a_dataset_and_sees_its_versions(client: TestClient, world: World) -> None:
    owner = world.headers("data_owner")
    response = client.post(
        f"{API}/datasets",
        json={
            "name": "maternity",
            "title": "Maternity services",
            "owner_org_id": world.ids["health"],
            "tier": 3,
            "schema": [
                {"name": "nhs_number", "type": "string", "identifier": True, "index": "demographic"},
                {"name": "postcode", "type": "string", "identifier": True, "index": "address"},
                {"name": "birth_weight", "type": "float", "min": 0, "max": 7000},
                {"name": "delivered", "type": "date", "min": "2000-01-01"},
            ],
        },
        headers=owner,
    )
    assert response.status_code == 201, response.text
    dataset = response.json()
    assert dataset["research_columns"] == ["birth_weight", "delivered"]
    assert dataset["identifier_columns"] == {"nhs_number": "demographic", "postcode": "address"}
    assert dataset["schema"][2]["max"] == 7000
    assert client.get(f"{API}/datasets/{dataset['id']}/versions", headers=owner).json() == []
    catalogue = client.get(f"{API}/datasets", headers=world.headers("researcher")).json()
    assert {d["name"] for d in catalogue} == {"hes", "lfs", "maternity"}


def test_a_data_owner_cannot_manage_another_organisations_data(
    client: TestClient, world: World, db: Session
) -> None:
    owner = world.headers("data_owner")
    before = row_counts(db)
    response = client.post(
        f"{API}/datasets",
        json={
            "name": "sneaky",
            "title": "Sneaky",
            "owner_org_id": world.ids["labour"],
            "tier": 1,
            "schema": [{"name": "a", "type": "integer"}],
        },
        headers=owner,
    )
    assert response.status_code == 403
    # Another organisation's agreement: its existence is not revealed.
    for method, suffix, payload in [
        ("GET", "", None),
        ("PATCH", "", {"title": "mine now"}),
        ("POST", "/revoke", {"reason": "because I can"}),
    ]:
        response = client.request(
            method, f"{API}/agreements/{world.ids['other_agreement']}{suffix}", json=payload, headers=owner
        )
        assert response.status_code == 404, (method, suffix, response.text)
    assert client.get(f"{API}/datasets/{world.ids['lfs']}/versions", headers=owner).status_code == 404
    listed = client.get(f"{API}/agreements", headers=owner).json()
    assert world.ids["other_agreement"] not in {a["id"] for a in listed}
    # Only the 403 above was recorded (as a denial); nothing else changed.
    after = row_counts(db)
    assert after.pop("audit_events") == before.pop("audit_events") + 1
    assert after == before


def test_agreement_grant_edit_before_start_and_revoke(client: TestClient, world: World, db: Session) -> None:
    owner = world.headers("data_owner")
    today = clock.today()
    response = client.post(
        f"{API}/agreements",
        json={
            "reference": "DSA-HEALTH-7",
            "title": "Hospital data for the university",
            "owner_org_id": world.ids["health"],
            "dataset_ids": [world.ids["hes"]],
            "recipient_org_ids": [world.ids["uni"]],
            "purposes": ["policy_evidence", "improve_statistics"],
            "legal_gateways": ["dea"],
            "dc_profile": "strict",
            "dp_epsilon": 1.0,
            "conditions": "outputs at the regional level only",
            "valid_from": (today + dt.timedelta(days=10)).isoformat(),
            "valid_to": (today + dt.timedelta(days=375)).isoformat(),
        },
        headers=owner,
    )
    assert response.status_code == 201, response.text
    agreement = response.json()
    assert agreement["status"] == "pending" and agreement["dataset_ids"] == [world.ids["hes"]]
    edited = client.patch(
        f"{API}/agreements/{agreement['id']}",
        json={"all_datasets": True, "max_tier": 2, "any_accredited": True},
        headers=owner,
    )
    assert edited.status_code == 200, edited.text
    assert edited.json()["all_datasets"] is True and edited.json()["dataset_ids"] == []
    assert edited.json()["any_accredited"] is True and edited.json()["recipient_ids"] == []
    revoked = client.post(
        f"{API}/agreements/{agreement['id']}/revoke", json={"reason": "superseded"}, headers=owner
    )
    assert revoked.json()["status"] == "revoked" and revoked.json()["revoked_reason"] == "superseded"
    before = row_counts(db)
    again = client.post(f"{API}/agreements/{agreement['id']}/revoke", json={"reason": "again"}, headers=owner)
    assert again.status_code == 409
    assert (
        client.patch(f"{API}/agreements/{agreement['id']}", json={"title": "x"}, headers=owner).status_code
        == 409
    )
    assert row_counts(db) == before


def test_an_agreement_in_force_cannot_be_edited(client: TestClient, world: World, db: Session) -> None:
    before = row_counts(db)
    response = client.patch(
        f"{API}/agreements/{world.ids['active_agreement']}",
        json={"max_tier": 4},
        headers=world.headers("data_owner"),
    )
    assert response.status_code == 409
    assert "revoke it and grant a new one" in response.json()["message"]
    assert row_counts(db) == before


def test_an_agreement_can_only_share_its_owners_datasets(
    client: TestClient, world: World, db: Session
) -> None:
    before = row_counts(db)
    today = clock.today()
    response = client.post(
        f"{API}/agreements",
        json={
            "title": "Mixing organisations",
            "owner_org_id": world.ids["health"],
            "dataset_ids": [world.ids["lfs"]],
            "any_accredited": True,
            "purposes": ["policy_evidence"],
            "legal_gateways": ["dea"],
            "valid_from": today.isoformat(),
            "valid_to": (today + dt.timedelta(days=30)).isoformat(),
        },
        headers=world.headers("admin"),
    )
    assert response.status_code == 422
    assert world.ids["lfs"] in response.json()["message"] and response.json()["field"] == "dataset_ids"
    assert row_counts(db) == before


def test_audit_events_are_filtered_paginated_and_verified(client: TestClient, world: World) -> None:
    admin = world.headers("admin")
    page = client.get(f"{API}/audit/events?action=project.&limit=2", headers=admin).json()
    assert page["total"] >= 3 and len(page["events"]) == 2
    assert all(e["action"].startswith("project.") for e in page["events"])
    assert page["events"][0]["seq"] > page["events"][1]["seq"]
    second = client.get(f"{API}/audit/events?action=project.&limit=2&offset=2", headers=admin).json()
    assert {e["seq"] for e in second["events"]}.isdisjoint({e["seq"] for e in page["events"]})
    by_target = client.get(f"{API}/audit/events?target_id={world.ids['submitted']}", headers=admin).json()
    assert {e["action"] for e in by_target["events"]} >= {"project.create", "project.submit"}
    verified = client.get(f"{API}/audit/verify", headers=admin).json()
    assert verified["ok"] is True and verified["checked"] >= page["total"], verified
