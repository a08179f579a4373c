"""The database-backed differential-privacy ledger: atomic, durable, concurrent, and over the API."""

from __future__ import annotations

import threading

import pytest
from airlock_world import Airlock
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from tre_lib.privacy import Budget, BudgetExceededError, BudgetLedger, PrivacyAccountant, Scope
from tre_platform.actor import Actor
from tre_platform.api.releases.budget import (
    BudgetExceeded,
    SqlBudgetLedger,
    budget_limits,
    budget_status,
    charge_dp,
    dataset_scope,
    project_scope,
)
from tre_platform.api.releases.models import PrivacyLedgerEntry
from tre_platform.db.session import get_engine, make_session_factory, reset_engines
from tre_platform.errors import PolicyDenied


def test_the_sql_ledger_is_a_budget_ledger(session: Session) -> None:
    assert isinstance(SqlBudgetLedger(session), BudgetLedger)


def test_limits_come_from_the_covering_agreements(airlock: Airlock, session: Session) -> None:
    from tre_platform.api.projects.models import Project

    limits = budget_limits(session, session.get(Project, airlock.project_id))  # type: ignore[arg-type]
    assert limits[dataset_scope(airlock.project_id, airlock.hes_id)] == Budget(1.0, 1e-6)
    assert limits[dataset_scope(airlock.project_id, airlock.lfs_id)] == Budget(3.0, 1e-5)
    assert limits[project_scope(airlock.project_id)] == Budget(3.0, 1e-5)


def test_an_over_budget_charge_is_refused_with_what_remains_and_charges_nothing(
    airlock: Airlock, session: Session
) -> None:
    rita = Actor.of(airlock.researcher)
    charge_dp(session, rita, airlock.project_id, [airlock.hes_id], 0.7, 0.0, "count of admissions")
    session.commit()
    with pytest.raises(BudgetExceeded) as refused:
        charge_dp(session, rita, airlock.project_id, [airlock.hes_id], 0.5, 0.0, "mean stay")
    session.rollback()
    assert "ε=0.30 of 1.00" in refused.value.message
    assert "this query needs ε=0.5" in refused.value.message
    spent = {s.scope_id: s.epsilon_spent for s in budget_status(session, rita, airlock.project_id)}
    assert spent[f"{airlock.project_id}/{airlock.hes_id}"] == pytest.approx(0.7)
    assert spent[airlock.project_id] == pytest.approx(0.7)


def test_a_charge_is_atomic_across_the_project_and_dataset_scopes(airlock: Airlock, session: Session) -> None:
    rita = Actor.of(airlock.researcher)
    hes, lfs, project = (
        dataset_scope(airlock.project_id, airlock.hes_id),
        dataset_scope(airlock.project_id, airlock.lfs_id),
        project_scope(airlock.project_id),
    )
    charge_dp(session, rita, airlock.project_id, [airlock.lfs_id], 2.5, 0.0, "lfs histogram")
    session.commit()
    # hes alone could afford 0.8, but the project has only 0.5 left: nothing may be charged anywhere.
    with pytest.raises(BudgetExceeded):
        charge_dp(
            session, rita, airlock.project_id, [airlock.hes_id, airlock.lfs_id], 0.8, 0.0, "joint count"
        )
    session.rollback()
    ledger = SqlBudgetLedger(session)
    assert ledger.entries(hes) == []
    assert ledger.spent(project) == pytest.approx((2.5, 0.0))
    assert ledger.spent(lfs) == pytest.approx((2.5, 0.0))
    # A charge that fits every scope is written to every scope, under one charge id.
    entries = charge_dp(session, rita, airlock.project_id, [airlock.hes_id, airlock.lfs_id], 0.5, 0.0, "j")
    assert {e.scope for e in entries} == {hes, lfs, project}
    assert len({e.charge_id for e in entries}) == 1


def test_charging_needs_permission_to_read_the_datasets(airlock: Airlock, session: Session) -> None:
    with pytest.raises(PolicyDenied):
        charge_dp(session, Actor.of(airlock.admin), airlock.project_id, [airlock.hes_id], 0.1, 0.0, "x")


def test_the_budget_survives_a_restart(airlock: Airlock, session: Session, db_url: str) -> None:
    rita = Actor.of(airlock.researcher)
    charge_dp(session, rita, airlock.project_id, [airlock.hes_id], 0.9, 0.0, "before restart")
    session.commit()
    session.close()
    reset_engines()  # every pooled connection closed: what is left is what the database holds
    with make_session_factory(get_engine(url=db_url))() as fresh:
        from tre_platform.api.users.models import User

        rita_again = Actor.of(fresh.get(User, airlock.researcher.id))  # type: ignore[arg-type]
        scopes = {s.scope_id: s for s in budget_status(fresh, rita_again, airlock.project_id)}
        assert scopes[f"{airlock.project_id}/{airlock.hes_id}"].epsilon_remaining == pytest.approx(0.1)
        with pytest.raises(BudgetExceeded):
            charge_dp(fresh, rita_again, airlock.project_id, [airlock.hes_id], 0.2, 0.0, "after restart")


def test_concurrent_debits_never_overspend(engine: Engine) -> None:
    """Twelve threads each try to spend 0.3 of a budget of 1.0 on two scopes: exactly three succeed."""
    factory = make_session_factory(engine)
    limits = {Scope("project", "P1"): Budget(1.0), Scope("dataset", "P1/D1"): Budget(1.0)}
    outcomes: list[str] = []
    lock = threading.Lock()
    start = threading.Barrier(12)

    def worker(n: int) -> None:
        start.wait()
        with factory() as session:
            try:
                PrivacyAccountant(SqlBudgetLedger(session), limits).charge(
                    list(limits), 0.3, description=f"query {n}", actor=f"t{n}"
                )
                session.commit()
                outcome = "charged"
            except BudgetExceededError:
                session.rollback()
                outcome = "refused"
        with lock:
            outcomes.append(outcome)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert outcomes.count("charged") == 3
    assert outcomes.count("refused") == 9
    with factory() as session:
        ledger = SqlBudgetLedger(session)
        for scope in limits:
            assert ledger.spent(scope)[0] == pytest.approx(0.9)
            assert len(ledger.entries(scope)) == 3
        rows = session.scalars(select(PrivacyLedgerEntry.charge_id)).all()
        assert len(set(rows)) == 3  # each successful charge wrote both scopes under one id


def test_record_appends_without_a_limit_and_entries_come_back_in_order(session: Session) -> None:
    ledger = SqlBudgetLedger(session)
    ledger.record(("project", "P9"), 0.2, 0.0, "imported", "ops")
    ledger.record(("project", "P9"), 0.3, 1e-7, "imported again", "ops")
    assert [e.query_description for e in ledger.entries(("project", "P9"))] == ["imported", "imported again"]
    assert ledger.spent(("project", "P9")) == pytest.approx((0.5, 1e-7))


def test_the_budget_routes_show_and_charge(airlock: Airlock, client: TestClient) -> None:
    url = f"/api/v1/projects/{airlock.project_id}/privacy-budget"
    charged = client.post(
        f"{url}/charges",
        json={"dataset_ids": [airlock.hes_id], "epsilon": 0.25, "description": "dp count"},
        headers=airlock.headers("researcher"),
    )
    assert charged.status_code == 201, charged.text
    assert len(charged.json()["entries"]) == 2
    shown = client.get(url, headers=airlock.headers("member")).json()
    hes = next(s for s in shown if s["dataset_id"] == airlock.hes_id)
    assert hes["dataset_name"] == "hes"
    assert hes["epsilon_spent"] == pytest.approx(0.25)
    assert hes["epsilon_remaining"] == pytest.approx(0.75)
    refused = client.post(
        f"{url}/charges",
        json={"dataset_ids": [airlock.hes_id], "epsilon": 0.9, "description": "too much"},
        headers=airlock.headers("researcher"),
    )
    assert refused.status_code == 403
    assert refused.json()["error"] == "budget_exceeded"
    assert "ε=0.75 of 1.00" in refused.json()["message"]
    assert client.get(url, headers=airlock.headers("outsider")).status_code == 404
