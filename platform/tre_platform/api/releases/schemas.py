"""Request and response bodies of /api/v1/releases and the privacy-budget routes."""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal

from pydantic import Field

from tre_platform.api.common import InputSchema, LongText, OutputSchema, RowId, ShortText, Title
from tre_platform.api.releases.models import FileKind, ReleaseState, ReviewDecision


class ReleaseCreate(InputSchema):
    project_id: RowId
    title: Title
    justification: LongText = ""


class ReviewCreate(InputSchema):
    decision: ReviewDecision
    comment: LongText = ""


class FileOut(OutputSchema):
    id: str
    name: str
    kind: FileKind
    media_type: str
    sha256: str
    size: int
    description: str
    spec: dict[str, Any]
    data_name: str | None
    data_sha256: str | None
    data_size: int | None
    client_check: dict[str, Any]
    server_check: dict[str, Any]
    status: str | None
    exception: dict[str, Any] = Field(default_factory=dict)
    created_at: dt.datetime


class ReviewOut(OutputSchema):
    id: str
    checker_id: str
    round: int
    decision: ReviewDecision
    comment: str
    at: dt.datetime


class ReleaseOut(OutputSchema):
    id: str
    project_id: str
    requester_id: str
    title: str
    justification: str
    state: ReleaseState
    round: int
    profile: dict[str, Any]
    check_status: str | None
    bundle_sha256: str | None
    created_at: dt.datetime
    submitted_at: dt.datetime | None
    decided_at: dt.datetime | None
    released_at: dt.datetime | None
    files: list[FileOut]
    reviews: list[ReviewOut]
    allowed_actions: list[str] = Field(default_factory=list)


class SigningKeyOut(OutputSchema):
    algorithm: str = "Ed25519"
    public_key_pem: str
    fingerprint: str


class BundleVerifyOut(OutputSchema):
    ok: bool
    problems: list[str]
    message: str


class ChargeCreate(InputSchema):
    dataset_ids: list[RowId] = Field(min_length=1, max_length=50)
    epsilon: float = Field(ge=0, le=1_000_000, allow_inf_nan=False)
    delta: float = Field(0.0, ge=0, lt=1, allow_inf_nan=False)
    description: ShortText


class LedgerEntryOut(OutputSchema):
    entry_id: str
    charge_id: str
    scope: str
    epsilon: float
    delta: float
    query_description: str
    actor: str
    recorded_at: dt.datetime


class ScopeBudgetOut(OutputSchema):
    scope_kind: str
    scope_id: str
    dataset_id: str | None
    dataset_name: str | None
    epsilon_limit: float
    delta_limit: float
    epsilon_spent: float
    delta_spent: float
    epsilon_remaining: float
    delta_remaining: float


class ChargeOut(OutputSchema):
    entries: list[LedgerEntryOut]
    budgets: list[ScopeBudgetOut]


class RulesOut(OutputSchema):
    """The disclosure-control rules the server applies to the project's outputs (for pre-checks)."""

    rules: dict[str, Any]


class DPQueryCreate(InputSchema):
    """A differentially private query the server answers on a project view (see ``api/releases/dp.py``)."""

    view: ShortText
    statistic: Literal["count", "sum", "mean", "quantile", "histogram"]
    epsilon: float = Field(gt=0, le=100, allow_inf_nan=False)
    delta: float | None = Field(None, gt=0, lt=1, allow_inf_nan=False)
    column: ShortText | None = None
    bounds: tuple[float, float] | None = None
    q: float | None = Field(None, ge=0, le=1, allow_inf_nan=False)
    categories: list[str | int | float | bool] | None = Field(None, max_length=1_000)
    description: ShortText = ""


class DPQueryOut(OutputSchema):
    id: str
    project_id: str
    view: str
    dataset_id: str
    query: dict[str, Any]
    epsilon: float
    delta: float
    result: dict[str, Any]
    charge_id: str
    created_at: dt.datetime


class DPAttach(InputSchema):
    dp_result_id: RowId
    name: ShortText


class ExceptionCreate(InputSchema):
    justification: LongText = Field(min_length=20)
