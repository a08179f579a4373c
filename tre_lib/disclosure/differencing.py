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
import functools
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


# ------------------------------------------------------------------ differencing by unit incidence
#: Above this many past tables in one universe the combined (all-tables) LP is not attempted; every pair
#: (new table, past table) is still checked exactly.
MAX_JOINT_TABLES = 24
#: Above this many small groups left after the quick exits the combined LP is not attempted.
MAX_JOINT_CANDIDATES = 2_000
MAGNITUDE_AGGFUNCS = ("sum", "mean")


def element_keys(units: Sequence[Any]) -> tuple[np.ndarray, np.ndarray]:
    """Stable 64-bit keys for the rows of a view and for their units.

    A row's key is its unit's id with the row's rank among that unit's rows (in the view's order), so the
    same row gets the same key in every table computed from the same view, whatever the filters.

    Args:
        units: the unit id of each row (the view's pseudonymous index id), in the view's row order.

    Returns:
        ``(row_keys, unit_keys)``, both ``uint64`` arrays aligned with ``units``.
    """
    import hashlib

    def h(text: str) -> int:
        return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little")

    seen: dict[str, int] = {}
    rows = np.empty(len(units), dtype=np.uint64)
    unit_keys = np.empty(len(units), dtype=np.uint64)
    for k, unit in enumerate(units):
        text = str(unit)
        rank = seen.get(text, 0)
        seen[text] = rank + 1
        unit_keys[k] = h(text)
        rows[k] = h(f"{text}\x1f{rank}")
    return rows, unit_keys


@dataclass(frozen=True)
class UnitTable:
    """A published table with the rows (and units) each of its cells holds: the server's incidence record.

    The server recomputes every table from the view, so it knows, for every row of the view, which leaf
    cell (finest cell, no margin) of the table holds it. Published cells (margins included) are sums of
    leaves. Comparing two tables by their rows, not their labels, relates them whatever the labels say:
    recodes, merged bands, nested geographies, filters.

    Attributes:
        table_id: id in the ledger (release id, or the staged file's id while in flight).
        keys: sorted ``uint64`` keys of the rows the table covers (after its filters).
        leaf: for each key, the index of the leaf cell holding that row.
        unit: for each key, its unit's ``uint64`` key.
        cells: every published cell: ``(labels, leaf indices, value or None when suppressed)``.
        aggfunc: the statistic published.
        values: the measured column of a magnitude table.
        tolerance: ``(below, above)`` of every published value (rounding).
        universe: the data the rows come from (the view's source dataset and project): tables of different
            universes are never compared.
    """

    table_id: str
    keys: np.ndarray
    leaf: np.ndarray
    unit: np.ndarray
    cells: tuple[tuple[tuple[Any, ...], np.ndarray, float | None], ...]
    aggfunc: str = "count"
    values: str | None = None
    tolerance: tuple[float, float] = (0.0, 0.0)
    universe: str = ""
    #: Some unit has several rows (then groups are sized in units, not rows).
    multi_row: bool = False
    #: Digest of ``keys`` (tables with equal digests cover the same rows); computed when empty.
    population: bytes = b""

    @functools.cached_property
    def n_leaves(self) -> int:
        """Leaf cells holding at least one row."""
        return int(self.leaf.max()) + 1 if self.leaf.size else 0

    @functools.cached_property
    def keys_digest(self) -> bytes:
        """Digest of the rows covered (equal digests: the same population)."""
        return self.population or _digest(self.keys)

    @functools.cached_property
    def published_leaves(self) -> frozenset[int]:
        """Leaves published on their own (as one cell, not suppressed)."""
        return frozenset(
            int(leaves[0]) for _l, leaves, value in self.cells if value is not None and len(leaves) == 1
        )

    @classmethod
    def from_frame(
        cls,
        table_id: str,
        protected: ProtectedTable,
        frame: Any,
        row_keys: np.ndarray,
        unit_keys: np.ndarray,
        *,
        universe: str,
        values: str | None = None,
        hidden: Iterable[tuple[Any, ...]] = (),
    ) -> UnitTable:
        """The incidence record of ``protected`` computed on ``frame`` (the filtered view rows).

        Args:
            table_id: id of the table.
            protected: the server's protected table.
            frame: the rows the table was computed from (pandas), aligned with ``row_keys``/``unit_keys``.
            row_keys: :func:`element_keys` of those rows.
            unit_keys: their units' keys.
            universe: the data the rows come from.
            values: the measured column of a magnitude table.
            hidden: labels of cells the submission suppressed beyond the rules (published as suppressed).
        """
        record = ReleasedTable.from_protected(protected, ReleaseScope("", universe), release_id=table_id)
        dims = list(record.dimensions)
        if dims:
            codes, uniques = _group_codes(frame, dims)
        else:
            codes, uniques = np.zeros(len(frame), dtype=np.int64), [()]
        keep = codes >= 0
        order = np.argsort(row_keys[keep], kind="stable")
        keys = row_keys[keep][order]
        leaf = codes[keep][order].astype(np.int32)
        unit = unit_keys[keep][order]
        by_text = {tuple(str(x) for x in labels): k for k, labels in enumerate(uniques)}
        hidden_set = {tuple(str(x) for x in labels) for labels in hidden}
        cells = []
        for cell in record.cells:
            text = tuple(str(x) for x in cell.labels)
            leaves = [
                k
                for labels, k in by_text.items()
                if all(t in (MARGIN, v) for t, v in zip(text, labels, strict=True))
            ]
            value = None if text in hidden_set else cell.value
            cells.append((tuple(cell.labels), np.asarray(sorted(leaves), dtype=np.int32), value))
        return cls(
            table_id=table_id,
            keys=keys,
            leaf=leaf,
            unit=unit,
            cells=tuple(cells),
            aggfunc=record.aggfunc,
            values=values,
            tolerance=record.tolerance,
            universe=universe,
            multi_row=bool(len(np.unique(unit)) < len(unit)),
            population=_digest(keys),
        )

    def to_bytes(self) -> bytes:
        """Compact serialisation (numpy ``.npz``), for the ledger's blob store."""
        import io

        meta = {
            "table_id": self.table_id,
            "aggfunc": self.aggfunc,
            "values": self.values,
            "tolerance": list(self.tolerance),
            "universe": self.universe,
            "multi_row": self.multi_row,
            "population": self.keys_digest.hex(),
            "cells": [[list(_plain(x) for x in labels), value] for labels, _leaves, value in self.cells],
        }
        lengths = np.asarray([len(leaves) for _l, leaves, _v in self.cells], dtype=np.int64)
        flat = (
            np.concatenate([leaves for _l, leaves, _v in self.cells])
            if self.cells
            else np.zeros(0, dtype=np.int32)
        )
        buffer = io.BytesIO()
        np.savez_compressed(
            buffer,
            keys=self.keys,
            leaf=self.leaf,
            unit=self.unit,
            lengths=lengths,
            flat=flat.astype(np.int32),
            meta=np.frombuffer(json.dumps(meta, default=str).encode(), dtype=np.uint8),
        )
        return buffer.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> UnitTable:
        """Inverse of :meth:`to_bytes`."""
        import io

        with np.load(io.BytesIO(data), allow_pickle=False) as z:
            meta = json.loads(bytes(z["meta"]).decode())
            lengths = z["lengths"]
            flat = z["flat"]
            keys, leaf, unit = z["keys"], z["leaf"], z["unit"]
        bounds = np.concatenate([[0], np.cumsum(lengths)])
        cells = tuple(
            (tuple(labels), flat[bounds[k] : bounds[k + 1]], value)
            for k, (labels, value) in enumerate(meta["cells"])
        )
        return cls(
            table_id=meta["table_id"],
            keys=keys,
            leaf=leaf,
            unit=unit,
            cells=cells,
            aggfunc=meta["aggfunc"],
            values=meta["values"],
            tolerance=(float(meta["tolerance"][0]), float(meta["tolerance"][1])),
            universe=meta["universe"],
            multi_row=bool(meta.get("multi_row", len(np.unique(unit)) < len(unit))),
            population=bytes.fromhex(meta.get("population", "")),
        )


def _digest(keys: np.ndarray) -> bytes:
    import hashlib

    return hashlib.blake2b(np.ascontiguousarray(keys).tobytes(), digest_size=16).digest()


def _group_codes(frame: Any, dims: list[str]) -> tuple[np.ndarray, list[tuple[Any, ...]]]:
    """Leaf code of every row (-1 where a dimension is missing) and the leaves' labels."""
    codes = frame.groupby(dims, sort=False, dropna=True, observed=True).ngroup().to_numpy(dtype=np.int64)
    valid = np.flatnonzero(codes >= 0)
    _, first = np.unique(codes[valid], return_index=True)
    subset = frame[dims]
    labels = [tuple(_plain(x) for x in subset.iloc[int(p)]) for p in valid[first]]
    return codes, labels


@dataclass(frozen=True)
class UnitFinding:
    """A small group of units that the new table and earlier tables isolate together.

    Attributes:
        tables: ids of the tables combined (the new one first).
        cells: per table, the labels of its cell(s) holding the group.
        rows: how many rows the group holds; units: how many distinct units.
        interval: the attacker's interval for the group's count (counts), or ``(s, s)`` for an exactly
            recoverable magnitude.
        statistic: ``count`` or the magnitude statistic.
        message: a sentence for the output checker.
    """

    tables: tuple[str, ...]
    cells: tuple[tuple[str, tuple[Any, ...]], ...]
    rows: int
    units: int
    interval: tuple[float, float]
    statistic: str
    message: str
    kind: Literal["recoverable", "not_checked"] = "recoverable"

    def as_dict(self) -> dict[str, Any]:
        """JSON-serialisable form."""
        return {
            "kind": self.kind,
            "method": "unit incidence",
            "tables": list(self.tables),
            "cells": [[tid, list(labels)] for tid, labels in self.cells],
            "rows": self.rows,
            "units": self.units,
            "interval": [_json_number(x) for x in self.interval],
            "statistic": self.statistic,
            "message": self.message,
        }


class _Pair:
    """Two or more tables over one set of rows: atoms (rows no published cell tells apart) and the
    published cells as sums of atoms."""

    def __init__(self, tables: Sequence[UnitTable]) -> None:
        self.tables = tables
        first = tables[0].keys
        if all(t.keys_digest == tables[0].keys_digest for t in tables[1:]):
            self.merged = False
            codes = [t.leaf.astype(np.int64) for t in tables]
            unit = tables[0].unit
        else:
            self.merged = True
            keys = first
            for t in tables[1:]:
                keys = np.union1d(keys, t.keys)
            codes = []
            unit = np.zeros(len(keys), dtype=np.uint64)
            for t in tables:
                c = np.full(len(keys), -1, dtype=np.int64)
                pos = np.searchsorted(keys, t.keys)
                c[pos] = t.leaf
                unit[pos] = t.unit
                codes.append(c)
        self.unit = unit
        self.sizes = [t.n_leaves + 1 for t in tables]
        self.row_atom: np.ndarray | None
        if len(tables) == 2:
            # One integer per row for its pair of leaves (0: outside that table's population).
            self._combined = (codes[0] + 1) * self.sizes[1] + (codes[1] + 1)
            counts = np.bincount(self._combined, minlength=self.sizes[0] * self.sizes[1])
            self.atom_ids = np.flatnonzero(counts)
            self.atom_rows = counts[self.atom_ids]
            self.row_atom = None
            self.atom_leaf = [self.atom_ids // self.sizes[1] - 1, self.atom_ids % self.sizes[1] - 1]
        else:
            stack = np.stack(codes, axis=1)
            unique, inverse, counts = np.unique(stack, axis=0, return_inverse=True, return_counts=True)
            self.atom_ids = np.arange(len(unique))
            self.atom_rows = counts
            self.row_atom = inverse.reshape(-1)
            self.atom_leaf = [unique[:, k] for k in range(len(tables))]

    def atom_units(self, atoms: np.ndarray) -> np.ndarray:
        """Distinct units in each of ``atoms`` (indices into the atom list)."""
        if self.row_atom is None:
            self.row_atom = np.searchsorted(self.atom_ids, self._combined)
        assert self.row_atom is not None
        out = np.zeros(len(atoms), dtype=np.int64)
        wanted = {int(a): k for k, a in enumerate(atoms)}
        mask = np.isin(self.row_atom, atoms)
        for a, group in _groupby(self.row_atom[mask], self.unit[mask]):
            out[wanted[a]] = len(np.unique(group))
        return out

    def matrix(self) -> tuple[csr_matrix, np.ndarray, np.ndarray, list[tuple[int, int]]]:
        """Published cells x atoms, with each cell's lower and upper bounds and (table, cell) index."""
        ri: list[np.ndarray] = []
        ci: list[np.ndarray] = []
        lows, highs, which = [], [], []
        row = 0
        for t_index, (table, leaf_of_atom) in enumerate(zip(self.tables, self.atom_leaf, strict=True)):
            below, above = table.tolerance
            for c_index, (_labels, leaves, value) in enumerate(table.cells):
                if value is None:
                    continue
                members = np.flatnonzero(np.isin(leaf_of_atom, leaves))
                ri.append(np.full(len(members), row))
                ci.append(members)
                lows.append(value - below)
                highs.append(value + above)
                which.append((t_index, c_index))
                row += 1
        data_r = np.concatenate(ri) if ri else np.zeros(0, dtype=np.int64)
        data_c = np.concatenate(ci) if ci else np.zeros(0, dtype=np.int64)
        matrix = csr_matrix((np.ones(len(data_r)), (data_r, data_c)), shape=(row, len(self.atom_ids)))
        return matrix, np.asarray(lows, dtype=float), np.asarray(highs, dtype=float), which


def _groupby(keys: np.ndarray, values: np.ndarray) -> Iterable[tuple[int, np.ndarray]]:
    order = np.argsort(keys, kind="stable")
    keys, values = keys[order], values[order]
    if not len(keys):
        return
    cuts = np.flatnonzero(np.diff(keys)) + 1
    for start, stop in zip(np.concatenate([[0], cuts]), np.concatenate([cuts, [len(keys)]]), strict=True):
        yield int(keys[start]), values[start:stop]


def _atom_bounds(matrix: csr_matrix, lows: np.ndarray, highs: np.ndarray, atom: int) -> tuple[float, float]:
    """The attacker's interval for one atom's count: min and max subject to every published cell."""
    n_atoms = matrix.shape[1]
    exact = lows == highs
    a_eq = matrix[exact] if exact.any() else None
    b_eq = lows[exact] if exact.any() else None
    a_ub = b_ub = None
    if (~exact).any():
        from scipy.sparse import vstack

        block = matrix[~exact]
        a_ub = vstack([block, -block]).tocsr()
        b_ub = np.concatenate([highs[~exact], -lows[~exact]])
    in_rows = np.diff(matrix.tocsc().indptr)
    if in_rows[atom] == 0:
        return 0.0, math.inf
    objective = np.zeros(n_atoms)
    objective[atom] = 1.0
    out: list[float] = []
    for sign in (1.0, -1.0):
        res = linprog(
            sign * objective, A_ub=a_ub, b_ub=b_ub, A_eq=a_eq, b_eq=b_eq, bounds=(0, None), method="highs"
        )
        if res.status == 3:
            return (out[0] if out else 0.0), math.inf
        if res.status != 0:
            raise DifferencingError(f"the differencing LP did not solve ({res.message})")
        out.append(sign * float(res.fun))
    return float(math.ceil(out[0] - 1e-6)), float(math.floor(out[1] + 1e-6))


def _determined(matrix: csr_matrix, atom: int) -> bool:
    """Is the atom's indicator a linear combination of published cells (its total exactly recoverable)?"""
    dense = matrix.toarray()
    target = np.zeros(dense.shape[1])
    target[atom] = 1.0
    if not dense.shape[0]:
        return False
    y, *_ = np.linalg.lstsq(dense.T, target, rcond=None)
    return bool(np.allclose(dense.T @ y, target, atol=1e-7))


def _comparable(new: UnitTable, past: UnitTable) -> str | None:
    """The statistic the pair is checked for, or None when the pair is not compared."""
    if new.universe != past.universe:
        return None
    if new.aggfunc == "count" and past.aggfunc == "count":
        return "count"
    if (
        new.aggfunc in MAGNITUDE_AGGFUNCS
        and past.aggfunc in MAGNITUDE_AGGFUNCS
        and new.values is not None
        and new.values == past.values
    ):
        return new.aggfunc
    return None


def check_unit_differencing(
    new: UnitTable,
    others: Iterable[UnitTable],
    rules: Rules | None = None,
    *,
    joint: bool = True,
) -> list[UnitFinding]:
    """Find groups of fewer than ``threshold`` units that ``new`` and earlier tables isolate together.

    Each other table of the same universe is compared with ``new`` through the rows its cells hold
    (:func:`_check_pair`): the crossing of the two tables' leaf cells is a two-way table whose entries are
    the groups of rows no published cell of either table tells apart. The attacker is assumed to know
    which entries are empty *when the labels can tell them*: an entry is a known zero when one of its
    two leaves lies wholly inside one leaf of the other table (a nested geography, a merged band, a
    recode, a filter's complement); every other entry may hold anything. Then

    1. a quick exit gives, for every entry at once, the interval an attacker who knew *every* leaf total
       (suppressed ones too) would get: nested leaves are pinned, the rest are Fréchet bounds on the
       remaining two-way table. That attacker is stronger than the real one, so an entry whose interval is
       wide enough is safe;
    2. every remaining entry of 1..threshold-1 units gets the real attacker's LP (``linprog``/HiGHS) over
       the possible entries, constrained by the published cells of both tables (margins, suppression and
       rounding as published): narrower than the required width is a finding. For magnitude tables (sum,
       mean of the same column) an entry is a finding when its total is a linear combination of published
       cells.
    3. with ``joint`` and 2..:data:`MAX_JOINT_TABLES` + 1 count tables, the LP over all of them at once
       (atoms: rows with the same leaf in every table; only non-empty atoms, i.e. the attacker is assumed
       to know the data's support, which can only over-report), so combinations of three or more tables
       are caught too.

    Args:
        new: the table to release.
        others: released and in-flight tables (other universes are skipped).
        rules: threshold and protection level (default rules when omitted).
        joint: also run the all-tables LP when it is small enough.

    Returns:
        The findings; empty when no small group is recoverable.
    """
    rules = rules or Rules()
    threshold, required = rules.threshold, float(rules.required_count_width)
    findings: list[UnitFinding] = []
    same: list[UnitTable] = []
    for past in others:
        statistic = _comparable(new, past)
        if statistic is None:
            continue
        if statistic == "count":
            same.append(past)
        findings += _check_pair(new, past, statistic, threshold, required)
    if joint and not findings and 1 <= len(same) <= MAX_JOINT_TABLES:
        findings += _check_joint([new, *same], threshold, required)
    return findings


def _check_pair(
    new: UnitTable, past: UnitTable, statistic: str, threshold: int, required: float
) -> list[UnitFinding]:
    pair = _Pair([new, past])
    n_rows, n_cols = pair.sizes
    x = np.zeros((n_rows, n_cols), dtype=np.int64)
    x[pair.atom_leaf[0] + 1, pair.atom_leaf[1] + 1] = pair.atom_rows
    x[0, 0] = 0
    nz = x > 0
    small = nz & (x < max(threshold, 1))
    multi_row = (
        new.multi_row or past.multi_row or (pair.merged and len(np.unique(pair.unit)) < len(pair.unit))
    )
    if not small.any() and not multi_row:
        return []
    used_rows, used_cols = nz.any(axis=1), nz.any(axis=0)
    nested_rows = nz.sum(axis=1) == 1
    nested_cols = nz.sum(axis=0) == 1
    block_rows = used_rows & ~nested_rows
    block_cols = used_cols & ~nested_cols
    in_block = block_rows[:, None] & block_cols[None, :]
    # The stronger attacker's interval of every entry (all leaf totals known).
    r = (x * block_cols[None, :]).sum(axis=1)[:, None]
    c = (x * block_rows[:, None]).sum(axis=0)[None, :]
    total = float(r[block_rows].sum())
    if statistic == "count":
        width = np.where(in_block, np.minimum(r, c) - np.maximum(0, r + c - total), 0.0)
        enough = required
    else:
        # A magnitude entry of a block with two rows and two columns or more is never determined.
        several = float(block_rows.sum() >= 2 and block_cols.sum() >= 2)
        width = np.where(in_block, several, 0.0)
        enough = 1.0
    # An entry that is all of a published leaf was published by design (and checked as such).
    whole_rows = nested_rows.copy()
    whole_rows[1:] &= _leaf_mask(new.published_leaves, n_rows - 1)
    whole_rows[0] = False
    whole_cols = nested_cols.copy()
    whole_cols[1:] &= _leaf_mask(past.published_leaves, n_cols - 1)
    whole_cols[0] = False
    candidates_mask = (nz if multi_row else small) & (width < enough)
    candidates_mask[whole_rows, :] = False
    candidates_mask[:, whole_cols] = False
    entries = np.argwhere(candidates_mask)
    if not len(entries):
        return []
    possible = nz | in_block
    possible[0, 0] = False
    variables = np.argwhere(possible)
    index = {(int(i), int(j)): k for k, (i, j) in enumerate(variables)}
    matrix, lows, highs = _pair_matrix(new, past, variables)
    unit_counts = _entry_units(pair, entries)
    findings = []
    for (a, b), n_units in zip(entries.tolist(), unit_counts, strict=True):
        if n_units == 0 or n_units >= threshold:
            continue
        k = index[(a, b)]
        if statistic == "count":
            lo, hi = _atom_bounds(matrix, lows, highs, k)
            if not (hi - lo < required - 1e-9 and hi > 0 and lo < threshold):
                continue
        else:
            if not _determined(matrix, k):
                continue
            lo = hi = float(x[a, b])
        findings.append(
            _finding([new, past], [a - 1, b - 1], int(x[a, b]), n_units, (lo, hi), statistic, threshold)
        )
    return findings


def _leaf_mask(leaves: frozenset[int], n: int) -> np.ndarray:
    mask = np.zeros(n, dtype=bool)
    if leaves:
        mask[np.fromiter(leaves, dtype=np.int64)] = True
    return mask


def _pair_matrix(
    new: UnitTable, past: UnitTable, variables: np.ndarray
) -> tuple[csr_matrix, np.ndarray, np.ndarray]:
    """Published cells of both tables (rows) over the possible entries (columns) of their crossing."""
    ri: list[np.ndarray] = []
    ci: list[np.ndarray] = []
    lows: list[float] = []
    highs: list[float] = []
    row = 0
    for axis, table in ((0, new), (1, past)):
        leaf_of_var = variables[:, axis] - 1
        below, above = table.tolerance
        for _labels, leaves, value in table.cells:
            if value is None:
                continue
            members = np.flatnonzero(np.isin(leaf_of_var, leaves))
            ri.append(np.full(len(members), row))
            ci.append(members)
            lows.append(value - below)
            highs.append(value + above)
            row += 1
    rr = np.concatenate(ri) if ri else np.zeros(0, dtype=np.int64)
    cc = np.concatenate(ci) if ci else np.zeros(0, dtype=np.int64)
    matrix = csr_matrix((np.ones(len(rr)), (rr, cc)), shape=(row, len(variables)))
    return matrix, np.asarray(lows, dtype=float), np.asarray(highs, dtype=float)


def _entry_units(pair: _Pair, entries: np.ndarray) -> list[int]:
    """Distinct units of each (new leaf + 1, past leaf + 1) entry."""
    codes = (entries[:, 0] * pair.sizes[1] + entries[:, 1]).astype(np.int64)
    atoms = np.searchsorted(pair.atom_ids, codes)
    return pair.atom_units(atoms).tolist()


def _finding(
    tables: Sequence[UnitTable],
    leaves: Sequence[int],
    rows: int,
    units: int,
    interval: tuple[float, float],
    statistic: str,
    threshold: int,
) -> UnitFinding:
    cells = []
    for table, leaf in zip(tables, leaves, strict=True):
        labels = next(
            (lab for lab, members, _v in table.cells if len(members) == 1 and int(members[0]) == leaf),
            ("<outside the table>",) if leaf < 0 else (),
        )
        cells.append((table.table_id, tuple(labels)))
    others = ", ".join(tid for tid, _ in cells[1:])
    where = "; ".join(f"{tid}: {list(labels)}" for tid, labels in cells)
    what = "count" if statistic == "count" else f"{statistic} of {tables[0].values}"
    lo, hi = interval
    return UnitFinding(
        tables=tuple(t.table_id for t in tables),
        cells=tuple(cells),
        rows=rows,
        units=units,
        interval=interval,
        statistic=statistic,
        message=(
            f"combined with {others}, this table isolates a group of {units} unit(s) ({where}) whose "
            f"{what} an attacker can bound to [{lo:g}, {hi:g}], below the threshold of {threshold}: the "
            "tables differ by a small group, whatever their labels"
        ),
    )


def _check_joint(tables: Sequence[UnitTable], threshold: int, required: float) -> list[UnitFinding]:
    """The LP over several tables at once (atoms: rows with the same leaf in every table)."""
    group = _Pair(tables)
    outside = np.all(np.stack([leaf < 0 for leaf in group.atom_leaf]), axis=0)
    inside = np.flatnonzero(~outside)
    units = group.atom_units(inside)
    small = inside[(units >= 1) & (units < threshold)]
    whole: set[int] = set()
    for table, leaf_of_atom in zip(tables, group.atom_leaf, strict=True):
        atoms_in_leaf = np.bincount(leaf_of_atom[leaf_of_atom >= 0], minlength=table.n_leaves)
        published = table.published_leaves
        for a in small.tolist():
            leaf = int(leaf_of_atom[a])
            if leaf >= 0 and leaf in published and atoms_in_leaf[leaf] == 1:
                whole.add(a)
    candidates = [a for a in small.tolist() if a not in whole]
    if not candidates:
        return []
    if len(candidates) > MAX_JOINT_CANDIDATES:
        return [
            UnitFinding(
                tables=tuple(t.table_id for t in tables),
                cells=(),
                rows=0,
                units=0,
                interval=(0.0, math.inf),
                statistic="count",
                kind="not_checked",
                message=(
                    f"together with {len(tables) - 1} other tables of this view this table leaves "
                    f"{len(candidates)} small groups, more than the {MAX_JOINT_CANDIDATES} the combined "
                    "check solves; an output checker must judge the combination"
                ),
            )
        ]
    matrix, lows, highs, _which = group.matrix()
    unit_of = dict(zip(inside.tolist(), units.tolist(), strict=True))
    for a in candidates:
        lo, hi = _atom_bounds(matrix, lows, highs, a)
        if hi - lo < required - 1e-9 and hi > 0 and lo < threshold:
            leaves = [int(leaf[a]) for leaf in group.atom_leaf]
            return [
                _finding(tables, leaves, int(group.atom_rows[a]), unit_of[a], (lo, hi), "count", threshold)
            ]
    return []


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
    "UnitFinding",
    "UnitTable",
    "check_differencing",
    "check_unit_differencing",
    "element_keys",
]
