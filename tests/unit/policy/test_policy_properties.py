"""Property: no request is allowed unless every required condition holds - and each failed condition is named.

Hypothesis draws which conditions hold; the world is built to match; the engine must allow exactly
when all hold, and on a deny its policy ids must be exactly the failed conditions.
"""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from tre_platform.policy import PolicyEngine, World
from tre_platform.settings import REPO_ROOT

TODAY = "2025-06-01"
BEFORE, AFTER = "2025-05-31", "2025-06-02"
ENGINE = PolicyEngine.load(REPO_ROOT / "policies")
WORLD_JSON = (REPO_ROOT / "policies" / "cases" / "world.json").read_text()


def fresh_world() -> dict[str, Any]:
    """The golden-case world, new for each example (hypothesis reruns a test body many times)."""
    data: dict[str, Any] = json.loads(WORLD_JSON)
    return data


#: read_dataset's required conditions -> the forbid policy that names each one when it fails.
READ_CONDITIONS: dict[str, str] = {
    "active": "account.disabled",
    "has_accreditation": "accreditation.missing",
    "accreditation_not_revoked": "accreditation.revoked",
    "accreditation_started": "accreditation.not_yet_valid",
    "accreditation_not_expired": "accreditation.expired",
    "member": "project.not_member",
    "project_approved": "project.not_approved",
    "project_started": "project.not_started",
    "project_not_ended": "project.ended",
    "dataset_listed": "dataset.not_listed",
    "columns_approved": "dataset.columns_not_approved",
    "tier_within_project": "tier.project",
    "has_agreement": "agreement.none",
    "agreement_not_revoked": "agreement.revoked",
    "agreement_started": "agreement.not_yet_valid",
    "agreement_not_expired": "agreement.expired",
    "agreement_covers_dataset": "agreement.dataset",
    "agreement_covers_organisation": "agreement.organisation",
    "agreement_purpose": "agreement.purpose",
    "agreement_gateway": "agreement.legal_gateway",
    "tier_within_agreement": "tier.agreement",
}
ACCREDITATION_ONLY = {k for k in READ_CONDITIONS if k.startswith("accreditation_")}
AGREEMENT_ONLY = {k for k in READ_CONDITIONS if k.startswith("agreement_") or k == "tier_within_agreement"}


def _read_world(
    held: dict[str, bool], *, researcher: bool, any_accredited: bool, state: str
) -> dict[str, Any]:
    accreditation = {
        "reference": "ACC",
        "granted_on": "2024-01-01" if held["accreditation_started"] else AFTER,
        "expires_on": "2027-01-01" if held["accreditation_not_expired"] else BEFORE,
        "revoked": not held["accreditation_not_revoked"],
    }
    covers_org = held["agreement_covers_organisation"]
    agreement = {
        "owner": "owner",
        "all_datasets": held["agreement_covers_dataset"] and any_accredited,
        "datasets": ["ds"] if held["agreement_covers_dataset"] and not any_accredited else ["other"],
        "any_accredited": any_accredited,
        "recipients": ["research"] if covers_org and not any_accredited else ["elsewhere"],
        "purposes": ["policy_evidence" if held["agreement_purpose"] else "service_delivery"],
        "legal_gateways": ["dea" if held["agreement_gateway"] else "srsa"],
        "max_tier": 3 if held["tier_within_agreement"] else 1,
        "valid_from": "2024-01-01" if held["agreement_started"] else AFTER,
        "valid_to": "2026-01-01" if held["agreement_not_expired"] else BEFORE,
        "revoked": not held["agreement_not_revoked"],
    }
    # With any_accredited, covering the organisation means the organisation is accredited today.
    research_accredited = "2027-01-01" if (covers_org or not any_accredited) else BEFORE
    return {
        "organisations": {
            "owner": {"name": "Owner"},
            "research": {"name": "Research", "accredited_until": research_accredited},
        },
        "users": {
            "r": {
                "organisation": "research",
                "roles": ["researcher"] if researcher else ["approver"],
                "active": held["active"],
                "accreditations": [accreditation] if held["has_accreditation"] else [],
            },
            "lead": {"organisation": "research", "roles": ["researcher"]},
        },
        "datasets": {
            "ds": {"owner": "owner", "tier": 2, "columns": ["a", "b", "c"]},
            "other": {"owner": "owner", "tier": 1, "columns": ["x"]},
        },
        "projects": {
            "P": {
                "state": state if held["project_approved"] else "submitted",
                "purpose": "policy_evidence",
                "legal_gateway": "dea",
                "organisation": "research",
                "lead": "lead",
                "members": ["r"] if held["member"] else [],
                "datasets": {"ds": ["a", "b"]} if held["dataset_listed"] else {"other": None},
                "max_tier": 3 if held["tier_within_project"] else 1,
                "start_date": "2025-01-01" if held["project_started"] else AFTER,
                "end_date": "2026-12-31" if held["project_not_ended"] else BEFORE,
            }
        },
        "agreements": {"A": agreement} if held["has_agreement"] else {},
    }


@settings(max_examples=300, deadline=None)
@given(
    held=st.fixed_dictionaries({name: st.booleans() for name in READ_CONDITIONS}),
    researcher=st.booleans(),
    any_accredited=st.booleans(),
    state=st.sampled_from(["approved", "active"]),
)
def test_read_is_allowed_iff_every_condition_holds(
    held: dict[str, bool], researcher: bool, any_accredited: bool, state: str
) -> None:
    world = World.from_dict(
        _read_world(held, researcher=researcher, any_accredited=any_accredited, state=state)
    )
    columns = ["a", "b"] if held["columns_approved"] else ["a", "c"]
    decision = ENGINE.evaluate(
        world.request("read_dataset", "r", project="P", dataset="ds", columns=columns, today=TODAY)
    )
    # Conditions on a credential that is absent cannot be checked, only its absence.
    # An agreement whose scope does not name the dataset is no candidate: then there is no agreement.
    candidate = held["has_agreement"] and held["agreement_covers_dataset"]
    relevant = {
        name
        for name in READ_CONDITIONS
        if not (name in ACCREDITATION_ONLY and not held["has_accreditation"])
        and not (name in AGREEMENT_ONLY and not candidate)
        and not (name == "has_agreement" and held["has_agreement"] and not candidate)
    }
    failed = {READ_CONDITIONS[name] for name in relevant if not held[name]}
    if not candidate:
        failed.add("agreement.none")
    if any_accredited and "agreement.organisation" in failed:
        # Under an any-accredited agreement the organisation condition is its accreditation.
        failed = (failed - {"agreement.organisation"}) | {"agreement.organisation_not_accredited"}
    if not held["dataset_listed"]:
        # Nothing is approved of an unlisted dataset, so the columns asked for are not approved either.
        failed.add("dataset.columns_not_approved")
    assert decision.allowed == (researcher and not failed)
    if not decision.allowed:
        assert set(decision.policy_ids) == failed
        assert len(decision.reasons) >= len(failed)
        if not researcher:
            assert "it needs the role researcher" in decision.reasons[0]


AGREEMENT_FLAGS = ("revoked", "expired", "wrong_purpose", "wrong_dataset")


@settings(max_examples=150, deadline=None)
@given(agreements=st.lists(st.sets(st.sampled_from(AGREEMENT_FLAGS)), min_size=0, max_size=4))
def test_read_is_allowed_iff_some_agreement_covers_it(
    agreements: list[set[str]],
) -> None:
    world_data = fresh_world()
    world_data["agreements"] = {k: v for k, v in world_data["agreements"].items() if v["owner"] != "nhsd"}
    for n, flags in enumerate(agreements):
        world_data["agreements"][f"NHSD-{n}"] = {
            "owner": "nhsd",
            "datasets": ["gp"] if "wrong_dataset" in flags else ["hes"],
            "recipients": ["unix"],
            "purposes": ["service_delivery"] if "wrong_purpose" in flags else ["policy_evidence"],
            "legal_gateways": ["dea"],
            "valid_from": "2024-01-01",
            "valid_to": BEFORE if "expired" in flags else "2026-01-01",
            "revoked": "revoked" in flags,
        }
    decision = ENGINE.evaluate(
        World.from_dict(world_data).request("read_dataset", "alice", project="P1", dataset="hes", today=TODAY)
    )
    assert decision.allowed == any(not flags for flags in agreements)
    if decision.allowed:
        assert decision.agreement is not None
    elif any("wrong_dataset" not in flags for flags in agreements):
        assert decision.reasons[0].startswith("no agreement of NHS Digital covers dataset hes")
    else:  # no agreement's scope names the dataset
        assert decision.policy_ids == ["agreement.none"]


@settings(max_examples=150, deadline=None)
@given(
    checker=st.booleans(),
    is_requester=st.booleans(),
    already_reviewed=st.booleans(),
    active=st.booleans(),
)
def test_review_is_allowed_iff_an_independent_checker_asks(
    checker: bool,
    is_requester: bool,
    already_reviewed: bool,
    active: bool,
) -> None:
    world_data = fresh_world()
    world_data["users"]["erin"]["roles"] = ["output_checker"] if checker else ["researcher"]
    world_data["users"]["erin"]["active"] = active
    world_data["releases"]["R"] = {
        "requester": "erin" if is_requester else "alice",
        "project": "P1",
        "checkers": ["erin", "frank"] if already_reviewed else ["frank"],
    }
    decision = ENGINE.evaluate(
        World.from_dict(world_data).request("review_release", "erin", release="R", today=TODAY)
    )
    assert decision.allowed == (checker and active and not is_requester and not already_reviewed)


@settings(max_examples=150, deadline=None)
@given(
    approver=st.booleans(),
    relation=st.sampled_from(["none", "lead", "creator", "member"]),
    state=st.sampled_from(["submitted", "draft", "approved", "returned"]),
)
def test_approval_is_allowed_iff_an_approver_decides_someone_elses_submitted_project(
    approver: bool, relation: str, state: str
) -> None:
    world_data = fresh_world()
    world_data["users"]["dave"]["roles"] = ["approver"] if approver else ["researcher"]
    project = world_data["projects"]["P2"]
    project["state"] = state
    if relation == "lead":
        project["lead"] = "dave"
    elif relation == "creator":
        project["created_by"] = "dave"
    elif relation == "member":
        project["members"] = ["dave"]
    decision = ENGINE.evaluate(
        World.from_dict(world_data).request("approve_project", "dave", project="P2", today=TODAY)
    )
    assert decision.allowed == (approver and relation == "none" and state == "submitted")


@settings(max_examples=100, deadline=None)
@given(
    owner_role=st.booleans(),
    agreement_owner=st.sampled_from(["nhsd", "ons"]),
    datasets=st.sets(st.sampled_from(["hes", "gp", "census", "lfs"]), max_size=4),
)
def test_a_grant_is_allowed_iff_a_data_owner_shares_only_their_own_datasets(
    owner_role: bool,
    agreement_owner: str,
    datasets: set[str],
) -> None:
    world_data = fresh_world()
    world_data["users"]["olga"]["roles"] = ["data_owner"] if owner_role else ["researcher"]
    world_data["agreements"]["NEW"] = {
        "owner": agreement_owner,
        "datasets": sorted(datasets),
        "valid_from": "2025-06-01",
        "valid_to": "2026-06-01",
    }
    decision = ENGINE.evaluate(
        World.from_dict(world_data).request("grant_agreement", "olga", agreement="NEW", today=TODAY)
    )
    owners = {world_data["datasets"][d]["owner"] for d in datasets}
    assert decision.allowed == (owner_role and agreement_owner == "nhsd" and owners <= {"nhsd"})
