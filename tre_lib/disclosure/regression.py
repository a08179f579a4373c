"""Disclosure checks for regression outputs (statsmodels OLS, Logit, Probit and other fitted models).

A model with few residual degrees of freedom is close to a saturated one: its coefficients and fitted values
can reproduce individual records. We require ``df_resid >= rules.min_residual_df`` (default 10, as ACRO
and the SDAP/ONS guidance). For binary-outcome models (Logit, Probit) we also require each outcome class to
have at least ``rules.threshold`` observations: a model on 3 events describes 3 people.

Each coefficient needs support too: the units (records, or distinct ``units`` when given) where its
regressor is non-zero must number at least ``rules.threshold``, and for an indicator (0/1) regressor in a
model with a constant so must the units where it is zero (a dummy on one record, or on all but one,
lets that record's outcome be read off the coefficients). The record lists every coefficient's support.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from tre_lib.disclosure.errors import UnsupportedOutputError
from tre_lib.disclosure.primary import Verdict
from tre_lib.disclosure.rules import Rules, coerce_rules
from tre_lib.disclosure.versions import library_versions

_BINARY = {"Logit", "Probit"}


@dataclass(frozen=True)
class RegressionCheck:
    """Outcome of :func:`check_regression`.

    Attributes:
        status: "pass" or "fail".
        model: the statsmodels model class, e.g. "OLS".
        residual_df: residual degrees of freedom.
        nobs: number of observations.
        verdicts: each rule's finding.
        rules: parameters used.
    """

    status: Literal["pass", "fail"]
    model: str
    residual_df: float
    nobs: int
    verdicts: tuple[Verdict, ...]
    rules: Rules
    support: tuple[dict[str, Any], ...] = ()
    created_at: str = field(default_factory=lambda: dt.datetime.now(dt.UTC).isoformat())
    params_hash: str = ""

    @property
    def reasons(self) -> list[str]:
        """Human-readable reasons, one per rule."""
        return [f"{v.rule}: {v.reason}" for v in self.verdicts]

    def record(self) -> dict[str, Any]:
        """JSON-serialisable disclosure-control record of this check."""
        return {
            "kind": "regression",
            "status": self.status,
            "model": self.model,
            "residual_df": self.residual_df,
            "nobs": self.nobs,
            "findings": [v.as_dict() for v in self.verdicts],
            "coefficient_support": [dict(entry) for entry in self.support],
            "rules": self.rules.as_dict(),
            "versions": library_versions(),
            "created_at": self.created_at,
            "output_hash": self.params_hash,
        }


def check_regression(
    result: Any,
    rules: Rules | Mapping[str, Any] | str | None = None,
    directory: str | Path | None = None,
    *,
    units: Any = None,
) -> RegressionCheck:
    """Check a fitted statsmodels result for disclosure risk.

    Args:
        result: a fitted statsmodels results object (``sm.OLS(...).fit()``, ``sm.Logit(...).fit()``, ...).
        rules: profile name, dict or Rules (``min_residual_df``, and ``threshold`` for binary outcomes).
        directory: profiles directory when ``rules`` is a profile name.
        units: the unit id (person, business) of each observation, in the model's row order; support then
            counts distinct units instead of records.

    Returns:
        The check, with ``status`` "pass" or "fail", reasons and ``record()``.

    Raises:
        UnsupportedOutputError: ``result`` is not a fitted model with residual degrees of freedom.

    Example:
        >>> import numpy as np, statsmodels.api as sm
        >>> x = sm.add_constant(np.arange(30.0))
        >>> check_regression(sm.OLS(np.arange(30.0) * 2 + np.sin(np.arange(30)), x).fit()).status
        'pass'
    """
    parsed = coerce_rules(rules, directory)
    if not hasattr(result, "df_resid") or not hasattr(result, "model"):
        raise UnsupportedOutputError(
            "check_regression needs a fitted statsmodels result (with df_resid), "
            f"got {type(result).__name__}; call .fit() on the model first"
        )
    model_name = type(result.model).__name__
    dof = float(result.df_resid)
    nobs = int(getattr(result, "nobs", len(np.asarray(result.model.endog))))
    verdicts = [
        Verdict(
            "residual_df",
            "pass" if dof >= parsed.min_residual_df else "fail",
            f"{dof:g} residual degrees of freedom, "
            + ("at least" if dof >= parsed.min_residual_df else "fewer than")
            + f" the minimum of {parsed.min_residual_df}",
            {"residual_df": dof, "minimum": parsed.min_residual_df},
        )
    ]
    if model_name in _BINARY:
        endog = np.asarray(result.model.endog, dtype=float)
        events = int(np.sum(endog == 1))
        non_events = int(np.sum(endog == 0))
        smallest = min(events, non_events)
        verdicts.append(
            Verdict(
                "outcome_classes",
                "pass" if smallest >= parsed.threshold else "fail",
                f"{events} events and {non_events} non-events; the smaller class "
                + ("meets" if smallest >= parsed.threshold else "is below")
                + f" the threshold of {parsed.threshold}",
                {"events": events, "non_events": non_events, "threshold": parsed.threshold},
            )
        )
    support = _coefficient_support(result, units)
    weak = [
        entry
        for entry in support
        if not entry["constant"]
        and min(
            entry["nonzero"],
            entry["zero"] if entry["indicator"] and entry["with_constant"] else entry["nonzero"],
        )
        < parsed.threshold
    ]
    what = "units" if units is not None else "records"
    verdicts.append(
        Verdict(
            "coefficient_support",
            "fail" if weak else "pass",
            (
                "coefficient(s) "
                + ", ".join(f"{e['name']!r} ({e['nonzero']} non-zero, {e['zero']} zero)" for e in weak)
                + f" rest on fewer {what} than the threshold of {parsed.threshold}: their values "
                "disclose those records' outcomes; merge the categories or drop the regressor"
                if weak
                else f"every coefficient rests on at least {parsed.threshold} {what}"
            ),
            {"threshold": parsed.threshold, "counted": what, "weak": [e["name"] for e in weak]},
        )
    )
    status: Literal["pass", "fail"] = "fail" if any(v.outcome == "fail" for v in verdicts) else "pass"
    params = np.asarray(getattr(result, "params", []), dtype=float)
    digest = hashlib.sha256(
        json.dumps([model_name, dof, nobs, params.round(12).tolist()]).encode()
    ).hexdigest()
    return RegressionCheck(
        status, model_name, dof, nobs, tuple(verdicts), parsed, support=tuple(support), params_hash=digest
    )


def _coefficient_support(result: Any, units: Any) -> list[dict[str, Any]]:
    """Per regressor: how many units (records) have it non-zero and zero, and whether it is an indicator."""
    exog = np.asarray(getattr(result.model, "exog", np.empty((0, 0))), dtype=float)
    if exog.ndim != 2 or exog.size == 0:
        return []
    names = list(getattr(result.model, "exog_names", None) or [f"x{j}" for j in range(exog.shape[1])])
    ids = None
    if units is not None:
        ids = np.asarray(units)
        if ids.shape[0] != exog.shape[0]:
            raise UnsupportedOutputError(
                f"units has {ids.shape[0]} entries but the model has {exog.shape[0]} observations; pass the "
                "unit id of each observation in the model's row order"
            )

    def count(mask: np.ndarray) -> int:
        return int(mask.sum()) if ids is None else len(set(ids[mask].tolist()))

    constant = [bool(np.all(col == col[0]) and col[0] != 0) for col in exog.T]
    with_constant = any(constant)
    out = []
    for j, col in enumerate(exog.T):
        nonzero = col != 0
        out.append(
            {
                "name": str(names[j]),
                "nonzero": count(nonzero),
                "zero": count(~nonzero),
                "indicator": bool(np.all(np.isin(col, (0.0, 1.0)))),
                "constant": constant[j],
                "with_constant": with_constant,
            }
        )
    return out
