"""Differencing: does a new table, combined with tables already released, recover a small cell?

Every released table is kept in a :class:`ReleaseLedger` as a :class:`ReleasedTable`: its dimension
variables, the published value of every cell (margins included; suppressed cells as ``None``), the scope
(project and dataset), how its categories group finer ones (``categories``) and which subpopulation it
covers (``filters``). :func:`check_differencing` builds one system of linear equations relating the finest
cells the releases can tell apart to every published cell of the new table and of the past tables of the
same dataset, then solves, for each such fine cell, the attacker's LP (``scipy.optimize.linprog`` with
HiGHS, as :mod:`tre_lib.disclosure.audit`) for its smallest and largest value. A fine cell is a finding
when its interval is narrower than the protection level and lies below the threshold without being 0, and
when the past releases alone did not already pin it (so the finding is caused by the new table).

What is detected (count tables):

* **Nested or overlapping category groupings** on a dimension, declared with ``categories``: e.g. an age
  band ``"16-64"`` mapped to ages 16..64 in one table and ``"16-65"`` mapped to 16..65 in another; the
  difference reveals the 65-year-olds, cell by cell of every other dimension. Any pattern of groupings
  works (unions, overlaps, several releases): the finest cells are the blocks of base categories that no
  published category splits.
* **Subpopulations declared as filters**: a table restricted to ``age in 16..64`` versus one over
  ``16..65``, or a table before and after excluding a group (``CategoryFilter("care_home", ("yes",),
  exclude=True)``); the filtered variable need not be a dimension of either table.
* **Tables over different dimensions of the same dataset** (they share the population, so their margins
  are equations on the same fine cells), suppressed cells of either table, hierarchical subtotals, and
  several past releases at once.
* **Rounded releases**: a value published with controlled rounding (or rounding to nearest) is an interval
  constraint, not an equation.

What is not detected (document it to output checkers):

* Relations the caller does not declare. Labels are compared literally: ``"16-64"`` and ``"16 to 64"`` are
  unrelated unless ``categories`` maps both to base categories; a filter written only in the analysis code
  and not recorded here is invisible, and a table without filters is taken to cover the whole dataset.
* Tables of different datasets (different populations), even in the same project: they share no cells.
  Re-releases after the dataset changed must use a new dataset identifier (e.g. a version suffix).
* Magnitude tables (sums, means, ...): differencing is checked on count tables; a new magnitude table gives
  a ``not_checked`` finding so that a checker looks at it (or checks its matching count table).
* Combinations with outputs that are not tables in the ledger (regression coefficients, figures, free
  text), and an attacker's outside knowledge other than the non-negativity of counts.
* Cells are not combined by unit identifiers: as elsewhere in this module a contributor is a record.

Example:
    >>> import pandas as pd
    >>> from tre_lib.disclosure import protect_table
    >>> ledger = InMemoryReleaseLedger()
    >>> scope = ReleaseScope(project="p1", dataset="census-2021")
    >>> people = pd.DataFrame({"sex": ["f"] * 40 + ["m"] * 40, "age": [30] * 78 + [65, 65]})
    >>> before = protect_table(people[people.age < 65], "sex", None)
    >>> ledger.record(ReleasedTable.from_protected(before, scope, filters=[CategoryFilter("age", (30,))]))
    >>> after = protect_table(people, "sex", None)
    >>> [f.cell for f in check_differencing(after, ledger, scope, filters=[CategoryFilter("age", (30, 65))])]
    [{'age': (65,), 'sex': ('m',)}]
"""

from __future__ import annotations

import datetime as dt
import json
import math
import uuid
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

import numpy as np
from scipy.optimize import linprog
from scipy.sparse import csr_matrix

from tre_lib.disclosure.errors import DisclosureError
from tre_lib.disclosure.rules import Rules
from tre_lib.disclosure.structure import MARGIN, as_key
from tre_lib.disclosure.table import ProtectedTable

Label = Hashable
# What callers pass: per dimension, label -> the base categories it groups (any iterable, e.g. a range).
CategoryMap = Mapping[str, Mapping[Any, Iterable[Any]]]
# Base categories not mentioned by any release (the rest of a variable's domain) share this block.
OTHER = "<any other>"
# Above this many fine cells the LP is not attempted; the check reports ``not_checked`` instead.
MAX_FINE_CELLS = 200_000


class DifferencingError(DisclosureError):
    """A release record is malformed or conflicts with the ledger (e.g. a duplicate release id)."""


@dataclass(frozen=True)
class ReleaseScope:
    """Whose and which data a release comes from.

    Attributes:
        project: the project that released it.
        dataset: the dataset (population) the table counts; versioned if the data can change.
    """

    project: str
    dataset: str


@dataclass(frozen=True)
class CategoryFilter:
    """A subpopulation a table was restricted to.

    Attributes:
        variable: the variable filtered on (need not be a dimension of the table).
        values: base categories (or labels of the release's ``categories`` for that variable).
        exclude: the table keeps the records *not* in ``values`` (e.g. "excluding care-home residents").
    """

    variable: str
    values: tuple[Label, ...]
    exclude: bool = False


@dataclass(frozen=True)
class PublishedCell:
    """One published cell: a label per dimension (``"All"`` for a margin) and its value (None: suppressed)."""

    labels: tuple[Label, ...]
    value: float | None


@dataclass(frozen=True)
class ReleasedTable:
    """A table as released: what an attacker holds, plus the metadata that relates it to other tables.

    Attributes:
        release_id: unique id in the ledger.
        scope: project and dataset.
        dimensions: the table's variables, row variables then column variables.
        cells: every cell of the table, margins included.
        aggfunc: the published statistic.
        categories: per dimension, ``{label: base categories it groups}``; labels not listed stand for
            themselves.
        filters: the subpopulation the table covers.
        tolerance: ``(below, above)``: the true value lies in ``[value - below, value + above]`` (rounding).
        released_at: ISO timestamp.
    """

    release_id: str
    scope: ReleaseScope
    dimensions: tuple[str, ...]
    cells: tuple[PublishedCell, ...]
    aggfunc: str = "count"
    categories: Mapping[str, Mapping[Label, tuple[Label, ...]]] = field(default_factory=dict)
    filters: tuple[CategoryFilter, ...] = ()
    tolerance: tuple[float, float] = (0.0, 0.0)
    released_at: str = field(default_factory=lambda: dt.datetime.now(dt.UTC).isoformat())

    @classmethod
    def from_protected(
        cls,
        table: ProtectedTable,
        scope: ReleaseScope,
        *,
        release_id: str | None = None,
        categories: CategoryMap | None = None,
        filters: Iterable[CategoryFilter] = (),
    ) -> ReleasedTable:
        """The release record of a protected table (its published values only).

        Args:
            table: the output of :func:`~tre_lib.disclosure.protect_table`.
            scope: project and dataset.
            release_id: id in the ledger (a new UUID if omitted).
            categories: per dimension, which base categories each label groups.
            filters: the subpopulation the table was computed on.

        Returns:
            The record to store in a ledger.
        """
        dims = [*table.spec.get("index", []), *table.spec.get("columns", [])]
        n_rows, n_cols = len(table.spec.get("index", [])), len(table.spec.get("columns", []))
        cells = []
        frame = table.table
        for r, row in zip(frame.index, frame.to_numpy(dtype=float), strict=True):
            for c, value in zip(frame.columns, row, strict=True):
                labels = tuple(_plain(x) for x in (*as_key(r, n_rows), *as_key(c, n_cols)))
                cells.append(PublishedCell(labels, None if math.isnan(value) else float(value)))
        tolerance = (0.0, 0.0)
        if table.mitigation == "round":
            base = table.rules.rounding_base
            if table.rules.rounding_method == "controlled":
                tolerance = (base - 1.0, base - 1.0)
            else:
                tolerance = (float(base // 2), float(math.ceil(base / 2) - 1))
        return cls(
            release_id=release_id or uuid.uuid4().hex,
            scope=scope,
            dimensions=tuple(dims),
            cells=tuple(cells),
            aggfunc=table.aggfunc,
            categories=_normalise_categories(categories or {}),
            filters=tuple(filters),
            tolerance=tolerance,
        )

    def as_dict(self) -> dict[str, Any]:
        """JSON-serialisable form (mappings with non-string keys become lists of pairs)."""
        return {
            "release_id": self.release_id,
            "scope": {"project": self.scope.project, "dataset": self.scope.dataset},
            "dimensions": list(self.dimensions),
            "aggfunc": self.aggfunc,
            "cells": [{"labels": list(c.labels), "value": c.value} for c in self.cells],
            "categories": {
                var: [[label, list(base)] for label, base in mapping.items()]
                for var, mapping in self.categories.items()
            },
            "filters": [
                {"variable": f.variable, "values": list(f.values), "exclude": f.exclude} for f in self.filters
            ],
            "tolerance": list(self.tolerance),
            "released_at": self.released_at,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ReleasedTable:
        """Inverse of :meth:`as_dict`.

        Raises:
            DifferencingError: a field is missing or malformed.
        """
        try:
            return cls(
                release_id=str(data["release_id"]),
                scope=ReleaseScope(str(data["scope"]["project"]), str(data["scope"]["dataset"])),
                dimensions=tuple(data["dimensions"]),
                cells=tuple(
                    PublishedCell(tuple(c["labels"]), None if c["value"] is None else float(c["value"]))
                    for c in data["cells"]
                ),
                aggfunc=str(data.get("aggfunc", "count")),
                categories=_normalise_categories(
                    {
                        var: dict((label, base) for label, base in pairs)
                        for var, pairs in data["categories"].items()
                    }
                ),
                filters=tuple(
                    CategoryFilter(f["variable"], tuple(f["values"]), bool(f.get("exclude", False)))
                    for f in data.get("filters", [])
                ),
                tolerance=(float(data["tolerance"][0]), float(data["tolerance"][1])),
                released_at=str(data["released_at"]),
            )
        except (KeyError, TypeError, ValueError, IndexError) as err:
            raise DifferencingError(
                f"malformed release record ({err!r}); store records made by ReleasedTable.as_dict()"
            ) from err

    def to_json(self) -> str:
        """The record as JSON text."""
        return json.dumps(self.as_dict(), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> ReleasedTable:
        """Read a record written by :meth:`to_json`."""
        return cls.from_dict(json.loads(text))


def _normalise_categories(
    categories: CategoryMap,
) -> dict[str, dict[Label, tuple[Label, ...]]]:
    return {
        var: {_plain(label): tuple(_plain(b) for b in base) for label, base in mapping.items()}
        for var, mapping in categories.items()
    }


@runtime_checkable
class ReleaseLedger(Protocol):
    """Where released tables are kept; the control plane implements it on its database.

    Implementations are append-only: a record, once stored, is never changed or removed.
    """

    def record(self, release: ReleasedTable) -> None:
        """Store a released table.

        Raises:
            DifferencingError: a release with the same id is already stored.
        """
        ...

    def releases_for(self, scope: ReleaseScope) -> list[ReleasedTable]:
        """Every stored release of the same project or of the same dataset, oldest first."""
        ...


class InMemoryReleaseLedger:
    """A :class:`ReleaseLedger` in a list (tests, notebooks, and the workspace's own pre-check)."""

    def __init__(self, releases: Iterable[ReleasedTable] = ()) -> None:
        self._releases: list[ReleasedTable] = []
        for release in releases:
            self.record(release)

    def record(self, release: ReleasedTable) -> None:
        """Store a released table; a duplicate id is refused and nothing changes."""
        if any(r.release_id == release.release_id for r in self._releases):
            raise DifferencingError(
                f"release {release.release_id!r} is already in the ledger; give the new release its own id"
            )
        self._releases.append(release)

    def releases_for(self, scope: ReleaseScope) -> list[ReleasedTable]:
        """Every stored release of the same project or of the same dataset, oldest first."""
        return [
            r for r in self._releases if r.scope.project == scope.project or r.scope.dataset == scope.dataset
        ]

    def __len__(self) -> int:
        return len(self._releases)


@dataclass(frozen=True)
class DifferencingFinding:
    """A fine cell the releases together narrow down, or a table that could not be checked.

    Attributes:
        kind: "recoverable" (a small cell is pinned down) or "not_checked" (see ``message``).
        cell: the fine cell: per variable, the base categories it spans (``OTHER`` for categories no
            release names; a variable missing here is not restricted).
        interval: the attacker's feasible interval for the cell's count.
        threshold: the minimum count of a published cell.
        required_width: the protection level the interval had to reach.
        releases: ids of the releases whose cells bound this one (the new release included).
        combination: ``(release id, cell labels, coefficient)``: a weighted sum of published cells that
            bounds the cell from above; when the interval is a single point it recovers the cell exactly.
        message: a sentence for the output checker.
    """

    kind: Literal["recoverable", "not_checked"]
    cell: Mapping[str, tuple[Label, ...]]
    interval: tuple[float, float]
    threshold: int
    required_width: float
    releases: tuple[str, ...]
    combination: tuple[tuple[str, tuple[Label, ...], float], ...]
    message: str

    def as_dict(self) -> dict[str, Any]:
        """JSON-serialisable form, for the release request's record."""
        return {
            "kind": self.kind,
            "cell": {var: list(values) for var, values in self.cell.items()},
            "interval": [_json_number(x) for x in self.interval],
            "threshold": self.threshold,
            "required_width": self.required_width,
            "releases": list(self.releases),
            "combination": [[rid, list(labels), coef] for rid, labels, coef in self.combination],
            "message": self.message,
        }


def _json_number(x: float) -> float | None:
    return None if not math.isfinite(x) else float(x)


# ------------------------------------------------------------------------------------------ the check
def check_differencing(
    new_table: ProtectedTable | ReleasedTable,
    ledger: ReleaseLedger,
    scope: ReleaseScope,
    *,
    categories: CategoryMap | None = None,
    filters: Iterable[CategoryFilter] = (),
    rules: Rules | None = None,
) -> list[DifferencingFinding]:
    """Find small cells that the new table and past releases of the same dataset recover together.

    Args:
        new_table: the table about to be released (a protected table, or its release record).
        ledger: the past releases.
        scope: the new table's project and dataset.
        categories: for a protected table, how its labels group base categories (see :class:`ReleasedTable`).
        filters: for a protected table, the subpopulation it covers.
        rules: threshold and protection level; default the protected table's rules (or the default rules).

    Returns:
        Findings, empty when the combination is safe. Nothing is written to the ledger: record the table
        after it is released.

    Raises:
        DifferencingError: a release's categories overlap within one dimension, so its margins are not sums.
    """
    if isinstance(new_table, ProtectedTable):
        rules = rules or new_table.rules
        new = ReleasedTable.from_protected(
            new_table, scope, release_id="<new>", categories=categories, filters=filters
        )
    else:
        new = new_table
    rules = rules or Rules()
    threshold, required = rules.threshold, float(rules.required_count_width)
    if new.aggfunc != "count":
        return [
            DifferencingFinding(
                kind="not_checked",
                cell={},
                interval=(-math.inf, math.inf),
                threshold=threshold,
                required_width=required,
                releases=(new.release_id,),
                combination=(),
                message=(
                    f"differencing is checked on count tables; this {new.aggfunc} table needs an output "
                    "checker's review (or check the count table of the same categories)"
                ),
            )
        ]
    past = [
        r
        for r in ledger.releases_for(scope)
        if r.scope.dataset == scope.dataset and r.aggfunc == "count" and r.release_id != new.release_id
    ]
    if not past:
        return []
    system = _System([*past, new])
    if system.size > MAX_FINE_CELLS:
        return [
            DifferencingFinding(
                kind="not_checked",
                cell={},
                interval=(-math.inf, math.inf),
                threshold=threshold,
                required_width=required,
                releases=tuple(r.release_id for r in (*past, new)),
                combination=(),
                message=(
                    f"the releases distinguish {system.size:,} fine cells, more than {MAX_FINE_CELLS:,}; "
                    "an output checker must review this table against the earlier releases"
                ),
            )
        ]
    all_rows = list(range(len(system.rows)))
    past_rows = [k for k, (rid, _, _) in enumerate(system.rows) if rid != new.release_id]
    atoms = system.atoms(all_rows)
    direct = system.directly_published(all_rows, atoms)
    findings = []
    for a, fine in enumerate(atoms.members):
        if a in direct:
            continue
        (lo, hi), combination = system.interval(all_rows, atoms, a)
        if not _disclosive(lo, hi, threshold, required):
            continue
        (plo, phi), _ = system.interval_of_set(past_rows, fine)
        if _disclosive(plo, phi, threshold, required):
            continue  # the past releases alone already pin it: not caused by this table
        cell = system.describe(fine)
        involved = tuple(dict.fromkeys(rid for rid, _, _ in combination))
        others = [r for r in involved if r != new.release_id]
        described = ", ".join(f"{var}={list(values)}" for var, values in cell.items())
        findings.append(
            DifferencingFinding(
                kind="recoverable",
                cell=cell,
                interval=(lo, hi),
                threshold=threshold,
                required_width=required,
                releases=involved,
                combination=combination,
                message=(
                    f"combined with {', '.join(others) or 'past releases'}, this table shows that the count "
                    f"of ({described}) lies in [{lo:g}, {hi:g}], below the threshold of {threshold}; "
                    "coarsen or suppress the cells that differ from the earlier release"
                ),
            )
        )
    return findings


def _disclosive(lo: float, hi: float, threshold: int, required: float) -> bool:
    """Narrower than the protection level, possibly positive, and below the threshold."""
    return hi - lo < required - 1e-9 and hi > 0 and lo < threshold


@dataclass
class _Atoms:
    """Fine cells grouped by the published cells they belong to (an attacker cannot split a group)."""

    members: list[np.ndarray]  # fine-cell indices of each atom
    matrix: csr_matrix  # published rows x atoms


class _System:
    """The finest cells the releases distinguish, and every published cell as a sum of them."""

    def __init__(self, releases: Sequence[ReleasedTable]) -> None:
        self.releases = releases
        variables = sorted({v for r in releases for v in (*r.dimensions, *(f.variable for f in r.filters))})
        self.variables = variables
        mentioned: dict[str, list[frozenset[Label]]] = {v: [] for v in variables}
        for release in releases:
            for var, labels in _dimension_labels(release).items():
                mentioned[var].extend(_base(release, var, label) for label in labels)
            for f in release.filters:
                mentioned[f.variable].append(_filter_base(release, f))
        # Blocks: base categories no mentioned set tells apart (plus one block for every other category).
        self.blocks: dict[str, list[tuple[Label, ...]]] = {}
        self.block_of: dict[str, dict[Label, int]] = {}
        for var in variables:
            sets = mentioned[var]
            domain = sorted({b for s in sets for b in s}, key=_sort_key)
            by_signature: dict[tuple[bool, ...], list[Label]] = {}
            for b in [*domain, OTHER]:
                by_signature.setdefault(tuple(b in s for s in sets), []).append(b)
            self.blocks[var] = [tuple(v) for v in by_signature.values()]
            self.block_of[var] = {b: k for k, bs in enumerate(self.blocks[var]) for b in bs}
        self.radix = [len(self.blocks[v]) for v in variables]
        self.size = int(np.prod(self.radix)) if variables else 1
        # One row per published (non-suppressed) cell: (release id, labels, value) and its fine cells.
        self.rows: list[tuple[str, tuple[Label, ...], float]] = []
        self.bounds: list[tuple[float, float]] = []
        self.fine: list[np.ndarray] = []
        if self.size > MAX_FINE_CELLS:
            return
        for release in releases:
            self._add_release(release)

    def _add_release(self, release: ReleasedTable) -> None:
        dims = list(release.dimensions)
        leaves = [c for c in release.cells if MARGIN not in c.labels]
        for var in dims:
            seen: list[frozenset[Label]] = []
            for label in {c.labels[dims.index(var)] for c in leaves}:
                base = _base(release, var, label)
                if any(base & other for other in seen):
                    raise DifferencingError(
                        f"release {release.release_id!r}: categories of {var!r} overlap, so its margins "
                        "are not sums of its cells; declare disjoint categories"
                    )
                seen.append(base)
        restricted: dict[str, set[int]] = {}
        for f in release.filters:
            blocks = self._blocks_of(f.variable, _filter_base(release, f))
            if f.exclude:
                blocks = set(range(len(self.blocks[f.variable]))) - blocks
            restricted[f.variable] = restricted.get(f.variable, blocks) & blocks
        leaf_fine: dict[tuple[Label, ...], np.ndarray] = {}
        for leaf in leaves:
            per_var: list[list[int]] = []
            for var in self.variables:
                allowed = set(range(len(self.blocks[var])))
                if var in dims:
                    allowed &= self._blocks_of(var, _base(release, var, leaf.labels[dims.index(var)]))
                if var in restricted:
                    allowed &= restricted[var]
                per_var.append(sorted(allowed))
            leaf_fine[leaf.labels] = self._indices(per_var)
        low, high = release.tolerance
        # A margin is the sum of the leaves that agree with it wherever it is not "All"; index the leaves
        # once per margin pattern so that each cell finds its leaves by lookup.
        by_pattern: dict[tuple[bool, ...], dict[tuple[Label, ...], list[np.ndarray]]] = {}
        for cell in release.cells:
            if cell.value is None:
                continue
            pattern = tuple(label == MARGIN for label in cell.labels)
            if pattern not in by_pattern:
                lookup: dict[tuple[Label, ...], list[np.ndarray]] = {}
                for labels, idx in leaf_fine.items():
                    lookup.setdefault(_project(labels, pattern), []).append(idx)
                by_pattern[pattern] = lookup
            parts = by_pattern[pattern].get(_project(cell.labels, pattern), [])
            fine = np.unique(np.concatenate(parts)) if parts else np.zeros(0, dtype=np.int64)
            self.rows.append((release.release_id, cell.labels, cell.value))
            self.bounds.append((cell.value - low, cell.value + high))
            self.fine.append(fine)

    def _blocks_of(self, var: str, base: frozenset[Label]) -> set[int]:
        return {self.block_of[var][b] for b in base}

    def _indices(self, per_var: list[list[int]]) -> np.ndarray:
        if any(not choices for choices in per_var):
            return np.zeros(0, dtype=np.int64)
        grids = np.meshgrid(*[np.asarray(c, dtype=np.int64) for c in per_var], indexing="ij")
        flat = [g.reshape(-1) for g in grids]
        return np.ravel_multi_index(flat, self.radix) if flat else np.zeros(1, dtype=np.int64)

    def atoms(self, rows: Sequence[int], split: np.ndarray | None = None) -> _Atoms:
        """Group fine cells by the rows holding them (and, if given, by membership of ``split``)."""
        signature: dict[int, list[int]] = {}
        for k, r in enumerate(rows):
            for f in self.fine[r].tolist():
                signature.setdefault(f, []).append(k)
        if split is not None:
            for f in split.tolist():
                signature.setdefault(f, []).append(-1)
        groups: dict[tuple[int, ...], list[int]] = {}
        for f, sig in signature.items():
            groups.setdefault(tuple(sig), []).append(f)
        members = [np.asarray(sorted(fs), dtype=np.int64) for fs in groups.values()]
        data, ri, ci = [], [], []
        for a, key in enumerate(groups):
            for k in key:
                if k >= 0:
                    data.append(1.0)
                    ri.append(k)
                    ci.append(a)
        matrix = csr_matrix((data, (ri, ci)), shape=(len(rows), len(members)))
        return _Atoms(members, matrix)

    def directly_published(self, rows: Sequence[int], atoms: _Atoms) -> set[int]:
        """Atoms that are on their own a published cell (their value is public by design)."""
        out = set()
        for k in range(len(rows)):
            cols = atoms.matrix.indices[atoms.matrix.indptr[k] : atoms.matrix.indptr[k + 1]]
            if len(cols) == 1:
                out.add(int(cols[0]))
        return out

    def interval_of_set(
        self, rows: Sequence[int], fine: np.ndarray
    ) -> tuple[tuple[float, float], tuple[tuple[str, tuple[Label, ...], float], ...]]:
        """Interval of the total of a set of fine cells, using only ``rows``."""
        atoms = self.atoms(rows, split=fine)
        wanted = set(fine.tolist())
        targets = [a for a, m in enumerate(atoms.members) if m.size and int(m[0]) in wanted]
        return self._solve(rows, atoms, targets)

    def interval(
        self, rows: Sequence[int], atoms: _Atoms, atom: int
    ) -> tuple[tuple[float, float], tuple[tuple[str, tuple[Label, ...], float], ...]]:
        """Interval of one atom."""
        return self._solve(rows, atoms, [atom])

    def _solve(
        self, rows: Sequence[int], atoms: _Atoms, targets: list[int]
    ) -> tuple[tuple[float, float], tuple[tuple[str, tuple[Label, ...], float], ...]]:
        n_atoms = len(atoms.members)
        if not targets:  # the set is in no published cell at all
            return (0.0, math.inf), ()
        # An atom in no published row is free: a target holding one is unbounded.
        in_rows = np.diff(atoms.matrix.tocsc().indptr)
        if any(in_rows[a] == 0 for a in targets):
            return (0.0, math.inf), ()
        lows = np.array([self.bounds[r][0] for r in rows])
        highs = np.array([self.bounds[r][1] for r in rows])
        exact = lows == highs
        a_eq = atoms.matrix[exact] if exact.any() else None
        b_eq = lows[exact] if exact.any() else None
        inexact = ~exact
        a_ub = None
        b_ub = None
        if inexact.any():
            from scipy.sparse import vstack

            block = atoms.matrix[inexact]
            a_ub = vstack([block, -block]).tocsr()
            b_ub = np.concatenate([highs[inexact], -lows[inexact]])
        objective = np.zeros(n_atoms)
        objective[targets] = 1.0
        combination: tuple[tuple[str, tuple[Label, ...], float], ...] = ()
        hi = lo = 0.0
        # Largest value first: an unbounded or zero maximum settles the interval without the second LP.
        for sign in (-1.0, 1.0):
            res = linprog(
                sign * objective, A_ub=a_ub, b_ub=b_ub, A_eq=a_eq, b_eq=b_eq, bounds=(0, None), method="highs"
            )
            if res.status == 3:
                return (0.0, math.inf), ()
            if res.status != 0:
                raise DifferencingError(
                    f"the differencing LP did not solve ({res.message}); the ledger's releases of this "
                    "dataset contradict each other (was the data changed between releases?)"
                )
            if sign < 0:
                # Counts are whole numbers: round inwards, as the table audit does.
                hi = float(math.floor(-float(res.fun) + 1e-6))
                combination = self._certificate(rows, exact, inexact, res)
                if hi <= 0:
                    return (0.0, 0.0), combination
            else:
                lo = float(math.ceil(float(res.fun) - 1e-6))
        return (lo, hi), combination

    def _certificate(
        self, rows: Sequence[int], exact: np.ndarray, inexact: np.ndarray, res: Any
    ) -> tuple[tuple[str, tuple[Label, ...], float], ...]:
        """Published cells and weights whose sum bounds the target from above (duals of the max LP)."""
        weights = np.zeros(len(rows))
        if exact.any():
            weights[exact] -= np.asarray(res.eqlin.marginals)
        if inexact.any():
            marg = np.asarray(res.ineqlin.marginals)
            half = int(inexact.sum())
            weights[inexact] -= marg[:half] - marg[half:]
        out = []
        for k in map(int, np.flatnonzero(np.abs(weights) > 1e-9)):
            rid, labels, _ = self.rows[rows[k]]
            out.append((rid, labels, round(float(weights[k]), 9)))
        return tuple(out)

    def describe(self, fine: np.ndarray) -> dict[str, tuple[Label, ...]]:
        """Per variable, the base categories a set of fine cells spans (all of them: left out)."""
        coords = np.unravel_index(fine, self.radix) if self.variables else ()
        out: dict[str, tuple[Label, ...]] = {}
        for var, blocks in zip(self.variables, coords, strict=True):
            used = sorted(set(blocks.tolist()))
            if len(used) == len(self.blocks[var]):
                continue
            out[var] = tuple(b for k in used for b in self.blocks[var][k])
        return out


def _project(labels: tuple[Label, ...], pattern: tuple[bool, ...]) -> tuple[Label, ...]:
    return tuple(label for label, margin in zip(labels, pattern, strict=True) if not margin)


def _plain(value: Any) -> Any:
    """numpy scalars as Python ones, so records compare and serialise simply."""
    item = getattr(value, "item", None)
    return item() if callable(item) else value


def _dimension_labels(release: ReleasedTable) -> dict[str, set[Label]]:
    out: dict[str, set[Label]] = {v: set() for v in release.dimensions}
    for cell in release.cells:
        for var, label in zip(release.dimensions, cell.labels, strict=True):
            if label != MARGIN:
                out[var].add(label)
    return out


def _base(release: ReleasedTable, var: str, label: Label) -> frozenset[Label]:
    mapping = release.categories.get(var, {})
    return frozenset(mapping.get(label, (label,)))


def _filter_base(release: ReleasedTable, f: CategoryFilter) -> frozenset[Label]:
    return frozenset(b for value in f.values for b in _base(release, f.variable, value))


def _sort_key(label: Label) -> tuple[int, str, Any]:
    return (0 if isinstance(label, int | float) else 1, type(label).__name__, label)


__all__ = [
    "OTHER",
    "CategoryFilter",
    "DifferencingError",
    "DifferencingFinding",
    "InMemoryReleaseLedger",
    "PublishedCell",
    "ReleaseLedger",
    "ReleaseScope",
    "ReleasedTable",
    "check_differencing",
]
