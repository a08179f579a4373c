"""The Spark engine: validation, typing, id join, quality and the Parquet write as Spark jobs.

Validation is one pass: each rule becomes a Spark expression; the problems of a row are an array that is
exploded, and a window over (column, problem) yields each problem's total and its first rows in the same
job. Row numbers are made without a shuffle from ``monotonically_increasing_id`` and per-partition counts.
"""

from __future__ import annotations

import datetime as dt
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa

from tre_platform.pipelines.delivery import Delivery
from tre_platform.pipelines.engines import IngestEngine
from tre_platform.pipelines.linkage import ROW, IdentifierGroup
from tre_platform.pipelines.validation import (
    DATE_PATTERN,
    FALSE_WORDS,
    INTEGER_PATTERN,
    MAX_EXAMPLES,
    MAX_VALUE_CHARS,
    TRUE_WORDS,
    WITHHELD,
    ColumnRule,
    Problem,
    ValidationReport,
)

_CORRUPT = "_corrupt_record"


def get_spark(master: str | None = None) -> Any:
    """The active SparkSession, or a new one on ``master`` (default: settings.spark_master).

    The session loads Splink's similarity functions (Jaro-Winkler) so Splink's Spark backend can match.
    """
    from pyspark.sql import SparkSession

    active = SparkSession.getActiveSession()
    if active is not None:
        return active
    from splink.backends.spark import similarity_jar_location

    from tre_platform.settings import get_settings

    # Python workers must run this interpreter (it has tre_lib installed).
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    return (
        SparkSession.builder.master(master or get_settings().spark_master)
        .appName("tre-ingest")
        .config("spark.jars", similarity_jar_location())
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
        .config("spark.ui.enabled", "false")
        .getOrCreate()
    )


def _q(name: str) -> str:
    return f"`{name.replace('`', '``')}`"


def _parse(rule: ColumnRule, raw: Any) -> tuple[Any, Any]:
    """(typed value, type_ok) Spark expressions for a string column."""
    from pyspark.sql import functions as F

    stripped = F.trim(raw)
    if rule.type == "string":
        return raw, F.lit(True)
    if rule.type == "integer":
        shaped = raw.rlike(f"^{INTEGER_PATTERN}$")
        typed = F.when(shaped, stripped.try_cast("bigint"))
        return typed, raw.isNull() | shaped
    if rule.type == "float":
        typed = stripped.try_cast("double")
        return typed, raw.isNull() | typed.isNotNull()
    if rule.type == "boolean":
        lowered = F.lower(stripped)
        typed = F.when(lowered.isin(sorted(TRUE_WORDS)), F.lit(True)).when(
            lowered.isin(sorted(FALSE_WORDS)), F.lit(False)
        )
        return typed, raw.isNull() | typed.isNotNull()
    if rule.type == "date" and rule.format is not None:
        typed = F.try_to_date(stripped, java_date_pattern(rule.format))
        return typed, raw.isNull() | typed.isNotNull()
    if rule.type == "date":
        typed = F.when(stripped.rlike(f"^{DATE_PATTERN}$"), F.try_to_date(stripped, "yyyy-MM-dd"))
        return typed, raw.isNull() | typed.isNotNull()
    if rule.type == "datetime":
        typed = F.try_to_timestamp(stripped)
        return typed, raw.isNull() | typed.isNotNull()
    raise ValueError(f"column {rule.name!r} has an unknown type {rule.type!r}")


_JAVA_CODES = {"%Y": "yyyy", "%y": "yy", "%m": "MM", "%d": "dd", "%b": "MMM", "%B": "MMMM", "%j": "DDD"}


def java_date_pattern(fmt: str) -> str:
    """A strptime date format as Spark's datetime pattern (``%d/%m/%Y`` -> ``dd/MM/yyyy``)."""
    out = []
    i = 0
    while i < len(fmt):
        code = fmt[i : i + 2]
        if code in _JAVA_CODES:
            out.append(_JAVA_CODES[code])
            i += 2
        elif fmt[i].isalpha():
            out.append(f"'{fmt[i]}'")
            i += 1
        else:
            out.append(fmt[i])
            i += 1
    return "".join(out)


class SparkEngine(IngestEngine):
    """The delivery as a Spark DataFrame on ``spark``."""

    name = "spark"

    def __init__(self, delivery: Delivery, rules: Sequence[ColumnRule], spark: Any) -> None:
        super().__init__(delivery, rules)
        self.spark = spark

    def _read_strings(self) -> Any:
        from pyspark.sql import functions as F
        from pyspark.sql import types as T

        path = str(self.delivery.path)
        if self.delivery.format == "parquet":
            df = self.spark.read.parquet(path)
            by_name = {r.name: r for r in self.rules}
            cols = []
            for field in df.schema.fields:
                col = F.col(_q(field.name))
                rule = by_name.get(field.name)
                if isinstance(field.dataType, T.DateType | T.TimestampType) and rule and rule.type == "date":
                    col = F.date_format(col, "yyyy-MM-dd")
                cols.append(col.cast("string").alias(field.name))
            return df.select(*cols)
        fields = [T.StructField(name, T.StringType()) for name in self.delivery.header]
        fields.append(T.StructField(_CORRUPT, T.StringType()))
        df = (
            self.spark.read.option("header", True)
            .option("mode", "PERMISSIVE")
            .option("columnNameOfCorruptRecord", _CORRUPT)
            .option("encoding", "UTF-8")
            .option("multiLine", False)
            .schema(T.StructType(fields))
            .csv(path)
        )
        return df

    def _number_rows(self, df: Any) -> Any:
        from pyspark.sql import functions as F

        # monotonically_increasing_id = partition id << 33 | position in the partition; the per-partition
        # counts turn it into consecutive 1-based row numbers in file order, with no shuffle of the data.
        df = df.withColumn("_mid", F.monotonically_increasing_id())
        counts = (
            df.groupBy((F.col("_mid").bitwiseAND(F.lit(-(1 << 33)))).alias("_p"))
            .count()
            .orderBy("_p")
            .collect()
        )
        offsets, total = [], 0
        for row in counts:
            offsets.append((int(row["_p"]), total))
            total += int(row["count"])
        self.n_rows = total
        mapping = self.spark.createDataFrame(offsets, "_p long, _offset long")
        numbered = df.withColumn("_p", F.col("_mid").bitwiseAND(F.lit(-(1 << 33)))).join(
            F.broadcast(mapping), "_p"
        )
        return numbered.select(
            *[c for c in df.columns if c != "_mid"],
            (F.col("_offset") + (F.col("_mid") - F.col("_p")) + 1).alias(ROW),
        )

    def load(self) -> ValidationReport:
        from pyspark.sql import Window
        from pyspark.sql import functions as F

        self.check_header()
        df = self._read_strings()
        # Spark keeps empty strings in Parquet; an empty value is a missing value, as in a CSV.
        df = df.select(
            *[F.when(F.col(_q(c)) == "", None).otherwise(F.col(_q(c))).alias(c) for c in df.columns]
        )
        df = self._number_rows(df).cache()
        self.strings = df
        problems: list[Any] = []
        typed: list[Any] = []
        for rule in self.rules:
            raw = F.col(_q(rule.name))
            value, type_ok = _parse(rule, raw)
            typed.append(value.alias(rule.name))
            shown = F.lit(WITHHELD) if rule.identifier else F.substring(raw, 1, MAX_VALUE_CHARS)
            checks: list[tuple[str, Any]] = []
            if rule.required:
                checks.append(("required", raw.isNull()))
            checks.append(("type", ~type_ok))
            if rule.allowed is not None:
                checks.append(("allowed", raw.isNotNull() & ~raw.isin(list(rule.allowed))))
            if rule.min is not None:
                checks.append(("min", F.coalesce(value < F.lit(rule.min), F.lit(False))))
            if rule.max is not None:
                checks.append(("max", F.coalesce(value > F.lit(rule.max), F.lit(False))))
            for problem, condition in checks:
                problems.append(
                    F.when(
                        condition,
                        F.struct(
                            F.lit(rule.name).alias("column"),
                            F.lit(problem).alias("problem"),
                            shown.alias("value"),
                        ),
                    )
                )
        if _CORRUPT in df.columns:
            problems.append(
                F.when(
                    F.col(_CORRUPT).isNotNull(),
                    F.struct(
                        F.lit(None).cast("string").alias("column"),
                        F.lit("malformed_row").alias("problem"),
                        F.lit(None).cast("string").alias("value"),
                    ),
                )
            )
        exploded = df.select(
            F.col(ROW), F.explode(F.filter(F.array(*problems), lambda p: p.isNotNull())).alias("p")
        ).select(ROW, "p.column", "p.problem", "p.value")
        window = Window.partitionBy("column", "problem")
        found = (
            exploded.withColumn("_total", F.count(F.lit(1)).over(window))
            .withColumn("_rank", F.row_number().over(window.orderBy(ROW)))
            .where(F.col("_rank") <= MAX_EXAMPLES)
            .collect()
        )
        by_key: dict[tuple[str | None, str], Problem] = {}
        for row in sorted(found, key=lambda r: r[ROW]):
            key = (row["column"], row["problem"])
            found_problem = by_key.setdefault(key, Problem(row["problem"], row["column"], int(row["_total"])))
            found_problem.rows.append(int(row[ROW]))
            found_problem.values.append(row["value"])
        for found_problem in by_key.values():
            if found_problem.problem == "malformed_row":
                found_problem.values = [None] * len(found_problem.rows)
                found_problem.detail = (
                    f"expected {len(self.delivery.header)} fields; check quoting and delimiters"
                )
        self.typed = df.select(F.col(ROW), *typed)
        return self._report(list(by_key.values()))

    def identifiers(self, columns: Sequence[str]) -> pd.DataFrame:
        frame = self.strings.select(ROW, *[_q(c) for c in columns]).toPandas()
        return frame.astype(object).where(frame.notna(), None)

    def attach(self, links: pd.DataFrame) -> None:
        table = pa.Table.from_pandas(links, preserve_index=False)
        links_df = self.spark.createDataFrame(table.to_pandas())
        self.linked = self.typed.join(links_df, ROW, "left")

    def quality(self, groups: Sequence[IdentifierGroup], as_of: dt.date) -> dict[str, Any]:
        self.linked = self.linked.cache()
        return self._assess(self.linked, groups, as_of)

    def write(self, staging: Path, schema: Sequence[tuple[str, pa.DataType]]) -> None:
        from pyspark.sql import functions as F

        casts = {pa.string(): "string", pa.int64(): "bigint", pa.float64(): "double", pa.bool_(): "boolean"}
        cols = []
        for name, kind in schema:
            col = F.col(_q(name))
            if kind in casts:
                col = col.cast(casts[kind])
            cols.append(col.alias(name))
        self.linked.select(*cols).write.mode("error").parquet(str(staging))

    def close(self) -> None:
        for attr in ("strings", "linked"):
            frame = self.__dict__.pop(attr, None)
            if frame is not None:
                frame.unpersist()
