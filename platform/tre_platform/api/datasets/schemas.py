"""Request and response bodies for datasets, including the column specification a delivery must meet."""

from __future__ import annotations

import datetime as dt
import enum
from typing import Annotated, Any, Self

from pydantic import Field, StringConstraints, model_validator

from tre_platform.api.common import InputSchema, LongText, OutputSchema, Reason, RowId, Slug, Title
from tre_platform.api.datasets.models import (
    DEFAULT_ARCHIVE_DAYS,
    DEFAULT_RETENTION_DAYS,
    IndexKind,
    OnUnmatched,
)

ColumnIdent = Annotated[str, StringConstraints(strip_whitespace=True, pattern=r"^[a-z_][a-z0-9_]{0,62}$")]
AllowedValue = Annotated[str, StringConstraints(max_length=200)]
#: A catalogue topic: lower-case words joined by '-' ("health", "labour-market").
Topic = Annotated[
    str, StringConstraints(strip_whitespace=True, to_lower=True, pattern=r"^[a-z0-9][a-z0-9-]{0,39}$")
]


class ColumnType(enum.StrEnum):
    string = "string"
    integer = "integer"
    float = "float"
    boolean = "boolean"
    date = "date"
    datetime = "datetime"


_ORDERED = {ColumnType.integer, ColumnType.float, ColumnType.date, ColumnType.datetime}


#: A column's lower or upper bound: a finite number, or a date/time as text.
BoundValue = (
    Annotated[float, Field(allow_inf_nan=False, ge=-1e300, le=1e300)]
    | Annotated[str, StringConstraints(strip_whitespace=True, max_length=64)]
)


class ColumnSpec(InputSchema):
    """One column of a dataset: what a delivery must contain and how linkage treats it."""

    name: ColumnIdent
    type: ColumnType
    required: bool = True
    description: Annotated[str, StringConstraints(strip_whitespace=True, max_length=1000)] = ""
    #: For a categorical column: the only values a delivery may hold.
    allowed: list[AllowedValue] | None = Field(None, max_length=1000)
    min: BoundValue | None = None
    max: BoundValue | None = None
    #: True for a direct identifier (name, NHS number, address ...): dropped after linkage.
    identifier: bool = False
    #: The reference index a direct identifier is matched to.
    index: IndexKind | None = None
    #: The index identifier the column carries (``policies/indexes/<index>.toml``, e.g. ``family_name``,
    #: ``national_id``, ``postcode``); may be left out when the column's name or an alias says it.
    maps_to: ColumnIdent | None = None
    #: For a date column: the format of its values as strptime codes (``%d/%m/%Y``, ``%Y%m%d``);
    #: ISO ``%Y-%m-%d`` when left out.
    format: Annotated[str, StringConstraints(strip_whitespace=True, min_length=2, max_length=40)] | None = (
        None
    )

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
        if self.maps_to is not None and not self.identifier:
            raise ValueError(
                f"column {self.name!r} has maps_to but is not an identifier; set identifier: true"
            )
        if self.format is not None:
            check_date_format(self.name, self.type.value, self.format)
        return self


def check_date_format(column: str, type_: str, fmt: str) -> None:
    """A date format must be strptime codes for a date column, and must round-trip a date.

    Raises:
        ValueError: Saying what is wrong with the format.
    """
    if type_ not in ("date", "datetime", "string"):
        raise ValueError(f"column {column!r}: format applies only to date (or date-holding string) columns")
    if "%" not in fmt:
        raise ValueError(f"column {column!r}: format {fmt!r} has no strptime code (e.g. %d/%m/%Y, %Y%m%d)")
    sample = dt.datetime(1987, 11, 23)
    try:
        parsed = dt.datetime.strptime(sample.strftime(fmt), fmt)
    except ValueError:
        raise ValueError(f"column {column!r}: format {fmt!r} cannot be read back (e.g. %d/%m/%Y)") from None
    if parsed.date() != sample.date():
        raise ValueError(f"column {column!r}: format {fmt!r} does not hold a whole date (day, month, year)")


def check_identifier_mapping(columns: list[ColumnSpec]) -> None:
    """Every identifier column of a declared index must carry one of its identifiers, each at most once.

    A column that maps to nothing would be accepted and silently dropped (its evidence never used), so it
    is an error here, with the identifiers the index declares.

    Raises:
        ValueError: Naming the column and the identifiers to choose from.
    """
    from tre_lib.indexing.identifiers import declared_kinds, load_declaration

    taken: dict[tuple[str, str], str] = {}
    for column in columns:
        if not column.identifier or column.index is None or column.index.value not in declared_kinds():
            continue
        declaration = load_declaration(column.index.value)
        if column.maps_to is not None:
            if column.maps_to not in declaration.inputs:
                raise ValueError(
                    f"column {column.name!r}: maps_to {column.maps_to!r} is not a {column.index.value} "
                    f"identifier; choose one of {', '.join(declaration.inputs)}"
                )
            target = column.maps_to
        else:
            found = declaration.identifier_for(column.name)
            if found is None:
                raise ValueError(
                    f"column {column.name!r} maps to no {column.index.value} identifier: set maps_to to one "
                    f"of {', '.join(declaration.inputs)}, or make it a research column (identifier: false)"
                )
            target = found
        key = (column.index.value, target)
        if key in taken:
            raise ValueError(
                f"columns {taken[key]!r} and {column.name!r} both map to {target}; map one elsewhere "
                f"(maps_to) or drop it"
            )
        taken[key] = column.name


def check_columns(columns: list[ColumnSpec]) -> None:
    """A schema's columns: unique names, at least one research column, identifiers mapped.

    Raises:
        ValueError: Saying what to change.
    """
    names = [c.name for c in columns]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"column names must be unique; repeated: {', '.join(duplicates)}")
    if all(c.identifier for c in columns):
        raise ValueError("every column is an identifier: a dataset needs at least one research column")
    check_identifier_mapping(columns)


class SchemaRevision(InputSchema):
    """A new version of a dataset's schema; published versions keep the schema they were ingested under."""

    schema_: list[ColumnSpec] = Field(alias="schema", min_length=1, max_length=500)
    reason: Reason

    model_config = InputSchema.model_config | {"populate_by_name": True}

    @model_validator(mode="after")
    def _columns(self) -> Self:
        check_columns(self.schema_)
        return self


class SchemaVersionOut(OutputSchema):
    version: int
    schema_: list[dict[str, Any]] = Field(alias="schema", validation_alias="schema")
    reason: str
    created_at: dt.datetime
    #: Published dataset versions ingested under this schema.
    dataset_versions: list[int] = []

    model_config = OutputSchema.model_config | {"populate_by_name": True, "serialize_by_alias": True}


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
    topics: list[Topic] = Field(default_factory=list, max_length=20)
    #: Days each version stays in the research zone (an agreement that runs longer extends it).
    retention_days: int = Field(DEFAULT_RETENTION_DAYS, ge=1, le=36_500)
    #: Days an archived version is kept before the sweep destroys it (0: destroy without archiving).
    archive_days: int = Field(DEFAULT_ARCHIVE_DAYS, ge=0, le=36_500)

    model_config = InputSchema.model_config | {"populate_by_name": True}

    @model_validator(mode="after")
    def _columns(self) -> Self:
        check_columns(self.schema_)
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
    topics: list[str] = []
    retention_days: int = DEFAULT_RETENTION_DAYS
    archive_days: int = DEFAULT_ARCHIVE_DAYS
    created_at: dt.datetime
    research_columns: list[str]
    identifier_columns: dict[str, str]
    schema_version: int = 1

    model_config = OutputSchema.model_config | {"populate_by_name": True, "serialize_by_alias": True}


# The catalogue ("data library"): metadata only, never data -------------------------------------------


class CatalogueOwner(OutputSchema):
    id: str
    slug: str
    name: str


class CatalogueColumn(OutputSchema):
    """A column as a researcher plans with it (identifier columns never reach the research zone)."""

    name: str
    type: str
    description: str = ""
    required: bool = True
    #: True for a direct identifier: replaced by ``index_id_column`` at ingest, never in a view.
    identifier: bool = False
    index_id_column: str | None = None


class CatalogueVersion(OutputSchema):
    version: int
    row_count: int
    created_at: dt.datetime
    #: live | archived (destroyed versions are not listed).
    state: str
    retention_until: dt.date
    #: The Government Data Quality Framework dimensions measured at ingest (aggregates only).
    quality: dict[str, Any]


class CatalogueAgreement(OutputSchema):
    """An active agreement covering the dataset: enough to know whether and why one may apply."""

    reference: str
    title: str
    purposes: list[str]
    legal_gateways: list[str]
    max_tier: int
    valid_from: dt.date
    valid_to: dt.date
    any_accredited: bool
    #: True when the searcher's organisation may use the dataset under this agreement.
    covers_your_organisation: bool


class CatalogueEntry(OutputSchema):
    id: str
    name: str
    title: str
    description: str
    owner: CatalogueOwner
    tier: int
    topics: list[str]
    columns: list[CatalogueColumn]
    versions: list[CatalogueVersion]
    agreements: list[CatalogueAgreement]


# Lifecycle --------------------------------------------------------------------------------------------


class VersionDestroy(InputSchema):
    reason: Reason


class VersionArchive(InputSchema):
    reason: LongText = ""


class VersionLifecycleOut(OutputSchema):
    dataset: str
    version: int
    #: live | archived | destroyed
    state: str
    retention_until: dt.date
    #: Why that date: the dataset's retention period or a longer agreement.
    retention_basis: str
    #: When the sweep destroys the archived version.
    destroy_after: dt.date
    archived_at: dt.datetime | None = None
    destroyed_at: dt.datetime | None = None
    #: Where the files are now (the research or archive directory; empty once destroyed).
    location: str = ""


class RemovedView(OutputSchema):
    project: str
    view: str


class LifecycleStepOut(OutputSchema):
    """What one archive or destroy did."""

    dataset: str
    version: int
    action: str
    reason: str
    retention_until: dt.date
    #: Archive: where the files went. Destroy: the directories deleted.
    moved_to: str = ""
    removed_paths: list[str] = []
    files_removed: int = 0
    bytes_removed: int = 0
    views_removed: list[RemovedView] = []
    #: Reference-index entries deleted per index kind (see lifecycle.destroy_version).
    index_entries_removed: dict[str, int] = {}


class SweepOut(OutputSchema):
    checked: int
    steps: list[LifecycleStepOut]
    #: Versions a step failed for, with the reason; the next sweep retries them.
    problems: list[str] = []
