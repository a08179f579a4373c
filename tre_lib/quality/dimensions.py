"""The five Government Data Quality Framework dimensions, computed the same way on pandas, Dask and Spark.

Each function takes a DataFrame of any of the three engines and returns a small JSON-ready dataclass. On
Spark every count of a dimension is one aggregation (one job); on Dask the counts are computed together in
one ``dask.compute`` call, so a large frame is read once per dimension, never collected to the driver.

Conditions are built by a tiny per-engine adapter (:class:`_PandasOps` serves pandas and Dask, whose Series
API is the same; :class:`_SparkOps` builds Column expressions), so the definitions of the dimensions are
written once.

Example:
    >>> df = pd.DataFrame({"age": [30, None, 200], "seen": pd.to_datetime(["2024-01-01"] * 3)})
    >>> completeness(df).overall
    0.8333333333333334
    >>> validity(df, [ValidityRule("age", min=0, max=120)]).overall
    0.5
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd

Engine = Literal["pandas", "dask", "spark"]

#: Validity checks a rule can name besides allowed values, ranges and patterns.
CHECKS = ("nhs_number",)
_NHS_WEIGHTS = tuple(range(10, 1, -1))


def engine_of(df: Any) -> Engine:
    """Which engine a DataFrame belongs to.

    Raises:
        TypeError: If ``df`` is not a pandas, Dask or Spark DataFrame.
    """
    if isinstance(df, pd.DataFrame):
        return "pandas"
    module = type(df).__module__
    if module.startswith("dask"):
        return "dask"
    if module.startswith("pyspark"):
        return "spark"
    raise TypeError(f"expected a pandas, Dask or Spark DataFrame, not {type(df).__name__}")


# Rules -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ValidityRule:
    """What a valid value of ``column`` looks like (nulls are not judged here: that is completeness).

    Attributes:
        column: The column.
        allowed: The only values allowed.
        min: Smallest valid value (same type as the column: number, ``datetime.date`` ...).
        max: Largest valid value.
        pattern: Regular expression the whole value must match (strings).
        check: A named check: ``"nhs_number"`` (ten digits with a correct modulus-11 check digit).
    """

    column: str
    allowed: tuple[Any, ...] | None = None
    min: Any = None
    max: Any = None
    pattern: str | None = None
    check: str | None = None

    def __post_init__(self) -> None:
        if self.check is not None and self.check not in CHECKS:
            raise ValueError(f"unknown check {self.check!r}; use one of {', '.join(CHECKS)}")

    @property
    def name(self) -> str:
        parts = []
        if self.allowed is not None:
            parts.append("allowed")
        if self.min is not None:
            parts.append("min")
        if self.max is not None:
            parts.append("max")
        if self.pattern is not None:
            parts.append("pattern")
        if self.check is not None:
            parts.append(self.check)
        return f"{self.column}:{'+'.join(parts) or 'any'}"


@dataclass(frozen=True)
class ConsistencyRule:
    """Two columns that must agree: ``earlier <= later`` wherever both are present.

    Example: date of birth before admission date; registration start before registration end.
    """

    earlier: str
    later: str

    @property
    def name(self) -> str:
        return f"{self.earlier}<={self.later}"


# Results ---------------------------------------------------------------------------------------------


@dataclass
class Completeness:
    """Share of present (non-null) values, per column and over every cell; share of complete rows."""

    n_rows: int
    by_column: dict[str, float]
    overall: float
    complete_rows: float


@dataclass
class Uniqueness:
    """Duplicate records, and how many distinct values each key column holds."""

    n_rows: int
    distinct_rows: int
    duplicate_rows: int
    overall: float
    distinct_by_column: dict[str, int] = field(default_factory=dict)


@dataclass
class Validity:
    """Share of present values that pass each rule."""

    by_rule: dict[str, dict[str, float | int]]
    overall: float


@dataclass
class Consistency:
    """Share of rows, where both columns are present, that satisfy each rule."""

    by_rule: dict[str, dict[str, float | int]]
    overall: float


@dataclass
class Timeliness:
    """How recent the data is: the latest date of each date column and its lag behind ``as_of``."""

    as_of: str
    latest: dict[str, str | None]
    lag_days: dict[str, int | None]
    overall_lag_days: int | None


@dataclass
class QualityAssessment:
    """All five dimensions of one dataset version."""

    completeness: Completeness
    uniqueness: Uniqueness
    validity: Validity
    consistency: Consistency
    timeliness: Timeliness
    engine: str

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON types (non-finite numbers become null)."""
        return _finite(asdict(self))


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def _share(numerator: int, denominator: int) -> float:
    # An empty denominator has nothing wrong in it: report it as fully good rather than undefined.
    return numerator / denominator if denominator else 1.0


# Engine adapters -------------------------------------------------------------------------------------


class _PandasOps:
    """Conditions as boolean Series; serves pandas and Dask (same Series API)."""

    def __init__(self, df: Any, engine: Engine) -> None:
        self.df = df
        self.engine = engine

    def columns(self) -> list[str]:
        return [str(c) for c in self.df.columns]

    def notnull(self, column: str) -> Any:
        return self.df[column].notnull()

    def all_notnull(self, columns: Sequence[str]) -> Any:
        return self.df[list(columns)].notnull().all(axis=1)

    def invalid(self, rule: ValidityRule) -> Any:
        if self.engine == "dask":
            # Dask cannot build meta for comparisons with dates; each partition runs the pandas rule.
            return self.df.map_partitions(
                lambda part: _PandasOps(part, "pandas").invalid(rule), meta=(rule.column, "bool")
            )
        s = self.df[rule.column]
        bad = s.isna() & False
        if rule.allowed is not None:
            bad = bad | ~s.isin(list(rule.allowed))
        if rule.min is not None:
            bad = bad | (s < rule.min).fillna(False).astype(bool)
        if rule.max is not None:
            bad = bad | (s > rule.max).fillna(False).astype(bool)
        if rule.pattern is not None:
            text = s.astype("string")
            bad = bad | ~text.str.fullmatch(rule.pattern).fillna(False).astype(bool)
        if rule.check == "nhs_number":
            bad = bad | ~_nhs_valid_pandas(s)
        return s.notnull() & bad

    def le(self, earlier: str, later: str) -> Any:
        if self.engine == "dask":
            return self.df.map_partitions(
                lambda part: _PandasOps(part, "pandas").le(earlier, later), meta=(earlier, "bool")
            )
        return (self.df[earlier] <= self.df[later]).fillna(False).astype(bool)

    def count_true(self, conditions: Mapping[str, Any]) -> tuple[int, dict[str, int]]:
        names = list(conditions)
        sums = [conditions[n].sum() for n in names]
        if self.engine == "dask":
            import dask

            n_rows, *values = dask.compute(self.df.shape[0], *sums)
        else:
            n_rows, values = len(self.df), sums
        return int(n_rows), {n: int(v) for n, v in zip(names, values, strict=True)}

    def distinct_rows(self) -> int:
        deduped = self.df.drop_duplicates()
        if self.engine == "dask":
            return int(deduped.shape[0].compute())
        return len(deduped)

    def distinct(self, columns: Sequence[str]) -> dict[str, int]:
        counts = [self.df[c].nunique(dropna=True) for c in columns]
        if self.engine == "dask":
            import dask

            counts = list(dask.compute(*counts))
        return {c: int(v) for c, v in zip(columns, counts, strict=True)}

    def maxima(self, columns: Sequence[str]) -> dict[str, Any]:
        cols = list(columns)
        if self.engine != "dask":
            return {c: self.df[c].max() for c in cols}
        import dask

        # Per-partition maxima as plain values: Dask cannot infer meta for an Arrow date column's max.
        def part_max(part: pd.DataFrame) -> dict[str, Any]:
            return {c: part[c].max() for c in cols}

        parts = dask.compute(*[dask.delayed(part_max)(p) for p in self.df[cols].to_delayed()])
        out: dict[str, Any] = {}
        for c in cols:
            present = [p[c] for p in parts if p[c] is not None and not pd.isna(p[c])]
            out[c] = max(present) if present else None
        return out


def _nhs_valid_pandas(series: pd.Series) -> pd.Series:
    digits = series.astype("string").str.replace(r"[\s\-]", "", regex=True)
    shaped = digits.str.fullmatch(r"\d{10}").fillna(False).astype(bool).to_numpy()
    valid = np.zeros(len(series), dtype=bool)
    if shaped.any():
        matrix = np.frombuffer("".join(digits[shaped].tolist()).encode("ascii"), dtype=np.uint8).reshape(
            -1, 10
        ).astype(np.int64) - ord("0")
        check = 11 - (matrix[:, :9] * np.asarray(_NHS_WEIGHTS)).sum(axis=1) % 11
        check = np.where(check == 11, 0, check)
        valid[shaped] = check == matrix[:, 9]
    return pd.Series(valid, index=series.index)


class _SparkOps:
    """Conditions as Spark Column expressions, counted in one aggregation."""

    def __init__(self, df: Any) -> None:
        self.df = df

    @staticmethod
    def _col(name: str) -> Any:
        from pyspark.sql import functions as F

        return F.col(f"`{name}`")

    def columns(self) -> list[str]:
        return list(self.df.columns)

    def notnull(self, column: str) -> Any:
        return self._col(column).isNotNull()

    def all_notnull(self, columns: Sequence[str]) -> Any:
        from functools import reduce

        return reduce(lambda a, b: a & b, [self.notnull(c) for c in columns])

    def invalid(self, rule: ValidityRule) -> Any:
        from pyspark.sql import functions as F

        s = self._col(rule.column)
        bad = F.lit(False)
        if rule.allowed is not None:
            bad = bad | ~s.isin(list(rule.allowed))
        if rule.min is not None:
            bad = bad | (s < F.lit(rule.min))
        if rule.max is not None:
            bad = bad | (s > F.lit(rule.max))
        if rule.pattern is not None:
            bad = bad | ~s.cast("string").rlike(f"^(?:{rule.pattern})$")
        if rule.check == "nhs_number":
            bad = bad | ~_nhs_valid_spark(s)
        return s.isNotNull() & F.coalesce(bad, F.lit(True))

    def le(self, earlier: str, later: str) -> Any:
        from pyspark.sql import functions as F

        return F.coalesce(self._col(earlier) <= self._col(later), F.lit(False))

    def count_true(self, conditions: Mapping[str, Any]) -> tuple[int, dict[str, int]]:
        from pyspark.sql import functions as F

        names = list(conditions)
        aggs = [F.count(F.lit(1)).alias("__n")] + [
            F.sum(F.when(conditions[n], 1).otherwise(0)).alias(f"__c{i}") for i, n in enumerate(names)
        ]
        row = self.df.agg(*aggs).collect()[0]
        return int(row["__n"]), {n: int(row[f"__c{i}"] or 0) for i, n in enumerate(names)}

    def distinct_rows(self) -> int:
        return int(self.df.distinct().count())

    def distinct(self, columns: Sequence[str]) -> dict[str, int]:
        from pyspark.sql import functions as F

        if not columns:
            return {}
        row = self.df.agg(*[F.countDistinct(self._col(c)).alias(f"__d{i}") for i, c in enumerate(columns)])
        values = row.collect()[0]
        return {c: int(values[f"__d{i}"]) for i, c in enumerate(columns)}

    def maxima(self, columns: Sequence[str]) -> dict[str, Any]:
        from pyspark.sql import functions as F

        if not columns:
            return {}
        row = self.df.agg(*[F.max(self._col(c)).alias(f"__m{i}") for i, c in enumerate(columns)]).collect()[0]
        return {c: row[f"__m{i}"] for i, c in enumerate(columns)}


def _nhs_valid_spark(column: Any) -> Any:
    """The modulus-11 check as a Spark expression (no Python UDF: it runs in the JVM)."""
    from pyspark.sql import functions as F

    digits = F.regexp_replace(column.cast("string"), r"[\s\-]", "")
    total = sum(
        (F.substring(digits, i + 1, 1).cast("int") * weight for i, weight in enumerate(_NHS_WEIGHTS)),
        F.lit(0),
    )
    check = F.lit(11) - total % 11
    check = F.when(check == 11, 0).otherwise(check)
    return digits.rlike(r"^\d{10}$") & (check == F.substring(digits, 10, 1).cast("int"))


def _ops(df: Any) -> _PandasOps | _SparkOps:
    engine = engine_of(df)
    return _SparkOps(df) if engine == "spark" else _PandasOps(df, engine)


# Dimensions ------------------------------------------------------------------------------------------


def completeness(df: Any, columns: Sequence[str] | None = None) -> Completeness:
    """Share of present values per column and overall, and the share of rows with every column present.

    Args:
        df: A pandas, Dask or Spark DataFrame.
        columns: Columns to judge (default: all).
    """
    ops = _ops(df)
    cols = list(columns) if columns is not None else ops.columns()
    conditions = {f"present:{c}": ops.notnull(c) for c in cols}
    if cols:
        conditions["__complete_rows"] = ops.all_notnull(cols)
    n, counts = ops.count_true(conditions)
    by_column = {c: _share(counts[f"present:{c}"], n) for c in cols}
    present = sum(counts[f"present:{c}"] for c in cols)
    return Completeness(
        n_rows=n,
        by_column=by_column,
        overall=_share(present, n * len(cols)),
        complete_rows=_share(counts.get("__complete_rows", n), n),
    )


def uniqueness(df: Any, key_columns: Sequence[str] = ()) -> Uniqueness:
    """Duplicate records (identical in every column) and distinct values of ``key_columns``.

    Args:
        df: A pandas, Dask or Spark DataFrame.
        key_columns: Columns whose distinct values are counted (e.g. the index-ID columns: how many
            distinct people a delivery covers).
    """
    ops = _ops(df)
    n, _ = ops.count_true({})
    distinct = ops.distinct_rows()
    return Uniqueness(
        n_rows=n,
        distinct_rows=distinct,
        duplicate_rows=n - distinct,
        overall=_share(distinct, n),
        distinct_by_column=ops.distinct(list(key_columns)),
    )


def validity(df: Any, rules: Sequence[ValidityRule]) -> Validity:
    """Share of present values that pass each rule, and over every rule.

    Args:
        df: A pandas, Dask or Spark DataFrame.
        rules: What valid values look like.
    """
    ops = _ops(df)
    conditions: dict[str, Any] = {}
    for i, rule in enumerate(rules):
        conditions[f"checked:{i}"] = ops.notnull(rule.column)
        conditions[f"invalid:{i}"] = ops.invalid(rule)
    _, counts = ops.count_true(conditions)
    by_rule: dict[str, dict[str, float | int]] = {}
    checked_total = invalid_total = 0
    for i, rule in enumerate(rules):
        checked, invalid = counts[f"checked:{i}"], counts[f"invalid:{i}"]
        checked_total += checked
        invalid_total += invalid
        by_rule[rule.name] = {
            "checked": checked,
            "invalid": invalid,
            "valid": _share(checked - invalid, checked),
        }
    return Validity(by_rule=by_rule, overall=_share(checked_total - invalid_total, checked_total))


def consistency(df: Any, rules: Sequence[ConsistencyRule]) -> Consistency:
    """Share of rows (where both columns are present) that satisfy each ``earlier <= later`` rule.

    Args:
        df: A pandas, Dask or Spark DataFrame.
        rules: Pairs of columns that must be ordered.
    """
    ops = _ops(df)
    conditions: dict[str, Any] = {}
    for i, rule in enumerate(rules):
        both = ops.notnull(rule.earlier) & ops.notnull(rule.later)
        conditions[f"both:{i}"] = both
        conditions[f"ok:{i}"] = both & ops.le(rule.earlier, rule.later)
    _, counts = ops.count_true(conditions)
    by_rule: dict[str, dict[str, float | int]] = {}
    both_total = ok_total = 0
    for i, rule in enumerate(rules):
        both, ok = counts[f"both:{i}"], counts[f"ok:{i}"]
        both_total += both
        ok_total += ok
        by_rule[rule.name] = {"checked": both, "inconsistent": both - ok, "consistent": _share(ok, both)}
    return Consistency(by_rule=by_rule, overall=_share(ok_total, both_total))


def _as_date(value: Any) -> dt.date | None:
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return None
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    if isinstance(value, pd.Timestamp | np.datetime64):
        return pd.Timestamp(value).date()
    return dt.date.fromisoformat(str(value)[:10])


def timeliness(df: Any, date_columns: Sequence[str], as_of: dt.date) -> Timeliness:
    """How far the newest value of each date column lies behind ``as_of`` (the ingest date).

    Args:
        df: A pandas, Dask or Spark DataFrame.
        date_columns: Columns holding event dates (not dates of birth).
        as_of: The date the data is judged at.
    """
    ops = _ops(df)
    latest = {c: _as_date(v) for c, v in ops.maxima(list(date_columns)).items()}
    lags = {c: ((as_of - d).days if d is not None else None) for c, d in latest.items()}
    known = [lag for lag in lags.values() if lag is not None]
    return Timeliness(
        as_of=as_of.isoformat(),
        latest={c: (d.isoformat() if d else None) for c, d in latest.items()},
        lag_days=lags,
        overall_lag_days=min(known) if known else None,
    )


def assess(
    df: Any,
    *,
    validity_rules: Sequence[ValidityRule] = (),
    consistency_rules: Sequence[ConsistencyRule] = (),
    key_columns: Sequence[str] = (),
    date_columns: Sequence[str] = (),
    as_of: dt.date | None = None,
    completeness_columns: Sequence[str] | None = None,
) -> QualityAssessment:
    """All five dimensions in one call.

    Example:
        >>> assess(df, validity_rules=[ValidityRule("sex", allowed=("F", "M"))],
        ...        consistency_rules=[ConsistencyRule("dob", "admitted")], date_columns=["admitted"],
        ...        as_of=dt.date(2025, 1, 1)).to_dict()
    """
    return QualityAssessment(
        completeness=completeness(df, completeness_columns),
        uniqueness=uniqueness(df, key_columns),
        validity=validity(df, validity_rules),
        consistency=consistency(df, consistency_rules),
        timeliness=timeliness(df, date_columns, as_of or dt.datetime.now(dt.UTC).date()),
        engine=engine_of(df),
    )
