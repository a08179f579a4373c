"""Rounding as an alternative to suppression: conventional (nearest) and controlled rounding.

Conventional rounding rounds every cell, margins included, to the nearest multiple of the base on its own,
so rows no longer add up to their rounded totals, and the differences give an attacker information back.
Controlled rounding (Cox 1987) rounds every cell, margins included, up or down to an adjacent multiple of the
base such that the rounded table is still additive. We find it as a 0/1 integer programme solved by
``scipy.optimize.milp`` (HiGHS): one variable per cell that is not already a multiple (those stay as they are,
"zero-restricted"), one equality per margin, and the objective is the total absolute change. A solution
always exists for 1-D and 2-D tables; for deeper hierarchies it may not, and we then raise
:class:`RoundingError` rather than publish a non-additive table.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import Bounds, LinearConstraint, milp

from tre_lib.disclosure.errors import DisclosureError
from tre_lib.disclosure.rules import Rules
from tre_lib.disclosure.structure import TableStructure


class RoundingError(DisclosureError):
    """No safe rounding exists for this table: no controlled rounding, or a nearest rounding whose margins
    give a small cell back; use suppression (or controlled rounding) instead."""


def round_nearest(values: np.ndarray, base: int) -> np.ndarray:
    """Round each value to the nearest multiple of ``base`` (halves round up, as ONS practice)."""
    return base * np.floor(np.asarray(values, dtype=float) / base + 0.5)


def audit_nearest_rounding(
    structure: TableStructure, values: np.ndarray, rounded: np.ndarray, rules: Rules
) -> None:
    """Refuse a nearest rounding whose margins narrow a small cell.

    Rounded on its own, each cell is only known to lie within its rounding interval (an integer ``x`` rounds
    to ``r`` when ``r - base/2 <= x < r + base/2``). But the true cells still add up to the true margins,
    whose own rounding intervals are known too, and an attacker who solves that system (the same LP as the
    suppression audit, every cell unknown within its interval) can narrow a cell, even to its exact value.
    Every cell with ``0 < value < threshold`` must keep its whole rounding interval; otherwise the table is
    refused (controlled rounding or suppression are the alternatives).

    Raises:
        RoundingError: naming the first cell the margins narrow.
    """
    from tre_lib.disclosure.audit import Auditor

    base = rules.rounding_base
    lower = np.maximum(0.0, rounded - np.floor(base / 2))
    upper = rounded + np.ceil(base / 2) - 1
    small = np.flatnonzero((values > 0) & (values < rules.threshold))
    if small.size == 0:
        return
    auditor = Auditor(structure, values, lower, upper, integer=True)
    found = auditor.intervals(np.ones(structure.size, dtype=bool), only=small.tolist())
    for cell in small.tolist():
        lo, hi = found[cell]
        if hi - lo < upper[cell] - lower[cell] - 1e-9:
            raise RoundingError(
                f"nearest rounding to base {base} is not safe for this table: with the rounded margins an "
                f"attacker narrows cell {structure.cells[cell]} (a count below the threshold) to "
                f"[{lo:g}, {hi:g}] instead of [{lower[cell]:g}, {upper[cell]:g}]; use "
                "rounding_method='controlled' or mitigation='suppress'"
            )


def controlled_round(structure: TableStructure, values: np.ndarray, base: int) -> np.ndarray:
    """Round an additive table of counts to multiples of ``base`` keeping every margin equation.

    Args:
        structure: cells and margin equations.
        values: the table's cell values (integers).
        base: rounding base.

    Returns:
        Rounded values, additive and each within ``base`` of the original (cells already a multiple of the
        base are unchanged).

    Raises:
        RoundingError: no additive rounding exists (possible only for hierarchies deeper than 2-D).
    """
    values = np.asarray(values, dtype=float)
    low = base * np.floor(values / base)
    residual = values - low
    free = np.flatnonzero(residual > 1e-9)
    if free.size == 0:
        return low
    position = {int(cell): j for j, cell in enumerate(free)}
    rows, rhs = [], []
    for total, parts in structure.equations:
        row = np.zeros(free.size)
        known = 0.0
        for member, coef in ((total, 1.0), *((p, -1.0) for p in parts)):
            known += coef * low[member]
            if member in position:
                row[position[member]] += coef
        if np.any(row) or abs(known) > 1e-9:
            rows.append(row)
            rhs.append(-known / base)
    # |rounded - value| is residual when rounding down and base - residual when rounding up.
    objective = base - 2 * residual[free]
    constraints = [LinearConstraint(np.vstack(rows), np.asarray(rhs), np.asarray(rhs))] if rows else []
    result = milp(
        objective,
        integrality=np.ones(free.size),
        bounds=Bounds(np.zeros(free.size), np.ones(free.size)),
        constraints=constraints,
    )
    if result.status != 0 or result.x is None:
        raise RoundingError(
            f"no controlled rounding to base {base} exists for this table ({result.message}); "
            "use rules mitigation='suppress' or rounding_method='nearest'"
        )
    rounded = low.copy()
    rounded[free] += base * np.round(result.x)
    return rounded
