"""Deciding many requests in one Cedar call gives exactly the decisions of deciding each alone."""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import cedarpy
import pytest

from tre_platform.clock import clock
from tre_platform.policy import Decision, PolicyEngine, PolicyRequest, World
from tre_platform.policy.cases import load_cases
from tre_platform.policy.engine import mergeable_groups
from tre_platform.policy.entities import build
from tre_platform.settings import REPO_ROOT

CASES = load_cases(REPO_ROOT / "policies")
NOW = dt.datetime(2025, 6, 1, 12, tzinfo=dt.UTC)


def _requests() -> list[PolicyRequest]:
    return [World.from_dict(case.world).request(**case.request) for case in CASES]


def _single(engine: PolicyEngine, requests: list[PolicyRequest]) -> list[Decision]:
    with clock.frozen(NOW):
        return [engine.evaluate(request) for request in requests]


def _batch(engine: PolicyEngine, requests: list[PolicyRequest]) -> list[Decision]:
    with clock.frozen(NOW):
        return engine.evaluate_many(requests)


def test_batch_and_single_evaluation_agree_on_every_golden_case(policy_engine: PolicyEngine) -> None:
    requests = _requests()
    single = _single(policy_engine, requests)
    batch = _batch(policy_engine, requests)
    assert len(batch) == len(single) == len(CASES)
    for case, one, many in zip(CASES, single, batch, strict=True):
        # The whole Decision: allowed, reasons (in order), policy ids, agreement, errors, hash.
        assert many == one, case.path.name
        assert one.effect == case.expect, case.path.name


@pytest.mark.parametrize("order", ["reversed", "interleaved"])
def test_batch_decisions_do_not_depend_on_the_order_of_the_requests(
    policy_engine: PolicyEngine, order: str
) -> None:
    requests = _requests()
    indices = list(range(len(requests)))
    permuted = indices[::-1] if order == "reversed" else indices[::2] + indices[1::2]
    single = _single(policy_engine, requests)
    batch = _batch(policy_engine, [requests[i] for i in permuted])
    assert [single[i] for i in permuted] == batch


def test_requests_whose_entities_differ_are_never_merged_into_one_store() -> None:
    inputs = [build(request) for request in _requests()]
    groups = mergeable_groups(inputs)
    # The golden worlds patch the same uids differently (an expired accreditation, a revoked
    # agreement), so they cannot all share one store - yet most of them can.
    assert 1 < len(groups) < len(inputs)
    assert sorted(i for members, _ in groups for i in members) == list(range(len(inputs)))
    for members, merged in groups:
        store = {(e["uid"]["type"], e["uid"]["id"]): e for e in merged}
        for i in members:
            for entity in inputs[i].entities:
                assert store[(entity["uid"]["type"], entity["uid"]["id"])] == entity


def test_a_deny_and_an_allow_in_one_batch_keep_their_own_reasons(policy_engine: PolicyEngine) -> None:
    allow = next(c for c in CASES if c.expect == "allow")
    deny = next(c for c in CASES if c.expect == "deny")
    requests = [World.from_dict(c.world).request(**c.request) for c in (allow, deny, allow)]
    decisions = _batch(policy_engine, requests)
    assert [d.effect for d in decisions] == ["allow", "deny", "allow"]
    assert any(deny.reason in reason for reason in decisions[1].reasons if deny.reason)
    assert decisions[0] == decisions[2]


def test_an_empty_batch_decides_nothing(policy_engine: PolicyEngine) -> None:
    assert policy_engine.evaluate_many([]) == []


def test_the_bundle_knows_which_policies_have_conditions(policy_engine: PolicyEngine) -> None:
    policies = policy_engine.bundle.policies.values()
    # Every forbid is one condition; the shipped permits are decided by their scope alone.
    assert all(info.conditional for info in policies if info.effect == "forbid")
    assert not any(info.conditional for info in policies if info.effect == "permit")


def test_asking_the_permits_about_one_candidate_answers_for_all(policy_engine: PolicyEngine) -> None:
    bundle = policy_engine.bundle
    for case, request in zip(CASES, _requests(), strict=True):
        cedar_input = build(request)
        every = cedarpy.is_authorized_batch(
            [c.cedar_request for c in cedar_input.candidates],
            bundle.permit_set,
            cedar_input.entities,
            schema=bundle.schema,
        )
        assert len({r.allowed for r in every}) == 1, case.path.name


def test_a_permit_with_a_condition_is_asked_about_every_candidate(tmp_path: Path) -> None:
    case = next(c for c in CASES if c.path.name.startswith("40_"))
    request = World.from_dict(case.world).request(**case.request)
    last = build(request).candidates[-1].accreditation
    assert last is not None
    shutil.copytree(REPO_ROOT / "policies" / "cedar", tmp_path / "cedar")
    # Without the researcher permit, only the conditional permit below can apply to read_dataset.
    permits = tmp_path / "cedar" / "00_permits.cedar"
    text = permits.read_text()
    start = text.index('@id("permit.researcher.project_data")')
    permits.write_text(text[:start] + text[text.index(");", start) + 2 :])
    (tmp_path / "cedar" / "05_conditional_permit.cedar").write_text(
        '@id("permit.test.one_accreditation")\n'
        '@reason("{user} may read with one particular accreditation")\n'
        'permit (principal, action == Action::"read_dataset", resource)\n'
        f'when {{ context has accreditation && context.accreditation.reference == "{last.reference}" }};\n'
    )
    engine = PolicyEngine.load(tmp_path)
    for decision in (engine.evaluate(request), engine.evaluate_many([request])[0]):
        # Still denied by the forbids, but a permit did apply (to the last candidate only), so the
        # deny is not explained as "no policy permits" - which asking about the first alone would say.
        assert not decision.allowed
        assert not any(reason.startswith("no policy permits") for reason in decision.reasons)
