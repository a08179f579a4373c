"""Differential privacy for the TRE: OpenDP mechanisms with stated accuracy, and a persistent budget.

* Mechanisms (:mod:`tre_lib.privacy.mechanisms`): :func:`dp_count`, :func:`dp_sum`, :func:`dp_mean`,
  :func:`dp_quantile`, :func:`dp_histogram`, each returning a :class:`DPResult` with the value, the
  mechanism, the ε/δ spent and the half-width of a 95% confidence interval from OpenDP's accuracy utilities.
  Privacy unit: each person contributes at most ``contributions`` rows (default 1).
* Budget (:mod:`tre_lib.privacy.budget`): :class:`PrivacyAccountant` charges every query to all its
  :class:`Scope` s atomically over a :class:`BudgetLedger` (:class:`InMemoryLedger`, :class:`JsonFileLedger`);
  :func:`run_query` charges before it releases.
* :func:`plot_accuracy` draws stated accuracy against ε.
"""

from tre_lib.privacy.budget import (
    Budget,
    BudgetLedger,
    InMemoryLedger,
    JsonFileLedger,
    LedgerEntry,
    PrivacyAccountant,
    Scope,
)
from tre_lib.privacy.errors import (
    BudgetExceededError,
    InvalidParameterError,
    LedgerError,
    MechanismError,
    PrivacyError,
    UnknownColumnError,
    UnknownScopeError,
)
from tre_lib.privacy.mechanisms import (
    DEFAULT_MAX_ROWS,
    DPResult,
    dp_count,
    dp_histogram,
    dp_mean,
    dp_quantile,
    dp_sum,
    expected_accuracy,
)
from tre_lib.privacy.plot import plot_accuracy
from tre_lib.privacy.release import run_query

__all__ = [
    "DEFAULT_MAX_ROWS",
    "Budget",
    "BudgetExceededError",
    "BudgetLedger",
    "DPResult",
    "InMemoryLedger",
    "InvalidParameterError",
    "JsonFileLedger",
    "LedgerEntry",
    "LedgerError",
    "MechanismError",
    "PrivacyAccountant",
    "PrivacyError",
    "Scope",
    "UnknownColumnError",
    "UnknownScopeError",
    "dp_count",
    "dp_histogram",
    "dp_mean",
    "dp_quantile",
    "dp_sum",
    "expected_accuracy",
    "plot_accuracy",
    "run_query",
]
