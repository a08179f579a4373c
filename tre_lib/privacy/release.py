"""Run a differentially private query against a budget: charge first, release second."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from tre_lib.privacy.budget import PrivacyAccountant, ScopeLike
from tre_lib.privacy.mechanisms import DPResult


def _describe_call(mechanism: Callable[..., DPResult], kwargs: dict[str, Any]) -> str:
    shown = {
        k: v
        for k, v in kwargs.items()
        if isinstance(v, str | int | float | bool | tuple | type(None)) and k != "before_release"
    }
    args = ", ".join(f"{k}={v!r}" for k, v in shown.items())
    return f"{getattr(mechanism, '__name__', 'query')}({args})"


def run_query(
    accountant: PrivacyAccountant,
    scopes: Sequence[ScopeLike],
    mechanism: Callable[..., DPResult],
    /,
    *args: Any,
    actor: str,
    description: str | None = None,
    **kwargs: Any,
) -> DPResult:
    """Run ``mechanism(*args, **kwargs)`` and charge its (ε, δ) to every scope BEFORE anything is released.

    The mechanism validates its parameters and resolves its OpenDP measurement, then calls the
    ``before_release`` hook with the ε/δ it actually spends; the hook debits the ledger atomically on all
    ``scopes``. If any scope cannot afford it, :class:`BudgetExceededError` propagates and the data is never
    read, so a value is never released without being paid for. A query with bad parameters fails before the
    charge and costs nothing.

    Args:
        accountant: The budget accountant.
        scopes: E.g. ``[("project", "P1"), ("dataset", "hospital_episodes")]``.
        mechanism: One of ``dp_count``, ``dp_sum``, ``dp_mean``, ``dp_quantile``, ``dp_histogram`` (or any
            function taking a ``before_release`` keyword with the same contract).
        *args: Positional arguments of the mechanism (the data frame first).
        actor: Who runs the query (recorded in the ledger).
        description: What is released; by default the mechanism's name and simple arguments.
        **kwargs: Keyword arguments of the mechanism.

    Returns:
        The mechanism's :class:`DPResult`.

    Example:
        >>> import pandas as pd
        >>> from tre_lib.privacy import Budget, InMemoryLedger, PrivacyAccountant, dp_count
        >>> acc = PrivacyAccountant(InMemoryLedger(), {("project", "P1"): Budget(1.0)})
        >>> r = run_query(acc, [("project", "P1")], dp_count, pd.DataFrame({"x": range(100)}),
        ...               epsilon=0.5, actor="alice")
        >>> acc.remaining(("project", "P1")).epsilon <= 0.5 + 1e-9
        True
    """
    if "before_release" in kwargs:
        raise TypeError("run_query sets before_release itself; do not pass it")
    text = description or _describe_call(mechanism, kwargs)

    def _charge(epsilon: float, delta: float) -> None:
        accountant.charge(scopes, epsilon, delta, description=text, actor=actor)

    return mechanism(*args, before_release=_charge, **kwargs)
