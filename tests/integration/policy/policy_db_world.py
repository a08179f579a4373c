"""The golden-case world (policies/cases/world.json) written into a real database.

The same description drives the golden cases (in memory) and these integration tests (in the
database), so both prove the same rules through the two ways facts reach the engine.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.orm import Session

from tre_platform.api.agreements.models import AgreementDataset, AgreementRecipient, DataSharingAgreement
from tre_platform.api.datasets.models import Dataset
from tre_platform.api.orgs.models import Organisation, OrganisationKind
from tre_platform.api.projects.models import (
    LegalGateway,
    Project,
    ProjectDataset,
    ProjectMember,
    ProjectState,
    PurposeCategory,
)
from tre_platform.api.users.models import Accreditation, Role, User, UserRole
from tre_platform.settings import REPO_ROOT

WORLD = json.loads((REPO_ROOT / "policies" / "cases" / "world.json").read_text())
TODAY = dt.date.fromisoformat(WORLD["today"])
NOON = dt.datetime.combine(TODAY, dt.time(12), tzinfo=dt.UTC)


@dataclass(frozen=True)
class Release:
    """A release request as the engine sees it (the airlock's model arrives in a later issue)."""

    id: str
    requester_id: str
    project_id: str
    checker_ids: tuple[str, ...] = ()


@dataclass
class DbWorld:
    orgs: dict[str, Organisation] = field(default_factory=dict)
    users: dict[str, User] = field(default_factory=dict)
    datasets: dict[str, Dataset] = field(default_factory=dict)
    projects: dict[str, Project] = field(default_factory=dict)
    agreements: dict[str, DataSharingAgreement] = field(default_factory=dict)

    def release(self, name: str, **overrides: Any) -> Release:
        spec = dict(WORLD["releases"][name])
        spec.update(overrides)
        return Release(
            id=name,
            requester_id=self.users[spec["requester"]].id,
            project_id=self.projects[spec["project"]].id,
            checker_ids=tuple(self.users[c].id for c in spec["checkers"]),
        )

    def new_agreement(self, owner: str, datasets: list[str], reference: str = "NEW") -> DataSharingAgreement:
        """An agreement a data owner is about to grant (not saved)."""
        return DataSharingAgreement(
            reference=reference,
            title=reference,
            owner_org_id=self.orgs[owner].id,
            all_datasets=False,
            any_accredited=False,
            purposes=["policy_evidence"],
            legal_gateways=["dea"],
            max_tier=3,
            valid_from=TODAY,
            valid_to=TODAY + dt.timedelta(days=365),
            dataset_links=[AgreementDataset(dataset_id=self.datasets[d].id) for d in datasets],
            recipient_links=[],
        )


def _date(value: str) -> dt.date:
    return dt.date.fromisoformat(value)


def build_world(session: Session, data: dict[str, Any] = WORLD) -> DbWorld:
    """Write ``data`` (the world.json format) into the database and commit."""
    world = DbWorld()
    for key, spec in data["organisations"].items():
        kind = OrganisationKind.data_owner if key in ("nhsd", "ons") else OrganisationKind.research_body
        accredited = spec.get("accredited_until")
        org = Organisation(
            slug=key, name=spec["name"], kind=kind, accredited_until=_date(accredited) if accredited else None
        )
        session.add(org)
        world.orgs[key] = org
    session.flush()
    for key, spec in data["users"].items():
        if "enforcer" in spec.get("roles", []):
            continue  # the system's enforcement identity (Actor.enforcer()) is no database user
        user = User(
            username=key,
            full_name=key.title(),
            email=f"{key}@example.org",
            organisation_id=world.orgs[spec["organisation"]].id,
        )
        for role in spec.get("roles", []):
            owner_of = spec.get("data_owner_for", [None])[0] if role == "data_owner" else None
            user.roles.append(
                UserRole(role=Role(role), organisation_id=world.orgs[owner_of].id if owner_of else None)
            )
        for acc in spec.get("accreditations", []):
            user.accreditations.append(
                Accreditation(
                    scheme=acc.get("scheme", "DEA accredited researcher"),
                    reference=acc.get("reference"),
                    granted_on=_date(acc["granted_on"]),
                    expires_on=_date(acc["expires_on"]),
                )
            )
        session.add(user)
        world.users[key] = user
    for key, spec in data["datasets"].items():
        dataset = Dataset(
            name=key,
            title=key.upper(),
            owner_org_id=world.orgs[spec["owner"]].id,
            tier=spec["tier"],
            schema=[{"name": c, "type": "string"} for c in spec["columns"]],
        )
        session.add(dataset)
        world.datasets[key] = dataset
    session.flush()
    for key, spec in data["projects"].items():
        lead = world.users[spec["lead"]]
        project = Project(
            code=key,
            title=f"Project {key}",
            lay_summary="A study.",
            purpose=PurposeCategory(spec["purpose"]),
            legal_gateway=LegalGateway(spec["legal_gateway"]),
            organisation_id=world.orgs[spec["organisation"]].id,
            lead_id=lead.id,
            created_by_id=world.users[spec.get("created_by", spec["lead"])].id,
            state=ProjectState(spec["state"]),
            max_tier=spec["max_tier"],
            start_date=_date(spec["start_date"]),
            end_date=_date(spec["end_date"]),
        )
        project.members = [ProjectMember(user_id=world.users[m].id) for m in spec.get("members", [])]
        project.datasets = [
            ProjectDataset(
                dataset_id=world.datasets[name].id,
                columns=list(columns if columns is not None else data["datasets"][name]["columns"]),
            )
            for name, columns in spec["datasets"].items()
        ]
        session.add(project)
        world.projects[key] = project
    for key, spec in data["agreements"].items():
        agreement = DataSharingAgreement(
            reference=key,
            title=key,
            owner_org_id=world.orgs[spec["owner"]].id,
            all_datasets=spec.get("all_datasets", False),
            any_accredited=spec.get("any_accredited", False),
            purposes=spec.get("purposes", []),
            legal_gateways=spec.get("legal_gateways", []),
            max_tier=spec.get("max_tier", 3),
            valid_from=_date(spec["valid_from"]),
            valid_to=_date(spec["valid_to"]),
        )
        agreement.dataset_links = [
            AgreementDataset(dataset_id=world.datasets[d].id) for d in spec.get("datasets", [])
        ]
        agreement.recipient_links = [
            AgreementRecipient(organisation_id=world.orgs[o].id) for o in spec.get("recipients", [])
        ]
        session.add(agreement)
        world.agreements[key] = agreement
    session.commit()
    return world
