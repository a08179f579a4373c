"""Spark and Dask give the same protected tables as pandas, and only per-cell statistics leave the engine."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
import pytest

from tre_lib.disclosure import ProtectedTable, TableSpecError, protect_table

ROWS = 600


def make_people(seed: int = 7, rows: int = ROWS) -> pd.DataFrame:
    """Seeded microdata with rare categories, missing and negative values and a few missing keys."""
    rng = np.random.default_rng(seed)
    df = pd.DataFrame(
        {
            "region": rng.choice(
                ["north", "south", "east", "west", "isles"], rows, p=[0.4, 0.3, 0.2, 0.08, 0.02]
            ),
            "sex": rng.choice(["f", "m"], rows).astype(object),
            "band": rng.choice([1, 2, 3], rows, p=[0.5, 0.45, 0.05]),
            "income": rng.lognormal(3, 1.2, rows),
        }
    )
    df.loc[rng.choice(rows, 15, replace=False), "income"] = np.nan
    df.loc[rng.choice(rows, 6, replace=False), "income"] *= -1
    df.loc[rng.choice(rows, 4, replace=False), "sex"] = None
    return df


@pytest.fixture(scope="module")
def people() -> pd.DataFrame:
    return make_people()


def as_engine(engine: str, df: pd.DataFrame, request: pytest.FixtureRequest) -> Any:
    """The same rows as a Spark or Dask DataFrame."""
    if engine == "spark":
        return request.getfixturevalue("spark").createDataFrame(df)
    import dask.dataframe as dd

    request.getfixturevalue("dask_client")
    return dd.from_pandas(df, npartitions=3)


def assert_same_protection(ours: ProtectedTable, reference: ProtectedTable) -> None:
    """Same table, status, suppression pattern, intervals, notes and per-cell statistics."""
    pd.testing.assert_frame_equal(ours.table, reference.table, check_exact=False, rtol=1e-9)
    assert ours.status == reference.status
    assert [k for k, c in ours.cells.items() if c.primary] == [
        k for k, c in reference.cells.items() if c.primary
    ]
    assert [k for k, c in ours.cells.items() if c.secondary] == [
        k for k, c in reference.cells.items() if c.secondary
    ]
    assert ours.intervals.keys() == reference.intervals.keys()
    for key, (lo, hi) in reference.intervals.items():
        assert ours.intervals[key] == pytest.approx((lo, hi), rel=1e-9, abs=1e-9)
    assert ours.notes == reference.notes
    for key, cell in reference.cells.items():
        got, want = ours.cells[key].stats, cell.stats
        assert (got.n_rows, got.n, got.n_missing, got.n_negative) == (
            want.n_rows,
            want.n,
            want.n_missing,
            want.n_negative,
        ), key
        assert got.total == pytest.approx(want.total, rel=1e-9), key
        assert got.top == pytest.approx(want.top, rel=1e-12), key
        if math.isnan(want.value):
            assert math.isnan(got.value), key
        else:
            assert got.value == pytest.approx(want.value, rel=1e-9), key
        assert {n: v.outcome for n, v in ours.cells[key].verdicts.items()} == {
            n: v.outcome for n, v in cell.verdicts.items()
        }, key


SHAPES = {"2d": ("region", "sex"), "hierarchical": (["region", "band"], "sex")}


@pytest.mark.parametrize("engine", ["spark", "dask"])
@pytest.mark.parametrize("aggfunc", ["count", "sum", "mean", "median"])
@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_engine_gives_the_pandas_result(
    engine: str, aggfunc: str, shape: str, people: pd.DataFrame, request: pytest.FixtureRequest
) -> None:
    index, columns = SHAPES[shape]
    values = None if aggfunc == "count" else "income"
    reference = protect_table(people, index, columns, values=values, aggfunc=aggfunc)
    # The data is chosen so that the check has something to do: suppression and dropped records.
    assert reference.suppressed and reference.notes
    ours = protect_table(as_engine(engine, people, request), index, columns, values=values, aggfunc=aggfunc)
    assert_same_protection(ours, reference)


@pytest.mark.parametrize("engine", ["spark", "dask"])
@pytest.mark.parametrize(("aggfunc", "q"), [("quantile", 0.3), ("std", 0.5), ("count", 0.5)])
def test_engine_gives_the_pandas_result_for_other_statistics(
    engine: str, aggfunc: str, q: float, people: pd.DataFrame, request: pytest.FixtureRequest
) -> None:
    # count with a value column counts the non-missing values, as pandas does.
    reference = protect_table(people, "region", None, values="income", aggfunc=aggfunc, q=q)
    ours = protect_table(
        as_engine(engine, people, request), "region", None, values="income", aggfunc=aggfunc, q=q
    )
    assert_same_protection(ours, reference)


def test_spark_collects_one_row_per_cell(spark: Any, people: pd.DataFrame) -> None:
    from tre_lib.disclosure.engines.spark_engine import spark_cell_frame

    sdf = spark.createDataFrame(people)
    frame = spark_cell_frame(sdf, ["region", "band"], ["sex"], "income", "sum", 0.5, 2, True)
    result = protect_table(sdf, ["region", "band"], "sex", values="income", aggfunc="sum")
    observed = [k for k, c in result.cells.items() if c.stats.n_rows > 0]
    # What the driver collects: one row per observed cell (leaves and margins), never the records.
    assert frame.count() == len(observed) < sdf.count()
    assert set(frame.columns) == {
        "__tre_k0",
        "__tre_k1",
        "__tre_k2",
        "__tre_gid",
        "n_rows",
        "n",
        "total",
        "n_negative",
        "value",
        "top",
    }
    top_sizes = [len(row["top"] or []) for row in frame.select("top").collect()]
    assert max(top_sizes) == 2


def test_dask_computes_only_per_cell_results(dask_client: Any, people: pd.DataFrame) -> None:
    import dask
    import dask.dataframe as dd

    from tre_lib.disclosure.engines.dask_engine import dask_cell_graph

    ddf = dd.from_pandas(people, npartitions=4)
    graph = dask_cell_graph(ddf, ["region", "band"], ["sex"], "income", "median", 0.5, 2, True)
    computed = dict(zip(graph, dask.compute(*graph.values()), strict=True))
    result = protect_table(ddf, ["region", "band"], "sex", values="income", aggfunc="median")
    observed = sum(1 for c in result.cells.values() if c.stats.n_rows > 0)
    frames = {name: obj for name, obj in computed.items() if name != "dropped"}
    # Every computed object is per cell: together one row per observed cell for the statistics, one for the
    # top values, one per cell for the medians; far smaller than the input.
    assert sum(len(obj) for name, obj in frames.items() if name.startswith("summary/")) == observed
    assert sum(len(obj) for name, obj in frames.items() if name.startswith("quantile/")) == observed
    assert len(frames["top"]) == observed
    assert all(len(top) <= 2 for top in frames["top"]["top"])
    assert int(computed["dropped"]) == int(people[["region", "band", "sex"]].isna().any(axis=1).sum())
    assert observed < len(people)


@pytest.mark.parametrize("engine", ["spark", "dask"])
def test_engine_rejects_a_non_numeric_value_column(
    engine: str, people: pd.DataFrame, request: pytest.FixtureRequest
) -> None:
    df = people.assign(label=people["region"].astype(str))
    with pytest.raises(TableSpecError, match="must be numeric"):
        protect_table(as_engine(engine, df, request), "region", "sex", values="label", aggfunc="sum")


@pytest.mark.parametrize("engine", ["spark", "dask"])
def test_engine_rejects_an_unknown_column(
    engine: str, people: pd.DataFrame, request: pytest.FixtureRequest
) -> None:
    with pytest.raises(TableSpecError, match="not in the data"):
        protect_table(as_engine(engine, people, request), "region", "age")


def test_other_objects_are_refused_with_advice() -> None:
    with pytest.raises(TableSpecError, match="pandas, Spark or Dask"):
        protect_table([{"region": "north"}], "region", None)
