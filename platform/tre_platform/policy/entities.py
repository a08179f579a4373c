"""From facts to Cedar: the entity store, one Cedar request per candidate, and the words for reasons.

A request that may rely on one of several credentials (a user's accreditations, the agreements of a
dataset's owner) becomes one Cedar request per combination of candidates, all sharing one entity
store; the engine allows when any of them is allowed. Each candidate also carries the flat ``facts``
(display names, dates) that fill the ``{placeholders}`` of the policies' ``@reason`` texts.

The store is split in two: the entities of the dataset asked for (the dataset, its owner and the
candidate agreements - the same for every request about that dataset, and the costliest to parse)
and the request's own (user, roles, project, accreditations). The engine parses the first part once
and adds the second to it (see ``PolicyEngine.entity_store``).
"""

from __future__ import annotations

import datetime as dt
import itertools
from dataclasses import dataclass, field
from typing import Any

from tre_platform.policy.facts import (
    ACCREDITED_ACTIONS,
    DATASET_ACTIONS,
    PROJECT_ACTIONS,
    AccreditationFacts,
    AgreementFacts,
    DatasetFacts,
    OrgFacts,
    PackageFacts,
    PolicyRequest,
    ProjectFacts,
    ReleaseFacts,
    UserFacts,
)

Json = dict[str, Any]


@dataclass(frozen=True)
class Candidate:
    """One Cedar request of a decision, with the credentials it relies on and the facts for its reasons."""

    cedar_request: Json
    accreditation: AccreditationFacts | None
    agreement: AgreementFacts | None
    facts: dict[str, str]


@dataclass(frozen=True)
class CedarInput:
    #: The whole entity store: ``shared`` and ``own`` together.
    entities: list[Json]
    candidates: list[Candidate]
    principal: str
    resource_type: str
    resource_id: str
    resource_label: str
    #: The entities of the dataset asked for: the dataset, its owner and the candidate agreements.
    shared: list[Json] = field(default_factory=list)
    #: The other entities of the store (never one of ``shared``'s uids).
    own: list[Json] = field(default_factory=list)
    #: (accreditations, agreements): ``candidates`` are their product, accreditation-major, and
    #: differ in nothing but ``context.accreditation`` and ``context.agreement``.
    shape: tuple[int, int] | None = None


def uid(entity_type: str, entity_id: str) -> Json:
    return {"type": entity_type, "id": entity_id}


def _day(value: dt.date) -> str:
    # With the schema, Cedar reads an ISO date string as a `datetime` at midnight UTC.
    return value.isoformat()


class _Store:
    """Entities keyed by uid, so an object reached twice (an organisation) is added once."""

    def __init__(self) -> None:
        self._entities: dict[tuple[str, str], Json] = {}

    def add(self, entity_type: str, entity_id: str, attrs: Json, parents: list[Json] | None = None) -> Json:
        key = (entity_type, entity_id)
        if key not in self._entities:
            self._entities[key] = {
                "uid": uid(entity_type, entity_id),
                "attrs": attrs,
                "parents": parents or [],
            }
        return uid(entity_type, entity_id)

    def org(self, org: OrgFacts) -> Json:
        if ("Organisation", org.id) in self._entities:  # reached again (user, project, owner): added once
            return uid("Organisation", org.id)
        attrs: Json = {"slug": org.slug, "name": org.name}
        if org.accredited_until is not None:
            attrs["accredited_until"] = _day(org.accredited_until)
        return self.add("Organisation", org.id, attrs)

    def user(self, user: UserFacts) -> Json:
        roles = [self.add("Role", role, {}) for role in sorted(user.roles)]
        return self.add(
            "User",
            user.id,
            {
                "username": user.username,
                "organisation": self.org(user.organisation),
                "active": user.active,
                "data_owner_for": [self.org(o) for o in user.data_owner_for],
            },
            roles,
        )

    def accreditation(self, acc: AccreditationFacts) -> Json:
        return self.add(
            "Accreditation",
            acc.id,
            {
                "reference": acc.reference,
                "scheme": acc.scheme,
                "holder": uid("User", acc.holder_id),
                "granted_on": _day(acc.granted_on),
                "expires_on": _day(acc.expires_on),
                "revoked": acc.revoked,
            },
        )

    def dataset(self, dataset: DatasetFacts) -> Json:
        return self.add(
            "Dataset",
            dataset.id,
            {
                "name": dataset.name,
                "owner": self.org(dataset.owner),
                "tier": dataset.tier,
                "columns": list(dataset.columns),
            },
        )

    def project(self, project: ProjectFacts) -> Json:
        return self.add(
            "Project",
            project.id,
            {
                "code": project.code,
                "state": project.state,
                "purpose": project.purpose,
                "legal_gateway": project.legal_gateway,
                "organisation": self.org(project.organisation),
                "lead": uid("User", project.lead_id),
                "created_by": uid("User", project.created_by_id),
                "members": [uid("User", m) for m in sorted(project.member_ids)],
                "datasets": [uid("Dataset", d) for d in sorted(project.datasets)],
                "max_tier": project.max_tier,
                "start_date": _day(project.start_date),
                "end_date": _day(project.end_date),
            },
        )

    def agreement(self, agreement: AgreementFacts) -> Json:
        return self.add(
            "Agreement",
            agreement.id,
            {
                "reference": agreement.reference,
                "owner": self.org(agreement.owner),
                "all_datasets": agreement.all_datasets,
                "datasets": [uid("Dataset", d) for d in sorted(agreement.dataset_ids)],
                "dataset_owners": [uid("Organisation", o) for o in sorted(agreement.dataset_owners)],
                "any_accredited": agreement.any_accredited,
                "recipients": [uid("Organisation", o) for o in sorted(agreement.recipient_ids)],
                "purposes": sorted(agreement.purposes),
                "legal_gateways": sorted(agreement.legal_gateways),
                "max_tier": agreement.max_tier,
                "valid_from": _day(agreement.valid_from),
                "valid_to": _day(agreement.valid_to),
                "revoked": agreement.revoked,
            },
        )

    def release(self, release: ReleaseFacts) -> Json:
        return self.add(
            "ReleaseRequest",
            release.id,
            {
                "requester": uid("User", release.requester_id),
                "project": self.project(release.project),
                "checkers": [uid("User", c) for c in sorted(release.checker_ids)],
            },
        )

    def package(self, package: PackageFacts) -> Json:
        return self.add(
            "PackageRequest",
            package.id,
            {
                "name": package.name,
                "version": package.version,
                "requester": uid("User", package.requester_id),
            },
        )

    def all(self) -> list[Json]:
        return list(self._entities.values())

    def split(self, keys: set[tuple[str, str]]) -> tuple[list[Json], list[Json]]:
        """The entities whose uid is one of ``keys``, and the others (each in the order added)."""
        chosen = [e for k, e in self._entities.items() if k in keys]
        rest = [e for k, e in self._entities.items() if k not in keys]
        return chosen, rest


def _base_facts(request: PolicyRequest) -> dict[str, str]:
    user = request.user
    facts = {
        "user": user.username,
        "user_organisation": user.organisation.name,
        "user_roles": ", ".join(sorted(user.roles)) or "no role",
        "today": request.today.isoformat(),
    }
    project = request.project
    if project is not None:
        facts |= {
            "project": project.code,
            "project_state": project.state,
            "project_purpose": project.purpose,
            "project_legal_gateway": project.legal_gateway,
            "project_organisation": project.organisation.name,
            "project_max_tier": str(project.max_tier),
            "project_start_date": project.start_date.isoformat(),
            "project_end_date": project.end_date.isoformat(),
        }
    dataset = request.dataset
    if dataset is not None:
        facts |= {
            "dataset": dataset.name,
            "dataset_owner": dataset.owner.name,
            "dataset_tier": str(dataset.tier),
        }
        if project is not None:
            approved = set(project.datasets.get(dataset.id, ()))
            asked = request.columns if request.columns is not None else tuple(sorted(approved))
            facts["columns_not_approved"] = ", ".join(c for c in asked if c not in approved) or "none"
    if request.release is not None:
        facts |= {"release": request.release.id, "release_requester": request.release.requester_name}
    if request.package is not None:
        facts |= {
            "package": f"{request.package.name}=={request.package.version}",
            "package_requester": request.package.requester_name,
        }
    return facts


def _agreement_facts(agreement: AgreementFacts) -> dict[str, str]:
    foreign = sorted(
        name for org_id, name in agreement.dataset_owners.items() if org_id != agreement.owner.id
    )
    return {
        "agreement": agreement.reference,
        "agreement_owner": agreement.owner.name,
        "agreement_valid_from": agreement.valid_from.isoformat(),
        "agreement_valid_to": agreement.valid_to.isoformat(),
        "agreement_max_tier": str(agreement.max_tier),
        "agreement_foreign_owners": ", ".join(foreign) or "none",
    }


def _accreditation_facts(acc: AccreditationFacts) -> dict[str, str]:
    return {
        "accreditation": acc.reference,
        "accreditation_scheme": acc.scheme,
        "accreditation_granted_on": acc.granted_on.isoformat(),
        "accreditation_expires_on": acc.expires_on.isoformat(),
    }


def build(request: PolicyRequest) -> CedarInput:
    """The entity store and the Cedar requests (one per candidate credential combination)."""
    store = _Store()
    principal = store.user(request.user)
    kind = request.resource_kind
    project_uid = store.project(request.project) if request.project is not None else None
    label: str
    if kind == "dataset":
        if request.dataset is None:
            raise ValueError(f"{request.action} needs a dataset")
        resource = store.dataset(request.dataset)
        label = request.dataset.name
    elif kind == "project":
        if request.project is None or project_uid is None:
            raise ValueError(f"{request.action} needs a project")
        resource = project_uid
        label = request.project.code
    elif kind == "release":
        if request.release is None:
            raise ValueError(f"{request.action} needs a release request")
        resource = store.release(request.release)
        label = request.release.id
    elif kind == "package":
        if request.package is None:
            raise ValueError(f"{request.action} needs a package request")
        resource = store.package(request.package)
        label = f"{request.package.name}=={request.package.version}"
    else:
        if request.agreement is None:
            raise ValueError(f"{request.action} needs an agreement")
        resource = store.agreement(request.agreement)
        label = request.agreement.reference

    base_context: Json = {"today": _day(request.today)}
    if request.action in PROJECT_ACTIONS:
        if project_uid is None:
            raise ValueError(f"{request.action} needs a project")
        base_context["project"] = project_uid
    if request.action in DATASET_ACTIONS and request.project is not None and request.dataset is not None:
        approved = request.project.datasets.get(request.dataset.id, ())
        base_context["approved_columns"] = sorted(approved)
        base_context["columns"] = sorted(request.columns if request.columns is not None else approved)

    accreditations: list[AccreditationFacts | None] = [None]
    if request.action in ACCREDITED_ACTIONS and request.user.accreditations:
        accreditations = list(request.user.accreditations)
    agreements: list[AgreementFacts | None] = [None]
    if request.action in DATASET_ACTIONS and request.candidate_agreements:
        agreements = list(request.candidate_agreements)

    base_facts = _base_facts(request)
    if request.agreement is not None:
        base_facts |= _agreement_facts(request.agreement)
    candidates: list[Candidate] = []
    for acc, agreement in itertools.product(accreditations, agreements):
        context = dict(base_context)
        facts = dict(base_facts)
        if acc is not None:
            context["accreditation"] = store.accreditation(acc)
            facts |= _accreditation_facts(acc)
        if agreement is not None:
            context["agreement"] = store.agreement(agreement)
            facts |= _agreement_facts(agreement)
        candidates.append(
            Candidate(
                cedar_request={
                    "principal": principal,
                    "action": uid("Action", request.action),
                    "resource": resource,
                    "context": context,
                },
                accreditation=acc,
                agreement=agreement,
                facts=facts,
            )
        )
    shared, own = store.split(_dataset_keys(request))
    return CedarInput(
        entities=store.all(),
        candidates=candidates,
        principal=request.user.username,
        resource_type=resource["type"],
        resource_id=resource["id"],
        resource_label=label,
        shared=shared,
        own=own,
        shape=(len(accreditations), len(agreements)),
    )


def _dataset_keys(request: PolicyRequest) -> set[tuple[str, str]]:
    """The uids of the entities every request about ``request.dataset`` has in common."""
    dataset = request.dataset
    if dataset is None:
        return set()
    keys = {("Dataset", dataset.id), ("Organisation", dataset.owner.id)}
    for agreement in request.candidate_agreements:
        keys |= {("Agreement", agreement.id), ("Organisation", agreement.owner.id)}
    return keys
