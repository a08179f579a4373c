"""Request and response bodies for organisations."""

from __future__ import annotations

import datetime as dt

from tre_platform.api.common import InputSchema, OutputSchema, ShortText, Slug
from tre_platform.api.orgs.models import OrganisationKind


class OrgCreate(InputSchema):
    """A new organisation (admin)."""

    slug: Slug
    name: ShortText
    kind: OrganisationKind
    accredited_until: dt.date | None = None


class OrgUpdate(InputSchema):
    """Changes to an organisation; omitted fields stay as they are."""

    name: ShortText | None = None
    kind: OrganisationKind | None = None
    accredited_until: dt.date | None = None


class OrgOut(OutputSchema):
    id: str
    slug: str
    name: str
    kind: OrganisationKind
    accredited_until: dt.date | None
    created_at: dt.datetime
