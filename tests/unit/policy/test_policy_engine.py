"""How the engine turns Cedar's answers into decisions and reasons."""

from __future__ import annotations

import json
from typing import Any

from tre_platform.policy import PolicyEngine, World
from tre_platform.policy.engine import MAX_LISTED_AGREEMENTS, render
from tre_platform.policy.entities import build

TODAY = "2025-06-01"
READ = {"action": "read_dataset", "user": "alice", "project": "P1", "dataset": "hes", "today": TODAY}


def test_an_allow_names_the_permit_the_accreditation_and_the_agreement(
    policy_engine: PolicyEngine, world_data: dict[str, Any]
) -> None:
    decision = policy_engine.evaluate(World.from_dict(world_data).request(**READ))
    assert decision.allowed
    assert decision.policy_ids == ["permit.researcher.project_data"]
    assert decision.agreement == "DSA-7"
    assert any("accreditation DEA-A1 is valid until 2027-01-01" in r for r in decision.reasons)
    assert any(
        r.startswith("agreement DSA-7 of NHS Digital covers dataset hes for Uni-X") for r in decision.reasons
    )
    assert decision.bundle_hash == policy_engine.bundle.hash


def test_a_forbid_beats_a_permit_for_a_user_with_every_role(
    policy_engine: PolicyEngine, world_data: dict[str, Any]
) -> None:
    world_data["users"]["alice"]["roles"] = [
        "researcher",
        "admin",
        "approver",
        "data_owner",
        "output_checker",
    ]
    world_data["projects"]["P1"]["state"] = "closed"
    decision = policy_engine.evaluate(World.from_dict(world_data).request(**READ))
    assert not decision.allowed
    assert decision.policy_ids == ["project.not_approved"]


def test_a_valid_accreditation_keeps_an_expired_one_out_of_the_reasons(
    policy_engine: PolicyEngine, world_data: dict[str, Any]
) -> None:
    world_data["users"]["alice"]["accreditations"].append(
        {"reference": "OLD", "granted_on": "2020-01-01", "expires_on": "2021-01-01"}
    )
    world_data["projects"]["P1"]["purpose"] = "extend_understanding"
    decision = policy_engine.evaluate(World.from_dict(world_data).request(**READ))
    assert not decision.allowed
    assert decision.policy_ids == ["agreement.purpose"]
    assert not any("OLD" in r for r in decision.reasons)


def test_a_deny_lists_a_few_failing_agreements_and_counts_the_rest(
    policy_engine: PolicyEngine, world_data: dict[str, Any]
) -> None:
    extra = MAX_LISTED_AGREEMENTS + 3
    for n in range(extra):
        world_data["agreements"][f"NHSD-{n:02d}"] = {
            "owner": "nhsd",
            "datasets": ["hes"],
            "recipients": ["unix"],
            "purposes": ["service_delivery"],
            "legal_gateways": ["dea"],
            "valid_from": "2024-01-01",
            "valid_to": "2026-01-01",
        }
    world_data["agreements"]["DSA-7"]["revoked"] = True
    decision = policy_engine.evaluate(World.from_dict(world_data).request(**READ))
    assert not decision.allowed
    assert decision.reasons[0] == "no agreement of NHS Digital covers dataset hes for Uni-X (project P1):"
    assert (
        decision.reasons[-1]
        == f"... and {extra + 1 - MAX_LISTED_AGREEMENTS} more agreements of NHS Digital fail too"
    )
    assert set(decision.policy_ids) == {"agreement.purpose", "agreement.revoked"}


def test_a_policy_that_cannot_be_evaluated_fails_closed(
    policy_engine: PolicyEngine, world_data: dict[str, Any]
) -> None:
    request = World.from_dict(world_data).request(**READ)
    cedar_input = build(request)
    # Without the Project entity every forbid that reads `context.project` errors; Cedar skips those
    # policies and, the permit still holding, answers Allow. The engine must read that as a deny.
    broken = type(cedar_input)(
        entities=[e for e in cedar_input.entities if e["uid"]["type"] != "Project"],
        candidates=cedar_input.candidates,
        principal=cedar_input.principal,
        resource_type=cedar_input.resource_type,
        resource_id=cedar_input.resource_id,
        resource_label=cedar_input.resource_label,
    )
    results = policy_engine.run(broken)
    assert results[0].allowed and results[0].diagnostics.errors  # Cedar failed open ...
    decision = policy_engine.interpret(request, broken, results)
    assert not decision.allowed  # ... and the engine refused
    assert decision.errors
    assert "could not be evaluated completely" in decision.reasons[-1]


def test_reasons_fill_placeholders_and_leave_unknown_ones_visible() -> None:
    assert render("{user} reads {dataset}", {"user": "alice", "dataset": "hes"}) == "alice reads hes"
    assert render("{user} reads {nothing}", {"user": "alice"}) == "alice reads {nothing}"


def test_a_decision_serialises_to_json_and_one_line(
    policy_engine: PolicyEngine, world_data: dict[str, Any]
) -> None:
    world_data["projects"]["P1"]["end_date"] = "2025-05-01"
    decision = policy_engine.evaluate(World.from_dict(world_data).request(**READ))
    data = json.loads(json.dumps(decision.to_dict()))
    assert data["decision"] == "deny" and data["today"] == TODAY
    assert decision.message() == "alice may not read_dataset hes: project P1 ended on 2025-05-01"


def test_each_accreditation_and_agreement_is_one_cedar_request(world_data: dict[str, Any]) -> None:
    world_data["users"]["alice"]["accreditations"].append(
        {"reference": "SECOND", "granted_on": "2024-01-01", "expires_on": "2026-01-01"}
    )
    world_data["agreements"]["DSA-8"] = dict(world_data["agreements"]["DSA-7"])
    cedar_input = build(World.from_dict(world_data).request(**READ))
    pairs = {
        (c.cedar_request["context"]["accreditation"]["id"], c.cedar_request["context"]["agreement"]["id"])
        for c in cedar_input.candidates
    }
    assert pairs == {(a, g) for a in ("alice-acc1", "alice-acc2") for g in ("DSA-7", "DSA-8")}
