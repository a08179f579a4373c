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
   whole pattern). A requirement met once stays met as the pattern grows, and most are proved met without
   an LP by tables the attacker cannot rule out (:func:`_spread_for_insider`); the rest are solved exactly.
   A sole contributor is not checked against another cell made of their record alone
   (:func:`sole_contributor_pairs`): they know it exactly whatever is suppressed.
3. For the worst under-protected cell, try the cheapest few complement candidates linked to its group, each
   followed by the structural pass, and keep the cheapest that protects it (else the one that widens it most
   per unit cost). Adding a suppressed cell only removes constraints from the attacker, so intervals never
   shrink and the loop ends.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace

import numpy as np

from tre_lib.disclosure.audit import Auditor, Interval
from tre_lib.disclosure.structure import Key, TableStructure, margin_level

_TOL = 1e-7
_TRIALS = 8


#: Who an attacker is: the bounds they know on some cells, as (cell, lower, upper); empty for an outsider.
Knowledge = tuple[tuple[int, float, float], ...]
#: One requirement: a cell's interval as one attacker sees it.
DeficitKey = tuple[int, Knowledge]


@dataclass(frozen=True)
class Requirement:
    """What protection a suppressed cell needs and what its largest contributor knows.

    Attributes:
        primary_width: interval width needed when the cell is primary suppressed.
        secondary_width: interval width needed when it is a complement.
        insider: the bounds the cell's largest contributor knows for the cell, if modelled.
        exempt: per insider cell, the other cells not checked against that insider (see
            :func:`sole_contributor_pairs`); they stay checked against the outside attacker.
        side: per cell, the protection each side of its interval needs against the outside attacker
            (upper and lower protection levels: ``hi - value`` and ``value - lo``); 0 or None for none.
    """

    primary_width: np.ndarray
    secondary_width: np.ndarray
    insider: Mapping[int, Interval] = field(default_factory=dict)
    exempt: Mapping[int, frozenset[int]] = field(default_factory=dict)
    side: np.ndarray | None = None


@dataclass(frozen=True)
class Deficit:
    """A suppressed cell whose interval is narrower than needed, for some attacker."""

    cell: int
    width: float
    required: float
    knowledge: Knowledge = ()

    @property
    def key(self) -> DeficitKey:
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
    #: (cell, insider cell) pairs not checked: the cell is that insider's record alone.
    exempt: list[tuple[int, int]] = field(default_factory=list)


def required_width(cell: int, primary: np.ndarray, req: Requirement) -> float:
    """Width a suppressed cell's interval must reach."""
    return float(req.primary_width[cell] if primary[cell] else req.secondary_width[cell])


def outside_width(
    cell: int, lo: float, hi: float, values: np.ndarray, primary: np.ndarray, req: Requirement
) -> float:
    """The outside attacker's interval measured against :func:`required_width`: its width, or less when a
    side is shorter than the cell's side requirement (scaled so that it meets exactly when both sides do)."""
    width = hi - lo
    if req.side is None or req.side[cell] <= 0:
        return width
    near = min(hi - float(values[cell]), float(values[cell]) - lo)
    return min(width, required_width(cell, primary, req) * near / float(req.side[cell]))


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
                if suppressed[cand] or values[cand] == 0:
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
    skip: set[DeficitKey] | None = None,
    met: set[DeficitKey] | None = None,
) -> tuple[list[Deficit], dict[int, Interval]]:
    """Every under-protected cell: outside attacker first, then (only when those are fine) insiders.

    ``met`` (updated in place) holds the requirements (a :attr:`Deficit.key`: cell and attacker) found met on
    this pattern or a smaller one. Suppressing more cells only removes constraints from every attacker (an
    insider's knowledge is a fixed bound on their own cell, which stays suppressed), so those intervals can
    only have widened and are not solved again. The intervals returned are the outside attacker's, for the
    cells solved (every suppressed cell when ``met`` is None).
    """
    skip = skip or set()
    check = None if met is None else [c for c in np.flatnonzero(suppressed).tolist() if (c, ()) not in met]
    memo: set[DeficitKey] = set() if met is None else met
    intervals = auditor.intervals(suppressed, only=check)
    out = []
    for cell, (lo, hi) in intervals.items():
        need = required_width(cell, primary, req)
        width = outside_width(cell, lo, hi, auditor.values, primary, req)
        if not _meets(width, need):
            out.append(Deficit(cell, width, need))
        else:
            memo.add((cell, ()))
    out = [d for d in out if d.key not in skip]
    if out or not req.insider:
        return out, intervals
    out = _insider_deficits(auditor, suppressed, primary, req, memo)
    return [d for d in out if d.key not in skip], intervals


def _insider_deficits(
    auditor: Auditor, suppressed: np.ndarray, primary: np.ndarray, req: Requirement, met: set[DeficitKey]
) -> list[Deficit]:
    """What the largest contributor of each suppressed primary cell learns, about their own cell and about the
    other primary cells linked to it; requirements in ``met`` are skipped and the ones found met are added.

    Most requirements are settled without an LP: the true table and the plain optima found so far (for this
    pattern or a smaller one, :meth:`Auditor.witnesses`) are tables the outside attacker cannot rule out;
    moved towards the true table until they agree with what the insider knows, they are tables the insider
    cannot rule out either, so their spread in a cell is a lower bound on the insider's interval. Only the
    requirements that bound leaves short are solved, exactly as before.
    """
    insiders = [(cell, known) for cell, known in req.insider.items() if suppressed[cell]]
    if not insiders:
        return []
    # Per cell, the primary cells of its group. Complements are not sensitive: an insider who already knows
    # their own cell may learn them.
    sensitive_of: dict[int, list[int]] = {}
    for group in auditor.groups(suppressed):
        sensitive = [c for c in group if primary[c]]
        sensitive_of.update(dict.fromkeys(group, sensitive))
    tables = auditor.witnesses(suppressed)
    extremes = np.vstack([np.argmax(tables, axis=0), np.argmin(tables, axis=0)])
    pending: dict[int, list[int]] = {}
    for cell, (known_lo, known_hi) in insiders:
        own_key = (cell, ((cell, known_lo, np.inf),))
        if own_key not in met:
            column = tables[:, cell]
            # Their interval of their own cell is [max(lo, known_lo), hi], with lo <= min and hi >= max.
            if _meets(float(column.max() - max(column.min(), known_lo)), required_width(cell, primary, req)):
                met.add(own_key)
        knows = ((cell, known_lo, known_hi),)
        exempt = req.exempt.get(cell, frozenset())
        linked = [c for c in sensitive_of[cell] if c != cell and c not in exempt and (c, knows) not in met]
        # First each cell's own extreme tables, then every table for the cells still short.
        for rows in (extremes[:, linked], None):
            if not linked:
                break
            spread = _spread_for_insider(tables, cell, (known_lo, known_hi), linked, rows)
            for other, width in zip(linked, spread.tolist(), strict=True):
                if _meets(width, required_width(other, primary, req)):
                    met.add((other, knows))
            linked = [c for c in linked if (c, knows) not in met]
        pending[cell] = linked
    ask = [c for c, (lo, _hi) in insiders if pending[c] or (c, ((c, lo, np.inf),)) not in met]
    plain = auditor.intervals(suppressed, only=ask) if ask else {}
    out = []
    for cell, (known_lo, known_hi) in insiders:
        if cell not in plain:
            continue  # everything about this insider was settled above
        lo, hi = plain[cell]
        need = required_width(cell, primary, req)
        own_key = (cell, ((cell, known_lo, np.inf),))
        if own_key not in met:
            # Own cell: the contributor knows the cell is at least their own value.
            own = hi - max(lo, known_lo)
            if _meets(own, need):
                met.add(own_key)
            else:
                out.append(Deficit(cell, own, need, own_key[1]))
        knows = ((cell, known_lo, known_hi),)
        linked = pending[cell]
        if not linked:
            continue
        if known_lo <= lo + _TOL * max(1.0, abs(lo)) and np.isposinf(known_hi):
            # Their knowledge adds nothing the outside attacker lacks: they see the plain intervals.
            met.update((other, knows) for other in linked if (other, ()) in met)
            continue
        seen = auditor.intervals(suppressed, knowledge={cell: (known_lo, known_hi)}, only=linked)
        for other in linked:
            olo, ohi = seen[other]
            other_need = required_width(other, primary, req)
            if _meets(ohi - olo, other_need):
                met.add((other, knows))
            else:
                out.append(Deficit(other, ohi - olo, other_need, knows))
    return out


def sole_contributor_pairs(
    structure: TableStructure, insider: Mapping[int, Interval]
) -> dict[int, frozenset[int]]:
    """Per insider cell ``i``, the other cells ``j`` whose insider requirement is vacuous.

    That is when ``i`` and ``j`` each have a sole contributor (the insider knows the cell exactly: its
    bounds are one finite value) and one cell contains the other in the table's hierarchy: the records of the
    smaller cell are records of the larger, which has only one, so both cells hold that one record and its
    contributor knows both exactly. Protecting ``j`` against them protects nothing (a 20x10 sum table spent
    79 complements on it); ``j`` stays protected against the outside attacker and every other insider. The
    relation is symmetric, and only cells both in ``insider`` (primary cells) are concerned.
    """
    sole = {i for i, (lo, hi) in insider.items() if lo == hi and np.isfinite(hi)}
    pairs: dict[int, set[int]] = {}
    for i in sole:
        row, col = structure.cells[i]
        for above in ((r, c) for r in _enclosing(row, structure) for c in _enclosing(col, structure)):
            j = structure.index.get(above, -1)
            if j != i and j in sole:
                pairs.setdefault(i, set()).add(j)
                pairs.setdefault(j, set()).add(i)
    return {i: frozenset(js) for i, js in pairs.items()}


def _enclosing(key: Key, structure: TableStructure) -> list[Key]:
    """The key and every margin key that sums it (its prefixes followed by margins)."""
    name = structure.margin_name
    return [(*key[:m], *([name] * (len(key) - m))) for m in range(margin_level(key, name) + 1)]


def _spread_for_insider(
    tables: np.ndarray, cell: int, known: Interval, others: list[int], rows: np.ndarray | None = None
) -> np.ndarray:
    """A lower bound on the width of each of ``others``' intervals for an attacker who also knows that
    ``cell`` lies in ``known``, from ``tables`` (one per row, the true table first) that the plain attacker
    cannot rule out; ``rows`` (one column per other cell) limits the tables tried for each cell.

    The plain attacker's feasible tables form a convex set, so every point on the segment between two of
    them is feasible too; the points of such a segment where ``cell`` lies in ``known`` are tables this
    insider cannot rule out either. Each table is joined to three anchors (the true table, which the insider
    can never rule out, and the tables where ``cell`` is largest and smallest, so that a table on either
    side of ``known`` has a partner across it) and moved along the segment only as far as ``known`` needs.
    The spread of the tables found, per cell, is a width the insider's interval has at least.
    """
    lo, hi = known
    x = tables[:, cell]
    anchors = tables[[0, int(np.argmax(x)), int(np.argmin(x))]]
    # Segment a + t (p - a), t in [0, 1], for every anchor a and table p: the t where ``cell`` is in known.
    a_x = anchors[:, cell][:, None]
    d = x[None, :] - a_x
    with np.errstate(divide="ignore", invalid="ignore"):
        to_lo, to_hi = (lo - a_x) / d, (hi - a_x) / d
    flat = d == 0
    inside_a = (lo <= a_x) & (a_x <= hi)
    t_max = np.where(flat, np.where(inside_a, 1.0, -np.inf), np.minimum(1.0, np.where(d > 0, to_hi, to_lo)))
    t_min = np.where(flat, 0.0, np.maximum(0.0, np.where(d > 0, to_lo, to_hi)))
    ok = t_min <= t_max
    t = np.where(ok, t_max, 0.0)
    cols = np.asarray(others)
    if rows is None:  # every table for every cell: (anchor, table, cell) by broadcasting
        values, step, valid = tables[:, cols][None], t[:, :, None], ok[:, :, None]
    else:
        values, step, valid = tables[rows, cols][None], t[:, rows], ok[:, rows]
    base = anchors[:, cols][:, None, :]
    mixed = base + step * (values - base)
    high = np.where(valid, mixed, -np.inf).max(axis=(0, 1))
    low = np.where(valid, mixed, np.inf).min(axis=(0, 1))
    return np.asarray(np.maximum(high - low, 0.0))


def _width(
    auditor: Auditor,
    suppressed: np.ndarray,
    deficit: Deficit,
    primary: np.ndarray | None = None,
    req: Requirement | None = None,
) -> float:
    knowledge = {c: (lo, hi) for c, lo, hi in deficit.knowledge}
    lo, hi = auditor.intervals(suppressed, knowledge=knowledge, only=[deficit.cell])[deficit.cell]
    if knowledge or primary is None or req is None:
        return hi - lo
    return outside_width(deficit.cell, lo, hi, auditor.values, primary, req)


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
    unmet: dict[DeficitKey, Deficit] = {}
    intervals: dict[int, Interval] = {}
    met: set[DeficitKey] = set()  # the pattern only grows, so a requirement once met stays so
    if req.insider:
        auditor.keep_witnesses()
        req = replace(req, exempt=sole_contributor_pairs(structure, req.insider))
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
        width = _width(auditor, suppressed, d, primary, req)
        if not _meets(width, d.required):
            still.append(Deficit(d.cell, width, d.required, d.knowledge))
    exempt = sorted((j, i) for i, js in req.exempt.items() for j in js)
    return SuppressionResult(suppressed, intervals, still, auditor.lp_solves, exempt)


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
    # Each equation once: a large table's margin equation holds thousands of the group's cells.
    equations = {e for cell in group for e in structure.equations_of(cell)}
    pool: set[int] = set()
    for e in equations:
        members = np.asarray(structure.members(e))
        # Never an empty cell: an attacker knows structural zeros (a district outside a region), so a
        # suppressed zero protects nothing, while the audit would count on it (tau-Argus's default too).
        pool.update(members[~suppressed[members] & (auditor.values[members] != 0)].tolist())
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
        width = _width(auditor, trial, deficit, primary, req)
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
