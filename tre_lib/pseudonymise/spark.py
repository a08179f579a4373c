"""HMAC-SHA256 on Spark without the key ever appearing in a query plan or a log.

Four implementations give identical lowercase hex (docs/adr/0003-spark-hmac.md has the measurements):

* ``"sha2"`` (default): RFC 2104 spelled in SQL, ``sha2(opad_key || unhex(sha2(ipad_key || m, 256)), 256)``;
  runs in the JVM with whole-stage codegen and reuses the padded keys for every row.
* ``"builtin"``: Spark 4.3's SQL ``hmac(key, message)`` (``javax.crypto.Mac``, re-keyed for every row).
* ``"arrow_udf"``: an Arrow UDF (Spark 4.1+) with the key in its pickled closure.
* ``"pandas_udf"``: the same with pandas Series.

A key passed as a literal (``F.lit(key)``) is printed by ``explain()``, the SQL UI and the event log. The JVM
methods therefore read the key from an uncorrelated *scalar subquery* over a one-row ``LocalRelation``
built over Py4J: plans print such a relation by its column names only, and the subquery by its id, while
the optimiser still evaluates it once per query. The UDFs carry the key inside the serialised Python
function, which plans print by name only. In both cases the key still travels to executors inside tasks:
on a cluster, enable ``spark.network.crypto.enabled`` (and ``spark.authenticate``) as for any secret.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal, get_args

import pandas as pd
import pyarrow as pa

from tre_lib.pseudonymise._core import HmacKey, as_hmac_key, hmac_arrow, hmac_pandas
from tre_lib.pseudonymise.errors import UnsupportedValueError

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame, SparkSession

    ColumnOrName = Column | str

__all__ = ["DEFAULT_METHOD", "SPARK_METHODS", "spark_hmac_sha256", "spark_pseudonymise"]

SparkMethod = Literal["sha2", "builtin", "arrow_udf", "pandas_udf"]
SPARK_METHODS: tuple[str, ...] = get_args(SparkMethod)
# The fastest hidden-key method in bench/bench_hmac.py, and it needs no Python on the executors (ADR 0003).
DEFAULT_METHOD: SparkMethod = "sha2"

# Spark types whose text form is unambiguous; typeof() output, folded to a constant by the optimiser.
_ACCEPTED_TYPES = ("string", "binary", "tinyint", "smallint", "int", "bigint")
_INTEGRAL_DECIMAL = r"^decimal\(\d+,0\)$"


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


# ------------------------------------------------------------------------------------- key relation
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

    jvm: Any = spark._jvm  # type: ignore[attr-defined]
    gateway: Any = spark.sparkContext._gateway
    with _quiet_py4j():
        cells = gateway.new_array(jvm.java.lang.Object, len(values))
        for i, value in enumerate(values.values()):
            cells[i] = bytearray(value)  # Py4J turns bytearray into a Java byte[]
        rows = jvm.java.util.ArrayList()
        rows.add(jvm.org.apache.spark.sql.RowFactory.create(cells))
        jdf = jsession.createDataFrame(rows, jsession.parseDataType(schema.json()))
    return ClassicDataFrame(jdf, spark)


def _key_struct(spark: SparkSession, values: dict[str, bytes]) -> Column:
    """Return the key columns as one scalar-subquery struct (evaluated once per query, shown by id only)."""
    from pyspark.sql import functions as F

    return _key_relation(spark, values).select(F.struct(*values)).scalar()


# ------------------------------------------------------------------------------------ message bytes
def _message(col: Column) -> Column:
    """Return the bytes to authenticate: UTF-8 for strings, decimal text for integers, binary unchanged.

    ``cast(x as string)`` then ``as binary`` does all three (Spark strings are UTF-8 bytes, so binary survives
    the round trip unchanged, even when not valid UTF-8). Other types raise at run time: ``typeof`` is
    constant-folded, so for accepted types the plan holds only the casts.
    """
    from pyspark.sql import functions as F

    kind = F.typeof(col)
    accepted = kind.isin(*_ACCEPTED_TYPES) | kind.rlike(_INTEGRAL_DECIMAL)
    error = F.raise_error(
        F.concat(
            F.lit("cannot pseudonymise a column of type "),
            kind,
            F.lit(
                ": IDs must be string, integer or binary; cast it first, e.g. .cast('long') / .cast('string')"
            ),
        )
    )
    return F.when(accepted, col.cast("string").cast("binary")).otherwise(error)


# ------------------------------------------------------------------------------------- the methods
def _sha2(spark: SparkSession, message: Column, key: HmacKey) -> Column:
    from pyspark.sql import functions as F

    ipad_key, opad_key = key.padded_keys()
    keys = _key_struct(spark, {"ipad": ipad_key, "opad": opad_key})
    inner = F.unhex(F.sha2(F.concat(keys["ipad"], message), 256))
    return F.sha2(F.concat(keys["opad"], inner), 256)


def _builtin(spark: SparkSession, message: Column, key: HmacKey) -> Column:
    from pyspark.sql import functions as F

    keys = _key_struct(spark, {"key": key.raw})
    return F.lower(F.hex(F.hmac(keys["key"], message)))


def _arrow_udf(message: Column, key: HmacKey) -> Column:
    from pyspark.sql.functions import arrow_udf

    def tre_hmac_sha256(values: pa.Array) -> pa.Array:
        return hmac_arrow(values, key)

    udf = arrow_udf(tre_hmac_sha256, returnType="string")  # type: ignore[call-overload]
    with _quiet_py4j():  # the UDF's pickled closure, key included, is sent to the JVM here
        return udf(message)  # type: ignore[no-any-return]


def _pandas_udf(message: Column, key: HmacKey) -> Column:
    from pyspark.sql.functions import pandas_udf

    def tre_hmac_sha256(values: pd.Series) -> pd.Series:
        return hmac_pandas(values, key)

    udf = pandas_udf(tre_hmac_sha256, returnType="string")  # type: ignore[call-overload]
    with _quiet_py4j():  # as above
        return udf(message)  # type: ignore[no-any-return]


def _active_session() -> SparkSession:
    from pyspark.sql import SparkSession

    spark = SparkSession.getActiveSession()
    if spark is None:
        raise RuntimeError("no active SparkSession; create one first or pass spark=... to spark_hmac_sha256")
    return spark


def spark_hmac_sha256(
    col: ColumnOrName,
    key: bytes | HmacKey,
    *,
    method: SparkMethod = DEFAULT_METHOD,
    spark: SparkSession | None = None,
) -> Column:
    """Return a Column with the HMAC-SHA256 (lowercase hex) of ``col``; nulls stay null.

    Strings are hashed as their UTF-8 bytes, integers as their decimal text, binary as is; any other type
    fails when the query runs, with a message saying to cast it. The key never appears in the query plan.

    Args:
        col: A Column or column name.
        key: The HMAC key (e.g. from :func:`derive_project_key`).
        method: ``"sha2"`` (default), ``"builtin"``, ``"arrow_udf"`` or ``"pandas_udf"``; all give the same
            result, see docs/adr/0003-spark-hmac.md for their speed.
        spark: The session that will run the query (default: the active session); only the JVM methods
            need it, to hold the key relation.

    Returns:
        A string Column.

    Example:
        >>> df.withColumn("pid", spark_hmac_sha256("person_id", project_key))  # doctest: +SKIP
    """
    from pyspark.sql import functions as F

    hk = as_hmac_key(key)
    column = F.col(col) if isinstance(col, str) else col
    message = _message(column)
    if method == "sha2":
        return _sha2(spark or _active_session(), message, hk)
    if method == "builtin":
        return _builtin(spark or _active_session(), message, hk)
    if method == "arrow_udf":
        return _arrow_udf(message, hk)
    if method == "pandas_udf":
        return _pandas_udf(message, hk)
    raise ValueError(f"unknown method {method!r}; use one of {SPARK_METHODS}")


def spark_pseudonymise(
    df: DataFrame,
    columns: Sequence[str] | Mapping[str, str],
    key: bytes | HmacKey,
    *,
    method: SparkMethod = DEFAULT_METHOD,
) -> DataFrame:
    """Replace (or add) columns with their HMAC-SHA256 (lowercase hex), checking their types first.

    Args:
        df: The input DataFrame.
        columns: Column names to replace in place, or a mapping ``{output_name: input_name}``.
        key: The HMAC key (e.g. from :func:`derive_project_key`).
        method: As for :func:`spark_hmac_sha256`.

    Returns:
        A DataFrame with the same columns in the same order (new output names appended), nulls kept null.

    Raises:
        UnsupportedValueError: A column is not string, integer or binary (raised before anything runs).
        ValueError: Unknown ``method`` or column.

    Example:
        >>> view = spark_pseudonymise(df, {"pid": "person_id"}, project_key)  # doctest: +SKIP
    """
    from pyspark.sql import types as T

    mapping = dict(columns) if isinstance(columns, Mapping) else {c: c for c in columns}
    unknown = [src for src in mapping.values() if src not in df.columns]
    if unknown:
        raise ValueError(f"columns {unknown} are not in the DataFrame (it has {df.columns})")
    accepted = T.ByteType | T.ShortType | T.IntegerType | T.LongType | T.StringType | T.BinaryType
    for src in mapping.values():
        dtype = df.schema[src].dataType
        if not (isinstance(dtype, accepted) or (isinstance(dtype, T.DecimalType) and dtype.scale == 0)):
            raise UnsupportedValueError(
                f"cannot pseudonymise column {src!r} of type {dtype.simpleString()}: IDs must be string, "
                "integer or binary; cast it first, e.g. F.col(name).cast('long') or .cast('string')"
            )
    hk = as_hmac_key(key)
    exprs = {
        out: spark_hmac_sha256(src, hk, method=method, spark=df.sparkSession) for out, src in mapping.items()
    }
    return df.withColumns(exprs)
