"""The data library: search by text, owner, topic, column and tier; accredited users only; no data."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pandas as pd
import pytest
import typer
from factories import make_accreditation, make_agreement, make_dataset, make_org, make_user
from helpers import publish
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from tre_platform.actor import Actor
from tre_platform.api.datasets.catalogue import search_datasets
from tre_platform.api.datasets.cli import register_catalogue_commands
from tre_platform.clock import clock
from tre_platform.errors import Forbidden

HEALTH_SCHEMA: list[dict[str, Any]] = [
    {"name": "nhs_number", "type": "string", "identifier": True, "index": "demographic"},
    {"name": "diagnosis", "type": "string", "description": "ICD-10 chapter of the main diagnosis"},
    {"name": "age", "type": "integer", "description": "Age at admission"},
]
LABOUR_SCHEMA: list[dict[str, Any]] = [
    {"name": "ni_number", "type": "string", "identifier": True, "index": "demographic"},
    {"name": "weekly_hours", "type": "float", "description": "Usual weekly hours worked"},
]


@pytest.fixture
def library(session: Session, data_dir: Any) -> dict[str, Any]:
    health = make_org(session, slug="nhs-digital", name="NHS Digital", kind="data_owner")
    labour = make_org(session, slug="ons-labour", name="Labour Market Office", kind="data_owner")
    uni = make_org(
        session, slug="uni-x", kind="research_body", accredited_until=clock.today() + dt.timedelta(days=400)
    )
    hes = make_dataset(
        session,
        owner=health,
        name="hes-episodes",
        title="Hospital Episode Statistics",
        description="Admitted patient care episodes in English hospitals",
        schema=HEALTH_SCHEMA,
        topics=["health", "hospitals"],
        tier=3,
    )
    lfs = make_dataset(
        session,
        owner=labour,
        name="lfs",
        title="Labour Force Survey",
        description="Quarterly survey of employment",
        schema=LABOUR_SCHEMA,
        topics=["labour-market"],
        tier=2,
    )
    frame = pd.DataFrame(
        {
            "demographic_id": ["a1b2c3d4e5f60718", "9f8e7d6c5b4a3921"],
            "diagnosis": ["SECRET-DIAGNOSIS-XYZ", "IX"],
            "age": [41, 77],
        }
    )
    publish(session, hes, frame, quality={"completeness": {"overall": 0.97}})
    active = make_agreement(session, owner=health, recipients=[uni], purposes=["policy_evidence"])
    make_agreement(
        session,
        owner=labour,
        valid_from=clock.today() + dt.timedelta(days=10),
        valid_to=clock.today() + dt.timedelta(days=100),
    )
    researcher = make_user(session, roles=["researcher"], organisation_id=uni.id)
    make_accreditation(session, researcher)
    session.commit()
    return {"hes": hes, "lfs": lfs, "researcher": researcher, "uni": uni, "agreement": active, "frame": frame}


def _names(entries: list[Any]) -> list[str]:
    return [e.name for e in entries]


def test_search_without_filters_lists_the_whole_catalogue(session: Session, library: dict[str, Any]) -> None:
    assert _names(search_datasets(session, Actor.of(library["researcher"]))) == ["hes-episodes", "lfs"]


@pytest.mark.parametrize(
    ("facet", "expected"),
    [
        ({"q": "hospital episodes"}, ["hes-episodes"]),
        ({"q": "employment"}, ["lfs"]),
        ({"q": "hospital employment"}, []),
        ({"owner": "nhs-digital"}, ["hes-episodes"]),
        ({"owner": "labour market"}, ["lfs"]),
        ({"topic": "Labour-Market"}, ["lfs"]),
        ({"topic": "health"}, ["hes-episodes"]),
        ({"topic": "heal"}, []),
        ({"column": "diagnosis"}, ["hes-episodes"]),
        ({"column": "hours worked"}, ["lfs"]),
        ({"column": "ni_number"}, ["lfs"]),
        ({"tier": 2}, ["lfs"]),
        ({"tier": 3, "topic": "health", "column": "age"}, ["hes-episodes"]),
        ({"tier": 2, "topic": "health"}, []),
    ],
)
def test_search_by_each_facet(
    session: Session, library: dict[str, Any], facet: dict[str, Any], expected: list[str]
) -> None:
    assert _names(search_datasets(session, Actor.of(library["researcher"]), **facet)) == expected


def test_search_by_owner_id(session: Session, library: dict[str, Any]) -> None:
    found = search_datasets(session, Actor.of(library["researcher"]), owner=library["lfs"].owner_org_id)
    assert _names(found) == ["lfs"]


def test_entry_carries_owner_schema_versions_quality_and_agreements(
    session: Session, library: dict[str, Any]
) -> None:
    (entry,) = search_datasets(session, Actor.of(library["researcher"]), q="hospital")
    assert entry.owner.slug == "nhs-digital"
    assert entry.tier == 3
    assert entry.topics == ["health", "hospitals"]
    columns = {c.name: c for c in entry.columns}
    assert columns["diagnosis"].description == "ICD-10 chapter of the main diagnosis"
    assert columns["nhs_number"].identifier
    assert columns["nhs_number"].index_id_column == "demographic_id"
    assert [(v.version, v.row_count, v.state) for v in entry.versions] == [(1, 2, "live")]
    assert entry.versions[0].quality == {"completeness": {"overall": 0.97}}
    assert [a.reference for a in entry.agreements] == [library["agreement"].reference]
    assert entry.agreements[0].covers_your_organisation
    # The labour agreement is pending, not active: not listed.
    (lfs,) = search_datasets(session, Actor.of(library["researcher"]), q="labour")
    assert lfs.agreements == []
    assert lfs.versions == []


def test_results_hold_metadata_only_never_data_or_locations(
    session: Session, library: dict[str, Any]
) -> None:
    entries = search_datasets(session, Actor.of(library["researcher"]))
    text = json.dumps([e.model_dump(mode="json") for e in entries])
    frame = library["frame"]
    for value in [*frame["demographic_id"], "SECRET-DIAGNOSIS-XYZ"]:
        assert value not in text
    assert "research/" not in text
    assert str(library["hes"].versions[0].path) not in text
    assert "match_report" not in text and "content_sha256" not in text


def test_researcher_without_accreditation_is_refused_with_a_clear_message(
    session: Session, library: dict[str, Any]
) -> None:
    newcomer = make_user(session, roles=["researcher"], organisation_id=library["uni"].id)
    with pytest.raises(Forbidden, match="accredited researchers only: you hold no valid"):
        search_datasets(session, Actor.of(newcomer))
    lapsed = make_user(session, roles=["researcher"], organisation_id=library["uni"].id)
    make_accreditation(
        session,
        lapsed,
        granted_on=clock.today() - dt.timedelta(days=400),
        expires_on=clock.today() - dt.timedelta(days=5),
    )
    with pytest.raises(Forbidden, match="expired on"):
        search_datasets(session, Actor.of(lapsed))


def test_accreditation_expiry_closes_the_library(session: Session, library: dict[str, Any]) -> None:
    actor = Actor.of(library["researcher"])
    assert search_datasets(session, actor)
    later = dt.datetime.combine(clock.today() + dt.timedelta(days=400), dt.time(), dt.UTC)
    with clock.frozen(later), pytest.raises(Forbidden):
        search_datasets(session, actor)


@pytest.mark.parametrize("role", ["admin", "data_owner", "approver"])
def test_staff_roles_search_without_accreditation(
    session: Session, library: dict[str, Any], role: str
) -> None:
    user = make_user(session, roles=[role])
    assert _names(search_datasets(session, Actor.of(user), column="age")) == ["hes-episodes"]


def test_cli_search_json(session: Session, library: dict[str, Any], db_url: str) -> None:
    app = typer.Typer()
    register_catalogue_commands(app)
    runner = CliRunner()
    username = library["researcher"].username
    result = runner.invoke(app, ["search", "--topic", "health", "--json", "--as", username])
    assert result.exit_code == 0, result.output
    assert [e["name"] for e in json.loads(result.stdout)] == ["hes-episodes"]
    result = runner.invoke(app, ["search", "survey", "--as", username])
    assert result.exit_code == 0 and "lfs" in result.stdout
    newcomer = make_user(session, roles=["researcher"], organisation_id=library["uni"].id)
    session.commit()
    result = runner.invoke(app, ["search", "--json", "--as", newcomer.username])
    assert result.exit_code == 1
    assert json.loads(result.stdout)["error"] == "forbidden"
