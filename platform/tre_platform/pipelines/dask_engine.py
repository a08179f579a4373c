"""The Dask engine: the pandas validator and typing run per partition, the write is Dask's.

Partitions are read from the file in order; the lengths of all partitions (one cheap pass) give each
partition's first row number, so problems are reported with the same row numbers as on pandas or Spark.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from tre_platform.pipelines.delivery import Delivery, scan_row_shapes
from tre_platform.pipelines.engines import IngestEngine, stringify_pandas
from tre_platform.pipelines.errors import DeliveryInvalid
from tre_platform.pipelines.linkage import ROW, IdentifierGroup
from tre_platform.pipelines.validation import (
    ColumnRule,
    Problem,
    ValidationReport,
    validate_pandas,
)

#: Bytes of CSV per Dask partition.
BLOCKSIZE = 64 * 1024 * 1024


def _numbered(part: pd.DataFrame, first_row: int) -> pd.DataFrame:
    out = part.reset_index(drop=True).copy()
    out[ROW] = np.arange(first_row, first_row + len(out), dtype=np.int64)
    return out


def _problems(part: pd.DataFrame, rules: Sequence[ColumnRule]) -> list[Problem]:
    problems, _ = validate_pandas(part, rules, part[ROW].to_numpy())
    return problems


def _typed(part: pd.DataFrame, rules: Sequence[ColumnRule], links: pd.DataFrame) -> pd.DataFrame:
    _, typed = validate_pandas(part, rules, part[ROW].to_numpy())
    typed[ROW] = part[ROW].to_numpy()
    return typed.merge(links, on=ROW, how="left")


class DaskEngine(IngestEngine):
    """The delivery as a Dask DataFrame (on the current distributed client, or Dask's threads)."""

    name = "dask"

    def __init__(self, delivery: Delivery, rules: Sequence[ColumnRule], blocksize: int = BLOCKSIZE) -> None:
        super().__init__(delivery, rules)
        self.blocksize = blocksize

    def _read(self) -> Any:
        import dask.dataframe as dd

        path = str(self.delivery.path)
        if self.delivery.format == "parquet":
            ddf = dd.read_parquet(path)
            rules = self.rules
            meta = pd.DataFrame({c: pd.Series([], dtype="string") for c in ddf.columns})
            return ddf.map_partitions(stringify_pandas, rules, meta=meta)
        ddf = dd.read_csv(
            path,
            dtype=str,
            keep_default_na=False,
            na_values=[""],
            encoding="utf-8-sig",
            blocksize=self.blocksize,
        )
        return ddf.rename(columns={c: str(c).strip() for c in ddf.columns})

    def load(self) -> ValidationReport:
        import dask
        import pandas.errors

        self.check_header()
        ddf = self._read()
        try:
            lengths = ddf.map_partitions(len).compute()
        except pandas.errors.ParserError:
            problems = scan_row_shapes(
                self.delivery.path, len(self.delivery.header), self.delivery.source_name
            )
            report = ValidationReport(self.delivery.source_name, rules={r.name: r for r in self.rules})
            report.merge(problems or [Problem("not_tabular", detail="the CSV parser could not read it")])
            raise DeliveryInvalid(report) from None
        starts = np.concatenate([[1], np.cumsum(np.asarray(lengths))[:-1] + 1]).astype(int)
        self.n_rows = int(np.sum(lengths))
        parts = ddf.to_delayed()
        numbered = [dask.delayed(_numbered)(p, int(s)) for p, s in zip(parts, starts, strict=True)]
        self.parts = numbered
        found = dask.compute(*[dask.delayed(_problems)(p, self.rules) for p in numbered])
        problems = [problem for part in found for problem in part]
        return self._report(problems)

    def identifiers(self, columns: Sequence[str]) -> pd.DataFrame:
        import dask

        wanted = [ROW, *columns]
        pieces = dask.compute(*[dask.delayed(lambda p: p[wanted])(p) for p in self.parts])
        frame = pd.concat(pieces, ignore_index=True) if pieces else pd.DataFrame(columns=wanted)
        frame = frame.astype(object)
        return frame.where(frame.notna(), None)

    def attach(self, links: pd.DataFrame) -> None:
        import dask
        import dask.dataframe as dd

        shared = dask.delayed(links, pure=True)
        meta = _typed(
            pd.DataFrame(
                {r.name: pd.Series([], dtype="string") for r in self.rules}
                | {ROW: pd.Series([], dtype="int64")}
            ),
            self.rules,
            links.iloc[:0],
        )
        self.linked = dd.from_delayed(
            [dask.delayed(_typed)(p, self.rules, shared) for p in self.parts], meta=meta, verify_meta=False
        )

    def quality(self, groups: Sequence[IdentifierGroup], as_of: dt.date) -> dict[str, Any]:
        return self._assess(self.linked, groups, as_of)

    def write(self, staging: Path, schema: Sequence[tuple[str, pa.DataType]]) -> None:
        names = [n for n, _ in schema]
        self.linked[names].to_parquet(
            str(staging),
            schema=pa.schema([pa.field(n, t) for n, t in schema]),
            write_index=False,
            write_metadata_file=False,
            name_function=lambda i: f"part-{i:05d}.parquet",
        )

    def close(self) -> None:
        for attr in ("parts", "linked"):
            self.__dict__.pop(attr, None)
