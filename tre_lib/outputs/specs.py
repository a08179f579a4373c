"""Declared computations of outputs, shared by the workspace and the airlock server.

An output that the server can check carries the computation that produced it: for a table, the grouping,
statistic and filters (:class:`TableSpec`); for a regression, the model, outcome and predictors
(:class:`RegressionSpec`). The workspace builds the output with these functions, and the server re-runs
exactly the same functions on the submitted data, so the two can only disagree if the submission lies.

Nothing here evaluates code sent by a client: filters are (column, operator, value) triples and
regressions are built from column names, never from formula strings (patsy/formulaic formulas are Python
expressions and would run on the server).
"""

from __future__ import annotations

import io
import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd

AGGFUNCS = ("count", "sum", "mean", "median", "quantile", "min", "max", "std", "var")
OPERATORS = ("==", "!=", "<", "<=", ">", ">=", "in", "not in")
MODELS = ("ols", "logit", "probit")
DATA_FORMATS = (".parquet", ".csv")
#: Relative tolerance when a submitted number is compared with the server's re-computation.
RTOL = 1e-9

CellKey = tuple[tuple[str, ...], tuple[str, ...]]


class SpecError(ValueError):
    """A declared computation is malformed; the message names the field and what to write instead."""


def _names(value: Any, field_name: str, *, required: bool) -> tuple[str, ...]:
    if value is None:
        value = []
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) and v for v in value):
        raise SpecError(f"{field_name} must be a column name or a list of column names, got {value!r}")
    if required and not value:
        raise SpecError(f"{field_name} must name at least one column")
    return tuple(value)


def _opt_str(data: Mapping[str, Any], key: str) -> str | None:
    value = data.get(key)
    if value is not None and (not isinstance(value, str) or not value):
        raise SpecError(f"{key} must be a non-empty string or absent, got {value!r}")
    return value


@dataclass(frozen=True)
class Filter:
    """Keep the rows where ``column <op> value`` (``in``/``not in`` take a list)."""

    column: str
    op: str
    value: Any

    @classmethod
    def from_value(cls, raw: Any) -> Filter:
        if isinstance(raw, Filter):
            return raw
        if isinstance(raw, Mapping):
            column, op, value = raw.get("column"), raw.get("op"), raw.get("value")
        elif isinstance(raw, list | tuple) and len(raw) == 3:
            column, op, value = raw
        else:
            raise SpecError(f"a filter is [column, op, value] or {{column, op, value}}, got {raw!r}")
        if not isinstance(column, str) or not column:
            raise SpecError(f"a filter's column must be a column name, got {column!r}")
        if op not in OPERATORS:
            raise SpecError(f"unknown filter operator {op!r}; use one of {', '.join(OPERATORS)}")
        if op in ("in", "not in"):
            if not isinstance(value, list | tuple):
                raise SpecError(f"filter {column} {op} needs a list of values, got {value!r}")
            value = list(value)
        elif isinstance(value, list | tuple | dict):
            raise SpecError(f"filter {column} {op} needs one value, got {value!r}")
        return cls(column, str(op), value)

    def as_dict(self) -> dict[str, Any]:
        return {"column": self.column, "op": self.op, "value": self.value}


def _filters(raw: Any) -> tuple[Filter, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list | tuple):
        raise SpecError(f"filters must be a list, got {type(raw).__name__}")
    return tuple(Filter.from_value(f) for f in raw)


@dataclass(frozen=True)
class TableSpec:
    """How a table was computed: ``protect_table(apply_filters(data), index, columns, values, aggfunc)``.

    Attributes:
        index: row variables.
        columns: column variables (empty for a one-way table).
        values: the numeric column aggregated (None for counts).
        aggfunc: the statistic.
        q: the quantile, for ``aggfunc="quantile"``.
        margins: totals published.
        dataset: the dataset (id or name) the data came from.
        view: the project view the data came from.
        filters: row filters applied before aggregating.
    """

    index: tuple[str, ...]
    columns: tuple[str, ...] = ()
    values: str | None = None
    aggfunc: str = "count"
    q: float = 0.5
    margins: bool = True
    dataset: str | None = None
    view: str | None = None
    filters: tuple[Filter, ...] = field(default=())

    def __post_init__(self) -> None:
        if self.aggfunc not in AGGFUNCS:
            raise SpecError(f"unknown aggfunc {self.aggfunc!r}; use one of {', '.join(AGGFUNCS)}")
        if self.aggfunc != "count" and self.values is None:
            raise SpecError(f"aggfunc {self.aggfunc!r} needs values= (the numeric column to aggregate)")
        if not (isinstance(self.q, int | float) and 0 <= self.q <= 1):
            raise SpecError(f"q must be a number between 0 and 1, got {self.q!r}")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TableSpec:
        """Validate a JSON object (unknown keys are an error, never silently dropped)."""
        known = {"index", "columns", "values", "aggfunc", "q", "margins", "dataset", "view", "filters"}
        unknown = set(data) - known
        if unknown:
            raise SpecError(f"unknown table spec key(s) {sorted(unknown)}; known: {sorted(known)}")
        margins = data.get("margins", True)
        if not isinstance(margins, bool):
            raise SpecError(f"margins must be true or false, got {margins!r}")
        return cls(
            index=_names(data.get("index"), "index", required=True),
            columns=_names(data.get("columns"), "columns", required=False),
            values=_opt_str(data, "values"),
            aggfunc=str(data.get("aggfunc", "count")),
            q=data.get("q", 0.5),
            margins=margins,
            dataset=_opt_str(data, "dataset"),
            view=_opt_str(data, "view"),
            filters=_filters(data.get("filters")),
        )

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["index"], out["columns"] = list(self.index), list(self.columns)
        out["filters"] = [f.as_dict() for f in self.filters]
        return out

    @property
    def needed_columns(self) -> list[str]:
        """Every column the computation reads (what a workspace uploads with the table)."""
        names = [*self.index, *self.columns, *([self.values] if self.values else [])]
        names += [f.column for f in self.filters]
        return list(dict.fromkeys(names))


@dataclass(frozen=True)
class RegressionSpec:
    """A regression built from column names: ``outcome ~ const + predictors + dummies(categorical)``."""

    model: str
    outcome: str
    predictors: tuple[str, ...]
    categorical: tuple[str, ...] = ()
    dataset: str | None = None
    view: str | None = None
    filters: tuple[Filter, ...] = field(default=())

    def __post_init__(self) -> None:
        if self.model not in MODELS:
            raise SpecError(f"unknown model {self.model!r}; use one of {', '.join(MODELS)}")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RegressionSpec:
        known = {"model", "outcome", "predictors", "categorical", "dataset", "view", "filters"}
        unknown = set(data) - known
        if unknown:
            raise SpecError(f"unknown regression spec key(s) {sorted(unknown)}; known: {sorted(known)}")
        outcome = data.get("outcome")
        if not isinstance(outcome, str) or not outcome:
            raise SpecError("outcome must name the dependent variable's column")
        return cls(
            model=str(data.get("model", "ols")),
            outcome=outcome,
            predictors=_names(data.get("predictors"), "predictors", required=True),
            categorical=_names(data.get("categorical"), "categorical", required=False),
            dataset=_opt_str(data, "dataset"),
            view=_opt_str(data, "view"),
            filters=_filters(data.get("filters")),
        )

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["predictors"], out["categorical"] = list(self.predictors), list(self.categorical)
        out["filters"] = [f.as_dict() for f in self.filters]
        return out

    @property
    def needed_columns(self) -> list[str]:
        names = [self.outcome, *self.predictors, *self.categorical, *(f.column for f in self.filters)]
        return list(dict.fromkeys(names))


# Data ---------------------------------------------------------------------------------------------


def read_data(content: bytes, name: str) -> pd.DataFrame:
    """Read submitted data (Parquet or CSV, by ``name``'s suffix)."""
    lowered = name.lower()
    try:
        if lowered.endswith(".parquet"):
            return pd.read_parquet(io.BytesIO(content))
        if lowered.endswith(".csv"):
            return pd.read_csv(io.BytesIO(content))
    except Exception as exc:  # pyarrow and the CSV parser raise many types for a bad file
        raise SpecError(f"the data file {name!r} cannot be read ({exc}); send valid Parquet or CSV") from exc
    raise SpecError(f"the data file {name!r} must be {' or '.join(DATA_FORMATS)}")


def write_data(frame: pd.DataFrame) -> bytes:
    """Parquet bytes of ``frame`` (the format a workspace uploads with an output)."""
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    return buffer.getvalue()


def apply_filters(frame: pd.DataFrame, filters: Sequence[Filter]) -> pd.DataFrame:
    """The rows of ``frame`` that pass every filter. Filtering twice gives the same rows."""
    keep = pd.Series(True, index=frame.index)
    for f in filters:
        if f.column not in frame.columns:
            raise SpecError(
                f"filter column {f.column!r} is not in the data; columns: {sorted(frame.columns)}"
            )
        col = frame[f.column]
        if f.op == "in":
            keep &= col.isin(f.value)
        elif f.op == "not in":
            keep &= ~col.isin(f.value)
        else:
            try:
                keep &= {
                    "==": col == f.value,
                    "!=": col != f.value,
                    "<": col < f.value,
                    "<=": col <= f.value,
                    ">": col > f.value,
                    ">=": col >= f.value,
                }[f.op].fillna(False)
            except TypeError as exc:
                raise SpecError(
                    f"filter {f.column} {f.op} {f.value!r} does not fit the column: {exc}"
                ) from None
    return frame.loc[keep]


# Tables -------------------------------------------------------------------------------------------


def _label(value: Any) -> tuple[str, ...]:
    parts = value if isinstance(value, tuple) else (value,)
    return tuple(label_text(p) for p in parts)


def label_text(value: Any) -> str:
    """A table label as text, the form in which labels are compared."""
    # CSV round trips turn 1 into "1" and sometimes 1.0; compare labels as the text a reader sees.
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, np.generic):
        return label_text(value.item())
    return str(value)


def table_cells(frame: pd.DataFrame) -> dict[CellKey, float]:
    """A table as {(row labels, column labels): value}, labels as text, suppressed cells NaN."""
    out: dict[CellKey, float] = {}
    for row_label, row in frame.iterrows():
        for col_label, value in row.items():
            number = float(value) if value is not None and not pd.isna(value) else math.nan
            out[(_label(row_label), _label(col_label))] = number
    return out


def table_to_csv(frame: pd.DataFrame) -> bytes:
    """The CSV form of a protected table that is staged for release."""
    return frame.to_csv().encode()


def read_table_csv(content: bytes, spec: TableSpec) -> pd.DataFrame:
    """Read a table written by :func:`table_to_csv` for ``spec``."""
    n_index = len(spec.index)
    header: int | list[int] = list(range(len(spec.columns))) if len(spec.columns) > 1 else 0
    try:
        return pd.read_csv(io.BytesIO(content), index_col=list(range(n_index)), header=header)
    except Exception as exc:  # pandas raises ParserError, ValueError, IndexError for a malformed table
        raise SpecError(f"the table file cannot be read as a CSV table for its spec ({exc})") from exc


@dataclass(frozen=True)
class TableComparison:
    """How a submitted table differs from the server's re-computation.

    Attributes:
        published_but_suppressed: cells the submission shows that the server's rules suppress.
        mismatched: cells whose published values differ from the re-computation.
        extra: cells the re-computation does not have at all.
        more_suppressed: cells the submission hides that the server would publish (allowed: stricter).
    """

    published_but_suppressed: list[CellKey]
    mismatched: list[CellKey]
    extra: list[CellKey]
    more_suppressed: list[CellKey]

    @property
    def ok(self) -> bool:
        return not (self.published_but_suppressed or self.mismatched or self.extra)

    def problems(self) -> list[str]:
        out = []
        if self.published_but_suppressed:
            out.append(
                f"{len(self.published_but_suppressed)} cell(s) are published that the rules suppress, "
                f"e.g. {_show(self.published_but_suppressed[0])}"
            )
        if self.mismatched:
            out.append(
                f"{len(self.mismatched)} cell(s) differ from the declared computation on the submitted data, "
                f"e.g. {_show(self.mismatched[0])}"
            )
        if self.extra:
            out.append(f"{len(self.extra)} cell(s) are not produced by the declared computation")
        return out

    def as_dict(self) -> dict[str, Any]:
        def cells(keys: list[CellKey]) -> list[list[list[str]]]:
            return [[list(r), list(c)] for r, c in keys]

        return {
            "ok": self.ok,
            "published_but_suppressed": cells(self.published_but_suppressed),
            "mismatched": cells(self.mismatched),
            "extra": cells(self.extra),
            "more_suppressed": cells(self.more_suppressed),
        }


def _show(key: CellKey) -> str:
    return f"row {'/'.join(key[0])}, column {'/'.join(key[1])}"


def compare_tables(submitted: pd.DataFrame, reference: pd.DataFrame) -> TableComparison:
    """Compare a submitted table with the server's protected re-computation, cell by cell."""
    mine, theirs = table_cells(submitted), table_cells(reference)
    published_but_suppressed, mismatched, extra, more_suppressed = [], [], [], []
    for key, value in mine.items():
        if key not in theirs:
            if not math.isnan(value):
                extra.append(key)
            continue
        ref = theirs[key]
        if math.isnan(value):
            if not math.isnan(ref):
                more_suppressed.append(key)
        elif math.isnan(ref):
            published_but_suppressed.append(key)
        elif not math.isclose(value, ref, rel_tol=RTOL, abs_tol=RTOL):
            mismatched.append(key)
    return TableComparison(published_but_suppressed, mismatched, extra, more_suppressed)


# Regressions --------------------------------------------------------------------------------------


def design_matrix(frame: pd.DataFrame, spec: RegressionSpec) -> tuple[pd.Series, pd.DataFrame]:
    """(y, X) for ``spec``: a constant, the numeric predictors and dummies (first level dropped)."""
    missing = [c for c in spec.needed_columns if c not in frame.columns]
    if missing:
        raise SpecError(f"column(s) {missing} are not in the data; columns: {sorted(frame.columns)}")
    data = frame[[spec.outcome, *spec.predictors, *spec.categorical]].dropna()
    x = data[list(spec.predictors)].astype(float)
    if spec.categorical:
        dummies = pd.get_dummies(
            data[list(spec.categorical)].astype(str), prefix=list(spec.categorical), drop_first=True
        )
        x = pd.concat([x, dummies.astype(float)], axis=1)
    x.insert(0, "const", 1.0)
    return data[spec.outcome].astype(float), x


def fit_regression(frame: pd.DataFrame, spec: RegressionSpec) -> tuple[Any, list[str]]:
    """Fit ``spec`` on ``frame`` with statsmodels; returns (fitted result, warnings raised while fitting)."""
    import statsmodels.api as sm

    y, x = design_matrix(apply_filters(frame, spec.filters), spec)
    model_class: Any = {"ols": sm.OLS, "logit": sm.Logit, "probit": sm.Probit}[spec.model]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            model = model_class(y, x)
            result = model.fit() if spec.model == "ols" else model.fit(disp=0)
        except Exception as exc:  # singular matrices, perfect separation, ...: the model cannot be fitted
            raise SpecError(f"the {spec.model} model cannot be fitted on this data: {exc}") from exc
    return result, [str(w.message) for w in caught]


def coefficients_csv(result: Any) -> bytes:
    """The released form of a regression: one row per term with coefficient and standard error."""
    frame = pd.DataFrame({"term": result.params.index, "coef": result.params.values, "se": result.bse.values})
    return frame.to_csv(index=False).encode()


def read_coefficients(content: bytes) -> dict[str, float] | None:
    """{term: coefficient} from a coefficients CSV, or None if the file is not one (e.g. a text summary)."""
    try:
        frame = pd.read_csv(io.BytesIO(content))
    except Exception:  # not CSV at all: a text summary, compared by the checkers by eye
        return None
    if not {"term", "coef"} <= set(frame.columns):
        return None
    return {str(t): float(c) for t, c in zip(frame["term"], frame["coef"], strict=True)}


Status = Literal["pass", "review", "fail"]
_ORDER: dict[str, int] = {"pass": 0, "review": 1, "fail": 2}


def worst(*statuses: str) -> Status:
    """The most severe of the statuses (fail > review > pass)."""
    result = max(statuses, key=lambda s: _ORDER[s], default="pass")
    return result  # type: ignore[return-value]
