"""Reading a request's facts from the database: targeted queries, the same facts as the models give."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from contextlib import contextmanager

from policy_db_world import TODAY, DbWorld
from sqlalchemy import Engine, event
from sqlalchemy.orm import Session

from tre_platform.api.agreements.models import AgreementDataset, AgreementRecipient, DataSharingAgreement
from tre_platform.api.projects.models import ProjectMember, ProjectState
from tre_platform.api.users.models import User
from tre_platform.policy import PolicyEngine
from tre_platform.policy.db import (
    agreement_facts,
    dataset_facts,
    load_request,
    project_facts,
    scoped_agreements,
    user_facts,
)
from tre_platform.policy.facts import candidate_agreements


@contextmanager
def _statements(engine: Engine) -> Iterator[list[str]]:
    seen: list[str] = []

    def note(_conn: object, _cursor: object, statement: str, *_args: object) -> None:
        seen.append(statement)

    event.listen(engine, "before_cursor_execute", note)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", note)


def test_the_targeted_queries_read_the_same_facts_as_the_models(session: Session, world: DbWorld) -> None:
    alice, p1, hes = world.users["alice"], world.projects["P1"], world.datasets["hes"]
    request = load_request(
        session, alice, "read_dataset", project=p1.id, dataset=hes.id, columns=["age"], today=TODAY
    )
    data = dataset_facts(hes)
    assert request.user == user_facts(session, alice)
    assert request.project == project_facts(p1)
    assert request.dataset == data
    assert request.candidate_agreements == candidate_agreements(
        data, (agreement_facts(session, a) for a in scoped_agreements(session, hes))
    )
    assert request.candidate_agreements  # the world has agreements for hes: the comparison meant something
    assert request.usernames == {alice.id: "alice", p1.lead_id: p1.lead.username}


def test_a_decision_reads_a_fixed_number_of_rows_sets_however_large_the_project(
    session: Session, world: DbWorld, engine: Engine
) -> None:
    alice, p1, hes = world.users["alice"], world.projects["P1"], world.datasets["hes"]

    def count() -> int:
        session.expunge_all()
        user = session.get(User, alice.id)  # the signed-in user the caller holds
        with _statements(engine) as seen:
            load_request(session, user, "read_dataset", project=p1.id, dataset=hes.id, today=TODAY)
        return len(seen)

    before = count()
    for n in range(15):
        extra = User(
            username=f"extra{n}",
            full_name="Extra",
            email=f"extra{n}@example.org",
            organisation_id=alice.organisation_id,
        )
        session.add(extra)
        session.flush()
        session.add(ProjectMember(project_id=p1.id, user_id=extra.id))
        agreement = DataSharingAgreement(
            reference=f"DSA-X{n}",
            title="more",
            owner_org_id=hes.owner_org_id,
            purposes=["policy_evidence"],
            legal_gateways=["dea"],
            valid_from=TODAY,
            valid_to=TODAY + dt.timedelta(days=30),
        )
        agreement.dataset_links = [AgreementDataset(dataset_id=hes.id)]
        agreement.recipient_links = [AgreementRecipient(organisation_id=alice.organisation_id)]
        session.add(agreement)
    session.commit()
    assert count() == before <= 11


def test_pending_changes_of_the_caller_are_decided_on(
    session: Session, world: DbWorld, policy_engine: PolicyEngine
) -> None:
    alice, p1 = world.users["alice"], world.projects["P1"]
    p1.state = ProjectState.closed  # not committed: the caller is about to act on it
    decision = policy_engine.decide(session, alice, "spawn_workspace", project=p1, audit=False)
    assert not decision.allowed
    assert decision.policy_ids == ["project.not_approved"]
    session.rollback()
