"""Behaviour of the OpenDP-backed mechanisms: closeness at large ε, honest stated accuracy, typed errors."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import polars as pl
import pytest
from privacy_factories import make_people

from tre_lib.privacy import (
    DPResult,
    InvalidParameterError,
    UnknownColumnError,
    dp_count,
    dp_histogram,
    dp_mean,
    dp_quantile,
    dp_sum,
    expected_accuracy,
)

BIG_EPS = 50.0
INCOME_BOUNDS = (0.0, 100_000.0)


def _incomes(people: pd.DataFrame) -> pd.Series:
    return people["income"].dropna().clip(*INCOME_BOUNDS)


def _assert_spent(result: DPResult, epsilon: float) -> None:
    # OpenDP's privacy map says what was spent; it never exceeds what was asked and wastes almost nothing.
    assert epsilon * (1 - 1e-9) <= result.epsilon <= epsilon
    assert result.delta == 0.0


# ------------------------------------------------------------------------------------ close at large ε


@pytest.mark.parametrize("frame", ["pandas", "polars"])
def test_count_is_close_to_the_truth_at_large_epsilon(frame: str, people: pd.DataFrame) -> None:
    data = people if frame == "pandas" else pl.from_pandas(people)
    result = dp_count(data, BIG_EPS)
    assert result.statistic == "count"
    assert isinstance(result.value, int)
    assert abs(result.value - len(people)) <= max(1, 5 * result.accuracy)
    assert "Laplace" in result.mechanism
    _assert_spent(result, BIG_EPS)


def test_count_of_a_column_counts_its_non_missing_values(people: pd.DataFrame) -> None:
    result = dp_count(people, BIG_EPS, column="income")
    truth = people["income"].notna().sum()
    assert truth < len(people)
    assert abs(result.value - truth) <= max(1, 5 * result.accuracy)


def test_integer_sum_is_close_and_uses_discrete_noise(people: pd.DataFrame) -> None:
    result = dp_sum(people, "age", (0, 100), BIG_EPS)
    assert abs(result.value - people["age"].sum()) <= 5 * result.accuracy
    assert result.noise[0]["distribution"] == "Integer Laplace"
    _assert_spent(result, BIG_EPS)


def test_float_sum_clamps_to_bounds_and_drops_missing_values(people: pd.DataFrame) -> None:
    bounds = (0.0, 25_000.0)  # below most incomes, so clamping visibly changes the sum
    result = dp_sum(people, "income", bounds, BIG_EPS)
    truth = people["income"].dropna().clip(*bounds).sum()
    assert truth < people["income"].sum()
    assert abs(result.value - truth) <= 5 * result.accuracy


def test_mean_is_close_to_the_truth_at_large_epsilon(people: pd.DataFrame) -> None:
    result = dp_mean(people, "income", INCOME_BOUNDS, BIG_EPS)
    truth = _incomes(people).mean()
    assert abs(result.value - truth) <= 0.005 * (INCOME_BOUNDS[1] - INCOME_BOUNDS[0])
    assert abs(result.value - truth) <= 3 * result.accuracy
    assert INCOME_BOUNDS[0] <= result.value <= INCOME_BOUNDS[1]
    _assert_spent(result, BIG_EPS)


def test_quantile_picks_a_candidate_next_to_the_true_median(people: pd.DataFrame) -> None:
    result = dp_quantile(people, "age", 0.5, BIG_EPS, candidates=list(range(0, 101)))
    assert result.value in range(0, 101)
    assert abs(result.value - people["age"].median()) <= 2
    assert result.accuracy_unit == "rank"
    _assert_spent(result, BIG_EPS)


def test_quantile_from_bounds_makes_evenly_spaced_candidates(people: pd.DataFrame) -> None:
    result = dp_quantile(people, "income", 0.25, BIG_EPS, bounds=INCOME_BOUNDS, n_candidates=201)
    assert result.value in set(np.linspace(*INCOME_BOUNDS, 201).tolist())
    assert abs(result.value - _incomes(people).quantile(0.25)) <= 1_000  # candidates are 500 apart


def test_histogram_releases_every_category_in_order_with_noisy_zero_for_absent_ones(
    people: pd.DataFrame,
) -> None:
    categories = ["South", "North", "West", "East"]
    result = dp_histogram(people, "region", categories, BIG_EPS)
    assert isinstance(result.value, pd.DataFrame)  # pandas in, pandas out
    assert list(result.value["region"]) == categories
    counts = result.as_dict()
    truth = people["region"].value_counts()
    for category in categories:
        assert abs(counts[category] - truth.get(category, 0)) <= max(1, 5 * result.accuracy)
    assert result.column == "region"


# ----------------------------------------------------------------------------------------------- grouped


def test_grouped_count_with_public_keys_keeps_key_order_and_fills_absent_groups(
    people_pl: pl.DataFrame,
) -> None:
    result = dp_count(people_pl, BIG_EPS, by="sex", keys=["M", "X", "F"])
    assert isinstance(result.value, pl.DataFrame)  # polars in, polars out
    assert result.value["sex"].to_list() == ["M", "X", "F"]
    truth = dict(people_pl.group_by("sex").len().iter_rows())
    got = result.as_dict()
    for key in ("M", "F"):
        assert abs(got[key] - truth[key]) <= max(1, 5 * result.accuracy)
    assert abs(got["X"]) <= max(1, 5 * result.accuracy)


def test_grouped_mean_over_two_columns_with_a_key_dict(people: pd.DataFrame) -> None:
    keys = {"sex": ["F", "M"], "region": ["North", "South", "East"]}
    result = dp_mean(people, "age", (0, 100), BIG_EPS, by=["sex", "region"], keys=keys)
    frame = result.value
    assert len(frame) == 6
    truth = people.groupby(["sex", "region"])["age"].mean()
    for row in frame.itertuples():
        # `accuracy` holds with 95% confidence per cell; six cells at 1x would fail ~1 run in 4.
        assert abs(row.mean - truth[(row.sex, row.region)]) <= 5 * row.accuracy
        assert row.accuracy <= result.accuracy
    assert set(frame.columns) == {"sex", "region", "mean", "count", "accuracy"}


def test_grouped_sum_and_quantile_with_keys(people: pd.DataFrame) -> None:
    sums = dp_sum(people, "age", (0, 100), BIG_EPS, by="region", keys=["North", "South", "East"])
    truth = people.groupby("region")["age"].sum()
    for region, value in sums.as_dict().items():
        assert abs(value - truth[region]) <= 5 * sums.accuracy
    medians = dp_quantile(people, "age", 0.5, BIG_EPS, candidates=list(range(101)), by="sex", keys=["F", "M"])
    truth_median = people.groupby("sex")["age"].median()
    for sex, value in medians.as_dict().items():
        assert abs(value - truth_median[sex]) <= 3


def test_groups_without_keys_are_released_above_a_threshold_with_delta(people: pd.DataFrame) -> None:
    result = dp_count(people, 1.0, by="region", delta=1e-6)
    assert set(result.value["region"]) <= {"North", "South", "East"}
    assert len(result.value) == 3  # every region has hundreds of rows, far above the threshold
    assert result.threshold is not None and result.threshold > 1
    assert 0 < result.delta <= 1e-6
    assert result.epsilon <= 1.0


def test_a_rare_group_is_suppressed_without_keys() -> None:
    frame = make_people(n=1000, region=["North"] * 999 + ["Tiny"])
    result = dp_count(frame, 1.0, by="region", delta=1e-6)
    assert list(result.value["region"]) == ["North"]


def test_float_groups_without_keys_need_max_groups(people: pd.DataFrame) -> None:
    with pytest.raises(InvalidParameterError, match="max_groups"):
        dp_mean(people, "income", INCOME_BOUNDS, 1.0, by="sex", delta=1e-6)
    result = dp_mean(people, "income", INCOME_BOUNDS, BIG_EPS, by="sex", delta=1e-6, max_groups=10)
    assert set(result.value["sex"]) == {"F", "M"}


# ---------------------------------------------------------------------------------------- stated accuracy


@pytest.mark.parametrize(
    "run",
    [
        pytest.param(lambda df, e: dp_count(df, e), id="count"),
        pytest.param(lambda df, e: dp_sum(df, "age", (0, 100), e), id="sum"),
        pytest.param(lambda df, e: dp_mean(df, "income", INCOME_BOUNDS, e), id="mean"),
        pytest.param(lambda df, e: dp_quantile(df, "age", 0.5, e, bounds=(0, 100)), id="quantile"),
        pytest.param(lambda df, e: dp_histogram(df, "sex", ["F", "M"], e), id="histogram"),
    ],
)
def test_stated_accuracy_shrinks_as_epsilon_grows(
    run: Callable[[pd.DataFrame, float], DPResult], people: pd.DataFrame
) -> None:
    accuracies = [run(people, eps).accuracy for eps in (0.1, 1.0, 10.0)]
    assert all(a is not None and a > 0 for a in accuracies)
    assert accuracies[0] > accuracies[1] > accuracies[2]


def test_count_accuracy_is_openDP_discrete_laplace_accuracy(people: pd.DataFrame) -> None:
    import opendp.prelude as dp

    result = dp_count(people, 0.5, contributions=2)
    scale = result.noise[0]["scale"]
    assert scale == pytest.approx(2 / 0.5)  # sensitivity 2 rows per person over ε
    assert result.accuracy == pytest.approx(dp.discrete_laplacian_scale_to_accuracy(scale, 0.05))


def test_stated_count_interval_covers_the_truth_about_95_percent_of_the_time() -> None:
    frame = make_people(n=300)
    hits = [abs((r := dp_count(frame, 0.5)).value - 300) <= r.accuracy for _ in range(200)]
    # The discrete-Laplace interval is exact-or-conservative: expect ~95%; 88% is > 4 sd below.
    assert sum(hits) / len(hits) >= 0.88


def test_stated_mean_interval_covers_the_truth_at_least_95_percent_of_the_time() -> None:
    frame = make_people(n=300)
    truth = _incomes(frame).mean()
    hits = [
        abs((r := dp_mean(frame, "income", INCOME_BOUNDS, 1.0)).value - truth) <= r.accuracy
        for _ in range(150)
    ]
    assert sum(hits) / len(hits) >= 0.9


def test_quantile_rank_accuracy_is_honest() -> None:
    frame = make_people(n=400)
    ages = np.sort(frame["age"].to_numpy())
    candidates = list(range(0, 101, 2))

    def rank_error(c: int) -> float:
        # Rank distance of candidate c from the target rank q*n, as OpenDP scores it.
        below, equal = (ages < c).sum(), (ages == c).sum()
        return abs(below - 0.5 * (len(ages) - equal))

    best = min(rank_error(c) for c in candidates)
    hits = []
    for _ in range(100):
        r = dp_quantile(frame, "age", 0.5, 0.5, candidates=candidates)
        hits.append(rank_error(r.value) - best <= r.accuracy)
    assert sum(hits) / len(hits) >= 0.9


def test_expected_accuracy_matches_a_real_release_without_reading_data(people: pd.DataFrame) -> None:
    assert expected_accuracy("count", 0.7) == pytest.approx(dp_count(people, 0.7).accuracy)
    assert expected_accuracy("sum", 0.7, bounds=INCOME_BOUNDS) == pytest.approx(
        dp_sum(people, "income", INCOME_BOUNDS, 0.7).accuracy
    )
    assert expected_accuracy("mean", 1.0, n_rows=100) > expected_accuracy("mean", 1.0, n_rows=10_000)


def test_contributions_scale_the_noise(people: pd.DataFrame) -> None:
    one = dp_sum(people, "age", (0, 100), 1.0)
    three = dp_sum(people, "age", (0, 100), 1.0, contributions=3)
    assert three.noise[0]["scale"] == pytest.approx(3 * one.noise[0]["scale"])
    assert three.contributions == 3


# -------------------------------------------------------------------------------------------- bad params


@pytest.mark.parametrize("epsilon", [0, -1.0, math.nan, math.inf, "1"])
def test_bad_epsilon_is_refused(epsilon: object, people: pd.DataFrame) -> None:
    with pytest.raises(InvalidParameterError, match="epsilon"):
        dp_count(people, epsilon)  # type: ignore[arg-type]


def test_bounds_lower_above_upper_is_refused(people: pd.DataFrame) -> None:
    with pytest.raises(InvalidParameterError, match=r"bounds lower 100 is above upper 0"):
        dp_sum(people, "age", (100, 0), 1.0)
    with pytest.raises(InvalidParameterError, match="finite"):
        dp_mean(people, "age", (0, math.inf), 1.0)


def test_unknown_column_names_the_columns_there_are(people: pd.DataFrame) -> None:
    with pytest.raises(UnknownColumnError) as info:
        dp_mean(people, "salary", (0, 1), 1.0)
    assert str(info.value).startswith("column 'salary' is not in the data; the columns are 'age', 'income'")
    with pytest.raises(UnknownColumnError):
        dp_count(people, 1.0, by="postcode", keys=["A"])


@pytest.mark.parametrize("q", [0, 1, 1.5, -0.1])
def test_quantile_outside_zero_one_is_refused(q: float, people: pd.DataFrame) -> None:
    with pytest.raises(InvalidParameterError, match="strictly between 0 and 1"):
        dp_quantile(people, "age", q, 1.0, bounds=(0, 100))


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda df: dp_sum(df, "sex", (0, 1), 1.0), "numeric column"),
        (lambda df: dp_count(df, 1.0, by="sex"), "keys=...|delta > 0"),
        (lambda df: dp_count(df, 1.0, keys=["F"]), "only applies to grouped"),
        (lambda df: dp_count(df, 1.0, contributions=0), "contributions"),
        (lambda df: dp_count(df, 1.0, max_rows=100), "more rows than max_rows"),
        (lambda df: dp_count(df, 1.0, delta=2.0), "delta"),
        (lambda df: dp_count(df, 1.0, alpha=1.0), "alpha"),
        (lambda df: dp_quantile(df, "age", 0.5, 1.0), "exactly one of candidates"),
        (lambda df: dp_quantile(df, "age", 0.5, 1.0, candidates=[1], bounds=(0, 1)), "exactly one"),
        (lambda df: dp_histogram(df, "region", [], 1.0), "categories"),
        (lambda df: dp_count(df, 1.0, by="sex", keys={"region": ["North"]}), "no values for group"),
        (lambda df: dp_count([1, 2, 3], 1.0), "pandas or polars"),
    ],
)
def test_bad_parameters_raise_typed_errors_that_say_what_to_do(
    call: Callable[[pd.DataFrame], object], message: str, people: pd.DataFrame
) -> None:
    with pytest.raises(InvalidParameterError, match=message):
        call(people)


def test_before_release_sees_the_spend_and_can_stop_the_release(people: pd.DataFrame) -> None:
    seen: list[tuple[float, float]] = []

    class Stop(Exception):
        pass

    def refuse(epsilon: float, delta: float) -> None:
        seen.append((epsilon, delta))
        raise Stop

    with pytest.raises(Stop):
        dp_mean(people, "age", (0, 100), 0.3, before_release=refuse)
    assert len(seen) == 1
    assert seen[0][0] == pytest.approx(0.3)


def test_bad_parameters_fail_before_before_release_is_called(people: pd.DataFrame) -> None:
    calls: list[float] = []
    with pytest.raises(InvalidParameterError):
        dp_sum(people, "age", (5, 1), 1.0, before_release=lambda e, d: calls.append(e))
    assert calls == []


def test_lazyframe_input_is_accepted(people_pl: pl.DataFrame) -> None:
    result = dp_count(people_pl.lazy(), BIG_EPS)
    assert abs(result.value - people_pl.height) <= max(1, 5 * result.accuracy)


def test_categorical_group_columns_work(people: pd.DataFrame) -> None:
    frame = people.assign(region=people["region"].astype("category"))
    result = dp_histogram(frame, "region", ["North", "South", "East"], BIG_EPS)
    assert result.as_dict().keys() == {"North", "South", "East"}


def test_lazy_parquet_scan_is_accepted(people_pl: pl.DataFrame, tmp_path: Path) -> None:
    path = tmp_path / "view.parquet"
    people_pl.write_parquet(path)
    result = dp_mean(pl.scan_parquet(path), "age", (0, 100), BIG_EPS)
    assert abs(result.value - people_pl["age"].mean()) <= 3 * result.accuracy


def test_lazyframe_with_a_python_udf_is_materialised_instead_of_crashing_opendp() -> None:
    # OpenDP aborts the process on a Python UDF in a plan; this test would kill pytest if it regressed.
    lazy = pl.LazyFrame({"x": np.arange(500)}).with_columns(
        pl.col("x").map_batches(lambda s: s * 2, return_dtype=pl.Int64)
    )
    result = dp_sum(lazy, "x", (0, 1000), BIG_EPS)
    assert abs(result.value - 2 * np.arange(500).sum()) <= 5 * result.accuracy
