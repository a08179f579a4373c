"""Permission matrix in a real database: roles x actions, then states that must flip a decision.

Every case goes the whole way an enforcement point goes: rows in the database -> facts -> Cedar ->
an audited Decision.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from policy_db_world import NOON, TODAY, DbWorld
from sqlalchemy.orm import Session

from tre_platform.api.agreements.models import AgreementRecipient
from tre_platform.api.projects.models import LegalGateway, ProjectState, PurposeCategory
from tre_platform.policy import PolicyEngine

Objects = Callable[[DbWorld], dict[str, Any]]

ACTION_OBJECTS: dict[str, Objects] = {
    "spawn_workspace": lambda w: {"project": w.projects["P1"]},
    "read_dataset": lambda w: {"project": w.projects["P1"], "dataset": w.datasets["hes"]},
    "build_view": lambda w: {"project": w.projects["P1"], "dataset": w.datasets["hes"]},
    "submit_release": lambda w: {"release": w.release("R1")},
    "review_release": lambda w: {"release": w.release("R1")},
    "approve_project": lambda w: {"project": w.projects["P2"]},
    "grant_agreement": lambda w: {"agreement": w.new_agreement("nhsd", ["hes"])},
    "ingest_dataset": lambda w: {"dataset": w.datasets["hes"]},
}
USERS = ["alice", "bob", "carol", "dave", "erin", "olga", "adam", "nora"]
#: In the untouched world, exactly these (user, action) pairs are allowed.
ALLOWED = {
    ("alice", "spawn_workspace"),  # member, accredited
    ("alice", "read_dataset"),
    ("alice", "submit_release"),  # she made R1
    ("bob", "spawn_workspace"),  # the lead
    ("bob", "read_dataset"),
    ("dave", "approve_project"),  # approver, P2 is not his
    ("erin", "review_release"),  # checker, not the requester
    ("olga", "grant_agreement"),  # NHS Digital's data owner, NHS Digital's dataset
    ("olga", "ingest_dataset"),
    ("adam", "build_view"),  # admin
}
BASE = [(user, action) for user in USERS for action in ACTION_OBJECTS]


# One database per user (a row of the matrix) keeps the 64 cells quick; the assertion shows the row.
@pytest.mark.parametrize("user", USERS)
def test_role_by_action(session: Session, world: DbWorld, policy_engine: PolicyEngine, user: str) -> None:
    decisions = {
        action: policy_engine.decide(session, world.users[user], action, **objects(world))
        for action, objects in ACTION_OBJECTS.items()
    }
    session.commit()
    actual = {action: d.allowed for action, d in decisions.items()}
    expected = {action: (user, action) in ALLOWED for action in ACTION_OBJECTS}
    assert actual == expected, {a: d.reasons for a, d in decisions.items() if actual[a] != expected[a]}
    assert all(d.reasons for d in decisions.values())  # an allow names its rule, a deny what failed


@dataclass(frozen=True)
class StateCase:
    name: str
    change: Callable[[Session, DbWorld], None]
    user: str
    action: str
    policy_id: str
    objects: Objects | None = None


def _acc(w: DbWorld, user: str = "alice") -> Any:
    return w.users[user].accreditations[0]


def _set(obj_of: Callable[[DbWorld], Any], **values: Any) -> Callable[[Session, DbWorld], None]:
    """Set attributes of one row and commit; a callable value is computed from the world first."""

    def change(session: Session, w: DbWorld) -> None:
        obj = obj_of(w)
        for key, value in values.items():
            setattr(obj, key, value(w) if callable(value) else value)
        session.commit()

    return change


def _nothing(session: Session, w: DbWorld) -> None:
    return None


def _drop_dsa7(session: Session, w: DbWorld) -> None:
    session.delete(w.agreements["DSA-7"])
    session.commit()


def _other_recipient(session: Session, w: DbWorld) -> None:
    w.agreements["DSA-7"].recipient_links = [AgreementRecipient(organisation_id=w.orgs["uniy"].id)]
    session.commit()


YESTERDAY = TODAY - dt.timedelta(days=1)
TOMORROW = TODAY + dt.timedelta(days=1)
READ_CENSUS: Objects = lambda w: {"project": w.projects["P1"], "dataset": w.datasets["census"]}  # noqa: E731

STATES = [
    StateCase(
        "expired accreditation",
        _set(_acc, expires_on=YESTERDAY),
        "alice",
        "read_dataset",
        "accreditation.expired",
    ),
    StateCase(
        "expired accreditation, spawn",
        _set(_acc, expires_on=YESTERDAY),
        "alice",
        "spawn_workspace",
        "accreditation.expired",
    ),
    StateCase(
        "revoked accreditation", _set(_acc, revoked_at=NOON), "alice", "read_dataset", "accreditation.revoked"
    ),
    StateCase(
        "accreditation not yet granted",
        _set(_acc, granted_on=TOMORROW),
        "alice",
        "read_dataset",
        "accreditation.not_yet_valid",
    ),
    StateCase(
        "revoked agreement",
        _set(lambda w: w.agreements["DSA-7"], revoked_at=NOON),
        "alice",
        "read_dataset",
        "agreement.revoked",
    ),
    StateCase(
        "revoked agreement, view build",
        _set(lambda w: w.agreements["DSA-7"], revoked_at=NOON),
        "adam",
        "build_view",
        "agreement.revoked",
    ),
    StateCase(
        "expired agreement",
        _set(lambda w: w.agreements["DSA-7"], valid_to=YESTERDAY),
        "alice",
        "read_dataset",
        "agreement.expired",
    ),
    StateCase(
        "agreement not yet valid",
        _set(lambda w: w.agreements["DSA-7"], valid_from=TOMORROW),
        "bob",
        "read_dataset",
        "agreement.not_yet_valid",
    ),
    StateCase("no agreement at all", _drop_dsa7, "alice", "read_dataset", "agreement.none"),
    StateCase("not a member", _nothing, "carol", "read_dataset", "project.not_member"),
    StateCase("not a member, spawn", _nothing, "carol", "spawn_workspace", "project.not_member"),
    StateCase(
        "wrong purpose",
        _set(lambda w: w.projects["P1"], purpose=PurposeCategory.improve_statistics),
        "alice",
        "read_dataset",
        "agreement.purpose",
    ),
    StateCase(
        "wrong gateway",
        _set(lambda w: w.projects["P1"], legal_gateway=LegalGateway.consent),
        "alice",
        "read_dataset",
        "agreement.legal_gateway",
    ),
    StateCase("wrong organisation", _other_recipient, "alice", "read_dataset", "agreement.organisation"),
    StateCase(
        "organisation no longer accredited",
        _set(lambda w: w.orgs["unix"], accredited_until=YESTERDAY),
        "alice",
        "read_dataset",
        "agreement.organisation_not_accredited",
        READ_CENSUS,
    ),
    StateCase(
        "tier above the project's",
        _set(lambda w: w.projects["P1"], max_tier=2),
        "alice",
        "read_dataset",
        "tier.project",
    ),
    StateCase(
        "tier above the agreement's",
        _set(lambda w: w.agreements["DSA-7"], max_tier=2),
        "alice",
        "read_dataset",
        "tier.agreement",
    ),
    StateCase(
        "project only submitted",
        _set(lambda w: w.projects["P1"], state=ProjectState.submitted),
        "alice",
        "read_dataset",
        "project.not_approved",
    ),
    StateCase(
        "project expired (state)",
        _set(lambda w: w.projects["P1"], state=ProjectState.expired),
        "alice",
        "spawn_workspace",
        "project.not_approved",
    ),
    StateCase(
        "project past its end date",
        _set(lambda w: w.projects["P1"], end_date=YESTERDAY),
        "bob",
        "read_dataset",
        "project.ended",
    ),
    StateCase(
        "dataset not listed",
        _nothing,
        "alice",
        "read_dataset",
        "dataset.not_listed",
        lambda w: {"project": w.projects["P1"], "dataset": w.datasets["lfs"]},
    ),
    StateCase(
        "column not approved",
        _nothing,
        "alice",
        "read_dataset",
        "dataset.columns_not_approved",
        lambda w: {"project": w.projects["P1"], "dataset": w.datasets["hes"], "columns": ["age", "region"]},
    ),
    StateCase(
        "account disabled",
        _set(lambda w: w.users["alice"], is_active=False),
        "alice",
        "read_dataset",
        "account.disabled",
    ),
    StateCase(
        "own project approval",
        _set(lambda w: w.projects["P2"], lead_id=lambda w: w.users["dave"].id),
        "dave",
        "approve_project",
        "approval.own_project",
    ),
    StateCase(
        "approval of a project not submitted",
        _nothing,
        "dave",
        "approve_project",
        "approval.not_submitted",
        lambda w: {"project": w.projects["P1"]},
    ),
    StateCase(
        "own release review",
        _nothing,
        "erin",
        "review_release",
        "review.own_release",
        lambda w: {"release": w.release("R1", requester="erin")},
    ),
    StateCase(
        "same checker twice",
        _nothing,
        "erin",
        "review_release",
        "review.already_reviewed",
        lambda w: {"release": w.release("R2")},
    ),
    StateCase("submitting another's release", _nothing, "bob", "submit_release", "release.not_requester"),
    StateCase(
        "grant for another organisation's dataset",
        _nothing,
        "olga",
        "grant_agreement",
        "grant.foreign_dataset",
        lambda w: {"agreement": w.new_agreement("nhsd", ["hes", "census"])},
    ),
    StateCase(
        "grant on behalf of another organisation",
        _nothing,
        "olga",
        "grant_agreement",
        "grant.other_organisation",
        lambda w: {"agreement": w.new_agreement("ons", ["census"])},
    ),
    StateCase(
        "ingest another organisation's dataset",
        _nothing,
        "olga",
        "ingest_dataset",
        "ingest.other_organisation",
        lambda w: {"dataset": w.datasets["census"]},
    ),
]


@pytest.mark.parametrize("case", STATES, ids=[c.name for c in STATES])
def test_state_flips_an_allowed_request(
    session: Session, world: DbWorld, policy_engine: PolicyEngine, case: StateCase
) -> None:
    if (case.user, case.action) in ALLOWED:
        # The base request is allowed before the change: the change alone flips it.
        base = ACTION_OBJECTS[case.action](world)
        assert policy_engine.decide(session, world.users[case.user], case.action, **base).allowed
    case.change(session, world)
    objects = (case.objects or ACTION_OBJECTS[case.action])(world)
    decision = policy_engine.decide(session, world.users[case.user], case.action, **objects)
    assert not decision.allowed
    assert case.policy_id in decision.policy_ids, decision.reasons
    assert decision.reasons


def test_the_matrix_is_large_enough() -> None:
    assert len(BASE) + len(STATES) >= 60
