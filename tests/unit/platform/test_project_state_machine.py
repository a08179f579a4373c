from __future__ import annotations

from tre_platform.api.projects.models import (
    STATE_OWNER,
    TERMINAL_STATES,
    VALID_TRANSITIONS,
    ProjectAction,
    ProjectState,
)
from tre_platform.api.users.models import Role

ACTING_PARTIES = {"lead", "system"} | {role.value for role in Role}


def test_every_state_has_an_owner() -> None:
    assert set(STATE_OWNER) == set(ProjectState)


def test_every_non_terminal_state_has_a_way_out() -> None:
    sources = {state for state, _ in VALID_TRANSITIONS}
    for state in ProjectState:
        if state in TERMINAL_STATES:
            assert state not in sources, f"{state} is terminal but has transitions"
        else:
            assert state in sources, f"{state} has no transitions"


def test_every_state_is_reachable_from_draft() -> None:
    reached = {ProjectState.draft}
    frontier = [ProjectState.draft]
    while frontier:
        current = frontier.pop()
        for (source, _action), (target, _who) in VALID_TRANSITIONS.items():
            if source == current and target not in reached:
                reached.add(target)
                frontier.append(target)
    assert reached == set(ProjectState)


def test_each_transition_names_a_party_that_can_act() -> None:
    for (_source, action), (_target, who) in VALID_TRANSITIONS.items():
        assert who in ACTING_PARTIES
        assert isinstance(action, ProjectAction)


def test_the_owner_of_a_state_is_who_acts_on_it() -> None:
    for (source, _action), (_target, who) in VALID_TRANSITIONS.items():
        if who != "system":
            assert STATE_OWNER[source] == who, f"{source} is owned by {STATE_OWNER[source]} but {who} acts"


def test_approval_decisions_are_made_by_approvers_only() -> None:
    for action in (ProjectAction.approve, ProjectAction.reject, ProjectAction.return_):
        (_target, who) = VALID_TRANSITIONS[(ProjectState.submitted, action)]
        assert who == Role.approver.value
