"""The compiled policies (policy/compiled.py, ADR 0011) against Cedar itself.

Differential tests over random facts (every candidate, the candidate product, whole decisions), the
safety net of the engine (a compiled mistake never grants; unsupported Cedar falls back to Cedar),
the code generation's injection safety, evaluation errors, and Cedar's semantics on small policies.
"""

from __future__ import annotations

import ast
import builtins
import dataclasses
import datetime as dt
import json
import logging
import re
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cedarpy
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tre_platform.policy.compiled as compiled_module
import tre_platform.policy.engine as engine_module
from tre_platform.policy import Decision, PolicyEngine, PolicyRequest, World
from tre_platform.policy.compiled import (
    CompiledBundle,
    CompiledMismatch,
    Result,
    compile_policy,
    index,
)
from tre_platform.policy.entities import CedarInput, Json, build
from tre_platform.policy.facts import (
    ACTIONS,
    ALL_ROLES,
    DATASET_ACTIONS,
    PROJECT_ACTIONS,
    AccreditationFacts,
    AgreementFacts,
    DatasetFacts,
    OrgFacts,
    PackageFacts,
    ProjectFacts,
    ReleaseFacts,
    UserFacts,
)
from tre_platform.settings import REPO_ROOT

POLICIES = REPO_ROOT / "policies"
ENGINE = PolicyEngine.load(POLICIES, verify=False)
assert ENGINE.compiled is not None
COMPILED: CompiledBundle = ENGINE.compiled
#: Cedar names policies of the bundle's text by position ("policy7"): the bundle's order is the same.
POSITIONAL = list(ENGINE.bundle.policies)
WORLD_JSON = (POLICIES / "cases" / "world.json").read_text()
TODAY = dt.date(2025, 6, 1)

# Random facts ---------------------------------------------------------------------------------------

ORG_IDS = ("own", "own2", "res", "res2")
USER_IDS = ("u", "lead", "other")
DATASET_IDS = ("ds", "ds2")
COLUMNS = ("a", "b", "c")
PURPOSES = ("policy_evidence", "service_delivery")
GATEWAYS = ("dea", "srsa")
STATES = ("approved", "active", "submitted", "draft")
#: Days around today, the boundaries included (`<` and `<=` differ exactly there).
OFFSETS = (-400, -1, 0, 1, 400)


def _day(offsets: Sequence[int] = OFFSETS) -> st.SearchStrategy[dt.date]:
    return st.sampled_from([TODAY + dt.timedelta(days=n) for n in offsets])


#: Every action; the dataset actions, which most policies apply to, more often.
ACTION_WEIGHTS = (*sorted(ACTIONS), *["read_dataset"] * 4, *["build_view"] * 2)
#: The facts a request's strategy may draw at random while keeping the others allowing.
FAULTS = (
    "holder", "granted_on", "expires_on", "accreditation_revoked", "roles", "active", "data_owner_for",
    "dataset_tier", "state", "lead", "created_by", "members", "approved_columns", "listed",
    "project_tier", "start_date", "end_date", "agreement_owner", "agreement_datasets", "dataset_owners",
    "recipients", "purposes", "gateways", "agreement_tier", "valid_from", "valid_to",
    "agreement_revoked", "requester", "checkers", "package_requester",
)  # fmt: skip


def _ids(values: Sequence[str]) -> st.SearchStrategy[frozenset[str]]:
    return st.frozensets(st.sampled_from(values))


@st.composite
def policy_requests(
    draw: st.DrawFn, min_accreditations: int = 0, min_agreements: int = 0, action: str | None = None
) -> PolicyRequest:
    """A request of any action on random facts, where any condition of any policy may hold or fail.

    Half the examples draw every fact at random; the others draw at random only a few facts (the
    "faults") and give the rest the value under which the action can be allowed, so that allows, and
    denies by one or two conditions, are common too.
    """
    action = action or draw(st.sampled_from(ACTION_WEIGHTS))
    kind = ACTIONS[action]
    fully_random = draw(st.booleans())
    faults = draw(st.frozensets(st.sampled_from(FAULTS), max_size=2))

    def pick(name: str, good: Any, strategy: st.SearchStrategy[Any]) -> Any:
        assert name in FAULTS, name
        return draw(strategy) if fully_random or name in faults else good

    # Drawn once: an organisation is one entity, however often it is reached.
    orgs = {o: OrgFacts(o, o, f"Org {o}", draw(st.none() | _day())) for o in ORG_IDS}
    org = st.sampled_from(list(orgs.values()))
    accreditations = tuple(
        AccreditationFacts(
            f"acc{n}",
            f"DEA-{n}",
            "DEA accredited researcher",
            pick("holder", "u", st.sampled_from(("u", "other"))),
            pick("granted_on", TODAY - dt.timedelta(days=400), _day()),
            pick("expires_on", TODAY + dt.timedelta(days=400), _day()),
            pick("accreditation_revoked", False, st.booleans()),
        )
        for n in range(draw(st.integers(min_accreditations, 3)))
    )
    user = UserFacts(
        "u",
        "user-u",
        draw(org),
        pick("roles", frozenset(ALL_ROLES), _ids(ALL_ROLES)),
        pick("active", True, st.booleans()),
        tuple(orgs[o] for o in sorted(pick("data_owner_for", frozenset(ORG_IDS), _ids(ORG_IDS)))),
        accreditations,
    )
    dataset = DatasetFacts(
        draw(st.sampled_from(DATASET_IDS)),
        "the dataset",
        draw(org),
        pick("dataset_tier", 0, st.integers(0, 4)),
        COLUMNS,
    )
    approving = action == "approve_project"
    project = ProjectFacts(
        "P",
        "P-code",
        pick(
            "state", "submitted" if approving else draw(st.sampled_from(STATES[:2])), st.sampled_from(STATES)
        ),
        draw(st.sampled_from(PURPOSES)),
        draw(st.sampled_from(GATEWAYS)),
        draw(org),
        pick("lead", "lead", st.sampled_from(USER_IDS)),
        pick("created_by", "lead", st.sampled_from(USER_IDS)),
        pick("members", frozenset({"lead"} if approving else {"lead", "u"}), _ids(USER_IDS)),
        {
            d: tuple(sorted(pick("approved_columns", COLUMNS, _ids(COLUMNS))))
            for d in sorted(pick("listed", {dataset.id}, _ids(DATASET_IDS)) | draw(_ids(DATASET_IDS)))
        },
        pick("project_tier", 4, st.integers(0, 4)),
        pick("start_date", TODAY - dt.timedelta(days=400), _day()),
        pick("end_date", TODAY + dt.timedelta(days=400), _day()),
    )

    def agreement(n: int) -> AgreementFacts:
        owner = pick("agreement_owner", dataset.owner, org)
        return AgreementFacts(
            f"ag{n}",
            f"DSA-{n}",
            owner,
            draw(st.booleans()),
            pick("agreement_datasets", frozenset({dataset.id}), _ids(DATASET_IDS)),
            {o: orgs[o].name for o in sorted(pick("dataset_owners", {owner.id}, _ids(ORG_IDS)))},
            draw(st.booleans()),
            pick("recipients", frozenset({project.organisation.id}), _ids(ORG_IDS)),
            pick("purposes", frozenset({project.purpose}), _ids(PURPOSES)),
            pick("gateways", frozenset({project.legal_gateway}), _ids(GATEWAYS)),
            pick("agreement_tier", 4, st.integers(0, 4)),
            pick("valid_from", TODAY - dt.timedelta(days=400), _day()),
            pick("valid_to", TODAY + dt.timedelta(days=400), _day()),
            pick("agreement_revoked", False, st.booleans()),
        )

    agreements = tuple(agreement(n) for n in range(draw(st.integers(min_agreements, 5))))
    release = ReleaseFacts(
        "R",
        pick("requester", "u" if action == "submit_release" else "other", st.sampled_from(USER_IDS)),
        "the requester",
        project,
        pick("checkers", frozenset({"lead"}), _ids(USER_IDS)),
    )
    package = PackageFacts(
        "K",
        "six",
        "1.17.0",
        pick("package_requester", "u" if action == "request_package" else "other", st.sampled_from(USER_IDS)),
        "the package requester",
    )
    columns = draw(st.none() | st.lists(st.sampled_from(COLUMNS), unique=True).map(tuple))
    return PolicyRequest(
        action=action,
        user=user,
        today=TODAY,
        project=project if action in PROJECT_ACTIONS or kind in ("project", "release") else None,
        dataset=dataset if kind == "dataset" else None,
        columns=columns if action in DATASET_ACTIONS else None,
        release=release if kind == "release" else None,
        agreement=agreement(99) if kind == "agreement" else None,
        candidate_agreements=agreements if action in DATASET_ACTIONS else (),
        package=package if kind == "package" else None,
        usernames={u: f"user-{u}" for u in USER_IDS},
    )


#: Which entity of the store to leave out (None: none): evaluation errors, and `has` on a missing one.
DROPS = st.sampled_from((None, None, None, "drop")).flatmap(
    lambda d: st.none() if d is None else st.integers(0, 100)
)


def _entities(cedar_input: CedarInput, drop: int | None) -> list[Json]:
    entities = cedar_input.entities
    if drop is None:
        return entities
    return [e for n, e in enumerate(entities) if n != drop % len(entities)]


def _cedar(requests: list[Json], entities: list[Json]) -> list[cedarpy.AuthzResult]:
    return cedarpy.is_authorized_batch(
        requests, ENGINE.bundle.policy_set, ENGINE.parse_entities(entities), schema=ENGINE.bundle.schema
    )


_ERROR_POLICY = re.compile(r"error while evaluating policy `([^`]+)`")


def _error_ids(errors: Sequence[str], positional: bool = False) -> set[str]:
    """The policies that could not be evaluated, by @id (Cedar's errors name them by position)."""
    ids = set()
    for error in errors:
        match = _ERROR_POLICY.search(str(error))
        assert match, error
        name = match.group(1)
        ids.add(POSITIONAL[int(name.removeprefix("policy"))] if positional else name)
    return ids


def _requests(cedar_input: CedarInput) -> list[Json]:
    return [c.cedar_request for c in cedar_input.candidates]


def _compiled_decision(engine: PolicyEngine, request: PolicyRequest, cedar_input: CedarInput) -> Decision:
    """``engine.evaluate_compiled``'s decision (it may come with the per-candidate results)."""
    out: Any = engine.evaluate_compiled(request, cedar_input)
    decision: Decision = out[0] if isinstance(out, tuple) else out
    return decision


# 1. Every candidate: compiled = Cedar -------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(request=policy_requests(), drop=DROPS)
def test_every_candidate_is_decided_as_cedar_decides_it(request: PolicyRequest, drop: int | None) -> None:
    """On random facts each candidate's compiled allow, determining @ids and erroring policies are Cedar's."""
    cedar_input = build(request)
    entities = _entities(cedar_input, drop)
    requests = _requests(cedar_input)
    ours = COMPILED.authorize(requests, index(entities))
    theirs = _cedar(requests, entities)
    assert len(ours) == len(theirs) == len(requests)
    for mine, cedar in zip(ours, theirs, strict=True):
        assert mine.allowed == cedar.allowed
        assert set(mine.diagnostics.reasons) == set(ENGINE._ids(cedar))
        assert bool(mine.errors) == bool(cedar.diagnostics.errors)
        assert _error_ids(mine.errors) == _error_ids(cedar.diagnostics.errors, positional=True)


def test_the_random_facts_reach_allows_denies_and_errors() -> None:
    """The generator behind the differential tests yields allowed and denied candidates, and errors."""
    seen: set[str] = set()

    @settings(max_examples=300, deadline=None, database=None, derandomize=True)  # never flaky
    @given(request=policy_requests(action="read_dataset"), drop=DROPS)
    def probe(request: PolicyRequest, drop: int | None) -> None:
        cedar_input = build(request)
        entities = _entities(cedar_input, drop)
        for result in COMPILED.authorize(_requests(cedar_input), index(entities)):
            seen.add("allow" if result.allowed else "deny")
            if result.errors:
                seen.add("error")

    probe()
    assert seen == {"allow", "deny", "error"}


# 2. The candidate product evaluates like each candidate alone ------------------------------------------


@settings(max_examples=200, deadline=None)
@given(
    request=st.one_of(
        policy_requests(),
        policy_requests(min_accreditations=2, min_agreements=2, action="read_dataset"),
        policy_requests(min_accreditations=1, min_agreements=3, action="build_view"),
    ),
    drop=DROPS,
)
def test_authorize_product_equals_authorize_for_every_candidate(
    request: PolicyRequest, drop: int | None
) -> None:
    """authorize_product gives every candidate of accreditations x agreements authorize's answer."""
    cedar_input = build(request)
    assert cedar_input.shape is not None
    entities = _entities(cedar_input, drop)
    store = index(entities)
    requests = _requests(cedar_input)
    product = COMPILED.authorize_product(requests, cedar_input.shape, store)
    alone = COMPILED.authorize(requests, store)
    assert len(product) == len(alone) == cedar_input.shape[0] * cedar_input.shape[1]
    for split, whole in zip(product, alone, strict=True):
        assert split.allowed == whole.allowed
        assert sorted(split.diagnostics.reasons) == sorted(whole.diagnostics.reasons)
        assert sorted(split.permits) == sorted(whole.permits)
        assert sorted(split.forbids) == sorted(whole.forbids)
        assert sorted(split.errors) == sorted(whole.errors)


def test_dataset_actions_use_the_split_evaluation() -> None:
    """The product path splits the dataset actions: the test above does not compare authorize to itself."""
    for action in DATASET_ACTIONS:
        per_accreditation, per_agreement = COMPILED._split[action]
        assert {p.id for p in per_agreement} >= {"agreement.none", "agreement.revoked", "tier.agreement"}
        assert "accreditation.expired" in {p.id for p in per_accreditation} or action == "build_view"
        assert not {p.id for p in per_accreditation} & {p.id for p in per_agreement}


# 3. Whole decisions -------------------------------------------------------------------------------------

COMPILED_ENGINE = PolicyEngine(ENGINE.bundle, cache_size=0, verify=False)
CEDAR_ENGINE = PolicyEngine(ENGINE.bundle, cache_size=0, compiled=False)


@settings(max_examples=200, deadline=None)
@given(
    request=st.one_of(
        policy_requests(), policy_requests(min_accreditations=2, min_agreements=2, action="read_dataset")
    )
)
def test_compiled_decisions_equal_cedar_decisions(request: PolicyRequest) -> None:
    """A whole decision from the compiled policies has Cedar's allow, reasons, policy ids and agreement."""
    assert CEDAR_ENGINE.compiled is None
    cedar = CEDAR_ENGINE.evaluate(request)
    compiled = _compiled_decision(COMPILED_ENGINE, request, build(request))
    assert cedar.errors == compiled.errors == []
    assert (compiled.allowed, compiled.reasons, compiled.policy_ids, compiled.agreement) == (
        cedar.allowed,
        cedar.reasons,
        cedar.policy_ids,
        cedar.agreement,
    )
    served = COMPILED_ENGINE.evaluate_uncached(request)
    assert (served.allowed, served.reasons, served.policy_ids, served.agreement) == (
        cedar.allowed,
        cedar.reasons,
        cedar.policy_ids,
        cedar.agreement,
    )
    assert COMPILED_ENGINE.unconfirmed == 0


# 4. A compiled mistake never grants -------------------------------------------------------------------


def _world() -> World:
    return World.from_dict(json.loads(WORLD_JSON))


def _patch(engine: PolicyEngine, policy_id: str, answer: bool) -> None:
    """Make the compiled form of ``policy_id`` answer ``answer`` whatever the request (a compiler bug)."""
    assert engine.compiled is not None
    bundle = engine.compiled
    tables: list[list[Any]] = [*bundle._by_action.values(), *bundle._permits.values()]
    tables += [part for pair in bundle._split.values() for part in pair]
    swapped = 0
    for table in tables:
        for n, policy in enumerate(table):
            if policy.id == policy_id:
                table[n] = dataclasses.replace(policy, test=lambda *_: answer)
                swapped += 1
    assert policy_id in {p.id for p in bundle._by_action["read_dataset"]}
    assert swapped >= 2  # _by_action and _split of read_dataset at least


def _non_member_read() -> PolicyRequest:
    # carol is an accredited researcher, not a member of P1; everything else about the read holds.
    return _world().request("read_dataset", "carol", project="P1", dataset="hes", today="2025-06-01")


def _member_read() -> PolicyRequest:
    return _world().request("read_dataset", "alice", project="P1", dataset="hes", today="2025-06-01")


def test_a_compiled_allow_cedar_refuses_is_denied_counted_and_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A compiled forbid wrongly passing a non-member: the engine returns Cedar's deny, counts and logs it."""
    assert CEDAR_ENGINE.evaluate(_non_member_read()).policy_ids == ["project.not_member"]
    engine = PolicyEngine.load(POLICIES, cache_size=0, verify=False)
    _patch(engine, "project.not_member", False)
    request = _non_member_read()
    assert _compiled_decision(engine, request, build(request)).allowed  # the mistake is there
    with caplog.at_level(logging.ERROR, logger=engine_module.__name__):
        decision = engine.evaluate(request)
    assert not decision.allowed
    assert decision.policy_ids == ["project.not_member"]
    assert decision.reasons == CEDAR_ENGINE.evaluate(request).reasons
    assert engine.unconfirmed == 1
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and "compiled policies and Cedar disagree" in errors[0].getMessage()


def test_a_compiled_allow_cedar_refuses_raises_when_verifying() -> None:
    """With verify=True a compiled allow that Cedar refuses raises CompiledMismatch."""
    engine = PolicyEngine.load(POLICIES, cache_size=0, verify=True)
    _patch(engine, "project.not_member", False)
    with pytest.raises(CompiledMismatch, match="compiled allow"):
        engine.evaluate(_non_member_read())
    assert engine.unconfirmed == 1


def test_a_compiled_deny_cedar_would_allow_raises_when_verifying() -> None:
    """A compiled forbid that wrongly fires on an allowed read raises with verify=True (refuses without)."""
    assert CEDAR_ENGINE.evaluate(_member_read()).allowed
    verifying = PolicyEngine.load(POLICIES, cache_size=0, verify=True)
    _patch(verifying, "account.disabled", True)
    with pytest.raises(CompiledMismatch, match="compiled deny"):
        verifying.evaluate(_member_read())
    # Without verifying, the wrong deny is served: the one direction a compiled mistake can take.
    trusting = PolicyEngine.load(POLICIES, cache_size=0, verify=False)
    _patch(trusting, "account.disabled", True)
    decision = trusting.evaluate(_member_read())
    assert not decision.allowed and decision.policy_ids == ["account.disabled"]
    assert trusting.unconfirmed == 0


# 5. Unsupported Cedar: Cedar decides everything ------------------------------------------------------

UNSUPPORTED = {
    "like": 'when { resource.name like "h*s" }',
    "arithmetic": "when { resource.tier + 1 > context.project.max_tier }",
}


@pytest.mark.parametrize("condition", UNSUPPORTED.values(), ids=UNSUPPORTED.keys())
def test_a_bundle_the_compiler_cannot_handle_is_decided_by_cedar(
    condition: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A valid policy using `like` or `+` leaves the engine uncompiled, with a warning, and deciding right."""
    shutil.copytree(POLICIES / "cedar", tmp_path / "cedar")
    (tmp_path / "cedar" / "80_extra.cedar").write_text(
        '@id("extra.unsupported")\n'
        '@reason("dataset {dataset} is refused by the extra policy")\n'
        f'forbid (principal, action in Action::"dataset_use", resource)\n{condition};\n'
    )
    with caplog.at_level(logging.WARNING, logger=engine_module.__name__):
        engine = PolicyEngine.load(tmp_path, cache_size=0, verify=True)
    assert engine.compiled is None
    assert "extra.unsupported" in engine.bundle.policies
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert any("policies not compiled" in r.getMessage() for r in warnings)

    hes = _member_read()  # tier 3 in a tier-3 project, named "hes": the extra policy fires
    assert CEDAR_ENGINE.evaluate(hes).allowed
    denied = engine.evaluate(hes)
    assert not denied.allowed
    assert denied.policy_ids == ["extra.unsupported"]
    assert denied.reasons == ["dataset hes is refused by the extra policy"]
    census = _world().request("read_dataset", "alice", project="P1", dataset="census", today="2025-06-01")
    allowed = engine.evaluate(census)  # tier 2, "census": it does not
    expected = CEDAR_ENGINE.evaluate(census)
    assert allowed.allowed and expected.allowed
    assert (allowed.reasons, allowed.policy_ids, allowed.agreement) == (
        expected.reasons,
        expected.policy_ids,
        expected.agreement,
    )


# 6. Code generation treats policy text as data ---------------------------------------------------------


def _evil(marker: Path) -> str:
    return f"x\") or __import__('os').system('touch {marker}') or (\""


def _capture_sources(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    sources: list[str] = []

    def spy(source: str, *args: Any, **kwargs: Any) -> Any:
        sources.append(source)
        return builtins.compile(source, *args, **kwargs)

    monkeypatch.setattr(compiled_module, "compile", spy, raising=False)
    return sources


def _only_operators_and_names(source: str) -> None:
    """The generated source holds no literal text: only names of helpers, variables and constants."""
    allowed = {"P", "R", "C", "S", "H", "x", "all", "any", *compiled_module._RUNTIME}
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Constant):
            # The only text the generator writes itself: the keys of an entity reference.
            assert not isinstance(node.value, str | bytes) or node.value in ("type", "id"), node.value
        if isinstance(node, ast.Name):
            assert node.id in allowed or re.fullmatch(r"K\d+", node.id), node.id


def test_policy_text_never_becomes_code(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """String literals, attribute names, entity ids and quotes of a Cedar policy compile to constants only."""
    marker = tmp_path / "pwned"
    evil = _evil(marker)
    text = (
        '@id("inject")\n'
        '@reason("a \\"quoted\\" reason, \'single\' too, and \\\\ a backslash {user}")\n'
        f"permit (principal == Thing::{json.dumps(evil)}, action, resource)\n"
        f"when {{ principal.name == {json.dumps(evil)} && !(context has {json.dumps(evil)}) &&"
        f" !(principal has {json.dumps(evil)}) }};"
    )
    est = json.loads(cedarpy.policies_to_json_str(text))["staticPolicies"]["policy0"]
    assert est["annotations"]["reason"].startswith('a "quoted" reason')
    sources = _capture_sources(monkeypatch)
    policy = compile_policy(est["annotations"]["id"], est)
    (source,) = sources
    for fragment in (evil, "__import__", "touch", "pwned", "quoted"):
        assert fragment not in source
    _only_operators_and_names(source)

    for name, expected in ((evil, True), ("someone else", False)):
        thing = {"type": "Thing", "id": evil}
        entities = [_thing(evil, name=name)]
        request = {"principal": thing, "action": _action(), "resource": thing, "context": _context()}
        mine = CompiledBundle._run([policy], request, index(entities))
        cedar = _cedar_small(text, [request], entities)[0]
        assert mine.allowed == cedar.allowed == expected
        assert not mine.errors and not cedar.diagnostics.errors
    assert not marker.exists()


def test_a_hand_written_est_is_compiled_as_data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An EST whose id, entity types, attribute names and values carry Python compiles to constants only."""
    marker = tmp_path / "pwned"
    evil = _evil(marker)
    policy_id = f"x'); import os; os.system('touch {marker}') #"
    est = {
        "effect": "forbid",
        "principal": {"op": "==", "entity": {"type": evil, "id": evil}},
        "action": {"op": "All"},
        "resource": {"op": "is", "entity_type": evil},
        "conditions": [
            {
                "kind": "when",
                "body": {
                    "==": {
                        "left": {".": {"left": {"Var": "principal"}, "attr": evil}},
                        "right": {"Value": evil},
                    }
                },
            },
            {"kind": "unless", "body": {"has": {"left": {"Var": "context"}, "attr": evil}}},
        ],
    }
    sources = _capture_sources(monkeypatch)
    policy = compile_policy(policy_id, est)
    (source,) = sources
    assert evil not in source and "touch" not in source and "import" not in source
    _only_operators_and_names(source)
    who = {"type": evil, "id": evil}
    store = index([{"uid": who, "attrs": {evil: evil}, "parents": []}])
    assert policy.test(who, who, {}, store.attrs, store.parents) is True
    assert policy.test(who, who, {evil: 1}, store.attrs, store.parents) is False
    assert not marker.exists()


# 7. Evaluation errors fail closed, with Cedar's words -------------------------------------------------


def test_a_missing_entity_is_an_error_and_cedar_decides(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without the Project entity the compiled result errs; the engine serves Cedar's deny and its errors."""
    request = _member_read()
    whole = build(request)
    project = {"type": "Project", "id": "P1"}
    broken = dataclasses.replace(
        whole,
        entities=[e for e in whole.entities if e["uid"] != project],
        own=[e for e in whole.own if e["uid"] != project],
    )
    assert len(broken.entities) == len(whole.entities) - 1
    results = COMPILED.authorize(_requests(broken), index(broken.entities))
    assert all(r.errors for r in results)
    assert "project.not_member" in _error_ids(results[0].errors)

    monkeypatch.setattr(engine_module, "build", lambda _request: broken)
    for verify in (False, True):
        engine = PolicyEngine.load(POLICIES, cache_size=0, verify=verify)
        assert _compiled_decision(engine, request, broken).errors  # compiled: errors, so Cedar decides
        decision = engine.evaluate(request)
        assert not decision.allowed
        assert decision.errors
        assert all('entity `Project::"P1"` does not exist' in e for e in decision.errors)
        assert not any("KeyError" in e for e in decision.errors)  # Cedar's text, not the compiled one's
        assert "could not be evaluated completely" in decision.reasons[-1]
        assert engine.unconfirmed == 0


# 8. Cedar semantics on small policies -------------------------------------------------------------------

SMALL_SCHEMA_TEXT = """
entity Group in [Group];
entity Thing in [Group] = { tags: Set<String>, n: Long, day: datetime, name: String, other?: Thing };
action check appliesTo {
  principal: Thing, resource: Thing,
  context: { today: datetime, early: datetime, late: datetime, xs: Set<String>, ys: Set<String> },
};
"""
SMALL_SCHEMA = cedarpy.Schema.from_str(SMALL_SCHEMA_TEXT)


def _action() -> Json:
    return {"type": "Action", "id": "check"}


def _context() -> Json:
    return {
        "today": "2025-06-01",
        "early": "2024-12-31",
        "late": "2025-01-01",
        "xs": ["x", "y"],
        "ys": ["y", "x", "x"],
    }


def _thing(id_: str, *, name: str = "a", tags: Sequence[str] = (), n: int = 0, day: str = "2025-06-01",
           other: str | None = None, parents: Sequence[str] = ()) -> Json:  # fmt: skip
    attrs: Json = {"tags": list(tags), "n": n, "day": day, "name": name}
    if other is not None:
        attrs["other"] = {"type": "Thing", "id": other}
    return {
        "uid": {"type": "Thing", "id": id_},
        "attrs": attrs,
        "parents": [{"type": "Group", "id": p} for p in parents],
    }


def _group(id_: str, parents: Sequence[str] = ()) -> Json:
    return {
        "uid": {"type": "Group", "id": id_},
        "attrs": {},
        "parents": [{"type": "Group", "id": p} for p in parents],
    }


#: principal Thing::"a" in Group g1 < g2 < g3 (transitively), its `other` is a Thing not in the store;
#: resource Thing::"b" in no group, with no tags.
SMALL_ENTITIES = [
    _thing("a", tags=["x", "y"], n=3, day="2025-06-01", other="ghost", parents=["g1"]),
    _thing("b", name="b", n=10, day="2025-05-31"),
    _group("g1", ["g2"]),
    _group("g2", ["g3"]),
    _group("g3"),
]
SMALL_REQUEST = {
    "principal": {"type": "Thing", "id": "a"},
    "action": _action(),
    "resource": {"type": "Thing", "id": "b"},
    "context": _context(),
}


def _cedar_small(text: str, requests: list[Json], entities: list[Json]) -> list[cedarpy.AuthzResult]:
    handle = cedarpy.Entities.from_json_str(json.dumps(entities), SMALL_SCHEMA)
    return cedarpy.is_authorized_batch(requests, text, handle, schema=SMALL_SCHEMA)


def _both(text: str) -> tuple[Result, cedarpy.AuthzResult]:
    """The compiled and Cedar's answer for SMALL_REQUEST on SMALL_ENTITIES, checked to agree."""
    bundle = CompiledBundle.from_text(text, {}, {"check"})
    (mine,) = bundle.authorize([SMALL_REQUEST], index(SMALL_ENTITIES))
    (cedar,) = _cedar_small(text, [SMALL_REQUEST], SMALL_ENTITIES)
    assert (mine.allowed, set(mine.diagnostics.reasons), bool(mine.errors)) == (
        cedar.allowed,
        set(ENGINE._ids(cedar)),
        bool(cedar.diagnostics.errors),
    ), (mine, cedar.diagnostics.reasons, cedar.diagnostics.errors)
    return mine, cedar


#: A condition -> what Cedar makes of it: True, False or "error".
WHEN: dict[str, bool | str] = {
    # set equality ignores order (and duplicates)
    'principal.tags == ["y", "x"]': True,
    'principal.tags == ["x", "y", "x"]': True,
    "context.xs == context.ys": True,
    'principal.tags == ["x"]': False,
    'principal.tags != ["y", "x"]': False,
    "resource.tags == []": True,
    # `has` on an entity not in the store is false; `.` on it is an error
    "principal.other has name": False,
    'Thing::"ghost" has name': False,
    "principal has other": True,
    "resource has other": False,
    'principal.other.name == "x"': "error",
    'Thing::"ghost".n > 0': "error",
    "resource.other == principal": "error",
    # errors are short-circuited as in Cedar
    'true || principal.other.name == "x"': True,
    'false && principal.other.name == "x"': False,
    'principal has other && principal.other has name && principal.other.name == "x"': False,
    # `in` follows parents transitively
    'principal in Group::"g1"': True,
    'principal in Group::"g3"': True,
    'principal in [Group::"nope", Group::"g2"]': True,
    'principal in Group::"nope"': False,
    'resource in Group::"g1"': False,
    "principal in principal": True,
    'Thing::"ghost" in Group::"g1"': False,
    'Group::"g1" in Group::"g3"': True,
    'Group::"g3" in Group::"g1"': False,
    # if-then-else evaluates only the branch taken
    "if principal.n > 2 then true else false": True,
    "if principal.n > 5 then true else false": False,
    'if resource.n > 20 then principal.other.name == "x" else true': True,
    'if resource.n > 5 then principal.other.name == "x" else true': "error",
    "(if principal has other then principal.n else resource.n) == 3": True,
    # containsAny / containsAll / isEmpty / contains
    'principal.tags.containsAny(["z", "y"])': True,
    'principal.tags.containsAny(["z"])': False,
    "principal.tags.containsAny([])": False,
    'principal.tags.containsAll(["y"])': True,
    'principal.tags.containsAll(["y", "x", "x"])': True,
    'principal.tags.containsAll(["y", "z"])': False,
    "principal.tags.containsAll([])": True,
    "principal.tags.containsAll(context.ys)": True,
    "resource.tags.containsAll(principal.tags)": False,
    'principal.tags.contains("x")': True,
    'resource.tags.contains("x")': False,
    "resource.tags.isEmpty()": True,
    "principal.tags.isEmpty()": False,
    'Thing::"ghost".tags.isEmpty()': "error",
    'Thing::"ghost".tags.contains("x")': "error",
    'Thing::"ghost".tags.containsAny(["x"])': "error",
    'Thing::"ghost".tags.containsAll(["x"])': "error",
    # the receiver is evaluated even when the argument is empty: an error in it is an error
    'Thing::"ghost".tags.containsAny([])': "error",
    'Thing::"ghost".tags.containsAll([])': "error",
    # dates (ISO day text, datetimes to Cedar) order by day
    "resource.day < principal.day": True,
    "principal.day < resource.day": False,
    "principal.day <= context.today": True,
    "principal.day < context.today": False,
    "principal.day >= context.today": True,
    "principal.day > context.today": False,
    "principal.day == context.today": True,
    "context.early < context.late": True,
    "context.late <= context.early": False,
    # Longs
    "resource.n > principal.n": True,
    "resource.n <= principal.n": False,
    "principal.n == 3": True,
    # entities
    'principal == Thing::"a"': True,
    "principal == resource": False,
    'principal.other == Thing::"ghost"': True,
    "principal is Thing && resource is Thing": True,
    "principal is Group": False,
}


@pytest.mark.parametrize(("condition", "expected"), WHEN.items(), ids=list(WHEN))
def test_a_condition_means_what_it_means_to_cedar(condition: str, expected: bool | str) -> None:
    """Each condition is satisfied, unsatisfied or an error exactly as Cedar evaluates it."""
    mine, cedar = _both(f'@id("p")\npermit (principal, action, resource) when {{ {condition} }};')
    if expected == "error":
        assert mine.errors and cedar.diagnostics.errors
        assert not mine.allowed and not cedar.allowed
    else:
        assert not mine.errors and not cedar.diagnostics.errors
        assert mine.allowed is cedar.allowed is expected


UNLESS: dict[str, bool | str] = {
    'principal.tags.contains("x")': True,
    'principal.tags.contains("z")': False,
    "principal.other has name": False,
    'principal.other.name == "x"': "error",
}


@pytest.mark.parametrize(("condition", "holds"), UNLESS.items(), ids=list(UNLESS))
def test_unless_forbids_when_the_condition_fails(condition: str, holds: bool | str) -> None:
    """`forbid ... unless {c}` denies exactly when c is false; an error skips the forbid, as in Cedar."""
    text = (
        '@id("p")\npermit (principal, action, resource);\n'
        f'@id("f")\nforbid (principal, action, resource) unless {{ {condition} }};'
    )
    mine, cedar = _both(text)
    if holds == "error":
        assert mine.allowed and cedar.allowed  # the erroring forbid is skipped (the engine fails closed)
        assert mine.errors and cedar.diagnostics.errors
    elif holds:
        assert mine.allowed and mine.diagnostics.reasons == ["p"]
    else:
        assert not mine.allowed and mine.diagnostics.reasons == ["f"]


SCOPES: dict[str, bool] = {
    'principal in Group::"g3", action, resource': True,
    'principal in Group::"nope", action, resource': False,
    'principal == Thing::"a", action == Action::"check", resource == Thing::"b"': True,
    'principal, action, resource == Thing::"a"': False,
    "principal is Thing, action, resource is Thing": True,
    'principal is Thing in Group::"g2", action, resource': True,
    'principal, action, resource is Thing in Group::"g1"': False,
    'principal, action in [Action::"check"], resource': True,
}


@pytest.mark.parametrize(("scope", "expected"), SCOPES.items(), ids=list(SCOPES))
def test_a_scope_matches_as_in_cedar(scope: str, expected: bool) -> None:
    """Principal, action and resource scopes (==, in, is, is-in) match exactly the requests Cedar's do."""
    mine, cedar = _both(f'@id("p")\npermit ({scope});')
    assert mine.allowed is cedar.allowed is expected


def test_policies_of_other_actions_do_not_apply() -> None:
    """A policy scoped to another action is not evaluated for this one (policies are sliced by action)."""
    bundle = CompiledBundle.from_text(
        '@id("p") permit (principal, action == Action::"other", resource);', {}, {"check", "other"}
    )
    (result,) = bundle.authorize([SMALL_REQUEST], index(SMALL_ENTITIES))
    assert not result.allowed and result.permits == ()
