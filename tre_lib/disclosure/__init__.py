"""Statistical disclosure control of research outputs.

Tables (:func:`protect_table`): per-cell rules judged independently (threshold, (n,k)-dominance, p%, zeros,
negative and missing values, min/max), secondary suppression verified by an attacker LP
(:func:`attacker_intervals`) including against a contributor who knows their own value, or base rounding
(controlled rounding keeps tables additive). Regressions (:func:`check_regression`): residual degrees of
freedom. Parameters come from profiles in ``policies/disclosure/profiles`` (:func:`load_profile`).

Example:
    >>> import pandas as pd
    >>> from tre_lib.disclosure import protect_table
    >>> df = pd.DataFrame({"region": list("nnnnnnnnnnnnssssssssssss"), "sex": list("fm" * 12)})
    >>> result = protect_table(df, "region", "sex", rules={"threshold": 5})
    >>> result.status
    'pass'
"""

from tre_lib.disclosure.audit import AuditError, attacker_intervals
from tre_lib.disclosure.errors import (
    DisclosureError,
    ProfileNotFoundError,
    RulesError,
    TableSpecError,
    UnsupportedOutputError,
)
from tre_lib.disclosure.regression import RegressionCheck, check_regression
from tre_lib.disclosure.rounding import RoundingError
from tre_lib.disclosure.rules import Rules, load_profile
from tre_lib.disclosure.table import CellFinding, ProtectedTable, protect_table

__all__ = [
    "AuditError",
    "CellFinding",
    "DisclosureError",
    "ProfileNotFoundError",
    "ProtectedTable",
    "RegressionCheck",
    "RoundingError",
    "Rules",
    "RulesError",
    "TableSpecError",
    "UnsupportedOutputError",
    "attacker_intervals",
    "check_regression",
    "load_profile",
    "protect_table",
]
