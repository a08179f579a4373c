"""``protect_table``: build a table, judge every cell, suppress or round, audit, and record.

Supported shapes (``margins=True`` adds the margins pandas would, plus hierarchical subtotals):

* 1-D: ``columns=None`` (or ``[]``): one column, rows plus a grand total row ``"All"``.
* 2-D: one row and one column variable, with row and column margins ``"All"``.
* Hierarchical: several row and/or column variables; each level gets subtotals, e.g. rows
  ``("north", "leeds")``, ``("north", "All")``, ..., ``("All", "All")``. Every subtotal is an equation the
  attacker may use, so secondary suppression protects against all of them.

Protection levels (the width an attacker's interval must reach):

* counts: ``rules.count_protection`` or, if unset, the threshold, for every suppressed cell, primary or
  complement. Since intervals cannot go below zero, a width of at least the threshold means the attacker
  cannot exclude that the cell is at or above the threshold.
* sums and means: for a primary cell the largest of ``protection_level * |value|``, the p% sensitivity
  ``p * x1 - (total - x1 - x2)`` and the dominance sensitivity ``(x1 + ... + xn) / k - total`` (tau-Argus's
  protection levels), checked against the outside attacker and against the cell's own largest contributor,
  who knows ``x1`` (see :mod:`tre_lib.disclosure.secondary`); a complement must not be exactly recoverable.
  Mean tables are protected on their totals assuming the matching count table is public (the usual case).
* median, quantiles, std, var, min, max: margins are not sums of cells, so no linear attack exists; primary
  suppression only, intervals reported unbounded.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
import secrets
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from tre_lib.disclosure.audit import Auditor, Interval
from tre_lib.disclosure.engines import engine_cell_stats
from tre_lib.disclosure.errors import TableSpecError, TableTooLargeError
from tre_lib.disclosure.primary import Verdict, evaluate_cell
from tre_lib.disclosure.rounding import (
    RoundingError,
    audit_nearest_rounding,
    controlled_round,
    round_nearest,
)
from tre_lib.disclosure.rules import Rules, coerce_rules
from tre_lib.disclosure.secondary import Requirement, suppress_secondary
from tre_lib.disclosure.stats import ADDITIVE, CellStats, TableStats, check_spec, pandas_cell_stats
from tre_lib.disclosure.structure import MARGIN, Key, TableStructure
from tre_lib.disclosure.versions import library_versions

Status = Literal["pass", "review", "fail"]
Label = Hashable


@dataclass(frozen=True)
class CellFinding:
    """Everything decided about one cell.

    Attributes:
        row: row label as in ``.table`` (a tuple for several row variables).
        column: column label as in ``.table``.
        verdicts: each rule's finding, judged independently.
        primary: suppressed because a rule failed.
        secondary: suppressed to protect another cell.
        is_margin: the cell is a margin or subtotal.
        stats: the cell's statistics (confidential: never in a release record).
        published: the value in ``.table`` (NaN if suppressed).
    """

    row: Label
    column: Label
    verdicts: Mapping[str, Verdict]
    primary: bool
    secondary: bool
    is_margin: bool
    stats: CellStats
    published: float

    @property
    def suppressed(self) -> bool:
        """Primary or secondary suppressed."""
        return self.primary or self.secondary

    @property
    def reasons(self) -> list[str]:
        """Human-readable reasons: every finding that is not a plain pass, and why a complement was hidden."""
        out = [
            f"{v.rule}: {v.reason}"
            for v in self.verdicts.values()
            if v.outcome not in ("pass", "not_applicable")
        ]
        if self.secondary:
            out.append("secondary: suppressed so that suppressed cells cannot be worked out from the margins")
        return out


@dataclass
class ProtectedTable:
    """A table after disclosure control.

    Attributes:
        table: the protected table; suppressed cells are NaN.
        status: "pass" (nothing found), "review" (suppression, rounding or a flag a checker should see),
            "fail" (cannot be made safe).
        cells: per (row label, column label) the findings.
        intervals: per suppressed cell the attacker's feasible interval ``(lo, hi)`` on the published table.
        rules: the parameters used.
        aggfunc: the published statistic.
        notes: table-level findings (e.g. rows dropped for missing keys, unmet protection).
    """

    table: pd.DataFrame
    status: Status
    cells: dict[tuple[Label, Label], CellFinding]
    intervals: dict[tuple[Label, Label], Interval]
    rules: Rules
    aggfunc: str
    notes: list[str] = field(default_factory=list)
    mitigation: str = "suppress"
    spec: dict[str, Any] = field(default_factory=dict)
    lp_solves: int = 0
    created_at: str = field(default_factory=lambda: dt.datetime.now(dt.UTC).isoformat())
    _aggregate_digest: str = ""
    _nonce: str = field(default_factory=lambda: secrets.token_hex(32))

    @property
    def input_hash(self) -> str:
        """Salted SHA-256 of the unprotected aggregate.

        The salt (kept in the confidential record only) stops anyone from recovering a suppressed cell by
        hashing every candidate value of a small table.
        """
        return hashlib.sha256((self._nonce + self._aggregate_digest).encode()).hexdigest()

    @property
    def suppressed(self) -> list[tuple[Label, Label]]:
        """Labels of the suppressed cells."""
        return [k for k, c in self.cells.items() if c.suppressed]

    def record(self, confidential: bool = False) -> dict[str, Any]:
        """The machine-readable disclosure-control record (JSON-serialisable).

        Args:
            confidential: include true values, contributor statistics and the hash salt. That form is for
                output checkers inside the TRE only; the default form is safe to release with the output.

        Returns:
            Rules and parameters, findings per cell, the suppression pattern, intervals, library versions,
            timestamp and the hash of the input aggregate.
        """
        findings = []
        for (row, col), cell in self.cells.items():
            entry: dict[str, Any] = {
                "row": _json_label(row),
                "column": _json_label(col),
                "margin": cell.is_margin,
                "primary": cell.primary,
                "secondary": cell.secondary,
                "published": _json_number(cell.published),
                "verdicts": {
                    name: (v.as_dict() if confidential else {"outcome": v.outcome})
                    for name, v in cell.verdicts.items()
                },
            }
            if confidential:
                entry["reasons"] = cell.reasons
                entry["stats"] = {
                    "n_rows": cell.stats.n_rows,
                    "n": cell.stats.n,
                    "n_units": cell.stats.n_units,
                    "n_missing": cell.stats.n_missing,
                    "n_negative": cell.stats.n_negative,
                    "total": _json_number(cell.stats.total),
                    "value": _json_number(cell.stats.value),
                    "top": [_json_number(x) for x in cell.stats.top],
                }
            else:
                entry["reasons"] = [
                    f"{v.rule}: {v.outcome}"
                    for v in cell.verdicts.values()
                    if v.outcome not in ("pass", "not_applicable")
                ] + (["secondary: suppressed to protect other cells"] if cell.secondary else [])
            findings.append(entry)
        out: dict[str, Any] = {
            "kind": "table",
            "status": self.status,
            "aggfunc": self.aggfunc,
            "mitigation": self.mitigation,
            "spec": self.spec,
            "contributors": {
                "counted": self.spec.get("contributors", "records"),
                "unit": self.spec.get("unit"),
            },
            "rules": self.rules.as_dict(),
            "findings": findings,
            "suppression": {
                "primary": [
                    [_json_label(r), _json_label(c)] for (r, c), x in self.cells.items() if x.primary
                ],
                "secondary": [
                    [_json_label(r), _json_label(c)] for (r, c), x in self.cells.items() if x.secondary
                ],
            },
            "intervals": [
                {
                    "row": _json_label(r),
                    "column": _json_label(c),
                    "lo": _json_number(lo),
                    "hi": _json_number(hi),
                }
                for (r, c), (lo, hi) in self.intervals.items()
            ],
            "notes": list(self.notes),
            "versions": library_versions(),
            "created_at": self.created_at,
            "input_hash": self.input_hash,
            "lp_solves": self.lp_solves,
        }
        if confidential:
            out["input_hash_salt"] = self._nonce
            out["aggregate_digest"] = self._aggregate_digest
        return out


def _json_label(label: Any) -> Any:
    if isinstance(label, tuple):
        return [_json_label(p) for p in label]
    item = getattr(label, "item", None)
    return item() if callable(item) else label


def _json_number(x: float) -> float | None:
    """JSON has no NaN or infinity: those become null (for intervals: unbounded)."""
    return None if x is None or not math.isfinite(x) else float(x)


def _as_list(names: str | Sequence[str] | None) -> list[str]:
    if names is None:
        return []
    if isinstance(names, str):
        return [names]
    return list(names)


def _engine_stats(
    df: Any,
    index: list[str],
    columns: list[str],
    values: str | None,
    aggfunc: str,
    q: float,
    top_k: int,
    margins: bool,
    unit: str | None,
    limit: int,
) -> TableStats:
    if isinstance(df, pd.DataFrame):
        used = [*index, *columns, *(c for c in (values, unit) if c is not None)]
        duplicated = sorted({str(c) for c in df.columns[df.columns.duplicated()] if c in used})
        if duplicated:
            raise TableSpecError(
                f"column name(s) {', '.join(map(repr, duplicated))} appear more than once in the data; "
                "rename or drop the duplicates so it is clear which column is tabulated"
            )
        check_spec(df.columns, index, columns, values, aggfunc)
        _check_leaf_count(df, index, columns, limit)
        return pandas_cell_stats(df, index, columns, values, aggfunc, q, top_k, margins, unit)
    if unit is not None:
        # Units need each unit's records together; the distributed engines aggregate per record, so the
        # table's columns (not the whole data) are brought to the driver and counted there.
        names = list(dict.fromkeys([*index, *columns, *(c for c in (values, unit) if c is not None)]))
        local = _collect(df, names)
        return _engine_stats(local, index, columns, values, aggfunc, q, top_k, margins, unit, limit)
    # Spark and Dask compute the same per-cell statistics in the cluster and return only those.
    return engine_cell_stats(df, index, columns, values, aggfunc, q, top_k, margins)


def _check_leaf_count(df: pd.DataFrame, index: list[str], columns: list[str], limit: int) -> None:
    """Refuse early when the leaves alone (distinct row keys x distinct column keys, a lower bound on the
    cells) exceed the limit, before the per-cell statistics are built."""
    keys = df[[*index, *columns]].dropna()
    rows = len(keys[index].drop_duplicates())
    cols = len(keys[columns].drop_duplicates()) if columns else 1
    if rows * cols > limit:
        raise TableTooLargeError(
            f"the table has at least {rows * cols} cells ({rows} row keys x {cols} column keys, before "
            f"margins); at most {limit} may be protected and released. Group categories (e.g. coarser bands "
            "or geographies) to make a smaller table"
        )


def _collect(df: Any, names: list[str]) -> pd.DataFrame:
    """A Spark or Dask DataFrame's columns ``names`` as pandas."""
    missing = [n for n in names if n not in list(df.columns)]
    if missing:
        raise TableSpecError(f"column {missing[0]!r} is not in the data; columns are {sorted(df.columns)}")
    if hasattr(df, "toPandas"):
        return df.select(*names).toPandas()
    if hasattr(df, "compute"):
        return df[names].compute()
    raise TableSpecError(
        f"protect_table takes a pandas, Spark or Dask DataFrame, got {type(df).__name__}; convert it first"
    )


def _label(key: Key) -> Label:
    return key[0] if len(key) == 1 else key


def protect_table(
    df: Any,
    index: str | Sequence[str],
    columns: str | Sequence[str] | None,
    values: str | None = None,
    aggfunc: str = "count",
    rules: Rules | Mapping[str, Any] | str | None = None,
    margins: bool = True,
    *,
    q: float = 0.5,
    directory: str | Path | None = None,
    unit: str | None = None,
    max_cells: int | None = None,
) -> ProtectedTable:
    """Build a table from microdata and apply statistical disclosure control.

    Args:
        df: microdata, one row per contributor (pandas, Spark or Dask DataFrame).
        index: row variable(s).
        columns: column variable(s); None for a 1-D table.
        values: numeric column to aggregate (None for counts).
        aggfunc: "count", "sum", "mean", "median", "quantile" (with ``q``), "min", "max", "std" or "var".
        rules: profile name, dict of parameters (optionally ``{"profile": name, ...overrides}``) or Rules.
        margins: publish row/column totals (and hierarchical subtotals).
        q: the quantile for ``aggfunc="quantile"``.
        directory: profiles directory when ``rules`` names a profile.
        unit: column of the unit id (person, business) whose distinct values are the contributors counted
            by the threshold, dominance and p% rules (a unit's contribution is the sum of its records).
            Defaults to the rules' ``unit`` when the data has that column; with neither, every record is a
            contributor. The record says which was used.
        max_cells: most cells (margins included) the table may have (default: the rules' ``max_cells``);
            a larger table is refused before any protection work.

    Returns:
        The protected table with per-cell findings, attacker intervals and a record.

    Raises:
        TableSpecError: the table cannot be built (unknown column, unsupported aggfunc, rounding asked for a
            statistic other than counts) or the input is bad (infinite values, overflowing totals,
            duplicated column names, categories named like the margin or printing alike).
        TableTooLargeError: more cells than ``max_cells``.
        RulesError, ProfileNotFoundError: bad rules.

    Example:
        >>> import pandas as pd
        >>> df = pd.DataFrame({"sex": ["f"] * 30 + ["m"] * 23, "region": ["n", "s"] * 26 + ["n"]})
        >>> protect_table(df, "region", "sex").status
        'pass'
    """
    parsed = coerce_rules(rules, directory)
    index_l, columns_l = _as_list(index), _as_list(columns)
    if aggfunc == "quantile" and not 0 <= q <= 1:
        raise TableSpecError(f"q must be between 0 and 1, got {q}")
    if parsed.mitigation == "round" and aggfunc != "count":
        raise TableSpecError(
            f"rounding protects count tables only; aggfunc={aggfunc!r} needs mitigation='suppress'"
        )
    top_k = max(parsed.dominance_n, 2)
    notes: list[str] = []
    unit_used, unit_note = _resolve_unit(df, unit, parsed)
    if unit_note:
        notes.append(unit_note)
    limit = parsed.max_cells if max_cells is None else max_cells
    stats = _engine_stats(df, index_l, columns_l, values, aggfunc, q, top_k, margins, unit_used, limit)
    _check_not_empty(stats, values)
    n_cells = len(stats.row_keys) * len(stats.col_keys)
    if n_cells > limit:
        raise TableTooLargeError(
            f"the table has {n_cells} cells ({len(stats.row_keys)} rows x {len(stats.col_keys)} columns, "
            f"margins included); at most {limit} may be protected and released. Group categories "
            "(e.g. coarser bands or geographies) to make a smaller table"
        )
    structure = TableStructure(stats.row_keys, stats.col_keys)
    cell_stats = [stats.get(cell, aggfunc) for cell in structure.cells]
    structural = {(_key(r, len(index_l)), _key(c, len(columns_l))) for r, c in parsed.structural_zeros}
    verdicts = [
        evaluate_cell(cell, s, aggfunc, parsed, cell in structural, q)
        for cell, s in zip(structure.cells, cell_stats, strict=True)
    ]
    # Equal cells share one (cached) verdict mapping, so each distinct one is summarised once.
    summaries: dict[int, set[str]] = {}
    outcomes = [
        summaries.get(id(cell)) or summaries.setdefault(id(cell), {v.outcome for v in cell.values()})
        for cell in verdicts
    ]
    primary = np.array(["suppress" in o for o in outcomes], dtype=bool)
    failed = any("fail" in o for o in outcomes)
    published_stat = np.array([_published_value(s, aggfunc) for s in cell_stats], dtype=float)
    if stats.dropped_rows:
        notes.append(f"{stats.dropped_rows} record(s) with a missing row or column category were left out")
    suppressed = np.zeros(structure.size, dtype=bool)
    intervals: dict[int, Interval] = {}
    lp_solves = 0
    published = published_stat.copy()
    if parsed.mitigation == "round":
        try:
            if parsed.rounding_method == "controlled":
                published = controlled_round(structure, published_stat, parsed.rounding_base)
            else:
                published = round_nearest(published_stat, parsed.rounding_base)
                if margins:
                    audit_nearest_rounding(structure, published_stat, published, parsed)
            notes.append(f"{parsed.rounding_method} rounding to base {parsed.rounding_base}")
        except RoundingError as err:
            failed = True
            notes.append(str(err))
            suppressed[:] = True
            published[:] = np.nan  # neither the true nor the unsafe rounded values are shown
    elif failed:
        notes.append("a rule failed outright (see findings): nothing in this table may be published")
        suppressed[:] = True
    else:
        suppressed, intervals, unmet_notes, exempt_notes, lp_solves = _suppress(
            structure, cell_stats, primary, aggfunc, parsed, margins
        )
        notes.extend(exempt_notes)
        if unmet_notes:
            failed = True
            notes.extend(unmet_notes)
    secondary = suppressed & ~primary
    if parsed.mitigation == "suppress":
        published[suppressed] = np.nan
    any_review = (
        any(o & {"suppress", "review"} for o in outcomes) or bool(suppressed.any()) or unit_note is not None
    )
    status: Status = "fail" if failed else ("review" if any_review else "pass")
    table = _to_frame(structure, published, index_l, columns_l, values, aggfunc)
    cells: dict[tuple[Label, Label], CellFinding] = {}
    col_labels = list(table.columns)
    col_label_of = dict(zip(structure.col_keys, col_labels, strict=True))
    for i, (r, c) in enumerate(structure.cells):
        col_label = col_label_of[c]
        cells[(_label(r), col_label)] = CellFinding(
            row=_label(r),
            column=col_label,
            verdicts=verdicts[i],
            primary=bool(primary[i]) and parsed.mitigation == "suppress",
            secondary=bool(secondary[i]),
            is_margin=bool(structure.is_margin[i]),
            stats=cell_stats[i],
            published=float(published[i]),
        )
    label_intervals = {}
    for i in map(int, np.flatnonzero(suppressed)):
        r, c = structure.cells[i]
        label_intervals[(_label(r), col_label_of[c])] = intervals.get(int(i), (-math.inf, math.inf))
    # Keys are plain Python values already (the engines convert them); NaN is written as JSON's NaN token.
    digest = hashlib.sha256(
        json.dumps(
            [
                [list(r), list(c), s.n_rows, s.n, s.total, s.value]
                for (r, c), s in zip(structure.cells, cell_stats, strict=True)
            ],
            default=str,
        ).encode()
    ).hexdigest()
    return ProtectedTable(
        table=table,
        status=status,
        cells=cells,
        intervals=label_intervals,
        rules=parsed,
        aggfunc=aggfunc,
        notes=notes,
        mitigation=parsed.mitigation,
        spec={
            "index": index_l,
            "columns": columns_l,
            "values": values,
            "margins": margins,
            "q": q,
            "unit": unit_used,
            "contributors": "units" if unit_used is not None else "records",
        },
        lp_solves=lp_solves,
        _aggregate_digest=digest,
    )


def _resolve_unit(df: Any, unit: str | None, rules: Rules) -> tuple[str | None, str | None]:
    """The unit column to count contributors by, and a note for the record when rows are counted instead."""
    present = [str(c) for c in getattr(df, "columns", [])]
    if unit is not None:
        if not isinstance(unit, str) or unit not in present:
            raise TableSpecError(f"unit column {unit!r} is not in the data; columns are {sorted(present)}")
        return unit, None
    if rules.unit is None:
        return None, None
    if rules.unit in present:
        return rules.unit, None
    return None, (
        f"the rules count contributors by unit {rules.unit!r}, which is not in the data: records were "
        "counted instead, so a unit with several records counts several times; a checker should review"
    )


def _check_not_empty(stats: TableStats, values: str | None) -> None:
    """Refuse a table with nothing in it: it would show zeros (or NaN) as if they were data."""
    leaves = [s for (r, c), s in stats.cells.items() if MARGIN not in r and MARGIN not in c]
    if not any(s.n_rows for s in leaves):
        dropped = (
            f" ({stats.dropped_rows} record(s) had a missing row or column category)"
            if stats.dropped_rows
            else ""
        )
        raise TableSpecError(f"the data has no rows to tabulate{dropped}; check the input and its filters")
    if values is not None and not any(s.n for s in leaves):
        raise TableSpecError(
            f"values column {values!r} has no non-missing values, so every cell would be empty; "
            "check the column (is it all NaN?)"
        )


def _key(label: Any, nlevels: int) -> Key:
    if nlevels == 0:
        return ()
    return tuple(label) if isinstance(label, tuple | list) else (label,)


def _published_value(s: CellStats, aggfunc: str) -> float:
    if aggfunc == "count":
        return float(s.n)
    if aggfunc == "sum":
        return float(s.total)
    return float(s.value)


def _suppress(
    structure: TableStructure,
    cell_stats: list[CellStats],
    primary: np.ndarray,
    aggfunc: str,
    rules: Rules,
    margins: bool,
) -> tuple[np.ndarray, dict[int, Interval], list[str], list[str], int]:
    """Secondary suppression and audit for additive statistics; primary only for the others.

    Returns the pattern, its intervals, the unmet requirements and the insider checks left out (as notes),
    and the LP solves.
    """
    size = structure.size
    if aggfunc not in (*ADDITIVE, "mean"):
        return primary.copy(), {int(i): (-math.inf, math.inf) for i in np.flatnonzero(primary)}, [], [], 0
    counts = aggfunc == "count"
    lp_values = np.array([s.n if counts else s.total for s in cell_stats], dtype=float)
    nonnegative = counts or not any(s.n_negative for s in cell_stats)
    lower = np.full(size, 0.0 if nonnegative else -math.inf)
    auditor = Auditor(structure, lp_values, lower, np.full(size, math.inf), integer=counts)
    if counts:
        width = np.full(size, float(rules.required_count_width))
        req = Requirement(width, width)
    else:
        primary_width = np.array([_magnitude_protection(s, rules) for s in cell_stats])
        secondary_width = np.maximum(1e-6, 1e-6 * np.abs(lp_values))
        insider: dict[int, Interval] = {}
        if rules.insider_protection and nonnegative:
            for i in np.flatnonzero(primary):
                s = cell_stats[i]
                if s.n >= 1 and s.top:
                    insider[int(i)] = (s.top[0], s.total if s.contributors == 1 else math.inf)
        # Each side of a sensitive cell's interval must be at least its protection level (tau-Argus's upper
        # and lower protection), not just the width: [1000, 2030] around 2000 needs 2030 >= 2000 + level.
        side = np.where(primary & nonnegative, primary_width, 0.0)
        req = Requirement(primary_width, secondary_width, insider, side=side)
    if not margins:
        return primary.copy(), auditor.intervals(primary), [], [], auditor.lp_solves
    result = suppress_secondary(structure, auditor, primary, req)
    intervals = dict(result.intervals)
    if aggfunc == "mean":
        # The attacker bounds the cell total; with the count public the mean lies in total / n.
        for cell, (lo, hi) in intervals.items():
            n = cell_stats[cell].n
            intervals[cell] = (lo / n, hi / n) if n else (-math.inf, math.inf)
    notes = [
        f"cell {structure.cells[d.cell]} stays under-protected against the {d.attacker}: "
        f"interval width {d.width:.4g} < required {d.required:.4g}; publish a coarser table"
        for d in result.unmet
    ]
    exempt = [
        f"cell {structure.cells[j]} is not protected against the sole contributor of cell "
        f"{structure.cells[i]}: both cells are that one contributor's record alone, so they know it exactly "
        "whatever is suppressed; it is protected against the outside attacker and every other contributor"
        for j, i in result.exempt
        if j > i  # the pairs are symmetric: one note each
    ]
    if auditor.flow_inner:
        exempt.append(
            f"{auditor.flow_inner} interval end(s) of this large table are reported at a bound the attacker "
            "surely cannot narrow (inside their exact interval): exact maximum flows would cost too much; "
            "protection judged on them is never overstated"
        )
    return result.suppressed, intervals, notes, exempt, result.lp_solves


def _magnitude_protection(s: CellStats, rules: Rules) -> float:
    """tau-Argus-style protection level of a sensitive magnitude cell (see module docstring)."""
    needed = rules.protection_level * abs(s.total)
    if s.n_negative == 0 and s.top:  # top: per unit when a unit column is declared
        x1 = s.top[0]
        x2 = s.top[1] if len(s.top) > 1 else 0.0
        needed = max(needed, rules.p_percent * x1 - (s.total - x1 - x2))
        needed = max(needed, sum(s.top[: rules.dominance_n]) / rules.dominance_k - s.total)
    return max(needed, 1e-6)


def _to_frame(
    structure: TableStructure,
    published: np.ndarray,
    index: list[str],
    columns: list[str],
    values: str | None,
    aggfunc: str,
) -> pd.DataFrame:
    grid = published.reshape(len(structure.row_keys), len(structure.col_keys))
    if len(index) == 1:
        row_index = pd.Index([k[0] for k in structure.row_keys], name=index[0])
    else:
        row_index = pd.MultiIndex.from_tuples(structure.row_keys, names=index)
    if not columns:
        col_index = pd.Index([values if values is not None else aggfunc])
    elif len(columns) == 1:
        col_index = pd.Index([k[0] for k in structure.col_keys], name=columns[0])
    else:
        col_index = pd.MultiIndex.from_tuples(structure.col_keys, names=columns)
    frame = pd.DataFrame(grid, index=row_index, columns=col_index)
    if aggfunc == "count" and not np.isnan(grid).any() and np.all(grid == np.round(grid)):
        frame = frame.astype("int64")
    return frame


__all__ = ["MARGIN", "CellFinding", "ProtectedTable", "protect_table"]
