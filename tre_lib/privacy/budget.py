"""The privacy-budget accountant: a persistent ε/δ ledger per scope (project, dataset, ...).

Composition is *basic sequential composition*: the ε of every query charged to a scope add up, and so do the
δ. That is always valid (for pure ε-DP and for (ε, δ)-DP alike) but loose for many queries; accounting in
zCDP or Rényi DP with OpenDP's odometer (``dp.c.make_fully_adaptive_composition`` with a zCDP output measure)
could tighten it later without changing this interface, because the ledger only stores what each query cost.

Persistence sits behind the small :class:`BudgetLedger` protocol. Two implementations live here:

* :class:`InMemoryLedger` for tests and single-process use (a lock makes check-and-debit atomic);
* :class:`JsonFileLedger` for a notebook's local pre-check (a file lock makes it atomic across processes).

The authoritative ledger is the control-plane database (SQLAlchemy, in ``tre_platform``); the airlock debits
it again on the server. A researcher's local ledger is a convenience, never trusted.

Example:
    >>> ledger = InMemoryLedger()
    >>> accountant = PrivacyAccountant(ledger, {("project", "P1"): Budget(epsilon=1.0)})
    >>> _ = accountant.charge([("project", "P1")], 0.25, description="count of admissions", actor="alice")
    >>> accountant.remaining(("project", "P1"))
    Budget(epsilon=0.75, delta=0.0)
"""

from __future__ import annotations

import fcntl
import json
import math
import os
import tempfile
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NamedTuple, Protocol, runtime_checkable

from tre_lib.privacy.errors import (
    BudgetExceededError,
    InvalidParameterError,
    LedgerError,
    ScopeRemaining,
    UnknownScopeError,
)

# Budgets are sums of floats: ten charges of ε=0.1 add up to 0.9999999999999999 or 1.0000000000000002
# depending on order. A relative slack this small admits exactly the queries a person would expect and is far
# below any ε that matters for privacy.
_RELATIVE_SLACK = 1e-9


class Scope(NamedTuple):
    """Something a privacy budget belongs to, e.g. ``Scope("project", "P1")``.

    A plain tuple ``("project", "P1")`` is accepted anywhere a scope is, and compares equal to it.
    """

    kind: str
    name: str

    def __str__(self) -> str:
        return f"{self.kind} {self.name}"


ScopeLike = Scope | tuple[str, str]


def as_scope(scope: ScopeLike) -> Scope:
    """Normalise a scope given as a tuple; raises :class:`InvalidParameterError` for anything else."""
    if isinstance(scope, tuple) and len(scope) == 2 and all(isinstance(p, str) and p for p in scope):
        return Scope(scope[0], scope[1])
    raise InvalidParameterError(
        f"a scope is a pair of non-empty strings such as ('project', 'P1'); got {scope!r}"
    )


@dataclass(frozen=True)
class Budget:
    """A total privacy-loss allowance (or what is left of one).

    Attributes:
        epsilon: Total ε; must be finite and >= 0.
        delta: Total δ; must be in [0, 1).
    """

    epsilon: float
    delta: float = 0.0

    def __post_init__(self) -> None:
        if not (math.isfinite(self.epsilon) and self.epsilon >= 0):
            raise InvalidParameterError(f"a budget's epsilon must be finite and >= 0; got {self.epsilon!r}")
        if not (0 <= self.delta < 1):
            raise InvalidParameterError(f"a budget's delta must be in [0, 1); got {self.delta!r}")


@dataclass(frozen=True)
class LedgerEntry:
    """One debit of one scope, as stored by a ledger.

    Attributes:
        entry_id: Random identifier of the entry.
        scope: The scope that was charged.
        epsilon: ε charged.
        delta: δ charged.
        query_description: What was released, for the data owner and the output checker.
        actor: Who ran the query.
        recorded_at: When the debit happened (UTC).
        charge_id: Shared by all entries of one multi-scope charge, so the charge can be audited as a unit.
    """

    scope: Scope
    epsilon: float
    delta: float
    query_description: str
    actor: str
    entry_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    recorded_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    charge_id: str = ""

    def to_json(self) -> dict[str, Any]:
        """Return a JSON-serialisable dict of the entry."""
        return {
            "entry_id": self.entry_id,
            "charge_id": self.charge_id,
            "scope": [self.scope.kind, self.scope.name],
            "epsilon": self.epsilon,
            "delta": self.delta,
            "query_description": self.query_description,
            "actor": self.actor,
            "recorded_at": self.recorded_at.isoformat(),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> LedgerEntry:
        """Rebuild an entry written by :meth:`to_json`."""
        return cls(
            scope=as_scope(tuple(data["scope"])),  # type: ignore[arg-type]
            epsilon=float(data["epsilon"]),
            delta=float(data["delta"]),
            query_description=str(data["query_description"]),
            actor=str(data["actor"]),
            entry_id=str(data["entry_id"]),
            recorded_at=datetime.fromisoformat(data["recorded_at"]),
            charge_id=str(data.get("charge_id", "")),
        )


@runtime_checkable
class BudgetLedger(Protocol):
    """Persistence of privacy-loss debits.

    Contract for implementations (the control-plane's SQL ledger follows it too):

    * ``spent(scope)`` returns the (ε, δ) debited to the scope so far, summed (basic composition).
    * ``record(...)`` appends one entry unconditionally (for importing past releases); it never refuses.
    * ``debit(limits, ...)`` is the only way the accountant spends budget. In ONE atomic step it checks
      every scope in ``limits`` against its limit and either appends one entry per scope or appends nothing
      and raises :class:`BudgetExceededError` listing what each scope has left. Concurrent debits must never
      overspend: an SQL ledger takes row locks (``SELECT ... FOR UPDATE``) on the scopes in a fixed order.
    * ``entries(scope)`` lists the debits of a scope, oldest first (``None``: all scopes).
    """

    def spent(self, scope: ScopeLike) -> tuple[float, float]:
        """Return the (ε, δ) spent on ``scope`` so far."""
        ...

    def record(
        self, scope: ScopeLike, epsilon: float, delta: float, query_description: str, actor: str
    ) -> LedgerEntry:
        """Append one debit without checking any limit."""
        ...

    def debit(
        self,
        limits: Mapping[Scope, Budget],
        epsilon: float,
        delta: float,
        query_description: str,
        actor: str,
    ) -> tuple[LedgerEntry, ...]:
        """Atomically check every scope against its limit and debit all of them, or none."""
        ...

    def entries(self, scope: ScopeLike | None = None) -> list[LedgerEntry]:
        """Return the entries of ``scope`` (or of every scope), oldest first."""
        ...


def _check_amounts(epsilon: float, delta: float) -> None:
    if not (math.isfinite(epsilon) and epsilon >= 0):
        raise InvalidParameterError(f"epsilon to charge must be finite and >= 0; got {epsilon!r}")
    if not (0 <= delta < 1):
        raise InvalidParameterError(f"delta to charge must be in [0, 1); got {delta!r}")


def _fits(spent: float, amount: float, limit: float) -> bool:
    return math.fsum([spent, amount]) <= limit + _RELATIVE_SLACK * max(1.0, limit)


def check_within_limits(
    spent: Callable[[Scope], tuple[float, float]],
    limits: Mapping[Scope, Budget],
    epsilon: float,
    delta: float,
) -> None:
    """Raise :class:`BudgetExceededError` unless every scope can afford (ε, δ). Shared by all ledgers.

    Args:
        spent: Returns what a scope has spent; called with the ledger's lock held.
        limits: Each scope of the charge and its total budget.
        epsilon: ε the query needs.
        delta: δ the query needs.
    """
    remaining: list[ScopeRemaining] = []
    refused = False
    for scope, limit in limits.items():
        eps_spent, delta_spent = spent(scope)
        if not (_fits(eps_spent, epsilon, limit.epsilon) and _fits(delta_spent, delta, limit.delta)):
            refused = True
        remaining.append(
            ScopeRemaining(
                scope=str(scope),
                epsilon_left=max(0.0, limit.epsilon - eps_spent),
                epsilon_limit=limit.epsilon,
                delta_left=max(0.0, limit.delta - delta_spent),
                delta_limit=limit.delta,
            )
        )
    if refused:
        raise BudgetExceededError(remaining, epsilon, delta)


def _new_entries(
    scopes: Iterable[Scope], epsilon: float, delta: float, query_description: str, actor: str
) -> tuple[LedgerEntry, ...]:
    charge_id = uuid.uuid4().hex
    now = datetime.now(UTC)
    return tuple(
        LedgerEntry(
            scope=s,
            epsilon=epsilon,
            delta=delta,
            query_description=query_description,
            actor=actor,
            recorded_at=now,
            charge_id=charge_id,
        )
        for s in scopes
    )


def _totals(entries: Iterable[LedgerEntry]) -> dict[Scope, tuple[float, float]]:
    eps: dict[Scope, list[float]] = {}
    dlt: dict[Scope, list[float]] = {}
    for e in entries:
        eps.setdefault(e.scope, []).append(e.epsilon)
        dlt.setdefault(e.scope, []).append(e.delta)
    # fsum: the total must not depend on the order the entries were written in.
    return {s: (math.fsum(eps[s]), math.fsum(dlt[s])) for s in eps}


class InMemoryLedger:
    """A ledger held in memory; a lock makes :meth:`debit` atomic between threads.

    Lost when the process ends: use it for tests and for planning, not for real budgets.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: list[LedgerEntry] = []

    def spent(self, scope: ScopeLike) -> tuple[float, float]:
        """Return the (ε, δ) spent on ``scope`` so far."""
        s = as_scope(scope)
        with self._lock:
            return _totals(self._entries).get(s, (0.0, 0.0))

    def record(
        self, scope: ScopeLike, epsilon: float, delta: float, query_description: str, actor: str
    ) -> LedgerEntry:
        """Append one debit without checking any limit."""
        _check_amounts(epsilon, delta)
        (entry,) = _new_entries([as_scope(scope)], epsilon, delta, query_description, actor)
        with self._lock:
            self._entries.append(entry)
        return entry

    def debit(
        self,
        limits: Mapping[Scope, Budget],
        epsilon: float,
        delta: float,
        query_description: str,
        actor: str,
    ) -> tuple[LedgerEntry, ...]:
        """Atomically check every scope against its limit and debit all of them, or none."""
        _check_amounts(epsilon, delta)
        limits = {as_scope(s): b for s, b in limits.items()}
        with self._lock:
            totals = _totals(self._entries)
            check_within_limits(lambda s: totals.get(s, (0.0, 0.0)), limits, epsilon, delta)
            new = _new_entries(limits, epsilon, delta, query_description, actor)
            self._entries.extend(new)
        return new

    def entries(self, scope: ScopeLike | None = None) -> list[LedgerEntry]:
        """Return the entries of ``scope`` (or of every scope), oldest first."""
        s = None if scope is None else as_scope(scope)
        with self._lock:
            return [e for e in self._entries if s is None or e.scope == s]


class JsonFileLedger:
    """A ledger in one JSON file, for a notebook's local pre-check of its budget.

    Every operation re-reads the file under an exclusive ``flock`` on a sidecar ``.lock`` file, so several
    kernels (processes) and threads sharing the file never overspend, and totals survive restarts. Writes go
    to a temporary file that replaces the ledger atomically, so a crash never leaves half a file.

    This is NOT the authoritative ledger: the control plane keeps that in its database and debits it again
    when a release is requested.

    Args:
        path: The JSON file; created (with its parent directory) on the first debit.
    """

    _FORMAT = "tre.privacy.ledger/1"

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._lock_path = self.path.with_name(self.path.name + ".lock")
        self._thread_lock = threading.Lock()

    @contextmanager
    def _locked(self) -> Iterator[None]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # flock is per open file description, so threads of one process need their own lock too.
        with self._thread_lock, open(self._lock_path, "a+b") as lock_file:
            fcntl.flock(lock_file.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock_file.fileno(), fcntl.LOCK_UN)

    def _read(self) -> list[LedgerEntry]:
        if not self.path.exists():
            return []
        try:
            doc = json.loads(self.path.read_text(encoding="utf-8"))
            if doc.get("format") != self._FORMAT:
                raise ValueError(f"unexpected format {doc.get('format')!r}")
            return [LedgerEntry.from_json(e) for e in doc["entries"]]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise LedgerError(
                f"the privacy ledger {self.path} cannot be read ({exc}); restore it from backup or move it "
                "aside. Deleting it gives no budget back: the server-side ledger counts every release."
            ) from exc

    def _write(self, entries: Sequence[LedgerEntry]) -> None:
        doc = {"format": self._FORMAT, "entries": [e.to_json() for e in entries]}
        fd, tmp = tempfile.mkstemp(prefix=self.path.name + ".", suffix=".tmp", dir=self.path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(doc, fh, ensure_ascii=False, indent=1)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def spent(self, scope: ScopeLike) -> tuple[float, float]:
        """Return the (ε, δ) spent on ``scope`` so far."""
        s = as_scope(scope)
        with self._locked():
            return _totals(self._read()).get(s, (0.0, 0.0))

    def record(
        self, scope: ScopeLike, epsilon: float, delta: float, query_description: str, actor: str
    ) -> LedgerEntry:
        """Append one debit without checking any limit."""
        _check_amounts(epsilon, delta)
        (entry,) = _new_entries([as_scope(scope)], epsilon, delta, query_description, actor)
        with self._locked():
            self._write([*self._read(), entry])
        return entry

    def debit(
        self,
        limits: Mapping[Scope, Budget],
        epsilon: float,
        delta: float,
        query_description: str,
        actor: str,
    ) -> tuple[LedgerEntry, ...]:
        """Atomically check every scope against its limit and debit all of them, or none."""
        _check_amounts(epsilon, delta)
        limits = {as_scope(s): b for s, b in limits.items()}
        with self._locked():
            entries = self._read()
            totals = _totals(entries)
            check_within_limits(lambda s: totals.get(s, (0.0, 0.0)), limits, epsilon, delta)
            new = _new_entries(limits, epsilon, delta, query_description, actor)
            self._write([*entries, *new])
        return new

    def entries(self, scope: ScopeLike | None = None) -> list[LedgerEntry]:
        """Return the entries of ``scope`` (or of every scope), oldest first."""
        s = None if scope is None else as_scope(scope)
        with self._locked():
            return [e for e in self._read() if s is None or e.scope == s]


class PrivacyAccountant:
    """Charges queries to one or more scopes against their budgets, all or nothing.

    Deny by default: a scope without a limit cannot be charged. Budgets are data (from ``policies/`` or the
    control plane), passed in as ``limits``.

    Args:
        ledger: Where debits are stored.
        limits: Total budget of each scope, e.g. ``{("project", "P1"): Budget(1.0)}``.

    Example:
        >>> acc = PrivacyAccountant(InMemoryLedger(), {("project", "P1"): Budget(1.0)})
        >>> acc.can_charge([("project", "P1")], 0.5)
        True
    """

    def __init__(self, ledger: BudgetLedger, limits: Mapping[ScopeLike, Budget]) -> None:
        self.ledger = ledger
        self.limits: dict[Scope, Budget] = {}
        for scope, budget in limits.items():
            if not isinstance(budget, Budget):
                raise InvalidParameterError(f"the limit of {scope!r} must be a Budget; got {budget!r}")
            self.limits[as_scope(scope)] = budget

    def _limits_for(self, scopes: Sequence[ScopeLike]) -> dict[Scope, Budget]:
        if isinstance(scopes, tuple) and len(scopes) == 2 and all(isinstance(p, str) for p in scopes):
            # ("project", "P1") passed where a list of scopes was meant: a common slip, and unambiguous.
            scopes = [scopes]  # type: ignore[list-item]
        if not scopes:
            raise InvalidParameterError("charge at least one scope, e.g. [('project', 'P1')]")
        out: dict[Scope, Budget] = {}
        for scope in scopes:
            s = as_scope(scope)
            if s not in self.limits:
                raise UnknownScopeError(
                    f"no privacy budget is set for {s}, so it cannot be charged; "
                    "ask the data owner or an admin to set one"
                )
            out[s] = self.limits[s]
        return out

    def remaining(self, scope: ScopeLike) -> Budget:
        """Return what ``scope`` has left (never negative)."""
        limit = self._limits_for([scope])[as_scope(scope)]
        eps, delta = self.ledger.spent(scope)
        return Budget(max(0.0, limit.epsilon - eps), max(0.0, limit.delta - delta))

    def check_charge(self, scopes: Sequence[ScopeLike], epsilon: float, delta: float = 0.0) -> None:
        """Raise :class:`BudgetExceededError` if the charge would be refused now (advisory, not binding).

        Another query may spend the budget between this check and :meth:`charge`; only :meth:`charge` is
        atomic.
        """
        _check_amounts(epsilon, delta)
        check_within_limits(self.ledger.spent, self._limits_for(scopes), epsilon, delta)

    def can_charge(self, scopes: Sequence[ScopeLike], epsilon: float, delta: float = 0.0) -> bool:
        """Return whether :meth:`check_charge` would pass."""
        try:
            self.check_charge(scopes, epsilon, delta)
        except BudgetExceededError:
            return False
        return True

    def charge(
        self,
        scopes: Sequence[ScopeLike],
        epsilon: float,
        delta: float = 0.0,
        *,
        description: str,
        actor: str,
    ) -> tuple[LedgerEntry, ...]:
        """Debit (ε, δ) from every scope, atomically: all scopes are charged or none is.

        Args:
            scopes: E.g. ``[("project", "P1"), ("dataset", "hospital_episodes")]``.
            epsilon: ε of the query (basic composition: added to each scope's total).
            delta: δ of the query (added likewise).
            description: What is being released, for the ledger.
            actor: Who runs the query.

        Returns:
            One ledger entry per scope.

        Raises:
            BudgetExceededError: A scope cannot afford the query; the message says what each has left.
            UnknownScopeError: A scope has no budget.
            InvalidParameterError: ε or δ out of range.
        """
        _check_amounts(epsilon, delta)
        return self.ledger.debit(self._limits_for(scopes), epsilon, delta, description, actor)
