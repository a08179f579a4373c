"""Validating a delivery against its dataset's registered schema, and typing its columns.

Every problem is reported, never only the first: for each column and kind of problem the report counts
every row where it occurs and lists the first :data:`MAX_EXAMPLES` rows. Rows are numbered from 1 for the
first data row after the header (so row ``n`` of a CSV is on line ``n + 1`` when no value spans lines).
Values of direct-identifier columns are never copied into a report (it is shown to people and audited).

The rules are written once here (:class:`ColumnRule`) and evaluated by pandas (this module, also used per
partition by Dask) or by Spark expressions (:mod:`.spark_engine`).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

#: Examples listed per column and problem (all are counted).
MAX_EXAMPLES = 20
#: Longest value quoted in a report.
MAX_VALUE_CHARS = 80
WITHHELD = "<identifier withheld>"

INTEGER_PATTERN = r"\s*[+-]?\d{1,18}\s*"
DATE_PATTERN = r"\d{4}-\d{2}-\d{2}"
ISO_DATE = "%Y-%m-%d"
EXAMPLE_DATE = dt.date(1987, 11, 23)
TRUE_WORDS = frozenset({"true", "t", "yes", "y", "1"})
FALSE_WORDS = frozenset({"false", "f", "no", "n", "0"})

#: Problem kinds, with the sentence shown for each.
PROBLEM_TEXT: dict[str, str] = {
    "empty_file": "the file is empty",
    "no_rows": "the file has a header but no data rows",
    "too_large": "the file is larger than the largest accepted delivery",
    "not_utf8": "the file is not UTF-8 text",
    "not_tabular": "the file is neither a CSV with a header row nor a Parquet file",
    "malformed_row": "the row does not have as many fields as the header",
    "duplicate_column": "the header names the column more than once",
    "missing_column": "the column is in the registered schema but not in the delivery",
    "unknown_column": "the column is not in the registered schema",
    "required": "a required value is missing",
    "type": "the value is not a valid {type}",
    "allowed": "the value is not one of the allowed values",
    "min": "the value is below the minimum {min}",
    "max": "the value is above the maximum {max}",
}

ARROW_TYPES: dict[str, pa.DataType] = {
    "string": pa.string(),
    "integer": pa.int64(),
    "float": pa.float64(),
    "boolean": pa.bool_(),
    "date": pa.date32(),
    "datetime": pa.timestamp("us", tz="UTC"),
}


@dataclass(frozen=True)
class ColumnRule:
    """One registered column, with its bounds parsed to the column's type."""

    name: str
    type: str
    required: bool = True
    allowed: tuple[str, ...] | None = None
    min: Any = None
    max: Any = None
    identifier: bool = False
    index: str | None = None
    #: The index identifier this column carries (``None``: its name or an alias says).
    maps_to: str | None = None
    #: For a date column: the strptime format of its values (default ISO ``%Y-%m-%d``).
    format: str | None = None

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any]) -> ColumnRule:
        """Build a rule from one entry of ``Dataset.schema``."""
        kind = str(spec["type"])
        return cls(
            name=str(spec["name"]),
            type=kind,
            required=bool(spec.get("required", True)),
            allowed=tuple(str(v) for v in spec["allowed"]) if spec.get("allowed") is not None else None,
            min=_bound(kind, spec.get("min")),
            max=_bound(kind, spec.get("max")),
            identifier=bool(spec.get("identifier", False)),
            index=spec.get("index") or None,
            maps_to=spec.get("maps_to") or None,
            format=spec.get("format") or None,
        )

    @property
    def type_text(self) -> str:
        """The type as a data owner reads it, with the expected format of a date."""
        if self.type == "date":
            fmt = self.format or ISO_DATE
            return f"date in the format {fmt} (e.g. {EXAMPLE_DATE.strftime(fmt)})"
        return self.type

    @property
    def arrow_type(self) -> pa.DataType:
        return ARROW_TYPES[self.type]

    def bound_text(self, which: str) -> str:
        value = self.min if which == "min" else self.max
        return value.isoformat() if isinstance(value, dt.date) else str(value)


def _bound(kind: str, value: Any) -> Any:
    if value is None:
        return None
    if kind == "date":
        return dt.date.fromisoformat(str(value)[:10])
    if kind == "datetime":
        parsed = dt.datetime.fromisoformat(str(value))
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)
    return float(value)


def rules_for(schema: Sequence[Mapping[str, Any]]) -> list[ColumnRule]:
    """The rules of a dataset's registered schema, in schema order."""
    return [ColumnRule.from_spec(spec) for spec in schema]


# The report ------------------------------------------------------------------------------------------


@dataclass
class Problem:
    """One kind of problem in one column (or in the file, when ``column`` is None)."""

    problem: str
    column: str | None = None
    count: int = 1
    rows: list[int] = field(default_factory=list)
    values: list[str | None] = field(default_factory=list)
    detail: str = ""

    def message(self, rules: Mapping[str, ColumnRule] | None = None) -> str:
        rule = (rules or {}).get(self.column or "")
        text = PROBLEM_TEXT.get(self.problem, self.problem)
        if rule is not None:
            text = text.format(type=rule.type_text, min=rule.bound_text("min"), max=rule.bound_text("max"))
        where = f"column {self.column!r}: " if self.column else ""
        rows = ""
        if self.rows:
            more = f" and {self.count - len(self.rows)} more" if self.count > len(self.rows) else ""
            rows = f" (rows {', '.join(str(r) for r in self.rows)}{more})"
        elif self.count > 1:
            rows = f" ({self.count} rows)"
        detail = f": {self.detail}" if self.detail else ""
        shown = [v for v in self.values if v is not None]
        if self.problem == "type" and shown:
            # The offending value (identifier values are already withheld in ``values``).
            detail += f"; found {shown[0]!r}"
        return f"{where}{text}{rows}{detail}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "problem": self.problem,
            "column": self.column,
            "count": self.count,
            "examples": [{"row": r, "value": v} for r, v in zip(self.rows, self.values, strict=True)],
            "detail": self.detail,
        }


@dataclass
class ValidationReport:
    """Every problem found in a delivery. ``ok`` when there are none."""

    source: str
    n_rows: int = 0
    problems: list[Problem] = field(default_factory=list)
    rules: dict[str, ColumnRule] = field(default_factory=dict, repr=False)

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def n_problems(self) -> int:
        return sum(p.count for p in self.problems)

    def add(self, problem: Problem) -> None:
        self.problems.append(problem)

    def merge(self, problems: Iterable[Problem]) -> None:
        """Fold in problems found in another part of the file (counts add up, examples stay the first)."""
        by_key = {(p.column, p.problem): p for p in self.problems}
        for incoming in problems:
            key = (incoming.column, incoming.problem)
            existing = by_key.get(key)
            if existing is None:
                copy = Problem(
                    incoming.problem,
                    incoming.column,
                    incoming.count,
                    list(incoming.rows),
                    list(incoming.values),
                    incoming.detail,
                )
                self.problems.append(copy)
                by_key[key] = copy
                continue
            existing.count += incoming.count
            pairs = sorted(
                zip([*existing.rows, *incoming.rows], [*existing.values, *incoming.values], strict=True),
                key=lambda pair: pair[0],
            )[:MAX_EXAMPLES]
            existing.rows = [r for r, _ in pairs]
            existing.values = [v for _, v in pairs]

    def sort(self) -> None:
        order = {name: i for i, name in enumerate(self.rules)}
        self.problems.sort(key=lambda p: (p.column is not None, order.get(p.column or "", 10**6), p.problem))

    def summary(self, limit: int = 10) -> str:
        """One paragraph for a person: how many problems and the first ``limit`` of them."""
        if self.ok:
            return f"{self.source}: no problems in {self.n_rows} rows"
        self.sort()
        lines = [p.message(self.rules) for p in self.problems[:limit]]
        more = len(self.problems) - limit
        tail = f"; ... and {more} more kinds of problem (see the full report)" if more > 0 else ""
        return (
            f"delivery {self.source} was rejected, nothing was published: "
            f"{len(self.problems)} kinds of problem in {self.n_problems} places: "
            + "; ".join(lines)
            + tail
            + ". Fix the file (or the registered schema) and ingest it again."
        )

    def to_dict(self) -> dict[str, Any]:
        self.sort()
        return {
            "source": self.source,
            "ok": self.ok,
            "n_rows": self.n_rows,
            "n_problems": self.n_problems,
            "problems": [{**p.to_dict(), "message": p.message(self.rules)} for p in self.problems],
        }


def file_problem(
    source: str, problem: str, detail: str = "", rules: Sequence[ColumnRule] = ()
) -> ValidationReport:
    """A report holding one problem with the file as a whole."""
    report = ValidationReport(source, rules={r.name: r for r in rules})
    report.add(Problem(problem, None, 1, [], [], detail))
    return report


def check_columns(source: str, header: Sequence[str], rules: Sequence[ColumnRule]) -> ValidationReport:
    """Problems with the header alone: duplicate, missing and unknown columns."""
    report = ValidationReport(source, rules={r.name: r for r in rules})
    seen: set[str] = set()
    for name in header:
        if name in seen:
            report.add(Problem("duplicate_column", name))
        seen.add(name)
    expected = [r.name for r in rules]
    for name in expected:
        if name not in seen:
            report.add(Problem("missing_column", name, detail="add it (it may be empty where not required)"))
    for name in header:
        if name not in expected and name not in {p.column for p in report.problems}:
            report.add(Problem("unknown_column", name, detail="remove it or register it in the schema"))
    return report


# pandas ----------------------------------------------------------------------------------------------


def _quote(value: Any, rule: ColumnRule) -> str | None:
    if rule.identifier:
        return WITHHELD
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return None
    text = str(value)
    return text if len(text) <= MAX_VALUE_CHARS else text[: MAX_VALUE_CHARS - 1] + "…"


def parse_column(raw: pd.Series, rule: ColumnRule) -> tuple[pd.Series, pd.Series]:
    """Parse a column of strings (nulls as NA) to its registered type.

    Returns:
        ``(typed, type_ok)``: the typed values (null where missing or unparseable) and a boolean Series,
        False where a present value could not be parsed.
    """
    text = raw.astype("string")
    present = text.notna()
    if rule.type == "string":
        return text, pd.Series(True, index=raw.index)
    stripped = text.str.strip()
    if rule.type == "integer":
        shaped = text.str.fullmatch(INTEGER_PATTERN).fillna(False).astype(bool)
        typed = pd.to_numeric(stripped.where(shaped), errors="coerce").astype("Int64")
        return typed, ~present | shaped
    if rule.type == "float":
        typed = pd.to_numeric(stripped, errors="coerce").astype("float64")
        ok = ~present | typed.notna()
        return typed, ok
    if rule.type == "boolean":
        lowered = stripped.str.lower()
        typed = pd.Series(pd.NA, index=raw.index, dtype="boolean")
        typed[lowered.isin(TRUE_WORDS).fillna(False).astype(bool)] = True
        typed[lowered.isin(FALSE_WORDS).fillna(False).astype(bool)] = False
        return typed, ~present | typed.notna()
    if rule.type == "date" and rule.format is not None:
        parsed = pd.to_datetime(stripped, format=rule.format, errors="coerce")
        typed = parsed.astype("date32[pyarrow]")
        return typed, ~present | parsed.notna()
    if rule.type == "date":
        shaped = stripped.str.fullmatch(DATE_PATTERN).fillna(False).astype(bool)
        parsed = pd.to_datetime(stripped.where(shaped), format="%Y-%m-%d", errors="coerce")
        typed = parsed.astype("date32[pyarrow]")
        return typed, ~present | parsed.notna()
    if rule.type == "datetime":
        parsed = pd.to_datetime(stripped, format="ISO8601", errors="coerce", utc=True)
        typed = parsed.astype(pd.ArrowDtype(pa.timestamp("us", tz="UTC")))
        return typed, ~present | parsed.notna()
    raise ValueError(f"column {rule.name!r} has an unknown type {rule.type!r}")


def validate_pandas(
    frame: pd.DataFrame, rules: Sequence[ColumnRule], row_numbers: np.ndarray | pd.Series
) -> tuple[list[Problem], pd.DataFrame]:
    """Validate and type a frame of strings (every registered column present).

    Args:
        frame: The delivery's values as strings, nulls as NA.
        rules: The registered columns.
        row_numbers: Delivery row number of each row of ``frame``.

    Returns:
        The problems found and the typed frame (registered columns only, in schema order).
    """
    rows = np.asarray(row_numbers)
    problems: list[Problem] = []
    typed: dict[str, pd.Series] = {}
    for rule in rules:
        raw = frame[rule.name]
        values, type_ok = parse_column(raw, rule)
        typed[rule.name] = values
        present = raw.notna()
        checks: list[tuple[str, pd.Series]] = []
        if rule.required:
            checks.append(("required", ~present))
        checks.append(("type", ~type_ok))
        if rule.allowed is not None:
            checks.append(("allowed", present & ~raw.isin(rule.allowed)))
        parsed_ok = present & type_ok
        if rule.min is not None:
            checks.append(("min", parsed_ok & (values < rule.min).fillna(False).astype(bool)))
        if rule.max is not None:
            checks.append(("max", parsed_ok & (values > rule.max).fillna(False).astype(bool)))
        for problem, mask in checks:
            hits = np.flatnonzero(mask.to_numpy(dtype=bool))
            if not len(hits):
                continue
            first = hits[:MAX_EXAMPLES]
            problems.append(
                Problem(
                    problem,
                    rule.name,
                    len(hits),
                    [int(r) for r in rows[first]],
                    [_quote(v, rule) for v in raw.iloc[first].tolist()],
                )
            )
    return problems, pd.DataFrame(typed, index=frame.index)


def arrow_schema(columns: Sequence[tuple[str, pa.DataType]]) -> pa.Schema:
    """An Arrow schema from (name, type) pairs."""
    return pa.schema([pa.field(name, kind) for name, kind in columns])
