"""The authoritative differential-privacy budget: a ledger in the control-plane database.

:class:`SqlBudgetLedger` implements :class:`tre_lib.privacy.BudgetLedger`. A debit is one transaction:
it makes sure every scope has a head row, locks the head rows in a fixed order (sorted by scope) with
``SELECT ... FOR UPDATE`` on PostgreSQL and, by writing to them, takes SQLite's single write lock before
reading anything; then it sums what each scope has spent, checks the limits and appends one entry per scope
- or appends nothing. Two debits of the same scope therefore never both see the old total, on either
backend, and the fixed order means two multi-scope debits cannot deadlock.

Budgets (limits) come from the data-sharing agreements that cover the project's datasets: each agreement's
``dp_epsilon``/``dp_delta`` is a budget per project. Scopes:

* ``("dataset", "<project id>/<dataset id>")``: what the project may spend on that dataset's people, the
  strictest (smallest) budget among the agreements covering it;
* ``("project", "<project id>")``: the project's total over all its queries, the largest of its datasets'
  budgets, so no query sequence spends more than any single agreement allows.

Every charge costs both the project scope and the scope of every dataset the query reads.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from tre_lib.privacy import Budget, BudgetExceededError, LedgerEntry, PrivacyAccountant, Scope
from tre_lib.privacy.budget import ScopeLike, _check_amounts, as_scope, check_within_limits
from tre_platform.actor import Actor
from tre_platform.api.common import audit, check_user
from tre_platform.api.datasets.models import Dataset
from tre_platform.api.projects import service as projects
from tre_platform.api.projects.models import Project
from tre_platform.api.releases.checks import covering_agreements
from tre_platform.api.releases.models import PrivacyBudgetHead, PrivacyLedgerEntry
from tre_platform.clock import clock
from tre_platform.errors import Forbidden, InvalidInput
from tre_platform.policy import require


class BudgetExceeded(Forbidden):
    """A differential-privacy query would overspend a budget; nothing was charged."""

    code = "budget_exceeded"


def project_scope(project_id: str) -> Scope:
    return Scope("project", project_id)


def dataset_scope(project_id: str, dataset_id: str) -> Scope:
    return Scope("dataset", f"{project_id}/{dataset_id}")


def _ids_of(scope: Scope) -> tuple[str | None, str | None]:
    if scope.kind == "project":
        return scope.name, None
    if scope.kind == "dataset" and "/" in scope.name:
        project_id, dataset_id = scope.name.split("/", 1)
        return project_id, dataset_id
    return None, None


def _entry(row: PrivacyLedgerEntry) -> LedgerEntry:
    return LedgerEntry(
        scope=Scope(row.scope_kind, row.scope_id),
        epsilon=row.epsilon,
        delta=row.delta,
        query_description=row.description,
        actor=row.actor,
        entry_id=row.id,
        recorded_at=row.at,
        charge_id=row.charge_id,
    )


class SqlBudgetLedger:
    """:class:`tre_lib.privacy.BudgetLedger` in the database, inside the caller's transaction.

    The caller commits (so a charge commits together with its audit event); the lock is held until then.

    Example:
        >>> with session_scope() as session:
        ...     ledger = SqlBudgetLedger(session)
        ...     PrivacyAccountant(ledger, limits).charge(scopes, 0.1, description="count", actor="alice")
    """

    def __init__(self, session: Session) -> None:
        self.session = session

    # Locking --------------------------------------------------------------------------------------

    def _lock(self, scopes: Sequence[Scope]) -> None:
        """Create missing head rows, then lock every head row in sorted order."""
        ordered = sorted(set(scopes))
        dialect = self.session.get_bind().dialect.name
        insert: Any = postgresql.insert if dialect == "postgresql" else sqlite.insert
        now = clock.now()
        for scope in ordered:
            self.session.execute(
                insert(PrivacyBudgetHead)
                .values(
                    id=uuid.uuid4().hex, scope_kind=scope.kind, scope_id=scope.name, charges=0, updated_at=now
                )
                .on_conflict_do_nothing(index_elements=["scope_kind", "scope_id"])
            )
        for scope in ordered:
            # PostgreSQL: FOR UPDATE row lock. SQLite ignores FOR UPDATE; its write lock is already held
            # (the insert above began a write transaction), which serialises every debit.
            self.session.execute(
                select(PrivacyBudgetHead.id)
                .where(PrivacyBudgetHead.scope_kind == scope.kind, PrivacyBudgetHead.scope_id == scope.name)
                .with_for_update()
            )
            self.session.execute(
                update(PrivacyBudgetHead)
                .where(PrivacyBudgetHead.scope_kind == scope.kind, PrivacyBudgetHead.scope_id == scope.name)
                .values(charges=PrivacyBudgetHead.charges + 1, updated_at=now)
            )

    def _spent(self, scope: Scope) -> tuple[float, float]:
        rows = self.session.execute(
            select(PrivacyLedgerEntry.epsilon, PrivacyLedgerEntry.delta).where(
                PrivacyLedgerEntry.scope_kind == scope.kind, PrivacyLedgerEntry.scope_id == scope.name
            )
        ).all()
        # fsum, as tre_lib's ledgers do: the total must not depend on the order entries were written in.
        return math.fsum(r[0] for r in rows), math.fsum(r[1] for r in rows)

    def _append(
        self, scopes: Sequence[Scope], epsilon: float, delta: float, query_description: str, actor: str
    ) -> tuple[LedgerEntry, ...]:
        charge_id = uuid.uuid4().hex
        now = clock.now()
        rows = []
        for scope in scopes:
            project_id, dataset_id = _ids_of(scope)
            rows.append(
                PrivacyLedgerEntry(
                    scope_kind=scope.kind,
                    scope_id=scope.name,
                    project_id=project_id,
                    dataset_id=dataset_id,
                    epsilon=float(epsilon),
                    delta=float(delta),
                    description=query_description[:2000],
                    actor=actor[:64],
                    charge_id=charge_id,
                    at=now,
                )
            )
        self.session.add_all(rows)
        self.session.flush()
        return tuple(_entry(r) for r in rows)

    # The BudgetLedger protocol ----------------------------------------------------------------------

    def spent(self, scope: ScopeLike) -> tuple[float, float]:
        """Return the (ε, δ) spent on ``scope`` so far."""
        return self._spent(as_scope(scope))

    def record(
        self, scope: ScopeLike, epsilon: float, delta: float, query_description: str, actor: str
    ) -> LedgerEntry:
        """Append one debit without checking any limit (importing past releases)."""
        _check_amounts(epsilon, delta)
        s = as_scope(scope)
        self._lock([s])
        return self._append([s], epsilon, delta, query_description, actor)[0]

    def debit(
        self,
        limits: Mapping[Scope, Budget],
        epsilon: float,
        delta: float,
        query_description: str,
        actor: str,
    ) -> tuple[LedgerEntry, ...]:
        """Atomically check every scope against its limit and debit all of them, or none.

        Raises:
            BudgetExceededError: some scope cannot afford it (the message lists what each has left);
                nothing was appended.
        """
        _check_amounts(epsilon, delta)
        limits = {as_scope(s): b for s, b in limits.items()}
        if not limits:
            raise InvalidInput("a charge needs at least one scope")
        self._lock(list(limits))
        check_within_limits(self._spent, limits, epsilon, delta)
        return self._append(sorted(limits), epsilon, delta, query_description, actor)

    def entries(self, scope: ScopeLike | None = None) -> list[LedgerEntry]:
        """Return the entries of ``scope`` (or of every scope), oldest first."""
        query = select(PrivacyLedgerEntry).order_by(PrivacyLedgerEntry.at, PrivacyLedgerEntry.id)
        if scope is not None:
            s = as_scope(scope)
            query = query.where(
                PrivacyLedgerEntry.scope_kind == s.kind, PrivacyLedgerEntry.scope_id == s.name
            )
        return [_entry(r) for r in self.session.scalars(query)]


# Limits from the agreements -----------------------------------------------------------------------


def budget_limits(session: Session, project: Project) -> dict[Scope, Budget]:
    """Every budget scope of ``project`` with its limit (datasets without a DP budget have no scope)."""
    limits: dict[Scope, Budget] = {}
    for dataset_id, agreements in covering_agreements(session, project).items():
        offering = [a for a in agreements if a.dp_epsilon is not None]
        if not offering:
            continue
        limits[dataset_scope(project.id, dataset_id)] = Budget(
            epsilon=min(float(a.dp_epsilon or 0.0) for a in offering),
            delta=min(float(a.dp_delta or 0.0) for a in offering),
        )
    if limits:
        limits[project_scope(project.id)] = Budget(
            epsilon=max(b.epsilon for b in limits.values()), delta=max(b.delta for b in limits.values())
        )
    return limits


@dataclass(frozen=True)
class ScopeBudget:
    scope_kind: str
    scope_id: str
    dataset_id: str | None
    dataset_name: str | None
    epsilon_limit: float
    delta_limit: float
    epsilon_spent: float
    delta_spent: float

    @property
    def epsilon_remaining(self) -> float:
        return max(0.0, self.epsilon_limit - self.epsilon_spent)

    @property
    def delta_remaining(self) -> float:
        return max(0.0, self.delta_limit - self.delta_spent)


def budget_status(session: Session, actor: Actor, project_id: str) -> list[ScopeBudget]:
    """Limit, spent and remaining (ε, δ) of each scope of a project the actor can see."""
    project = projects.get_project(session, actor, project_id)
    ledger = SqlBudgetLedger(session)
    listed = [link.dataset_id for link in project.datasets]
    names = {
        row.id: row.name
        for row in session.execute(select(Dataset.id, Dataset.name).where(Dataset.id.in_(listed)))
    }
    out = []
    for scope, limit in sorted(budget_limits(session, project).items()):
        eps, delta = ledger.spent(scope)
        dataset_id = _ids_of(scope)[1]
        out.append(
            ScopeBudget(
                scope_kind=scope.kind,
                scope_id=scope.name,
                dataset_id=dataset_id,
                dataset_name=names.get(dataset_id) if dataset_id else None,
                epsilon_limit=limit.epsilon,
                delta_limit=limit.delta,
                epsilon_spent=eps,
                delta_spent=delta,
            )
        )
    return out


def charge_dp(
    session: Session,
    actor: Actor,
    project_id: str,
    dataset_ids: Sequence[str],
    epsilon: float,
    delta: float,
    description: str,
) -> tuple[LedgerEntry, ...]:
    """Charge a differential-privacy query to the project and every dataset it reads, before it runs.

    The workspace calls this (``POST /api/v1/projects/{id}/privacy-budget/charges``) BEFORE computing; the
    actor must be allowed to read each dataset in the project (policy ``read_dataset``).

    Raises:
        BudgetExceeded: some scope cannot afford it; the message says what each scope has left.
        PolicyDenied: the actor may not read a dataset in this project.
        InvalidInput: no dataset, a dataset the project does not use, bad ε/δ, or no budget for a dataset.
    """
    check_user(actor)
    project = projects.get_project(session, actor, project_id)
    if not dataset_ids:
        raise InvalidInput("name the dataset(s) the query reads", field="dataset_ids")
    listed = {link.dataset_id for link in project.datasets}
    for dataset_id in dict.fromkeys(dataset_ids):
        if dataset_id not in listed:
            raise InvalidInput(
                f"project {project.code} does not use dataset {dataset_id!r}", field="dataset_ids"
            )
        require(session, actor, "read_dataset", project=project, dataset=dataset_id)
    limits: dict[ScopeLike, Budget] = {s: b for s, b in budget_limits(session, project).items()}
    scopes = [project_scope(project.id), *(dataset_scope(project.id, d) for d in dict.fromkeys(dataset_ids))]
    unbudgeted = [s for s in scopes if s not in limits]
    if unbudgeted:
        raise InvalidInput(
            f"no differential-privacy budget is set for {', '.join(map(str, unbudgeted))}: the agreements "
            "covering the data offer none; ask the data owner to set dp_epsilon",
            field="dataset_ids",
        )
    try:
        entries = PrivacyAccountant(SqlBudgetLedger(session), limits).charge(
            scopes, epsilon, delta, description=description, actor=actor.label
        )
    except BudgetExceededError as exc:
        raise BudgetExceeded(str(exc)) from None
    except ValueError as exc:  # tre_lib's InvalidParameterError: ε or δ out of range
        raise InvalidInput(str(exc), field="epsilon") from None
    audit(
        session,
        actor,
        "privacy.charge",
        project,
        epsilon=epsilon,
        delta=delta,
        description=description,
        scopes=[str(s) for s in scopes],
        charge_id=entries[0].charge_id,
    )
    return entries
