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
``scipy.sparse.csgraph.maximum_flow``, exact in integers and much faster than two LPs per cell; every other
table (magnitudes, insiders, hierarchies, 1-D) uses the LP.

Counts are solved as a continuous LP and the bounds rounded inwards to integers. For 1-D and 2-D tables the
constraint matrix is totally unimodular, so these are exactly the bounds an integer-aware attacker gets; for
deeper hierarchies an integer programme could be slightly tighter (documented limitation).
"""

from __future__ import annotations

import math
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
        self._arcs = _network_arcs(structure) if integer else None

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
        key = frozenset(group)
        if not knowledge and self._arcs is not None:
            network = _FlowGroup.build(self, group, suppressed)
            if network is not None:
                found = network.intervals(targets)
                self.flow_solves += network.solves
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
        bounds = [(float(auditor.lower[c]), float(auditor.upper[c])) for c in group]
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
        inf = highspy.kHighsInf
        n = len(group)
        lp = highspy.HighsLp()
        lp.num_col_ = n
        lp.num_row_ = len(rows)
        lp.col_cost_ = np.zeros(n)
        lp.col_lower_ = np.array([-inf if np.isneginf(lo) else lo / scale for lo, _ in bounds])
        lp.col_upper_ = np.array([inf if np.isposinf(hi) else hi / scale for _, hi in bounds])
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


@dataclass(frozen=True)
class _Block:
    """One biconnected block of a flow network, numbered locally; arc j < n grows cell j, n + j shrinks it."""

    nodes: dict[int, int]
    position: dict[int, int]
    src: np.ndarray
    dst: np.ndarray
    cap: np.ndarray


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
    cell's own two arcs. Many questions are answered by one call: a batch puts one copy of the network per
    question side by side, a super-source feeds each copy's start through an arc of capacity ``big`` and
    each copy's end drains to a super-sink, so the maximum flow of the whole is the sum of the copies' and
    each copy's share, read on its source arc, is its own answer (``big`` meaning "unbounded"). One call
    per batch instead of per question removes the per-call overhead of ``maximum_flow``.
    """

    #: Most arcs in one batched network.
    BATCH_ARCS = 2_000_000

    def __init__(
        self, cells: list[int], arcs: list[tuple[int, int]], values: list[int], n_nodes: int, big: int
    ) -> None:
        self.cells = cells
        self.arcs = arcs
        self.values = values
        self.n_nodes = n_nodes
        self.big = big
        self.solves = 0
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
            blocks[b] = _Block(
                nodes=nodes,
                position={k: j for j, k in enumerate(ks)},
                src=np.asarray(tails + heads, dtype=np.int64),
                dst=np.asarray(heads + tails, dtype=np.int64),
                cap=np.asarray([self.big] * len(ks) + [self.values[k] for k in ks], dtype=np.int64),
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
        if len(set(arcs)) != len(arcs) or any((b, a) in set(arcs) for a, b in arcs):
            return None  # two cells on the same pair of nodes: not this table's network
        return cls(group, arcs, [int(v) for v in values], len(nodes), big)

    def _flows(self, questions: list[tuple[int, int, int]]) -> list[float]:
        """Maximum flow for each (cell position, start node, end node), without that cell's own arcs."""
        if not self._blocks:
            self._split()
        per_batch = max(1, (2**31 - 1) // self.big - 1)  # the batch's total flow must fit in int32
        out: list[float] = []
        pending: list[tuple[np.ndarray, np.ndarray, np.ndarray, int, int]] = []
        arcs = nodes = 0
        for k, start, end in questions:
            block = self._blocks[self._block_of[k]]
            cap = block.cap.copy()
            j = block.position[k]
            cap[j] = cap[j + len(cap) // 2] = 0  # the cell itself is the one being moved
            keep = cap > 0
            pending.append(
                (
                    block.src[keep] + nodes,
                    block.dst[keep] + nodes,
                    cap[keep],
                    nodes + block.nodes[start],
                    nodes + block.nodes[end],
                )
            )
            arcs += int(keep.sum())
            nodes += len(block.nodes)
            if arcs >= self.BATCH_ARCS or len(pending) >= per_batch:
                out.extend(self._solve_batch(pending, nodes))
                pending, arcs, nodes = [], 0, 0
        if pending:
            out.extend(self._solve_batch(pending, nodes))
        return out

    def _solve_batch(
        self, pending: list[tuple[np.ndarray, np.ndarray, np.ndarray, int, int]], nodes: int
    ) -> list[float]:
        from scipy.sparse import csr_array
        from scipy.sparse.csgraph import maximum_flow

        source, sink = nodes, nodes + 1
        starts = [p[3] for p in pending]
        ends = [p[4] for p in pending]
        q = len(pending)
        rows = np.concatenate([*(p[0] for p in pending), np.full(q, source), np.asarray(ends)])
        cols = np.concatenate([*(p[1] for p in pending), np.asarray(starts), np.full(q, sink)])
        data = np.concatenate([*(p[2] for p in pending), np.full(2 * q, self.big)]).astype(np.int32)
        graph = csr_array((data, (rows, cols)), shape=(nodes + 2, nodes + 2))
        self.solves += 1
        flow = maximum_flow(graph, source, sink).flow.tocsr()
        lo, hi = flow.indptr[source], flow.indptr[source + 1]
        sent = dict(zip(flow.indices[lo:hi].tolist(), flow.data[lo:hi].tolist(), strict=True))
        return [math.inf if (v := sent.get(s, 0)) >= self.big else float(v) for s in starts]

    def intervals(self, targets: list[int]) -> dict[int, Interval]:
        index = {cell: k for k, cell in enumerate(self.cells)}
        questions: list[tuple[int, int, int]] = []
        for cell in targets:
            k = index[cell]
            a, b = self.arcs[k]
            questions.append((k, b, a))  # grow: send flow back from b to a
            if self.values[k] > 0:
                questions.append((k, a, b))  # shrink: from a to b, at most the cell itself
        answers = iter(self._flows(questions))
        out: dict[int, Interval] = {}
        for cell in targets:
            k = index[cell]
            f = float(self.values[k])
            grow = next(answers)
            shrink = min(f, next(answers)) if self.values[k] > 0 else 0.0
            out[cell] = (f - shrink, f + grow)
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
