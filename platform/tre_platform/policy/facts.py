"""The facts a decision is made on: plain, frozen values, whatever they were read from.

The engine never evaluates database rows directly. A request is first turned into these facts - from
the database (:mod:`tre_platform.policy.db`), from a golden case or a test (:class:`World`) - and the
facts become Cedar entities. One path from facts to decision serves the API, the golden cases, the
property tests and the benchmark, so none of them can drift from the others.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

#: Every action the engine decides, with the resource kind it acts on. The schema declares the same
#: actions; ``tests/unit/policy`` checks the two agree.
ACTIONS: dict[str, str] = {
    "spawn_workspace": "project",
    "read_dataset": "dataset",
    "build_view": "dataset",
    "submit_release": "release",
    "review_release": "release",
    "approve_project": "project",
    "grant_agreement": "agreement",
    "ingest_dataset": "dataset",
    "request_package": "package",
    "approve_package": "package",
}
#: Actions whose request carries the project (as context) and relies on a researcher accreditation.
PROJECT_ACTIONS = frozenset({"spawn_workspace", "read_dataset", "build_view", "submit_release"})
RESEARCHER_ACTIONS = frozenset({"spawn_workspace", "read_dataset", "submit_release"})
#: Actions that rely on a researcher accreditation (each of the user's accreditations is a candidate).
ACCREDITED_ACTIONS = RESEARCHER_ACTIONS | {"request_package"}
#: Actions that need a data-sharing agreement covering the dataset.
DATASET_ACTIONS = frozenset({"read_dataset", "build_view"})

SYSTEM_USER_ID = "system"
#: The enforcement identity: a principal of its own, in ``Role::"enforcer"`` and no other role.
ENFORCER_USER_ID = "tre-enforcer"
ALL_ROLES = ("admin", "data_owner", "approver", "researcher", "output_checker")


@dataclass(frozen=True)
class OrgFacts:
    id: str
    slug: str
    name: str
    accredited_until: dt.date | None = None


@dataclass(frozen=True)
class AccreditationFacts:
    id: str
    reference: str
    scheme: str
    holder_id: str
    granted_on: dt.date
    expires_on: dt.date
    revoked: bool = False


@dataclass(frozen=True)
class UserFacts:
    id: str
    username: str
    organisation: OrgFacts
    roles: frozenset[str]
    active: bool = True
    data_owner_for: tuple[OrgFacts, ...] = ()
    accreditations: tuple[AccreditationFacts, ...] = ()


@dataclass(frozen=True)
class DatasetFacts:
    id: str
    name: str
    owner: OrgFacts
    tier: int
    columns: tuple[str, ...] = ()


@dataclass(frozen=True)
class ProjectFacts:
    id: str
    code: str
    state: str
    purpose: str
    legal_gateway: str
    organisation: OrgFacts
    lead_id: str
    created_by_id: str
    #: Members including the lead.
    member_ids: frozenset[str]
    #: dataset id -> the columns the approval lists for it.
    datasets: Mapping[str, tuple[str, ...]]
    max_tier: int
    start_date: dt.date
    end_date: dt.date


@dataclass(frozen=True)
class AgreementFacts:
    id: str
    reference: str
    owner: OrgFacts
    all_datasets: bool
    dataset_ids: frozenset[str]
    #: Organisation id -> display name, for the owners of the listed datasets.
    dataset_owners: Mapping[str, str]
    any_accredited: bool
    recipient_ids: frozenset[str]
    purposes: frozenset[str]
    legal_gateways: frozenset[str]
    max_tier: int
    valid_from: dt.date
    valid_to: dt.date
    revoked: bool = False


@dataclass(frozen=True)
class ReleaseFacts:
    id: str
    requester_id: str
    requester_name: str
    project: ProjectFacts
    checker_ids: frozenset[str] = frozenset()


@dataclass(frozen=True)
class PackageFacts:
    """A request to add one version of a Python package to the vetted mirror."""

    id: str
    name: str
    version: str
    requester_id: str
    requester_name: str


@dataclass(frozen=True)
class PolicyRequest:
    """Everything one decision needs. Build it with :class:`World` or :func:`policy.db.load_request`."""

    action: str
    user: UserFacts
    today: dt.date
    project: ProjectFacts | None = None
    dataset: DatasetFacts | None = None
    #: Columns asked for; None means the columns the approval lists.
    columns: tuple[str, ...] | None = None
    release: ReleaseFacts | None = None
    #: grant_agreement: the agreement being granted.
    agreement: AgreementFacts | None = None
    #: read_dataset/build_view: the agreements of the dataset's owner, each a candidate to cover it.
    candidate_agreements: tuple[AgreementFacts, ...] = ()
    #: request_package/approve_package: the package request.
    package: PackageFacts | None = None
    #: Users the request mentions (lead, requester, members), id -> username, for reasons.
    usernames: Mapping[str, str] = field(default_factory=dict)

    @property
    def resource_kind(self) -> str:
        return ACTIONS[self.action]


def system_user(organisation: OrgFacts | None = None) -> UserFacts:
    """The operator / system principal: holds every role but owns no data and holds no accreditation."""
    org = organisation or OrgFacts(id="system", slug="system", name="the TRE operator")
    return UserFacts(id=SYSTEM_USER_ID, username=SYSTEM_USER_ID, organisation=org, roles=frozenset(ALL_ROLES))


def enforcer_user() -> UserFacts:
    """The system's enforcement identity: may re-decide project views (``permit.enforcer.build_view``)
    and nothing else; the same forbids as for anyone decide whether a view is still allowed."""
    org = OrgFacts(id="system", slug="system", name="the TRE operator")
    return UserFacts(
        id=ENFORCER_USER_ID, username=ENFORCER_USER_ID, organisation=org, roles=frozenset({"enforcer"})
    )


def candidate_agreements(
    dataset: DatasetFacts, agreements: Iterable[AgreementFacts]
) -> tuple[AgreementFacts, ...]:
    """The agreements that could cover ``dataset``: its owner's agreements whose scope names it.

    A lookup, not a judgement: an agreement is a candidate when its owner owns the dataset and it lists
    the dataset (or all the owner's datasets). Whether a candidate is active, unrevoked and covers
    the organisation, purpose, gateway and tier is for the policies to decide - and to explain. The
    policies check ownership and scope again, so a wrong candidate can never allow.
    """
    return tuple(
        sorted(
            (
                a
                for a in agreements
                if a.owner.id == dataset.owner.id and (a.all_datasets or dataset.id in a.dataset_ids)
            ),
            key=lambda a: a.reference,
        )
    )


# A world described as plain data -------------------------------------------------------------------


def _date(value: Any) -> dt.date:
    if isinstance(value, dt.date):
        return value
    return dt.date.fromisoformat(str(value))


def _opt_date(value: Any) -> dt.date | None:
    return None if value is None else _date(value)


@dataclass
class World:
    """Organisations, users, datasets, projects, agreements and releases described as plain data.

    The format of the golden cases (``policies/cases``) and the unit tests. Keys are short names that
    double as ids and display names::

        World.from_dict({
            "organisations": {"nhsd": {"name": "NHS Digital"}},
            "users": {"alice": {"organisation": "nhsd", "roles": ["researcher"],
                                "accreditations": [{"scheme": "DEA", "granted_on": "2024-01-01",
                                                    "expires_on": "2027-01-01"}]}},
            ...
        })
    """

    organisations: dict[str, OrgFacts]
    users: dict[str, UserFacts]
    datasets: dict[str, DatasetFacts]
    projects: dict[str, ProjectFacts]
    agreements: dict[str, AgreementFacts]
    releases: dict[str, ReleaseFacts]
    packages: dict[str, PackageFacts] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> World:
        orgs = {
            key: OrgFacts(
                id=key,
                slug=key,
                name=str(spec.get("name", key)),
                accredited_until=_opt_date(spec.get("accredited_until")),
            )
            for key, spec in data.get("organisations", {}).items()
        }
        users: dict[str, UserFacts] = {}
        for key, spec in data.get("users", {}).items():
            accreditations = tuple(
                AccreditationFacts(
                    id=f"{key}-acc{n}",
                    reference=str(acc.get("reference", f"{acc.get('scheme', 'ACC')}-{key}-{n}")),
                    scheme=str(acc.get("scheme", "DEA accredited researcher")),
                    holder_id=str(acc.get("holder", key)),
                    granted_on=_date(acc["granted_on"]),
                    expires_on=_date(acc["expires_on"]),
                    revoked=bool(acc.get("revoked", False)),
                )
                for n, acc in enumerate(spec.get("accreditations", []), start=1)
            )
            users[key] = UserFacts(
                id=key,
                username=key,
                organisation=orgs[spec["organisation"]],
                roles=frozenset(spec.get("roles", [])),
                active=bool(spec.get("active", True)),
                data_owner_for=tuple(orgs[o] for o in spec.get("data_owner_for", [])),
                accreditations=accreditations,
            )
        datasets = {
            key: DatasetFacts(
                id=key,
                name=key,
                owner=orgs[spec["owner"]],
                tier=int(spec["tier"]),
                columns=tuple(spec.get("columns", [])),
            )
            for key, spec in data.get("datasets", {}).items()
        }
        projects: dict[str, ProjectFacts] = {}
        for key, spec in data.get("projects", {}).items():
            lead = str(spec["lead"])
            projects[key] = ProjectFacts(
                id=key,
                code=key,
                state=str(spec.get("state", "approved")),
                purpose=str(spec["purpose"]),
                legal_gateway=str(spec["legal_gateway"]),
                organisation=orgs[spec["organisation"]],
                lead_id=lead,
                created_by_id=str(spec.get("created_by", lead)),
                member_ids=frozenset([lead, *spec.get("members", [])]),
                datasets={
                    name: tuple(columns if columns is not None else datasets[name].columns)
                    for name, columns in spec.get("datasets", {}).items()
                },
                max_tier=int(spec.get("max_tier", 3)),
                start_date=_date(spec["start_date"]),
                end_date=_date(spec["end_date"]),
            )
        agreements = {
            key: AgreementFacts(
                id=key,
                reference=key,
                owner=orgs[spec["owner"]],
                all_datasets=bool(spec.get("all_datasets", False)),
                dataset_ids=frozenset(spec.get("datasets", [])),
                dataset_owners={
                    datasets[d].owner.id: datasets[d].owner.name
                    for d in spec.get("datasets", [])
                    if d in datasets
                },
                any_accredited=bool(spec.get("any_accredited", False)),
                recipient_ids=frozenset(spec.get("recipients", [])),
                purposes=frozenset(spec.get("purposes", [])),
                legal_gateways=frozenset(spec.get("legal_gateways", [])),
                max_tier=int(spec.get("max_tier", 3)),
                valid_from=_date(spec["valid_from"]),
                valid_to=_date(spec["valid_to"]),
                revoked=bool(spec.get("revoked", False)),
            )
            for key, spec in data.get("agreements", {}).items()
        }
        releases = {
            key: ReleaseFacts(
                id=key,
                requester_id=str(spec["requester"]),
                requester_name=str(spec["requester"]),
                project=projects[spec["project"]],
                checker_ids=frozenset(spec.get("checkers", [])),
            )
            for key, spec in data.get("releases", {}).items()
        }
        packages = {
            key: PackageFacts(
                id=key,
                name=str(spec["name"]),
                version=str(spec["version"]),
                requester_id=str(spec["requester"]),
                requester_name=str(spec["requester"]),
            )
            for key, spec in data.get("packages", {}).items()
        }
        return cls(orgs, users, datasets, projects, agreements, releases, packages)

    def request(
        self,
        action: str,
        user: str,
        *,
        today: dt.date | str,
        project: str | None = None,
        dataset: str | None = None,
        columns: Iterable[str] | None = None,
        release: str | None = None,
        agreement: str | None = None,
        candidates: Iterable[str] | None = None,
        package: str | None = None,
    ) -> PolicyRequest:
        """The request ``user`` makes for ``action`` on the named objects of this world.

        For release actions the project is the release's; for read_dataset/build_view the candidate
        agreements are all agreements of the dataset's owner, unless ``candidates`` names them (to show
        that the policies, not this lookup, refuse an agreement that does not fit).
        """
        if action not in ACTIONS:
            raise KeyError(f"unknown action {action!r}; known: {', '.join(ACTIONS)}")
        release_facts = self.releases[release] if release else None
        project_facts = self.projects[project] if project else None
        if release_facts is not None and project_facts is None:
            project_facts = release_facts.project
        dataset_facts = self.datasets[dataset] if dataset else None
        if candidates is not None:
            offered = tuple(self.agreements[name] for name in candidates)
        elif dataset_facts is not None and action in DATASET_ACTIONS:
            offered = candidate_agreements(dataset_facts, self.agreements.values())
        else:
            offered = ()
        return PolicyRequest(
            action=action,
            user=self.users[user],
            today=_date(today),
            project=project_facts,
            dataset=dataset_facts,
            columns=tuple(columns) if columns is not None else None,
            release=release_facts,
            agreement=self.agreements[agreement] if agreement else None,
            candidate_agreements=offered,
            package=self.packages[package] if package else None,
            usernames={key: u.username for key, u in self.users.items()},
        )
