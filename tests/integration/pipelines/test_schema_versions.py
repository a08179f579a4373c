"""A data owner revises a schema: a new schema version; published versions keep theirs."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from factories import make_org, make_user
from pipeline_factories import FAST_SCHEMA, IngestWorld
from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from tre_platform.actor import Actor
from tre_platform.api.audit.models import AuditEvent
from tre_platform.api.datasets.schemas import SchemaRevision
from tre_platform.api.datasets.service import revise_schema, schema_versions
from tre_platform.errors import Forbidden, InvalidInput
from tre_platform.pipelines import DeliveryInvalid, ingest


def _revision(**overrides: Any) -> SchemaRevision:
    columns = [*FAST_SCHEMA, {"name": "ward", "type": "string", "required": False}]
    return SchemaRevision.model_validate({"schema": columns, "reason": "ward added", **overrides})


def test_a_revised_schema_is_a_new_version_and_old_versions_keep_theirs(
    session: Session,
    ingest_world: IngestWorld,
    episodes: tuple[pd.DataFrame, pd.DataFrame],
    write_csv: Callable[..., Path],
) -> None:
    w = ingest_world
    frame = episodes[0].drop(columns=["given_name", "family_name"])
    ingest(session, w.owner, w.fast.name, write_csv(frame))
    # The new column is refused before the revision...
    with pytest.raises(DeliveryInvalid):
        ingest(session, w.owner, w.fast.name, write_csv(frame.assign(ward="A")))
    revised = revise_schema(session, w.owner, w.fast.id, _revision())
    assert revised.schema_version == 2
    # ... and accepted after it.
    ingest(session, w.owner, w.fast.name, write_csv(frame.assign(ward="A")))
    session.commit()
    versions = schema_versions(session, w.owner, w.fast.id)
    assert [(v.version, v.dataset_versions) for v in versions] == [(1, [1]), (2, [2])]
    assert "ward" not in {c["name"] for c in versions[0].schema_}
    events = session.scalars(select(AuditEvent).where(AuditEvent.action == "dataset.schema.revise")).all()
    assert [e.details["added"] for e in events] == [["ward"]]


def test_another_organisations_data_owner_cannot_revise_a_schema(
    session: Session, ingest_world: IngestWorld
) -> None:
    other = make_user(session, roles=["data_owner"], organisation_id=make_org(session, kind="data_owner").id)
    with pytest.raises(Forbidden):
        revise_schema(session, Actor.of(other), ingest_world.fast.id, _revision())


def test_a_revision_identical_to_the_current_schema_is_refused(
    session: Session, ingest_world: IngestWorld
) -> None:
    with pytest.raises(InvalidInput, match="same as the current"):
        revise_schema(
            session,
            ingest_world.owner,
            ingest_world.fast.id,
            SchemaRevision.model_validate({"schema": FAST_SCHEMA, "reason": "no change"}),
        )


def test_a_revision_with_an_unmapped_identifier_is_refused() -> None:
    bad = {"name": "shoe_size", "type": "string", "identifier": True, "index": "demographic"}
    with pytest.raises(ValidationError, match="maps to no demographic identifier"):
        _revision(schema=[*FAST_SCHEMA, bad])
