"""Projects through the REST API: the whole state machine, the decision trail, separation of duties."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from factories import World, fresh, make_token, row_counts
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from tre_platform.actor import Actor
from tre_platform.api.audit.models import AuditEvent
from tre_platform.api.projects import service as projects
from tre_platform.api.projects.models import VALID_TRANSITIONS, Project, ProjectState
from tre_platform.api.users.models import User
from tre_platform.clock import clock

API = "/api/v1"


def act(client: TestClient, world: World, role: str, project_id: str, action: str, comment: str = "") -> Any:
    return client.post(
        f"{API}/projects/{project_id}/transitions",
        json={"action": action, "comment": comment},
        headers=world.headers(role),
    )


def new_project(client: TestClient, world: World) -> str:
    today = clock.today()
    response = client.post(
        f"{API}/projects",
        json={
            "title": "Housing and health",
            "lay_summary": "How housing quality relates to hospital admissions.",
            "purpose": "policy_evidence",
            "legal_gateway": "dea",
            "start_date": today.isoformat(),
            "end_date": (today + dt.timedelta(days=200)).isoformat(),
        },
        headers=world.headers("researcher"),
    )
    assert response.status_code == 201, response.text
    project = response.json()
    assert project["state"] == "draft" and project["lead_id"] == world.ids["researcher"]
    return str(project["id"])


def test_full_state_machine_through_the_api_leaves_a_decision_trail(
    client: TestClient, world: World, db: Session
) -> None:
    project_id = new_project(client, world)
    response = client.post(
        f"{API}/projects/{project_id}/datasets",
        json={"dataset_id": world.ids["hes"], "columns": ["age", "region"], "justification": "exposure"},
        headers=world.headers("researcher"),
    )
    assert response.status_code == 201, response.text
    assert response.json()["datasets"] == [
        {"dataset_id": world.ids["hes"], "columns": ["age", "region"], "justification": "exposure"}
    ]

    steps = [
        ("researcher", "submit", "submitted"),
        ("approver", "return", "returned"),
        ("researcher", "revise", "draft"),
        ("researcher", "submit", "submitted"),
        ("approver", "approve", "approved"),
        ("admin", "activate", "active"),
        ("admin", "close", "closed"),
    ]
    for role, action, state in steps:
        response = act(client, world, role, project_id, action, f"{action} please")
        assert response.status_code == 200, response.text
        assert response.json()["state"] == state

    trail = client.get(f"{API}/projects/{project_id}/decisions", headers=world.headers("researcher")).json()
    assert [(d["action"], d["from_state"], d["to_state"]) for d in trail] == [
        ("submit", "draft", "submitted"),
        ("return", "submitted", "returned"),
        ("revise", "returned", "draft"),
        ("submit", "draft", "submitted"),
        ("approve", "submitted", "approved"),
        ("activate", "approved", "active"),
        ("close", "active", "closed"),
    ]
    by_role = {
        "researcher": world.ids["researcher"],
        "approver": world.ids["approver"],
        "admin": world.ids["admin"],
    }
    assert [d["actor_id"] for d in trail] == [by_role[role] for role, _, _ in steps]
    assert all(d["comment"] == f"{d['action']} please" for d in trail)

    events = db.scalars(
        select(AuditEvent).where(AuditEvent.target_id == project_id).order_by(AuditEvent.seq)
    ).all()
    transitions = [e for e in events if e.action.split(".")[1] in {a for _, a, _ in steps}]
    assert [e.action for e in transitions] == [f"project.{a}" for _, a, _ in steps]
    assert [e.decision for e in transitions if e.action == "project.approve"] == ["approve"]

    # A closed project is finished: nothing more is allowed, and the message lists what is.
    response = act(client, world, "admin", project_id, "activate")
    assert response.status_code == 409
    assert "none (the project is finished)" in response.json()["message"]


def test_reject_is_final(client: TestClient, world: World) -> None:
    assert act(client, world, "approver", world.ids["submitted"], "reject", "out of scope").status_code == 200
    response = act(client, world, "researcher", world.ids["submitted"], "submit")
    assert response.status_code == 409


def test_disallowed_transition_is_409_and_changes_nothing(
    client: TestClient, world: World, db: Session
) -> None:
    before = row_counts(db)
    response = act(client, world, "admin", world.ids["draft"], "activate")
    assert response.status_code == 409
    body = response.json()
    assert body["error"] == "invalid_transition" and body["field"] == "action"
    assert "allowed: submit" in body["message"]
    assert row_counts(db) == before
    assert db.get(Project, world.ids["draft"]).state is ProjectState.draft  # type: ignore[union-attr]


def test_unknown_action_is_422(client: TestClient, world: World) -> None:
    response = act(client, world, "researcher", world.ids["draft"], "teleport")
    assert response.status_code == 422
    assert response.json()["field"] == "action"


def test_an_approver_who_belongs_to_the_project_cannot_approve_it(
    client: TestClient, world: World, db: Session
) -> None:
    # The colleague becomes an approver and a member of a new application.
    admin = world.headers("admin")
    assert (
        client.post(
            f"{API}/users/{world.ids['colleague']}/roles", json={"role": "approver"}, headers=admin
        ).status_code
        == 201
    )
    project_id = new_project(client, world)
    researcher = world.headers("researcher")
    client.post(
        f"{API}/projects/{project_id}/members", json={"user_id": world.ids["colleague"]}, headers=researcher
    )
    client.post(
        f"{API}/projects/{project_id}/datasets",
        json={"dataset_id": world.ids["hes"], "columns": ["age"]},
        headers=researcher,
    )
    assert act(client, world, "researcher", project_id, "submit").status_code == 200
    colleague = db.get(User, world.ids["colleague"])
    assert colleague is not None
    token = make_token(db, colleague)
    db.commit()
    response = client.post(
        f"{API}/projects/{project_id}/transitions",
        json={"action": "approve"},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert response.status_code == 403
    assert "another approver must decide" in response.json()["message"]
    # An independent approver can.
    assert act(client, world, "approver", project_id, "approve").status_code == 200


def test_the_lead_cannot_approve_their_own_project_even_as_an_admin(client: TestClient, world: World) -> None:
    response = act(client, world, "admin", world.ids["submitted"], "approve")
    assert response.status_code == 403


@pytest.mark.parametrize(
    ("columns", "named"),
    [(["age", "shoe_size"], "shoe_size"), (["nhs_number"], "nhs_number")],
    ids=["unknown column", "direct identifier"],
)
def test_requesting_a_column_that_is_not_a_research_column_names_it(
    client: TestClient, world: World, db: Session, columns: list[str], named: str
) -> None:
    before = row_counts(db)
    response = client.post(
        f"{API}/projects/{world.ids['draft']}/datasets",
        json={"dataset_id": world.ids["hes"], "columns": columns},
        headers=world.headers("researcher"),
    )
    assert response.status_code == 422
    assert named in response.json()["message"] and response.json()["field"] == "columns"
    assert row_counts(db) == before


def test_only_drafts_can_be_edited(client: TestClient, world: World) -> None:
    response = client.patch(
        f"{API}/projects/{world.ids['submitted']}",
        json={"title": "Sneaky"},
        headers=world.headers("researcher"),
    )
    assert response.status_code == 409
    assert "only a draft can be changed" in response.json()["message"]


def test_submitting_without_datasets_is_refused(client: TestClient, world: World) -> None:
    project_id = new_project(client, world)
    response = act(client, world, "researcher", project_id, "submit")
    assert response.status_code == 422
    assert "request at least one dataset" in response.json()["message"]


def test_members_are_added_and_removed(client: TestClient, world: World) -> None:
    headers = world.headers("researcher")
    path = f"{API}/projects/{world.ids['draft']}/members"
    response = client.post(path, json={"user_id": world.ids["colleague"]}, headers=headers)
    assert response.status_code == 201
    assert {m["user_id"] for m in response.json()["members"]} == {world.ids["member"], world.ids["colleague"]}
    assert client.post(path, json={"user_id": world.ids["colleague"]}, headers=headers).status_code == 409
    response = client.delete(f"{path}/{world.ids['member']}", headers=headers)
    assert response.status_code == 200
    assert {m["user_id"] for m in response.json()["members"]} == {world.ids["colleague"]}
    # Only researchers can be members.
    response = client.post(path, json={"user_id": world.ids["output_checker"]}, headers=headers)
    assert response.status_code == 422 and "not a researcher" in response.json()["message"]


def test_visibility_of_projects(client: TestClient, world: World) -> None:
    def codes(role: str) -> set[str]:
        response = client.get(f"{API}/projects", headers=world.headers(role))
        assert response.status_code == 200
        return {p["id"] for p in response.json()}

    both = {world.ids["draft"], world.ids["submitted"]}
    assert codes("admin") >= both
    assert codes("researcher") == both
    assert codes("approver") == {world.ids["submitted"]}
    assert codes("data_owner") == {world.ids["submitted"]}  # it requests their organisation's data
    assert codes("output_checker") == set()
    response = client.get(f"{API}/projects?state=draft", headers=world.headers("admin"))
    assert {p["state"] for p in response.json()} == {"draft"}


def test_expire_due_expires_projects_past_their_end_date(
    client: TestClient, world: World, db: Session
) -> None:
    assert act(client, world, "approver", world.ids["submitted"], "approve").status_code == 200
    project = db.get(Project, world.ids["submitted"])
    assert project is not None
    clock.freeze(dt.datetime.combine(project.end_date + dt.timedelta(days=1), dt.time(9), tzinfo=dt.UTC))
    fresh(db)
    expired = projects.expire_due(db)
    db.commit()
    assert [p.id for p in expired] == [world.ids["submitted"]]
    # A year on, the world's tokens have expired too: sign in afresh.
    admin = db.get(User, world.ids["admin"])
    assert admin is not None
    headers = {"Authorization": f"Bearer {make_token(db, admin)}"}
    db.commit()
    response = client.get(f"{API}/projects/{world.ids['submitted']}", headers=headers)
    assert response.json()["state"] == "expired"
    assert response.json()["decisions"][-1]["action"] == "expire"
    # Expired is final, and only the system expires projects.
    response = client.post(
        f"{API}/projects/{world.ids['submitted']}/transitions", json={"action": "activate"}, headers=headers
    )
    assert response.status_code == 409
    with pytest.raises(Exception, match="system only"):
        projects.expire_due(db, Actor.of(project.lead))


def test_every_transition_in_the_table_is_reachable_by_its_owner() -> None:
    owners = {owner for _, owner in VALID_TRANSITIONS.values()}
    assert owners == {"lead", "approver", "admin", "system"}
