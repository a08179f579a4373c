"""Data quality dimensions of the Government Data Quality Framework, on pandas, Dask and Spark.

Completeness, uniqueness, validity, consistency and timeliness, each a pure function of a DataFrame
returning a JSON-ready result; :func:`assess` computes all five.

Example:
    >>> from tre_lib.quality import ValidityRule, assess
    >>> assess(df, validity_rules=[ValidityRule("age", min=0, max=120)]).to_dict()["validity"]["overall"]
"""

from tre_lib.quality.dimensions import (
    CHECKS,
    Completeness,
    Consistency,
    ConsistencyRule,
    QualityAssessment,
    Timeliness,
    Uniqueness,
    Validity,
    ValidityRule,
    assess,
    completeness,
    consistency,
    engine_of,
    timeliness,
    uniqueness,
    validity,
)

__all__ = [
    "CHECKS",
    "Completeness",
    "Consistency",
    "ConsistencyRule",
    "QualityAssessment",
    "Timeliness",
    "Uniqueness",
    "Validity",
    "ValidityRule",
    "assess",
    "completeness",
    "consistency",
    "engine_of",
    "timeliness",
    "uniqueness",
    "validity",
]
