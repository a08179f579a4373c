"""Behaviour of the privacy-budget accountant and its ledgers."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest

from tre_lib.privacy import (
    Budget,
    BudgetExceededError,
    BudgetLedger,
    InMemoryLedger,
    InvalidParameterError,
    JsonFileLedger,
    LedgerError,
    PrivacyAccountant,
    Scope,
    UnknownScopeError,
    dp_count,
    dp_mean,
    run_query,
)

P1 = ("project", "P1")
HES = ("dataset", "hospital_episodes")


@pytest.fixture(params=["memory", "json"])
def make_ledger(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[], BudgetLedger]:
    """A factory of ledgers; for the JSON ledger every call reopens the same file."""
    if request.param == "memory":
        ledger = InMemoryLedger()
        return lambda: ledger
    path = tmp_path / "ledger" / "privacy.json"
    return lambda: JsonFileLedger(path)


def make_accountant(ledger: BudgetLedger | None = None, **limits: Budget) -> PrivacyAccountant:
    budgets = limits or {"P1": Budget(1.0)}
    scopes = {("project", k) if k.startswith("P") else ("dataset", k): v for k, v in budgets.items()}
    return PrivacyAccountant(ledger or InMemoryLedger(), scopes)


def test_both_ledgers_satisfy_the_protocol(make_ledger: Callable[[], BudgetLedger]) -> None:
    assert isinstance(make_ledger(), BudgetLedger)


def test_refusal_says_what_is_left_and_what_the_query_needs(make_ledger: Callable[[], BudgetLedger]) -> None:
    accountant = make_accountant(make_ledger())
    accountant.charge([P1], 0.65, description="first", actor="alice")
    with pytest.raises(BudgetExceededError) as info:
        accountant.charge([P1], 0.5, description="second", actor="alice")
    assert str(info.value) == (
        "project P1 has ε=0.35 of 1.00 left; this query needs ε=0.5. Nothing was charged or released: "
        "use a smaller epsilon, or ask the data owner to raise the budget."
    )
    assert info.value.remaining[0].epsilon_left == pytest.approx(0.35)
    assert make_ledger().spent(P1) == pytest.approx((0.65, 0.0))


def test_multi_scope_debit_is_all_or_nothing(make_ledger: Callable[[], BudgetLedger]) -> None:
    accountant = make_accountant(make_ledger(), P1=Budget(1.0), hospital_episodes=Budget(0.3))
    with pytest.raises(BudgetExceededError) as info:
        accountant.charge([P1, HES], 0.5, description="mean LOS", actor="alice")
    # The project could afford it, but nothing was charged anywhere because the dataset could not.
    assert make_ledger().spent(P1) == (0.0, 0.0)
    assert make_ledger().spent(HES) == (0.0, 0.0)
    assert make_ledger().entries() == []
    assert str(info.value).startswith(
        "project P1 has ε=1.00 of 1.00 left; dataset hospital_episodes has ε=0.30 of 0.30 left; "
        "this query needs ε=0.5."
    )

    entries = accountant.charge([P1, HES], 0.25, description="count", actor="bob")
    assert {e.scope for e in entries} == {Scope(*P1), Scope(*HES)}
    assert len({e.charge_id for e in entries}) == 1
    assert make_ledger().spent(P1)[0] == pytest.approx(0.25)
    assert make_ledger().spent(HES)[0] == pytest.approx(0.25)
    assert accountant.remaining(HES).epsilon == pytest.approx(0.05)


def test_delta_composes_by_addition_and_is_checked(make_ledger: Callable[[], BudgetLedger]) -> None:
    accountant = PrivacyAccountant(make_ledger(), {P1: Budget(10.0, delta=1e-6)})
    accountant.charge([P1], 1.0, 6e-7, description="a", actor="x")
    with pytest.raises(BudgetExceededError, match=r"δ=4e-07 of 1e-06 left; this query needs ε=1, δ=6e-07"):
        accountant.charge([P1], 1.0, 6e-7, description="b", actor="x")
    accountant.charge([P1], 1.0, 4e-7, description="c", actor="x")
    assert make_ledger().spent(P1) == pytest.approx((2.0, 1e-6))


def test_ten_charges_of_a_tenth_fit_a_budget_of_one(make_ledger: Callable[[], BudgetLedger]) -> None:
    accountant = make_accountant(make_ledger())
    for i in range(10):
        accountant.charge([P1], 0.1, description=f"q{i}", actor="alice")
    assert not accountant.can_charge([P1], 0.01)
    assert accountant.remaining(P1).epsilon == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("ledger_kind", ["memory", "json"])
def test_twenty_threads_racing_never_overspend(ledger_kind: str, tmp_path: Path) -> None:
    ledger: BudgetLedger = (
        InMemoryLedger() if ledger_kind == "memory" else JsonFileLedger(tmp_path / "l.json")
    )
    accountant = make_accountant(ledger)
    start = threading.Barrier(20)
    outcomes: list[str] = []
    outcomes_lock = threading.Lock()

    def spend() -> None:
        start.wait()
        try:
            accountant.charge([P1], 0.1, description="race", actor=threading.current_thread().name)
            result = "ok"
        except BudgetExceededError:
            result = "refused"
        with outcomes_lock:
            outcomes.append(result)

    threads = [threading.Thread(target=spend) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert outcomes.count("ok") == 10
    assert outcomes.count("refused") == 10
    assert ledger.spent(P1)[0] == pytest.approx(1.0)
    assert len(ledger.entries(P1)) == 10


def test_json_ledger_totals_survive_recreation(tmp_path: Path) -> None:
    path = tmp_path / "privacy.json"
    first = make_accountant(JsonFileLedger(path), P1=Budget(1.0), hospital_episodes=Budget(2.0))
    first.charge([P1, HES], 0.4, description="count by region", actor="alice")
    first.charge([P1], 0.3, description="mean age", actor="bob")

    reopened = JsonFileLedger(path)
    assert reopened.spent(P1) == pytest.approx((0.7, 0.0))
    assert reopened.spent(HES) == pytest.approx((0.4, 0.0))
    assert [e.query_description for e in reopened.entries(P1)] == ["count by region", "mean age"]
    assert reopened.entries(P1)[1].actor == "bob"
    second = make_accountant(reopened, P1=Budget(1.0), hospital_episodes=Budget(2.0))
    with pytest.raises(BudgetExceededError, match=re.escape("project P1 has ε=0.30 of 1.00 left")):
        second.charge([P1], 0.5, description="too much", actor="alice")


def test_corrupt_json_ledger_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "privacy.json"
    path.write_text("{not json")
    with pytest.raises(LedgerError, match="cannot be read"):
        JsonFileLedger(path).spent(P1)
    path.write_text(json.dumps({"format": "something else", "entries": []}))
    with pytest.raises(LedgerError, match="unexpected format"):
        JsonFileLedger(path).entries()


def test_record_appends_without_checking_limits(make_ledger: Callable[[], BudgetLedger]) -> None:
    ledger = make_ledger()
    ledger.record(P1, 5.0, 0.0, "imported release", "admin")
    assert ledger.spent(P1) == (5.0, 0.0)
    assert not make_accountant(ledger).can_charge([P1], 0.1)


def test_unknown_scope_is_denied_by_default() -> None:
    accountant = make_accountant()
    with pytest.raises(UnknownScopeError, match="no privacy budget is set for dataset other"):
        accountant.charge([P1, ("dataset", "other")], 0.1, description="x", actor="y")
    assert accountant.ledger.entries() == []


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda a: a.charge([P1], -0.1, description="x", actor="y"), "epsilon"),
        (lambda a: a.charge([P1], 0.1, 1.5, description="x", actor="y"), "delta"),
        (lambda a: a.charge([], 0.1, description="x", actor="y"), "at least one scope"),
        (lambda a: a.charge([("project",)], 0.1, description="x", actor="y"), "pair of non-empty strings"),
        (lambda a: Budget(-1.0), "epsilon must be finite"),
        (lambda a: Budget(1.0, delta=1.0), "delta must be in"),
    ],
)
def test_bad_budget_parameters_raise(call: Callable[[PrivacyAccountant], object], message: str) -> None:
    with pytest.raises(InvalidParameterError, match=message):
        call(make_accountant())


def test_a_single_scope_tuple_is_accepted_as_the_scope_list() -> None:
    accountant = make_accountant()
    accountant.charge(P1, 0.2, description="x", actor="y")  # type: ignore[arg-type]
    assert accountant.remaining(Scope("project", "P1")).epsilon == pytest.approx(0.8)


# --------------------------------------------------------------------------------------------- run_query


def test_run_query_charges_exactly_what_the_mechanism_spent(people: pd.DataFrame) -> None:
    accountant = make_accountant(P1=Budget(1.0), hospital_episodes=Budget(1.0))
    result = run_query(
        accountant, [P1, HES], dp_mean, people, "age", (0, 100), 0.4, actor="alice", description="mean age"
    )
    for scope in (P1, HES):
        (entry,) = accountant.ledger.entries(scope)
        assert entry.epsilon == result.epsilon
        assert entry.query_description == "mean age"
        assert entry.actor == "alice"


def test_run_query_refuses_before_releasing(people: pd.DataFrame) -> None:
    accountant = make_accountant(P1=Budget(0.5))
    run_query(accountant, [P1], dp_count, people, epsilon=0.4, actor="alice")
    with pytest.raises(
        BudgetExceededError, match=re.escape("project P1 has ε=0.10 of 0.50 left; this query needs ε=0.4.")
    ):
        run_query(accountant, [P1], dp_count, people, epsilon=0.4, actor="alice")
    (entry,) = accountant.ledger.entries(P1)
    assert entry.query_description == "dp_count(epsilon=0.4)"


def test_run_query_with_bad_parameters_charges_nothing(people: pd.DataFrame) -> None:
    accountant = make_accountant()
    with pytest.raises(InvalidParameterError):
        run_query(accountant, [P1], dp_mean, people, "age", (100, 0), 0.4, actor="alice")
    assert accountant.ledger.entries() == []


def test_run_query_does_not_accept_its_own_hook(people: pd.DataFrame) -> None:
    with pytest.raises(TypeError, match="before_release"):
        run_query(make_accountant(), [P1], dp_count, people, epsilon=0.1, actor="a", before_release=print)
