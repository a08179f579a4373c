"""Every role's forms: bad input is refused next to the field and changes nothing; good input works."""

from __future__ import annotations

import datetime as dt
import re

import numpy as np
import pandas as pd
from factories import World, fresh, make_user, row_counts
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from tre_lib.disclosure import protect_table
from tre_lib.outputs.specs import TableSpec, table_to_csv, write_data
from tre_platform.actor import Actor
from tre_platform.api.agreements.models import DataSharingAgreement
from tre_platform.api.datasets.models import Dataset
from tre_platform.api.projects import service as projects
from tre_platform.api.projects.models import Project, ProjectState
from tre_platform.api.releases import service as releases
from tre_platform.api.releases.models import ReleaseState
from tre_platform.api.releases.schemas import ReleaseCreate
from tre_platform.clock import clock

TODAY = clock.today()


def field_error(html: str, field: str) -> str:
    """The message shown next to ``field`` (fails if there is none)."""
    found = re.search(
        rf'id="{re.escape(field)}-error"><span class="visually-hidden">Error: </span>([^<]+)<', html
    )
    assert found, f"no error message next to {field!r}"
    return found.group(1)


def test_an_organisation_with_a_bad_slug_is_refused_next_to_the_field(
    client: TestClient, world: World, db: Session, signed_in
) -> None:
    token = signed_in("admin")
    before = row_counts(db)
    response = client.post(
        "/admin/orgs", data={"slug": "Bad Slug!", "name": "", "kind": "research_body", "csrf_token": token}
    )
    assert response.status_code == 422
    assert "pattern" in field_error(response.text, "slug") or "match" in field_error(response.text, "slug")
    assert field_error(response.text, "name") == "this field is required"
    assert 'value="Bad Slug!"' in response.text, "what the user typed is kept"
    assert row_counts(db) == before


def test_a_duplicate_username_is_refused_next_to_the_field(
    client: TestClient, world: World, db: Session, signed_in
) -> None:
    token = signed_in("admin")
    before = row_counts(db)
    form = {
        "username": "researcher",
        "full_name": "Someone",
        "email": "someone@example.org",
        "organisation_id": world.ids["uni"],
        "roles": "researcher",
        "csrf_token": token,
    }
    response = client.post("/admin/users", data=form)
    assert response.status_code == 409 or response.status_code == 422
    assert "taken" in field_error(response.text, "username")
    assert row_counts(db) == before


def test_an_accreditation_that_ends_before_it_starts_is_refused(
    client: TestClient, world: World, db: Session, signed_in
) -> None:
    token = signed_in("admin")
    before = row_counts(db)
    response = client.post(
        f"/admin/users/{world.ids['colleague']}/accreditations",
        data={
            "scheme": "DEA",
            "granted_on": TODAY.isoformat(),
            "expires_on": (TODAY - dt.timedelta(days=1)).isoformat(),
            "csrf_token": token,
        },
    )
    assert response.status_code == 422
    assert "expires_on" in field_error(response.text, "expires_on")
    assert row_counts(db) == before


def _agreement_form(world: World, token: str, **overrides: object) -> dict[str, object]:
    form: dict[str, object] = {
        "title": "Health data for the university",
        "owner_org_id": world.ids["health"],
        "scope": "listed",
        "dataset_ids": [world.ids["hes"]],
        "audience": "listed",
        "recipient_org_ids": [world.ids["uni"]],
        "purposes": ["policy_evidence"],
        "legal_gateways": ["dea"],
        "max_tier": "3",
        "dc_profile": "default",
        "valid_from": TODAY.isoformat(),
        "valid_to": (TODAY + dt.timedelta(days=90)).isoformat(),
        "csrf_token": token,
    }
    form.update(overrides)
    return form


def test_data_owner_grant_form_refuses_bad_terms_field_by_field(
    client: TestClient, world: World, db: Session, signed_in
) -> None:
    token = signed_in("data_owner")
    before = row_counts(db)
    bad = _agreement_form(
        world,
        token,
        purposes=[],
        dataset_ids=[],
        valid_to=(TODAY - dt.timedelta(days=5)).isoformat(),
    )
    response = client.post("/agreements", data=bad)
    assert response.status_code == 422
    assert field_error(response.text, "purposes")
    assert row_counts(db) == before
    # A dataset of another organisation cannot be shared.
    foreign = client.post("/agreements", data=_agreement_form(world, token, dataset_ids=[world.ids["lfs"]]))
    assert foreign.status_code == 422 and "owner organisation" in field_error(foreign.text, "dataset_ids")
    assert row_counts(db) == before


def test_data_owner_grants_and_revokes_an_agreement(
    client: TestClient, world: World, db: Session, signed_in
) -> None:
    token = signed_in("data_owner")
    response = client.post("/agreements", data=_agreement_form(world, token), follow_redirects=False)
    assert response.status_code == 303
    agreement_id = response.headers["location"].rsplit("/", 1)[1]
    page = client.get(f"/agreements/{agreement_id}")
    assert "Health data for the university" in page.text and "Revoke agreement" in page.text
    no_reason = client.post(f"/agreements/{agreement_id}/revoke", data={"reason": "", "csrf_token": token})
    assert no_reason.status_code == 422 and field_error(no_reason.text, "reason")
    assert fresh(db).get(DataSharingAgreement, agreement_id).revoked_at is None  # type: ignore[union-attr]
    done = client.post(
        f"/agreements/{agreement_id}/revoke",
        data={"reason": "the research programme ended", "csrf_token": token},
        follow_redirects=False,
    )
    assert done.status_code == 303
    revoked = fresh(db).get(DataSharingAgreement, agreement_id)
    assert revoked is not None and revoked.revoked_at is not None
    assert "revoked" in client.get(f"/agreements/{agreement_id}").text


def test_a_pending_agreement_can_be_edited_but_not_into_bad_terms(
    client: TestClient, world: World, db: Session, signed_in
) -> None:
    token = signed_in("data_owner")
    pending = world.ids["pending_agreement"]
    page = client.get(f"/agreements/{pending}")
    assert "Change the terms" in page.text
    starts = TODAY + dt.timedelta(days=40)
    form = _agreement_form(
        world,
        token,
        title="Renamed terms",
        valid_from=starts.isoformat(),
        valid_to=(starts - dt.timedelta(days=1)).isoformat(),
    )
    bad = client.post(f"/agreements/{pending}/edit", data=form)
    assert bad.status_code == 422 and field_error(bad.text, "valid_to")
    assert fresh(db).get(DataSharingAgreement, pending).title != "Renamed terms"  # type: ignore[union-attr]
    form["valid_to"] = (starts + dt.timedelta(days=100)).isoformat()
    good = client.post(f"/agreements/{pending}/edit", data=form, follow_redirects=False)
    assert good.status_code == 303
    assert fresh(db).get(DataSharingAgreement, pending).title == "Renamed terms"  # type: ignore[union-attr]


def _application(world: World, token: str, db: Session, **overrides: object) -> dict[str, object]:
    hes = db.get(Dataset, world.ids["hes"])
    assert hes is not None
    form: dict[str, object] = {
        "title": "Waiting times and outcomes",
        "lay_summary": "How long people wait for treatment and what that means for their health.",
        "purpose": "policy_evidence",
        "legal_gateway": "dea",
        "start_date": TODAY.isoformat(),
        "end_date": (TODAY + dt.timedelta(days=200)).isoformat(),
        "max_tier": "3",
        "members": "member",
        f"columns-{hes.id}": ["age", "region"],
        "intent": "submit",
        "csrf_token": token,
    }
    form.update(overrides)
    return form


def test_a_bad_application_is_refused_next_to_its_fields_and_creates_nothing(
    client: TestClient, world: World, db: Session, signed_in
) -> None:
    token = signed_in("researcher")
    before = row_counts(db)
    response = client.post("/projects", data=_application(world, token, db, lay_summary="too short"))
    assert response.status_code == 422
    assert "20" in field_error(response.text, "lay_summary")
    unknown = client.post("/projects", data=_application(world, token, db, members="nobody-here"))
    assert unknown.status_code == 422 and "nobody-here" in field_error(unknown.text, "members")
    no_data = client.post(
        "/projects", data=_application(world, token, db, **{f"columns-{world.ids['hes']}": []})
    )
    assert no_data.status_code == 422 and field_error(no_data.text, "datasets")
    assert row_counts(db) == before


def test_the_live_check_names_the_agreement_that_would_cover_each_dataset(
    client: TestClient, world: World, signed_in
) -> None:
    signed_in("researcher")
    query = f"purpose=policy_evidence&legal_gateway=dea&max_tier=3&columns-{world.ids['hes']}=age"
    covered = client.get(f"/projects/check?{query}", headers={"HX-Request": "true"})
    assert covered.status_code == 200 and "✔ covered" in covered.text and "<html" not in covered.text
    # No agreement of the health agency covers the consent gateway.
    refused = client.get(f"/projects/check?{query.replace('dea', 'consent')}")
    assert "✘ not covered" in refused.text and "legal gateway" in refused.text


def test_researcher_applies_approver_decides_admin_activates(
    client: TestClient, world: World, db: Session, signed_in
) -> None:
    token = signed_in("researcher")
    response = client.post("/projects", data=_application(world, token, db), follow_redirects=False)
    assert response.status_code == 303
    project_id = response.headers["location"].rsplit("/", 1)[1]
    project = fresh(db).get(Project, project_id)
    assert project is not None and project.state is ProjectState.submitted
    assert {m.user_id for m in project.members} == {world.ids["member"]}
    assert [(d.dataset_id, d.columns) for d in project.datasets] == [(world.ids["hes"], ["age", "region"])]

    token = signed_in("approver")
    page = client.get(f"/projects/{project_id}")
    assert "Your decision" in page.text and "✔ covered" in page.text
    no_comment = client.post(
        f"/projects/{project_id}/transition", data={"action": "return", "csrf_token": token}
    )
    assert no_comment.status_code == 422 and field_error(no_comment.text, "comment")
    assert fresh(db).get(Project, project_id).state is ProjectState.submitted  # type: ignore[union-attr]
    approve = {
        "action": "approve",
        "comment": "Proportionate and in the public interest.",
        "csrf_token": token,
    }
    assert (
        client.post(f"/projects/{project_id}/transition", data=approve, follow_redirects=False).status_code
        == 303
    )

    token = signed_in("admin")
    assert project_id in client.get("/").text, "the admin's home lists it for activation"
    activate = {"action": "activate", "comment": "workspace ready", "csrf_token": token}
    assert (
        client.post(f"/projects/{project_id}/transition", data=activate, follow_redirects=False).status_code
        == 303
    )
    assert fresh(db).get(Project, project_id).state is ProjectState.active  # type: ignore[union-attr]

    signed_in("researcher")
    assert "Open a workspace in JupyterHub" in client.get(f"/projects/{project_id}").text


def test_an_approver_cannot_decide_on_their_own_application(
    client: TestClient, world: World, db: Session, signed_in
) -> None:
    token = signed_in("researcher")
    submitted = world.ids["submitted"]
    page = client.get(f"/projects/{submitted}")
    assert "Your decision" not in page.text
    response = client.post(
        f"/projects/{submitted}/transition", data={"action": "approve", "csrf_token": token}
    )
    assert response.status_code == 403
    assert fresh(db).get(Project, submitted).state is ProjectState.submitted  # type: ignore[union-attr]


def test_a_returned_application_is_revised_and_resubmitted(
    client: TestClient, world: World, db: Session, signed_in
) -> None:
    submitted = world.ids["submitted"]
    approver = db.get(Project, submitted)
    assert approver is not None
    projects.transition(db, Actor.system("tests"), submitted, "return", "Say which tables you will make.")
    fresh(db)
    token = signed_in("researcher")
    page = client.get(f"/projects/{submitted}")
    assert "Say which tables you will make." in page.text and "Revise the application" in page.text
    client.post(f"/projects/{submitted}/transition", data={"action": "revise", "csrf_token": token})
    edit = client.post(
        f"/projects/{submitted}/edit",
        data={"title": "Submitted, with tables", "lay_summary": "x", "csrf_token": token},
    )
    assert edit.status_code == 422 and field_error(edit.text, "lay_summary")
    client.post(f"/projects/{submitted}/transition", data={"action": "submit", "csrf_token": token})
    assert fresh(db).get(Project, submitted).state is ProjectState.submitted  # type: ignore[union-attr]


def _table_request(db: Session, world: World) -> str:
    """A release request in review: a region count table of the world's (now approved) project."""
    projects.transition(db, Actor.system("tests"), world.ids["submitted"], "approve", "ok")
    researcher = Actor.of(projects.get_project(db, Actor.system("t"), world.ids["submitted"]).lead)
    rng = np.random.default_rng(3)
    frame = pd.DataFrame({"region": rng.choice(["north", "south"], 120), "age": rng.integers(18, 90, 120)})
    frame = pd.concat([frame, pd.DataFrame({"region": ["east"] * 3, "age": [30, 40, 50]})], ignore_index=True)
    spec = TableSpec(index=("region",), columns=())
    table = protect_table(frame, "region", None, rules="default").table
    request = releases.create_request(
        db, researcher, ReleaseCreate(project_id=world.ids["submitted"], title="People by region")
    )
    releases.add_file(
        db,
        researcher,
        request.id,
        name="regions.csv",
        kind="table",
        content=table_to_csv(table),
        spec=spec.to_dict(),
        data=write_data(frame[["region"]]),
        data_name="regions.parquet",
    )
    releases.submit(db, researcher, request.id)
    fresh(db)
    return request.id


def test_output_checkers_review_with_the_second_checker_rule(
    client: TestClient, world: World, db: Session, signed_in
) -> None:
    second = make_user(db, username="checker-two", roles=["output_checker"], organisation_id=world.ids["uni"])
    request_id = _table_request(db, world)

    token = signed_in("output_checker")
    assert request_id in client.get("/").text, "the queue on the checker's home page"
    page = client.get(f"/releases/{request_id}")
    assert 'class="output"' in page.text and "suppressed" in page.text, "the table with its suppressed cells"
    no_comment = client.post(
        f"/releases/{request_id}/review", data={"decision": "reject", "csrf_token": token}
    )
    assert no_comment.status_code == 422 and field_error(no_comment.text, "comment")
    approve = {"decision": "approve", "comment": "fine", "csrf_token": token}
    assert (
        client.post(f"/releases/{request_id}/review", data=approve, follow_redirects=False).status_code == 303
    )
    # The same checker cannot approve twice: the policy engine refuses, the page says why.
    again = client.post(f"/releases/{request_id}/review", data=approve)
    assert again.status_code == 422 and "already reviewed" in again.text
    assert "second, independent output checker" in client.get(f"/releases/{request_id}").text

    token = signed_in(second.id)
    client.post(f"/releases/{request_id}/review", data=approve | {"csrf_token": token})
    assert releases.get_request(fresh(db), Actor.system("t"), request_id).state is ReleaseState.approved

    token = signed_in("researcher")
    done = client.post(f"/releases/{request_id}/release", data={"csrf_token": token}, follow_redirects=False)
    assert done.status_code == 303
    bundle = client.get(f"/releases/{request_id}/bundle")
    assert bundle.status_code == 200 and bundle.content[:2] == b"PK"
