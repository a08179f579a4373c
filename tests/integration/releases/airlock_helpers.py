"""Staging outputs the way the workspace library does, for the airlock tests."""

from __future__ import annotations

from typing import Any

import pandas as pd
from sqlalchemy.orm import Session

from tre_lib.disclosure import protect_table
from tre_lib.outputs.specs import TableSpec, table_to_csv, write_data
from tre_platform.actor import Actor
from tre_platform.api.releases import service
from tre_platform.api.releases.models import ReleaseRequest
from tre_platform.api.releases.schemas import ReleaseCreate


def count_table(frame: pd.DataFrame, *, protect: bool = True) -> tuple[bytes, dict[str, Any], bytes]:
    """(table CSV, spec, data) of a region x sex count table; ``protect=False`` publishes raw counts."""
    spec = TableSpec(index=("region",), columns=("sex",))
    if protect:
        table = protect_table(frame, "region", "sex", rules="default").table
    else:
        table = pd.crosstab(frame["region"], frame["sex"], margins=True, margins_name="All")
    return table_to_csv(table), spec.to_dict(), write_data(frame[spec.needed_columns])


def stage_table(
    session: Session,
    requester: Actor,
    project_id: str,
    *,
    title: str,
    content: bytes,
    spec: dict[str, Any],
    data: bytes | None,
    name: str = "admissions.csv",
    client_check: dict[str, Any] | None = None,
) -> ReleaseRequest:
    """A draft request holding one table: its CSV, its spec and the data it claims to come from (not
    committed)."""
    request = service.create_request(session, requester, ReleaseCreate(project_id=project_id, title=title))
    service.add_file(
        session,
        requester,
        request.id,
        name=name,
        kind="table",
        content=content,
        spec=spec,
        data=data,
        data_name=None if data is None else f"{name.removesuffix('.csv')}-data.parquet",
        client_check=client_check,
    )
    return request


def staged_request(
    session: Session,
    requester: Actor,
    project_id: str,
    frame: pd.DataFrame,
    *,
    protect: bool = True,
    client_status: str | None = None,
) -> ReleaseRequest:
    """A draft request holding one count table, committed."""
    content, spec, data = count_table(frame, protect=protect)
    request = stage_table(
        session,
        requester,
        project_id,
        title="Admissions by region and sex",
        content=content,
        spec=spec,
        data=data,
        client_check={"status": client_status} if client_status else None,
    )
    session.commit()
    return request
