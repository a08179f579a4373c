"""Differentially private counts, sums, means, quantiles and histograms on OpenDP 0.16's Polars integration.

Every function builds one OpenDP ``Context.compositor`` over the data with the whole ε (and δ) of the call,
expresses the statistic as an OpenDP Polars query, resolves it to a measurement (which calibrates the noise),
reads the stated accuracy from OpenDP's ``summarize_polars_measurement``, and only then releases.

Privacy unit:
    Each person contributes at most ``contributions`` rows to the data frame (default 1): adding or removing
    one person changes at most that many rows (OpenDP's ``dp.unit_of(contributions=...)``). If a person can
    appear in more rows, pass the true bound, or the guarantee does not hold. When grouping, the same person
    may fall in up to ``contributions`` groups; OpenDP accounts for that.

Public information assumed:
    The schema (column names and types), the ``bounds``/``candidates``/``categories``/``keys`` you pass, and
    ``max_rows`` (an upper bound on the number of rows, e.g. the size of the population the data comes from,
    never derived from the data). Everything else about the data is protected.

Stated accuracy:
    ``DPResult.accuracy`` is the half-width of a 95% (``1 - alpha``) confidence interval for the noise added,
    taken from OpenDP's accuracy utilities: the released value is within ``accuracy`` of the exact value
    computed on the clamped data with probability ``1 - alpha``. Clamping to ``bounds`` can add bias that
    the interval does not cover. Missing values (null/NaN) of the measured column are dropped before summing,
    averaging or ranking, so sums, means and quantiles are over the non-missing values.

Release discipline:
    Each function takes ``before_release(epsilon, delta)``, called with the ε/δ the query actually spends
    after every parameter is validated and before any value is computed from the data.
    :func:`tre_lib.privacy.run_query` uses it to charge the budget first: if the charge is refused nothing
    is released. (If the release itself fails after a successful charge, the budget stays spent: the safe
    direction.)

Example:
    >>> import pandas as pd
    >>> df = pd.DataFrame({"age": [30, 41, 57, 62] * 250})
    >>> r = dp_mean(df, "age", bounds=(0, 100), epsilon=1.0)
    >>> r.statistic, r.epsilon <= 1.0, r.accuracy > 0
    ('mean', True, True)
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any, TypeAlias, cast

import numpy as np
import opendp.prelude as dp
import pandas as pd
import polars as pl
from opendp.extras.polars import DPExpr
from opendp.mod import Measurement, OpenDPException

from tre_lib.privacy.errors import InvalidParameterError, MechanismError, UnknownColumnError

dp.enable_features("contrib")

DEFAULT_MAX_ROWS = 10_000_000
"""Default public upper bound on the rows of a data frame.

OpenDP needs one for float sums (floating-point rounding grows with the number of rows) and for quantiles.
At 10 million rows the float-sum noise is about 4% above the ideal; at 1 million, 0.04%. Pass the size of the
population your data is drawn from when it is larger; never a figure computed from the data."""

DEFAULT_ALPHA = 0.05
"""Statistical significance of the stated accuracy: 0.05 gives the half-width of a 95% interval."""

DEFAULT_QUANTILE_CANDIDATES = 101
"""How many evenly spaced candidates ``dp_quantile`` tries between ``bounds`` when none are given."""

Frame: TypeAlias = pd.DataFrame | pl.DataFrame | pl.LazyFrame
BeforeRelease: TypeAlias = Callable[[float, float], object]
Keys: TypeAlias = Mapping[str, Sequence[Any]] | pd.DataFrame | pl.DataFrame | Sequence[Any]
Bounds: TypeAlias = tuple[float, float]

# OpenDP writes the quantile level as a fraction num/den; u64::MAX // max_length caps den (_quantile_den).
_U64_MAX = 2**64 - 1
_DEFAULT_ALPHA_DEN = 10_000


@dataclass(frozen=True, eq=False)
class DPResult:
    """A differentially private release and what it cost.

    Attributes:
        statistic: ``"count"``, ``"sum"``, ``"mean"``, ``"quantile"`` or ``"histogram"``.
        value: A number for an ungrouped statistic; for a grouped one or a histogram, a data frame (pandas if
            the input was pandas, else polars) with the group columns, the statistic and a per-cell
            ``accuracy`` column (and ``count`` where OpenDP released one alongside).
        mechanism: The OpenDP mechanism(s): aggregate, noise distribution and noise scale.
        epsilon: ε actually spent (from the OpenDP measurement's privacy map; never above what was asked).
        delta: δ actually spent (0 for pure ε-DP).
        accuracy: Half-width of the ``1 - alpha`` confidence interval of each released cell (the largest over
            cells when it varies, e.g. grouped means); NaN if no cell was released. In the unit of
            ``accuracy_unit``.
        accuracy_unit: ``"value"`` (same unit as the statistic) or, for quantiles, ``"rank"``: the released
            candidate's rank error is within this many records of the best candidate's.
        alpha: Significance of ``accuracy`` (0.05: a 95% interval).
        column: The measured column (``None`` for row counts).
        by: Grouping columns.
        contributions: The privacy unit: rows one person may contribute.
        threshold: For groups released without public keys, the noisy-count threshold below which OpenDP
            suppressed a group; else ``None``.
        noise: OpenDP's summary of each noisy aggregate (column, aggregate, distribution, scale, accuracy).
    """

    statistic: str
    value: Any
    mechanism: str
    epsilon: float
    delta: float
    accuracy: float
    accuracy_unit: str
    alpha: float
    column: str | None
    by: tuple[str, ...]
    contributions: int
    threshold: int | None = None
    noise: tuple[Mapping[str, Any], ...] = field(default_factory=tuple)

    @property
    def confidence(self) -> float:
        """Confidence level of ``accuracy`` (0.95 by default)."""
        return 1.0 - self.alpha

    def as_dict(self) -> dict[Any, Any]:
        """Return a grouped value as ``{key: value}`` (key a scalar for one group column, else a tuple).

        Raises:
            InvalidParameterError: The result is a single number, not a table.
        """
        if not self.by:
            raise InvalidParameterError("as_dict() is for grouped results and histograms; use .value")
        frame = self.value if isinstance(self.value, pl.DataFrame) else pl.from_pandas(self.value)
        keys = frame.select(self.by).rows()
        values = frame[self.statistic if self.statistic != "histogram" else "count"].to_list()
        return {(k[0] if len(k) == 1 else k): v for k, v in zip(keys, values, strict=True)}


@dataclass(frozen=True)
class _Spec:
    """Validated parameters shared by every mechanism."""

    statistic: str
    column: str | None
    by: tuple[str, ...]
    epsilon: float
    delta: float | None
    contributions: int
    max_rows: int
    alpha: float
    keys: pl.DataFrame | None
    max_groups: int | None = None


@dataclass
class _Planned:
    """A resolved OpenDP query that has not touched the data yet."""

    context: dp.Context
    measurement: Measurement
    epsilon: float
    delta: float
    summary: pl.DataFrame


# ---------------------------------------------------------------------------------------------- validation


def _check_epsilon(epsilon: float) -> float:
    if isinstance(epsilon, bool) or not isinstance(epsilon, int | float) or not math.isfinite(epsilon):
        raise InvalidParameterError(f"epsilon must be a finite number > 0; got {epsilon!r}")
    if epsilon <= 0:
        raise InvalidParameterError(
            f"epsilon must be > 0; got {epsilon!r}. Smaller ε means more privacy and more noise; "
            "values between 0.1 and 1 are typical."
        )
    return float(epsilon)


def _check_delta(delta: float | None) -> float | None:
    if delta is None or delta == 0:
        return None
    if not isinstance(delta, int | float) or not (0 < delta < 1):
        raise InvalidParameterError(f"delta must be in [0, 1), typically below 1e-6; got {delta!r}")
    return float(delta)


def _check_positive_int(name: str, value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise InvalidParameterError(f"{name} must be a whole number >= 1; got {value!r}")
    return int(value)


def _check_alpha(alpha: float) -> float:
    if not isinstance(alpha, int | float) or not (0 < alpha < 1):
        raise InvalidParameterError(f"alpha must be in (0, 1), e.g. 0.05 for a 95% interval; got {alpha!r}")
    return float(alpha)


def _check_bounds(bounds: Bounds) -> Bounds:
    try:
        lo, hi = bounds
    except (TypeError, ValueError):
        raise InvalidParameterError(f"bounds must be a pair (lower, upper); got {bounds!r}") from None
    for b in (lo, hi):
        if isinstance(b, bool) or not isinstance(b, int | float | np.number) or not math.isfinite(b):
            raise InvalidParameterError(f"bounds must be two finite numbers; got {bounds!r}")
    if lo > hi:
        raise InvalidParameterError(
            f"bounds lower {lo!r} is above upper {hi!r}; pass (lower, upper) with lower <= upper"
        )
    return lo, hi


def _as_by(by: str | Sequence[str] | None) -> tuple[str, ...]:
    if by is None:
        return ()
    if isinstance(by, str):
        return (by,)
    out = tuple(by)
    if not all(isinstance(c, str) for c in out) or len(set(out)) != len(out):
        raise InvalidParameterError(f"by must be a column name or a list of distinct names; got {by!r}")
    return out


def _to_lazy(df: Frame) -> tuple[pl.LazyFrame, bool]:
    """Return the data as a polars LazyFrame and whether it came from pandas."""
    if isinstance(df, pd.DataFrame):
        # from_pandas turns NaN into null, so missing values are handled one way below.
        return pl.from_pandas(df).lazy(), True
    if isinstance(df, pl.DataFrame):
        return df.lazy(), False
    if isinstance(df, pl.LazyFrame):
        # A lazy scan (e.g. of a project view's Parquet) is passed to OpenDP as a plan, which is far cheaper
        # than shipping the rows across its FFI. But OpenDP aborts the whole process on a Python UDF
        # (map_batches, map_elements, Python scans) in a plan, so such a frame is materialised first.
        if "python" in df.explain(optimized=False).lower():
            return df.collect().lazy(), False
        return df, False
    raise InvalidParameterError(
        f"data must be a pandas or polars DataFrame (or polars LazyFrame); got {type(df).__name__}"
    )


def _check_columns(schema: pl.Schema, columns: Iterable[str]) -> None:
    for c in columns:
        if c not in schema:
            raise UnknownColumnError(c, list(schema.names()))


def _is_numeric(dtype: pl.DataType) -> bool:
    return dtype.is_numeric() and not isinstance(dtype, pl.Decimal)


def _normalise_keys(keys: Keys, by: tuple[str, ...], schema: pl.Schema) -> pl.DataFrame:
    """Turn the public key set into a polars frame with the data's dtypes."""
    if isinstance(keys, pd.DataFrame):
        frame = pl.from_pandas(keys)
    elif isinstance(keys, pl.DataFrame):
        frame = keys
    elif isinstance(keys, Mapping):
        missing = [c for c in by if c not in keys]
        if missing:
            raise InvalidParameterError(f"keys has no values for group column(s) {missing}")
        combos = list(itertools.product(*(list(keys[c]) for c in by)))
        frame = pl.DataFrame(combos, schema=list(by), orient="row")
    elif isinstance(keys, Sequence) and not isinstance(keys, str):
        if len(by) != 1:
            raise InvalidParameterError(
                "a plain list of keys needs exactly one by column; for several pass a dict or data frame"
            )
        frame = pl.DataFrame({by[0]: list(keys)})
    else:
        raise InvalidParameterError(f"keys must be a dict, list or data frame; got {type(keys).__name__}")
    missing = [c for c in by if c not in frame.columns]
    if missing:
        raise InvalidParameterError(f"keys has no column(s) {missing}; it needs one column per by column")
    frame = frame.select(by).unique(maintain_order=True)
    if frame.height == 0:
        raise InvalidParameterError("keys is empty; list every group you want released")
    try:
        return frame.cast({c: schema[c] for c in by})
    except pl.exceptions.PolarsError as exc:
        raise InvalidParameterError(f"keys do not match the type of the group columns: {exc}") from exc


def _make_spec(
    df: Frame,
    statistic: str,
    column: str | None,
    epsilon: float,
    *,
    by: str | Sequence[str] | None,
    keys: Keys | None,
    delta: float | None,
    contributions: int,
    max_rows: int,
    alpha: float,
    max_groups: int | None = None,
) -> tuple[_Spec, pl.LazyFrame, bool]:
    lf, from_pandas = _to_lazy(df)
    spec_by = _as_by(by)
    schema = lf.collect_schema()
    _check_columns(schema, [*([column] if column else []), *spec_by])
    if column is not None and column in spec_by:
        raise InvalidParameterError(f"column {column!r} cannot also be a group (by) column")
    spec_delta = _check_delta(delta)
    key_frame = None
    if spec_by:
        if keys is not None:
            key_frame = _normalise_keys(keys, spec_by, schema)
        elif spec_delta is None:
            raise InvalidParameterError(
                f"grouping by {list(spec_by)} needs the public list of groups (keys=...) or delta > 0 "
                "(then OpenDP releases only groups whose noisy count clears a threshold)"
            )
    elif keys is not None:
        raise InvalidParameterError("keys only applies to grouped queries; pass by=... as well")
    spec = _Spec(
        statistic=statistic,
        column=column,
        by=spec_by,
        epsilon=_check_epsilon(epsilon),
        delta=spec_delta,
        contributions=_check_positive_int("contributions", contributions),
        max_rows=_check_positive_int("max_rows", max_rows),
        alpha=_check_alpha(alpha),
        keys=key_frame,
        max_groups=None if max_groups is None else _check_positive_int("max_groups", max_groups),
    )
    # Only the columns the query reads enter OpenDP's domain; categoricals become strings, which OpenDP
    # groups on. Both are schema-level changes that depend on no data values.
    needed = list(dict.fromkeys([*spec_by, *([column] if column else [])]))
    # A row count reads no column: a constant column keeps the row count without exposing any other type.
    if needed:
        lf = lf.select(needed)
    else:
        lf = lf.with_columns(pl.lit(0, dtype=pl.Int32).alias("_row")).select("_row")
    casts = {c: pl.String for c in needed if isinstance(schema[c], pl.Categorical | pl.Enum)}
    if casts:
        lf = lf.cast(casts)  # type: ignore[arg-type]
        if key_frame is not None:
            keys_as_text = key_frame.cast({c: pl.String for c in casts if c in spec_by})
            spec = dataclasses.replace(spec, keys=keys_as_text)
    return spec, lf, from_pandas


def _numeric_column(lf: pl.LazyFrame, column: str) -> pl.DataType:
    dtype = lf.collect_schema()[column]
    if not _is_numeric(dtype):
        raise InvalidParameterError(
            f"column {column!r} has type {dtype}; sums, means and quantiles need a numeric column"
        )
    return dtype


def _present(column: str, dtype: pl.DataType) -> pl.Expr:
    """Rows where the measured column has a value (not null, and not NaN for floats)."""
    expr = pl.col(column).is_not_null()
    if dtype.is_float():
        expr = expr & pl.col(column).is_not_nan()
    return expr


def _typed_bounds(column: str, dtype: pl.DataType, bounds: Bounds) -> tuple[pl.Expr, Bounds]:
    """Integer data with integer bounds stays integer (exact discrete noise); anything else is float."""
    lo, hi = _check_bounds(bounds)
    if dtype.is_integer() and float(lo).is_integer() and float(hi).is_integer():
        return pl.col(column), (int(lo), int(hi))
    return pl.col(column).cast(pl.Float64), (float(lo), float(hi))


# ----------------------------------------------------------------------------------------------- execution


def _loss(value: Any) -> tuple[float, float]:
    """(ε, δ) from a privacy map's output: a float for pure DP, a pair for approximate DP."""
    if isinstance(value, tuple):
        return float(value[0]), float(value[1])
    return float(value), 0.0


def _calibrate(make: Callable[..., Measurement], spec: _Spec) -> Measurement:
    """Find the smallest noise scale (and, for groups without keys, threshold) that fits (ε, δ).

    OpenDP's ``LazyFrameQuery.resolve`` finds the scale by a generic binary search that builds about a
    thousand measurements (~1 s a query). The privacy map of OpenDP's Laplace and noisy-min mechanisms is
    ε = c / scale, so one measurement at scale 1 gives the scale directly; OpenDP's own map then confirms
    it (nudging up against float rounding), and the binary search remains the fallback. The Context's
    compositor checks the measurement against the budget again when it is run, so a wrong scale here could
    never overspend: it would be refused.
    """
    d_in = spec.contributions
    # Groups discovered by OpenDP are released above a noisy threshold; search the scale with the threshold
    # out of the way (as OpenDP's resolve does), then the smallest threshold that keeps δ in budget.
    threshold_mode = bool(spec.by) and spec.keys is None
    search_threshold = 2**32 - 1 if threshold_mode else None
    eps_at_one = _loss(make(1.0, search_threshold).map(d_in))[0]
    if not (eps_at_one > 0 and math.isfinite(eps_at_one)):
        raise MechanismError(
            f"OpenDP reported ε={eps_at_one} for this {spec.statistic}; cannot calibrate noise"
        )
    scale = eps_at_one / spec.epsilon
    for _ in range(20):
        if _loss(make(scale, search_threshold).map(d_in))[0] <= spec.epsilon:
            break
        scale *= 1 + 1e-12
    else:
        scale = dp.binary_search_param(
            lambda s: make(s, search_threshold), d_in, spec.epsilon, T=float
        )  # pragma: no cover - fallback for a mechanism whose map is not c / scale
    if not threshold_mode:
        return make(scale, None)
    delta = cast(float, spec.delta)

    def _threshold_fits(t: float) -> bool:  # OpenDP's search is typed for floats; T=int passes ints
        try:
            return _loss(make(scale, int(t)).map(d_in))[1] <= delta
        except OpenDPException:  # OpenDP rejects thresholds too small to protect anyone
            return False

    return make(scale, int(dp.binary_search(_threshold_fits, bounds=(0, 2**31 - 1), T=int)))


def _plan(lf: pl.LazyFrame, spec: _Spec, filters: Sequence[pl.Expr], aggs: Sequence[pl.Expr]) -> _Planned:
    """Build the OpenDP context and the calibrated measurement, without touching the data."""
    try:
        context = dp.Context.compositor(
            data=lf,
            privacy_unit=dp.unit_of(contributions=spec.contributions),
            privacy_loss=dp.loss_of(epsilon=spec.epsilon, delta=spec.delta),
            split_evenly_over=1,
            margins=[
                dp.polars.Margin(by=[], max_length=spec.max_rows),
                *(
                    [dp.polars.Margin(by=list(spec.by), max_groups=spec.max_groups)]
                    if spec.max_groups
                    else []
                ),
            ],
        )
        # The plan is written against an empty frame of the same schema, as OpenDP's context.query() does:
        # it holds no data, so building and calibrating it reveals nothing.
        plan = pl.LazyFrame(schema=lf.collect_schema())
        if filters:
            plan = plan.filter(*filters)
        if spec.by:
            plan = plan.group_by(*spec.by).agg(*aggs)
            if spec.keys is not None:
                # The join OpenDP's LazyFrameQuery.with_keys makes: every public key, in the data or not.
                plan = spec.keys.lazy().join(plan, how="left", on=list(spec.by), nulls_equal=True)
        else:
            plan = plan.select(*aggs)
        accountant = context.accountant

        def make(scale: float, threshold: int | None) -> Measurement:
            return dp.m.make_private_lazyframe(
                input_domain=accountant.input_domain,
                input_metric=accountant.input_metric,
                output_measure=accountant.output_measure,
                lazyframe=plan,
                global_scale=scale,
                threshold=threshold,
            )

        measurement = _calibrate(make, spec)
        eps, delta = _loss(measurement.map(spec.contributions))
        summary = dp.summarize_polars_measurement(measurement, spec.alpha)
    except OpenDPException as exc:
        raise MechanismError(
            f"OpenDP could not build a private {spec.statistic} of {spec.column or 'rows'}: "
            f"{exc.message or exc.variant}. Check the column's type and the parameters."
        ) from exc
    return _Planned(context, measurement, eps, delta, summary)


def _release(planned: _Planned, before_release: BeforeRelease | None) -> pl.DataFrame:
    """Charge (via the hook), then run the measurement on the data: the only place data is read."""
    if before_release is not None:
        before_release(planned.epsilon, planned.delta)
    return planned.context(planned.measurement).collect()


def _rows(summary: pl.DataFrame) -> tuple[dict[str, Any], ...]:
    return tuple(summary.to_dicts())


def _describe(summary: pl.DataFrame, extra: str = "") -> str:
    parts = [
        f"{r['aggregate']}: {r['distribution']} noise, scale {r['scale']:.4g}" for r in summary.to_dicts()
    ]
    return "OpenDP " + "; ".join(parts) + extra


def _accuracy_of(summary: pl.DataFrame, name: str) -> float:
    row = summary.filter(pl.col("column") == name)
    value = row["accuracy"].item() if row.height == 1 else None
    if value is None:
        raise MechanismError(f"OpenDP stated no accuracy for {name!r}; this is a bug in tre_lib.privacy")
    return float(value)


def _threshold(summary: pl.DataFrame) -> int | None:
    if "threshold" not in summary.columns:
        return None
    values = [v for v in summary["threshold"].to_list() if v is not None]
    return int(max(values)) if values else None


def _order_groups(out: pl.DataFrame, spec: _Spec) -> pl.DataFrame:
    """Put groups in the order of the public keys (or sorted, when OpenDP chose the groups)."""
    if spec.keys is None:
        return out.sort(list(spec.by), nulls_last=True)
    order = spec.keys.with_row_index("__order")
    return order.join(out, on=list(spec.by), how="left", nulls_equal=True).sort("__order").drop("__order")


def _finish_frame(frame: pl.DataFrame, from_pandas: bool) -> pl.DataFrame | pd.DataFrame:
    return frame.to_pandas() if from_pandas else frame


def _check_float_groups(spec: _Spec, bounds: Bounds) -> None:
    # OpenDP bounds floating-point rounding across groups with max_groups; for groups it discovers itself it
    # cannot know their number, and guessing large inflates the noise enormously.
    if spec.by and spec.keys is None and spec.max_groups is None and isinstance(bounds[0], float):
        raise InvalidParameterError(
            f"a float {spec.statistic} over groups OpenDP discovers (no keys) needs max_groups=..., a public "
            "upper bound on the number of groups; or pass keys=..., or integer bounds on an integer column"
        )


def _with_len_for_threshold(spec: _Spec, aggs: list[pl.Expr]) -> list[pl.Expr]:
    # Without public keys OpenDP chooses which groups to release by thresholding a noisy row count, so the
    # query must include one; it is released too (the budget covers it) and returned as "count".
    if spec.by and spec.keys is None:
        return [dp.len(signed=True).alias("count"), *aggs]
    return aggs


# -------------------------------------------------------------------------------------------------- count


def dp_count(
    df: Frame,
    epsilon: float,
    *,
    column: str | None = None,
    by: str | Sequence[str] | None = None,
    keys: Keys | None = None,
    delta: float | None = None,
    max_groups: int | None = None,
    contributions: int = 1,
    max_rows: int = DEFAULT_MAX_ROWS,
    alpha: float = DEFAULT_ALPHA,
    before_release: BeforeRelease | None = None,
) -> DPResult:
    """Differentially private number of rows (or of non-missing values of ``column``).

    Noise: OpenDP's integer (discrete) Laplace mechanism; accuracy from ``summarize_polars_measurement``.

    Args:
        df: pandas or polars data; each person contributes at most ``contributions`` rows.
        epsilon: Privacy-loss parameter ε > 0 spent by this call.
        column: Count the non-missing values of this column instead of rows.
        by: Group column(s); one count per group.
        keys: The public list of groups (list for one column, dict of column -> values for the full cross
            product, or a data frame of combinations). Groups absent from the data get a noisy zero; groups
            not listed are not released.
        delta: δ > 0 lets OpenDP release groups without ``keys``, suppressing those under a noisy threshold.
        max_groups: Public upper bound on the number of groups, for groups released without ``keys``
            (required there for float sums and means, where it limits floating-point error).
        contributions: Rows one person may contribute (the privacy unit).
        max_rows: Public upper bound on the rows; see :data:`DEFAULT_MAX_ROWS`.
        alpha: Significance of the stated accuracy (0.05: 95% interval).
        before_release: Called with the (ε, δ) spent, before the data is read; raise to stop the release.

    Returns:
        A :class:`DPResult`; ``value`` is an ``int``, or a frame with a ``count`` column when grouped.

    Example:
        >>> import polars as pl
        >>> r = dp_count(pl.DataFrame({"x": range(1000)}), epsilon=50.0)
        >>> abs(r.value - 1000) <= 5
        True
    """
    spec, lf, from_pandas = _make_spec(
        df, "count", column, epsilon, by=by, keys=keys, delta=delta,
        contributions=contributions, max_rows=max_rows, alpha=alpha, max_groups=max_groups,
    )  # fmt: skip
    agg = (DPExpr(pl.col(column)).count(signed=True) if column else dp.len(signed=True)).alias("count")
    return _count_like(lf, spec, from_pandas, agg, before_release)


def _count_like(
    lf: pl.LazyFrame, spec: _Spec, from_pandas: bool, agg: pl.Expr, before_release: BeforeRelease | None
) -> DPResult:
    _check_max_rows(lf, spec)
    planned = _plan(lf, spec, [], [agg])
    accuracy = _accuracy_of(planned.summary, "count")
    out = _release(planned, before_release)
    value: Any
    if spec.by:
        frame = _order_groups(out, spec).with_columns(pl.lit(accuracy).alias("accuracy"))
        value = _finish_frame(frame, from_pandas)
    else:
        value = int(out["count"].item())
    return _result(planned, spec, spec.statistic, value, accuracy, column=spec.column)


def _result(
    planned: _Planned,
    spec: _Spec,
    statistic: str,
    value: Any,
    accuracy: float,
    *,
    column: str | None,
    unit: str = "value",
    note: str = "",
) -> DPResult:
    """The released value with what was spent and how accurate it is, as every mechanism reports it."""
    return DPResult(
        statistic=statistic,
        value=value,
        mechanism=_describe(planned.summary, note),
        epsilon=planned.epsilon,
        delta=planned.delta,
        accuracy=accuracy,
        accuracy_unit=unit,
        alpha=spec.alpha,
        column=column,
        by=spec.by,
        contributions=spec.contributions,
        threshold=_threshold(planned.summary),
        noise=_rows(planned.summary),
    )


def _check_max_rows(lf: pl.LazyFrame, spec: _Spec) -> None:
    # OpenDP trusts max_length and does not check it; data longer than the bound would void the guarantee
    # for float sums and quantiles. The check reads one bit of the data (is it longer than a public bound?),
    # which the data owner's bound makes near-certain "no".
    if lf.select(pl.len()).collect().item() > spec.max_rows:
        raise InvalidParameterError(
            f"the data has more rows than max_rows={spec.max_rows}; pass a larger public upper bound "
            "(for example the size of the population the data is drawn from)"
        )


# --------------------------------------------------------------------------------------------- histogram


def dp_histogram(
    df: Frame,
    column: str,
    categories: Sequence[Any],
    epsilon: float,
    *,
    contributions: int = 1,
    max_rows: int = DEFAULT_MAX_ROWS,
    alpha: float = DEFAULT_ALPHA,
    before_release: BeforeRelease | None = None,
) -> DPResult:
    """Differentially private count of rows in each of the public ``categories`` of ``column``.

    Every listed category is released (absent ones as a noisy zero), in the order given; rows whose value is
    not listed are not counted. Because the categories are public, no δ or threshold is needed.

    Args:
        df: pandas or polars data; each person contributes at most ``contributions`` rows.
        column: The categorical column.
        categories: The public list of categories (bins) to count.
        epsilon: ε > 0 spent by this call.
        contributions: Rows one person may contribute.
        max_rows: Public upper bound on the rows.
        alpha: Significance of the stated accuracy.
        before_release: Called with the (ε, δ) spent, before the data is read.

    Returns:
        A :class:`DPResult` whose ``value`` is a frame with ``column``, ``count`` and ``accuracy``;
        ``as_dict()`` gives ``{category: count}``.
    """
    if isinstance(categories, str) or not isinstance(categories, Sequence) or len(categories) == 0:
        raise InvalidParameterError("categories must be a non-empty list of the public category values")
    if not isinstance(column, str):
        raise InvalidParameterError(f"column must be one column name; got {column!r}")
    spec, lf, from_pandas = _make_spec(
        df, "histogram", None, epsilon, by=[column], keys=list(categories), delta=None,
        contributions=contributions, max_rows=max_rows, alpha=alpha,
    )  # fmt: skip
    result = _count_like(lf, spec, from_pandas, dp.len(signed=True).alias("count"), before_release)
    return dataclasses.replace(result, column=column)


# --------------------------------------------------------------------------------------------------- sum


def dp_sum(
    df: Frame,
    column: str,
    bounds: Bounds,
    epsilon: float,
    *,
    by: str | Sequence[str] | None = None,
    keys: Keys | None = None,
    delta: float | None = None,
    max_groups: int | None = None,
    contributions: int = 1,
    max_rows: int = DEFAULT_MAX_ROWS,
    alpha: float = DEFAULT_ALPHA,
    before_release: BeforeRelease | None = None,
) -> DPResult:
    """Differentially private sum of ``column``, each value clamped to ``bounds``.

    Integer columns with integer bounds get exact discrete Laplace noise; others float Laplace noise.

    Args:
        df: pandas or polars data; each person contributes at most ``contributions`` rows.
        column: Numeric column to sum; missing values are dropped.
        bounds: Public (lower, upper) clamp for each value; lower <= upper.
        epsilon: ε > 0 spent by this call.
        by: Group column(s); see :func:`dp_count` for ``keys`` and ``delta``.
        keys: Public groups.
        delta: δ > 0 to release groups without ``keys`` (a noisy ``count`` is released too).
        max_groups: Public bound on the number of groups without ``keys`` (needed for float sums).
        contributions: Rows one person may contribute.
        max_rows: Public upper bound on the rows.
        alpha: Significance of the stated accuracy.
        before_release: Called with the (ε, δ) spent, before the data is read.

    Returns:
        A :class:`DPResult`; ``value`` is a number, or a frame with a ``sum`` column when grouped.
    """
    spec, lf, from_pandas = _make_spec(
        df, "sum", column, epsilon, by=by, keys=keys, delta=delta,
        contributions=contributions, max_rows=max_rows, alpha=alpha, max_groups=max_groups,
    )  # fmt: skip
    dtype = _numeric_column(lf, column)
    expr, typed = _typed_bounds(column, dtype, bounds)
    _check_float_groups(spec, typed)
    aggs = _with_len_for_threshold(spec, [DPExpr(expr).sum(typed).alias("sum")])
    _check_max_rows(lf, spec)
    planned = _plan(lf, spec, [_present(column, dtype)], aggs)
    accuracy = _accuracy_of(planned.summary, "sum")
    out = _release(planned, before_release)
    value: Any
    if spec.by:
        value = _finish_frame(
            _order_groups(out, spec).with_columns(pl.lit(accuracy).alias("accuracy")), from_pandas
        )
    else:
        value = out["sum"].item()
    return _result(planned, spec, "sum", value, accuracy, column=column)


# -------------------------------------------------------------------------------------------------- mean


def mean_interval_half_width(
    noisy_sum: float,
    noisy_count: float,
    sum_accuracy: float,
    count_accuracy: float,
    bounds: Bounds,
) -> float:
    """Half-width of a confidence interval for a mean released as noisy sum / noisy count.

    OpenDP states an accuracy for the sum and for the count but none for their ratio. If the true sum is
    within ``sum_accuracy`` of the noisy one and the true count within ``count_accuracy`` (each at alpha/2, so
    both at once with probability >= 1 - alpha by the union bound), the true mean lies between the extreme
    ratios over that box, and always within ``bounds``. Returns the larger distance from the released mean
    (``noisy_sum / noisy_count`` clamped to ``bounds``) to either end of that interval.

    Args:
        noisy_sum: Released sum.
        noisy_count: Released count.
        sum_accuracy: OpenDP's accuracy of the sum at alpha/2.
        count_accuracy: OpenDP's accuracy of the count at alpha/2.
        bounds: The clamp bounds (the mean of clamped values lies within them).
    """
    lo, hi = float(bounds[0]), float(bounds[1])
    released = _clamp(noisy_sum / noisy_count, lo, hi) if noisy_count > 0 else (lo + hi) / 2
    n_lo = noisy_count - count_accuracy
    if n_lo < 1:
        # The count could be (near) zero: the interval is everything the bounds allow.
        low, high = lo, hi
    else:
        corners = [
            s / n
            for s in (noisy_sum - sum_accuracy, noisy_sum + sum_accuracy)
            for n in (n_lo, noisy_count + count_accuracy)
        ]
        low, high = _clamp(min(corners), lo, hi), _clamp(max(corners), lo, hi)
    return max(high - released, released - low, 0.0)


def _clamp(x: float, lo: float, hi: float) -> float:
    return min(max(x, lo), hi)


def dp_mean(
    df: Frame,
    column: str,
    bounds: Bounds,
    epsilon: float,
    *,
    by: str | Sequence[str] | None = None,
    keys: Keys | None = None,
    delta: float | None = None,
    max_groups: int | None = None,
    contributions: int = 1,
    max_rows: int = DEFAULT_MAX_ROWS,
    alpha: float = DEFAULT_ALPHA,
    before_release: BeforeRelease | None = None,
) -> DPResult:
    """Differentially private mean of ``column``, each value clamped to ``bounds``.

    Computed as OpenDP's ``dp.mean`` is: a noisy clamped sum divided by a noisy count, ε split between them
    by OpenDP. The query releases the noisy sum and count (rather than only their ratio, as ``dp.mean`` does)
    so that the stated accuracy can be derived from OpenDP's accuracy of each (see
    :func:`mean_interval_half_width`); the mean is their ratio, clamped to ``bounds`` (post-processing).
    When grouped, the noisy ``count`` is returned too.

    Args:
        df: pandas or polars data; each person contributes at most ``contributions`` rows.
        column: Numeric column; missing values are dropped.
        bounds: Public (lower, upper) clamp; lower <= upper.
        epsilon: ε > 0 spent by this call.
        by: Group column(s); see :func:`dp_count` for ``keys`` and ``delta``.
        keys: Public groups.
        delta: δ > 0 to release groups without ``keys``.
        max_groups: Public bound on the number of groups without ``keys`` (needed for float values).
        contributions: Rows one person may contribute.
        max_rows: Public upper bound on the rows.
        alpha: Significance of the stated accuracy.
        before_release: Called with the (ε, δ) spent, before the data is read.

    Returns:
        A :class:`DPResult`; ``value`` is a float, or a frame with ``mean``, ``count`` and a per-group
        ``accuracy`` (which depends on each group's size) when grouped.
    """
    spec, lf, from_pandas = _make_spec(
        df, "mean", column, epsilon, by=by, keys=keys, delta=delta,
        contributions=contributions, max_rows=max_rows, alpha=alpha, max_groups=max_groups,
    )  # fmt: skip
    dtype = _numeric_column(lf, column)
    expr, typed = _typed_bounds(column, dtype, bounds)
    _check_float_groups(spec, typed)
    count_agg = (
        dp.len(signed=True).alias("count")
        if spec.by and spec.keys is None
        else DPExpr(pl.col(column)).count(signed=True).alias("count")
    )
    aggs = [DPExpr(expr).sum(typed).alias("sum"), count_agg]
    _check_max_rows(lf, spec)
    # Each part's accuracy is taken at alpha/2 so that both hold together with probability >= 1 - alpha.
    half = dataclasses.replace(spec, alpha=spec.alpha / 2)
    planned = _plan(lf, half, [_present(column, dtype)], aggs)
    sum_acc = _accuracy_of(planned.summary, "sum")
    count_acc = _accuracy_of(planned.summary, "count")
    out = _release(planned, before_release)

    def _mean_and_accuracy(s: float | None, n: int | None) -> tuple[float | None, float]:
        if s is None or n is None:
            return None, math.nan
        mean = _clamp(s / n, float(typed[0]), float(typed[1])) if n > 0 else None
        return mean, mean_interval_half_width(s, n, sum_acc, count_acc, typed)

    value: Any
    if spec.by:
        ordered = _order_groups(out, spec)
        pairs = [_mean_and_accuracy(s, n) for s, n in zip(ordered["sum"], ordered["count"], strict=True)]
        frame = ordered.select(
            *spec.by,
            pl.Series("mean", [m for m, _ in pairs], dtype=pl.Float64),
            pl.col("count"),
            pl.Series("accuracy", [a for _, a in pairs], dtype=pl.Float64),
        )
        accs = [a for _, a in pairs if not math.isnan(a)]
        accuracy = max(accs) if accs else math.nan
        value = _finish_frame(frame, from_pandas)
    else:
        value, accuracy = _mean_and_accuracy(out["sum"].item(), out["count"].item())
    return _result(
        planned,
        spec,
        "mean",
        value,
        accuracy,
        column=column,
        note="; mean = noisy sum / noisy count, clamped to bounds",
    )


# ---------------------------------------------------------------------------------------------- quantile


def _quantile_den(q: float, max_rows: int) -> int:
    """The denominator OpenDP gives the quantile level when scoring candidates (score units per rank).

    Mirrors ``score_candidates_constants`` in OpenDP 0.16
    (rust/src/transformations/quantile_score_candidates):
    the level's exact binary fraction if its denominator is small enough, else ``u64::MAX // max_length``.
    """
    exact = Fraction(q).denominator
    cap = _U64_MAX // max_rows if max_rows else _DEFAULT_ALPHA_DEN
    return exact if exact < cap else cap


def _candidates(
    dtype: pl.DataType, candidates: Sequence[float] | None, bounds: Bounds | None, n_candidates: int
) -> list[Any]:
    if (candidates is None) == (bounds is None):
        raise InvalidParameterError(
            "pass exactly one of candidates (the public values to choose from) or bounds (lower, upper)"
        )
    if candidates is not None:
        if isinstance(candidates, str) or not isinstance(candidates, Sequence) or len(candidates) == 0:
            raise InvalidParameterError("candidates must be a non-empty list of numbers")
        values = list(candidates)
        for v in values:
            if isinstance(v, bool) or not isinstance(v, int | float | np.number) or not math.isfinite(v):
                raise InvalidParameterError(f"candidates must be finite numbers; got {v!r}")
    else:
        lo, hi = _check_bounds(cast(Bounds, bounds))
        n = _check_positive_int("n_candidates", n_candidates)
        values = list(np.linspace(float(lo), float(hi), max(n, 2)).tolist())
        if dtype.is_integer() and float(lo).is_integer() and float(hi).is_integer():
            values = [round(v) for v in values]
    # OpenDP requires strictly increasing candidates; order and repeats carry no meaning, so fix them.
    if dtype.is_integer() and all(float(v).is_integer() for v in values):
        return sorted({int(v) for v in values})
    return sorted({float(v) for v in values})


def dp_quantile(
    df: Frame,
    column: str,
    q: float,
    epsilon: float,
    *,
    candidates: Sequence[float] | None = None,
    bounds: Bounds | None = None,
    n_candidates: int = DEFAULT_QUANTILE_CANDIDATES,
    by: str | Sequence[str] | None = None,
    keys: Keys | None = None,
    delta: float | None = None,
    max_groups: int | None = None,
    contributions: int = 1,
    max_rows: int = DEFAULT_MAX_ROWS,
    alpha: float = DEFAULT_ALPHA,
    before_release: BeforeRelease | None = None,
) -> DPResult:
    """Differentially private ``q``-quantile of ``column``, chosen from public candidates.

    OpenDP scores each candidate by how far its rank is from ``q`` and picks one with the exponential
    mechanism (report-noisy-min). The result is always one of the candidates.

    Stated accuracy is in ranks (``accuracy_unit == "rank"``): OpenDP's ``summarize`` gives none for
    quantiles, so it is derived from OpenDP's stated noise scale: with probability ``1 - alpha`` the chosen
    candidate's rank error exceeds the best candidate's by at most ``scale / den * ln(k / alpha)`` records,
    for ``k`` candidates (a union bound over the exponential noise of each candidate's score; ``den``
    converts OpenDP's score units to ranks).

    Args:
        df: pandas or polars data; each person contributes at most ``contributions`` rows.
        column: Numeric column; missing values are dropped.
        q: Quantile in (0, 1), e.g. 0.5 for the median.
        epsilon: ε > 0 spent by this call.
        candidates: Public values to choose from (sorted for you).
        bounds: Instead of candidates: ``n_candidates`` evenly spaced values from lower to upper.
        n_candidates: How many candidates ``bounds`` makes.
        by: Group column(s); see :func:`dp_count` for ``keys`` and ``delta``.
        keys: Public groups.
        delta: δ > 0 to release groups without ``keys``.
        max_groups: Public bound on the number of groups without ``keys`` (needed for float values).
        contributions: Rows one person may contribute.
        max_rows: Public upper bound on the rows.
        alpha: Significance of the stated accuracy.
        before_release: Called with the (ε, δ) spent, before the data is read.

    Returns:
        A :class:`DPResult`; ``value`` is a candidate, or a frame with a ``quantile`` column when grouped.
    """
    if isinstance(q, bool) or not isinstance(q, int | float) or not (0 < q < 1):
        raise InvalidParameterError(f"q must be strictly between 0 and 1 (0.5 is the median); got {q!r}")
    spec, lf, from_pandas = _make_spec(
        df, "quantile", column, epsilon, by=by, keys=keys, delta=delta,
        contributions=contributions, max_rows=max_rows, alpha=alpha, max_groups=max_groups,
    )  # fmt: skip
    dtype = _numeric_column(lf, column)
    cands = _candidates(dtype, candidates, bounds, n_candidates)
    expr = pl.col(column) if isinstance(cands[0], int) else pl.col(column).cast(pl.Float64)
    aggs = _with_len_for_threshold(spec, [DPExpr(expr).quantile(float(q), cands).alias("quantile")])
    _check_max_rows(lf, spec)
    planned = _plan(lf, spec, [_present(column, dtype)], aggs)
    row = planned.summary.filter(pl.col("column") == "quantile").to_dicts()[0]
    rank_scale = float(row["scale"]) / _quantile_den(float(q), spec.max_rows)
    accuracy = rank_scale * math.log(len(cands) / spec.alpha)
    out = _release(planned, before_release)
    value: Any
    if spec.by:
        frame = _order_groups(out, spec).with_columns(pl.lit(accuracy).alias("accuracy"))
        value = _finish_frame(frame, from_pandas)
    else:
        value = out["quantile"].item()
    return _result(
        planned,
        spec,
        "quantile",
        value,
        accuracy,
        column=column,
        unit="rank",
        note=f" over {len(cands)} candidates (exponential mechanism)",
    )


# ------------------------------------------------------------------------------------ accuracy planning


def expected_accuracy(
    statistic: str,
    epsilon: float,
    *,
    bounds: Bounds = (0.0, 1.0),
    n_rows: int = 1000,
    contributions: int = 1,
    max_rows: int = DEFAULT_MAX_ROWS,
    alpha: float = DEFAULT_ALPHA,
) -> float:
    """Stated accuracy a ``count``, ``sum`` or ``mean`` would have, computed on no data at all.

    For planning (and :func:`plot_accuracy`): OpenDP resolves the same query on an empty frame of the same
    schema, so nothing private is read and no budget is spent. A mean's accuracy depends on the group size,
    so it is evaluated at ``n_rows`` rows with values at the middle of ``bounds``.

    Args:
        statistic: ``"count"``, ``"sum"`` or ``"mean"``.
        epsilon: ε of the hypothetical query.
        bounds: Clamp bounds for sum and mean (floats).
        n_rows: Assumed number of rows (mean only).
        contributions: Rows one person may contribute.
        max_rows: Public upper bound on the rows.
        alpha: Significance (0.05: 95% interval).

    Returns:
        Half-width of the ``1 - alpha`` confidence interval.
    """
    if statistic not in {"count", "sum", "mean"}:
        raise InvalidParameterError(f"statistic must be 'count', 'sum' or 'mean'; got {statistic!r}")
    lo, hi = _check_bounds(bounds)
    typed = (float(lo), float(hi))
    empty = pl.DataFrame(schema={"x": pl.Float64})
    spec, lf, _ = _make_spec(
        empty, statistic, "x", epsilon, by=None, keys=None, delta=None,
        contributions=contributions, max_rows=max_rows, alpha=alpha,
    )  # fmt: skip
    if statistic == "count":
        return _accuracy_of(_plan(lf, spec, [], [dp.len(signed=True).alias("count")]).summary, "count")
    if statistic == "sum":
        return _accuracy_of(_plan(lf, spec, [], [DPExpr(pl.col("x")).sum(typed).alias("sum")]).summary, "sum")
    half = dataclasses.replace(spec, alpha=spec.alpha / 2)
    aggs = [
        DPExpr(pl.col("x")).sum(typed).alias("sum"),
        DPExpr(pl.col("x")).count(signed=True).alias("count"),
    ]
    summary = _plan(lf, half, [], aggs).summary
    n = _check_positive_int("n_rows", n_rows)
    return mean_interval_half_width(
        n * (typed[0] + typed[1]) / 2, n, _accuracy_of(summary, "sum"), _accuracy_of(summary, "count"), typed
    )
