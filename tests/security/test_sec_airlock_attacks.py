"""The airlock holds against a researcher who tries to get round it (issue 14), through the REST API.

Each test is one move of a researcher who wants a small number out, made through the documented release
workflow against the real control plane (the application on a migrated database, the real policy engine,
views built by the real view builder). Each is named for the move it refuses.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from factories import (
    fresh,
    make_accreditation,
    make_agreement,
    make_dataset,
    make_org,
    make_project,
    make_token,
    make_user,
)
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from tre_lib import session as tre_session
from tre_lib.disclosure import protect_table
from tre_lib.outputs.specs import Filter, TableSpec, apply_filters, table_to_csv, write_data
from tre_lib.privacy import dp_count
from tre_lib.pseudonymise import encode_key, generate_kek
from tre_platform.actor import Actor
from tre_platform.api.audit.models import AuditEvent
from tre_platform.api.projects import service as projects
from tre_platform.api.projects.schemas import DatasetRequest
from tre_platform.clock import clock
from tre_platform.settings import get_settings
from tre_platform.views.builder import views_dir

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration" / "catalogue"))
from helpers import build, publish

SCHEMA: list[dict[str, Any]] = [
    {"name": "person_id", "type": "string", "identifier": True, "index": "demographic"},
    {"name": "district", "type": "string"},
    {"name": "region", "type": "string"},
    {"name": "sex", "type": "string"},
    {"name": "age", "type": "integer"},
    {"name": "band5", "type": "string"},
    {"name": "band10", "type": "string"},
    {"name": "cost", "type": "float"},
]


def people(n: int = 400, seed: int = 3) -> pd.DataFrame:
    """Person-level rows: districts nest in regions; three people live in the small district d9, three are
    aged 99 (band 95-99) and fourteen 90-94; everything else is well above the threshold."""
    rng = np.random.default_rng(seed)
    district = rng.choice([f"d{k}" for k in range(4)], n).astype(object)
    age = rng.integers(20, 80, n)
    district[:3] = "d9"
    age[3:6] = 99
    age[6:20] = 90 + np.arange(14) % 5  # fourteen people aged 90-94, three aged 95-99
    frame = pd.DataFrame(
        {
            "demographic_id": [f"p{k:05d}" for k in range(n)],
            "district": district,
            "sex": rng.choice(["f", "m"], n),
            "age": age,
            "cost": rng.gamma(2.0, 400.0, n).round(2),
        }
    )
    frame["region"] = frame["district"].map({"d0": "north", "d1": "north", "d9": "north"}).fillna("south")
    frame["band5"] = (frame["age"] // 5 * 5).astype(str)
    frame["band10"] = (frame["age"] // 10 * 10).astype(str)
    return frame


@dataclass
class World:
    project_id: str
    census_id: str
    tokens: dict[str, str]
    truth: pd.DataFrame

    def headers(self, who: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[who]}"}


@pytest.fixture
def air(db: Session, monkeypatch: pytest.MonkeyPatch) -> World:
    """A project with two datasets (census, survey) under agreements (census: DP budget ε=1), their
    views built from published research versions, a researcher and two output checkers."""
    monkeypatch.setenv("TRE_KEK", encode_key(generate_kek()))
    get_settings.cache_clear()
    owner = make_org(db, slug="air-owner", name="Air Statistics Office", kind="data_owner")
    uni = make_org(
        db,
        slug="air-uni",
        name="Air University",
        kind="research_body",
        accredited_until=clock.today() + dt.timedelta(days=400),
    )
    researcher = make_user(db, username="air-rita", roles=["researcher"], organisation_id=uni.id)
    checkers = [
        make_user(db, username=f"air-checker{k}", roles=["output_checker"], organisation_id=uni.id)
        for k in (1, 2)
    ]
    make_accreditation(db, researcher)
    census = make_dataset(db, owner=owner, name="census", schema=SCHEMA)
    survey = make_dataset(db, owner=owner, name="survey", schema=SCHEMA)
    make_agreement(db, owner=owner, dp_epsilon=1.0, dp_delta=1e-6, dc_profile="default")
    project = make_project(db, lead=researcher, title="Airlock attacks")
    lead = Actor.of(researcher)
    for dataset in (census, survey):
        projects.request_dataset(
            db, lead, project.id, DatasetRequest(dataset_id=dataset.id, columns=dataset.research_columns)
        )
    projects.transition(db, lead, project.id, "submit", "")
    projects.transition(db, Actor.system("tests"), project.id, "approve", "approved")
    truth = people()
    publish(db, census, truth)
    publish(db, survey, people(seed=11))
    result = build(db, project)
    assert not isinstance(result, Exception), result
    tokens = {"researcher": make_token(db, researcher)}
    tokens.update({f"checker{k}": make_token(db, c) for k, c in enumerate(checkers, start=1)})
    db.commit()
    return World(project.id, census.id, tokens, truth)


def view(air: World, db: Session) -> pd.DataFrame:
    from tre_platform.api.projects.models import Project

    project = db.get(Project, air.project_id)
    assert project is not None
    return tre_session(project.code, views_dir=views_dir(project.code)).read("census")


# The researcher's moves, through the API ----------------------------------------------------------


def new_request(client: TestClient, air: World, title: str = "tables") -> str:
    r = client.post(
        "/api/v1/releases",
        json={"project_id": air.project_id, "title": title},
        headers=air.headers("researcher"),
    )
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def stage_table(
    client: TestClient,
    air: World,
    request_id: str,
    name: str,
    frame: pd.DataFrame,
    spec: TableSpec,
    *,
    upload: pd.DataFrame | None = None,
) -> dict[str, Any]:
    """Stage a table as the workspace library does: the protected table of ``frame`` and its spec (and,
    with ``upload``, the rows it claims to come from)."""
    data = apply_filters(frame, spec.filters)
    protected = protect_table(
        data,
        list(spec.index),
        list(spec.columns) or None,
        spec.values,
        spec.aggfunc,
        rules="default",
        margins=spec.margins,
    )
    files: dict[str, Any] = {"content": (name, table_to_csv(protected.table))}
    if upload is not None:
        files["data"] = (f"{name}.parquet", write_data(upload[list(spec.needed_columns)]))
    r = client.post(
        f"/api/v1/releases/{request_id}/files",
        data={"name": name, "kind": "table", "spec": json.dumps(spec.to_dict())},
        files=files,
        headers=air.headers("researcher"),
    )
    assert r.status_code == 201, r.text
    return dict(r.json())


def submit(client: TestClient, air: World, request_id: str) -> dict[str, Any]:
    r = client.post(f"/api/v1/releases/{request_id}/submit", headers=air.headers("researcher"))
    assert r.status_code == 200, r.text
    return dict(r.json())


def approve(client: TestClient, air: World, request_id: str) -> dict[str, Any]:
    body: dict[str, Any] = {}
    for who in ("checker1", "checker2"):
        r = client.post(
            f"/api/v1/releases/{request_id}/reviews",
            json={"decision": "approve", "comment": "fine"},
            headers=air.headers(who),
        )
        assert r.status_code == 200, r.text
        body = r.json()
    return body


def release(client: TestClient, air: World, request_id: str) -> Any:
    return client.post(f"/api/v1/releases/{request_id}/release", headers=air.headers("researcher"))


def table_of(body: dict[str, Any], name: str) -> dict[str, Any]:
    return next(f for f in body["files"] if f["name"] == name)


def isolates(file: dict[str, Any]) -> bool:
    return any("isolates a group" in x for x in file["server_check"]["findings"])


BY_REGION = TableSpec(index=("region",), columns=("sex",), view="census")
WITHOUT_THE_99S = TableSpec(
    index=("region",), columns=("sex",), view="census", filters=(Filter("age", "<", 99),)
)


# The moves ----------------------------------------------------------------------------------------


def test_two_tables_differing_by_one_small_group_as_two_files_of_one_request_fail(
    client: TestClient, db: Session, air: World
) -> None:
    truth = view(air, db)
    request_id = new_request(client, air)
    stage_table(client, air, request_id, "all.csv", truth, BY_REGION)
    stage_table(client, air, request_id, "under99.csv", truth, WITHOUT_THE_99S)
    body = submit(client, air, request_id)
    assert body["check_status"] == "fail"
    assert isolates(table_of(body, "under99.csv"))


def test_a_second_request_submitted_before_the_first_is_released_fails(
    client: TestClient, db: Session, air: World
) -> None:
    truth = view(air, db)
    first = new_request(client, air, "first")
    stage_table(client, air, first, "all.csv", truth, BY_REGION)
    assert submit(client, air, first)["check_status"] == "pass"
    second = new_request(client, air, "second")
    stage_table(client, air, second, "under99.csv", truth, WITHOUT_THE_99S)
    body = submit(client, air, second)
    assert body["check_status"] == "fail"
    assert isolates(table_of(body, "under99.csv"))


def test_a_request_submitted_while_another_is_approved_but_not_released_fails(
    client: TestClient, db: Session, air: World
) -> None:
    truth = view(air, db)
    a = new_request(client, air, "a")
    stage_table(client, air, a, "all.csv", truth, BY_REGION)
    b = new_request(client, air, "b")
    stage_table(client, air, b, "under99.csv", truth, WITHOUT_THE_99S)
    # b is checked while a is a draft (so it passes) and approved, but not yet released.
    assert submit(client, air, b)["check_status"] == "pass"
    approve(client, air, b)
    # a is submitted while b is approved (in flight): it fails at once.
    assert submit(client, air, a)["check_status"] == "fail"
    # Now the release of b goes ahead; a can never be approved (its checks failed).
    assert release(client, air, b).status_code == 200


def test_spec_dataset_left_out_or_naming_another_dataset_does_not_escape_differencing(
    client: TestClient, db: Session, air: World
) -> None:
    truth = view(air, db)
    first = new_request(client, air, "first")
    stage_table(client, air, first, "all.csv", truth, BY_REGION)
    assert submit(client, air, first)["check_status"] == "pass"
    approve(client, air, first)
    assert release(client, air, first).status_code == 200
    for dataset in ("survey", None):
        spec = TableSpec(
            index=("region",),
            columns=("sex",),
            view="census",
            dataset=dataset,
            filters=WITHOUT_THE_99S.filters,
        )
        other = new_request(client, air, f"named {dataset}")
        stage_table(client, air, other, "under99.csv", truth, spec)
        body = submit(client, air, other)
        assert body["check_status"] == "fail", dataset
        assert isolates(table_of(body, "under99.csv"))


def test_merged_bands_after_the_fine_table_was_released_fail(
    client: TestClient, db: Session, air: World
) -> None:
    truth = view(air, db)
    fine = TableSpec(index=("band5",), view="census", margins=False)
    first = new_request(client, air, "fine")
    stage_table(client, air, first, "fine.csv", truth, fine)
    assert submit(client, air, first)["check_status"] in ("pass", "review")
    approve(client, air, first)
    assert release(client, air, first).status_code == 200
    # 95-99 (three people) was suppressed; 90-99 merges it with 90-94 (published, so known).
    merged = new_request(client, air, "merged")
    stage_table(
        client, air, merged, "merged.csv", truth, TableSpec(index=("band10",), view="census", margins=False)
    )
    body = submit(client, air, merged)
    assert body["check_status"] == "fail"
    assert isolates(table_of(body, "merged.csv"))


def test_district_by_sex_released_then_region_by_sex_fails(
    client: TestClient, db: Session, air: World
) -> None:
    truth = view(air, db)
    first = new_request(client, air, "districts")
    stage_table(
        client,
        air,
        first,
        "districts.csv",
        truth,
        TableSpec(index=("district",), columns=("sex",), view="census", margins=False),
    )
    assert submit(client, air, first)["check_status"] in ("pass", "review")  # d9's cells are suppressed
    approve(client, air, first)
    assert release(client, air, first).status_code == 200
    second = new_request(client, air, "regions")
    stage_table(
        client,
        air,
        second,
        "regions.csv",
        truth,
        TableSpec(index=("region",), columns=("sex",), view="census", margins=False),
    )
    body = submit(client, air, second)
    assert body["check_status"] == "fail"
    assert isolates(table_of(body, "regions.csv"))


def test_200_notebook_dp_counts_averaged_into_a_text_output_get_no_dp_credit_and_no_budget(
    client: TestClient, db: Session, air: World
) -> None:
    truth = view(air, db)
    # The notebook's own OpenDP calls: a local preview the server never sees or counts.
    average = sum(dp_count(truth, epsilon=1.0).value for _ in range(200)) / 200
    request_id = new_request(client, air, "averaged")
    r = client.post(
        f"/api/v1/releases/{request_id}/files",
        data={"name": "count.txt", "kind": "text", "description": "dp_count(eps=1) x200, averaged"},
        files={"content": ("count.txt", f"people: {average:.1f} (differentially private)\n".encode())},
        headers=air.headers("researcher"),
    )
    assert r.status_code == 201, r.text
    body = submit(client, air, request_id)
    text = table_of(body, "count.txt")
    assert text["status"] == "review"
    assert any("no DP credit" in x for x in text["server_check"]["findings"])
    # A DP figure comes from the server, which charges the budget (ε=1) in the same transaction.
    query = {"view": "census", "statistic": "count", "epsilon": 1.0}
    first = client.post(
        f"/api/v1/projects/{air.project_id}/dp-queries", json=query, headers=air.headers("researcher")
    )
    assert first.status_code == 201, first.text
    refused = [
        client.post(
            f"/api/v1/projects/{air.project_id}/dp-queries", json=query, headers=air.headers("researcher")
        )
        for _ in range(5)
    ]
    assert all(r.status_code == 403 and r.json()["error"] == "budget_exceeded" for r in refused)
    budgets = client.get(
        f"/api/v1/projects/{air.project_id}/privacy-budget", headers=air.headers("researcher")
    ).json()
    spent = {(b["scope_kind"], b["dataset_name"]): b["epsilon_spent"] for b in budgets}
    assert spent == {("project", None): 1.0, ("dataset", "census"): 1.0, ("dataset", "survey"): 0.0}
    # The stored result is what a release carries, by reference; an uploaded "dp" file is refused.
    attach = new_request(client, air, "dp")
    r = client.post(
        f"/api/v1/releases/{attach}/dp-results",
        json={"dp_result_id": first.json()["id"], "name": "count.json"},
        headers=air.headers("researcher"),
    )
    assert r.status_code == 201, r.text
    stored = json.loads(
        client.get(
            f"/api/v1/releases/{attach}/files/{r.json()['id']}/content", headers=air.headers("researcher")
        ).content
    )
    assert stored["result"]["value"] == first.json()["result"]["value"]
    assert submit(client, air, attach)["check_status"] == "pass"
    forged = client.post(
        f"/api/v1/releases/{new_request(client, air)}/files",
        data={"name": "count.json", "kind": "dp"},
        files={"content": ("count.json", b'{"result": {"value": 400}}')},
        headers=air.headers("researcher"),
    )
    assert forged.status_code == 422


def test_a_table_from_padded_uploaded_data_without_a_view_never_passes(
    client: TestClient, db: Session, air: World
) -> None:
    truth = view(air, db)
    small = truth[truth["district"] == "d9"]
    padding = pd.concat([small] * 4, ignore_index=True)  # made-up records: every small cell now >= 10
    padded = pd.concat([truth, padding], ignore_index=True)
    spec = TableSpec(index=("district",), columns=("sex",))  # no view named
    request_id = new_request(client, air, "padded")
    stage_table(client, air, request_id, "padded.csv", padded, spec, upload=padded)
    body = submit(client, air, request_id)
    padded_file = table_of(body, "padded.csv")
    assert padded_file["status"] == "review"
    assert padded_file["server_check"]["findings"][0].startswith("not recomputed from a project view")
    assert padded_file["server_check"]["no_view"]


def test_an_exception_needs_a_justification_and_both_checkers_and_is_recorded(
    client: TestClient, db: Session, air: World
) -> None:
    truth = view(air, db)
    request_id = new_request(client, air, "exception")
    stage_table(client, air, request_id, "all.csv", truth, BY_REGION)
    stage_table(client, air, request_id, "under99.csv", truth, WITHOUT_THE_99S)
    body = submit(client, air, request_id)
    failed = table_of(body, "under99.csv")
    assert failed["status"] == "fail"
    # Approving a failed request is refused while no exception is asked for.
    refused = client.post(
        f"/api/v1/releases/{request_id}/reviews",
        json={"decision": "approve"},
        headers=air.headers("checker1"),
    )
    assert refused.status_code == 409
    r = client.post(
        f"/api/v1/releases/{request_id}/reviews",
        json={"decision": "return", "comment": "ask for an exception if you must"},
        headers=air.headers("checker1"),
    )
    assert r.status_code == 200, r.text
    url = f"/api/v1/releases/{request_id}/files/{failed['id']}/exception"
    assert (
        client.post(url, json={"justification": "short"}, headers=air.headers("researcher")).status_code
        == 422
    )
    assert client.post(
        url, json={"justification": "x" * 40}, headers=air.headers("checker1")
    ).status_code in (403, 404)
    why = "The three people aged 99 are a published fact of the census; the group is not confidential here."
    r = client.post(url, json={"justification": why}, headers=air.headers("researcher"))
    assert r.status_code == 200, r.text
    body = submit(client, air, request_id)
    assert body["check_status"] == "fail"
    one = client.post(
        f"/api/v1/releases/{request_id}/reviews",
        json={"decision": "approve"},
        headers=air.headers("checker1"),
    )
    assert one.status_code == 200 and one.json()["state"] == "in_review"
    assert approve_second(client, air, request_id)["state"] == "approved"
    fresh(db)
    events = db.scalars(select(AuditEvent).where(AuditEvent.action == "release.exception.request")).all()
    assert [e.details["justification"] for e in events] == [why]
    r = release(client, air, request_id)
    assert r.status_code == 200, r.text
    bundle = client.get(f"/api/v1/releases/{request_id}/bundle", headers=air.headers("researcher"))
    import zipfile

    with zipfile.ZipFile(io.BytesIO(bundle.content)) as z:
        manifest = json.loads(z.read("manifest.json"))
    record = next(f for f in manifest["files"] if f["name"] == "under99.csv")["disclosure"]["exception"]
    assert record["justification"] == why
    assert sorted(record["granted_by"]) == ["air-checker1", "air-checker2"]


def approve_second(client: TestClient, air: World, request_id: str) -> dict[str, Any]:
    r = client.post(
        f"/api/v1/releases/{request_id}/reviews",
        json={"decision": "approve"},
        headers=air.headers("checker2"),
    )
    assert r.status_code == 200, r.text
    return dict(r.json())


def test_two_sum_tables_differing_by_one_small_group_fail(
    client: TestClient, db: Session, air: World
) -> None:
    truth = view(air, db)
    request_id = new_request(client, air, "sums")
    total = TableSpec(index=("region",), values="cost", aggfunc="sum", view="census")
    under = TableSpec(
        index=("region",), values="cost", aggfunc="sum", view="census", filters=WITHOUT_THE_99S.filters
    )
    stage_table(client, air, request_id, "cost.csv", truth, total)
    stage_table(client, air, request_id, "cost99.csv", truth, under)
    body = submit(client, air, request_id)
    assert body["check_status"] == "fail"
    assert isolates(table_of(body, "cost99.csv"))
