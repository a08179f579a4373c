"""The demo world: organisations, users for every role, accreditations, datasets, agreements, projects.

Dates are relative to the clock, so the demo reads the same whenever it is run: one accreditation and
one agreement have already expired, two projects are approved and active (alice's health project, and
bob's product-safety project that starter notebook 02 fits), one was returned to its lead and one waits
for an approver. Passwords and TOTP secrets are generated at first run and written,
mode 0600, to ``<data dir>/demo-credentials.json``; nothing secret is in the repository.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import secrets
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pyotp
from sqlalchemy import select
from sqlalchemy.orm import Session

from tre_platform.actor import Actor
from tre_platform.api.agreements.schemas import AgreementCreate
from tre_platform.api.agreements.service import grant_agreement
from tre_platform.api.audit.service import record
from tre_platform.api.datasets.models import Dataset
from tre_platform.api.datasets.schemas import DatasetCreate
from tre_platform.api.datasets.service import register_dataset
from tre_platform.api.orgs.models import Organisation, OrganisationKind
from tre_platform.api.orgs.schemas import OrgCreate
from tre_platform.api.orgs.service import create_org
from tre_platform.api.projects.models import LegalGateway, ProjectAction, PurposeCategory
from tre_platform.api.projects.schemas import DatasetRequest, MemberAdd, ProjectCreate
from tre_platform.api.projects.service import add_member, create_project, request_dataset, transition
from tre_platform.api.users.models import Role, User
from tre_platform.api.users.schemas import AccreditationCreate, RoleGrant, TrainingCreate, UserCreate
from tre_platform.api.users.service import (
    add_accreditation,
    add_training,
    confirm_totp,
    create_user,
    start_totp_enrolment,
    totp_required,
)
from tre_platform.clock import clock
from tre_platform.settings import get_settings

DEA_SCHEME = "Digital Economy Act 2017 accredited researcher"
#: bob's active project: the one the product-safety starter notebook (02, Dask) fits.
SAFETY_PROJECT = "Serious product-safety incidents by product category"
OPERATOR = Actor.system("demo-seed")


@dataclass(frozen=True)
class DemoLogin:
    username: str
    password: str
    roles: list[str]
    organisation: str
    totp_secret: str | None = None


ORGS: list[tuple[str, str, OrganisationKind]] = [
    ("tre-ops", "TRE Operations (the environment's operator)", OrganisationKind.research_body),
    ("nhs-health-data", "NHS Health Data Service", OrganisationKind.data_owner),
    ("labour-stats", "Labour Market Statistics Office", OrganisationKind.data_owner),
    ("product-safety", "Office for Product Safety and Standards", OrganisationKind.both),
    ("uni-northfield", "University of Northfield", OrganisationKind.research_body),
]

# username, full name, organisation, roles (data_owner roles name the organisation), accreditation offset
USERS: list[tuple[str, str, str, list[str], int | None]] = [
    ("admin", "Ada Admin", "tre-ops", ["admin"], None),
    ("approver", "Priya Approver", "tre-ops", ["approver"], None),
    ("checker1", "Chen Checker", "tre-ops", ["output_checker"], None),
    ("checker2", "Olu Checker", "tre-ops", ["output_checker"], None),
    ("owner-health", "Helen Owner", "nhs-health-data", ["data_owner"], None),
    ("owner-labour", "Liam Owner", "labour-stats", ["data_owner"], None),
    ("owner-safety", "Sita Owner", "product-safety", ["data_owner"], None),
    ("alice", "Alice Researcher", "uni-northfield", ["researcher"], 400),
    ("bob", "Bob Researcher", "uni-northfield", ["researcher"], 200),
    ("carol", "Carol Researcher (accreditation expired)", "uni-northfield", ["researcher"], -30),
    ("dan", "Dan Analyst", "product-safety", ["researcher"], 300),
]


def _col(name: str, type_: str, description: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "type": type_, "description": description, **extra}


PERSON_IDENTIFIERS = [
    _col("nhs_number", "string", "NHS number", identifier=True, index="demographic", required=False),
    _col("given_name", "string", "Given name", identifier=True, index="demographic"),
    _col("family_name", "string", "Family name", identifier=True, index="demographic"),
    _col("date_of_birth", "date", "Date of birth", identifier=True, index="demographic"),
    _col("postcode", "string", "Postcode of residence", identifier=True, index="geography", required=False),
]

DATASETS: list[dict[str, Any]] = [
    {
        "name": "hospital_episodes",
        "title": "Hospital episode statistics (admitted patient care)",
        "owner": "nhs-health-data",
        "tier": 3,
        "description": "One row per finished consultant episode in NHS hospitals in England.",
        "schema": [
            *PERSON_IDENTIFIERS,
            _col("sex", "string", "Sex as recorded", allowed=["F", "M", "U"]),
            _col("admission_date", "date", "Date of admission", min="2000-01-01"),
            _col("diagnosis_chapter", "string", "ICD-10 chapter of the primary diagnosis"),
            _col("length_of_stay", "integer", "Nights in hospital", min=0, max=3650),
            _col("admission_method", "string", "Elective or emergency", allowed=["elective", "emergency"]),
        ],
    },
    {
        "name": "gp_registrations",
        "title": "GP practice registrations",
        "owner": "nhs-health-data",
        "tier": 2,
        "description": "Registrations with general practices, with start and end dates.",
        "schema": [
            *PERSON_IDENTIFIERS,
            _col("practice_region", "string", "Region of the practice"),
            _col("registered_from", "date", "Registration start"),
            _col("registered_to", "date", "Registration end", required=False),
        ],
    },
    {
        "name": "labour_force_survey",
        "title": "Labour Force Survey (person-level)",
        "owner": "labour-stats",
        "tier": 2,
        "description": "Quarterly survey of employment circumstances.",
        "schema": [
            _col(
                "ni_number",
                "string",
                "National Insurance number",
                identifier=True,
                index="demographic",
                required=False,
            ),
            _col("given_name", "string", "Given name", identifier=True, index="demographic"),
            _col("family_name", "string", "Family name", identifier=True, index="demographic"),
            _col("date_of_birth", "date", "Date of birth", identifier=True, index="demographic"),
            _col("postcode", "string", "Postcode", identifier=True, index="geography", required=False),
            _col(
                "employment_status",
                "string",
                "ILO employment status",
                allowed=["employed", "unemployed", "inactive"],
            ),
            _col("industry_section", "string", "SIC 2007 section of main job", required=False),
            _col("weekly_hours", "float", "Usual weekly hours", min=0, max=100, required=False),
            _col("gross_weekly_pay", "float", "Gross weekly pay (GBP)", min=0, required=False),
            _col("survey_quarter", "string", "Survey quarter, e.g. 2026Q2"),
        ],
    },
    {
        "name": "business_register",
        "title": "Inter-departmental business register (extract)",
        "owner": "labour-stats",
        "tier": 1,
        "description": "Businesses with their industry and size band.",
        "schema": [
            _col(
                "company_number",
                "string",
                "Companies House number",
                identifier=True,
                index="business",
                required=False,
            ),
            _col("business_name", "string", "Registered name", identifier=True, index="business"),
            _col(
                "postcode",
                "string",
                "Postcode of the registered address",
                identifier=True,
                index="geography",
                required=False,
            ),
            _col("sic_code", "string", "SIC 2007 code"),
            _col("employment_band", "string", "Employees band", allowed=["0-9", "10-49", "50-249", "250+"]),
            _col("turnover_band", "string", "Turnover band", required=False),
        ],
    },
    {
        "name": "product_safety_incidents",
        "title": "Product-safety incidents and test failures",
        "owner": "product-safety",
        "tier": 2,
        "description": "Incidents reported to the regulator and failed product tests, by product category.",
        "schema": [
            _col(
                "company_number",
                "string",
                "Companies House number of the supplier",
                identifier=True,
                index="business",
                required=False,
            ),
            _col("business_name", "string", "Supplier name as reported", identifier=True, index="business"),
            _col("product_category", "string", "Product classification code"),
            _col("incident_date", "date", "Date of the incident or test"),
            _col("incident_type", "string", "Kind of record", allowed=["incident", "test_failure"]),
            _col("severity", "string", "Assessed risk", allowed=["low", "medium", "high", "serious"]),
        ],
    },
]


def _credentials_path() -> Path:
    return get_settings().ensure_data_dir() / "demo-credentials.json"


def _write_credentials(logins: list[DemoLogin]) -> Path:
    path = _credentials_path()
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump([asdict(login) for login in logins], handle, indent=2)
    os.replace(tmp, path)
    return path


def read_credentials() -> list[DemoLogin]:
    path = _credentials_path()
    if not path.exists():
        return []
    return [DemoLogin(**item) for item in json.loads(path.read_text())]


def is_seeded(session: Session) -> bool:
    return session.scalar(select(Organisation.id).where(Organisation.slug == "nhs-health-data")) is not None


def seed(session: Session, *, passwords: dict[str, str] | None = None) -> list[DemoLogin]:
    """Create the demo world in ``session`` (the caller commits). Returns the logins it created."""
    today = clock.today()
    orgs: dict[str, Organisation] = {}
    for slug, name, kind in ORGS:
        accredited = today + dt.timedelta(days=730) if kind is not OrganisationKind.data_owner else None
        orgs[slug] = create_org(
            session, OPERATOR, OrgCreate(slug=slug, name=name, kind=kind, accredited_until=accredited)
        )

    users: dict[str, User] = {}
    logins: list[DemoLogin] = []
    for username, full_name, org_slug, roles, accreditation_offset in USERS:
        password = (passwords or {}).get(username) or f"demo-{secrets.token_urlsafe(9)}"
        org = orgs[org_slug]
        grants = [
            RoleGrant(role=Role(role), organisation_id=org.id if role == Role.data_owner else None)
            for role in roles
        ]
        user = create_user(
            session,
            OPERATOR,
            UserCreate(
                username=username,
                full_name=full_name,
                email=f"{username}@{org_slug}.example",
                organisation_id=org.id,
                password=password,
                roles=grants,
            ),
        )
        totp_secret = None
        if totp_required(user):
            _, totp_secret, _ = start_totp_enrolment(session, Actor.of(user))
            confirm_totp(session, Actor.of(user), pyotp.TOTP(totp_secret).now())
        if accreditation_offset is not None:
            expires = today + dt.timedelta(days=accreditation_offset)
            add_accreditation(
                session,
                OPERATOR,
                user.id,
                AccreditationCreate(
                    scheme=DEA_SCHEME,
                    reference=f"DEA-AR-{secrets.randbelow(90000) + 10000}",
                    granted_on=expires - dt.timedelta(days=5 * 365),
                    expires_on=expires,
                ),
            )
            add_training(
                session,
                OPERATOR,
                user.id,
                TrainingCreate(
                    course="Safe Researcher Training",
                    completed_on=expires - dt.timedelta(days=5 * 365),
                    expires_on=expires,
                ),
            )
        users[username] = user
        logins.append(DemoLogin(username, password, roles, org_slug, totp_secret))

    datasets: dict[str, Dataset] = {}
    for spec in DATASETS:
        datasets[spec["name"]] = register_dataset(
            session,
            Actor.of(users[_owner_user(spec["owner"])]),
            DatasetCreate.model_validate(
                {
                    "name": spec["name"],
                    "title": spec["title"],
                    "description": spec["description"],
                    "owner_org_id": orgs[spec["owner"]].id,
                    "tier": spec["tier"],
                    "schema": spec["schema"],
                }
            ),
        )

    # Enterprise-level agreements: granted once, used by every project they cover.
    grant_agreement(
        session,
        Actor.of(users["owner-health"]),
        AgreementCreate(
            reference="DSA-NHS-2026-01",
            title="NHS health data for accredited public-good research",
            owner_org_id=orgs["nhs-health-data"].id,
            all_datasets=True,
            any_accredited=True,
            purposes=[
                PurposeCategory.policy_evidence,
                PurposeCategory.service_delivery,
                PurposeCategory.extend_understanding,
            ],
            legal_gateways=[LegalGateway.dea, LegalGateway.section_251],
            max_tier=3,
            dc_profile="health-tier3",
            dp_epsilon=3.0,
            dp_delta=1e-6,
            conditions="Outputs checked to the health tier-3 profile; no linkage to commercial data.",
            valid_from=today - dt.timedelta(days=90),
            valid_to=today + dt.timedelta(days=3 * 365),
        ),
    )
    grant_agreement(
        session,
        Actor.of(users["owner-labour"]),
        AgreementCreate(
            reference="DSA-LMS-2026-03",
            title="Labour market microdata for the University of Northfield",
            owner_org_id=orgs["labour-stats"].id,
            dataset_ids=[datasets["labour_force_survey"].id, datasets["business_register"].id],
            recipient_org_ids=[orgs["uni-northfield"].id, orgs["product-safety"].id],
            purposes=[
                PurposeCategory.policy_evidence,
                PurposeCategory.extend_understanding,
                PurposeCategory.economic_social_benefit,
            ],
            legal_gateways=[LegalGateway.dea, LegalGateway.srsa],
            max_tier=2,
            dp_epsilon=2.0,
            valid_from=today - dt.timedelta(days=30),
            valid_to=today + dt.timedelta(days=2 * 365),
        ),
    )
    grant_agreement(
        session,
        Actor.of(users["owner-safety"]),
        AgreementCreate(
            reference="DSA-OPSS-2026-02",
            title="Product-safety incidents for public-good research",
            owner_org_id=orgs["product-safety"].id,
            all_datasets=True,
            recipient_org_ids=[orgs["uni-northfield"].id],
            purposes=[PurposeCategory.policy_evidence],
            legal_gateways=[LegalGateway.dea],
            max_tier=2,
            valid_from=today - dt.timedelta(days=1),
            valid_to=today + dt.timedelta(days=365),
        ),
    )
    _grant_expired(session, users, orgs, today)

    alice, bob, dan = users["alice"], users["bob"], users["dan"]
    approver = Actor.of(users["approver"])

    health = create_project(
        session,
        Actor.of(alice),
        ProjectCreate(
            title="Health and the labour market after a hospital admission",
            lay_summary=(
                "We study how an emergency hospital admission changes people's employment and pay over the "
                "following two years, to inform return-to-work support."
            ),
            purpose=PurposeCategory.policy_evidence,
            legal_gateway=LegalGateway.dea,
            start_date=today - dt.timedelta(days=20),
            end_date=today + dt.timedelta(days=365),
            max_tier=3,
        ),
    )
    add_member(session, Actor.of(alice), health.id, MemberAdd(user_id=bob.id))
    request_dataset(
        session,
        Actor.of(alice),
        health.id,
        DatasetRequest(
            dataset_id=datasets["hospital_episodes"].id,
            columns=["sex", "admission_date", "diagnosis_chapter", "length_of_stay", "admission_method"],
            justification="Admissions define the exposure.",
        ),
    )
    request_dataset(
        session,
        Actor.of(alice),
        health.id,
        DatasetRequest(
            dataset_id=datasets["labour_force_survey"].id,
            columns=[
                "employment_status",
                "industry_section",
                "weekly_hours",
                "gross_weekly_pay",
                "survey_quarter",
            ],
            justification="Employment outcomes.",
        ),
    )
    transition(session, Actor.of(alice), health.id, ProjectAction.submit, "Ready for review.")
    transition(
        session,
        approver,
        health.id,
        ProjectAction.approve,
        "Clear public benefit; data minimised to the outcome variables.",
    )
    transition(session, OPERATOR, health.id, ProjectAction.activate, "Workspace provisioned.")

    safety = create_project(
        session,
        Actor.of(dan),
        ProjectCreate(
            title="Product-safety incidents by business size",
            lay_summary=(
                "Do small suppliers account for a disproportionate share of serious product-safety "
                "incidents? We link incidents to the business register to find out."
            ),
            purpose=PurposeCategory.economic_social_benefit,
            legal_gateway=LegalGateway.dea,
            start_date=today,
            end_date=today + dt.timedelta(days=270),
            max_tier=2,
        ),
    )
    request_dataset(
        session,
        Actor.of(dan),
        safety.id,
        DatasetRequest(
            dataset_id=datasets["product_safety_incidents"].id,
            columns=["product_category", "incident_date", "incident_type", "severity"],
        ),
    )
    request_dataset(
        session,
        Actor.of(dan),
        safety.id,
        DatasetRequest(
            dataset_id=datasets["business_register"].id,
            columns=["sic_code", "employment_band", "turnover_band"],
        ),
    )
    transition(session, Actor.of(dan), safety.id, ProjectAction.submit)
    transition(
        session,
        approver,
        safety.id,
        ProjectAction.return_,
        "Please explain why turnover band is needed, and state the output tables you plan.",
    )

    # bob's active project: the product-safety incidents that starter notebook 02 (Dask) reads.
    incidents = create_project(
        session,
        Actor.of(bob),
        ProjectCreate(
            title=SAFETY_PROJECT,
            lay_summary=(
                "Which kinds of product give rise to the most serious safety incidents? Evidence for where "
                "market surveillance should look first."
            ),
            purpose=PurposeCategory.policy_evidence,
            legal_gateway=LegalGateway.dea,
            start_date=today - dt.timedelta(days=10),
            end_date=today + dt.timedelta(days=300),
            max_tier=2,
        ),
    )
    request_dataset(
        session,
        Actor.of(bob),
        incidents.id,
        DatasetRequest(
            dataset_id=datasets["product_safety_incidents"].id,
            columns=["product_category", "incident_date", "incident_type", "severity"],
            justification="Incidents by category and assessed risk.",
        ),
    )
    transition(session, Actor.of(bob), incidents.id, ProjectAction.submit, "Ready for review.")
    transition(
        session, approver, incidents.id, ProjectAction.approve, "Minimal columns; clear public benefit."
    )
    transition(session, OPERATOR, incidents.id, ProjectAction.activate, "Workspace provisioned.")

    gp = create_project(
        session,
        Actor.of(bob),
        ProjectCreate(
            title="Churn in GP registrations and hospital use",
            lay_summary=(
                "How often do people move between GP practices, and do frequent moves predict emergency "
                "hospital admissions? Evidence for primary-care service planning."
            ),
            purpose=PurposeCategory.service_delivery,
            legal_gateway=LegalGateway.section_251,
            start_date=today + dt.timedelta(days=7),
            end_date=today + dt.timedelta(days=500),
            max_tier=3,
        ),
    )
    request_dataset(
        session,
        Actor.of(bob),
        gp.id,
        DatasetRequest(
            dataset_id=datasets["gp_registrations"].id,
            columns=["practice_region", "registered_from", "registered_to"],
        ),
    )
    request_dataset(
        session,
        Actor.of(bob),
        gp.id,
        DatasetRequest(
            dataset_id=datasets["hospital_episodes"].id,
            columns=["admission_date", "admission_method", "diagnosis_chapter"],
        ),
    )
    transition(session, Actor.of(bob), gp.id, ProjectAction.submit)

    _write_credentials(logins)
    return logins


def _owner_user(org_slug: str) -> str:
    return {
        "nhs-health-data": "owner-health",
        "labour-stats": "owner-labour",
        "product-safety": "owner-safety",
    }[org_slug]


def _grant_expired(
    session: Session, users: dict[str, User], orgs: dict[str, Organisation], today: dt.date
) -> None:
    agreement = grant_agreement(
        session,
        Actor.of(users["owner-safety"]),
        AgreementCreate(
            reference="DSA-OPSS-2024-07",
            title="Product-safety incidents for academic research (expired)",
            owner_org_id=orgs["product-safety"].id,
            all_datasets=True,
            recipient_org_ids=[orgs["uni-northfield"].id],
            purposes=[PurposeCategory.economic_social_benefit],
            legal_gateways=[LegalGateway.dea],
            max_tier=2,
            valid_from=today - dt.timedelta(days=700),
            valid_to=today + dt.timedelta(days=1),
        ),
    )
    # The service refuses to grant an agreement that has already ended, so the demo grants it and then
    # back-dates its end, saying so in the audit log: this is the one demo object written directly.
    agreement.valid_to = today - dt.timedelta(days=10)
    session.flush()
    record(
        session,
        actor=OPERATOR.label,
        action="demo.backdate",
        target_type="agreement",
        target_id=agreement.id,
        details={"valid_to": agreement.valid_to.isoformat(), "why": "demo of an expired agreement"},
    )
