"""A data owner registers a dataset and ingests a delivery from the browser's forms."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest
from factories import World, fresh, row_counts
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from tre_lib.indexing.demo import build_index_from_world
from tre_lib.synth import generate_world
from tre_lib.synth import make_dataset as synth_dataset
from tre_platform.api.datasets.models import Dataset, DatasetVersion
from tre_platform.settings import get_settings


def field_error(html: str, field: str) -> str:
    found = re.search(
        rf'id="{re.escape(field)}-error"><span class="visually-hidden">Error: </span>([^<]+)<', html
    )
    assert found, f"no error message next to {field!r}"
    return found.group(1)


def registration(token: str, world: World, **overrides: str) -> dict[str, str]:
    form = {
        "csrf_token": token,
        "rows": "3",
        "name": "maternity",
        "title": "Maternity episodes",
        "description": "Births in NHS hospitals.",
        "owner_org_id": world.ids["health"],
        "tier": "3",
        "topics": "health, births",
        "on_unmatched": "report",
        "c0_name": "nhs_number",
        "c0_type": "string",
        "c0_identifier": "on",
        "c0_index": "demographic",
        "c0_required": "on",
        "c1_name": "region",
        "c1_type": "string",
        "c1_allowed": "north, south",
        "c1_description": "Region of the hospital",
        "c2_name": "weight_g",
        "c2_type": "integer",
        "c2_min": "200",
        "c2_max": "7000",
    }
    return form | overrides


def test_a_data_owner_registers_a_dataset_with_its_schema(
    client: TestClient, world: World, db: Session, signed_in
) -> None:
    token = signed_in("data_owner")
    page = client.get("/datasets/new")
    assert page.status_code == 200 and 'name="c0_identifier"' in page.text
    more = client.post("/datasets/new", data=registration(token, world, more="1"))
    assert more.status_code == 200 and 'name="c5_name"' in more.text, "three blank rows were added"
    assert 'value="maternity"' in more.text, "what was typed is kept"

    response = client.post("/datasets/new", data=registration(token, world), follow_redirects=False)
    assert response.status_code == 303
    dataset = fresh(db).scalar(select(Dataset).where(Dataset.name == "maternity"))
    assert dataset is not None and dataset.tier == 3 and dataset.topics == ["health", "births"]
    by_name = {c["name"]: c for c in dataset.schema}
    assert by_name["nhs_number"]["identifier"] is True and by_name["nhs_number"]["index"] == "demographic"
    assert by_name["region"]["allowed"] == ["north", "south"]
    assert by_name["weight_g"]["min"] == 200 and by_name["weight_g"]["required"] is False
    assert response.headers["location"] == f"/datasets/{dataset.id}"
    assert "is registered" in client.get(response.headers["location"]).text


@pytest.mark.parametrize(
    ("overrides", "field", "message"),
    [
        ({"name": "Bad Name!"}, "name", "pattern"),
        ({"title": ""}, "title", "this field is required"),
        ({"c0_index": ""}, "c0_index", "which reference index"),
        ({"c1_type": "integer"}, "c1_allowed", "allowed values apply only to string columns"),
        ({"c2_min": "9000"}, "c2_min", "min is greater than max"),
        ({"c2_max": "heavy"}, "c2_min", "must be numbers"),
        ({"c0_name": "", "c1_name": "", "c2_name": ""}, "columns", "at least one column"),
        ({"name": "hes"}, "name", "already exists"),
    ],
)
def test_a_bad_registration_is_refused_next_to_the_field(
    overrides: dict[str, str],
    field: str,
    message: str,
    client: TestClient,
    world: World,
    db: Session,
    signed_in,
) -> None:
    token = signed_in("data_owner")
    before = row_counts(db)
    response = client.post("/datasets/new", data=registration(token, world, **overrides))
    assert response.status_code == 422
    assert message in field_error(response.text, field)
    assert row_counts(db) == before


def test_only_data_owners_register_and_only_for_their_organisation(
    client: TestClient, world: World, db: Session, signed_in
) -> None:
    signed_in("researcher")
    assert client.get("/datasets/new").status_code == 403
    token = signed_in("other_owner")
    page = client.get("/datasets/new").text
    assert world.ids["labour"] in page and world.ids["health"] not in page, "only their own organisation"
    before = row_counts(db)
    response = client.post("/datasets/new", data=registration(token, world))
    assert response.status_code == 403
    assert {k: v for k, v in row_counts(db).items() if k != "audit_events"} == {
        k: v for k, v in before.items() if k != "audit_events"
    }


@pytest.fixture
def delivery(world: World) -> pd.DataFrame:
    """Rows of the world's 'hes' schema whose NHS numbers are in a demographic index on disk."""
    people = generate_world(150, seed=5)
    data_dir = get_settings().ensure_data_dir()
    build_index_from_world(
        people, "demographic", Path(data_dir) / "linkage" / "indexes" / "demographic", fraction=0.9, seed=1
    )
    records, _ = synth_dataset(people, "hospital_episodes", 80, seed=3)
    # The schema makes every column required: keep the rows whose NHS number was recorded.
    records = records[records["nhs_number"].notna()].head(60).reset_index(drop=True)
    n = len(records)
    frame = pd.DataFrame(
        {
            "nhs_number": records["nhs_number"],
            "age": [20 + i % 60 for i in range(n)],
            "region": ["north" if i % 2 else "south" for i in range(n)],
            "admitted": ["2026-01-0" + str(1 + i % 9) for i in range(n)],
        }
    )
    frame.attrs["records"] = records
    return frame


def test_an_upload_with_problems_lists_each_with_its_rows_and_publishes_nothing(
    client: TestClient, world: World, db: Session, signed_in, delivery: pd.DataFrame
) -> None:
    token = signed_in("data_owner")
    hes = world.ids["hes"]
    page = client.get(f"/datasets/{hes}/upload")
    assert page.status_code == 200 and 'enctype="multipart/form-data"' in page.text
    bad = delivery.copy()
    bad.loc[3, "age"] = 200
    bad.loc[7, "region"] = "east"
    response = client.post(
        f"/datasets/{hes}/upload",
        data={"csrf_token": token},
        files={"file": ("episodes.csv", bad.to_csv(index=False).encode(), "text/csv")},
    )
    assert response.status_code == 422
    assert "see the problems listed below" in field_error(response.text, "file")
    problems = response.text[response.text.index('class="problems"') :]
    assert "<code>age</code>" in problems and "<code>region</code>" in problems
    assert "row 4" in problems and "row 8" in problems  # 1-based data rows after the header
    assert fresh(db).scalars(select(DatasetVersion).where(DatasetVersion.dataset_id == hes)).all() == []

    empty = client.post(f"/datasets/{hes}/upload", data={"csrf_token": token})
    assert empty.status_code == 422 and "choose the delivery file" in field_error(empty.text, "file")


def test_a_registered_dataset_takes_a_delivery_and_shows_its_quality_and_match_report(
    client: TestClient, world: World, db: Session, signed_in, delivery: pd.DataFrame
) -> None:
    """Register through the form (names and birth dates: probabilistic matching, with charts), upload."""
    token = signed_in("data_owner")
    columns = [
        ("nhs_number", "string", "demographic", ""),
        ("given_name", "string", "demographic", "on"),
        ("family_name", "string", "demographic", "on"),
        ("date_of_birth", "date", "demographic", "on"),
        ("sex", "string", "", "on"),
        ("length_of_stay", "integer", "", "on"),
    ]
    form: dict[str, str] = {
        "csrf_token": token,
        "rows": str(len(columns)),
        "name": "episodes",
        "title": "Hospital episodes",
        "owner_org_id": world.ids["health"],
        "tier": "3",
        "on_unmatched": "report",
    }
    for i, (name, kind, index, required) in enumerate(columns):
        form |= {f"c{i}_name": name, f"c{i}_type": kind, f"c{i}_index": index}
        form |= {f"c{i}_identifier": "on"} if index else {}
        form |= {f"c{i}_required": required} if required else {}
    form["c4_allowed"] = "F, M, U"
    registered = client.post("/datasets/new", data=form, follow_redirects=False)
    assert registered.status_code == 303
    dataset_url = registered.headers["location"]

    frame = delivery.attrs["records"]
    upload = pd.DataFrame(
        {
            "nhs_number": frame["nhs_number"],
            "given_name": frame["given_name"],
            "family_name": frame["family_name"],
            "date_of_birth": frame["dob"],
            "sex": frame["sex"].fillna("U"),
            "length_of_stay": frame["length_of_stay"],
        }
    )
    response = client.post(
        f"{dataset_url}/upload",
        data={"csrf_token": token},
        files={"file": ("episodes.csv", upload.to_csv(index=False).encode(), "text/csv")},
        follow_redirects=False,
    )
    assert response.status_code == 303, re.findall(r"field-error.*|<td>.*", response.text)
    dataset = fresh(db).scalar(select(Dataset).where(Dataset.name == "episodes"))
    assert dataset is not None
    version = db.scalar(select(DatasetVersion).where(DatasetVersion.dataset_id == dataset.id))
    assert version is not None and version.row_count == len(upload)
    detail = client.get(response.headers["location"])
    assert "Published episodes version 1" in detail.text
    assert "Quality dimensions" in detail.text and "Match quality" in detail.text
    charts = re.findall(r"<img src=\"(/datasets/[^\"]+/charts/[^\"]+)\"", detail.text)
    frames = re.findall(r"<iframe src=\"(/datasets/[^\"]+/charts/[^\"]+)\"", detail.text)
    assert charts, "the match-quality charts are shown inline"
    image = client.get(charts[0])
    assert image.status_code == 200 and image.headers["content-type"].startswith("image/")
    assert frames, "Splink's interactive charts are framed"
    html = client.get(frames[0])
    assert html.status_code == 200 and html.headers["content-security-policy"] == "sandbox allow-scripts"
    # The same bytes again are refused (already published), next to the field; nothing new is published.
    again = client.post(
        f"{dataset_url}/upload",
        data={"csrf_token": token},
        files={"file": ("episodes.csv", upload.to_csv(index=False).encode(), "text/csv")},
    )
    assert again.status_code == 409 and "byte-identical" in field_error(again.text, "file")
    assert (
        len(fresh(db).scalars(select(DatasetVersion).where(DatasetVersion.dataset_id == dataset.id)).all())
        == 1
    )


def test_only_the_owner_organisation_may_upload(
    client: TestClient, world: World, db: Session, signed_in
) -> None:
    token = signed_in("other_owner")
    hes = world.ids["hes"]
    assert client.get(f"/datasets/{hes}/upload").status_code == 403
    refused = client.post(
        f"/datasets/{hes}/upload",
        data={"csrf_token": token},
        files={"file": ("x.csv", b"nhs_number,age\n1,2\n", "text/csv")},
    )
    assert refused.status_code == 403
    assert fresh(db).scalars(select(DatasetVersion).where(DatasetVersion.dataset_id == hes)).all() == []
