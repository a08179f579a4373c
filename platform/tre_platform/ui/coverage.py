"""Which data-sharing agreement covers each dataset of an application, or why none does.

Approvers see this before deciding, and researchers see it live while they fill in an application. The
answer is the policy engine's: the same Cedar evaluation that later decides whether the project's views
may be built (``build_view``), one candidate per agreement of the dataset's owner, so the page can never
disagree with the decision that counts. The application is judged *as if approved today*, because
approval is exactly what is being considered; every other condition (the project's tier, its end date,
the agreement's purposes, gateways, recipients, validity and revocation) is evaluated as it stands.
These previews grant nothing and are not audited.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

from sqlalchemy.orm import Session

from tre_platform.api.datasets.models import Dataset
from tre_platform.api.projects.models import LegalGateway, Project, PurposeCategory
from tre_platform.api.users.models import User
from tre_platform.clock import clock
from tre_platform.policy import PolicyRequest, get_engine
from tre_platform.policy.db import (
    agreement_facts,
    dataset_facts,
    org_facts,
    project_facts,
    scoped_agreements,
)
from tre_platform.policy.entities import build
from tre_platform.policy.facts import ProjectFacts, candidate_agreements, system_user


@dataclass(frozen=True)
class DatasetCoverage:
    """The verdict for one requested dataset."""

    dataset: Dataset
    columns: list[str]
    #: References of the agreements that cover the dataset for this application.
    agreements: list[str]
    #: Why no agreement covers it (empty when covered).
    reasons: list[str]

    @property
    def covered(self) -> bool:
        return bool(self.agreements)


def _judge(
    session: Session, facts: ProjectFacts, dataset: Dataset, columns: Sequence[str]
) -> DatasetCoverage:
    engine = get_engine()
    data = dataset_facts(dataset)
    offered = candidate_agreements(
        data, (agreement_facts(session, a) for a in scoped_agreements(session, dataset))
    )
    request = PolicyRequest(
        action="build_view",
        user=system_user(),
        today=clock.today(),
        project=facts,
        dataset=data,
        columns=None,
        candidate_agreements=offered,
    )
    cedar_input = build(request)
    results = engine.run(cedar_input)
    covering = [
        candidate.agreement.reference
        for candidate, result in zip(cedar_input.candidates, results, strict=True)
        if candidate.agreement is not None and result.allowed and not result.diagnostics.errors
    ]
    reasons = [] if covering else engine.interpret(request, cedar_input, results).reasons
    return DatasetCoverage(dataset=dataset, columns=list(columns), agreements=covering, reasons=reasons)


def _as_if_approved(facts: ProjectFacts) -> ProjectFacts:
    today = clock.today()
    # A project that starts next week is still judged today: the start date is not the agreement's concern.
    return replace(facts, state="approved", start_date=min(facts.start_date, today))


def project_coverage(session: Session, project: Project) -> list[DatasetCoverage]:
    """The verdict for every dataset ``project`` requests (the caller has checked it may see it)."""
    facts = _as_if_approved(project_facts(project))
    out = []
    for link in project.datasets:
        dataset = session.get(Dataset, link.dataset_id)
        if dataset is not None:
            out.append(_judge(session, facts, dataset, link.columns))
    return sorted(out, key=lambda c: c.dataset.name)


def proposed_coverage(
    session: Session,
    applicant: User,
    *,
    purpose: PurposeCategory,
    legal_gateway: LegalGateway,
    max_tier: int,
    end_date: dt.date | None,
    requested: Mapping[str, Sequence[str]],
) -> list[DatasetCoverage]:
    """The verdict for an application not yet saved: ``requested`` maps dataset id -> columns."""
    today = clock.today()
    datasets = [d for d in (session.get(Dataset, i) for i in requested) if d is not None]
    facts = ProjectFacts(
        id="proposed",
        code="this application",
        state="approved",
        purpose=purpose.value,
        legal_gateway=legal_gateway.value,
        organisation=org_facts(applicant.organisation),
        lead_id=applicant.id,
        created_by_id=applicant.id,
        member_ids=frozenset([applicant.id]),
        datasets={d.id: tuple(requested[d.id] or d.research_columns) for d in datasets},
        max_tier=max_tier,
        start_date=today,
        end_date=end_date or today + dt.timedelta(days=365),
    )
    return sorted(
        (_judge(session, facts, d, requested[d.id] or d.research_columns) for d in datasets),
        key=lambda c: c.dataset.name,
    )
