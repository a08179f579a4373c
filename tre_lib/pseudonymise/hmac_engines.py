"""``hmac_sha256``: one call that pseudonymises Python sequences, pandas, polars, Dask and Spark columns.

Dispatch looks at the type only in libraries that are already imported, so a plain-Python caller never
pays for importing Spark or Dask.
"""

from __future__ import annotations

import functools
import sys
from typing import Any, cast

from tre_lib.pseudonymise._core import HmacKey, as_hmac_key, hmac_arrow, hmac_list, hmac_pandas
from tre_lib.pseudonymise.errors import UnsupportedValueError

__all__ = ["hmac_dask", "hmac_polars", "hmac_sha256"]


def _polars_series(series: Any, key: HmacKey) -> Any:
    import polars as pl

    return pl.Series(series.name, hmac_arrow(series.to_arrow(), key), dtype=pl.String)


def hmac_polars(values: Any, key: bytes | HmacKey) -> Any:
    """HMAC a polars Series (eagerly) or Expr (lazily, via ``map_batches``); returns the same kind, String.

    Example:
        >>> lf.with_columns(hmac_polars(pl.col("person_id"), key).alias("pid"))  # doctest: +SKIP
    """
    import polars as pl

    hk = as_hmac_key(key)
    if isinstance(values, pl.Series):
        return _polars_series(values, hk)
    # is_elementwise lets polars stream the batches and run it per group without changing results.
    return values.map_batches(
        functools.partial(_polars_series, key=hk), return_dtype=pl.String, is_elementwise=True
    )


def hmac_dask(series: Any, key: bytes | HmacKey) -> Any:
    """HMAC a dask.dataframe Series partition by partition; the key's task token is a keyed fingerprint."""
    import pandas as pd

    hk = as_hmac_key(key)
    dtype = series.dtype if isinstance(series.dtype, pd.StringDtype) else object
    meta = pd.Series([], dtype=dtype, name=series.name)
    return series.map_partitions(hmac_pandas, hk, meta=meta)


def _module_type(name: str, attr: str) -> type | None:
    module = sys.modules.get(name)
    return getattr(module, attr, None) if module is not None else None


def hmac_sha256(values: Any, key: bytes | HmacKey) -> Any:
    """Exact RFC 2104 HMAC-SHA256 as lowercase hex, for whatever column type ``values`` is.

    Strings are hashed as UTF-8, integers as their decimal text (``7`` and ``"7"`` agree), bytes as is;
    nulls stay null. Floats and bools are refused: convert ID columns to text or integers first.

    Columns (and lists of 1,024 or more values) are hashed in C over their Arrow buffers, on every core,
    when the compiled helper is installed (:func:`fast_hmac_available`); otherwise in pure Python, with the
    same result. Arrow, polars and ``string[pyarrow]`` columns are the fastest: an ``object`` Series
    needs one Python string per row (docs/adr/0007-fast-hmac.md).

    ============================================  ==========================================================
    ``values``                                    returns
    ============================================  ==========================================================
    list, tuple or other iterable of str/int/None  ``list[str | None]``
    ``pandas.Series``                             ``pandas.Series`` (same index and name)
    ``polars.Series`` / ``polars.Expr``           the same kind, dtype ``String``
    ``dask.dataframe.Series``                     lazy ``dask.dataframe.Series``
    ``pyarrow.Array`` / ``ChunkedArray``          ``pyarrow.Array`` of ``string``
    ``pyspark.sql.Column``                        ``Column`` (an Arrow UDF; see :func:`spark_hmac_sha256`)
    ============================================  ==========================================================

    Args:
        values: The identifiers.
        key: The HMAC key, normally 32 bytes from :func:`derive_project_key`.

    Returns:
        The HMACs, in the same container kind as ``values``.

    Raises:
        InvalidKeyError: ``key`` is not bytes or is empty.
        UnsupportedValueError: A value or column type cannot be pseudonymised unambiguously.

    Example:
        >>> hmac_sha256(["a", 1, None], b"k" * 32)[2] is None
        True
    """
    hk = as_hmac_key(key)
    spark_column = _module_type("pyspark.sql", "Column")
    if spark_column is not None and isinstance(values, spark_column):
        from tre_lib.pseudonymise.spark import spark_hmac_sha256

        return spark_hmac_sha256(cast(Any, values), hk)
    dask_series = _module_type("dask.dataframe", "Series")
    if dask_series is not None and isinstance(values, dask_series):
        return hmac_dask(values, hk)
    pd_series = _module_type("pandas", "Series")
    if pd_series is not None and isinstance(values, pd_series):
        return hmac_pandas(values, hk)
    pl_types = tuple(t for t in (_module_type("polars", "Series"), _module_type("polars", "Expr")) if t)
    if pl_types and isinstance(values, pl_types):
        return hmac_polars(values, hk)
    pa_types = tuple(
        t for t in (_module_type("pyarrow", "Array"), _module_type("pyarrow", "ChunkedArray")) if t
    )
    if pa_types and isinstance(values, pa_types):
        return hmac_arrow(values, hk)
    frames = tuple(
        t
        for t in (
            _module_type("pandas", "DataFrame"),
            _module_type("polars", "DataFrame"),
            _module_type("dask.dataframe", "DataFrame"),
            _module_type("pyspark.sql", "DataFrame"),
        )
        if t
    )
    if frames and isinstance(values, frames):
        raise UnsupportedValueError(
            "hmac_sha256 takes one column, not a DataFrame; pass df['col'] "
            "(or use spark_pseudonymise for a Spark DataFrame)"
        )
    return hmac_list(values, hk)
