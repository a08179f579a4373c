"""Request and response bodies for projects."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Self

from pydantic import Field, StringConstraints, model_validator

from tre_platform.api.common import InputSchema, LongText, OutputSchema, RowId, Title
from tre_platform.api.projects.models import LegalGateway, ProjectAction, ProjectState, PurposeCategory

ColumnName = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64)]


class _Dates(InputSchema):
    start_date: dt.date | None = None
    end_date: dt.date | None = None

    @model_validator(mode="after")
    def _order(self) -> Self:
        if self.start_date and self.end_date and self.end_date < self.start_date:
            raise ValueError("end_date must not be before start_date")
        return self


class ProjectCreate(_Dates):
    """A new project application (a draft until the lead submits it)."""

    title: Title
    lay_summary: Annotated[str, StringConstraints(strip_whitespace=True, min_length=20, max_length=10_000)]
    purpose: PurposeCategory
    legal_gateway: LegalGateway
    start_date: dt.date
    end_date: dt.date
    max_tier: int = Field(3, ge=0, le=4)
    #: The lead researcher; default the caller. Only an administrator may name someone else.
    lead_id: RowId | None = None


class ProjectUpdate(_Dates):
    """Changes to a draft; omitted fields stay as they are."""

    title: Title | None = None
    lay_summary: (
        Annotated[str, StringConstraints(strip_whitespace=True, min_length=20, max_length=10_000)] | None
    ) = None
    purpose: PurposeCategory | None = None
    legal_gateway: LegalGateway | None = None
    max_tier: int | None = Field(None, ge=0, le=4)


class MemberAdd(InputSchema):
    user_id: RowId


class DatasetRequest(InputSchema):
    """A dataset the project asks for, with the research columns it needs."""

    dataset_id: RowId
    columns: list[ColumnName] = Field(min_length=1, max_length=500)
    justification: LongText = ""


class TransitionRequest(InputSchema):
    action: ProjectAction
    comment: LongText = ""


class MemberOut(OutputSchema):
    user_id: str
    added_at: dt.datetime


class ProjectDatasetOut(OutputSchema):
    dataset_id: str
    columns: list[str]
    justification: str


class DecisionOut(OutputSchema):
    id: str
    actor_id: str | None
    action: str
    from_state: str
    to_state: str
    comment: str
    at: dt.datetime


class ProjectOut(OutputSchema):
    id: str
    code: str
    title: str
    lay_summary: str
    purpose: PurposeCategory
    legal_gateway: LegalGateway
    organisation_id: str
    lead_id: str
    created_by_id: str
    state: ProjectState
    max_tier: int
    start_date: dt.date
    end_date: dt.date
    key_version: int
    created_at: dt.datetime
    updated_at: dt.datetime
    members: list[MemberOut]
    datasets: list[ProjectDatasetOut]
    decisions: list[DecisionOut]
