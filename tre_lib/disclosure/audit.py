"""The attacker audit: the feasible interval of every suppressed cell, by linear programming.

An attacker who sees the published cells and margins knows that each suppressed cell is a number that makes
every published margin add up, and (for counts and non-negative magnitudes) that no cell is negative. The
smallest and largest such value of each suppressed cell, found with
``scipy.optimize.linprog(method="highs")``, is its attacker interval. Suppressed cells split into
independent groups (cells linked through a shared equation); each group is solved on its own, which keeps
the LPs small and lets results be cached while secondary suppression grows one group.

Counts are solved as a continuous LP and the bounds rounded inwards to integers. For 1-D and 2-D tables the
constraint matrix is totally unimodular, so these are exactly the bounds an integer-aware attacker gets; for
deeper hierarchies an integer programme could be slightly tighter (documented limitation).
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Iterable, Mapping
from typing import Any

import numpy as np
import pandas as pd
from scipy.optimize import linprog

from tre_lib.disclosure.errors import DisclosureError
from tre_lib.disclosure.structure import MARGIN, CellKey, TableStructure, as_key

Interval = tuple[float, float]


class AuditError(DisclosureError):
    """The published table is inconsistent (its margins cannot add up), so no interval exists."""


class Auditor:
    """Attacker intervals on one table structure, cached per group of linked suppressed cells.

    Args:
        structure: the table's cells and equations.
        values: true value of every cell (only published ones are used as known).
        lower: the attacker's prior lower bound per cell (0 for non-negative tables, -inf otherwise).
        upper: the attacker's prior upper bound per cell (usually +inf).
        integer: cells are whole numbers (counts), so the attacker rounds bounds inwards to integers.
    """

    def __init__(
        self,
        structure: TableStructure,
        values: np.ndarray,
        lower: np.ndarray,
        upper: np.ndarray,
        integer: bool = False,
    ):
        self.structure = structure
        self.integer = integer
        self.values = np.asarray(values, dtype=float)
        self.lower = np.asarray(lower, dtype=float)
        self.upper = np.asarray(upper, dtype=float)
        self._cache: dict[
            tuple[frozenset[int], tuple[tuple[int, float, float], ...]], dict[int, Interval]
        ] = {}
        # Optimal points of the plain (no insider knowledge) LPs, per group and cell: (argmin, argmax).
        self._points: dict[frozenset[int], dict[int, list[np.ndarray | None]]] = {}
        self.lp_solves = 0

    def groups(self, suppressed: np.ndarray) -> list[list[int]]:
        """Suppressed cells split into groups linked by shared equations."""
        parent = {int(i): int(i) for i in np.flatnonzero(suppressed)}

        def find(i: int) -> int:
            while parent[i] != i:
                parent[i] = parent[parent[i]]
                i = parent[i]
            return i

        for e in range(len(self.structure.equations)):
            members = [m for m in self.structure.members(e) if m in parent]
            for m in members[1:]:
                a, b = find(members[0]), find(m)
                if a != b:
                    parent[b] = a
        out: dict[int, list[int]] = {}
        for i in parent:
            out.setdefault(find(i), []).append(i)
        return [sorted(g) for g in out.values()]

    def group_of(self, cell: int, suppressed: np.ndarray) -> list[int]:
        """The group of linked suppressed cells that contains ``cell``."""
        for group in self.groups(suppressed):
            if cell in group:
                return group
        return [cell]

    def intervals(
        self,
        suppressed: np.ndarray,
        knowledge: Mapping[int, Interval] | None = None,
        cells: Iterable[int] | None = None,
        only: Iterable[int] | None = None,
    ) -> dict[int, Interval]:
        """Attacker interval of each suppressed cell.

        Args:
            suppressed: boolean mask of suppressed cells.
            knowledge: extra bounds the attacker has on some suppressed cells (an insider's own value).
            cells: only the groups holding these cells are solved (all groups if None).
            only: solve just these cells' intervals (two LPs each), not their whole groups.

        Returns:
            Interval per suppressed cell index (of the groups solved).
        """
        knowledge = dict(knowledge or {})
        chosen = None if only is None else set(only)
        wanted = set(cells) if cells is not None else chosen
        out: dict[int, Interval] = {}
        for group in self.groups(suppressed):
            if wanted is not None and not wanted.intersection(group):
                continue
            extra = tuple(sorted((i, *knowledge[i]) for i in group if i in knowledge))
            key = (frozenset(group), extra)
            solved = self._cache.setdefault(key, {})
            targets = [c for c in group if c not in solved and (chosen is None or c in chosen)]
            if targets:
                solved.update(
                    self._solve_group(group, suppressed, {i: (lo, hi) for i, lo, hi in extra}, targets)
                )
            out.update({c: v for c, v in solved.items() if chosen is None or c in chosen})
        return out

    def _solve_group(
        self, group: list[int], suppressed: np.ndarray, knowledge: dict[int, Interval], targets: list[int]
    ) -> dict[int, Interval]:
        position = {cell: j for j, cell in enumerate(group)}
        rows: list[np.ndarray] = []
        rhs: list[float] = []
        seen: set[int] = set()
        for cell in group:
            for e in self.structure.equations_of(cell):
                if e in seen:
                    continue
                seen.add(e)
                total, parts = self.structure.equations[e]
                row = np.zeros(len(group))
                known = 0.0
                for member, coef in ((total, 1.0), *((p, -1.0) for p in parts)):
                    if suppressed[member]:
                        row[position[member]] += coef
                    else:
                        known += coef * self.values[member]
                rows.append(row)
                rhs.append(-known)
        bounds = []
        for cell in group:
            lo, hi = float(self.lower[cell]), float(self.upper[cell])
            if cell in knowledge:
                lo, hi = max(lo, knowledge[cell][0]), min(hi, knowledge[cell][1])
            bounds.append((None if np.isneginf(lo) else lo, None if np.isposinf(hi) else hi))
        if not rows:
            return {
                cell: (-np.inf if lo is None else lo, np.inf if hi is None else hi)
                for cell, (lo, hi) in zip(group, bounds, strict=True)
            }
        a_eq = np.vstack(rows)
        b_eq = np.asarray(rhs)
        # Scale so that HiGHS's absolute feasibility tolerance is relative to the size of the numbers.
        scale = max(1.0, float(np.max(np.abs(b_eq))) if b_eq.size else 1.0)
        scaled_bounds = [
            (None if lo is None else lo / scale, None if hi is None else hi / scale) for lo, hi in bounds
        ]
        out: dict[int, Interval] = {}
        plain = self._points.setdefault(frozenset(group), {}) if not knowledge else None
        known_points = self._points.get(frozenset(group), {}) if knowledge else {}
        for cell in targets:
            j = position[cell]
            objective = np.zeros(len(group))
            ends = []
            points: list[np.ndarray | None] = []
            for end, sign in enumerate((1.0, -1.0)):
                # An extra bound that the plain optimum already satisfies cannot move that optimum, so an
                # insider's scenario only re-solves the ends their knowledge actually cuts off.
                hint = known_points.get(cell, [None, None])[end] if knowledge else None
                if hint is not None and all(
                    lo_k - 1e-9 * max(1.0, abs(lo_k))
                    <= hint[position[k]]
                    <= hi_k + 1e-9 * max(1.0, abs(hi_k))
                    for k, (lo_k, hi_k) in knowledge.items()
                ):
                    ends.append(float(hint[j]))
                    continue
                objective[:] = 0.0
                objective[j] = sign
                self.lp_solves += 1
                res = linprog(objective, A_eq=a_eq, b_eq=b_eq / scale, bounds=scaled_bounds, method="highs")
                if res.status == 2:
                    raise AuditError(
                        "the published margins do not add up to the published cells, so the table is "
                        "inconsistent; rebuild it from the data before auditing"
                    )
                if res.status == 3:
                    ends.append(-np.inf if sign > 0 else np.inf)
                    points.append(None)
                elif res.status != 0:
                    raise AuditError(f"the attacker LP did not solve ({res.message}); report this as a bug")
                else:
                    ends.append(sign * float(res.fun) * scale)
                    points.append(np.asarray(res.x) * scale)
            if plain is not None:
                plain[cell] = points
            lo, hi = min(ends), max(ends)
            if self.integer:
                lo, hi = float(math.ceil(lo - 1e-6)), float(math.floor(hi + 1e-6))
            out[cell] = (lo, hi)
        return out


def attacker_intervals(
    table: pd.DataFrame,
    margin_name: str = MARGIN,
    nonnegative: bool = True,
    knowledge: Mapping[tuple[Hashable, Hashable], Interval] | None = None,
    integer: bool | None = None,
) -> dict[tuple[Any, Any], Interval]:
    """Feasible interval of every suppressed (NaN) cell of a published table with margins.

    The table is read as pandas writes crosstabs and pivot tables with ``margins=True``: a row or column
    labelled ``margin_name`` (at any level of a MultiIndex, later levels ``margin_name`` or ``""``) is the
    sum of the rows or columns below it. Works on any such table, ours or another tool's.

    Args:
        table: the published table, suppressed cells NaN.
        margin_name: label of margin rows and columns.
        nonnegative: the attacker knows no cell is negative (counts, non-negative magnitudes).
        knowledge: extra bounds an attacker holds on some cells, keyed (row label, column label).
        integer: cells are whole numbers (bounds rounded inwards); None means "if every published value is".

    Returns:
        ``{(row label, column label): (lo, hi)}`` for each NaN cell.

    Example:
        >>> nan = float("nan")
        >>> t = pd.DataFrame({"x": [3, nan, 8], "y": [2, 2, 4], "All": [5, 7, 12]}, index=["a", "b", "All"])
        >>> attacker_intervals(t)[("b", "x")]
        (5.0, 5.0)
    """
    row_levels = table.index.nlevels
    col_levels = table.columns.nlevels
    row_labels = list(table.index)
    col_labels = list(table.columns)
    structure = TableStructure(
        [as_key(r, row_levels) for r in row_labels],
        [as_key(c, col_levels) for c in col_labels],
        margin_name=margin_name,
    )
    raw = table.to_numpy(dtype=float)
    values = raw.reshape(-1)
    suppressed = np.isnan(values)
    lower = np.full(structure.size, 0.0 if nonnegative else -np.inf)
    upper = np.full(structure.size, np.inf)
    label_of = {
        i: (row_labels[i // len(col_labels)], col_labels[i % len(col_labels)]) for i in range(values.size)
    }
    extra: dict[int, Interval] = {}
    if knowledge:
        position = {v: k for k, v in label_of.items()}
        for label, interval in knowledge.items():
            extra[position[label]] = interval
    if integer is None:
        shown = values[~suppressed]
        integer = bool(np.all(shown == np.round(shown)))
    auditor = Auditor(structure, np.nan_to_num(values), lower, upper, integer=integer)
    found = auditor.intervals(suppressed, knowledge=extra)
    return {label_of[i]: found[i] for i in sorted(found)}


def cell_label(structure: TableStructure, cell: int) -> CellKey:
    """The (row key, column key) of a cell index."""
    return structure.cells[cell]
