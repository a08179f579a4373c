"""The release state machine is data; every state and every transition is exercised on a real database."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from airlock_helpers import staged_request
from airlock_world import Airlock, microdata
from sqlalchemy import select
from sqlalchemy.orm import Session

from tre_platform.actor import Actor
from tre_platform.api.audit.models import AuditEvent
from tre_platform.api.releases import service
from tre_platform.api.releases.models import (
    STATE_OWNER,
    TERMINAL_STATES,
    VALID_TRANSITIONS,
    ReleaseAction,
    ReleaseRequest,
    ReleaseState,
)
from tre_platform.errors import Forbidden, InvalidTransition


def test_every_state_has_an_owner_and_every_state_is_reachable_and_left_unless_terminal() -> None:
    assert set(STATE_OWNER) == set(ReleaseState)
    targets = {to for to, _owner in VALID_TRANSITIONS.values()}
    sources = {state for state, _action in VALID_TRANSITIONS}
    assert set(ReleaseState) - {ReleaseState.draft} <= targets
    assert set(ReleaseState) - TERMINAL_STATES <= sources
    assert not (TERMINAL_STATES & sources)


def _drive(session: Session, airlock: Airlock, state: ReleaseState) -> ReleaseRequest:
    """A request brought to ``state`` through the real service calls."""
    researcher = Actor.of(airlock.researcher)
    first, second = (Actor.of(c) for c in airlock.checkers[:2])
    request = staged_request(session, researcher, airlock.project_id, microdata())
    if state is ReleaseState.draft:
        return request
    service.submit(session, researcher, request.id)
    if state is ReleaseState.returned:
        service.review(session, first, request.id, "return", "explain the age bands")
    elif state is ReleaseState.approved:
        service.review(session, first, request.id, "approve")
        service.review(session, second, request.id, "approve")
    session.commit()
    assert request.state is state
    return request


def _act(session: Session, airlock: Airlock, request: ReleaseRequest, action: ReleaseAction) -> None:
    researcher = Actor.of(airlock.researcher)
    checkers = [Actor.of(c) for c in airlock.checkers]
    steps: dict[ReleaseAction, Callable[[], object]] = {
        ReleaseAction.submit: lambda: service.submit(session, researcher, request.id),
        ReleaseAction.revise: lambda: service.revise(session, researcher, request.id),
        ReleaseAction.approve: lambda: [
            service.review(session, c, request.id, "approve") for c in checkers[:2]
        ],
        ReleaseAction.reject: lambda: service.review(
            session, checkers[2], request.id, "reject", "a person is visible"
        ),
        ReleaseAction.return_: lambda: service.review(
            session, checkers[2], request.id, "return", "round to 5"
        ),
        ReleaseAction.release: lambda: service.release(session, researcher, request.id),
    }
    steps[action]()


@pytest.mark.parametrize(
    ("from_state", "action"),
    [key for key in VALID_TRANSITIONS if key[1] is not ReleaseAction.check],
    ids=lambda v: str(v),
)
def test_each_transition_moves_the_request_to_its_target_state(
    airlock: Airlock, session: Session, from_state: ReleaseState, action: ReleaseAction
) -> None:
    request = _drive(session, airlock, from_state)
    _act(session, airlock, request, action)
    session.commit()
    to_state, _owner = VALID_TRANSITIONS[(from_state, action)]
    expected = ReleaseState.in_review if action is ReleaseAction.submit else to_state
    assert request.state is expected  # a submission runs the checks and lands in review at once


def test_the_system_moves_a_submitted_request_to_review_when_its_checks_are_stored(
    airlock: Airlock, session: Session
) -> None:
    request = _drive(session, airlock, ReleaseState.in_review)
    events = session.scalars(
        select(AuditEvent).where(AuditEvent.target_id == request.id).order_by(AuditEvent.seq)
    ).all()
    moves = [(e.action, e.details.get("from_state"), e.details.get("to_state"), e.actor) for e in events]
    assert ("release.submit", "draft", "submitted", "rita") in moves
    assert ("release.check", "submitted", "in_review", "airlock") in moves
    checked = next(e for e in events if e.action == "release.checked")
    assert checked.details["status"] == "review"  # uploaded data, no view: at most review


def test_only_the_system_may_perform_the_check_transition(airlock: Airlock, session: Session) -> None:
    request = _drive(session, airlock, ReleaseState.draft)
    request.state = ReleaseState.submitted
    with pytest.raises(Forbidden, match="server moves"):
        service._check_may_act(Actor.of(airlock.researcher), request, ReleaseAction.check)
    session.rollback()


@pytest.mark.parametrize(
    ("state", "action"),
    [
        (ReleaseState.draft, ReleaseAction.release),
        (ReleaseState.draft, ReleaseAction.revise),
        (ReleaseState.in_review, ReleaseAction.submit),
        (ReleaseState.in_review, ReleaseAction.release),
        (ReleaseState.approved, ReleaseAction.reject),
        (ReleaseState.returned, ReleaseAction.release),
    ],
    ids=lambda v: str(v),
)
def test_actions_not_in_the_table_are_refused_with_what_is_allowed(
    airlock: Airlock, session: Session, state: ReleaseState, action: ReleaseAction
) -> None:
    request = _drive(session, airlock, state)
    with pytest.raises(InvalidTransition, match="allowed:"):
        _act(session, airlock, request, action)
    session.rollback()
    assert request.state is state


@pytest.mark.parametrize("terminal", [ReleaseState.rejected, ReleaseState.released])
def test_terminal_states_allow_nothing(airlock: Airlock, session: Session, terminal: ReleaseState) -> None:
    if terminal is ReleaseState.rejected:
        request = _drive(session, airlock, ReleaseState.in_review)
        _act(session, airlock, request, ReleaseAction.reject)
    else:
        request = _drive(session, airlock, ReleaseState.approved)
        _act(session, airlock, request, ReleaseAction.release)
    session.commit()
    assert service.allowed_actions(request.state) == []
    for action in (ReleaseAction.submit, ReleaseAction.return_, ReleaseAction.release):
        with pytest.raises(InvalidTransition, match="finished"):
            _act(session, airlock, request, action)
        session.rollback()


def test_files_change_only_in_a_draft(airlock: Airlock, session: Session) -> None:
    from tre_platform.errors import Conflict

    request = _drive(session, airlock, ReleaseState.returned)
    with pytest.raises(Conflict, match="revise"):
        service.remove_file(session, Actor.of(airlock.researcher), request.id, request.files[0].id)
    session.rollback()
    service.revise(session, Actor.of(airlock.researcher), request.id)
    service.remove_file(session, Actor.of(airlock.researcher), request.id, request.files[0].id)
    assert request.files == []
