"""Request and response bodies for datasets, including the column specification a delivery must meet."""

from __future__ import annotations

import datetime as dt
import enum
from typing import Annotated, Any, Self

from pydantic import Field, StringConstraints, model_validator

from tre_platform.api.common import InputSchema, LongText, OutputSchema, RowId, Slug, Title
from tre_platform.api.datasets.models import IndexKind, OnUnmatched

ColumnIdent = Annotated[str, StringConstraints(strip_whitespace=True, pattern=r"^[a-z_][a-z0-9_]{0,62}$")]
AllowedValue = Annotated[str, StringConstraints(max_length=200)]


class ColumnType(enum.StrEnum):
    string = "string"
    integer = "integer"
    float = "float"
    boolean = "boolean"
    date = "date"
    datetime = "datetime"


_ORDERED = {ColumnType.integer, ColumnType.float, ColumnType.date, ColumnType.datetime}


class ColumnSpec(InputSchema):
    """One column of a dataset: what a delivery must contain and how linkage treats it."""

    name: ColumnIdent
    type: ColumnType
    required: bool = True
    description: Annotated[str, StringConstraints(strip_whitespace=True, max_length=1000)] = ""
    #: For a categorical column: the only values a delivery may hold.
    allowed: list[AllowedValue] | None = Field(None, max_length=1000)
    min: float | str | None = None
    max: float | str | None = None
    #: True for a direct identifier (name, NHS number, address ...): dropped after linkage.
    identifier: bool = False
    #: The reference index a direct identifier is matched to.
    index: IndexKind | None = None

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.identifier and self.index is None:
            raise ValueError(
                f"column {self.name!r} is an identifier: say which reference index it maps to (index)"
            )
        if self.index is not None and not self.identifier:
            raise ValueError(
                f"column {self.name!r} has an index but is not an identifier; set identifier: true"
            )
        if (self.min is not None or self.max is not None) and self.type not in _ORDERED:
            raise ValueError(
                f"column {self.name!r}: min/max apply only to numbers and dates, not {self.type.value}"
            )
        for bound in (self.min, self.max):
            if bound is None:
                continue
            if self.type in (ColumnType.integer, ColumnType.float) and not isinstance(bound, (int, float)):
                raise ValueError(
                    f"column {self.name!r}: min/max of a {self.type.value} column must be numbers"
                )
            if self.type in (ColumnType.date, ColumnType.datetime):
                if not isinstance(bound, str):
                    raise ValueError(f"column {self.name!r}: min/max of a date column must be ISO dates")
                try:
                    dt.datetime.fromisoformat(bound)
                except ValueError:
                    raise ValueError(f"column {self.name!r}: {bound!r} is not an ISO date") from None
        comparable = self.min is not None and self.max is not None and type(self.min) is type(self.max)
        if comparable and self.min > self.max:  # type: ignore[operator]
            raise ValueError(f"column {self.name!r}: min is greater than max")
        if self.allowed is not None and self.type is not ColumnType.string:
            raise ValueError(f"column {self.name!r}: allowed values apply only to string columns")
        return self


class DatasetCreate(InputSchema):
    """Register a dataset (its schema; deliveries are ingested later against it)."""

    name: Slug
    title: Title
    description: LongText = ""
    owner_org_id: RowId
    tier: int = Field(ge=0, le=4)
    schema_: list[ColumnSpec] = Field(alias="schema", min_length=1, max_length=500)
    on_unmatched: OnUnmatched = OnUnmatched.report
    match_threshold: float = Field(0.9, gt=0.0, lt=1.0)

    model_config = InputSchema.model_config | {"populate_by_name": True}

    @model_validator(mode="after")
    def _columns(self) -> Self:
        names = [c.name for c in self.schema_]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"column names must be unique; repeated: {', '.join(duplicates)}")
        if all(c.identifier for c in self.schema_):
            raise ValueError("every column is an identifier: a dataset needs at least one research column")
        return self


class DatasetVersionOut(OutputSchema):
    id: str
    version: int
    row_count: int
    content_sha256: str
    quality: dict[str, Any]
    match_report: dict[str, Any]
    source_name: str
    created_at: dt.datetime


class DatasetOut(OutputSchema):
    id: str
    name: str
    title: str
    description: str
    owner_org_id: str
    tier: int
    schema_: list[dict[str, Any]] = Field(alias="schema", validation_alias="schema")
    on_unmatched: OnUnmatched
    match_threshold: float
    created_at: dt.datetime
    research_columns: list[str]
    identifier_columns: dict[str, str]

    model_config = OutputSchema.model_config | {"populate_by_name": True, "serialize_by_alias": True}
