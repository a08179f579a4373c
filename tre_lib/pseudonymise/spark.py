"""HMAC-SHA256 on Spark without the key ever appearing in a query plan or a log.

Four implementations give identical lowercase hex (see docs/adr/0003-spark-hmac.md for the measurements):

* ``"builtin"``: Spark 4.3's SQL ``hmac(key, message)`` (JVM ``javax.crypto.Mac``), hex-encoded.
* ``"sha2"``: RFC 2104 spelled with SQL: ``sha2(opad_key || unhex(sha2(ipad_key || m, 256)), 256)``.
* ``"arrow_udf"``: an Arrow UDF (Spark 4.1+) with the key in its pickled closure.
* ``"pandas_udf"``: the same with pandas Series.

A key passed as a literal (``F.lit(key)``) is printed by ``explain()`` and the SQL UI, so the JVM methods
never see a literal: :func:`spark_pseudonymise` cross-joins a one-row *key relation* (a ``LocalRelation``
built over Py4J, whose plan string shows only its column names) with a broadcast hint and reads the key as
a column. The UDFs carry the key inside the serialised Python function, which plans print only by name.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Literal, get_args

import pandas as pd
import pyarrow as pa

from tre_lib.pseudonymise._core import HmacKey, as_hmac_key, hmac_arrow, hmac_pandas
from tre_lib.pseudonymise.errors import UnsupportedValueError

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame, SparkSession

    ColumnOrName = Column | str

__all__ = ["COLUMN_METHODS", "DATAFRAME_METHODS", "spark_hmac_sha256", "spark_pseudonymise"]

UdfMethod = Literal["arrow_udf", "pandas_udf"]
SparkMethod = Literal["builtin", "sha2", "arrow_udf", "pandas_udf"]
COLUMN_METHODS: tuple[str, ...] = get_args(UdfMethod)
DATAFRAME_METHODS: tuple[str, ...] = get_args(SparkMethod)
# Default for whole-DataFrame pseudonymisation: the JVM built-in, fastest in bench/bench_hmac.py (ADR 0003).
DEFAULT_DATAFRAME_METHOD: SparkMethod = "builtin"

_KEY_COL = "__tre_hmac_key"
_IPAD_COL = "__tre_hmac_ipad"
_OPAD_COL = "__tre_hmac_opad"
_UDF_NAME = "tre_hmac_sha256"



# ----------------------------------------------------------------------------------- Py4J log guard
class _Py4jTrafficFilter(logging.Filter):
    """Drops Py4J's DEBUG lines while key material crosses to the JVM.

    Py4J logs every command it sends at DEBUG, byte arrays as base64; the key relation and the pickled UDF
    (whose closure holds the key) are such commands, so with DEBUG logging on the key would land in the
    logs. While any thread is inside :func:`_quiet_py4j` the filter drops Py4J's records; other threads'
    Py4J debug lines in that window (milliseconds) are dropped too, which costs nothing but debug noise.
    """

    def __init__(self) -> None:
        super().__init__()
        self._lock = threading.Lock()
        self._depth = 0

    def enter(self) -> None:
        with self._lock:
            self._depth += 1

    def exit(self) -> None:
        with self._lock:
            self._depth -= 1

    def filter(self, record: logging.LogRecord) -> bool:
        return self._depth == 0


_PY4J_FILTER = _Py4jTrafficFilter()
_PY4J_LOGGERS = ("py4j.clientserver", "py4j.java_gateway", "py4j.protocol")


@contextlib.contextmanager
def _quiet_py4j() -> Iterator[None]:
    """Keep Py4J from logging the commands sent in this block (they carry key material)."""
    for name in _PY4J_LOGGERS:
        logger = logging.getLogger(name)
        if _PY4J_FILTER not in logger.filters:
            logger.addFilter(_PY4J_FILTER)
    _PY4J_FILTER.enter()
    try:
        yield
    finally:
        _PY4J_FILTER.exit()


# -------------------------------------------------------------------------------------------- UDFs
def _arrow_udf(key: HmacKey) -> Column:
    from pyspark.sql.functions import arrow_udf

    def tre_hmac_sha256(values: pa.Array) -> pa.Array:
        return hmac_arrow(values, key)

    return arrow_udf(tre_hmac_sha256, returnType="string")  # type: ignore[no-any-return]


def _pandas_udf(key: HmacKey) -> Column:
    from pyspark.sql.functions import pandas_udf

    def tre_hmac_sha256(values: pd.Series) -> pd.Series:
        return hmac_pandas(values, key)

    return pandas_udf(tre_hmac_sha256, returnType="string")  # type: ignore[call-overload, no-any-return]


def spark_hmac_sha256(col: ColumnOrName, key: bytes | HmacKey, *, method: UdfMethod = "arrow_udf") -> Column:
    """Return a Column with the HMAC-SHA256 (lowercase hex) of ``col``; nulls stay null.

    The key travels inside the UDF's pickled closure, so ``explain()`` shows only ``tre_hmac_sha256(col)``.
    Strings are hashed as UTF-8, integers as their decimal text, binary as is. For a whole DataFrame prefer
    :func:`spark_pseudonymise`, which can use the faster JVM built-in without exposing the key.

    Args:
        col: A Column or column name of string, integer or binary type.
        key: The HMAC key (e.g. from :func:`derive_project_key`).
        method: ``"arrow_udf"`` (default, no pandas conversion) or ``"pandas_udf"``.

    Returns:
        A string Column.

    Example:
        >>> df.withColumn("pid", spark_hmac_sha256("person_id", project_key))  # doctest: +SKIP
    """
    hk = as_hmac_key(key)
    if method == "arrow_udf":
        udf = _arrow_udf(hk)
    elif method == "pandas_udf":
        udf = _pandas_udf(hk)
    else:
        raise ValueError(
            f"unknown Column method {method!r}; use one of {COLUMN_METHODS}, or spark_pseudonymise() for "
            "'builtin' and 'sha2', which need the key as a joined column"
        )
    with _quiet_py4j():  # the UDF's pickled closure, key included, is sent to the JVM here
        return udf(col)  # type: ignore[operator, no-any-return]


# --------------------------------------------------------------------------------- JVM key relation
def _key_relation(spark: SparkSession, values: dict[str, bytes]) -> DataFrame:
    """Return a one-row DataFrame of binary key columns whose plan string never shows the values.

    ``spark.createDataFrame`` in classic mode writes local rows to a temporary file before the JVM reads them;
    building the ``LocalRelation`` over Py4J keeps the key in memory. Spark Connect sends local rows inline
    over gRPC as a ``LocalRelation`` already.
    """
    from pyspark.sql.types import BinaryType, StructField, StructType

    schema = StructType([StructField(name, BinaryType(), nullable=False) for name in values])
    jsession = getattr(spark, "_jsparkSession", None)
    if jsession is None:  # Spark Connect
        return spark.createDataFrame([tuple(values.values())], schema)
    from pyspark.sql import DataFrame as ClassicDataFrame

    jvm = spark._jvm  # type: ignore[attr-defined]
    gateway = spark.sparkContext._gateway  # type: ignore[attr-defined]
    with _quiet_py4j():
        cells = gateway.new_array(jvm.java.lang.Object, len(values))
        for i, value in enumerate(values.values()):
            cells[i] = bytearray(value)  # Py4J turns bytearray into a Java byte[]
        rows = jvm.java.util.ArrayList()
        rows.add(jvm.org.apache.spark.sql.RowFactory.create(cells))
        jdf = jsession.createDataFrame(rows, jsession.parseDataType(schema.json()))
    return ClassicDataFrame(jdf, spark)


def _as_binary(df: DataFrame, name: str) -> Column:
    """Return column ``name`` as the bytes to authenticate, refusing types with ambiguous text forms."""
    from pyspark.sql import functions as F
    from pyspark.sql import types as T

    dtype = df.schema[name].dataType
    col = F.col(name)
    if isinstance(dtype, T.StringType):
        return col.cast("binary")  # Spark strings are UTF-8, so this is the UTF-8 encoding
    if isinstance(dtype, T.BinaryType):
        return col
    if isinstance(dtype, T.ByteType | T.ShortType | T.IntegerType | T.LongType) or (
        isinstance(dtype, T.DecimalType) and dtype.scale == 0
    ):
        # Integer -> binary would be big-endian bytes; every engine hashes the decimal text instead.
        return col.cast("string").cast("binary")
    raise UnsupportedValueError(
        f"cannot pseudonymise column {name!r} of type {dtype.simpleString()}: IDs must be string, integer or "
        "binary; cast it first, e.g. F.col(name).cast('long') or .cast('string')"
    )


def spark_pseudonymise(
    df: DataFrame,
    columns: Sequence[str] | Mapping[str, str],
    key: bytes | HmacKey,
    *,
    method: SparkMethod = DEFAULT_DATAFRAME_METHOD,
) -> DataFrame:
    """Replace (or add) columns with their HMAC-SHA256 (lowercase hex), keeping the key out of the plan.

    Args:
        df: The input DataFrame.
        columns: Column names to replace in place, or a mapping ``{output_name: input_name}``.
        key: The HMAC key (e.g. from :func:`derive_project_key`).
        method: ``"builtin"`` (default, Spark's SQL ``hmac``), ``"sha2"``, ``"arrow_udf"`` or ``"pandas_udf"``.

    Returns:
        A DataFrame with the same columns (plus any new output names, appended), nulls kept null.

    Raises:
        UnsupportedValueError: A column is not string, integer or binary.
        ValueError: Unknown ``method`` or column.

    Example:
        >>> view = spark_pseudonymise(df, {"pid": "person_id"}, project_key)  # doctest: +SKIP
    """
    from pyspark.sql import functions as F

    if method not in DATAFRAME_METHODS:
        raise ValueError(f"unknown method {method!r}; use one of {DATAFRAME_METHODS}")
    hk = as_hmac_key(key)
    mapping = dict(columns) if isinstance(columns, Mapping) else {c: c for c in columns}
    unknown = [src for src in mapping.values() if src not in df.columns]
    if unknown:
        raise ValueError(f"columns {unknown} are not in the DataFrame (it has {df.columns})")
    binaries = {out: _as_binary(df, src) for out, src in mapping.items()}
    order = list(df.columns) + [out for out in mapping if out not in df.columns]

    if method in COLUMN_METHODS:
        udf_method: UdfMethod = "arrow_udf" if method == "arrow_udf" else "pandas_udf"
        exprs = {out: spark_hmac_sha256(binaries[out], hk, method=udf_method) for out in mapping}
        return df.withColumns(exprs).select(*order)

    spark = df.sparkSession
    if method == "builtin":
        keys = _key_relation(spark, {_KEY_COL: hk.raw})
        exprs = {out: F.lower(F.hex(F.hmac(F.col(_KEY_COL), b))) for out, b in binaries.items()}
    else:
        ipad_key, opad_key = hk.padded_keys()
        keys = _key_relation(spark, {_IPAD_COL: ipad_key, _OPAD_COL: opad_key})
        exprs = {
            out: F.sha2(F.concat(F.col(_OPAD_COL), F.unhex(F.sha2(F.concat(F.col(_IPAD_COL), b), 256))), 256)
            for out, b in binaries.items()
        }
    # One row, broadcast: a nested-loop join that only appends the key columns to each row.
    joined = df.crossJoin(F.broadcast(keys))
    return joined.withColumns(exprs).select(*order)
