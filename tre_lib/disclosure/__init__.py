"""Statistical disclosure control of research outputs.

Tables (:func:`protect_table`): per-cell rules judged independently (threshold, (n,k)-dominance, p%, zeros,
negative and missing values, min/max), secondary suppression verified by an attacker LP
(:func:`attacker_intervals`) including against a contributor who knows their own value, or base rounding
(controlled rounding keeps tables additive). Regressions (:func:`check_regression`): residual degrees of
freedom. Parameters come from profiles in ``policies/disclosure/profiles`` (:func:`load_profile`).
``protect_table`` takes pandas, Spark or Dask DataFrames: the distributed engines (:mod:`.engines`) compute
the per-cell statistics in the cluster and return only those. Differencing (:func:`check_differencing`):
a new table is checked against a :class:`ReleaseLedger` of the tables already released from the same
dataset.

Example:
    >>> import pandas as pd
    >>> from tre_lib.disclosure import protect_table
    >>> df = pd.DataFrame({"region": list("nnnnnnnnnnnnssssssssssss"), "sex": list("fm" * 12)})
    >>> result = protect_table(df, "region", "sex", rules={"threshold": 5})
    >>> result.status
    'pass'
"""

from tre_lib.disclosure.audit import AuditError, attacker_intervals
from tre_lib.disclosure.differencing import (
    CategoryFilter,
    DifferencingError,
    DifferencingFinding,
    InMemoryReleaseLedger,
    ReleasedTable,
    ReleaseLedger,
    ReleaseScope,
    check_differencing,
)
from tre_lib.disclosure.errors import (
    DisclosureError,
    ProfileNotFoundError,
    RulesError,
    TableSpecError,
    TableTooLargeError,
    UnsupportedOutputError,
)
from tre_lib.disclosure.regression import RegressionCheck, check_regression
from tre_lib.disclosure.rounding import RoundingError
from tre_lib.disclosure.rules import Rules, load_profile
from tre_lib.disclosure.table import CellFinding, ProtectedTable, protect_table

__all__ = [
    "AuditError",
    "CategoryFilter",
    "CellFinding",
    "DifferencingError",
    "DifferencingFinding",
    "DisclosureError",
    "InMemoryReleaseLedger",
    "ProfileNotFoundError",
    "ProtectedTable",
    "RegressionCheck",
    "ReleaseLedger",
    "ReleaseScope",
    "ReleasedTable",
    "RoundingError",
    "Rules",
    "RulesError",
    "TableSpecError",
    "TableTooLargeError",
    "UnsupportedOutputError",
    "attacker_intervals",
    "check_differencing",
    "check_regression",
    "load_profile",
    "protect_table",
]
