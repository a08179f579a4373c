"""The server's table re-check counts the profile's unit and refuses an over-limit table before protection."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

from tre_lib.disclosure import Rules, load_profile
from tre_lib.outputs.specs import TableSpec
from tre_platform.api.releases import checks
from tre_platform.api.releases.files import FilePolicy


def _policy(max_cells: int) -> FilePolicy:
    return FilePolicy(
        kinds={},
        max_files=10,
        max_total_bytes=10**9,
        max_data_bytes=10**9,
        data_formats=("csv",),
        max_table_cells=max_cells,
        source="test",
    )


def test_table_over_the_server_limit_fails_before_any_protection(monkeypatch: pytest.MonkeyPatch) -> None:
    from tre_lib.disclosure import table

    def no_work(*args: object, **kwargs: object) -> None:
        raise AssertionError("the server protected a table over its cell limit")

    monkeypatch.setattr(table, "evaluate_cell", no_work)
    rng = np.random.default_rng(0)
    data = pd.DataFrame({"r": rng.integers(0, 20_000, 60_000), "c": rng.integers(0, 2, 60_000)})
    result = checks.check_table(
        TableSpec(index=("r",), columns=("c",)), b"r,0,1\n", data, Rules(), _policy(5000)
    )
    assert result["status"] == "fail"
    assert any("at most 5000" in finding for finding in result["findings"])


def test_server_counts_the_profiles_unit_when_the_view_has_it() -> None:
    rows = [("n", "a", "biz-1")] * 12 + [
        (r, c, f"{r}{c}{i}") for r, c in (("n", "b"), ("s", "a"), ("s", "b")) for i in range(12)
    ]
    data = pd.DataFrame(rows, columns=["r", "c", "business_id"])
    rules = load_profile("business-tier2")
    result = checks.check_table(
        TableSpec(index=("r",), columns=("c",)), b"r,a,b,All\n", data, rules, _policy(5000)
    )
    assert result["record"]["contributors"] == {"counted": "units", "unit": "business_id"}
    assert ["n", "a"] in result["record"]["suppression"]["primary"]


def test_strictest_keeps_a_declared_unit_and_the_lowest_cell_limit() -> None:
    merged = checks.strictest(
        [load_profile("default"), dataclasses.replace(load_profile("business-tier2"), max_cells=500)]
    )
    assert merged.unit == "business_id" and merged.max_cells == 500


def test_server_regression_check_counts_support_in_units() -> None:
    from tre_lib.outputs.specs import RegressionSpec

    rng = np.random.default_rng(3)
    n = 60
    dummy = np.zeros(n)
    dummy[:12] = 1.0  # twelve records, one person
    data = pd.DataFrame(
        {
            "y": rng.normal(size=n),
            "x": rng.normal(size=n),
            "d": dummy,
            "person_id": ["p0"] * 12 + [f"p{i}" for i in range(1, n - 11)],
        }
    )
    spec = RegressionSpec.from_dict({"model": "ols", "outcome": "y", "predictors": ["x", "d"]})
    by_rows = checks.check_regression_output(spec, b"term,coef\n", data, Rules())
    by_units = checks.check_regression_output(spec, b"term,coef\n", data, Rules(unit="person_id"))
    assert "coefficient_support: every" in " ".join(by_rows["findings"])
    assert by_units["status"] == "fail"
