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
from tre_lib.disclosure.structure import TableStructure


class RoundingError(DisclosureError):
    """No controlled rounding exists for this table; use suppression or conventional rounding instead."""


def round_nearest(values: np.ndarray, base: int) -> np.ndarray:
    """Round each value to the nearest multiple of ``base`` (halves round up, as ONS practice)."""
    return base * np.floor(np.asarray(values, dtype=float) / base + 0.5)


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
