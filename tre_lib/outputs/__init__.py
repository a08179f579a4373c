"""The researcher's side of the airlock: build outputs, stage them, request their release.

In a workspace::

    from tre_lib.outputs import Airlock
    airlock = Airlock.from_env()              # TRE_API_URL, TRE_API_TOKEN, TRE_PROJECT_ID
    table = airlock.table(df, "region", "sex", name="admissions.csv", dataset="hes")
    table.result.status                        # the local pre-check (a convenience; the server re-checks)
    request = airlock.request_release("Admissions by region", "For the annual report")
    request["state"], [f["status"] for f in request["files"]]

Every output carries its declared computation (:mod:`tre_lib.outputs.specs`) and the rows it was computed
from, so the control plane re-runs the same checks on its side; the local result is never trusted.
"""

from tre_lib.outputs.client import Airlock, AirlockError, StagedOutput
from tre_lib.outputs.specs import (
    Filter,
    RegressionSpec,
    SpecError,
    TableComparison,
    TableSpec,
    apply_filters,
    compare_tables,
    fit_regression,
)

__all__ = [
    "Airlock",
    "AirlockError",
    "Filter",
    "RegressionSpec",
    "SpecError",
    "StagedOutput",
    "TableComparison",
    "TableSpec",
    "apply_filters",
    "compare_tables",
    "fit_regression",
]
