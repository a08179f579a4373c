"""Fast paths of the engine give exactly the decisions of a full Cedar evaluation.

The decision cache returns what Cedar decided for the very same facts; the early stop on the first
allowed candidate and the remembered "does any permit apply" answer save Cedar calls, never change
an answer.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import shutil
from pathlib import Path
from typing import Any

import cedarpy
import pytest

from tre_platform.clock import clock
from tre_platform.policy import PolicyEngine, PolicyRequest, World
from tre_platform.policy.cases import load_cases
from tre_platform.policy.entities import build
from tre_platform.settings import REPO_ROOT

CASES = load_cases(REPO_ROOT / "policies")
NOW = dt.datetime(2025, 6, 1, 12, tzinfo=dt.UTC)
READ = {"action": "read_dataset", "user": "alice", "project": "P1", "dataset": "hes", "today": "2025-06-01"}


def _requests() -> list[PolicyRequest]:
    return [World.from_dict(case.world).request(**case.request) for case in CASES]


@pytest.fixture
def fresh(policy_engine: PolicyEngine) -> PolicyEngine:
    """An engine of the shipped bundle with an empty cache of its own."""
    return PolicyEngine(policy_engine.bundle, cache_size=1_000)


def test_a_cached_decision_is_the_one_cedar_makes_for_the_same_facts(fresh: PolicyEngine) -> None:
    uncached = PolicyEngine(fresh.bundle, cache_size=0)
    requests = _requests()
    with clock.frozen(NOW):
        cold = [uncached.evaluate(r) for r in requests]
        first = [fresh.evaluate(r) for r in requests]
        assert fresh.cache is not None
        misses, hits = fresh.cache.misses, fresh.cache.hits
        again = [fresh.evaluate(r) for r in requests]
    assert fresh.cache.misses == misses  # every request of the second round was a hit
    assert fresh.cache.hits == hits + len(requests)
    assert first == cold
    assert again == cold


def test_a_hit_is_stamped_with_the_time_it_was_asked(fresh: PolicyEngine, world_data: dict[str, Any]) -> None:
    request = World.from_dict(world_data).request(**READ)
    with clock.frozen(NOW):
        first = fresh.evaluate(request)
    with clock.frozen(NOW + dt.timedelta(minutes=5)):
        later = fresh.evaluate(request)
    assert later.evaluated_at == NOW + dt.timedelta(minutes=5)
    assert dataclasses.replace(later, evaluated_at=first.evaluated_at) == first
    later.reasons.append("edited by a caller")
    with clock.frozen(NOW):
        assert fresh.evaluate(request) == first  # the cache kept its own copy


@pytest.mark.parametrize(
    "change",
    ["next_day", "accreditation_revoked", "agreement_revoked", "member_removed"],
)
def test_any_changed_fact_is_decided_again(
    fresh: PolicyEngine, world_data: dict[str, Any], change: str
) -> None:
    before = World.from_dict(world_data).request(**READ)
    if change == "next_day":
        after = World.from_dict(world_data).request(**{**READ, "today": "2027-01-02"})
    else:
        if change == "accreditation_revoked":
            world_data["users"]["alice"]["accreditations"][0]["revoked"] = True
        elif change == "agreement_revoked":
            world_data["agreements"]["DSA-7"]["revoked"] = True
        else:
            world_data["projects"]["P1"]["members"].remove("alice")
            world_data["projects"]["P1"]["lead"] = "bob"
        after = World.from_dict(world_data).request(**READ)
    with clock.frozen(NOW):
        assert fresh.evaluate(before).allowed
        decision = fresh.evaluate(after)
    assert not decision.allowed
    assert fresh.cache is not None and fresh.cache.hits == 0


def test_the_cache_keeps_only_the_latest_decisions(policy_engine: PolicyEngine) -> None:
    small = PolicyEngine(policy_engine.bundle, cache_size=2)
    requests = _requests()[:3]
    assert small.cache is not None
    with clock.frozen(NOW):
        for request in requests:
            small.evaluate(request)
        assert len(small.cache) == 2
        small.evaluate(requests[2])  # the latest is still there
        assert small.cache.hits == 1
        small.evaluate(requests[0])  # the oldest was dropped
        assert small.cache.hits == 1


def test_cache_size_zero_evaluates_every_time(policy_engine: PolicyEngine) -> None:
    assert PolicyEngine(policy_engine.bundle, cache_size=0).cache is None


class _CountingCedar:
    """Counts the requests handed to the real ``cedarpy.is_authorized_batch`` (and passes them on)."""

    def __init__(self) -> None:
        self.requests = 0
        self._real = cedarpy.is_authorized_batch

    def __call__(self, requests: list[Any], *args: Any, **kwargs: Any) -> list[cedarpy.AuthzResult]:
        self.requests += len(requests)
        return self._real(requests, *args, **kwargs)


def test_cedar_is_asked_about_later_candidates_only_when_the_first_is_not_allowed(
    policy_engine: PolicyEngine, world_data: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    # alice holds two accreditations; the later-expiring one comes first and allows on its own.
    world_data["users"]["alice"]["accreditations"].append(
        {"scheme": "DEA", "granted_on": "2020-01-01", "expires_on": "2021-01-01"}
    )
    request = World.from_dict(world_data).request(**READ)
    uncached = PolicyEngine(policy_engine.bundle, cache_size=0)
    counter = _CountingCedar()
    monkeypatch.setattr(cedarpy, "is_authorized_batch", counter)
    with clock.frozen(NOW):
        decision = uncached.evaluate(request)
        assert decision.allowed
        assert counter.requests == 1
        full = uncached.evaluate_many([request])[0]  # every candidate in one batch
    assert full == decision


def test_whether_a_permit_applies_is_asked_once_per_roles_and_action(
    policy_engine: PolicyEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    uncached = PolicyEngine(policy_engine.bundle, cache_size=0)
    denies = [r for r, c in zip(_requests(), CASES, strict=True) if c.expect == "deny"]
    with clock.frozen(NOW):
        for request in denies:
            uncached.evaluate(request)
        counter = _CountingCedar()
        monkeypatch.setattr(cedarpy, "is_authorized_batch", counter)
        again = [uncached.evaluate(request) for request in denies]
        # The second round asks Cedar only about the candidates: every permit answer is remembered.
        assert counter.requests == sum(_candidates(r) for r in denies)
        monkeypatch.undo()
        assert again == [PolicyEngine(policy_engine.bundle, cache_size=0).evaluate(r) for r in denies]


def _candidates(request: PolicyRequest) -> int:
    return len(build(request).candidates)


@pytest.mark.parametrize(
    "permit",
    [
        'permit (principal == User::"alice", action == Action::"read_dataset", resource);',
        'permit (principal in Role::"researcher", action, resource == Dataset::"hes");',
        'permit (principal, action == Action::"read_dataset", resource) when { principal.active };',
    ],
)
def test_a_permit_not_decided_by_roles_alone_is_always_asked(tmp_path: Path, permit: str) -> None:
    shutil.copytree(REPO_ROOT / "policies" / "cedar", tmp_path / "cedar")
    (tmp_path / "cedar" / "05_extra_permit.cedar").write_text(
        f'@id("permit.test.extra")\n@reason("a test permit")\n{permit}\n'
    )
    engine = PolicyEngine.load(tmp_path)
    assert engine._permit_memo is None


# The parsed entities of a dataset ----------------------------------------------------------------


def _store(entities: cedarpy.Entities) -> list[str]:
    """An entity store as sorted JSON lines, to compare two stores whatever their order (of entities, and
    of each entity's parents: a set, which Cedar renders in no fixed order)."""
    entries = json.loads(str(entities))
    for entity in entries:
        entity["parents"] = sorted(entity["parents"], key=lambda p: (p["type"], p["id"]))
    return sorted(json.dumps(entity, sort_keys=True) for entity in entries)


def test_a_store_on_a_cached_dataset_part_is_the_whole_store_parsed(policy_engine: PolicyEngine) -> None:
    cached = PolicyEngine(policy_engine.bundle, cache_size=0)
    plain = PolicyEngine(policy_engine.bundle, cache_size=0, entity_cache_size=0)
    requests = _requests()
    with clock.frozen(NOW):
        for request in requests * 2:  # the second round builds on cached parts
            cedar_input = build(request)
            assert _store(cached.entity_store(cedar_input)) == _store(plain.entity_store(cedar_input))
            assert cached.evaluate(request) == plain.evaluate(request)
    assert cached.entity_cache is not None and cached.entity_cache.hits >= len(requests)


def _read(world_data: dict[str, Any], **overrides: Any) -> PolicyRequest:
    return World.from_dict(world_data).request(**{**READ, **overrides})


def test_requests_about_one_dataset_share_its_parsed_part(
    policy_engine: PolicyEngine, world_data: dict[str, Any]
) -> None:
    engine = PolicyEngine(policy_engine.bundle, cache_size=0)
    assert engine.entity_cache is not None
    with clock.frozen(NOW):
        assert engine.evaluate(_read(world_data)).allowed
        assert engine.entity_cache.misses == 1
        engine.evaluate(_read(world_data, user="bob"))  # another user, the same dataset
        engine.evaluate(_read(world_data, today="2025-06-02"))  # another day
    assert (engine.entity_cache.hits, engine.entity_cache.misses, len(engine.entity_cache)) == (2, 1, 1)


@pytest.mark.parametrize(
    ("edit", "policy_id"),
    [
        (lambda dsa: dsa.update(revoked=True), "agreement.revoked"),
        (lambda dsa: dsa.update(purposes=["service_delivery"]), "agreement.purpose"),
        (lambda dsa: dsa.update(max_tier=1), "tier.agreement"),
    ],
    ids=["revoked", "purpose_removed", "tier_lowered"],
)
def test_an_edited_agreement_is_parsed_again_and_flips_the_next_decision(
    policy_engine: PolicyEngine, world_data: dict[str, Any], edit: Any, policy_id: str
) -> None:
    engine = PolicyEngine(policy_engine.bundle, cache_size=0)
    assert engine.entity_cache is not None
    with clock.frozen(NOW):
        assert engine.evaluate(_read(world_data)).allowed
        edit(world_data["agreements"]["DSA-7"])
        decision = engine.evaluate(_read(world_data))
    assert not decision.allowed
    assert policy_id in decision.policy_ids
    assert engine.entity_cache.misses == 2  # the edited agreement is another store, never the stale one


def test_an_agreement_expires_on_its_cached_part_with_no_job_running(
    policy_engine: PolicyEngine, world_data: dict[str, Any]
) -> None:
    engine = PolicyEngine(policy_engine.bundle, cache_size=0)
    assert engine.entity_cache is not None
    with clock.frozen(NOW):
        assert engine.evaluate(_read(world_data, today="2026-12-31")).allowed  # DSA-7's last day
        decision = engine.evaluate(_read(world_data, today="2027-01-01"))
    assert not decision.allowed
    assert "agreement.expired" in decision.policy_ids
    assert (engine.entity_cache.hits, engine.entity_cache.misses) == (1, 1)  # same part, new day
