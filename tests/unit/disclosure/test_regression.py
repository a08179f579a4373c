from __future__ import annotations

import json

import numpy as np
import pytest
import statsmodels.api as sm

from tre_lib.disclosure import UnsupportedOutputError, check_regression


def _data(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 3))
    y = x @ np.array([1.0, -2.0, 0.5]) + rng.normal(size=n)
    return sm.add_constant(x), y


def test_ols_with_enough_residual_df_passes() -> None:
    x, y = _data(50)
    check = check_regression(sm.OLS(y, x).fit())
    assert check.status == "pass" and check.residual_df == 46 and check.model == "OLS"


def test_ols_with_few_residual_df_fails_with_reason() -> None:
    x, y = _data(12)
    check = check_regression(sm.OLS(y, x).fit())
    assert check.status == "fail"
    assert check.residual_df == 8
    assert any("fewer than the minimum of 10" in r for r in check.reasons)
    assert check_regression(sm.OLS(y, x).fit(), rules={"min_residual_df": 5}).status == "pass"


def test_logit_checks_rare_outcomes() -> None:
    x, y = _data(200)
    common = (y > 0).astype(float)
    assert check_regression(sm.Logit(common, x).fit(disp=0)).status == "pass"
    rare = (y > np.sort(y)[-6]).astype(float)  # 5 events
    check = check_regression(sm.Probit(rare, x).fit(disp=0, maxiter=200))
    assert check.status == "fail"
    outcome = next(v for v in check.verdicts if v.rule == "outcome_classes")
    assert outcome.detail["events"] == 5


def test_record_round_trips_through_json() -> None:
    x, y = _data(30)
    record = check_regression(sm.OLS(y, x).fit()).record()
    assert json.loads(json.dumps(record)) == record
    assert record["versions"]["scipy"] and record["rules"]["min_residual_df"] == 10


def test_not_a_model_is_refused() -> None:
    with pytest.raises(UnsupportedOutputError, match="fit"):
        check_regression(sm.OLS(np.ones(3), np.ones(3)))
