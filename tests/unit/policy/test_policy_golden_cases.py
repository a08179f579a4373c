"""Every golden case in policies/cases is decided as it says, with the reason it names."""

from __future__ import annotations

from pathlib import Path

import cedarpy
import pytest

from tre_platform.policy import PolicyEngine
from tre_platform.policy.cases import GoldenCase, load_cases, run_case
from tre_platform.settings import REPO_ROOT

POLICIES = REPO_ROOT / "policies"
CASES = load_cases(POLICIES)


@pytest.fixture(scope="module")
def engine() -> PolicyEngine:
    return PolicyEngine.load(POLICIES)


def test_the_golden_cases_cover_both_outcomes_generously() -> None:
    allow = [c for c in CASES if c.expect == "allow"]
    deny = [c for c in CASES if c.expect == "deny"]
    assert len(allow) >= 15
    assert len(deny) >= 25


def test_every_forbid_policy_is_pinned_by_a_deny_case(engine: PolicyEngine) -> None:
    pinned = {c.policy_id for c in CASES if c.expect == "deny"}
    forbids = {p.id for p in engine.bundle.policies.values() if p.effect == "forbid"}
    assert forbids - pinned == set()


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_golden_case(engine: PolicyEngine, case: GoldenCase) -> None:
    result = run_case(engine, case)
    assert result.passed, f"{case.path}: {case.description}: {result.problems}"


def test_a_case_in_the_wrong_folder_is_refused(tmp_path: Path) -> None:
    import json
    import shutil

    from tre_platform.policy.cases import CaseError

    shutil.copytree(POLICIES / "cases", tmp_path / "cases")
    misplaced = tmp_path / "cases" / "allow" / "zz_misplaced.json"
    misplaced.write_text(
        json.dumps(
            {
                "description": "x",
                "request": {"action": "spawn_workspace", "user": "alice", "project": "P1"},
                "expect": "deny",
                "reason": "x",
            }
        )
    )
    with pytest.raises(CaseError, match=r"zz_misplaced\.json"):
        load_cases(tmp_path)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_cedar_gives_the_same_answers_with_only_the_actions_policies(
    engine: PolicyEngine, case: GoldenCase
) -> None:
    """Cedar given only the policies whose action scope admits the action (what the engine gives it)
    answers every candidate exactly as with the whole bundle: decision, determining policies, errors."""
    from tre_platform.policy import World
    from tre_platform.policy.entities import build

    request = World.from_dict(case.world).request(**case.request)
    cedar_input = build(request)
    entities = engine.parse_entities(cedar_input.entities)
    requests = [c.cedar_request for c in cedar_input.candidates]
    schema = engine.bundle.schema
    whole = cedarpy.is_authorized_batch(requests, engine.bundle.policy_set, entities, schema=schema)
    sliced_set = engine.bundle.policy_set_for(request.action)
    assert len(sliced_set) < len(engine.bundle.policy_set)
    sliced = cedarpy.is_authorized_batch(requests, sliced_set, entities, schema=schema)
    for a, b in zip(whole, sliced, strict=True):
        assert (a.allowed, sorted(engine._ids(a)), a.diagnostics.errors) == (
            b.allowed,
            sorted(engine._ids(b)),
            b.diagnostics.errors,
        )
