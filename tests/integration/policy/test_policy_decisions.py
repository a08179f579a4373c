"""Decisions against the database: time, the audit log, the check/can pair and the one entry point."""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import pytest
from policy_db_world import DbWorld
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from tre_platform.actor import Actor
from tre_platform.api.audit.models import AuditEvent
from tre_platform.api.audit.service import verify
from tre_platform.api.projects.models import Project
from tre_platform.api.users.models import User
from tre_platform.clock import clock
from tre_platform.errors import PolicyDenied
from tre_platform.policy import PolicyBundleError, PolicyEngine, authorize, get_engine, reload_engine, require
from tre_platform.settings import get_settings


def _at(day: str) -> dt.datetime:
    return dt.datetime.fromisoformat(f"{day}T09:00:00+00:00")


def test_moving_the_clock_flips_decisions_without_any_job(
    session: Session, world: DbWorld, policy_engine: PolicyEngine
) -> None:
    alice, p1, hes = world.users["alice"], world.projects["P1"], world.datasets["hes"]
    with clock.frozen(_at("2026-12-31")):  # the last day of the project and of DSA-7
        assert policy_engine.decide(session, alice, "read_dataset", project=p1, dataset=hes).allowed
    with clock.frozen(_at("2027-01-01")):
        decision = policy_engine.decide(session, alice, "read_dataset", project=p1, dataset=hes)
        assert not decision.allowed
        assert decision.today == dt.date(2027, 1, 1)
        assert set(decision.policy_ids) == {"project.ended", "agreement.expired"}
        assert "project P1 ended on 2026-12-31" in decision.reasons
    with clock.frozen(_at("2027-01-02")):
        decision = policy_engine.decide(session, alice, "read_dataset", project=p1, dataset=hes)
        assert "accreditation.expired" in decision.policy_ids
        assert any(
            "DEA-A1 (DEA accredited researcher) of alice expired on 2027-01-01" in r for r in decision.reasons
        )
    session.commit()


def test_revoking_or_editing_an_agreement_flips_the_next_decision_despite_the_caches(
    session: Session, world: DbWorld, policy_engine: PolicyEngine
) -> None:
    # Both caches on, as in a running server: the decision cache and the parsed dataset entities.
    engine = PolicyEngine(policy_engine.bundle)
    assert engine.entity_cache is not None
    alice, p1, hes, dsa7 = (
        world.users["alice"],
        world.projects["P1"],
        world.datasets["hes"],
        world.agreements["DSA-7"],
    )

    def read() -> list[str] | None:
        decision = engine.decide(session, alice, "read_dataset", project=p1, dataset=hes, audit=False)
        return None if decision.allowed else decision.policy_ids

    with clock.frozen(_at("2026-12-31")):
        assert read() is None
        dsa7.revoked_at = _at("2026-12-31")
        session.commit()
        assert read() == ["agreement.revoked"]
        dsa7.revoked_at = None
        purposes, dsa7.purposes = dsa7.purposes, ["service_delivery"]
        session.commit()
        assert read() == ["agreement.purpose"]
        dsa7.purposes = purposes
        session.commit()
        assert read() is None  # the agreement as it was: that decision is in the decision cache still
    with clock.frozen(_at("2027-01-01")):  # expiry needs no edit: the next day's decision differs
        assert set(read() or []) == {"project.ended", "agreement.expired"}
    # Each version of the agreement was parsed once; the next day's decision reused the first's part.
    assert engine.entity_cache.misses == 3
    assert engine.entity_cache.hits == 1


def test_every_decision_is_audited_with_its_reasons_and_bundle(
    session: Session, world: DbWorld, policy_engine: PolicyEngine
) -> None:
    alice, carol, p1, hes = (
        world.users["alice"],
        world.users["carol"],
        world.projects["P1"],
        world.datasets["hes"],
    )
    allowed = policy_engine.decide(session, alice, "read_dataset", project=p1, dataset=hes, columns=["age"])
    session.commit()
    denied = policy_engine.decide(session, carol, "read_dataset", project=p1, dataset=hes)
    session.rollback()  # the caller gives up: the deny was written in its own transaction and stays
    events = session.execute(select(AuditEvent).order_by(AuditEvent.seq)).scalars().all()
    by_actor = {e.actor: e for e in events}
    allow_event, deny_event = by_actor["alice"], by_actor["carol"]
    assert (allow_event.action, allow_event.decision) == ("policy.read_dataset", "allow")
    assert (allow_event.target_type, allow_event.target_id) == ("Dataset", hes.id)
    assert allow_event.reasons == allowed.reasons
    assert allow_event.details["bundle_hash"] == policy_engine.bundle_hash
    assert allow_event.details["policy_ids"] == ["permit.researcher.project_data"]
    assert allow_event.details["agreement"] == "DSA-7"
    assert allow_event.details["columns"] == ["age"]
    assert deny_event.decision == "deny"
    assert deny_event.reasons == denied.reasons == ["carol is not a member of project P1"]
    assert deny_event.details["policy_ids"] == ["project.not_member"]
    assert verify(session).ok


def test_an_allow_is_part_of_the_callers_transaction(
    session: Session, world: DbWorld, policy_engine: PolicyEngine
) -> None:
    policy_engine.decide(session, world.users["alice"], "spawn_workspace", project=world.projects["P1"])
    session.rollback()
    assert session.execute(select(AuditEvent)).first() is None


def test_a_deny_after_writes_joins_the_callers_transaction_instead_of_waiting_on_it(
    session: Session, world: DbWorld, policy_engine: PolicyEngine
) -> None:
    p1 = world.projects["P1"]
    assert policy_engine.decide(session, world.users["alice"], "spawn_workspace", project=p1).allowed
    assert not policy_engine.decide(session, world.users["carol"], "spawn_workspace", project=p1).allowed
    session.commit()
    decisions = session.execute(select(AuditEvent.decision).order_by(AuditEvent.seq)).scalars().all()
    assert decisions == ["allow", "deny"]


def test_a_deny_survives_the_callers_rollback_even_after_writes(
    session: Session, world: DbWorld, policy_engine: PolicyEngine
) -> None:
    p1 = world.projects["P1"]
    session.commit()
    policy_engine.decide(session, world.users["alice"], "spawn_workspace", project=p1)  # writes: an allow
    denied = policy_engine.decide(session, world.users["carol"], "spawn_workspace", project=p1)
    session.rollback()  # the caller gives up after writing: the allow goes, the deny must stay
    events = session.execute(select(AuditEvent).order_by(AuditEvent.seq)).scalars().all()
    assert [(e.actor, e.decision) for e in events] == [("carol", "deny")]
    assert events[0].reasons == denied.reasons
    assert verify(session).ok


def test_a_deny_in_a_session_closed_without_commit_is_kept(
    engine: Engine, world: DbWorld, session: Session, policy_engine: PolicyEngine
) -> None:
    session.commit()
    with Session(engine) as caller:
        p1 = caller.get(Project, world.projects["P1"].id)
        policy_engine.decide(caller, caller.get(User, world.users["alice"].id), "spawn_workspace", project=p1)
        policy_engine.decide(caller, caller.get(User, world.users["carol"].id), "spawn_workspace", project=p1)
    decisions = session.execute(select(AuditEvent.actor, AuditEvent.decision)).all()
    assert [tuple(d) for d in decisions] == [("carol", "deny")]


def test_audit_can_be_skipped_for_previews(
    session: Session, world: DbWorld, policy_engine: PolicyEngine
) -> None:
    policy_engine.decide(
        session, world.users["carol"], "spawn_workspace", project=world.projects["P1"], audit=False
    )
    session.commit()
    assert session.execute(select(AuditEvent)).first() is None


def test_check_raises_with_the_reasons_and_can_answers(
    session: Session, world: DbWorld, policy_engine: PolicyEngine
) -> None:
    p1 = world.projects["P1"]
    assert policy_engine.can(session, world.users["bob"], "spawn_workspace", project=p1)
    assert not policy_engine.can(session, world.users["carol"], "spawn_workspace", project=p1)
    with pytest.raises(PolicyDenied) as raised:
        policy_engine.check(session, world.users["carol"], "spawn_workspace", project=p1)
    assert raised.value.reasons == ["carol is not a member of project P1"]
    assert raised.value.status_code == 403
    assert "carol may not spawn_workspace P1" in raised.value.message
    assert policy_engine.check(session, Actor.of(world.users["bob"]), "spawn_workspace", project=p1).allowed


def test_objects_may_be_given_by_id_and_the_system_actor_builds_views(
    session: Session, world: DbWorld, policy_engine: PolicyEngine
) -> None:
    decision = policy_engine.decide(
        session,
        Actor.system(),
        "build_view",
        project=world.projects["P1"].id,
        dataset=world.datasets["hes"].id,
    )
    assert decision.allowed and decision.principal == "system"
    denied = policy_engine.decide(
        session, None, "read_dataset", project=world.projects["P1"], dataset=world.datasets["hes"]
    )
    assert not denied.allowed  # the operator holds no accreditation and is no member
    session.commit()


def test_authorize_is_the_one_entry_point_and_uses_the_configured_bundle(
    session: Session, world: DbWorld, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    p1, hes = world.projects["P1"], world.datasets["hes"]
    assert authorize(session, world.users["alice"], "read_dataset", project=p1, dataset=hes).allowed
    assert get_engine() is get_engine()
    with pytest.raises(PolicyDenied):
        require(session, world.users["carol"], "read_dataset", project=p1, dataset=hes)

    # A deployment's own bundle: forbid everything on a tier-3 dataset.
    bundle = tmp_path / "policies"
    shutil.copytree(get_settings().policies_dir / "cedar", bundle / "cedar")
    (bundle / "cedar" / "80_local.cedar").write_text(
        '@id("local.no_tier3")\n@reason("this deployment shares nothing of tier 3 ({dataset})")\n'
        'forbid (principal, action in Action::"dataset_use", resource) when { resource.tier >= 3 };\n'
    )
    monkeypatch.setenv("TRE_POLICIES_DIR", str(bundle))
    get_settings.cache_clear()
    engine = reload_engine()
    decision = authorize(session, world.users["alice"], "read_dataset", project=p1, dataset=hes)
    assert not decision.allowed
    assert decision.reasons == ["this deployment shares nothing of tier 3 (hes)"]
    assert (
        decision.bundle_hash
        == engine.bundle_hash
        != PolicyEngine.load(Path(__file__).parents[3] / "policies").bundle_hash
    )

    (bundle / "cedar" / "80_local.cedar").write_text("forbid (principal, action, resource) when { oops };\n")
    with pytest.raises(PolicyBundleError, match=r"80_local\.cedar:1"):
        reload_engine()
    monkeypatch.delenv("TRE_POLICIES_DIR")
    get_settings.cache_clear()
    reload_engine()
    session.commit()
