"""The attacker audit: the feasible interval of every suppressed cell, by linear programming.

An attacker who sees the published cells and margins knows that each suppressed cell is a number that makes
every published margin add up, and (for counts and non-negative magnitudes) that no cell is negative. The
smallest and largest such value of each suppressed cell, found with
HiGHS (warm-started per group, see :class:`_GroupLP`), is its attacker interval. Suppressed cells split into
independent groups (cells linked through a shared equation); each group is solved on its own, which keeps
the LPs small and lets results be cached while secondary suppression grows one group.

A count table with one row and one column variable (and both margins) is a network: rows, columns and the
two margins are nodes and every cell is an arc (row total -> row -> column -> column total -> grand total
-> back), so the attacker's feasible tables are the non-negative circulations that agree with the
published arcs. The largest increase of a suppressed cell ``u -> v`` is then the maximum flow from ``v``
back to ``u`` through the other suppressed cells (each can grow without limit or shrink to zero), and its
largest decrease the maximum flow from ``u`` to ``v``, at most the cell itself (Gusfield, "A graph
theoretic approach to statistical data security", SIAM J. Comput. 1988). Those intervals come from
``scipy.sparse.csgraph.maximum_flow``, exact in integers and much faster than two LPs per cell, after
cheap bounds have settled the ends they can (:class:`_FlowGroup`); every other table (magnitudes, insiders,
hierarchies, 1-D) uses the LP.

Counts are solved as a continuous LP and the bounds rounded inwards to integers. For 1-D and 2-D tables the
constraint matrix is totally unimodular, so these are exactly the bounds an integer-aware attacker gets; for
deeper hierarchies an integer programme could be slightly tighter (documented limitation).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Hashable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from tre_lib.disclosure.errors import DisclosureError
from tre_lib.disclosure.structure import MARGIN, CellKey, TableStructure, as_key

Interval = tuple[float, float]
#: HiGHS models kept per Auditor (one per group of linked suppressed cells).
_MAX_MODELS = 64


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
        self._models: dict[frozenset[int], _GroupLP] = {}
        self.lp_solves = 0
        self.flow_solves = 0
        #: Interval ends of count tables settled by the network's bounds, with no flow solved.
        self.flow_settled = 0
        #: Interval ends reported as a guaranteed inner bound because exact flows would cost too much.
        self.flow_inner = 0
        self._arcs = _network_arcs(structure) if integer else None
        #: Plain optima kept as whole tables with the cells they moved, when :meth:`keep_witnesses` is on.
        self._witnesses: deque[tuple[np.ndarray, np.ndarray]] | None = None
        self._last_groups: tuple[bytes, list[list[int]]] | None = None

    def keep_witnesses(self, most: int = 4096) -> None:
        """Keep every plain optimum found from now on as a whole table (see :meth:`witnesses`)."""
        self._witnesses = deque(maxlen=most)

    def witnesses(self, suppressed: np.ndarray) -> np.ndarray:
        """Tables the attacker cannot rule out on the pattern ``suppressed``, one per row: the true table and
        every kept optimum whose group lies inside the pattern (its other cells at their true values).

        Only meaningful on the true values (secondary suppression): such a table agrees with every published
        cell of the pattern, so it is feasible for the attacker of this pattern and of any larger one, and
        a spread among them proves an interval at least that wide without solving an LP.
        """
        kept = [table for moved, table in self._witnesses or () if suppressed[moved].all()]
        return np.vstack([self.values, *kept]) if kept else self.values[None, :]

    def groups(self, suppressed: np.ndarray) -> list[list[int]]:
        """Suppressed cells split into groups linked by shared equations (do not modify the lists)."""
        # One pattern is asked about many times in a row (each insider's check, each trial complement).
        pattern = np.packbits(suppressed).tobytes()
        if self._last_groups is not None and self._last_groups[0] == pattern:
            return self._last_groups[1]
        found = self._split_groups(suppressed)
        self._last_groups = (pattern, found)
        return found

    def _split_groups(self, suppressed: np.ndarray) -> list[list[int]]:
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
        key = frozenset(group)
        if not knowledge and self._arcs is not None:
            network = _FlowGroup.build(self, group, suppressed)
            if network is not None:
                found = network.intervals(targets)
                self.flow_solves += network.solves
                self.flow_settled += network.settled
                self.flow_inner += network.inner
                return found
        lp = self._models.get(key)
        if lp is None:
            if len(self._models) >= _MAX_MODELS:
                # Secondary suppression tries many patterns; keep only the newest groups' models.
                self._models.pop(next(iter(self._models)))
            lp = _GroupLP.build(self, group, suppressed)
            self._models[key] = lp
        if lp.highs is None:
            return {cell: lp.prior(group.index(cell), knowledge.get(cell)) for cell in targets}
        out: dict[int, Interval] = {}
        plain = self._points.setdefault(key, {}) if not knowledge else None
        known_points = self._points.get(key, {}) if knowledge else {}
        position = lp.position
        lp.set_knowledge(knowledge)
        try:
            for cell in targets:
                j = position[cell]
                ends = []
                points: list[np.ndarray | None] = []
                for end, sign in enumerate((1.0, -1.0)):
                    # An extra bound that the plain optimum already satisfies cannot move that optimum, so
                    # an insider's scenario only re-solves the ends their knowledge actually cuts off.
                    hint = known_points.get(cell, [None, None])[end] if knowledge else None
                    if hint is not None and all(
                        lo_k - 1e-9 * max(1.0, abs(lo_k))
                        <= hint[position[k]]
                        <= hi_k + 1e-9 * max(1.0, abs(hi_k))
                        for k, (lo_k, hi_k) in knowledge.items()
                    ):
                        ends.append(float(hint[j]))
                        continue
                    self.lp_solves += 1
                    value, point = lp.optimise(j, sign)
                    ends.append(value)
                    points.append(point)
                    if plain is not None and point is not None and self._witnesses is not None:
                        table = self.values.copy()
                        table[group] = point
                        self._witnesses.append((np.asarray(group), table))
                if plain is not None:
                    plain[cell] = points
                lo, hi = min(ends), max(ends)
                if self.integer:
                    # Whole numbers: round finite bounds inwards (an unbounded end stays infinite).
                    lo = float(math.ceil(lo - 1e-6)) if math.isfinite(lo) else lo
                    hi = float(math.floor(hi + 1e-6)) if math.isfinite(hi) else hi
                out[cell] = (lo, hi)
        finally:
            lp.set_knowledge({})
        return out


class _GroupLP:
    """The attacker's LP for one group of linked suppressed cells, kept in one HiGHS instance.

    Every interval end of the group is the same LP with another objective (and, for an insider, a few
    tighter bounds), so the model is built once and re-solved from the previous optimal basis: HiGHS's
    simplex warm start needs a handful of iterations where a cold solve needs hundreds, and the model is
    not re-validated on every call as ``scipy.optimize.linprog`` does.
    """

    def __init__(
        self, position: dict[int, int], bounds: list[tuple[float, float]], scale: float, highs: Any
    ) -> None:
        self.position = position
        self.bounds = bounds
        self.scale = scale
        self.highs = highs
        self._changed: list[int] = []
        self._cost_at: int | None = None

    @classmethod
    def build(cls, auditor: Auditor, group: list[int], suppressed: np.ndarray) -> _GroupLP:
        structure = auditor.structure
        position = {cell: j for j, cell in enumerate(group)}
        rows: list[list[tuple[int, float]]] = []
        rhs: list[float] = []
        seen: set[int] = set()
        for cell in group:
            for e in structure.equations_of(cell):
                if e in seen:
                    continue
                seen.add(e)
                total, parts = structure.equations[e]
                coefs: dict[int, float] = {}
                known = 0.0
                for member, coef in ((total, 1.0), *((p, -1.0) for p in parts)):
                    if suppressed[member]:
                        coefs[position[member]] = coefs.get(position[member], 0.0) + coef
                    else:
                        known += coef * auditor.values[member]
                rows.append(list(coefs.items()))
                rhs.append(-known)
        lower, upper = auditor.lower[group], auditor.upper[group]
        bounds = list(zip(lower.tolist(), upper.tolist(), strict=True))
        if not rows:
            return cls(position, bounds, 1.0, None)
        b_eq = np.asarray(rhs)
        # Scale so that HiGHS's absolute feasibility tolerance is relative to the size of the numbers.
        scale = max(1.0, float(np.max(np.abs(b_eq))) if b_eq.size else 1.0)
        import highspy

        highs = highspy.Highs()
        highs.setOptionValue("output_flag", False)
        # Presolve would rebuild the model on every objective change and lose the warm start.
        highs.setOptionValue("presolve", "off")
        n = len(group)
        lp = highspy.HighsLp()
        lp.num_col_ = n
        lp.num_row_ = len(rows)
        lp.col_cost_ = np.zeros(n)
        # HiGHS's infinity is IEEE infinity (highspy.kHighsInf == inf), so infinite bounds scale as they are.
        lp.col_lower_ = lower / scale
        lp.col_upper_ = upper / scale
        lp.row_lower_ = b_eq / scale
        lp.row_upper_ = b_eq / scale
        # Row-wise sparse matrix: one equation per row.
        starts = [0]
        index: list[int] = []
        value: list[float] = []
        for row in rows:
            for j, coef in row:
                if coef != 0.0:
                    index.append(j)
                    value.append(coef)
            starts.append(len(index))
        lp.a_matrix_.format_ = highspy.MatrixFormat.kRowwise
        lp.a_matrix_.start_ = np.asarray(starts, dtype=np.int32)
        lp.a_matrix_.index_ = np.asarray(index, dtype=np.int32)
        lp.a_matrix_.value_ = np.asarray(value, dtype=float)
        lp.a_matrix_.num_col_ = n
        lp.a_matrix_.num_row_ = len(rows)
        highs.passModel(lp)
        return cls(position, bounds, scale, highs)

    def prior(self, j: int, known: Interval | None) -> Interval:
        """A cell in no equation: only its prior bounds (and what an insider knows) limit it."""
        lo, hi = self.bounds[j]
        if known is not None:
            lo, hi = max(lo, known[0]), min(hi, known[1])
        return (lo, hi)

    def set_knowledge(self, knowledge: Mapping[int, Interval]) -> None:
        """Tighten the bounds of the cells an insider knows (an empty mapping restores the priors)."""
        import highspy

        inf = highspy.kHighsInf
        for j in self._changed:
            lo, hi = self.bounds[j]
            self.highs.changeColBounds(
                j, -inf if np.isneginf(lo) else lo / self.scale, inf if np.isposinf(hi) else hi / self.scale
            )
        self._changed = []
        for cell, (k_lo, k_hi) in knowledge.items():
            j = self.position[cell]
            lo, hi = self.bounds[j]
            lo, hi = max(lo, k_lo), min(hi, k_hi)
            self.highs.changeColBounds(
                j, -inf if np.isneginf(lo) else lo / self.scale, inf if np.isposinf(hi) else hi / self.scale
            )
            self._changed.append(j)

    def feasible_point(self) -> np.ndarray | None:
        """Any table the attacker cannot rule out (a vertex of the LP), or None if there is none."""
        import highspy

        if self.highs is None:
            return None
        if self._cost_at is not None:
            self.highs.changeColCost(self._cost_at, 0.0)
            self._cost_at = None
        self.highs.run()
        if self.highs.getModelStatus() != highspy.HighsModelStatus.kOptimal:
            return None
        return np.asarray(self.highs.getSolution().col_value) * self.scale

    def optimise(self, j: int, sign: float) -> tuple[float, np.ndarray | None]:
        """Minimise (sign 1) or maximise (sign -1) cell ``j``: its end of the interval and the optimum."""
        import highspy

        if self._cost_at is not None and self._cost_at != j:
            self.highs.changeColCost(self._cost_at, 0.0)
        self.highs.changeColCost(j, sign)
        self._cost_at = j
        self.highs.run()
        status = self.highs.getModelStatus()
        settled = (
            highspy.HighsModelStatus.kOptimal,
            highspy.HighsModelStatus.kUnbounded,
            highspy.HighsModelStatus.kInfeasible,
            highspy.HighsModelStatus.kUnboundedOrInfeasible,
        )
        if status not in settled:
            # A warm start can end undecided (e.g. on an unbounded ray); solve this one from scratch.
            self.highs.clearSolver()
            self.highs.run()
            status = self.highs.getModelStatus()
        if status == highspy.HighsModelStatus.kUnboundedOrInfeasible:
            # Tell the two apart: is there any feasible point at all?
            self.highs.changeColCost(j, 0.0)
            self.highs.run()
            feasible = self.highs.getModelStatus() == highspy.HighsModelStatus.kOptimal
            self.highs.changeColCost(j, sign)
            status = highspy.HighsModelStatus.kUnbounded if feasible else highspy.HighsModelStatus.kInfeasible
        if status == highspy.HighsModelStatus.kInfeasible:
            raise AuditError(
                "the published margins do not add up to the published cells, so the table is "
                "inconsistent; rebuild it from the data before auditing"
            )
        if status == highspy.HighsModelStatus.kUnbounded:
            return (-np.inf if sign > 0 else np.inf), None
        if status != highspy.HighsModelStatus.kOptimal:
            name = self.highs.modelStatusToString(status)
            raise AuditError(f"the attacker LP did not solve ({name}); report this as a bug")
        point = np.asarray(self.highs.getSolution().col_value) * self.scale
        return float(point[j]), point


def _network_arcs(structure: TableStructure) -> list[tuple[int, int]] | None:
    """Each cell's arc (tail, head) if the table is a 2-D table with both margins, else None.

    Nodes: 0 the grand total's source, 1 its sink, then one per row, then one per column.
    """
    rows, cols = structure.row_keys, structure.col_keys
    if not rows or not cols or any(len(k) != 1 for k in (*rows, *cols)):
        return None
    margin = structure.margin_name
    if (margin,) not in rows or (margin,) not in cols:
        return None
    row_node = {k: 2 + i for i, k in enumerate(r for r in rows if r[0] != margin)}
    col_node = {k: 2 + len(row_node) + j for j, k in enumerate(c for c in cols if c[0] != margin)}
    arcs = []
    for r, c in structure.cells:
        if r[0] != margin and c[0] != margin:
            arcs.append((row_node[r], col_node[c]))
        elif r[0] != margin:
            arcs.append((0, row_node[r]))
        elif c[0] != margin:
            arcs.append((col_node[c], 1))
        else:
            arcs.append((1, 0))
    return arcs


def _feasible(auditor: Auditor, group: list[int], values: np.ndarray) -> bool:
    """Whether giving the group's cells ``values`` makes every equation they take part in add up."""
    x = auditor.values.copy()
    x[group] = values
    structure = auditor.structure
    equations = {e for cell in group for e in structure.equations_of(cell)}
    for e in equations:
        total, parts = structure.equations[e]
        if not math.isclose(x[total], float(np.sum(x[parts])), rel_tol=1e-9, abs_tol=1e-6):
            return False
    return True


#: Most numbers held at once while summing 4-cycles (a dense block of ``back`` rows); 2M floats = 16 MB.
_CYCLE_CHUNK = 2_000_000


def _four_cycle_sums(
    n_nodes: int, tails: np.ndarray, heads: np.ndarray, f: np.ndarray, a: np.ndarray, b: np.ndarray
) -> np.ndarray:
    """For each asked arc ``a[i] -> b[i]``: the sum of ``f(y -> x)`` over arcs ``y -> x`` with arcs ``a -> x``
    and ``y -> b`` (the 4-cycles through it, including the degenerate ones through its own arc).

    The sum depends only on the set of nodes ``a`` reaches and the set of nodes reaching ``b``, so it is
    computed once per distinct pair of those sets, from a few rows of ``back = G^T F`` at a time (G the arcs,
    F their values). Forming ``back`` whole, as ``(F^T G)^T``, takes memory quadratic in the nodes: a hub
    (the grand total reaches every row) makes it dense, 23 GB for a 20,000 x 2 table.
    """
    from scipy.sparse import csr_array

    shape = (n_nodes, n_nodes)
    grow = csr_array((np.ones_like(f), (tails, heads)), shape=shape)
    grow.sort_indices()
    into = grow.T.tocsr()
    into.sort_indices()
    weights = csr_array((f, (tails, heads)), shape=shape)

    def set_ids(m: Any, nodes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per node, the id of its neighbour set (equal sets, equal ids), and one node per id."""
        ids: dict[bytes, int] = {}
        reps: list[int] = []
        per_node = np.empty(nodes.size, dtype=np.int64)
        for i, node in enumerate(nodes.tolist()):
            key = m.indices[m.indptr[node] : m.indptr[node + 1]].tobytes()
            k = ids.setdefault(key, len(ids))
            if k == len(reps):
                reps.append(node)
            per_node[i] = k
        return per_node, np.asarray(reps, dtype=np.int64)

    out_id, out_reps = set_ids(grow, a)
    in_id, in_reps = set_ids(into, b)
    pairs, pair_of = np.unique(np.stack([in_id, out_id], axis=1), axis=0, return_inverse=True)
    pair_of = pair_of.reshape(-1)
    sums = np.zeros(len(pairs), dtype=np.float64)
    rows_per_chunk = max(1, _CYCLE_CHUNK // max(1, n_nodes))
    for start in range(0, len(in_reps), rows_per_chunk):
        chunk = np.arange(start, min(start + rows_per_chunk, len(in_reps)))
        back = (into[in_reps[chunk]] @ weights).toarray()  # back[b, x] for these in-sets only
        picked = np.flatnonzero((pairs[:, 0] >= chunk[0]) & (pairs[:, 0] <= chunk[-1]))
        for p in picked.tolist():
            node = int(out_reps[pairs[p, 1]])
            reach = grow.indices[grow.indptr[node] : grow.indptr[node + 1]]
            sums[p] = float(back[pairs[p, 0] - start, reach].sum())
    return np.rint(sums[pair_of]).astype(np.int64)


def _three_path_flow(
    n_nodes: int, tails: np.ndarray, heads: np.ndarray, f: np.ndarray, a: np.ndarray, b: np.ndarray
) -> np.ndarray:
    """A flow from ``b[i]`` back to ``a[i]`` that the network surely allows, for each asked arc ``a -> b``.

    Paths ``b <- y <- z -> a``: shrink a cell ``y -> b`` (``y != a``), shrink cells ``z -> y`` and grow a cell
    ``z -> a`` (unlimited). Paths through different ``y`` use different arcs, so their flows add up, each
    at most ``min(f(y -> b), sum of f(z -> y) over the z that reach a)``. Called on the reversed arcs it
    gives the paths ``b -> x <- w <- a``. Computed once per distinct (``b``, set of nodes into ``a``), with
    memory linear in the arcs.
    """
    from scipy.sparse import csr_array

    shape = (n_nodes, n_nodes)
    weights = csr_array((f.astype(np.float64), (tails, heads)), shape=shape)
    into = weights.T.tocsr()  # into[y, z] = f(z -> y)
    into.sort_indices()
    sets: dict[bytes, int] = {}
    set_rep: list[int] = []
    keys: dict[tuple[int, int], int] = {}
    first: list[tuple[int, int]] = []
    pair_of = np.empty(a.size, dtype=np.int64)
    for i, (node_a, node_b) in enumerate(zip(a.tolist(), b.tolist(), strict=True)):
        s = sets.setdefault(into.indices[into.indptr[node_a] : into.indptr[node_a + 1]].tobytes(), len(sets))
        if s == len(set_rep):
            set_rep.append(node_a)
        k = keys.setdefault((node_b, s), len(keys))
        if k == len(first):
            first.append((node_b, s))
        pair_of[i] = k
    sums = np.zeros(len(first))
    by_set: dict[int, list[int]] = {}
    for k, (_node_b, s) in enumerate(first):
        by_set.setdefault(s, []).append(k)
    mask = np.zeros(n_nodes)
    for s, ks in by_set.items():
        reach_a = into.indices[into.indptr[set_rep[s]] : into.indptr[set_rep[s] + 1]]
        mask[reach_a] = 1.0
        feeding = into @ mask  # per y: the values of cells z -> y whose z also reaches a
        mask[reach_a] = 0.0
        for k in ks:
            node_b = first[k][0]
            span = slice(into.indptr[node_b], into.indptr[node_b + 1])
            sums[k] = float(np.minimum(into.data[span], feeding[into.indices[span]]).sum())
    # The asked cell's own y (= a) is excluded: its term min(f(a -> b), value into a from z that reach a).
    own = np.asarray(weights[a, b]).reshape(-1)
    entering = np.bincount(heads, weights=f, minlength=n_nodes)
    return sums[pair_of] - np.minimum(own, entering[a])


@dataclass(frozen=True)
class _Block:
    """One biconnected block of a flow network, numbered locally, as a CSR template for batched copies.

    Local arc ``j < n`` grows the block's cell ``j`` (capacity unlimited) and ``n + j`` shrinks it (capacity
    the cell's value). The arcs are stored sorted by (tail, head) so that copies of the block can be laid
    side by side straight into a sorted CSR matrix, without a COO conversion per batch.
    """

    nodes: dict[int, int]
    position: dict[int, int]
    src: np.ndarray  #: sorted tails
    dst: np.ndarray  #: sorted heads
    cap: np.ndarray  #: sorted capacities
    slot: np.ndarray  #: local arc j -> its place in the sorted arrays
    out_degree: np.ndarray  #: arcs leaving each local node
    rank: np.ndarray  #: place of each sorted arc among its tail's arcs

    @classmethod
    def build(
        cls, nodes: dict[int, int], ks: list[int], tails: list[int], heads: list[int], caps: list[int]
    ) -> _Block:
        """The block of the group's cells ``ks``, cell j's arc ``tails[j] -> heads[j]`` in local nodes;
        ``caps`` lists the growth arcs' capacities, then the shrink arcs'."""
        src = np.asarray(tails + heads, dtype=np.int32)
        dst = np.asarray(heads + tails, dtype=np.int32)
        cap = np.asarray(caps, dtype=np.int32)
        order = np.lexsort((dst, src))
        slot = np.empty_like(order)
        slot[order] = np.arange(order.size)
        out_degree = np.bincount(src, minlength=len(nodes))
        first = np.concatenate(([0], np.cumsum(out_degree)[:-1]))
        return cls(
            nodes=nodes,
            position={k: j for j, k in enumerate(ks)},
            src=src[order],
            dst=dst[order],
            cap=cap[order],
            slot=slot,
            out_degree=out_degree,
            rank=np.arange(order.size) - first[src[order]],
        )


def edge_blocks(n_nodes: int, edges: list[tuple[int, int]]) -> list[int]:
    """Biconnected component (block) of each edge of an undirected graph (Hopcroft-Tarjan, iterative).

    Two edges share a block exactly when some simple cycle passes through both; an edge on no cycle (a
    bridge) is a block of its own. Written here because scipy's csgraph has no biconnected components and
    the audit needs nothing else from a graph library.
    """
    adjacent: list[list[tuple[int, int]]] = [[] for _ in range(n_nodes)]
    for k, (a, b) in enumerate(edges):
        adjacent[a].append((b, k))
        adjacent[b].append((a, k))
    found = [-1] * n_nodes
    low = [0] * n_nodes
    block = [-1] * len(edges)
    clock = blocks = 0
    for root in range(n_nodes):
        if found[root] != -1 or not adjacent[root]:
            continue
        found[root] = low[root] = clock
        clock += 1
        stack: list[tuple[int, int, Iterator[tuple[int, int]]]] = [(root, -1, iter(adjacent[root]))]
        edge_stack: list[int] = []
        while stack:
            v, via, neighbours = stack[-1]
            descended = False
            for w, k in neighbours:
                if k == via:
                    continue
                if found[w] == -1:
                    edge_stack.append(k)
                    found[w] = low[w] = clock
                    clock += 1
                    stack.append((w, k, iter(adjacent[w])))
                    descended = True
                    break
                if found[w] < found[v]:  # a back edge, taken once from its lower end
                    edge_stack.append(k)
                    low[v] = min(low[v], found[w])
            if descended:
                continue
            stack.pop()
            if stack:
                u = stack[-1][0]
                low[u] = min(low[u], low[v])
                if low[v] >= found[u]:
                    while True:
                        k = edge_stack.pop()
                        block[k] = blocks
                        if k == via:
                            break
                    blocks += 1
    return block


class _FlowGroup:
    """Exact attacker intervals of one group of a 2-D count table by maximum flow (module docstring).

    The residual network of the group's suppressed cells: each cell ``a -> b`` holding ``f`` gives an arc
    ``a -> b`` of unlimited capacity (it may grow) and ``b -> a`` of capacity ``f`` (it may shrink to zero).
    Each question "how far can this cell grow (or shrink)?" is a maximum flow in that network without the
    cell's own two arcs.

    Most questions are settled without a flow (see :meth:`_bounds`): a cell's shrink is at most its value, so
    flows along the network's 4-cycles that already carry that much prove it can fall to zero; its growth is
    at most the capacity around either end of its arc, and a flow is solved with exactly that cap, which
    Dinic's algorithm reaches in few phases. The questions left are batched: one copy of the cell's block
    per question side by side, a super-source feeding each copy's start through an arc of the question's cap
    and each copy's end draining to a super-sink, so the maximum flow of the whole is the sum of the copies'
    and each copy's share, read on its source arc, is its own answer. One call per batch instead of per
    question removes the per-call overhead of ``maximum_flow``.
    """

    #: Most arcs in one batched network (bounds the memory of one call; 0.2M to 1M measured alike).
    BATCH_ARCS = 1_000_000
    #: Most arc visits the exact flows of one call may take (questions x arcs). Beyond it, each end left
    #: open is reported at its guaranteed bound: an interval the attacker surely cannot narrow further
    #: (inside the exact one), so protection judged on it is never overstated, only sometimes understated.
    FLOW_WORK = 50_000_000

    def __init__(
        self, cells: list[int], arcs: list[tuple[int, int]], values: list[int], n_nodes: int, big: int
    ) -> None:
        self.cells = cells
        self.arcs = arcs
        self.values = values
        self.n_nodes = n_nodes
        self.big = big
        self.solves = 0
        self.settled = 0
        self.inner = 0
        self._blocks: list[_Block] = []
        self._block_of: list[int] = []

    def _split(self) -> None:
        """Cut the network into its blocks (biconnected components). Every cycle, so every flow that can
        move a cell, stays inside the cell's block, so each question needs only that block."""
        block_of = edge_blocks(self.n_nodes, self.arcs)
        members: dict[int, list[int]] = {}
        for k, b in enumerate(block_of):
            members.setdefault(b, []).append(k)
        blocks: dict[int, _Block] = {}
        for b, ks in members.items():
            nodes: dict[int, int] = {}
            tails = [nodes.setdefault(self.arcs[k][0], len(nodes)) for k in ks]
            heads = [nodes.setdefault(self.arcs[k][1], len(nodes)) for k in ks]
            blocks[b] = _Block.build(
                nodes, ks, tails, heads, [self.big] * len(ks) + [self.values[k] for k in ks]
            )
        self._blocks = [blocks[b] for b in range(len(blocks))]
        self._block_of = block_of

    @classmethod
    def build(cls, auditor: Auditor, group: list[int], suppressed: np.ndarray) -> _FlowGroup | None:
        """The group's network, or None when the flow model does not apply (the LP is used instead).

        The flows move the group away from one feasible table: the true values when the auditor has them
        (``protect_table``), else a vertex of the attacker's LP (``attacker_intervals`` on a published
        table, whose suppressed cells are unknown), which is whole-numbered for a 2-D table.
        """
        arcs_of = auditor._arcs
        if arcs_of is None:
            return None
        if np.any(auditor.lower[group] != 0.0) or not np.all(np.isposinf(auditor.upper[group])):
            return None
        values = auditor.values[group]
        if not _feasible(auditor, group, values):
            point = _GroupLP.build(auditor, group, suppressed).feasible_point()
            if point is None:
                return None
            values = np.round(point)
            if not _feasible(auditor, group, values):
                return None
        if np.any(values < 0) or np.any(values != np.round(values)):
            return None
        big = int(values.sum()) + 1
        if big >= 2**24:
            return None  # batched flows must stay within int32
        nodes: dict[int, int] = {}
        arcs = []
        for cell in group:
            a, b = arcs_of[cell]
            arcs.append((nodes.setdefault(a, len(nodes)), nodes.setdefault(b, len(nodes))))
        distinct = set(arcs)
        if len(distinct) != len(arcs) or any((b, a) in distinct for a, b in arcs):
            return None  # two cells on the same pair of nodes: not this table's network
        return cls(group, arcs, [int(v) for v in values], len(nodes), big)

    def _bounds(self, ks: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """For the cells at positions ``ks``: a shrink the network surely allows, a growth it cannot exceed,
        and a growth it surely allows.

        Shrink: for a cell ``a -> b``, every other cell ``y -> x`` with cells ``a -> x`` and ``y -> b`` closes
        a 4-cycle ``a -> x -> y -> b`` through which ``f(y -> x)`` can flow; these paths share only arcs of
        unlimited capacity, so their sum is a feasible flow (a lower bound on the maximum flow).

        Growth: the flow from ``b`` back to ``a`` cannot exceed what can leave ``b`` (unlimited if a cell
        starts at ``b``, else the values of the other cells ending at ``b``) nor what can reach ``a``. It is
        at least the flow along the 3-paths of :func:`_three_path_flow` (both orientations); when that
        reaches the upper bound, no maximum flow needs solving (a 2-D table's cells almost always).
        """
        tails = np.asarray([a for a, _ in self.arcs], dtype=np.int64)
        heads = np.asarray([b for _, b in self.arcs], dtype=np.int64)
        f = np.asarray(self.values, dtype=np.int64)
        a, b, own = tails[ks], heads[ks], f[ks]
        around = _four_cycle_sums(self.n_nodes, tails, heads, f, a, b)
        leaving = np.bincount(tails, weights=f, minlength=self.n_nodes).astype(np.int64)
        entering = np.bincount(heads, weights=f, minlength=self.n_nodes).astype(np.int64)
        # Paths through the cell's own arcs (x = b or y = a) are not allowed.
        shrink_at_least = around - leaving[a] - entering[b] + own
        starts = np.bincount(tails, minlength=self.n_nodes)
        ends = np.bincount(heads, minlength=self.n_nodes)
        out_of_b = np.where(starts[b] > 0, np.inf, entering[b] - own)
        into_a = np.where(ends[a] > 0, np.inf, leaving[a] - own)
        grow_at_least = np.maximum(
            _three_path_flow(self.n_nodes, tails, heads, f, a, b),
            _three_path_flow(self.n_nodes, heads, tails, f, b, a),
        )
        return shrink_at_least, np.minimum(out_of_b, into_a), grow_at_least

    def _flows(self, questions: list[tuple[int, int, int, int]]) -> list[int]:
        """Maximum flow, at most ``cap``, for each (cell position, start node, end node, cap), without that
        cell's own arcs."""
        if not questions:
            return []  # every end settled by the bounds: the blocks are not even needed
        if not self._blocks:
            self._split()
        # Copies of one block side by side tile into one batch (questions from one start kept together).
        order = sorted(
            range(len(questions)), key=lambda i: (self._block_of[questions[i][0]], *questions[i][1:3])
        )
        answers = [0] * len(questions)
        batch: list[int] = []
        arcs = total = 0
        for i in order:
            k, _start, _end, cap = questions[i]
            size = self._blocks[self._block_of[k]].src.size
            # The batch's total flow must fit in int32, scipy's capacity type.
            if batch and (arcs + size > self.BATCH_ARCS or total + cap >= 2**31 - 1):
                self._solve_batch([questions[j] for j in batch], batch, answers)
                batch, arcs, total = [], 0, 0
            batch.append(i)
            arcs += size
            total += cap
        if batch:
            self._solve_batch([questions[j] for j in batch], batch, answers)
        return answers

    def _solve_batch(
        self, questions: list[tuple[int, int, int, int]], where: list[int], answers: list[int]
    ) -> None:
        from scipy.sparse import csr_array
        from scipy.sparse.csgraph import maximum_flow

        # Runs of questions on the same block become one tiled segment.
        segments: list[tuple[_Block, list[tuple[int, int, int, int]]]] = []
        for question in questions:
            block = self._blocks[self._block_of[question[0]]]
            if segments and segments[-1][0] is block:
                segments[-1][1].append(question)
            else:
                segments.append((block, [question]))
        degree, rows, rank, heads, caps, starts, ends, limits = [], [], [], [], [], [], [], []
        base = 0
        for block, asked in segments:
            q, width, m = len(asked), len(block.nodes), block.src.size
            offsets = base + width * np.arange(q)
            local_end = np.asarray([block.nodes[e] for _k, _s, e, _c in asked])
            count = np.tile(block.out_degree, q)
            count[offsets - base + local_end] += 1  # each copy's end also drains to the sink
            degree.append(count)
            shift = np.repeat(offsets, m)
            rows.append(np.tile(block.src, q) + shift)
            rank.append(np.tile(block.rank, q))
            heads.append(np.tile(block.dst, q) + shift)
            cap = np.tile(block.cap, q)
            own = np.asarray([block.position[k] for k, _s, _e, _c in asked])
            cap[m * np.arange(q) + block.slot[own]] = 0  # the cell itself is the one being moved
            cap[m * np.arange(q) + block.slot[own + m // 2]] = 0
            caps.append(cap)
            starts.append(offsets + np.asarray([block.nodes[s] for _k, s, _e, _c in asked]))
            ends.append(offsets + local_end)
            limits.append(np.asarray([c for _k, _s, _e, c in asked]))
            base += width * q
        source, sink = base, base + 1
        first = np.concatenate(starts)
        indptr = np.zeros(base + 3, dtype=np.int32)
        np.cumsum(np.concatenate([*degree, [first.size, 0]]), out=indptr[1:])
        indices = np.empty(int(indptr[-1]), dtype=np.int32)
        data = np.empty(int(indptr[-1]), dtype=np.int32)
        # Straight into sorted CSR: each copy's arcs keep the block's order; the sink (the highest column)
        # comes last in its end's row, and the source row (the last with arcs) lists the copies' starts.
        at = indptr[np.concatenate(rows)] + np.concatenate(rank)
        indices[at] = np.concatenate(heads)
        data[at] = np.concatenate(caps)
        last = indptr[np.concatenate(ends) + 1] - 1
        indices[last] = sink
        data[last] = self.big
        indices[indptr[source] :] = first
        data[indptr[source] :] = np.concatenate(limits)
        graph = csr_array((data, indices, indptr), shape=(base + 2, base + 2))
        graph.has_sorted_indices = True
        self.solves += 1
        flow = maximum_flow(graph, source, sink).flow
        lo, hi = flow.indptr[source], flow.indptr[source + 1]
        sent = np.zeros(base + 2, dtype=np.int64)
        sent[flow.indices[lo:hi]] = flow.data[lo:hi]
        for i, value in zip(where, sent[first].tolist(), strict=True):
            answers[i] = value

    def intervals(self, targets: list[int]) -> dict[int, Interval]:
        index = {cell: k for k, cell in enumerate(self.cells)}
        ks = [index[cell] for cell in targets]
        shrink_at_least, grow_at_most, grow_at_least = self._bounds(np.asarray(ks, dtype=np.int64))
        # Each cell's shrink and growth, settled by the bounds unless a flow is asked for below.
        shrink = np.minimum(np.asarray(self.values, dtype=float)[ks], shrink_at_least)
        grow = np.zeros(len(ks))
        questions: list[tuple[int, int, int, int]] = []
        asks: list[tuple[np.ndarray, int]] = []
        for i, k in enumerate(ks):
            a, b = self.arcs[k]
            f = self.values[k]
            if shrink_at_least[i] < f:  # not settled by the 4-cycles: from a to b, at most the cell itself
                questions.append((k, a, b, f))
                asks.append((shrink, i))
            if grow_at_most[i] > 0 and grow_at_least[i] >= grow_at_most[i]:
                grow[i] = grow_at_most[i]  # the 3-paths already carry all the cut allows
            elif grow_at_most[i] > 0:  # send flow back from b to a, at most the cut around b or a
                questions.append((k, b, a, int(min(grow_at_most[i], self.big))))
                asks.append((grow, i))
        self.settled += 2 * len(ks) - len(questions)
        if len(questions) * len(self.arcs) > self.FLOW_WORK:
            # Exact flows would cost questions x arcs (quadratic in a large table): keep the bounds that
            # are surely reachable, so every width is at most the attacker's true one.
            sure = {id(shrink): np.maximum(shrink_at_least, 0.0), id(grow): np.maximum(grow_at_least, 0.0)}
            for answer, i in asks:
                answer[i] = min(
                    float(sure[id(answer)][i]), float(self.values[ks[i]]) if answer is shrink else math.inf
                )
            self.inner += len(questions)
            questions, asks = [], []
        flows = self._flows(questions)
        for (answer, i), (_k, _s, _e, cap), value in zip(asks, questions, flows, strict=True):
            # A flow that fills an uncapped source arc found a path of unlimited capacity.
            answer[i] = math.inf if value >= self.big and cap >= self.big else float(value)
        return {
            cell: (float(self.values[k]) - float(shrink[i]), float(self.values[k]) + float(grow[i]))
            for i, (cell, k) in enumerate(zip(targets, ks, strict=True))
        }


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
