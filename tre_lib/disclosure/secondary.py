"""Secondary suppression: grow the suppression pattern until the attacker audit finds every cell protected.

We write our own heuristic rather than call a solver package: sdcTable and tau-Argus are R/C++ programs that
cannot run inside a Python workspace, and no maintained Python package does secondary suppression. The
heuristic follows the classic "cheapest complement, then audit" scheme; the LP audit in
:mod:`tre_lib.disclosure.audit` is the judge, so a weak choice costs utility, never safety.

1. Structural pass: while some equation (a row, a column, a subtotal) holds exactly one suppressed cell,
   that cell equals the margin minus the published cells, so another cell of that equation is suppressed:
   an interior cell before a margin, one that does not start a new lone cell elsewhere, one at least as large
   as the protection needed, and the cheapest (cost = value).
2. Audit: every suppressed cell's attacker interval must be at least its required width. For magnitude
   tables the largest contributor of each primary cell is also an attacker: they know their own value
   ``x1`` (and, as sole contributor, the whole cell), so the cell lies in ``[max(lo, x1), hi]`` for them and
   the LP is re-solved with that knowledge to check every other sensitive (primary) cell linked to it
   (tau-Argus's protection against a contributor who subtracts their own contribution, applied through the
   whole pattern).
3. For the worst under-protected cell, try the cheapest few complement candidates linked to its group, each
   followed by the structural pass, and keep the cheapest that protects it (else the one that widens it most
   per unit cost). Adding a suppressed cell only removes constraints from the attacker, so intervals never
   shrink and the loop ends.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from tre_lib.disclosure.audit import Auditor, Interval
from tre_lib.disclosure.structure import TableStructure

_TOL = 1e-7
_TRIALS = 8


@dataclass(frozen=True)
class Requirement:
    """What protection a suppressed cell needs and what its largest contributor knows.

    Attributes:
        primary_width: interval width needed when the cell is primary suppressed.
        secondary_width: interval width needed when it is a complement.
        insider: the bounds the cell's largest contributor knows for the cell, if modelled.
    """

    primary_width: np.ndarray
    secondary_width: np.ndarray
    insider: Mapping[int, Interval] = field(default_factory=dict)


@dataclass(frozen=True)
class Deficit:
    """A suppressed cell whose interval is narrower than needed, for some attacker."""

    cell: int
    width: float
    required: float
    knowledge: tuple[tuple[int, float, float], ...] = ()

    @property
    def key(self) -> tuple[int, tuple[tuple[int, float, float], ...]]:
        """Identity of the requirement (cell and attacker), whatever the current width."""
        return (self.cell, self.knowledge)

    @property
    def attacker(self) -> str:
        """Who the attacker is, in words."""
        return "outside attacker" if not self.knowledge else "largest contributor of a linked cell"


@dataclass
class SuppressionResult:
    """The pattern found and its audit."""

    suppressed: np.ndarray
    intervals: dict[int, Interval]
    unmet: list[Deficit]
    lp_solves: int


def required_width(cell: int, primary: np.ndarray, req: Requirement) -> float:
    """Width a suppressed cell's interval must reach."""
    return float(req.primary_width[cell] if primary[cell] else req.secondary_width[cell])


def _meets(width: float, required: float) -> bool:
    return width >= required - _TOL * max(1.0, abs(required))


def fix_lone_cells(
    structure: TableStructure,
    values: np.ndarray,
    suppressed: np.ndarray,
    primary: np.ndarray,
    req: Requirement,
) -> None:
    """Suppress complements until no equation holds exactly one suppressed cell (in place)."""
    cost = np.abs(values) + 1.0
    members, owners = structure.flat_members()
    # How many suppressed cells each equation holds, kept up to date as complements are added, so a large
    # table is not rescanned for every candidate.
    hidden = np.bincount(owners, weights=suppressed[members], minlength=len(structure.equations)).astype(int)
    changed = True
    while changed:
        changed = False
        for e in range(len(structure.equations)):
            if hidden[e] != 1:
                continue
            equation = structure.members(e)
            lone = next(m for m in equation if suppressed[m])
            need = required_width(lone, primary, req)
            best: tuple[int, int, float] | None = None
            pick = -1
            for cand in equation:
                if suppressed[cand]:
                    continue
                new_lone = sum(
                    1 for other in structure.equations_of(cand) if other != e and hidden[other] == 0
                )
                small = int(abs(values[cand]) < need)
                score = (int(structure.is_margin[cand]), new_lone + small, float(cost[cand]))
                if best is None or score < best:
                    best, pick = score, cand
            if pick >= 0:
                suppressed[pick] = True
                for other in structure.equations_of(pick):
                    hidden[other] += 1
                changed = True


def find_deficits(
    auditor: Auditor,
    suppressed: np.ndarray,
    primary: np.ndarray,
    req: Requirement,
    skip: set[tuple[int, tuple[tuple[int, float, float], ...]]] | None = None,
    met: set[int] | None = None,
) -> tuple[list[Deficit], dict[int, Interval]]:
    """Every under-protected cell: outside attacker first, then (only when those are fine) insiders.

    ``met`` (updated in place) holds the cells whose outside-attacker interval was wide enough on this
    pattern or a smaller one: suppressing more cells only removes constraints from the attacker, so their
    intervals can only have widened and they are not solved again. The intervals returned then cover the
    other cells only (and every cell when insiders are checked).
    """
    skip = skip or set()
    check = None if met is None else [c for c in np.flatnonzero(suppressed).tolist() if c not in met]
    intervals = auditor.intervals(suppressed, only=check)
    out = []
    for cell, (lo, hi) in intervals.items():
        need = required_width(cell, primary, req)
        if not _meets(hi - lo, need):
            out.append(Deficit(cell, hi - lo, need))
        elif met is not None:
            met.add(cell)
    out = [d for d in out if d.key not in skip]
    if out:
        return out, intervals
    if req.insider and check is not None:
        # The insiders' checks read their own cells' intervals and reuse every cell's plain optimum.
        intervals = auditor.intervals(suppressed)
    for cell, (known_lo, known_hi) in req.insider.items():
        if not suppressed[cell]:
            continue
        lo, hi = intervals[cell]
        need = required_width(cell, primary, req)
        # Own cell: the contributor knows the cell is at least their own value.
        own = hi - max(lo, known_lo)
        if not _meets(own, need):
            out.append(Deficit(cell, own, need, ((cell, known_lo, np.inf),)))
        if known_lo <= lo + _TOL * max(1.0, abs(lo)) and np.isposinf(known_hi):
            continue  # their knowledge adds nothing the outside attacker lacks
        knowledge = {cell: (known_lo, known_hi)}
        linked = [c for c in auditor.group_of(cell, suppressed) if primary[c] and c != cell]
        seen = auditor.intervals(suppressed, knowledge=knowledge, only=linked) if linked else {}
        for other, (olo, ohi) in seen.items():
            # Complements are not sensitive: an insider who already knows their own cell may learn them.
            if other == cell or not primary[other]:
                continue
            other_need = required_width(other, primary, req)
            if not _meets(ohi - olo, other_need):
                out.append(Deficit(other, ohi - olo, other_need, ((cell, known_lo, known_hi),)))
    return [d for d in out if d.key not in skip], intervals


def _width(auditor: Auditor, suppressed: np.ndarray, deficit: Deficit) -> float:
    knowledge = {c: (lo, hi) for c, lo, hi in deficit.knowledge}
    lo, hi = auditor.intervals(suppressed, knowledge=knowledge, only=[deficit.cell])[deficit.cell]
    return hi - lo


def suppress_secondary(
    structure: TableStructure,
    auditor: Auditor,
    primary: np.ndarray,
    req: Requirement,
) -> SuppressionResult:
    """Find complementary suppressions so that every suppressed cell meets its requirement.

    Args:
        structure: the table's cells and equations.
        auditor: LP audit on the true values.
        primary: primary-suppressed cells.
        req: protection requirements.

    Returns:
        The final pattern, its outside-attacker intervals and any requirement that could not be met.
    """
    values = auditor.values
    cost = np.abs(values) + 1.0
    suppressed = primary.copy()
    unmet: dict[tuple[int, tuple[tuple[int, float, float], ...]], Deficit] = {}
    intervals: dict[int, Interval] = {}
    met: set[int] = set()  # the pattern only grows, so a cell once wide enough stays so
    for _ in range(4 * structure.size + 4):
        fix_lone_cells(structure, values, suppressed, primary, req)
        deficits, intervals = find_deficits(auditor, suppressed, primary, req, skip=set(unmet), met=met)
        if not deficits:
            break
        worst = max(deficits, key=lambda d: (d.required - d.width) / max(d.required, _TOL))
        chosen = _choose_complement(structure, auditor, suppressed, primary, req, worst, cost)
        if chosen is None:
            unmet[worst.key] = worst
            continue
        suppressed = chosen
    intervals = auditor.intervals(suppressed)
    # Re-check the ones given up on: a later complement may have protected them after all.
    still = []
    for d in unmet.values():
        width = _width(auditor, suppressed, d)
        if not _meets(width, d.required):
            still.append(Deficit(d.cell, width, d.required, d.knowledge))
    return SuppressionResult(suppressed, intervals, still, auditor.lp_solves)


def _choose_complement(
    structure: TableStructure,
    auditor: Auditor,
    suppressed: np.ndarray,
    primary: np.ndarray,
    req: Requirement,
    deficit: Deficit,
    cost: np.ndarray,
) -> np.ndarray | None:
    group = auditor.group_of(deficit.cell, suppressed)
    for c, _lo, _hi in deficit.knowledge:
        group = sorted(set(group) | set(auditor.group_of(c, suppressed)))
    pool: set[int] = set()
    for cell in group:
        for e in structure.equations_of(cell):
            pool.update(m for m in structure.members(e) if not suppressed[m])
    if not pool:
        return None
    ranked = sorted(pool, key=lambda m: (bool(structure.is_margin[m]), cost[m] < deficit.required, cost[m]))
    interior = [m for m in ranked if not structure.is_margin[m]]
    trials = (interior or ranked)[:_TRIALS]
    best_meeting: tuple[float, np.ndarray] | None = None
    best_gain: tuple[float, np.ndarray] | None = None
    for cand in trials:
        trial = suppressed.copy()
        trial[cand] = True
        fix_lone_cells(structure, auditor.values, trial, primary, req)
        added = float(cost[trial & ~suppressed].sum())
        width = _width(auditor, trial, deficit)
        if _meets(width, deficit.required):
            if best_meeting is None or added < best_meeting[0]:
                best_meeting = (added, trial)
        elif width > deficit.width + _TOL:
            gain = (width - deficit.width) / added
            if best_gain is None or gain > best_gain[0]:
                best_gain = (gain, trial)
    if best_meeting is not None:
        return best_meeting[1]
    if best_gain is not None:
        return best_gain[1]
    # Nothing helps on its own: suppress the cheapest candidate anyway (the pattern only grows, so this ends).
    trial = suppressed.copy()
    trial[trials[0]] = True
    fix_lone_cells(structure, auditor.values, trial, primary, req)
    return trial
