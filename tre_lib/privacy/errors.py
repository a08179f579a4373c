"""Typed errors of the differential-privacy library.

Every message says what went wrong and what to do next. A message never contains a value computed from the
private data (no exact counts, sums or row numbers), so it is safe to show to a researcher.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


class PrivacyError(Exception):
    """Base class of every error raised by :mod:`tre_lib.privacy`."""


class InvalidParameterError(PrivacyError, ValueError):
    """A parameter is out of range (epsilon <= 0, bounds lower > upper, q outside (0, 1), ...)."""


class UnknownColumnError(PrivacyError, KeyError):
    """A column named in a query is not in the data frame."""

    def __init__(self, column: str, available: Sequence[str]) -> None:
        self.column = column
        self.available = tuple(available)
        shown = ", ".join(repr(c) for c in self.available[:20])
        more = f" (and {len(self.available) - 20} more)" if len(self.available) > 20 else ""
        super().__init__(
            f"column {column!r} is not in the data; the columns are {shown}{more}. "
            "Check the spelling or select the column into the frame first."
        )

    def __str__(self) -> str:
        # KeyError.__str__ would repr() the message and wrap it in quotes.
        return str(self.args[0])


class UnknownScopeError(PrivacyError, LookupError):
    """A query was charged to a scope that has no privacy budget: deny by default."""


class LedgerError(PrivacyError):
    """The budget ledger could not be read or written (corrupt file, unreadable path)."""


@dataclass(frozen=True)
class ScopeRemaining:
    """What one scope has left when a charge was refused.

    Attributes:
        scope: Printable scope, e.g. ``"project P1"``.
        epsilon_left: Epsilon still available (never negative).
        epsilon_limit: The scope's total epsilon.
        delta_left: Delta still available (never negative).
        delta_limit: The scope's total delta.
    """

    scope: str
    epsilon_left: float
    epsilon_limit: float
    delta_left: float
    delta_limit: float


def _fmt_budget(value: float) -> str:
    # Two decimals reads well for budgets like 1.00 or 0.35; tiny remainders would show as 0.00, so fall
    # back to significant figures there.
    if value == 0 or abs(value) >= 0.01:
        return f"{value:.2f}"
    return f"{value:.2g}"


class BudgetExceededError(PrivacyError):
    """A charge would take at least one scope over its budget; nothing was charged on any scope.

    The message lists what remains for every scope of the charge, then what the query needs, e.g.
    ``"project P1 has ε=0.35 of 1.00 left; this query needs ε=0.5. ..."``.
    """

    def __init__(self, remaining: Sequence[ScopeRemaining], epsilon: float, delta: float) -> None:
        self.remaining = tuple(remaining)
        self.epsilon = epsilon
        self.delta = delta
        show_delta = delta > 0 or any(r.delta_limit > 0 for r in self.remaining)
        parts = []
        for r in self.remaining:
            text = f"{r.scope} has ε={_fmt_budget(r.epsilon_left)} of {_fmt_budget(r.epsilon_limit)}"
            if show_delta:
                text += f" and δ={r.delta_left:.3g} of {r.delta_limit:.3g}"
            parts.append(text + " left")
        needs = f"ε={epsilon:g}" + (f", δ={delta:.3g}" if show_delta else "")
        super().__init__(
            f"{'; '.join(parts)}; this query needs {needs}. Nothing was charged or released: "
            "use a smaller epsilon, or ask the data owner to raise the budget."
        )


class MechanismError(PrivacyError):
    """OpenDP refused to build the private query (an unsupported column type or parameter combination)."""
