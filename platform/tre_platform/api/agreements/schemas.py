"""Request and response bodies for enterprise-level data-sharing agreements."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Self

from pydantic import Field, StringConstraints, model_validator

from tre_platform.api.common import InputSchema, LongText, OutputSchema, Reason, RowId, Title
from tre_platform.api.projects.models import LegalGateway, PurposeCategory

Reference = Annotated[
    str, StringConstraints(strip_whitespace=True, pattern=r"^[A-Za-z0-9][A-Za-z0-9._/-]{1,63}$")
]
ProfileName = Annotated[str, StringConstraints(strip_whitespace=True, pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")]


class _Terms(InputSchema):
    @model_validator(mode="after")
    def _consistent(self) -> Self:
        valid_from = getattr(self, "valid_from", None)
        valid_to = getattr(self, "valid_to", None)
        if valid_from and valid_to and valid_to < valid_from:
            raise ValueError("valid_to must not be before valid_from")
        if (getattr(self, "dp_delta", None) is not None) and getattr(self, "dp_epsilon", None) is None:
            raise ValueError("dp_delta needs dp_epsilon: give a differential-privacy epsilon too")
        return self


class AgreementCreate(_Terms):
    """Grant an agreement: the owner organisation's datasets (all, or a list) to recipients (named
    organisations, or any accredited organisation) for the listed purposes and legal gateways."""

    reference: Reference | None = None
    title: Title
    owner_org_id: RowId
    all_datasets: bool = False
    dataset_ids: list[RowId] = Field(default_factory=list, max_length=500)
    any_accredited: bool = False
    recipient_org_ids: list[RowId] = Field(default_factory=list, max_length=500)
    purposes: list[PurposeCategory] = Field(min_length=1, max_length=len(PurposeCategory))
    legal_gateways: list[LegalGateway] = Field(min_length=1, max_length=len(LegalGateway))
    max_tier: int = Field(3, ge=0, le=4)
    dc_profile: ProfileName = "default"
    dp_epsilon: float | None = Field(None, gt=0, le=100)
    dp_delta: float | None = Field(None, ge=0, lt=1)
    conditions: LongText = ""
    valid_from: dt.date
    valid_to: dt.date

    @model_validator(mode="after")
    def _scope(self) -> Self:
        if self.all_datasets == bool(self.dataset_ids):
            raise ValueError("give either all_datasets: true or a list of dataset_ids (exactly one)")
        if self.any_accredited == bool(self.recipient_org_ids):
            raise ValueError("give either any_accredited: true or a list of recipient_org_ids (exactly one)")
        return self


class AgreementUpdate(_Terms):
    """Changes to an agreement that has not started yet; omitted fields stay as they are."""

    title: Title | None = None
    all_datasets: bool | None = None
    dataset_ids: list[RowId] | None = Field(None, max_length=500)
    any_accredited: bool | None = None
    recipient_org_ids: list[RowId] | None = Field(None, max_length=500)
    purposes: list[PurposeCategory] | None = Field(None, min_length=1, max_length=len(PurposeCategory))
    legal_gateways: list[LegalGateway] | None = Field(None, min_length=1, max_length=len(LegalGateway))
    max_tier: int | None = Field(None, ge=0, le=4)
    dc_profile: ProfileName | None = None
    dp_epsilon: float | None = Field(None, gt=0, le=100)
    dp_delta: float | None = Field(None, ge=0, lt=1)
    conditions: LongText | None = None
    valid_from: dt.date | None = None
    valid_to: dt.date | None = None


class AgreementRevoke(InputSchema):
    reason: Reason


class AgreementOut(OutputSchema):
    id: str
    reference: str
    title: str
    owner_org_id: str
    all_datasets: bool
    dataset_ids: list[str]
    any_accredited: bool
    recipient_ids: list[str]
    purposes: list[str]
    legal_gateways: list[str]
    max_tier: int
    dc_profile: str
    dp_epsilon: float | None
    dp_delta: float | None
    conditions: str
    valid_from: dt.date
    valid_to: dt.date
    created_by_id: str | None
    created_at: dt.datetime
    revoked_at: dt.datetime | None
    revoked_by_id: str | None
    revoked_reason: str | None
    status: str
