"""Request and response bodies of the package mirror."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from pydantic import BaseModel, StringConstraints

from tre_platform.api.common import InputSchema, LongText, OutputSchema, Reason
from tre_platform.api.packages.models import PackageRequestState

#: Names and versions are checked by the service (PEP 508 / PEP 440) with messages that say what is
#: wrong; the schema only bounds their length.
RawName = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
RawVersion = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]


class PackageRequestCreate(InputSchema):
    """A researcher asks for one exact version of a package (for themselves; never on behalf of another)."""

    name: RawName
    version: RawVersion
    reason: Reason


class PackageApprove(InputSchema):
    """An administrator's approval; advisories found must be accepted explicitly."""

    comment: LongText = ""
    accept_advisories: bool = False


class PackageRefuse(InputSchema):
    reason: Reason


class AdvisoryOut(BaseModel):
    osv_id: str
    summary: str
    aliases: list[str]


class WheelOut(BaseModel):
    """One wheel of a request's dependency tree."""

    name: str
    version: str
    filename: str
    sha256: str
    licence: str
    requires: list[str]
    requested: bool
    #: Already in the mirror (approved earlier or part of the base set).
    in_mirror: bool
    advisories: list[AdvisoryOut]


class PackageRequestOut(BaseModel):
    id: str
    name: str
    version: str
    reason: str
    state: PackageRequestState
    requested_by: str
    created_at: dt.datetime
    decided_by: str | None
    decided_at: dt.datetime | None
    decision_comment: str | None
    tree: list[WheelOut]
    advisory_count: int


class MirrorPackageOut(OutputSchema):
    name: str
    version: str
    filename: str
    sha256: str
    licence: str
    source: str
    added_at: dt.datetime


class AdvisoryLoadOut(BaseModel):
    records: int
    entries: int


class BaseSetOut(BaseModel):
    added: list[str]
    present: int
    failed: dict[str, str]
