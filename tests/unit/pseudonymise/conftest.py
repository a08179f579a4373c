"""Fixtures for the pseudonymisation tests: one Spark session, one Dask cluster, and an engine runner."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pandas as pd
import polars as pl
import pyarrow as pa
import pytest
from hypothesis import settings

# Hypothesis' default deadline is a wall-clock limit per example; the house rules forbid those.
settings.register_profile("tre-pseudonymise", deadline=None, derandomize=False)
settings.load_profile("tre-pseudonymise")

Values = list[Any]
Runner = Callable[[str, Values, bytes], list[str | None]]

# "arrow" runs the compiled helper when it is installed; "arrow_python" always runs the pure-Python path.
NON_SPARK_ENGINES = ("python", "pandas", "polars_series", "polars_expr", "arrow", "arrow_python", "dask")
SPARK_ENGINES = ("spark_sha2", "spark_builtin", "spark_arrow_udf", "spark_pandas_udf", "spark_dataframe")
ALL_ENGINES = NON_SPARK_ENGINES + SPARK_ENGINES


def _null(v: Any) -> Any:
    return None if v is None or v is pd.NA else v


def _run(engine: str, values: Values, key: bytes, request: pytest.FixtureRequest) -> list[str | None]:
    from tre_lib.pseudonymise import hmac_sha256

    if engine == "python":
        return hmac_sha256(values, key)  # type: ignore[no-any-return]
    if engine == "pandas":
        return [_null(v) for v in hmac_sha256(pd.Series(values, dtype=object), key).tolist()]
    if engine == "arrow":
        return hmac_sha256(pa.array(values), key).to_pylist()  # type: ignore[no-any-return]
    if engine == "arrow_python":
        from tre_lib.pseudonymise._core import HmacKey, _hashable, _hex_python

        return _hex_python(_hashable(pa.array(values)), HmacKey(key)).to_pylist()  # type: ignore[no-any-return]
    if engine in ("polars_series", "polars_expr"):
        series = pl.Series("v", values)
        if engine == "polars_series":
            return hmac_sha256(series, key).to_list()  # type: ignore[no-any-return]
        frame = pl.DataFrame({"v": series}).lazy().select(hmac_sha256(pl.col("v"), key))
        return frame.collect()["v"].to_list()
    if engine == "dask":
        import dask
        import dask.dataframe as dd

        request.getfixturevalue("dask_client")
        # Dask turns object columns into strings by default, which cannot hold binary IDs.
        binary = any(isinstance(v, bytes) for v in values)
        with dask.config.set({"dataframe.convert-string": not binary}):
            ds = dd.from_pandas(pd.Series(values, dtype=object, name="v"), npartitions=2)
        return [_null(v) for v in hmac_sha256(ds, key).compute().tolist()]
    if engine.startswith("spark_"):
        from pyspark.sql import functions as F
        from pyspark.sql import types as T

        from tre_lib.pseudonymise import spark_hmac_sha256, spark_pseudonymise

        session = request.getfixturevalue("spark")
        present = [v for v in values if v is not None]
        if present and all(isinstance(v, bytes) for v in present):
            dtype: T.DataType = T.BinaryType()
            rows = [(None if v is None else bytearray(v),) for v in values]
        elif present and all(isinstance(v, int) for v in present):
            dtype, rows = T.LongType(), [(v,) for v in values]
        else:
            dtype, rows = T.StringType(), [(v,) for v in values]
        schema = T.StructType([T.StructField("i", T.IntegerType()), T.StructField("v", dtype)])
        df = session.createDataFrame([(i, *row) for i, row in enumerate(rows)], schema)
        if engine == "spark_dataframe":
            out = spark_pseudonymise(df, ["v"], key)
        else:
            out = df.select(
                "i", spark_hmac_sha256(F.col("v"), key, method=engine.removeprefix("spark_")).alias("v")
            )
        return [row["v"] for row in out.orderBy("i").collect()]
    raise AssertionError(f"unknown engine {engine}")


@pytest.fixture(scope="session", params=ALL_ENGINES)
def engine(request: pytest.FixtureRequest) -> str:
    """Each engine name in turn; tests taking it run once per engine."""
    return str(request.param)


@pytest.fixture(scope="session", params=NON_SPARK_ENGINES)
def local_engine(request: pytest.FixtureRequest) -> str:
    """Each in-process engine (Python, pandas, polars, Arrow, Dask) in turn."""
    return str(request.param)


@pytest.fixture(scope="session", params=SPARK_ENGINES)
def spark_engine(request: pytest.FixtureRequest) -> str:
    """Each Spark implementation in turn: ``spark_<method>`` columns, or ``spark_dataframe``."""
    return str(request.param)


@pytest.fixture(scope="session")
def run_engine(request: pytest.FixtureRequest) -> Runner:
    """Return ``run(engine, values, key) -> list of hex or None`` for any engine in ALL_ENGINES."""

    def run(engine: str, values: Values, key: bytes) -> list[str | None]:
        return _run(engine, values, key, request)

    return run
