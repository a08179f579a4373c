"""The three engines an ingest runs on: pandas (small), Dask and Spark (large).

Each engine reads the delivery, validates and types it (:meth:`IngestEngine.load`), hands the identifier
columns to the matching service (:meth:`identifiers`), joins the index ids back and drops the direct
identifiers (:meth:`attach`), computes the quality dimensions (:meth:`quality`) and writes the Parquet
parts (:meth:`write`). On Dask and Spark all of that runs in the engine; only the identifier columns are
brought to the driver, because the matching service (Splink) takes them as a table.
"""

from __future__ import annotations

import datetime as dt
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from tre_lib.quality import ConsistencyRule, ValidityRule, assess
from tre_platform.pipelines import publish
from tre_platform.pipelines.delivery import Delivery, scan_row_shapes
from tre_platform.pipelines.errors import DeliveryInvalid
from tre_platform.pipelines.linkage import ROW, IdentifierGroup, input_name
from tre_platform.pipelines.validation import (
    ColumnRule,
    Problem,
    ValidationReport,
    check_columns,
    file_problem,
    validate_pandas,
)

#: Rows per Parquet part written by the pandas engine, and per row group within a part.
PART_ROWS = 1_000_000
ROW_GROUP_ROWS = 100_000
POSTCODE_PATTERN = r"[A-Za-z]{1,2}\d[A-Za-z\d]?\s*\d[A-Za-z]{2}"


def output_schema(
    rules: Sequence[ColumnRule], groups: Sequence[IdentifierGroup]
) -> list[tuple[str, pa.DataType]]:
    """The published columns: one index id per identifier group, then the research columns."""
    ids = [(g.id_column, pa.string()) for g in groups]
    return ids + [(r.name, r.arrow_type) for r in rules if not r.identifier]


def quality_rules(
    rules: Sequence[ColumnRule], groups: Sequence[IdentifierGroup]
) -> tuple[list[ValidityRule], list[ConsistencyRule], list[str]]:
    """Validity and consistency rules, and the event-date columns, that a schema implies."""
    validity: list[ValidityRule] = []
    for rule in rules:
        if rule.allowed is not None or rule.min is not None or rule.max is not None:
            validity.append(ValidityRule(rule.name, allowed=rule.allowed, min=rule.min, max=rule.max))
        kinds = [g.kind for g in groups if rule.name in g.inputs]
        name = input_name(rule.name, kinds[0]) if kinds else None
        if name == "nhs_number":
            validity.append(ValidityRule(rule.name, check="nhs_number"))
        if name == "postcode":
            validity.append(ValidityRule(rule.name, pattern=POSTCODE_PATTERN))
    dates = [r.name for r in rules if r.type == "date"]
    births = [r.name for r in rules if r.type == "date" and input_name(r.name, "demographic") == "dob"]
    events = [d for d in dates if d not in births]
    consistency = [ConsistencyRule(b, e) for b in births for e in events]
    for name in dates:
        if name.endswith("_from") and (later := name[: -len("_from")] + "_to") in dates:
            consistency.append(ConsistencyRule(name, later))
    return validity, consistency, events


class IngestEngine(ABC):
    """One ingest's work on one engine. Methods are called in order, once each."""

    name = "abstract"

    def __init__(self, delivery: Delivery, rules: Sequence[ColumnRule]) -> None:
        self.delivery = delivery
        self.rules = list(rules)
        self.n_rows = 0

    def check_header(self) -> None:
        report = check_columns(self.delivery.source_name, self.delivery.header, self.rules)
        if not report.ok:
            raise DeliveryInvalid(report)

    def _report(self, problems: list[Problem]) -> ValidationReport:
        report = ValidationReport(
            self.delivery.source_name, n_rows=self.n_rows, rules={r.name: r for r in self.rules}
        )
        report.merge(problems)
        if self.n_rows == 0 and not problems:
            report.add(Problem("no_rows"))
        report.sort()
        return report

    @abstractmethod
    def load(self) -> ValidationReport:
        """Read, validate and type the delivery; the report lists every problem."""

    @abstractmethod
    def identifiers(self, columns: Sequence[str]) -> pd.DataFrame:
        """``_row`` and the raw values of ``columns`` for every row, as pandas (for matching)."""

    @abstractmethod
    def attach(self, links: pd.DataFrame) -> None:
        """Join the index ids (``_row`` + ``<kind>_id`` columns) onto the typed rows."""

    @abstractmethod
    def quality(self, groups: Sequence[IdentifierGroup], as_of: dt.date) -> dict[str, Any]:
        """The five quality dimensions of the typed, linked delivery."""

    @abstractmethod
    def write(self, staging: Path, schema: Sequence[tuple[str, pa.DataType]]) -> None:
        """Write the published columns as ``part-*.parquet`` files into ``staging``."""

    def close(self) -> None:  # noqa: B027 - optional hook: engines without caches need not override it
        """Release cached data."""

    def _assess(self, frame: Any, groups: Sequence[IdentifierGroup], as_of: dt.date) -> dict[str, Any]:
        validity, consistency, events = quality_rules(self.rules, groups)
        return assess(
            frame,
            validity_rules=validity,
            consistency_rules=consistency,
            key_columns=[g.id_column for g in groups],
            date_columns=events,
            as_of=as_of,
            completeness_columns=[r.name for r in self.rules] + [g.id_column for g in groups],
        ).to_dict()


# pandas ----------------------------------------------------------------------------------------------


def stringify_pandas(frame: pd.DataFrame, rules: Sequence[ColumnRule]) -> pd.DataFrame:
    """Values of a typed (Parquet) frame as the strings a CSV would hold, so one validator serves both."""
    by_name = {r.name: r for r in rules}
    out: dict[str, pd.Series] = {}
    for column in frame.columns:
        s = frame[column]
        rule = by_name.get(str(column))
        if pd.api.types.is_datetime64_any_dtype(s):
            fmt = "%Y-%m-%d" if rule is not None and rule.type == "date" else "%Y-%m-%dT%H:%M:%S.%f%z"
            text = s.dt.strftime(fmt)
        elif pd.api.types.is_bool_dtype(s):
            text = s.map({True: "true", False: "false"})
        else:
            text = s.astype("string")
        out[str(column)] = text.astype("string")
    return pd.DataFrame(out, index=frame.index)


def read_pandas_strings(delivery: Delivery, rules: Sequence[ColumnRule]) -> pd.DataFrame:
    """The whole delivery as strings (nulls as NA) with pandas."""
    if delivery.format == "parquet":
        try:
            table = pq.read_table(delivery.path)
        except Exception as exc:  # a corrupt Parquet body raises several pyarrow types
            raise DeliveryInvalid(
                file_problem(delivery.source_name, "not_tabular", f"unreadable Parquet file: {exc}", rules)
            ) from None
        return stringify_pandas(table.to_pandas(), rules)
    try:
        frame = pd.read_csv(
            delivery.path,
            dtype=str,
            keep_default_na=False,
            na_values=[""],
            encoding="utf-8-sig",
        )
    except pd.errors.ParserError:
        problems = scan_row_shapes(delivery.path, len(delivery.header), delivery.source_name)
        report = ValidationReport(delivery.source_name, rules={r.name: r for r in rules})
        report.merge(problems or [Problem("not_tabular", detail="the CSV parser could not read it")])
        raise DeliveryInvalid(report) from None
    frame.columns = [str(c).strip() for c in frame.columns]
    return frame.astype("string")


class PandasEngine(IngestEngine):
    """Everything in one pandas DataFrame: the right choice below a few million rows."""

    name = "pandas"

    def load(self) -> ValidationReport:
        self.check_header()
        self.strings = read_pandas_strings(self.delivery, self.rules)
        self.n_rows = len(self.strings)
        rows = np.arange(1, self.n_rows + 1)
        problems, self.typed = validate_pandas(self.strings, self.rules, rows)
        self.typed[ROW] = rows
        return self._report(problems)

    def identifiers(self, columns: Sequence[str]) -> pd.DataFrame:
        frame = self.strings[list(columns)].astype(object)
        frame = frame.where(frame.notna(), None)
        frame.insert(0, ROW, self.typed[ROW].to_numpy())
        return frame.reset_index(drop=True)

    def attach(self, links: pd.DataFrame) -> None:
        self.linked = self.typed.merge(links, on=ROW, how="left", validate="one_to_one")

    def quality(self, groups: Sequence[IdentifierGroup], as_of: dt.date) -> dict[str, Any]:
        return self._assess(self.linked, groups, as_of)

    def write(self, staging: Path, schema: Sequence[tuple[str, pa.DataType]]) -> None:
        staging.mkdir(mode=0o700)
        arrow_schema = pa.schema([pa.field(n, t) for n, t in schema])
        frame = self.linked.sort_values(ROW)[[n for n, _ in schema]]
        for part, start in enumerate(range(0, max(len(frame), 1), PART_ROWS)):
            rows = frame.iloc[start : start + PART_ROWS]
            # Row group by row group, so the Arrow copy of a part is one row group at a time.
            with pq.ParquetWriter(staging / f"part-{part:05d}.parquet", arrow_schema) as writer:
                for offset in range(0, max(len(rows), 1), ROW_GROUP_ROWS):
                    group = rows.iloc[offset : offset + ROW_GROUP_ROWS]
                    writer.write_table(pa.Table.from_pandas(group, schema=arrow_schema, preserve_index=False))
                    publish.checkpoint("row_group_written")

    def close(self) -> None:
        for attr in ("strings", "typed", "linked"):
            self.__dict__.pop(attr, None)
